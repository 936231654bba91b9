"""A cheap IR-drop model of crossbar reads, its calibration file, and an aihwkit-style export.

Layer: cosim. Cheap means: no linear solve. The model maps the conductances to an *effective*
conductance matrix W (one per conductance state, a handful of cumulative sums over the array),
and a read is then ``V @ W`` (forward) or ``V @ W.T`` (transposed: a passive linear network is
reciprocal, so the transposed transfer is the same W). The exact answer is also a linear map
of the inputs; the model approximates it. :mod:`cosim.calibrate` fits the coefficients to
ngspice; with its nominal coefficients (no fit) the model is the first-order physics below.

The model
---------
Reference topology (:mod:`netlists.ir`): rows driven at column 0, columns sensed after row N-1,
``r_row`` / ``r_col`` [ohm] per segment. To first order in r the drop on row i at cell j and
the rise on column j at cell i, per volt of input, are the dimensionless *loadings*

    x_R[i,j] = r_row * sum_j' G[i,j'] * (min(j, j') + 1)      (row path shared with cell j')
    x_C[i,j] = r_col * sum_i' G[i',j] * (N - max(i, i'))      (column path shared with cell i')

each a cumulative sum of a reverse cumulative sum (O(rows x cols)). First-order perturbation
theory (exact to O(r); the column term by reciprocity) gives W = G (1 - x_R - x_C). Write
h1 = x_R + x_C and h2 = r_row K_R(G h1) + r_col K_C(G h1) for the second-order term of the
Neumann series (K_R, K_C the two cumulative-sum operators above). The model is

    W[i,j] = G[i,j] / (1 + sum_k a_k phi_k[i,j])  +  b * T[i,j] / (1 + c * h1[i,j])

    phi = (x_R, x_C, x_R^2, x_C^2, x_R x_C, h1^2 - h2, h1^3, h1 (h1^2 - h2))
    T[i,j] = x_C[i,j] * r_row * sum_j' (min(j, j') + 1) G[i,j'] gbar[j']    (gbar: column means of G)

The denominator resums the series (a single cell on a line is exact in 1/(1 + x)); T is a
mean-field form of the one second-order term that is not proportional to G[i,j] (the row drop
that a cell sees through the currents of the other rows on its columns). The **nominal**
(uncalibrated) coefficients are the first-order physics: a = (1, 1, 0, ...), b = c = 0, i.e.
W = G / (1 + x_R + x_C). Differential arrays: W is computed on the physical columns and each
logical column is W[:, 2j] - W[:, 2j+1].

Calibration file (JSON, ``schema: "xbar-cosim/ir-calibration"``, ``version: 1``)
---------------------------------------------------------------------------------
::

    {
      "schema": "xbar-cosim/ir-calibration",
      "version": 1,
      "model": "resummed-thevenin",          # the model above
      "features": ["x_R", "x_C", ...],        # names of phi, in order
      "coefficients": {"a": [...], "b": 0.0, "c": 0.0},
      "nominal": {"a": [...], "b": 0.0, "c": 0.0},
      "fit": {                                # what it was fitted on (informative)
        "sizes": [...], "r_wire": [...], "g_range": [gmin, gmax], "v_read": 0.2,
        "train_cases": n, "test_cases": n, "seed": s, "created": "ISO time"},
      "errors": [ {size, r_wire, uncal_rmse, cal_rmse, ...} ],   # held-out table, fractions of full scale
      "periphery": {"adc_bits": null, "dac_bits": null, "out_noise": 0.0}   # optional, for the export
    }

Readers accept version 1 only and refuse anything else by name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ParameterError, ShapeError

SCHEMA = "xbar-cosim/ir-calibration"
VERSION = 1
MODEL_NAME = "resummed-thevenin"
FEATURES = ("x_R", "x_C", "x_R^2", "x_C^2", "x_R*x_C", "h1^2-h2", "h1^3", "h1*(h1^2-h2)")


def k_row(y: np.ndarray) -> np.ndarray:
    """(K_R y)[i, j] = sum_j' y[i, j'] (min(j, j') + 1): the row paths from the driver at j = 0."""
    return np.cumsum(np.cumsum(y[:, ::-1], axis=1)[:, ::-1], axis=1)


def k_col(y: np.ndarray) -> np.ndarray:
    """(K_C y)[i, j] = sum_i' y[i', j] (N - max(i, i')): the column paths to the sense end."""
    # on the transposed, contiguous array: numpy's cumsum along axis 0 is 3x slower than along 1
    yt = np.ascontiguousarray(y.T)
    out = np.cumsum(np.cumsum(yt, axis=1)[:, ::-1], axis=1)[:, ::-1]
    return np.ascontiguousarray(out.T)


@dataclass(frozen=True, eq=False)
class IRFeatures:
    """The dimensionless loadings of one conductance state (see the module docstring)."""

    x_R: np.ndarray
    x_C: np.ndarray
    h1: np.ndarray
    h2: np.ndarray
    T: np.ndarray

    def phi(self) -> list[np.ndarray]:
        xR, xC, h1 = self.x_R, self.x_C, self.h1
        d2 = h1 * h1 - self.h2
        return [xR, xC, xR * xR, xC * xC, xR * xC, d2, h1 * h1 * h1, h1 * d2]


def ir_features(G: np.ndarray, r_row: float, r_col: float, *, cross: bool = True) -> IRFeatures:
    """Loadings of physical conductances ``G`` (rows, pcols) [S] with wire segments [ohm]
    (``cross=False`` skips the mean-field cross term T, left at zero)."""
    G = np.asarray(G, dtype=float)
    if G.ndim != 2:
        raise ShapeError(f"conductances must be a 2-D array, got shape {G.shape}")
    xR = r_row * k_row(G) if r_row > 0 else np.zeros_like(G)
    xC = r_col * k_col(G) if r_col > 0 else np.zeros_like(G)
    h1 = xR + xC
    Gh = G * h1
    h2 = (r_row * k_row(Gh) if r_row > 0 else 0.0) + (r_col * k_col(Gh) if r_col > 0 else 0.0)
    h2 = np.broadcast_to(h2, G.shape) if np.ndim(h2) == 0 else h2
    if cross and r_row > 0 and r_col > 0:
        T = xC * (r_row * k_row(G * G.mean(axis=0)[None, :]))
    else:
        T = np.zeros_like(G)
    return IRFeatures(xR, xC, h1, h2, T)


@dataclass(frozen=True)
class IRModel:
    """Coefficients of the cheap model (see the module docstring).

    Attributes
    ----------
    a : tuple of float
        Denominator coefficients, one per name in :data:`FEATURES`.
    b, c : float
        Weight and saturation of the mean-field cross term T.
    """

    a: tuple[float, ...] = (1.0, 1.0) + (0.0,) * (len(FEATURES) - 2)
    b: float = 0.0
    c: float = 0.0

    def __post_init__(self) -> None:
        a = tuple(float(x) for x in self.a)
        if len(a) != len(FEATURES):
            raise ParameterError(f"a needs {len(FEATURES)} coefficients ({', '.join(FEATURES)}), got {len(a)}")
        if not all(np.isfinite(a)) or not (np.isfinite(self.b) and np.isfinite(self.c)):
            raise ParameterError("IR model coefficients must be finite")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", float(self.b))
        object.__setattr__(self, "c", float(self.c))

    @classmethod
    def nominal(cls) -> "IRModel":
        """First-order physics, no fit: W = G / (1 + x_R + x_C)."""
        return cls()

    @classmethod
    def from_vector(cls, p: np.ndarray) -> "IRModel":
        n = len(FEATURES)
        return cls(tuple(p[:n]), float(p[n]), float(p[n + 1]))

    def to_vector(self) -> np.ndarray:
        return np.array([*self.a, self.b, self.c])

    # -- the model ----------------------------------------------------------------------------
    def physical_weights(self, G: np.ndarray, r_row: float, r_col: float,
                         features: IRFeatures | None = None) -> np.ndarray:
        """Effective conductances (rows, pcols) [S] of physical cells ``G`` [S]."""
        G = np.asarray(G, dtype=float)
        if r_row == 0 and r_col == 0:
            return G.copy()
        f = features if features is not None else ir_features(G, r_row, r_col, cross=self.b != 0)
        a = self.a
        xR, xC, h1 = f.x_R, f.x_C, f.h1
        d2 = h1 * h1
        d2 -= f.h2
        # 1 + sum_k a_k phi_k, grouped to save whole-array operations (this is the hot path)
        den = xR * (a[0] + a[2] * xR + a[4] * xC)
        den += xC * (a[1] + a[3] * xC)
        den += d2 * (a[5] + a[7] * h1)
        if a[6]:
            den += a[6] * h1 * h1 * h1
        den += 1.0
        W = G / den
        if self.b:
            W += self.b * f.T / (1.0 + self.c * f.h1)
        return W

    def effective_weights(self, spec, G: np.ndarray) -> np.ndarray:
        """Logical effective weights (rows, cols) [S] for a :class:`~netlists.crossbar.CrossbarSpec`."""
        W = self.physical_weights(G, spec.r_row, spec.r_col)
        if spec.cell == "diff":
            return W[:, 0::2] - W[:, 1::2]
        return W

    def read(self, spec, G: np.ndarray, V: np.ndarray, *, transpose: bool = False) -> np.ndarray:
        """Currents (batch, cols) forward or (batch, rows) transposed [A] for inputs V [V]."""
        W = self.effective_weights(spec, G)
        V = np.atleast_2d(np.asarray(V, dtype=float))
        return V @ W.T if transpose else V @ W

    def to_dict(self) -> dict:
        return {"a": list(self.a), "b": self.b, "c": self.c}

    @classmethod
    def from_dict(cls, d: dict) -> "IRModel":
        try:
            return cls(tuple(d["a"]), d.get("b", 0.0), d.get("c", 0.0))
        except (KeyError, TypeError) as exc:
            raise ParameterError(f"IR model coefficients: {exc!r} (need a list 'a' and numbers 'b', 'c')") from None


@dataclass(frozen=True)
class Calibration:
    """A fitted cheap model and what it was fitted on; saved as the JSON of the module docstring.

    Attributes
    ----------
    model : IRModel
        Fitted coefficients.
    fit : dict
        Sizes, wire resistances, conductance range, case counts, seed (informative only).
    errors : tuple of dict
        Held-out error table (fractions of full scale).
    periphery : dict
        Optional ``adc_bits``, ``dac_bits``, ``out_noise`` for the aihwkit-style export.
    """

    model: IRModel
    fit: dict = field(default_factory=dict)
    errors: tuple = ()
    periphery: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, IRModel):
            raise ParameterError(f"model must be an IRModel, got {type(self.model).__name__}")
        object.__setattr__(self, "errors", tuple(self.errors))

    def effective_weights(self, spec, G: np.ndarray) -> np.ndarray:
        return self.model.effective_weights(spec, G)

    def read(self, spec, G: np.ndarray, V: np.ndarray, *, transpose: bool = False) -> np.ndarray:
        return self.model.read(spec, G, V, transpose=transpose)

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "version": VERSION, "model": MODEL_NAME, "features": list(FEATURES),
                "coefficients": self.model.to_dict(), "nominal": IRModel.nominal().to_dict(),
                "fit": self.fit, "errors": list(self.errors), "periphery": self.periphery}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Calibration":
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else None
            raise ParameterError(f"not an xbar-cosim IR calibration (schema {found!r}, expected {SCHEMA!r})")
        if d.get("version") != VERSION:
            raise ParameterError(f"calibration version {d.get('version')!r} is not supported (this reader: {VERSION})")
        if d.get("model") != MODEL_NAME or list(d.get("features", [])) != list(FEATURES):
            raise ParameterError(f"calibration is for model {d.get('model')!r} with features {d.get('features')}, "
                                 f"this reader has {MODEL_NAME!r} with {list(FEATURES)}")
        return cls(IRModel.from_dict(d["coefficients"]), dict(d.get("fit", {})), tuple(d.get("errors", ())),
                   dict(d.get("periphery", {})))

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ParameterError(f"calibration file {p} is not valid JSON: {exc}") from None
        return cls.from_json(d)


def to_aihwkit(cal: Calibration, *, r_wire: float | None = None, g_max: float | None = None,
               adc_bits: int | None = None, dac_bits: int | None = None) -> dict:
    """An aihwkit-style ``IOParameters`` dict where our quantities map cleanly (no aihwkit import).

    ``ir_drop_g_ratio`` is aihwkit's wire-to-device conductance ratio 1 / (r_wire g_max);
    ``ir_drop`` is its scale, set to the mean of our two fitted first-order coefficients (1 is
    physics). ``out_res`` / ``inp_res`` are 1 / (2^bits - 2) (aihwkit's convention for a
    symmetric converter; None: no converter, written as -1, aihwkit's "off"). ``out_noise`` is
    the held-out RMS error of the calibrated model over full scale (the part our model does not
    explain), unless the calibration carries a measured periphery value. aihwkit's own IR-drop
    model differs from ours (see PHYSICS.md); the dict is a starting point, not an equivalence.
    """
    fit = cal.fit or {}
    r = r_wire if r_wire is not None else float(np.median(fit.get("r_wire", [1.0])))
    gm = g_max if g_max is not None else float(fit.get("g_range", [1e-6, 25e-6])[1])
    if r <= 0 or gm <= 0:
        raise ParameterError(f"r_wire and g_max must be > 0 for an IR-drop export, got {r} and {gm}")
    per = cal.periphery or {}
    adc = adc_bits if adc_bits is not None else per.get("adc_bits")
    dac = dac_bits if dac_bits is not None else per.get("dac_bits")
    cal_rmse = [row["cal_rmse"] for row in cal.errors if "cal_rmse" in row]
    out_noise = per.get("out_noise", float(np.mean(cal_rmse)) if cal_rmse else 0.0)

    def res(bits):
        return -1.0 if bits in (None, 0) else 1.0 / (2 ** int(bits) - 2)

    return {
        "_source": "xbar-cosim calibration (schema %s v%d)" % (SCHEMA, VERSION),
        "forward": {
            "ir_drop": float(np.mean(cal.model.a[:2])),
            "ir_drop_g_ratio": 1.0 / (r * gm),
            "out_noise": float(out_noise),
            "out_res": res(adc),
            "inp_res": res(dac),
            "inp_bound": 1.0,
            "out_bound": 1.0,
        },
        "xbar_cosim": {"model": MODEL_NAME, "coefficients": cal.model.to_dict(), "r_wire": r, "g_max": gm},
    }

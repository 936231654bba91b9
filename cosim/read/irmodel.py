"""A cheap IR-drop model of crossbar reads, its calibration file, and an aihwkit-style export.

Layer: cosim.read. Cheap means: no linear solve of the array. The model maps the conductances to an
*effective* conductance matrix W (one per conductance state: cumulative sums over the array and
one scalar recursion along each line, O(rows x cols)), and a read is then ``V @ W`` (forward)
or ``V @ W.T`` (transposed: a passive linear network is reciprocal, so the transposed transfer
is the same W). The exact answer is also a linear map of the inputs; the model approximates it.
:mod:`cosim.calibrate.irfit` fits the coefficients to ngspice; with its nominal coefficients (no fit)
the model is the first-order physics below.

The physics
-----------
Reference topology (:mod:`netlists.ir`): rows driven at column 0, columns sensed after row N-1,
``r_row`` / ``r_col`` [ohm] per segment. With the cell currents I, the row and column node
voltages are exactly u = V - r_row K_R I and v = r_col K_C I, where

    (K_R y)[i,j] = sum_j' y[i,j'] (min(j, j') + 1)     (row path shared with cell j')
    (K_C y)[i,j] = sum_i' y[i',j] (N - max(i, i'))     (column path shared with cell i')

(each a cumulative sum of a reverse cumulative sum), so I = (1 + G K)^-1 (G V) and the transfer
W[i,j] (current into sense j per volt on row i) has the Neumann series in r

    W = G (1 - h1 + r_row K_R(G x_R) + r_col K_C(G x_C) + x_R x_C) + X + O(r^3)

with the first-order *loadings* x_R = r_row K_R G, x_C = r_col K_C G, h1 = x_R + x_C, and the
one second-order term that is not proportional to G[i,j], the row-column cross term (a current
path cell (i,j') -> column j' -> cell (i',j') -> row i' -> cell (i',j) -> column j)

    X[i,j] = r_row r_col sum_{i',j'} G[i,j'] G[i',j'] G[i',j] (min(j,j') + 1) (N - max(i,i')).

X costs O(rows x cols x min(rows, cols)): the kernels split into cumulative sums, but the middle
factor G[i',j'] ties the two summation indices together, so after the split the contraction is
still a four-index one (with constant kernels X would be the matrix product G G^T G). It is
computed exactly when rows x cols x min(rows, cols) <= :data:`EXACT_CROSS_WORK` (small arrays,
where it matters most: there the error is all second order) and otherwise replaced by its
mean field T[i,j] = x_C[i,j] r_row sum_j' (min(j,j') + 1) G[i,j'] gbar[j'] (gbar: column means
of G; T = X when G is constant, and X - T shrinks relative to X as the array grows).

Each line alone is solved exactly by a scalar recursion from its open end (no matrix): for a
row with its cells to ground, the dimensionless admittance seen at node j looking away from the
driver is z_j = r S_j + z_{j+1} / (1 + z_{j+1}) (S = G), and the row voltage there, per volt of
input, is prod_{l<=j} 1 / (1 + z_l). Writing it as 1 / (1 + rho_R) defines the exact single-line
loading rho_R = prod_{l<=j} (1 + z_l) - 1 = x_R + O(r^2); rho_C likewise along each column from
the sense end (for the column, by reciprocity, the fraction of a cell's current that reaches the
sense). rho = rho_R + rho_C resums all orders of the two single-line series; to second order
G / (1 + rho) = G (1 - h1 + r K_R(G x_R) + r K_C(G x_C) + 2 x_R x_C), i.e. the series above with
X replaced by G x_R x_C (exact for a constant array). Hence D = X - G x_R x_C is the whole
second-order coupling beyond the lines.

The model
---------
::

    W[i,j] = G[i,j] / (1 + sum_k a_k phi_k[i,j])  +  D[i,j] (b + b2 rho / (1 + c rho)) / (1 + c rho)^2

    phi = (x_R, x_C, d_R, d_C, rho_R rho_C, [rho_R rho_C rho, rho^3, (d_R + d_C) rho] / (1 + rho)),
    d_R = rho_R - x_R, d_C = rho_C - x_C    (the single-line corrections, second order and up)

The third-order features are damped by 1 / (1 + rho) so that a fit made on loadings up to a few
units does not run away beyond them (undamped cubics made the denominator negative at
rho ~ 20, 512 x 512 at 2.5 ohm; damped, it stays sane there, and the held-out error of the fit
is also lower). Beyond the loadings of its calibration the model warns
(:attr:`IRModel.rho_max`), and it refuses to return weights from a denominator <= 0.

The **nominal** (uncalibrated) coefficients are the first-order physics, as in version 1 of the
model: a = (1, 1, 0, ...), b = b2 = c = 0, i.e. W = G / (1 + x_R + x_C). The line-resummed
physics with no fit (:meth:`IRModel.physical`) is a = (1, 1, 1, 1, 0, ...), b = c = 1, b2 = 0:
exact to second order in r when X is exact. The fit (:func:`cosim.calibrate.irfit.fit_model`) by
default starts there and adjusts only the third-and-higher-order coefficients (the a of the
three damped features, and b2, c): the regime of large arrays, where the
loadings reach 1-2 and no finite series converges. rho_R rho_C is second order (its physical
coefficient is 0); it stays in the family so that a full fit (``free=None``) can use it.
Differential arrays: W is computed on the physical columns and each logical column is
W[:, 2j] - W[:, 2j+1].

Calibration file (JSON, ``schema: "xbar-cosim/ir-calibration"``, ``version: 2``)
---------------------------------------------------------------------------------
::

    {
      "schema": "xbar-cosim/ir-calibration",
      "version": 2,
      "model": "line-resummed",              # the model above
      "features": ["x_R", "x_C", ...],        # names of phi, in order
      "coefficients": {"a": [...], "b": 1.0, "b2": 0.0, "c": 1.0, "rho_max": 2.8},   # rho_max: fit range
      "nominal": {"a": [...], "b": 0.0, "b2": 0.0, "c": 0.0, "rho_max": null},
      "exact_cross_work": 32768,              # X exact when rows*cols*min(rows, cols) <= this (informative)
      "fit": {                                # what it was fitted on (informative)
        "sizes": [...], "r_wire": [...], "g_range": [gmin, gmax], "v_read": 0.2,
        "train_cases": n, "test_cases": n, "seed": s, "created": "ISO time"},
      "errors": [ {size, r_wire, uncal_rmse, cal_rmse, ...} ],   # held-out table, fractions of full scale
      "periphery": {"adc_bits": null, "dac_bits": null, "out_noise": 0.0}   # optional, for the export
    }

Readers accept version 2 only. Version 1 files (model "resummed-thevenin", 8 features plus b, c)
are refused with a message that says how to redo them: ``xbar calibrate`` on the same output
folder reuses the saved ngspice cases and only refits.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosim.read.kernels import ThreadScratch, compiled, line_sweeps_numpy
from cosim.sim.files import atomic_write
from models.errors import ParameterError, ShapeError
from netlists.crossbar import check_conductances, check_inputs

SCHEMA = "xbar-cosim/ir-calibration"
VERSION = 2
MODEL_NAME = "line-resummed"
FEATURES = ("x_R", "x_C", "d_R", "d_C", "rho_R*rho_C", "rho_R*rho_C*rho/(1+rho)", "rho^3/(1+rho)",
            "(d_R+d_C)*rho/(1+rho)")
#: The cross term X is computed exactly when rows * cols * min(rows, cols) is at most this
#: (its cost); above it, by its mean field T. 32**3: exact up to 32x32 (and e.g. 8x512).
EXACT_CROSS_WORK = 32 ** 3
#: A calibrated model warns when an array's largest line loading exceeds this times the largest
#: of its calibration data.
RANGE_MARGIN = 1.1


def k_row(y: np.ndarray) -> np.ndarray:
    """(K_R y)[i, j] = sum_j' y[i, j'] (min(j, j') + 1): the row paths from the driver at j = 0.

    Reference form of the kernels and line recursions below: :func:`ir_features` computes them
    all in one fused pass (:func:`_line_sweeps`), tested equal to these."""
    return np.cumsum(np.cumsum(y[:, ::-1], axis=1)[:, ::-1], axis=1)


def k_col(y: np.ndarray) -> np.ndarray:
    """(K_C y)[i, j] = sum_i' y[i', j] (N - max(i, i')): the column paths to the sense end."""
    # on the transposed, contiguous array: numpy's cumsum along axis 0 is 3x slower than along 1
    yt = np.ascontiguousarray(y.T)
    out = np.cumsum(np.cumsum(yt, axis=1)[:, ::-1], axis=1)[:, ::-1]
    return np.ascontiguousarray(out.T)


def _line_loading(a: np.ndarray) -> np.ndarray:
    """Exact single-line loading along axis 0 of ``a`` = r * (shunt conductances), shape (L, K):
    K independent chains, position 0 next to the driven (or sensed) end, position L-1 the open
    end. Returns rho with 1 / (1 + rho[l]) the line voltage at l per volt at the end.

    The recursion runs on w = 1 + z (z: the admittance seen at l looking toward the open end,
    times r): w[L-1] = 1 + a[L-1], w[l] = 2 + a[l] - 1 / w[l+1]; then 1 + rho = cumprod(w).
    """
    L = a.shape[0]
    w = np.empty_like(a)
    a2 = a + 2.0
    w[L - 1] = a[L - 1] + 1.0
    buf = np.empty_like(a[0])
    for l in range(L - 2, -1, -1):      # from the open end toward the driven one
        np.divide(1.0, w[l + 1], out=buf)
        np.subtract(a2[l], buf, out=w[l])
    for l in range(1, L):               # 1 + rho = cumprod(w) (numpy's cumprod is slower than this loop)
        np.multiply(w[l - 1], w[l], out=w[l])
    w -= 1.0
    return w


def line_loadings(G: np.ndarray, r_row: float, r_col: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact single-line loadings (rho_R, rho_C) of conductances ``G`` (rows, cols) [S]: each row
    alone (driven at column 0, cells to ground) and each column alone (sensed after the last row)."""
    G = np.asarray(G, dtype=float)
    aR = np.ascontiguousarray(G.T) * r_row if r_row > 0 else None
    aC = G[::-1] * r_col if r_col > 0 else None
    rR = _line_loading(aR).T if aR is not None else np.zeros_like(G)
    rC = _line_loading(aC)[::-1] if aC is not None else np.zeros_like(G)
    return np.ascontiguousarray(rR), np.ascontiguousarray(rC)


def cross_term(G: np.ndarray, r_row: float, r_col: float) -> np.ndarray:
    """The exact second-order cross term X (module docstring), O(rows x cols x min(rows, cols))
    time and memory: meant for small arrays."""
    G = np.asarray(G, dtype=float)
    N, M = G.shape
    if N > M:   # the array seen from its other family (rows <-> columns, both reversed): N x N x M stays small
        return cross_term(G.T[::-1, ::-1], r_col, r_row)[::-1, ::-1].T
    # K_R along j' by row-wise sums over the j' axis (contiguous N x N slices; not a matrix
    # product with the kernel: small BLAS calls are erratic on a busy machine)
    t = G.T[:, :, None] * G.T[:, None, :]           # [j', i', i] = G[i', j'] G[i, j']
    s = list(t)
    for j in range(M - 2, -1, -1):
        np.add(s[j], s[j + 1], out=s[j])
    for j in range(1, M):
        np.add(s[j - 1], s[j], out=s[j])            # [j, i', i] = sum_j' (min(j, j') + 1) G[i', j'] G[i, j']
    t *= G.T[:, :, None]                            # * G[i', j]
    idx = np.arange(N)
    t *= (N - np.maximum(idx[:, None], idx[None, :])).astype(float)   # * (N - max(i, i'))
    return (r_row * r_col) * t.sum(axis=1).T


def mean_field_cross(G: np.ndarray, x_C: np.ndarray, r_row: float) -> np.ndarray:
    """T = x_C r_row K_R(G gbar): X with G[i', j'] replaced by its column mean."""
    return x_C * (r_row * k_row(G * G.mean(axis=0)[None, :]))


@dataclass(frozen=True, eq=False)
class IRFeatures:
    """The dimensionless loadings of one conductance state (see the module docstring).

    ``D`` is X - G x_R x_C [S] (X exact or its mean field: ``exact_cross`` says which)."""

    x_R: np.ndarray
    x_C: np.ndarray
    rho_R: np.ndarray
    rho_C: np.ndarray
    D: np.ndarray
    exact_cross: bool = False

    @property
    def h1(self) -> np.ndarray:
        return self.x_R + self.x_C

    def phi(self) -> list[np.ndarray]:
        xR, xC, rR, rC = self.x_R, self.x_C, self.rho_R, self.rho_C
        dR, dC, rho = rR - xR, rC - xC, rR + rC
        q = rho / (1 + rho)
        return [xR, xC, dR, dC, rR * rC, rR * rC * q, rho ** 2 * q, (dR + dC) * q]


def release_work_arrays() -> None:
    """Free the calling thread's work arrays of the cheap model (they are made again on use)."""
    _SCRATCH.clear()


_SCRATCH = ThreadScratch()   # the per-state computation's work arrays


def _line_sweeps(G: np.ndarray, r_row: float, r_col: float, *, lines: bool, mean_field: bool,
                 scratch: bool = False) -> list:
    """All the line-wise work of :func:`ir_features` in two sweeps along one stacked axis.

    The row chains (``G.T``: position 0 at the driven column), the column chains (``G[::-1]``:
    position 0 at the sensed row) and, for the mean-field cross term, the rows of ``G gbar``
    stand side by side in one (max(rows, cols), ...) array, each chain zero-padded at its far
    end (a zero shunt beyond the open end changes no sum and no line voltage). One sweep from
    the far ends takes the reverse cumulative sums and the line voltages, one sweep back the
    cumulative sums: K_R, K_C, K_R(G gbar) and the exact single-line loadings of every line
    at once, four whole-width numpy calls per position instead of passes per quantity.

    Returns ``[x_R, x_C]`` + ``[rho_R, rho_C]`` if ``lines`` + ``[K_R(G gbar)]`` if
    ``mean_field``; with ``scratch`` they are per-thread work arrays, valid until the next call.
    """
    N, M = G.shape
    kern = compiled()
    if kern is not None:                # the same operations per chain, compiled, without the stacking
        return _line_sweeps_compiled(kern, np.ascontiguousarray(G), r_row, r_col, lines, mean_field, scratch)
    L = max(N, M)
    nk = N + M + (N if mean_field else 0)
    Y = _SCRATCH.get("Y", (L, nk))
    Y.fill(0.0)
    Y[:M, :N] = G.T
    Y[:N, N:N + M] = G[::-1]
    if mean_field:
        g2 = _SCRATCH.get("Ggbar", (N, M))
        np.multiply(G, G.mean(axis=0), out=g2)
        Y[:M, N + M:] = g2.T
    nl = N + M if lines else 0
    if nl:
        # line voltages u from the far (open) end: u[L-1] = u[L] = 1, u[l-1] = (2 + a[l]) u[l] - u[l+1]
        # (KCL; a = r * shunt, zero in the padding); u[-1] is the driven / sensed end, and
        # 1 + rho[l] = u[-1] / u[l]. The growing solution: stable, and bounded by 1 + rho.
        scale = np.empty(nl)
        scale[:N], scale[N:] = r_row, r_col
        a2 = _SCRATCH.get("a2", (L, nl))
        np.multiply(Y[:, :nl], scale, out=a2)
        a2 += 2.0
        u = _SCRATCH.get("u", (L + 2, nl))   # u[k] holds the voltage of node k - 1
        u[L + 1] = u[L] = 1.0
    none = Y[:, :0]                     # stands in for a2 and u without line recursions
    line_sweeps_numpy(Y, a2 if nl else none, u if nl else none, nl)

    def put(name, src):
        dst = _SCRATCH.get(name, (N, M)) if scratch else np.empty((N, M))
        np.copyto(dst, src)
        return dst

    out = [put("xR", Y[:M, :N].T), put("xC", Y[:N, N:N + M][::-1])]
    out[0] *= r_row
    out[1] *= r_col
    if nl:
        rho = _SCRATCH.get("rho", (L, nl))
        np.divide(u[0], u[1:L + 1], out=rho)
        rho -= 1.0
        out += [put("rR", rho[:M, :N].T), put("rC", rho[:N, N:N + M][::-1])]
    if mean_field:
        out.append(put("KT", Y[:M, N + M:].T))
    return out


def _line_sweeps_compiled(kern, G, r_row, r_col, lines, mean_field, scratch) -> list:
    """:func:`_line_sweeps` by :func:`cosim.read.kernels.ir_rows_k` / ``ir_cols_k`` on G's own
    layout (no transposed copies), the same numbers."""
    N, M = G.shape

    def new(name):
        return _SCRATCH.get(name, (N, M)) if scratch else np.empty((N, M))

    out = [new("xR"), new("xC")] + ([new("rR"), new("rC")] if lines else [])
    u_row, u_col = _SCRATCH.get("u_row", (4, M + 2)), _SCRATCH.get("u_col", (N + 2, M))
    kern["ir_rows_k"](G, float(r_row), out[0], out[2] if lines else out[0], lines, u_row)
    kern["ir_cols_k"](G, float(r_col), out[1], out[3] if lines else out[1], lines, u_col)
    if mean_field:                      # K_R(G gbar): the row sums of G gbar, unscaled
        g2 = _SCRATCH.get("Ggbar", (N, M))
        np.multiply(G, G.mean(axis=0), out=g2)
        out.append(new("KT"))
        kern["ir_rows_k"](g2, 1.0, out[-1], out[-1], False, u_row)
    return out


def ir_features(G: np.ndarray, r_row: float, r_col: float, *, cross: bool = True, lines: bool = True,
                exact_cross_work: int = EXACT_CROSS_WORK, _scratch: bool = False) -> IRFeatures:
    """Loadings of physical conductances ``G`` (rows, pcols) [S] with wire segments [ohm]
    (``cross=False`` skips the cross term and ``lines=False`` the line recursions: rho is then
    x, for coefficients that do not use them). ``_scratch`` (module-internal): the arrays are
    per-thread work arrays, overwritten by the next call."""
    G = np.asarray(G, dtype=float)
    if G.ndim != 2:
        raise ShapeError(f"conductances must be a 2-D array, got shape {G.shape}")
    N, M = G.shape
    want_cross = cross and r_row > 0 and r_col > 0
    exact = want_cross and N * M * min(N, M) <= exact_cross_work
    parts = _line_sweeps(G, r_row, r_col, lines=lines, mean_field=want_cross and not exact, scratch=_scratch)
    xR, xC = parts[0], parts[1]
    rR, rC = (parts[2], parts[3]) if lines else (xR, xC)
    D = _SCRATCH.get("D", (N, M)) if _scratch else np.empty((N, M))
    if want_cross:                      # D = X - G x_R x_C
        np.multiply(G, xR, out=D)
        D *= xC
        if exact:
            np.subtract(cross_term(G, r_row, r_col), D, out=D)
        else:                           # X = x_C r_row K_R(G gbar), the mean field
            K = parts[-1]
            K *= r_row
            K *= xC
            np.subtract(K, D, out=D)
    else:
        D.fill(0.0)
    return IRFeatures(xR, xC, rR, rC, D, exact)


@dataclass(frozen=True)
class IRModel:
    """Coefficients of the cheap model (see the module docstring).

    Attributes
    ----------
    a : tuple of float
        Denominator coefficients, one per name in :data:`FEATURES`.
    b, b2, c : float
        Weight, higher-order weight and saturation of the cross term D.
    rho_max : float or None
        Largest total line loading rho = rho_R + rho_C of the data the coefficients were fitted
        on (None: no fit, no range). More than 10 % beyond it (:data:`RANGE_MARGIN`) the model
        warns: the fitted higher-order terms are extrapolated.
    """

    a: tuple[float, ...] = (1.0, 1.0) + (0.0,) * (len(FEATURES) - 2)
    b: float = 0.0
    b2: float = 0.0
    c: float = 0.0
    rho_max: float | None = None

    #: Names of the entries of :meth:`to_vector`, in order.
    COEFFICIENTS = FEATURES + ("b", "b2", "c")

    def __post_init__(self) -> None:
        a = tuple(float(x) for x in self.a)
        if len(a) != len(FEATURES):
            raise ParameterError(f"a needs {len(FEATURES)} coefficients ({', '.join(FEATURES)}), got {len(a)}")
        scal = (self.b, self.b2, self.c)
        if not all(np.isfinite(a)) or not all(np.isfinite(float(s)) for s in scal):
            raise ParameterError("IR model coefficients must be finite")
        object.__setattr__(self, "a", a)
        for name in ("b", "b2", "c"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.rho_max is not None:
            if not (np.isfinite(self.rho_max) and self.rho_max > 0):
                raise ParameterError(f"rho_max must be a positive number or None, got {self.rho_max!r}")
            object.__setattr__(self, "rho_max", float(self.rho_max))

    @classmethod
    def nominal(cls) -> "IRModel":
        """First-order physics, no fit: W = G / (1 + x_R + x_C)."""
        return cls()

    @classmethod
    def physical(cls) -> "IRModel":
        """Line-resummed physics, no fit: W = G / (1 + rho_R + rho_C) + D / (1 + rho)^2 (second-order
        exact where X is exact)."""
        return cls((1.0, 1.0, 1.0, 1.0) + (0.0,) * (len(FEATURES) - 4), 1.0, 0.0, 1.0)

    @classmethod
    def from_vector(cls, p: np.ndarray) -> "IRModel":
        n = len(FEATURES)
        return cls(tuple(p[:n]), float(p[n]), float(p[n + 1]), float(p[n + 2]))

    def to_vector(self) -> np.ndarray:
        return np.array([*self.a, self.b, self.b2, self.c])

    @property
    def uses_lines(self) -> bool:
        return any(self.a[2:])

    @property
    def uses_cross(self) -> bool:
        return bool(self.b or self.b2)

    # -- the model ----------------------------------------------------------------------------
    def _check_range(self, top: float, bad: int, stacklevel: int = 3) -> None:
        """Refuse ``bad`` cells with a denominator not > 0; warn when the largest line loading
        ``top`` lies beyond the calibration's."""
        fitted = f", its calibration reaches {self.rho_max:.3g}" if self.rho_max is not None else ""
        if bad:
            raise ParameterError(
                f"the cheap IR model is outside its range: its denominator is <= 0 at {bad} "
                f"cells (largest line loading rho = {top:.3g}{fitted}); read this array with the exact "
                "solver (backend='fast') or recalibrate on larger arrays / wire resistances")
        if self.rho_max is not None and top > RANGE_MARGIN * self.rho_max:
            warnings.warn(f"cheap IR model used at a line loading rho = {top:.3g}, beyond the largest of its "
                          f"calibration ({self.rho_max:.3g}): the fitted terms are extrapolated; check against the "
                          "exact solver (backend='fast')", RuntimeWarning, stacklevel=stacklevel)

    def _compiled_weights(self, G: np.ndarray, r_row: float, r_col: float) -> np.ndarray | None:
        """:meth:`physical_weights` by compiled sweeps and one compiled pass (the same numbers), or
        None where numba is not there, the cross term is the exact one (small arrays) or a cell is bad."""
        kern, (N, M), a = compiled(), G.shape, self.a
        if kern is None or not (r_row > 0 and r_col > 0) or N * M * min(N, M) <= EXACT_CROSS_WORK:
            return None
        xR, xC, rR, rC, KT = _line_sweeps(G, r_row, r_col, lines=True, mean_field=True, scratch=True)
        cf = np.array([r_row, a[6], a[7], -a[7], a[5], a[4], a[0] - a[2], a[1] - a[3], *a[2:4], self.b, self.b2,
                       self.c])
        W, rho = np.empty(G.shape), _SCRATCH.get("pw0", G.shape)
        if kern["ir_combine_k"](np.ascontiguousarray(G), xR, xC, rR, rC, KT, cf, W, rho):
            return None                 # a denominator not > 0 (or not finite): the numpy path's verdict
        self._check_range(float(rho.max()), 0, stacklevel=4)
        return W

    def physical_weights(self, G: np.ndarray, r_row: float, r_col: float,
                         features: IRFeatures | None = None) -> np.ndarray:
        """Effective conductances (rows, pcols) [S] of physical cells ``G`` [S]."""
        G = np.asarray(G, dtype=float)
        if r_row == 0 and r_col == 0:
            return G.copy()
        full = self.uses_lines or self.uses_cross
        if features is None and self.uses_cross:
            W = self._compiled_weights(G, r_row, r_col)
            if W is not None:
                return W
        f = features if features is not None else ir_features(G, r_row, r_col, cross=self.uses_cross, lines=full,
                                                              _scratch=True)
        a = self.a
        xR, xC = f.x_R, f.x_C
        if not full:
            den = xR * a[0]
            den += xC * a[1]
            den += 1.0
            return np.divide(G, den, out=den)
        # the hot path: in place, on per-thread work arrays (see _Scratch); W is the one new array
        work = [_SCRATCH.get(f"pw{k}", G.shape) for k in range(3)]
        rR, rC = f.rho_R, f.rho_C
        rho = np.add(rR, rC, out=work[0])
        # 1 + sum_k a_k phi_k regrouped (d = rho - x): fewer whole-array operations.
        # = 1 + (a0 - a2) x_R + (a1 - a3) x_C + a2 rho_R + a3 rho_C + a4 rho_R rho_C
        #     + rho (a5 rho_R rho_C + a6 rho^2 + a7 (rho - x_R - x_C)) / (1 + rho)
        P = np.multiply(rR, rC, out=work[1]) if (a[4] or a[5]) else None
        den = W = np.empty(G.shape)
        tmp = work[2]
        np.multiply(rho, a[6], out=den)
        den += a[7]
        den *= rho
        for coef, arr in ((-a[7], xR), (-a[7], xC), (a[5], P)):
            if coef:
                den += np.multiply(arr, coef, out=tmp)
        den *= rho
        np.add(rho, 1.0, out=tmp)
        den /= tmp
        for coef, arr in ((a[4], P), (a[0] - a[2], xR), (a[1] - a[3], xC), (a[2], rR), (a[3], rC)):
            if coef:
                den += np.multiply(arr, coef, out=tmp)
        den += 1.0
        self._check_range(float(rho.max()), int(np.count_nonzero(~(den > 0))))
        np.divide(G, den, out=W)
        if self.uses_cross:             # + D (b + b2 rho / s) / s^2, s = 1 + c rho
            s = np.multiply(rho, self.c, out=work[1])
            s += 1.0
            k = np.divide(rho, s, out=tmp)
            k *= self.b2
            k += self.b
            s *= s
            k /= s
            k *= f.D
            W += k
        return W

    def effective_weights(self, spec, G: np.ndarray) -> np.ndarray:
        """Logical effective weights (rows, cols) [S] for a :class:`~netlists.crossbar.CrossbarSpec`
        (``G`` checked against it: shape, finite, positive)."""
        W = self.physical_weights(check_conductances(spec, G), spec.r_row, spec.r_col)
        if spec.cell == "diff":
            return W[:, 0::2] - W[:, 1::2]
        return W

    def read(self, spec, G: np.ndarray, V: np.ndarray, *, transpose: bool = False) -> np.ndarray:
        """Currents (batch, cols) forward or (batch, rows) transposed [A] for inputs V [V]."""
        W = self.effective_weights(spec, G)
        V = check_inputs(spec, V, transpose)
        return V @ W.T if transpose else V @ W

    def to_dict(self) -> dict:
        return {"a": list(self.a), "b": self.b, "b2": self.b2, "c": self.c, "rho_max": self.rho_max}

    @classmethod
    def from_dict(cls, d: dict) -> "IRModel":
        try:
            return cls(tuple(d["a"]), d.get("b", 0.0), d.get("b2", 0.0), d.get("c", 0.0), d.get("rho_max"))
        except (KeyError, TypeError) as exc:
            raise ParameterError(f"IR model coefficients: {exc!r} (need a list 'a' and numbers 'b', 'b2', 'c')") from None


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
                "exact_cross_work": EXACT_CROSS_WORK,
                "fit": self.fit, "errors": list(self.errors), "periphery": self.periphery}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Calibration":
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else None
            raise ParameterError(f"not an xbar-cosim IR calibration (schema {found!r}, expected {SCHEMA!r})")
        if d.get("version") == 1:
            raise ParameterError(
                f"calibration version 1 (model {d.get('model')!r}) is from an older xbar-cosim whose IR model this "
                f"reader no longer has (this reader: version {VERSION}, model {MODEL_NAME!r}); re-run `xbar calibrate` "
                "with the same --out folder: it reuses the saved ngspice cases and only refits")
        if d.get("version") != VERSION:
            raise ParameterError(f"calibration version {d.get('version')!r} is not supported (this reader: {VERSION})")
        if d.get("model") != MODEL_NAME or list(d.get("features", [])) != list(FEATURES):
            raise ParameterError(f"calibration is for model {d.get('model')!r} with features {d.get('features')}, "
                                 f"this reader has {MODEL_NAME!r} with {list(FEATURES)}")
        try:
            return cls(IRModel.from_dict(d["coefficients"]), dict(d.get("fit", {})), tuple(d.get("errors", ())),
                       dict(d.get("periphery", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(f"calibration is damaged: {type(exc).__name__} {exc} (its 'coefficients', 'fit', "
                                 "'errors' or 'periphery'); run `xbar calibrate` again") from None

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, json.dumps(self.to_json(), indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ParameterError(f"calibration file {p} is not valid JSON: {exc}") from None
        return cls.from_json(d)

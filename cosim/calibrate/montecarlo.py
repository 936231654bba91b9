"""Monte Carlo of hardware non-idealities: sampled array instances (device-to-device variation,
stuck cells, op-amp and ADC offsets), carried to MVM error and to a trained network's accuracy.

Layer: cosim.calibrate. One vocabulary, :class:`Variation` (units in the field names), serves
every caller: ``xbar calibrate`` (the block fits' sweep over sigma, and ``--monte-carlo N`` on
the calibrated IR-drop model), ``xbar train --mc-*`` and ``scripts/mc_accuracy.py``.

``monte_carlo_mvm(size, r_wire, variation)``
    Per run ``r`` a :class:`FaultMap` drawn from ``default_rng([seed, 1, r])`` perturbs one
    fixed differential array (weights and inputs from ``default_rng([seed, 0])``), read on the
    fast or the calibrated backend; the error against the ideal product ``V (G+ - G-)`` of the
    target conductances is reported as a fraction of the largest ideal column current over the
    batch. The first ``spice_runs`` instances are re-read in ngspice (spot checks).
``monte_carlo_accuracy(net, X, y, variation)``
    The same instances carried to a trained network's test accuracy: per run ``r``, every tile
    of every layer gets its own fault map from ``default_rng([seed, 2, r, layer, tile])``
    (conductances perturbed as programmed, op-amp offsets as a column current
    ``-v_os sum_i G_ij`` on forward reads), the test set is read, and the network is restored.

Each result is a JSON-able dict (lists and floats only). A :class:`FaultMap` serialises with
:meth:`FaultMap.to_dict` / :meth:`FaultMap.from_dict` or to ``.npz`` (:meth:`FaultMap.save` /
:meth:`FaultMap.load`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cosim.sim.files import atomic_path
from cosim.read.mvm import Crossbar
from cosim.write.mapping import MappingSpec, to_conductances
from models.errors import ParameterError, ShapeError, check_positive
from netlists.crossbar import CrossbarSpec, interleave

__all__ = ["Variation", "MonteCarloRuns", "FaultMap", "draw_fault_map", "fault_map_for_run", "monte_carlo_mvm",
           "monte_carlo_accuracy"]


@dataclass(frozen=True)
class Variation:
    """What a Monte Carlo run perturbs (every draw is made whatever the values, so one seed
    gives the same cells stuck whatever the sigma).

    Attributes
    ----------
    d2d_sigma : float
        Device-to-device variation: the std of ln G [-] (a lognormal factor, median 1, on every
        programmed conductance, clipped to the device range).
    stuck_frac : float
        Fraction of cells stuck [-], half at g_min and half at g_max.
    opamp_offset_sigma_v : float
        Std of each physical column's op-amp input offset [V] (its virtual ground sits there).
    adc_offset_sigma_fs : float
        Std of each output's offset, a fraction of the full-scale current [-].
    """

    d2d_sigma: float = 0.0
    stuck_frac: float = 0.0
    opamp_offset_sigma_v: float = 0.0
    adc_offset_sigma_fs: float = 0.0

    def __post_init__(self) -> None:
        for f in ("d2d_sigma", "opamp_offset_sigma_v", "adc_offset_sigma_fs"):
            v = getattr(self, f)
            if isinstance(v, bool):
                raise ParameterError(f"Monte Carlo {f} must be a number, got {v!r}")
            check_positive(f"Monte Carlo {f}", v, allow_zero=True)
        if isinstance(self.stuck_frac, bool) or not 0 <= float(self.stuck_frac) <= 1:
            raise ParameterError(f"Monte Carlo stuck_frac must be in [0, 1], got {self.stuck_frac!r}")

    def to_dict(self) -> dict:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class MonteCarloRuns:
    """A Monte Carlo of a trained network's accuracy: ``runs`` instances of ``variation``,
    instance ``r`` of layer ``k``, tile ``i`` drawn from ``default_rng([seed, 2, r, k, i])``."""

    variation: Variation
    runs: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.variation, Variation):
            raise ParameterError(f"variation must be a Variation, got {type(self.variation).__name__}")
        check_runs(self.runs)


def check_runs(runs) -> int:
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 1:
        raise ParameterError(f"Monte Carlo runs must be an integer >= 1, got {runs!r}")
    return int(runs)


@dataclass(frozen=True, eq=False)
class FaultMap:
    """One sampled array instance: what a device/periphery Monte Carlo run perturbs.

    Attributes
    ----------
    g_factor : ndarray (rows, pcols)
        Device-to-device multiplier on every programmed conductance [-] (lognormal, median 1).
    stuck : ndarray of int8 (rows, pcols)
        0 free, -1 stuck at g_min, +1 stuck at g_max.
    v_os : ndarray (pcols,)
        Input offset of each physical column's op-amp [V]: the virtual ground sits at ``v_os``.
    out_offset : ndarray (cols,)
        Output (ADC) offset of each logical column, as a fraction of the full-scale current [-].
    """

    g_factor: np.ndarray
    stuck: np.ndarray
    v_os: np.ndarray
    out_offset: np.ndarray

    def __post_init__(self) -> None:
        gf, st = np.asarray(self.g_factor), np.asarray(self.stuck)
        if gf.ndim != 2 or st.shape != gf.shape:
            raise ShapeError(f"g_factor {gf.shape} and stuck {st.shape} must be equal 2-D arrays")
        if np.any(gf <= 0) or not np.isfinite(gf).all():
            raise ParameterError("g_factor must be finite and > 0")
        if not np.isin(st, (-1, 0, 1)).all():
            raise ParameterError("stuck holds only -1, 0, +1")
        if np.asarray(self.v_os).shape != (gf.shape[1],):
            raise ShapeError(f"v_os must have one value per physical column ({gf.shape[1]})")

    def apply(self, G, g_min: float, g_max: float) -> np.ndarray:
        """Conductances [S] a programmed array ``G`` actually holds: ``G g_factor`` clipped to
        [g_min, g_max], stuck cells at their bound."""
        G = np.asarray(G, float)
        if G.shape != self.g_factor.shape:
            raise ShapeError(f"G has shape {G.shape}, the fault map {self.g_factor.shape}")
        return apply_cell_faults(G, self.g_factor, self.stuck, g_min, g_max)

    def column_offset_current(self, G) -> np.ndarray:
        """Per-physical-column current change [A] from the virtual grounds at ``v_os``:
        ``-v_os_j sum_i G_ij`` (first order: wire drops of this small term neglected)."""
        return -self.v_os * np.asarray(G, float).sum(axis=0)

    def to_dict(self) -> dict:
        return {"g_factor": np.asarray(self.g_factor).tolist(), "stuck": np.asarray(self.stuck).tolist(),
                "v_os": np.asarray(self.v_os).tolist(), "out_offset": np.asarray(self.out_offset).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "FaultMap":
        return cls(np.asarray(d["g_factor"], float), np.asarray(d["stuck"], np.int8),
                   np.asarray(d["v_os"], float), np.asarray(d["out_offset"], float))

    def save(self, path) -> Path:
        """Write an ``.npz`` a training run can load (:meth:`load`)."""
        path = Path(path)
        path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, g_factor=self.g_factor, stuck=self.stuck, v_os=self.v_os, out_offset=self.out_offset)
        return path

    @classmethod
    def load(cls, path) -> "FaultMap":
        with np.load(path) as z:
            return cls(z["g_factor"], z["stuck"].astype(np.int8), z["v_os"], z["out_offset"])


def draw_fault_map(g_shape: tuple[int, int], rng: np.random.Generator, variation: Variation, *,
                   cols: int | None = None) -> FaultMap:
    """Draw one instance. The draws happen in a fixed order whatever the values: lognormal
    factors ``exp(d2d_sigma z)``, one uniform per cell that puts a fraction ``stuck_frac / 2``
    at g_min and as many at g_max, op-amp offsets N(0, opamp_offset_sigma_v) [V] per physical
    column, output offsets N(0, adc_offset_sigma_fs) per logical column (``cols``, default
    ``pcols // 2``: a differential array)."""
    rows, pcols = g_shape
    cols = pcols // 2 if cols is None else cols
    v = variation
    gf = np.exp(v.d2d_sigma * rng.standard_normal(g_shape))
    u = rng.random(g_shape)
    half = v.stuck_frac / 2
    stuck = np.where(u < half, -1, np.where(u < 2 * half, 1, 0)).astype(np.int8)
    v_os = v.opamp_offset_sigma_v * rng.standard_normal(pcols)
    out_off = v.adc_offset_sigma_fs * rng.standard_normal(cols)
    return FaultMap(gf, stuck, v_os, out_off)


def apply_cell_faults(G: np.ndarray, g_factor: np.ndarray, stuck: np.ndarray, g_min: float,
                      g_max: float) -> np.ndarray:
    """``G g_factor`` clipped to [g_min, g_max], stuck cells at their bound [S]."""
    out = np.clip(G * g_factor, g_min, g_max)
    return np.where(stuck < 0, g_min, np.where(stuck > 0, g_max, out))


def fault_map_for_run(g_shape: tuple[int, int], seed: int, run: int, variation: Variation, **kw) -> FaultMap:
    """The instance that run ``run`` of ``monte_carlo_mvm(..., seed=seed)`` samples
    (``default_rng([seed, 1, run])``; ``kw`` as :func:`draw_fault_map`)."""
    return draw_fault_map(g_shape, np.random.default_rng([seed, 1, run]), variation, **kw)


def monte_carlo_mvm(size: int | tuple[int, int], r_wire: float, variation: Variation = Variation(), *,
                    runs: int = 50, seed: int = 0, g_min: float = 1e-6, g_max: float = 25e-6,
                    v_read: float = 0.2, batch: int = 16, backend: str = "fast", ir_model=None,
                    spice_runs: int = 0, engine=None, keep_errors: bool = True) -> dict:
    """Monte Carlo of MVM error over sampled array instances.

    Parameters
    ----------
    size : int or (rows, cols)
        Logical array size (a differential array: ``2 cols`` physical columns).
    r_wire : float
        Row and column wire resistance per cell segment [ohm].
    variation : Variation
    runs : int
        Instances; run ``r`` draws from ``default_rng([seed, 1, r])`` (weights and inputs come
        from ``default_rng([seed, 0])``, the same for every run).
    g_min, g_max : float
        Device range [S]; weights uniform in [-1, 1] map to pairs in it.
    v_read : float
        Full-scale input [V]; inputs are uniform in [-v_read, v_read].
    batch : int
        Input vectors per run.
    backend : "fast" or "calibrated"
        The read of every instance: the exact fast solve, or the calibrated IR-drop model
        ``ir_model`` (an :class:`cosim.read.irmodel.IRModel` or ``Calibration``).
    spice_runs : int
        The first ``spice_runs`` instances are also read with the spice backend.

    Returns
    -------
    dict
        ``ref_a`` (largest ideal |column current| over the batch: the error reference),
        ``wire_only`` (RMS error of the unperturbed array, fraction of ``ref_a``),
        ``rms`` = {"mean", "std", "p95"} of the per-run RMS error, ``abs_p95`` (pooled |error|),
        ``max``, ``per_run_rms`` (list), ``spice_checks`` (per checked run: max |spice - read|
        as a fraction of ``ref_a``), the variation and parameters, ``elapsed_s``.
    """
    rows, cols = (size, size) if np.isscalar(size) else tuple(size)
    runs = check_runs(runs)
    if backend not in ("fast", "calibrated") or (backend == "calibrated") != (ir_model is not None):
        raise ParameterError("backend must be 'fast', or 'calibrated' with ir_model (and ir_model only with it)")
    t0 = time.perf_counter()
    spec = CrossbarSpec(rows=int(rows), cols=int(cols), cell="diff", r_row=r_wire, r_col=r_wire, v_read=v_read)
    base = np.random.default_rng([seed, 0])
    W = base.uniform(-1, 1, (rows, cols))
    V = base.uniform(-v_read, v_read, (batch, rows))
    gp, gm, _ = to_conductances(W, MappingSpec(g_min=g_min, g_max=g_max, w_max=1.0))
    G0 = interleave(gp, gm)
    ideal = V @ (gp - gm)
    ref = float(np.abs(ideal).max())
    i_fs = rows * v_read * (g_max - g_min)
    read = dict(backend=backend, calibration=ir_model)
    wire = (Crossbar(spec, G0).read(V, **read) - ideal) / ref
    per_run, pooled, checks = [], [], []
    for r in range(runs):
        fm = fault_map_for_run(spec.g_shape, seed, r, variation, cols=cols)
        G = fm.apply(G0, g_min, g_max)
        xb = Crossbar(spec, G, engine=engine)
        I_read = xb.read(V, **read)
        off = fm.column_offset_current(G)
        I = I_read + (off[0::2] - off[1::2])[None, :] + fm.out_offset[None, :] * i_fs
        e = (I - ideal) / ref
        per_run.append(float(np.sqrt(np.mean(e ** 2))))
        pooled.append(np.abs(e).ravel())
        if r < spice_runs:
            I_sp = xb.read(V, backend="spice")
            checks.append({"run": r, "max_abs_diff_frac": float(np.abs(I_sp - I_read).max() / ref)})
    per_run_a = np.asarray(per_run)
    pooled_a = np.concatenate(pooled)
    return {"rows": int(rows), "cols": int(cols), "r_wire": float(r_wire), "runs": runs, "seed": seed,
            **variation.to_dict(), "backend": backend, "g_min": g_min, "g_max": g_max, "v_read": v_read,
            "batch": batch, "ref_a": ref, "full_scale_a": i_fs,
            "wire_only": float(np.sqrt(np.mean(wire ** 2))),
            "rms": {"mean": float(per_run_a.mean()), "std": float(per_run_a.std()),
                    "p95": float(np.percentile(per_run_a, 95))},
            "abs_p95": float(np.percentile(pooled_a, 95)), "max": float(pooled_a.max()),
            "per_run_rms": per_run_a.tolist() if keep_errors else [],
            "abs_errors_sample": np.sort(pooled_a)[:: max(1, pooled_a.size // 2000)].tolist() if keep_errors else [],
            "spice_checks": checks, "elapsed_s": time.perf_counter() - t0}


def check_accuracy_run(net, backend: str) -> None:
    """What :func:`monte_carlo_accuracy` refuses, checked before a long run."""
    if backend == "software":
        raise ParameterError("Monte Carlo perturbs the arrays: read them on ideal, fast, spice or calibrated, "
                             "not software")
    if any(hasattr(layer, "unit_state") for layer in net.layers):
        raise ParameterError("Monte Carlo of the 2pcm3t1c unit cell is not supported yet (its 3T1C arrays and "
                             "reads are not perturbed): use cell='pair'")


def monte_carlo_accuracy(net, X: np.ndarray, y: np.ndarray, variation: Variation, *, runs: int = 20,
                         seed: int = 0, backend: str = "fast") -> dict:
    """Test accuracy of a trained network (``net.layers`` of analog layers with tiles,
    ``net.accuracy(X, y, backend)``) over ``runs`` sampled hardware instances (ADC offsets do
    not apply: the layers quantise themselves); the network is left as it was. Returns the
    nominal accuracy, per-run accuracies and their statistics."""
    runs = check_runs(runs)
    check_accuracy_run(net, backend)
    nominal, _ = net.accuracy(X, y, backend)
    saved = [[(t.g_plus.copy(), t.g_minus.copy()) for t in layer.tiles] for layer in net.layers]
    accs = []
    t0 = time.perf_counter()
    try:
        for r in range(runs):
            for k, layer in enumerate(net.layers):
                m = layer.cfg.mapping
                for i, t in enumerate(layer.tiles):
                    gp, gm = saved[k][i]
                    G = interleave(gp, gm)
                    fm = draw_fault_map(G.shape, np.random.default_rng([seed, 2, r, k, i]), variation)
                    Gf = fm.apply(G, m.g_min, m.g_max)
                    t.g_plus, t.g_minus = Gf[:, 0::2], Gf[:, 1::2]
                    off = fm.column_offset_current(Gf)
                    t.out_offset = off[0::2] - off[1::2] if variation.opamp_offset_sigma_v > 0 else None
                    t.changed()
            accs.append(net.accuracy(X, y, backend)[0])
    finally:
        for layer, tiles in zip(net.layers, saved):
            for t, (gp, gm) in zip(layer.tiles, tiles):
                t.g_plus, t.g_minus, t.out_offset = gp, gm, None
                t.changed()
    a = np.asarray(accs)
    return {"runs": runs, "seed": seed, **variation.to_dict(), "backend": backend, "nominal_accuracy": nominal,
            "accuracies": a.tolist(), "mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
            "p05": float(np.percentile(a, 5)), "elapsed_s": time.perf_counter() - t0}

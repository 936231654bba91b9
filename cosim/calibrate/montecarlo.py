"""Monte Carlo of MVM errors over sampled array instances (device variation, stuck cells, offsets).

Layer: cosim. Imports ``models``, ``netlists`` and ``cosim``; the crossbar and mapping modules
only inside :func:`monte_carlo_mvm` (``import cosim`` stays cheap).

``monte_carlo_accuracy(net, X, y)``
    The same instances carried to a trained network's test accuracy: per run ``r``, every tile
    of every layer gets its own fault map from ``default_rng([seed, 2, r, layer, tile])``
    (conductances perturbed as programmed, op-amp offsets as a column current
    ``-v_os sum_i G_ij`` on forward reads), the test set is read, and the network is restored.
    ``xbar train --mc-runs N`` runs it on the trained network.

``monte_carlo_mvm(size, r_wire)``
    Per run ``r`` a :class:`FaultMap` drawn from ``default_rng([seed, 1, r])`` (lognormal
    device-to-device factor on G, stuck-at-Gmin / Gmax cells, per-column op-amp offset, ADC
    output offset) perturbs one fixed differential array, read on the fast backend; the error
    against the ideal product ``V (G+ - G-)`` of the target conductances is reported as a
    fraction of the largest ideal column current over the batch. A few runs are re-read with
    the spice backend (spot checks). :func:`draw_fault_map` / :meth:`FaultMap.apply` are the
    helper a training run can use to load a sampled instance onto its own conductances
    (:func:`fault_map_for_run` gives the instance of one run).

JSON: each result is a JSON-able dict (lists and floats only); the list
``fits.json["monte_carlo"]`` of :func:`cosim.calibrate.blocks.fit_all` holds one per sigma. A
:class:`FaultMap` serialises with :meth:`FaultMap.to_dict` (``g_factor``, ``stuck``, ``v_os``,
``out_offset`` as nested lists; :meth:`FaultMap.from_dict` reads it back) or to ``.npz``
(:meth:`FaultMap.save` / :meth:`FaultMap.load`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import ParameterError, ShapeError, check_positive

__all__ = ["FaultMap", "draw_fault_map", "fault_map_for_run", "monte_carlo_mvm", "monte_carlo_accuracy"]


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
        np.savez(path, g_factor=self.g_factor, stuck=self.stuck, v_os=self.v_os, out_offset=self.out_offset)
        return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")

    @classmethod
    def load(cls, path) -> "FaultMap":
        with np.load(path) as z:
            return cls(z["g_factor"], z["stuck"].astype(np.int8), z["v_os"], z["out_offset"])


def draw_cell_faults(g_shape: tuple[int, int], rng: np.random.Generator, sigma_d2d: float, stuck_min: float,
                     stuck_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell draws, in this order: lognormal factors ``exp(sigma_d2d z)``, then one uniform per
    cell that puts a fraction ``stuck_min`` at g_min (-1) and ``stuck_max`` at g_max (+1)."""
    gf = np.exp(sigma_d2d * rng.standard_normal(g_shape))
    u = rng.random(g_shape)
    stuck = np.where(u < stuck_min, -1, np.where(u < stuck_min + stuck_max, 1, 0)).astype(np.int8)
    return gf, stuck


def apply_cell_faults(G: np.ndarray, g_factor: np.ndarray, stuck: np.ndarray, g_min: float,
                      g_max: float) -> np.ndarray:
    """``G g_factor`` clipped to [g_min, g_max], stuck cells at their bound [S]."""
    out = np.clip(G * g_factor, g_min, g_max)
    return np.where(stuck < 0, g_min, np.where(stuck > 0, g_max, out))


def draw_fault_map(g_shape: tuple[int, int], rng: np.random.Generator, *, sigma_d2d: float = 0.0,
                   stuck_frac: float = 0.0, opamp_offset_sigma: float = 0.0,
                   adc_offset_sigma: float = 0.0, cols: int | None = None) -> FaultMap:
    """Draw one instance. The draws happen in a fixed order whatever the parameters (so one
    seed gives the same cells stuck whatever sigma): lognormal factors ``exp(sigma_d2d z)``,
    stuck cells (a fraction ``stuck_frac`` of all cells, half at g_min and half at g_max),
    op-amp offsets N(0, opamp_offset_sigma) [V] per physical column, output offsets
    N(0, adc_offset_sigma) [fraction of full scale] per logical column (``cols``, default
    ``pcols // 2``: a differential array)."""
    check_positive("sigma_d2d", sigma_d2d, allow_zero=True)
    check_positive("opamp_offset_sigma", opamp_offset_sigma, allow_zero=True)
    check_positive("adc_offset_sigma", adc_offset_sigma, allow_zero=True)
    if not 0 <= stuck_frac <= 1:
        raise ParameterError(f"stuck_frac must be in [0, 1], got {stuck_frac!r}")
    rows, pcols = g_shape
    cols = pcols // 2 if cols is None else cols
    gf, stuck = draw_cell_faults(g_shape, rng, sigma_d2d, stuck_frac / 2, stuck_frac / 2)
    v_os = opamp_offset_sigma * rng.standard_normal(pcols)
    out_off = adc_offset_sigma * rng.standard_normal(cols)
    return FaultMap(gf, stuck, v_os, out_off)


def fault_map_for_run(g_shape: tuple[int, int], seed: int, run: int, **kw) -> FaultMap:
    """The instance that run ``run`` of ``monte_carlo_mvm(..., seed=seed)`` samples
    (``default_rng([seed, 1, run])``; ``kw`` as :func:`draw_fault_map`): load it into a
    training run with :meth:`FaultMap.apply` on the conductances it programs."""
    return draw_fault_map(g_shape, np.random.default_rng([seed, 1, run]), **kw)


def monte_carlo_mvm(size: int | tuple[int, int], r_wire: float, *, runs: int = 50, seed: int = 0,
                    sigma_d2d: float = 0.0, stuck_frac: float = 0.0, opamp_offset_sigma: float = 0.0,
                    adc_offset_sigma: float = 0.0, g_min: float = 1e-6, g_max: float = 25e-6,
                    v_read: float = 0.2, batch: int = 16, spice_runs: int = 0, engine=None,
                    keep_errors: bool = True) -> dict:
    """Monte Carlo of MVM error over sampled array instances (fast backend).

    Parameters
    ----------
    size : int or (rows, cols)
        Logical array size (a differential array: ``2 cols`` physical columns).
    r_wire : float
        Row and column wire resistance per cell segment [ohm].
    runs : int
        Instances; run ``r`` draws from ``default_rng([seed, 1, r])`` (weights and inputs come
        from ``default_rng([seed, 0])``, the same for every run).
    sigma_d2d : float
        Std of ln G (lognormal device-to-device variation) [-].
    stuck_frac : float
        Fraction of stuck cells, half at g_min, half at g_max.
    opamp_offset_sigma : float
        Std of each column op-amp's input offset [V].
    adc_offset_sigma : float
        Std of each output's offset, fraction of the full-scale current ``rows v_read (g_max -
        g_min)`` [-].
    g_min, g_max : float
        Device range [S]; weights uniform in [-1, 1] map to pairs in it.
    v_read : float
        Full-scale input [V]; inputs are uniform in [-v_read, v_read].
    batch : int
        Input vectors per run.
    spice_runs : int
        The first ``spice_runs`` instances are also read with the spice backend.

    Returns
    -------
    dict
        ``ref_a`` (largest ideal |column current| over the batch: the error reference),
        ``wire_only`` (RMS error of the unperturbed array, fraction of ``ref_a``),
        ``rms`` = {"mean", "std", "p95"} of the per-run RMS error, ``abs_p95`` (pooled |error|),
        ``max``, ``per_run_rms`` (list), ``spice_checks`` (per checked run: max |spice - fast|
        as a fraction of ``ref_a``), parameters, ``elapsed_s``.
    """
    from cosim.write.mapping import MappingSpec, to_conductances
    from cosim.read.mvm import Crossbar
    from netlists.crossbar import CrossbarSpec, interleave

    rows, cols = (size, size) if np.isscalar(size) else tuple(size)
    if runs < 1:
        raise ParameterError(f"runs must be >= 1, got {runs}")
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
    wire = (Crossbar(spec, G0).read(V, backend="fast") - ideal) / ref
    per_run, pooled, checks = [], [], []
    for r in range(runs):
        fm = fault_map_for_run(spec.g_shape, seed, r, sigma_d2d=sigma_d2d, stuck_frac=stuck_frac,
                               opamp_offset_sigma=opamp_offset_sigma, adc_offset_sigma=adc_offset_sigma,
                               cols=cols)
        G = fm.apply(G0, g_min, g_max)
        xb = Crossbar(spec, G, engine=engine)
        I_fast = xb.read(V, backend="fast")
        off = fm.column_offset_current(G)
        I = I_fast + (off[0::2] - off[1::2])[None, :] + fm.out_offset[None, :] * i_fs
        e = (I - ideal) / ref
        per_run.append(float(np.sqrt(np.mean(e ** 2))))
        pooled.append(np.abs(e).ravel())
        if r < spice_runs:
            I_sp = xb.read(V, backend="spice")
            checks.append({"run": r, "max_abs_diff_frac": float(np.abs(I_sp - I_fast).max() / ref)})
    per_run_a = np.asarray(per_run)
    pooled_a = np.concatenate(pooled)
    return {"rows": int(rows), "cols": int(cols), "r_wire": float(r_wire), "runs": runs, "seed": seed,
            "sigma_d2d": sigma_d2d, "stuck_frac": stuck_frac, "opamp_offset_sigma": opamp_offset_sigma,
            "adc_offset_sigma": adc_offset_sigma, "g_min": g_min, "g_max": g_max, "v_read": v_read,
            "batch": batch, "ref_a": ref, "full_scale_a": i_fs,
            "wire_only": float(np.sqrt(np.mean(wire ** 2))),
            "rms": {"mean": float(per_run_a.mean()), "std": float(per_run_a.std()),
                    "p95": float(np.percentile(per_run_a, 95))},
            "abs_p95": float(np.percentile(pooled_a, 95)), "max": float(pooled_a.max()),
            "per_run_rms": per_run_a.tolist() if keep_errors else [],
            "abs_errors_sample": np.sort(pooled_a)[:: max(1, pooled_a.size // 2000)].tolist() if keep_errors else [],
            "spice_checks": checks, "elapsed_s": time.perf_counter() - t0}


MC_KEYS = ("runs", "seed", "sigma_d2d", "stuck_frac", "opamp_offset_sigma")


def check_monte_carlo(mc: dict) -> dict:
    """Validate the settings of :func:`monte_carlo_accuracy` (before a long run, not after)."""
    if not isinstance(mc, dict):
        raise ParameterError(f"monte_carlo must be a dict of {MC_KEYS}, got {type(mc).__name__}")
    unknown = sorted(set(mc) - set(MC_KEYS))
    if unknown:
        raise ParameterError(f"monte_carlo: unknown setting(s) {unknown} (known: {MC_KEYS})")
    runs = mc.get("runs", 20)
    if not isinstance(runs, (int, np.integer)) or runs < 1:
        raise ParameterError(f"monte_carlo runs must be an integer >= 1, got {runs!r}")
    for k in ("sigma_d2d", "opamp_offset_sigma"):
        v = mc.get(k, 0.0)
        if not (np.isfinite(v) and v >= 0):
            raise ParameterError(f"monte_carlo {k} must be finite and >= 0, got {v!r}")
    if not 0 <= mc.get("stuck_frac", 0.0) <= 1:
        raise ParameterError(f"monte_carlo stuck_frac must be in [0, 1], got {mc.get('stuck_frac')!r}")
    return mc


def monte_carlo_accuracy(net, X: np.ndarray, y: np.ndarray, *, runs: int = 20, seed: int = 0,
                         sigma_d2d: float = 0.0, stuck_frac: float = 0.0, opamp_offset_sigma: float = 0.0,
                         backend: str = "fast") -> dict:
    """Test accuracy of a trained network (``net.layers`` of :class:`cosim.train.layers.AnalogLayer`,
    ``net.accuracy(X, y, backend)``) over ``runs`` sampled hardware instances; the network is
    left as it was. Returns the nominal accuracy, per-run accuracies and their statistics."""
    from netlists.crossbar import interleave
    check_monte_carlo({"runs": runs, "sigma_d2d": sigma_d2d, "stuck_frac": stuck_frac,
                       "opamp_offset_sigma": opamp_offset_sigma})
    if backend == "software":
        raise ParameterError("Monte Carlo perturbs the arrays: read them on ideal, fast, spice or calibrated, "
                             "not software")
    if any(hasattr(layer, "unit_state") for layer in net.layers):
        raise ParameterError("Monte Carlo of the 2pcm3t1c unit cell is not supported yet (its 3T1C arrays and "
                             "reads are not perturbed): use cell='pair'")
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
                    fm = draw_fault_map(G.shape, np.random.default_rng([seed, 2, r, k, i]), sigma_d2d=sigma_d2d,
                                        stuck_frac=stuck_frac, opamp_offset_sigma=opamp_offset_sigma)
                    Gf = fm.apply(G, m.g_min, m.g_max)
                    t.g_plus, t.g_minus = Gf[:, 0::2], Gf[:, 1::2]
                    off = fm.column_offset_current(Gf)
                    t.out_offset = off[0::2] - off[1::2] if opamp_offset_sigma > 0 else None
                    t.changed()
            accs.append(net.accuracy(X, y, backend)[0])
    finally:
        for layer, tiles in zip(net.layers, saved):
            for t, (gp, gm) in zip(layer.tiles, tiles):
                t.g_plus, t.g_minus, t.out_offset = gp, gm, None
                t.changed()
    a = np.asarray(accs)
    return {"runs": runs, "seed": seed, "sigma_d2d": sigma_d2d, "stuck_frac": stuck_frac,
            "opamp_offset_sigma": opamp_offset_sigma, "backend": backend, "nominal_accuracy": nominal,
            "accuracies": a.tolist(), "mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
            "p05": float(np.percentile(a, 5)), "elapsed_s": time.perf_counter() - t0}

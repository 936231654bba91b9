"""Calibrating the cheap IR-drop model (:mod:`cosim.read.irmodel`) against ngspice, over a sweep.

Layer: cosim. :func:`run_calibration` is what ``xbar calibrate`` calls:

1. builds the sweep (:func:`default_cases`): square arrays of several sizes and wire
   resistances, conductances uniform / log-uniform / bimodal, inputs uniform / sparse, each
   case a batch of input vectors; ``split="train"`` cases for the fit, ``split="test"`` ones
   (fresh arrays and inputs) held out for the error table;
2. runs it through :func:`cosim.sim.sweep.run_sweep` (one ngspice deck per case, resumable,
   serial or on Dask);
3. fits the model coefficients (:func:`fit_model`, nonlinear least squares on the column
   currents, each training case weighted by 1 / its uncalibrated RMS error so that small
   arrays count as much as large ones; by default only the third-and-higher-order
   coefficients, the others held at the line-resummed physics);
4. measures, on the held-out cases, RMS and max error as fractions of full scale for the
   ideal read (no IR model), the uncalibrated model (nominal coefficients: first-order
   physics), the line-resummed physics with no fit, and the calibrated model;
   times the model against the exact nodal solve (:class:`cosim.read.solver.CrossbarSolver`) in
   the same run; optionally runs a Monte Carlo of device and periphery non-idealities
   (:func:`monte_carlo`);
5. writes ``calibration.json`` (schema in :mod:`cosim.read.irmodel`), ``report.md``, ``report.json``
   and PNG plots to the output folder.

Full scale of a case is the largest ideal column current at full-scale input,
``v_read * max_j sum_i G[i, j]``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cosim.read.irmodel import Calibration, IRModel, ir_features, to_aihwkit
from cosim.sim.sweep import CaseResult, case_rng, run_sweep
from models.errors import ParameterError
from netlists.crossbar import CrossbarSpec

G_DISTS = ("uniform", "loguniform", "bimodal")
V_DISTS = ("uniform", "sparse", "binary")
SPICE_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class ArrayCase:
    """One SPICE case: a random square-or-not array and a batch of random inputs.

    Attributes
    ----------
    rows, cols : int
    r_wire : float
        Row and column wire resistance per segment [ohm] (> 0).
    g_min, g_max : float
        Conductance range [S].
    g_dist : str
        "uniform", "loguniform" or "bimodal" (half near g_min, half near g_max: binary weights).
    v_dist : str
        "uniform" in [0, v_read], "sparse" (uniform, 70 % zeros) or "binary" (0 or v_read).
    batch : int
        Input vectors (one ``.dc`` point each).
    v_read : float
        Full-scale input [V].
    split : str
        "train" or "test".
    replica : int
        Distinguishes otherwise identical cases.
    """

    rows: int
    cols: int
    r_wire: float
    g_min: float = 1e-6
    g_max: float = 25e-6
    g_dist: str = "uniform"
    v_dist: str = "uniform"
    batch: int = 16
    v_read: float = 0.2
    split: str = "train"
    replica: int = 0

    def __post_init__(self) -> None:
        for f in ("rows", "cols", "batch"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"{f} must be a positive integer, got {v!r}")
        if not (np.isfinite(self.r_wire) and self.r_wire > 0):
            raise ParameterError(f"r_wire must be > 0 ohm (IR drop needs wires), got {self.r_wire!r}")
        if not (0 < self.g_min < self.g_max and np.isfinite(self.g_max)):
            raise ParameterError(f"need 0 < g_min < g_max, got {self.g_min!r} and {self.g_max!r}")
        if self.g_dist not in G_DISTS:
            raise ParameterError(f"g_dist must be one of {G_DISTS}, got {self.g_dist!r}")
        if self.v_dist not in V_DISTS:
            raise ParameterError(f"v_dist must be one of {V_DISTS}, got {self.v_dist!r}")
        if not self.v_read > 0:
            raise ParameterError(f"v_read must be > 0 V, got {self.v_read!r}")
        if self.split not in ("train", "test"):
            raise ParameterError(f"split must be 'train' or 'test', got {self.split!r}")

    @property
    def spec(self) -> CrossbarSpec:
        return CrossbarSpec(rows=self.rows, cols=self.cols, r_row=self.r_wire, r_col=self.r_wire,
                            v_read=self.v_read)


def draw_case(case: ArrayCase, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Conductances (rows, cols) [S] and inputs (batch, rows) [V] of a case."""
    shape = (case.rows, case.cols)
    lo, hi = case.g_min, case.g_max
    if case.g_dist == "uniform":
        G = rng.uniform(lo, hi, shape)
    elif case.g_dist == "loguniform":
        G = np.exp(rng.uniform(np.log(lo), np.log(hi), shape))
    else:
        on = rng.random(shape) < 0.5
        G = np.where(on, hi, lo) * rng.uniform(0.9, 1.0, shape)
        G = np.clip(G, lo, hi)
    V = rng.uniform(0.0, case.v_read, (case.batch, case.rows))
    if case.v_dist == "sparse":
        V *= rng.random(V.shape) < 0.3
    elif case.v_dist == "binary":
        V = case.v_read * (rng.random(V.shape) < 0.5)
    return G, V


def spice_case(case: ArrayCase, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sweep task: draw the case, read it in ngspice (one ``.dc`` deck), return G, V, I."""
    from cosim.sim.engine import SubprocessEngine
    from cosim.read.mvm import Crossbar

    G, V = draw_case(case, rng)
    engine = SubprocessEngine(workers=1, timeout=SPICE_TIMEOUT_S)
    I = Crossbar(case.spec, G, engine=engine).read(V, backend="spice", workers=1)
    return {"G": G, "V": V, "I": I}


def default_cases(sizes: Sequence[int] = (16, 32, 64, 128, 256), r_wires: Sequence[float] = (0.5, 1.0, 2.5),
                  *, train_per_point: int = 4, test_per_point: int = 2, batch: int = 16,
                  g_min: float = 1e-6, g_max: float = 25e-6, v_read: float = 0.2) -> list[ArrayCase]:
    """The default sweep: for every (size, r_wire), ``train_per_point`` training cases cycling
    through the conductance and input distributions, and ``test_per_point`` held-out ones."""
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise ParameterError(f"sizes must be positive integers, got {s!r}")
    for r in r_wires:
        if not (np.isfinite(r) and r > 0):
            raise ParameterError(f"r_wire values must be > 0 ohm, got {r!r}")
    if train_per_point < 1 or test_per_point < 1:
        raise ParameterError("need at least one training and one test case per (size, r_wire)")
    combos = [(g, v) for g in G_DISTS for v in V_DISTS]
    cases = []
    for n in sizes:
        for r in r_wires:
            for split, count, shift in (("train", train_per_point, 0), ("test", test_per_point, 4)):
                for k in range(count):
                    g, v = combos[(k + shift) % len(combos)]
                    cases.append(ArrayCase(int(n), int(n), float(r), g_min, g_max, g, v, batch, v_read, split, k))
    return cases


# ---------------------------------------------------------------------------------------------
# Fit and errors


@dataclass(frozen=True, eq=False)
class _Data:
    case: ArrayCase
    G: np.ndarray
    V: np.ndarray
    I: np.ndarray

    @property
    def full_scale(self) -> float:
        return float(self.case.v_read * self.G.sum(axis=0).max())


def _data(results: Sequence[CaseResult]) -> list[_Data]:
    out = []
    for r in results:
        if r.ok:
            out.append(_Data(ArrayCase(**r.case), r.arrays["G"], r.arrays["V"], r.arrays["I"]))
    return out


#: The coefficients that the fit adjusts by default (indices into ``IRModel.to_vector()``): the
#: third-and-higher-order ones. First and second order stay at the line-resummed physics, which
#: is exact there wherever the cross term X is computed exactly: freeing them lets large arrays
#: pull them off and costs the small arrays two orders of magnitude (measured on the default sweep).
HIGHER_ORDER = tuple(IRModel.COEFFICIENTS.index(n) for n in ("rho_R*rho_C*rho/(1+rho)", "rho^3/(1+rho)",
                                                              "(d_R+d_C)*rho/(1+rho)", "b2", "c"))


def fit_model(train: Sequence[_Data], *, start: IRModel | None = None,
              free: Sequence[int] | None = HIGHER_ORDER) -> IRModel:
    """Least-squares fit of the model coefficients to ngspice currents (see the module docstring).

    ``start`` (default: the line-resummed physics, :meth:`IRModel.physical`) gives the value of
    every coefficient; ``free`` lists those the fit adjusts (indices into ``IRModel.to_vector()``;
    None: all of them).
    """
    from scipy.optimize import least_squares

    if not train:
        raise ParameterError("no successful training case to fit on")
    p0 = (start or IRModel.physical()).to_vector()
    idx = np.arange(p0.size) if free is None else np.asarray(sorted(set(int(k) for k in free)), dtype=int)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= p0.size:
        raise ParameterError(f"free must name coefficients 0..{p0.size - 1}, got {free!r}")
    feats = [ir_features(d.G, d.case.r_wire, d.case.r_wire) for d in train]
    nominal = IRModel.nominal()
    scale = []
    for d, f in zip(train, feats):
        e = d.V @ nominal.physical_weights(d.G, d.case.r_wire, d.case.r_wire, f) - d.I
        scale.append(max(float(np.sqrt(np.mean(e ** 2))), 1e-12 * d.full_scale))

    def full(q: np.ndarray) -> np.ndarray:
        p = p0.copy()
        p[idx] = q
        return p

    def resid(q: np.ndarray) -> np.ndarray:
        m = IRModel.from_vector(full(q))
        return np.concatenate([((d.V @ m.physical_weights(d.G, d.case.r_wire, d.case.r_wire, f)) - d.I).ravel() / s
                               for d, f, s in zip(train, feats, scale)])

    fit = least_squares(resid, p0[idx], method="trf", x_scale=1.0, max_nfev=200)
    rho_max = max(float((f.rho_R + f.rho_C).max()) for f in feats)
    return dataclasses.replace(IRModel.from_vector(full(fit.x)), rho_max=rho_max if rho_max > 0 else None)


def case_errors(d: _Data, model: IRModel, nominal: IRModel | None = None) -> dict:
    """RMS and max error over full scale: ideal read (no IR model), first-order linear physics
    G (1 - x_R - x_C), and the cheap model uncalibrated (nominal), with the line-resummed physics
    coefficients (no fit) and calibrated."""
    nominal = nominal or IRModel.nominal()
    fs = d.full_scale
    row = {"rows": d.case.rows, "cols": d.case.cols, "r_wire": d.case.r_wire, "g_dist": d.case.g_dist,
           "v_dist": d.case.v_dist, "split": d.case.split, "full_scale_A": fs}
    f = ir_features(d.G, d.case.r_wire, d.case.r_wire)
    phys = IRModel.physical()
    preds = {"ideal": d.V @ d.G, "linear": d.V @ (d.G * (1 - f.h1)), "uncal": nominal.read(d.case.spec, d.G, d.V),
             "phys": d.V @ phys.physical_weights(d.G, d.case.r_wire, d.case.r_wire, f),
             "cal": model.read(d.case.spec, d.G, d.V)}
    for name, P in preds.items():
        e = (P - d.I) / fs
        row[f"{name}_rmse"] = float(np.sqrt(np.mean(e ** 2)))
        row[f"{name}_max"] = float(np.abs(e).max())
    return row


def error_table(rows: Sequence[dict]) -> list[dict]:
    """Per (size, r_wire): mean RMS and worst max error of each read, and the gain."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["rows"], r["cols"], r["r_wire"]), []).append(r)
    out = []
    for (n, m, rw), rs in sorted(groups.items()):
        t = {"size": f"{n}x{m}", "rows": n, "cols": m, "r_wire": rw, "cases": len(rs)}
        for name in ("ideal", "linear", "uncal", "phys", "cal"):
            t[f"{name}_rmse"] = float(np.mean([r[f"{name}_rmse"] for r in rs]))
            t[f"{name}_max"] = float(np.max([r[f"{name}_max"] for r in rs]))
        t["gain_rmse"] = t["uncal_rmse"] / max(t["cal_rmse"], 1e-300)
        t["gain_max"] = t["uncal_max"] / max(t["cal_max"], 1e-300)
        t["gain_vs_linear"] = t["linear_rmse"] / max(t["cal_rmse"], 1e-300)
        t["gain_vs_phys"] = t["phys_rmse"] / max(t["cal_rmse"], 1e-300)
        out.append(t)
    return out


# ---------------------------------------------------------------------------------------------
# Speed against the exact nodal solve


def time_vs_exact(model: IRModel, sizes: Sequence[int], *, r_wire: float = 1.0, batch: int = 100,
                  repeats: int = 3, seed: int = 0) -> list[dict]:
    """Wall time of the cheap model and of :class:`CrossbarSolver`, same arrays, same run.

    Both include their per-conductance-state work (features / factorisation) and read a batch
    of ``batch`` vectors; best of ``repeats``. Also the single-vector time of each.
    """
    from cosim.read.solver import CrossbarSolver
    from netlists.crossbar import build_crossbar

    def best(fn):
        t = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            t = min(t, time.perf_counter() - t0)
        return t

    rows = []
    for n in sizes:
        rng = case_rng(seed, int(n))
        spec = CrossbarSpec(rows=n, cols=n, r_row=r_wire, r_col=r_wire)
        G = rng.uniform(1e-6, 25e-6, spec.g_shape)
        V = rng.uniform(0, 0.2, (batch, n))
        circuit = build_crossbar(spec, G).circuit          # IR building is common to both: not timed

        def exact(Vb):
            return CrossbarSolver(circuit, workers=1).solve(Vb)

        def cheap(Vb):
            return model.read(spec, G, Vb)

        t_ex, t_ch = best(lambda: exact(V)), best(lambda: cheap(V))
        t_ex1, t_ch1 = best(lambda: exact(V[:1])), best(lambda: cheap(V[:1]))
        solver = CrossbarSolver(circuit, workers=1)          # prepared: factored / W computed once
        W = model.effective_weights(spec, G)
        t_exp, t_chp = best(lambda: solver.solve(V[:1])), best(lambda: V[:1] @ W)
        err = float(np.abs(cheap(V) - exact(V)).max() / (0.2 * G.sum(0).max()))
        rows.append({"size": n, "r_wire": r_wire, "batch": batch, "exact_batch_s": t_ex, "model_batch_s": t_ch,
                     "speedup_batch": t_ex / t_ch, "exact_1_s": t_ex1, "model_1_s": t_ch1, "speedup_1": t_ex1 / t_ch1,
                     "exact_prepared_1_s": t_exp, "model_prepared_1_s": t_chp, "speedup_prepared_1": t_exp / t_chp,
                     "model_vs_exact_max": err})
    return rows


# ---------------------------------------------------------------------------------------------
# Monte Carlo of non-idealities on the fast (calibrated) backend


@dataclass(frozen=True)
class Variation:
    """Non-idealities sampled per Monte Carlo run.

    Attributes
    ----------
    sigma_g : float
        Device-to-device variation: G -> G * exp(sigma_g * N(0, 1)) (lognormal), clipped to range.
    p_stuck_min, p_stuck_max : float
        Fractions of cells stuck at g_min / g_max.
    offset_a : float
        Output (op-amp / ADC) offset, per column, standard deviation [A].
    adc_bits : int or None
        Output quantisation over +-full scale (None: none).
    """

    sigma_g: float = 0.05
    p_stuck_min: float = 0.005
    p_stuck_max: float = 0.005
    offset_a: float = 0.0
    adc_bits: int | None = 8

    def __post_init__(self) -> None:
        if not (self.sigma_g >= 0 and self.offset_a >= 0):
            raise ParameterError("sigma_g and offset_a must be >= 0")
        if not (0 <= self.p_stuck_min and 0 <= self.p_stuck_max and self.p_stuck_min + self.p_stuck_max <= 1):
            raise ParameterError("stuck fractions must be in [0, 1] and sum to at most 1")
        if self.adc_bits is not None and not (isinstance(self.adc_bits, int) and 1 <= self.adc_bits <= 24):
            raise ParameterError(f"adc_bits must be an integer in 1..24 or None, got {self.adc_bits!r}")


def _apply_variation(G: np.ndarray, var: Variation, g_min: float, g_max: float, rng: np.random.Generator) -> np.ndarray:
    from cosim.calibrate.montecarlo import apply_cell_faults, draw_cell_faults
    gf, stuck = draw_cell_faults(G.shape, rng, var.sigma_g, var.p_stuck_min, var.p_stuck_max)
    return apply_cell_faults(G, gf, stuck, g_min, g_max)


def _periphery(I: np.ndarray, var: Variation, fs: float, rng: np.random.Generator) -> np.ndarray:
    out = I + var.offset_a * rng.standard_normal(I.shape[1])[None, :] if var.offset_a else I.copy()
    if var.adc_bits is not None:
        lsb = 2 * fs / (2 ** var.adc_bits - 1)
        out = np.clip(np.round(out / lsb) * lsb, -fs, fs)
    return out


def monte_carlo(model: IRModel, *, size: int = 64, r_wire: float = 1.0, runs: int = 50, batch: int = 32,
                variation: Variation = Variation(), seed: int = 0, spice_checks: int = 0,
                g_min: float = 1e-6, g_max: float = 25e-6, v_read: float = 0.2) -> dict:
    """MVM error relative to the ideal product, over ``runs`` samples of the non-idealities.

    Each run k draws target conductances, inputs, device variation, stuck cells and offsets
    from ``case_rng(seed, k)`` and reads through the cheap model (IR drop) plus the periphery;
    the error is (read - V @ G_target) / full scale. The first ``spice_checks`` runs are also
    read in ngspice (same varied conductances) to report how far the cheap model is from it.
    """
    spec = CrossbarSpec(rows=size, cols=size, r_row=r_wire, r_col=r_wire, v_read=v_read)
    rms, mx, ir_only, spice_gap = [], [], [], []
    for k in range(runs):
        rng = case_rng(seed, k)
        G = rng.uniform(g_min, g_max, spec.g_shape)
        V = rng.uniform(0, v_read, (batch, size))
        Gv = _apply_variation(G, variation, g_min, g_max, rng)
        fs = float(v_read * G.sum(axis=0).max())
        ideal = V @ G
        I_model = model.read(spec, Gv, V)
        read = _periphery(I_model, variation, fs, rng)
        e = (read - ideal) / fs
        rms.append(float(np.sqrt(np.mean(e ** 2))))
        mx.append(float(np.abs(e).max()))
        ir_only.append(float(np.sqrt(np.mean(((model.read(spec, G, V) - ideal) / fs) ** 2))))
        if k < spice_checks:
            from cosim.sim.engine import SubprocessEngine
            from cosim.read.mvm import Crossbar
            I_sp = Crossbar(spec, Gv, engine=SubprocessEngine(workers=1, timeout=SPICE_TIMEOUT_S)).read(
                V, backend="spice", workers=1)
            spice_gap.append(float(np.sqrt(np.mean(((I_model - I_sp) / fs) ** 2))))
    pct = lambda a, q: float(np.percentile(a, q))  # noqa: E731
    return {"size": size, "r_wire": r_wire, "runs": runs, "batch": batch, "seed": seed,
            "variation": {"sigma_g": variation.sigma_g, "p_stuck_min": variation.p_stuck_min,
                          "p_stuck_max": variation.p_stuck_max, "offset_a": variation.offset_a,
                          "adc_bits": variation.adc_bits},
            "rmse_mean": float(np.mean(rms)), "rmse_p5": pct(rms, 5), "rmse_p95": pct(rms, 95),
            "max_mean": float(np.mean(mx)), "max_p95": pct(mx, 95),
            "ir_only_rmse_mean": float(np.mean(ir_only)),
            "spice_checks": len(spice_gap), "model_vs_spice_rmse": spice_gap}


# ---------------------------------------------------------------------------------------------
# The whole calibration


def _fmt_table(table: Sequence[dict]) -> str:
    head = ("| size | r_wire [ohm] | cases | ideal RMSE | 1st-order linear RMSE | uncal RMSE | line physics RMSE | "
            "cal RMSE | gain (RMSE) | ideal max | uncal max | cal max | gain (max) | gain vs linear | gain vs line physics |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for t in table:
        lines.append(f"| {t['size']} | {t['r_wire']:g} | {t['cases']} | {t['ideal_rmse']:.2e} | {t['linear_rmse']:.2e} | "
                     f"{t['uncal_rmse']:.2e} | {t['phys_rmse']:.2e} | {t['cal_rmse']:.2e} | {t['gain_rmse']:.1f}x | "
                     f"{t['ideal_max']:.2e} | {t['uncal_max']:.2e} | {t['cal_max']:.2e} | {t['gain_max']:.1f}x | "
                     f"{t['gain_vs_linear']:.0f}x | {t['gain_vs_phys']:.1f}x |")
    return "\n".join(lines)


def _fmt_speed(rows: Sequence[dict]) -> str:
    b = rows[0]["batch"] if rows else 0
    head = (f"| size | exact solve, {b} vec [s] | model, {b} vec [s] | speed-up | exact, 1 vec [s] | "
            f"model, 1 vec [s] | speed-up | prepared: exact 1 vec [ms] | prepared: model 1 vec [ms] | speed-up | "
            f"model vs exact, max / FS |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['size']} | {r['exact_batch_s']:.4f} | {r['model_batch_s']:.4f} | {r['speedup_batch']:.0f}x | "
                     f"{r['exact_1_s']:.4f} | {r['model_1_s']:.5f} | {r['speedup_1']:.0f}x | "
                     f"{1e3 * r['exact_prepared_1_s']:.3f} | {1e3 * r['model_prepared_1_s']:.4f} | "
                     f"{r['speedup_prepared_1']:.0f}x | {r['model_vs_exact_max']:.1e} |")
    return "\n".join(lines)


def _plots(out: Path, table: Sequence[dict], test: Sequence[_Data], model: IRModel) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, rw in enumerate(sorted({t["r_wire"] for t in table})):
        ts = [t for t in table if t["r_wire"] == rw]
        n = [t["rows"] for t in ts]
        for name, style in (("ideal", ":"), ("uncal", "--"), ("cal", "-")):
            ax.plot(n, [t[f"{name}_rmse"] for t in ts], style, color=f"C{k}", marker="o", ms=3,
                    label=f"{name}, {rw:g} ohm")
    sizes = sorted({t["rows"] for t in table})
    ax.set(xscale="log", yscale="log", xlabel="array size N (N x N)", ylabel="RMS error / full scale",
           title="held-out error vs ngspice (ideal: no IR model)")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    paths.append(out / "error_vs_size.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
    nominal = IRModel.nominal()
    for ax, (name, m) in zip(axes, (("uncalibrated", nominal), ("calibrated", model))):
        for d in test:   # the residual: on a predicted-vs-spice scatter both models sit on the diagonal
            fs = d.full_scale
            ax.plot((d.I / fs).ravel(), ((m.read(d.case.spec, d.G, d.V) - d.I) / fs).ravel(), ".", ms=1,
                    alpha=0.4, color=f"C{sorted({t.case.rows for t in test}).index(d.case.rows)}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="ngspice current / full scale", title=f"{name} (colour: array size)")
    axes[0].set_ylabel("(model - ngspice) / full scale")
    fig.tight_layout()
    paths.append(out / "predicted_vs_spice.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    u = [t["uncal_rmse"] for t in table]
    c = [t["cal_rmse"] for t in table]
    ax.loglog(u, c, "o")
    lo, hi = min(u + c), max(u + c)
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.5, label="equal")
    ax.plot([lo, hi], [lo / 10, hi / 10], "k--", lw=0.5, label="10x better")
    ax.set(xlabel="uncalibrated RMS error / full scale", ylabel="calibrated RMS error / full scale",
           title="per (size, r_wire), held out")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "uncalibrated_vs_calibrated.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def run_calibration(out_dir: str | Path, *, sizes: Sequence[int] = (16, 32, 64, 128, 256),
                    r_wires: Sequence[float] = (0.5, 1.0, 2.5), train_per_point: int = 4,
                    test_per_point: int = 2, batch: int = 16, seed: int = 0, workers: int = 1,
                    scheduler: str | None = None, monte_carlo_runs: int = 0, timing: bool = True,
                    plots: bool = True, progress: bool = True) -> dict:
    """Sweep, fit, evaluate, write calibration.json / report.md / report.json / plots.

    Returns a summary dict (the tables, the paths, the sweep counts, ``text``: the table printed
    by the CLI).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = default_cases(sizes, r_wires, train_per_point=train_per_point, test_per_point=test_per_point,
                          batch=batch)
    t0 = time.perf_counter()
    sweep = run_sweep(cases, spice_case, out / "sweep", seed=seed, workers=workers, scheduler=scheduler,
                      progress=progress, desc="calibrate")
    t_sweep = time.perf_counter() - t0
    data = _data(sweep.results)
    train = [d for d in data if d.case.split == "train"]
    test = [d for d in data if d.case.split == "test"]
    if not test:
        raise ParameterError("no successful held-out case: cannot report errors (see the failed cases in "
                             f"{out / 'sweep'})")
    t0 = time.perf_counter()
    model = fit_model(train)
    t_fit = time.perf_counter() - t0
    rows = [case_errors(d, model) for d in test]
    table = error_table(rows)
    train_table = error_table([case_errors(d, model) for d in train])
    speed = time_vs_exact(model, [n for n in sizes if n >= 32] or list(sizes), seed=seed) if timing else []
    mc = None
    if monte_carlo_runs:
        mc = monte_carlo(model, size=min(64, max(sizes)), r_wire=float(np.median(r_wires)), runs=monte_carlo_runs,
                         seed=seed, spice_checks=min(3, monte_carlo_runs))
    fit_info = {"sizes": [int(s) for s in sizes], "r_wire": [float(r) for r in r_wires],
                "g_range": [cases[0].g_min, cases[0].g_max], "v_read": cases[0].v_read, "batch": batch,
                "train_cases": len(train), "test_cases": len(test), "failed_cases": len(sweep.failed),
                "seed": seed, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    cal = Calibration(model, fit_info, tuple(table), {})
    cal_path = cal.save(out / "calibration.json")
    overall = {name: float(np.mean([r[f"{name}_rmse"] for r in rows]))
               for name in ("ideal", "linear", "uncal", "phys", "cal")}
    worst_gain = min(t["gain_rmse"] for t in table)
    text = (f"IR-drop model calibrated on {len(train)} ngspice cases, errors on {len(test)} held-out cases "
            f"(fractions of full scale)\n\n" + _fmt_table(table) +
            f"\n\nmean RMSE over held-out cases: ideal {overall['ideal']:.2e}, uncalibrated {overall['uncal']:.2e}, "
            f"line-resummed physics (no fit) {overall['phys']:.2e}, "
            f"calibrated {overall['cal']:.2e} (gain {overall['uncal'] / overall['cal']:.1f}x; "
            f"smallest gain per (size, r_wire) {worst_gain:.1f}x)")
    targets = {"smallest_gain_rmse": worst_gain, "gain_target_10x_met": bool(worst_gain >= 10),
               "mean_gain_rmse": overall["uncal"] / overall["cal"],
               "smallest_gain_vs_linear": min(t["gain_vs_linear"] for t in table),
               "smallest_gain_max": min(t["gain_max"] for t in table),
               "smallest_gain_vs_phys": min(t["gain_vs_phys"] for t in table)}
    text += (f"\ntargets: calibrated <= 1/10 of uncalibrated in every (size, r_wire): "
             f"{'met' if targets['gain_target_10x_met'] else 'NOT met'} (smallest gain {worst_gain:.1f}x; "
             f"vs first-order linear physics, smallest gain {targets['smallest_gain_vs_linear']:.0f}x)"
             f"\nmax error: calibrated <= 1/10 of uncalibrated in every (size, r_wire): "
             f"{'met' if targets['smallest_gain_max'] >= 10 else 'NOT met'} (smallest gain {targets['smallest_gain_max']:.1f}x); "
             f"calibrated vs line-resummed physics with no fit: smallest RMSE gain {targets['smallest_gain_vs_phys']:.1f}x")
    if speed:
        largest = max(speed, key=lambda r: r["size"])
        targets.update(speedup_largest_batch=largest["speedup_batch"], speedup_largest_1=largest["speedup_1"],
                       speed_size=largest["size"])
        text += "\n\nspeed, cheap model vs exact nodal solve (CrossbarSolver, 1 thread), same run:\n\n" + _fmt_speed(speed)
        text += (f"\ntarget >= 10x faster at {largest['size']}: {largest['speedup_batch']:.0f}x on a batch, "
                 f"{largest['speedup_1']:.0f}x on one vector (per-state work included in both)")
    report = ["# IR-drop calibration", "",
              f"Sweep: {len(cases)} cases ({sweep.ran} run now, {sweep.skipped} found done, {len(sweep.failed)} failed), "
              f"{sweep.backend} on {sweep.workers} worker(s), {t_sweep:.1f} s; fit {t_fit:.1f} s.", "",
              "Model: W = G / (1 + sum_k a_k phi_k) + D (b + b2 rho / (1 + c rho)) / (1 + c rho)^2 "
              "(line-resummed, see cosim/irmodel.py).", "",
              f"Coefficients: a = {[round(x, 4) for x in model.a]}, b = {model.b:.4g}, b2 = {model.b2:.4g}, "
              f"c = {model.c:.4g}; nominal (uncalibrated) a = (1, 1, 0, ...), b = b2 = c = 0 (first-order physics); "
              "line-resummed physics (no fit) a = (1, 1, 1, 1, 0, ...), b = c = 1, b2 = 0.", "",
              "## Held-out error", "", text, "",
              "## Training error", "", _fmt_table(train_table), ""]
    if mc is not None:
        report += ["## Monte Carlo (cheap calibrated model + non-idealities, error vs ideal V @ G)", "",
                   "| size | r_wire | runs | sigma_g | stuck min/max | offset [A] | ADC bits | RMSE mean | RMSE p5-p95 | "
                   "max mean | IR only RMSE | model vs spice RMSE (spot checks) |",
                   "|---|---|---|---|---|---|---|---|---|---|---|---|",
                   f"| {mc['size']} | {mc['r_wire']:g} | {mc['runs']} | {mc['variation']['sigma_g']:g} | "
                   f"{mc['variation']['p_stuck_min']:g}/{mc['variation']['p_stuck_max']:g} | {mc['variation']['offset_a']:g} | "
                   f"{mc['variation']['adc_bits']} | {mc['rmse_mean']:.2e} | {mc['rmse_p5']:.2e}-{mc['rmse_p95']:.2e} | "
                   f"{mc['max_mean']:.2e} | {mc['ir_only_rmse_mean']:.2e} | "
                   f"{', '.join(f'{x:.1e}' for x in mc['model_vs_spice_rmse']) or '-'} |", ""]
    if sweep.failed:
        report += ["## Failed cases", ""] + [f"- {r.key} ({r.case}): {r.error_type}: {r.error.splitlines()[0]}"
                                             for r in sweep.failed] + [""]
    (out / "report.md").write_text("\n".join(report))
    summary = {"out_dir": str(out), "calibration": str(cal_path), "table": table, "train_table": train_table,
               "speed": speed, "monte_carlo": mc, "overall": overall, "sweep": {
                   "cases": len(cases), "ran": sweep.ran, "skipped": sweep.skipped, "failed": len(sweep.failed),
                   "wall_s": t_sweep, "backend": sweep.backend, "workers": sweep.workers},
               "fit_s": t_fit, "coefficients": model.to_dict(), "targets": targets, "aihwkit": to_aihwkit(cal)}
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    if plots:
        summary["plots"] = [str(p) for p in _plots(out, table, test, model)]
    summary["text"] = text
    return summary

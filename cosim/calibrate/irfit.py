"""Calibrating the cheap IR-drop model (:mod:`cosim.read.irmodel`) against ngspice, over a sweep.

Layer: cosim.calibrate. :func:`run_ir_calibration` is the IR part of ``xbar calibrate``
(:func:`cosim.calibrate.run.calibrate`):

1. builds the sweep (:func:`cosim.calibrate.ir_cases.default_cases`): arrays of several sizes
   and wire resistances, conductances uniform / log-uniform / bimodal, inputs uniform / sparse /
   binary, each case a batch of input vectors; ``split="train"`` cases for the fit,
   ``split="test"`` ones (fresh arrays and inputs) held out for the error table;
2. runs it through :func:`cosim.sim.sweep.run_sweep` (one ngspice deck per case, resumable,
   serial or on Dask);
3. fits the model coefficients (:func:`fit_model`, nonlinear least squares on the column
   currents, each training case weighted by 1 / its uncalibrated RMS error so that small
   arrays count as much as large ones; by default only the third-and-higher-order
   coefficients, the others held at the line-resummed physics);
4. measures, on the held-out cases, RMS and max error as fractions of full scale for the
   ideal read (no IR model), the uncalibrated model (nominal coefficients: first-order
   physics), the line-resummed physics with no fit, and the calibrated model; times the model
   against the exact nodal solve (:class:`cosim.read.solver.CrossbarSolver`) in the same run;
   optionally runs a Monte Carlo of non-idealities on the calibrated model
   (:func:`cosim.calibrate.montecarlo.monte_carlo_mvm`);
5. writes ``calibration.json`` (schema in :mod:`cosim.read.irmodel`), ``report.md``,
   ``report.json`` and PNG plots to the output folder.

Full scale of a case is the largest ideal column current at full-scale input,
``v_read * max_j sum_i G[i, j]``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
from pathlib import Path
from collections.abc import Sequence

import numpy as np

from cosim.sim.files import atomic_json, atomic_write, save_figure
from cosim.calibrate.ir_cases import (SPICE_CELLS, CaseData, array_shape, case_data, check_reference, default_cases,
                                      spice_case)
from cosim.calibrate.montecarlo import Variation, monte_carlo_mvm
from cosim.read.irmodel import Calibration, IRModel, ir_features
from cosim.read.solver import CrossbarSolver
from cosim.sim.sweep import case_rng, run_sweep
from models.errors import ParameterError
from netlists.crossbar import CrossbarSpec, build_crossbar

__all__ = ["HIGHER_ORDER", "fit_model", "case_errors", "error_table", "time_vs_exact", "run_ir_calibration",
           "MONTE_CARLO_VARIATION"]

#: What ``xbar calibrate --monte-carlo N`` samples on the calibrated model.
MONTE_CARLO_VARIATION = Variation(d2d_sigma=0.05, stuck_frac=0.01)


#: The coefficients that the fit adjusts by default (indices into ``IRModel.to_vector()``): the
#: third-and-higher-order ones. First and second order stay at the line-resummed physics, which
#: is exact there wherever the cross term X is computed exactly: freeing them lets large arrays
#: pull them off and costs the small arrays two orders of magnitude (measured on the default sweep).
HIGHER_ORDER = tuple(IRModel.COEFFICIENTS.index(n) for n in ("rho_R*rho_C*rho/(1+rho)", "rho^3/(1+rho)",
                                                              "(d_R+d_C)*rho/(1+rho)", "b2", "c"))


def fit_model(train: Sequence[CaseData], *, start: IRModel | None = None,
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


def case_errors(d: CaseData, model: IRModel, nominal: IRModel | None = None) -> dict:
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


def _plots(out: Path, table: Sequence[dict], test: Sequence[CaseData], model: IRModel) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, rw in enumerate(sorted({t["r_wire"] for t in table})):
        ts = [t for t in table if t["r_wire"] == rw]
        ts = sorted(ts, key=lambda t: t["rows"] * t["cols"])
        n = [np.sqrt(t["rows"] * t["cols"]) for t in ts]        # non-square arrays at their geometric mean
        for name, style in (("ideal", ":"), ("uncal", "--"), ("cal", "-")):
            ax.plot(n, [t[f"{name}_rmse"] for t in ts], style, color=f"C{k}", marker="o", ms=3,
                    label=f"{name}, {rw:g} ohm")
    sizes = sorted({t["rows"] for t in table if t["rows"] == t["cols"]})
    ax.set(xscale="log", yscale="log", xlabel="array size N (N x N; rows x cols at sqrt(rows cols))",
           ylabel="RMS error / full scale",
           title="held-out error vs ngspice (ideal: no IR model)")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    paths.append(out / "error_vs_size.png")
    save_figure(fig, paths[-1], dpi=120)
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
    save_figure(fig, paths[-1], dpi=120)
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
    save_figure(fig, paths[-1], dpi=120)
    plt.close(fig)
    return paths


def run_ir_calibration(out_dir: str | Path, *, sizes: Sequence = (16, 32, 64, 128, 256),
                       r_wires: Sequence[float] = (0.5, 1.0, 2.5), train_per_point: int = 4,
                       test_per_point: int = 2, batch: int = 16, seed: int = 0, workers: int = 1,
                       scheduler: str | None = None, monte_carlo_runs: int = 0, timing: bool = True,
                       plots: bool = True, progress: bool = True, spice_cells: int = SPICE_CELLS) -> dict:
    """Sweep, fit, evaluate, write calibration.json / report.md / report.json / plots.

    Arrays of more than ``spice_cells`` cells are read by the exact solver, verified against one
    ngspice case per shape first (:mod:`cosim.calibrate.ir_cases`).

    Returns a summary dict (the tables, the paths, the sweep counts, ``text``: the table printed
    by the CLI).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = default_cases(sizes, r_wires, train_per_point=train_per_point, test_per_point=test_per_point,
                          batch=batch, spice_cells=spice_cells)
    t0 = time.perf_counter()
    sweep = run_sweep(cases, spice_case, out / "sweep", seed=seed, workers=workers, scheduler=scheduler,
                      progress=progress, desc="calibrate")
    t_sweep = time.perf_counter() - t0
    data = case_data(sweep.results, cases)
    checks = check_reference([d for d in data if d.case.split == "check"])
    unchecked = sorted({f"{c.rows}x{c.cols}" for c in cases if c.reference != "ngspice"} - {c["size"] for c in checks})
    if unchecked:                       # its ngspice check failed: no solver-read data goes in unchecked
        raise ParameterError(f"no ngspice check case finished for {', '.join(unchecked)}, whose cases the exact "
                             f"solver read: the failed case's record in {out / 'sweep'} (<key>.json) names the "
                             "error; delete the record to run that case again")
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
    shapes = [array_shape(s) for s in sizes]
    square = [n for n, m in shapes if n == m]
    speed = time_vs_exact(model, [n for n in square if n >= 32] or square, seed=seed) if timing and square else []
    mc = None
    if monte_carlo_runs:
        mc = monte_carlo_mvm(min(64, max(min(n, m) for n, m in shapes)), float(np.median(r_wires)),
                             MONTE_CARLO_VARIATION,
                             runs=monte_carlo_runs, seed=seed, backend="calibrated", ir_model=model,
                             spice_runs=min(3, monte_carlo_runs))
    fit_info = {"sizes": [n if n == m else [n, m] for n, m in shapes], "r_wire": [float(r) for r in r_wires],
                "g_range": [cases[0].g_min, cases[0].g_max], "v_read": cases[0].v_read, "batch": batch,
                "train_cases": len(train), "test_cases": len(test), "failed_cases": len(sweep.failed),
                "seed": seed, "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "reference": _reference(cases, spice_cells, checks)}
    cal = Calibration(model, fit_info, tuple(table), {})
    cal_path = cal.save(out / "calibration.json")
    overall = {name: float(np.mean([r[f"{name}_rmse"] for r in rows]))
               for name in ("ideal", "linear", "uncal", "phys", "cal")}
    text, targets = _summary_text(train, table, overall, speed)
    report = _report(cases, sweep, t_sweep, t_fit, model, text, train_table, mc, fit_info["reference"])
    atomic_write(out / "report.md", "\n".join(report))
    summary = {"out_dir": str(out), "calibration": str(cal_path), "table": table, "train_table": train_table,
               "speed": speed, "monte_carlo": mc, "overall": overall, "sweep": {
                   "cases": len(cases), "ran": sweep.ran, "skipped": sweep.skipped, "failed": len(sweep.failed),
                   "wall_s": t_sweep, "backend": sweep.backend, "workers": sweep.workers},
               "fit_s": t_fit, "coefficients": model.to_dict(), "targets": targets}
    atomic_json(out / "report.json", summary, indent=2)
    if plots:
        summary["plots"] = [str(p) for p in _plots(out, table, test, model)]
    summary["text"] = text
    return summary


def _reference(cases, spice_cells: int, checks: list[dict]) -> dict:
    """Who read which sizes of the sweep (``fit["reference"]`` of calibration.json)."""
    solver = sorted({f"{c.rows}x{c.cols}" for c in cases if c.reference != "ngspice"})
    return {"spice_cells": int(spice_cells), "solver_sizes": solver, "checks": checks}


def _summary_text(train: list[CaseData], table: list[dict], overall: dict, speed: list[dict]) -> tuple[str, dict]:
    """The held-out table with its summary lines, as the CLI prints them, and the targets."""
    worst_gain = min(t["gain_rmse"] for t in table)
    n_test = sum(t["cases"] for t in table)
    n_solver = sum(d.case.reference != "ngspice" for d in train)
    spice = f"{len(train) - n_solver} ngspice cases and " if n_solver < len(train) else ""
    source = (f"{spice}{n_solver} exact-solver cases (arrays above the ngspice size, each shape checked against "
              "ngspice)" if n_solver else f"{len(train)} ngspice cases")
    text = (f"IR-drop model calibrated on {source}, errors on {n_test} held-out cases "
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
    return text, targets


def _report(cases, sweep, t_sweep: float, t_fit: float, model: IRModel, text: str, train_table: list[dict],
            mc: dict | None, reference: dict) -> list[str]:
    """The lines of ``report.md``."""
    report = ["# IR-drop calibration", "",
              f"Sweep: {len(cases)} cases ({sweep.ran} run now, {sweep.skipped} found done, {len(sweep.failed)} failed), "
              f"{sweep.backend} on {sweep.workers} worker(s), {t_sweep:.1f} s; fit {t_fit:.1f} s.", "",
              "Model: W = G / (1 + sum_k a_k phi_k) + D (b + b2 rho / (1 + c rho)) / (1 + c rho)^2 "
              "(line-resummed, see docs/ir-drop-model.md).", "",
              f"Coefficients: a = {[round(x, 4) for x in model.a]}, b = {model.b:.4g}, b2 = {model.b2:.4g}, "
              f"c = {model.c:.4g}; nominal (uncalibrated) a = (1, 1, 0, ...), b = b2 = c = 0 (first-order physics); "
              "line-resummed physics (no fit) a = (1, 1, 1, 1, 0, ...), b = c = 1, b2 = 0.", "",
              "## Held-out error", "", text, "",
              "## Training error", "", _fmt_table(train_table), ""]
    if reference["solver_sizes"]:
        report += ["## Reference", "",
                   f"Arrays of up to {reference['spice_cells']} cells were read in ngspice; the larger ones "
                   f"({', '.join(reference['solver_sizes'])}) by the exact nodal solver, after one ngspice check case "
                   "per shape, solved again by the solver:", "",
                   "| size | r_wire [ohm] | vectors | solver vs ngspice, max / full scale |", "|---|---|---|---|"]
        report += [f"| {c['size']} | {c['r_wire']:g} | {c['vectors']} | {c['solver_vs_spice_max']:.1e} |"
                   for c in reference["checks"]] + [""]
    if mc is not None:
        chk = ", ".join(f"{c['max_abs_diff_frac']:.1e}" for c in mc["spice_checks"]) or "-"
        report += ["## Monte Carlo (calibrated model + non-idealities, error vs ideal V @ G)", "",
                   "| size | r_wire | runs | d2d sigma | stuck | op-amp offset [V] | RMS mean | RMS p95 | abs p95 | "
                   "wires only | spice - model (spot checks) |",
                   "|---|---|---|---|---|---|---|---|---|---|---|",
                   f"| {mc['rows']}x{mc['cols']} | {mc['r_wire']:g} | {mc['runs']} | {mc['d2d_sigma']:g} | "
                   f"{mc['stuck_frac']:g} | {mc['opamp_offset_sigma_v']:g} | {mc['rms']['mean']:.2e} | "
                   f"{mc['rms']['p95']:.2e} | {mc['abs_p95']:.2e} | {mc['wire_only']:.2e} | {chk} |", ""]
    if sweep.failed:
        report += ["## Failed cases", ""] + [f"- {r.key} ({r.case}): {r.error_type}: {r.error.splitlines()[0]}"
                                             for r in sweep.failed] + [""]
    return report

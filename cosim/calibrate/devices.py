"""Fitting device step tables to SPICE pulse trains.

Layer: cosim.calibrate. ``fit_device_steps(name)``: SPICE pulse trains of one registry device
(up and down, over seeded device draws; :func:`netlists.benches.pulse_bench`) become a
:class:`cosim.write.step_table.StepTable`: the mean conductance change per full-selected pulse
as a function of the conductance (``bins`` bins over the device range, each direction
separately) and its spread (std of the residual step in the bin: device-to-device and
cycle-to-cycle noise lumped). Held-out seeds measure the error of the table and of the
uncalibrated numpy twin (nominal parameters, no knowledge of the draws) against SPICE, as a
fraction of the device's conductance range. SET-only devices (those with ``reset``, i.e. PCM)
have no ``down`` table.

:func:`run_pulse_trains` runs the SPICE trains, :func:`fit_step_table` bins (G before, step)
samples into a table.

JSON: each result is a JSON-able dict (lists and floats only); it is ``fits.json["devices"][name]``
of :func:`cosim.calibrate.blocks.fit_all`, whose ``"table"`` entry is
:meth:`cosim.write.step_table.StepTable.to_dict`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np

from cosim.characterize.devices import sample_states
from cosim.sim.engine import SubprocessEngine
from cosim.write.step_table import DIRECTIONS, StepTable, direction_sign
from models.errors import ParameterError, ShapeError
from models.pulse import PulseShape
from models.registry import get_device
from netlists.benches import pulse_bench

__all__ = ["fit_step_table", "run_pulse_trains", "fit_device_steps"]


def _device_g_range(model) -> tuple[float, float]:
    lo, hi = model.state_range
    g = np.sort(model.to_conductance(np.array([lo, hi])))
    return float(g[0]), float(g[1])


def _fill_empty(x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    if ok.all() or not ok.any():
        return np.where(ok, y, 0.0)
    return np.where(ok, y, np.interp(x, x[ok], y[ok]))


def fit_step_table(device: str, g_before, g_after, direction_of, *, g_min: float, g_max: float,
                   bins: int = 32, valid=None, smooth: int = 0, groups=None) -> StepTable:
    """Bin (G before, step) samples into a :class:`StepTable`.

    Parameters
    ----------
    g_before, g_after : array [S]
        Conductance before and after one pulse (any shape, flattened).
    direction_of : array of +1 / -1
        Pulse direction of each sample.
    valid : bool array, optional
        Samples to use (default all). Samples that start or end within 1e-3 of the range
        from the bound their pulse pushes toward are always dropped: they only say that the
        bound holds (``apply`` clips), and their truncated steps would drag the mean of the
        last bin toward 0.
    smooth : int
        0: the mean step of each bin is the mean of its samples. k > 0: a local straight-line
        fit through the samples of bins b-k .. b+k, evaluated at bin b (less estimation noise
        when few devices were drawn, some bias where the curve bends).
    groups : int array, optional
        The pulse train (one device, one noise draw) of each sample. Each train then counts
        once per bin, whatever number of its pulses fell in it: a train that steps slowly
        (a device drawn slow, or a cycle-to-cycle draw near zero) stays in its bin for many
        pulses and would otherwise outweigh the trains that cross the bin in one or two
        (a PCM train with a zero draw put 29 of the 37 samples of the lowest bin). None:
        every sample counts once.
    """
    if bins < 2:
        raise ParameterError(f"bins must be >= 2, got {bins}")
    gb = np.asarray(g_before, float).ravel()
    ga = np.asarray(g_after, float).ravel()
    dr = np.broadcast_to(np.asarray(direction_of), np.asarray(g_before).shape).ravel()
    if gb.shape != ga.shape:
        raise ShapeError(f"g_before {gb.shape} and g_after {ga.shape} differ")
    ok_all = np.ones(gb.shape, bool) if valid is None else np.asarray(valid, bool).ravel()
    eps = 1e-3 * (g_max - g_min)
    near_top = (dr > 0) & (np.maximum(gb, ga) > g_max - eps)
    near_bottom = (dr < 0) & (np.minimum(gb, ga) < g_min + eps)
    ok_all = ok_all & ~near_top & ~near_bottom
    grp = None if groups is None else np.broadcast_to(np.asarray(groups), np.asarray(g_before).shape).ravel()
    edges = np.linspace(g_min, g_max, bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    curves = {}
    for name, sgn in (("up", 1), ("down", -1)):
        sel = (dr == sgn) & ok_all
        if not sel.any():
            continue
        x, dg = gb[sel], (ga - gb)[sel]
        k = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
        cnt = np.bincount(k, minlength=bins)
        if grp is None:
            wt = np.ones(x.size)
        else:                           # 1 / (samples of the same train in the same bin)
            _, inv, per = np.unique(np.stack([grp[sel], k]), axis=1, return_inverse=True, return_counts=True)
            wt = 1.0 / per[inv.ravel()]
        wsum = np.bincount(k, wt, bins)
        ok = cnt > 0
        safe = np.where(ok, wsum, 1.0)
        gm = np.where(ok, np.bincount(k, wt * x, bins) / safe, centres)
        mu = _fill_empty(centres, np.bincount(k, wt * dg, bins) / safe, ok)
        if smooth > 0:
            for b in np.nonzero(ok)[0]:
                w = np.abs(k - b) <= smooth
                xs = (x[w] - gm[b]) / (edges[1] - edges[0])
                if np.ptp(xs) > 0.5:
                    mu[b] = np.polyfit(xs, dg[w], 1, w=np.sqrt(wt[w]))[1]
        # spread: residual about the interpolated mean curve, so the trend inside a bin
        # (PCM steps shrink along a bin) does not count as noise; weighted like the mean, with
        # the unbiased correction for the effective number of samples (cnt - 1 when unweighted)
        res = dg - np.interp(x, gm, mu)
        w2 = np.bincount(k, wt ** 2, bins)
        den = np.where(ok, wsum - w2 / safe, 0.0)
        var = np.bincount(k, wt * res ** 2, bins) / np.where(den > 0, den, 1.0)
        sd = _fill_empty(centres, np.sqrt(var), den > 0)
        curves[name] = {"g": gm.tolist(), "mean": mu.tolist(), "std": sd.tolist(), "count": cnt.tolist()}
    return StepTable(device=device, g_min=g_min, g_max=g_max, edges=tuple(edges.tolist()), curves=curves)


def _pulse_plan(model, bins: int, pulses: int, directions: tuple[str, ...]):
    """Start states (one per bin and direction: up from the bin's low edge, down from its high
    edge) and the signed amplitude rows of every instance."""
    g_lo, g_hi = _device_g_range(model)
    edges = np.linspace(g_lo, g_hi, bins + 1)
    starts, signs = [], []
    for d in directions:
        s = direction_sign(d)
        g0 = edges[:-1] if s > 0 else edges[1:]
        # stay a hair inside the range: from_conductance clips, and a start on the bound
        # gives no step to learn from
        g0 = np.clip(g0, g_lo + 1e-4 * (g_hi - g_lo), g_hi - 1e-4 * (g_hi - g_lo))
        starts.append(model.from_conductance(g0))
        signs.append(np.full(bins, s))
    s0 = np.concatenate(starts)
    sign = np.concatenate(signs)
    amps = np.repeat((sign * model.v_write)[:, None], pulses, axis=1)
    return s0, sign, amps


def _draws(model, seed: int, n: int):
    """Device-to-device and cycle-to-cycle draws of ``n`` instances, instance i from
    ``default_rng([seed, i])`` (independent of how many instances a deck holds)."""
    var_l, noise_l = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        var_l.append(model.draw_variation(1, rng))
        noise_l.append(model.draw_noise(1, rng))
    def cat(lst):
        return {k: np.concatenate([v[k] for v in lst]) for k in lst[0]} if lst and lst[0] else None
    return cat(var_l), cat(noise_l)


def run_pulse_trains(name: str, seeds, *, pulses: int = 40, bins: int = 32,
                     shape: PulseShape | None = None, engine=None) -> dict:
    """SPICE pulse trains of device ``name``: per seed one deck of ``bins`` instances per
    direction (each a separate device draw), ``pulses`` full-selected pulses each.

    Returns ``{seed: {"g_spice", "g_twin_draws", "g_twin_nominal" (n_inst, pulses + 1) [S],
    "in_range" (n_inst, pulses + 1) bool: the SPICE state has stayed inside ``state_range``
    so far, "sign" (n_inst,)}}`` plus ``"_elapsed_s"``.
    """
    engine = engine or SubprocessEngine()
    shape = shape or PulseShape()
    model = get_device(name)
    directions = ("up",) if hasattr(model, "reset") else DIRECTIONS
    s0, sign, amps = _pulse_plan(model, bins, pulses, directions)
    benches, draws = [], []
    for seed in seeds:
        var, noise = _draws(model, int(seed), s0.size)
        draws.append((var, noise))
        benches.append(pulse_bench(model, s0, amps, shape, var, noise))
    t0 = time.perf_counter()
    results = engine.run_many([b.deck() for b in benches], need=benches[0].need(), name=f"{name}-steps")
    out: dict = {"_elapsed_s": time.perf_counter() - t0}
    tw_nom = model.to_conductance(model.trajectory(s0, amps, shape))
    lo, hi = model.state_range
    tol = 1e-6 * (hi - lo)
    for seed, res, bench, (var, noise) in zip(seeds, results, benches, draws):
        st = sample_states(res, bench, shape, pulses)
        # 3T1C: V_C is not bounded by the circuit and its read-out (a fitted cubic) means
        # nothing outside the useful range; keep each train up to where it leaves that range
        inside = np.logical_and.accumulate((st >= lo - tol) & (st <= hi + tol), axis=1)
        out[int(seed)] = {
            "g_spice": model.to_conductance(st), "in_range": inside,
            "g_twin_draws": model.to_conductance(model.trajectory(s0, amps, shape, var, noise)),
            "g_twin_nominal": tw_nom, "sign": sign}
    return out


def _err(pred: np.ndarray, ref: np.ndarray, span: float) -> dict:
    d = (np.asarray(pred) - np.asarray(ref)) / span
    return {"rmse_frac": float(np.sqrt(np.mean(d ** 2))), "max_frac": float(np.abs(d).max())}


def _table_trajectories(table: StepTable, g0: np.ndarray, sign: np.ndarray, pulses: int) -> np.ndarray:
    out = [np.asarray(g0, float)]
    g = out[0]
    for _ in range(pulses):
        g = table.apply_signed(g, sign.astype(int))
        out.append(g)
    return np.stack(out, axis=1)


def fit_device_steps(name: str, *, pulses: int = 40, seeds=(0, 1, 2, 3), holdout_seeds=(100, 101),
                     bins: int = 32, smooth: int = 0, shape: PulseShape | None = None, engine=None,
                     keep_curves: int = 8) -> dict:
    """Fit a :class:`StepTable` of device ``name`` to SPICE and score it on held-out seeds.

    Parameters
    ----------
    name : str
        Registry name.
    pulses : int
        Pulses per train (each train starts at a bin edge, so coverage needs
        ``pulses * step >= bin width``; bins a train never reaches are interpolated).
    seeds, holdout_seeds : sequences of int
        Device draws used for the fit and for the scores (disjoint).
    bins : int
        Conductance bins per direction.
    smooth : int
        Half-width (in bins) of the local linear smoothing of the mean step
        (:func:`fit_step_table`); 0: none.
    shape : PulseShape, optional
        Write pulse (default ``PulseShape()``); the table is valid for this pulse only.
    keep_curves : int
        Held-out trajectories per direction kept in the result (for plots).

    Returns
    -------
    dict
        ``table`` (:meth:`StepTable.to_dict`), ``error`` = ``{"step_table", "twin",
        "twin_same_draws"}`` each ``{"rmse_frac", "max_frac"}`` (trajectory error over every
        held-out pulse, fraction of the conductance range; ``twin`` is the uncalibrated twin
        at nominal parameters, ``twin_same_draws`` the twin told the held-out draws),
        ``error_by_direction``, ``one_step`` (RMS single-step error of each predictor, fraction
        of the range), ``spread_ratio`` (held-out residual std / tabulated std, 1 when the
        spread is calibrated; NaN for noiseless devices), ``curves`` (for plots), ``spice_s``.
    """
    if set(map(int, seeds)) & set(map(int, holdout_seeds)):
        raise ParameterError("seeds and holdout_seeds must be disjoint")
    shape = shape or PulseShape()
    model = get_device(name)
    g_lo, g_hi = _device_g_range(model)
    runs = run_pulse_trains(name, list(seeds) + list(holdout_seeds), pulses=pulses, bins=bins,
                            shape=shape, engine=engine)
    train = [runs[int(s)] for s in seeds]
    gb = np.concatenate([r["g_spice"][:, :-1] for r in train])
    ga = np.concatenate([r["g_spice"][:, 1:] for r in train])
    ok = np.concatenate([r["in_range"][:, :-1] for r in train])
    sg = np.concatenate([np.repeat(r["sign"][:, None], pulses, axis=1) for r in train])
    trains = np.arange(gb.shape[0])[:, None] * np.ones((1, pulses), int)   # one group per train
    table = replace(fit_step_table(name, gb, ga, sg, g_min=g_lo, g_max=g_hi, bins=bins, valid=ok, smooth=smooth,
                                   groups=trains),
                    pulse=(shape.width, shape.rise, shape.period))

    scores = _holdout_scores(model, table, [runs[int(s)] for s in holdout_seeds], pulses, shape, keep_curves, bins)
    return {"device": name, "pulses": pulses, "bins": bins, "smooth": smooth, "seeds": [int(s) for s in seeds],
            "holdout_seeds": [int(s) for s in holdout_seeds], "shape": asdict(shape),
            "g_range_s": [g_lo, g_hi], "table": table.to_dict(), **scores, "spice_s": runs["_elapsed_s"]}


def _holdout_scores(model, table: StepTable, hold: list, pulses: int, shape: PulseShape, keep_curves: int,
                    bins: int) -> dict:
    """Errors of the table and of the twin on the held-out trains (see :func:`fit_device_steps`)."""
    g_lo, g_hi = table.g_min, table.g_max
    span = g_hi - g_lo
    sp = np.concatenate([r["g_spice"] for r in hold])
    inside = np.concatenate([r["in_range"] for r in hold])
    sign = np.concatenate([r["sign"] for r in hold])
    preds = {"step_table": _table_trajectories(table, sp[:, 0], sign, pulses),
             "twin": np.concatenate([r["g_twin_nominal"] for r in hold]),
             "twin_same_draws": np.concatenate([r["g_twin_draws"] for r in hold])}
    error = {k: _err(v[inside], sp[inside], span) for k, v in preds.items()}
    by_dir = {}
    for d in table.directions:
        m = (sign == direction_sign(d))[:, None] & inside
        by_dir[d] = {k: _err(v[m], sp[m], span) for k, v in preds.items()}
    # one-step errors: each predictor started from the SPICE state before every pulse
    gb_h, ga_h = sp[:, :-1], sp[:, 1:]
    m1 = inside[:, 1:]
    sg_h = np.repeat(sign[:, None], pulses, axis=1)
    tab1 = np.clip(np.where(sg_h > 0, gb_h + table.mean_step(gb_h, "up"),
                            gb_h + (table.mean_step(gb_h, "down") if "down" in table.curves else 0.0)),
                   g_lo, g_hi)
    st = model.from_conductance(gb_h.ravel())
    tw1 = model.to_conductance(model.step(st, (sg_h * model.v_write).ravel(), shape)).reshape(gb_h.shape)
    one_step = {"step_table": _err(tab1[m1], ga_h[m1], span)["rmse_frac"],
                "twin": _err(tw1[m1], ga_h[m1], span)["rmse_frac"]}
    sd = np.where(sg_h > 0, table.std_step(gb_h, "up"),
                  table.std_step(gb_h, "down") if "down" in table.curves else 1.0)[m1]
    ratio = (float(np.std((ga_h - tab1)[m1]) / np.sqrt(np.mean(sd ** 2)))
             if np.mean(sd ** 2) > (1e-6 * span) ** 2 else float("nan"))

    # curves for plots: a few held-out trajectories per direction, and step vs G
    curves = {}
    for d in table.directions:
        idx = np.nonzero(sign == direction_sign(d))[0]
        idx = idx[np.linspace(0, idx.size - 1, min(keep_curves, idx.size)).astype(int)]
        gg = np.linspace(g_lo, g_hi, 4 * bins + 1)[1:-1]
        tw_step = model.to_conductance(model.step(model.from_conductance(gg), direction_sign(d) * model.v_write * np.ones_like(gg), shape)) - gg
        m = (sg_h == direction_sign(d)) & m1
        pick = np.random.default_rng(0).permutation(int(m.sum()))[:600]
        curves[d] = {"spice": np.where(inside[idx], sp[idx], np.nan).tolist(), "step_table": preds["step_table"][idx].tolist(),
                     "twin": preds["twin"][idx].tolist(), "g_grid": gg.tolist(), "twin_step": tw_step.tolist(),
                     "sample_g": gb_h[m][pick].tolist(), "sample_step": (ga_h - gb_h)[m][pick].tolist()}
    return {"error": error, "error_by_direction": by_dir, "one_step_rmse_frac": one_step, "spread_ratio": ratio,
            "curves": curves}

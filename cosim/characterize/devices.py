"""Device characterisation: pulse response and I-V, SPICE and numpy twin overlaid.

Layer: cosim. ``characterize_device(name, out_dir)`` is the library function behind
``xbar device NAME``; ``pcm_array_update_experiment`` times one update phase of an N x N PCM
array with wire resistance (the performance target of the update phase).

Measured (64 x 64 PCM, 1 ohm segments, 10 slots of 70 ns, 50 ns flat, 5 ns edges, TMAX 20 ns,
p_pulse 0.5, this 2-core machine, wall incl. parse; error = SPICE vs twin fed ideal coincidence
counts, so it includes the IR drop):

=====================================  ======  ======  =============
variant                                wall    points  max err/step
=====================================  ======  ======  =============
live current B-source, gear            20.8 s  223     0.054
frozen current (resistor), gear        18.8 s  223     0.055
frozen current, trap                   17.7 s  223     0.021
frozen current, gear, threshold knots  34.9 s  462     0.032
=====================================  ======  ======  =============

The 2 s target is NOT met by a transient of this form: every PWL corner is a breakpoint after
which ngspice cuts the step to 0.1 x the gap to the next one (~20 points per slot), and each
Newton iteration (>= 2 per point) reloads and refactors the whole matrix. At 32 x 32, driving the
lines with B-source ``pwl(time, ...)`` (no breakpoints; needs a final flat point, else the
B-source pwl extrapolates) gave 73 points instead of 221 but 0.35-step errors.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from models.device import PulseShape, fmt, get_device, pwl_text


def _sample(res, n: int, shape: PulseShape, slots: int) -> np.ndarray:
    t = res.vectors["time"]
    return np.stack([np.interp(np.arange(slots + 1) * shape.period, t, res.vectors[f"v(x{i}.s)"])
                     for i in range(n)])


def characterize_device(name: str, out_dir: Path, *, seeds: int = 5, pulses: int = 40,
                        seed: int = 0, shape: PulseShape | None = None, engine=None) -> dict:
    """Pulse response (conductance vs pulse number, up then down, over ``seeds`` draws of the
    device-to-device and cycle-to-cycle noise) and I-V, SPICE and twin; writes a PNG and a CSV.

    Parameters
    ----------
    name : str
        Registry name (``pcm``, ``rram``, ``ecram``, ``cap3t1c``, ``linear``).
    out_dir : Path
        Output folder (created).
    seeds : int
        Devices drawn (one Generator ``default_rng(seed + k)`` per device k).
    pulses : int
        Full-selected pulses in each direction (PCM is SET-only: ``2 * pulses`` SET pulses).
    seed : int
        Base seed.
    shape : PulseShape, optional
        Write pulse (default ``PulseShape()``).
    engine : Engine, optional
        Default ``SubprocessEngine()``.

    Returns
    -------
    dict
        ``pulse_max_diff_s`` / ``pulse_rms_diff_s`` (SPICE - twin conductance [S]) and the same
        as a fraction of the largest single twin step (``pulse_max_diff_steps``), ``iv_max_diff_a``
        / ``iv_rms_diff_a`` [A] and ``iv_max_diff_rel`` (of the largest |I|), ``png``, ``csv``,
        ``spice_s`` (run time [s]).
    """
    from cosim.sim.engine import SubprocessEngine
    engine = engine or SubprocessEngine()
    shape = shape or PulseShape()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = get_device(name)
    lo, hi = model.state_range

    # states: start near the low-conductance end for the up sweep
    g_lo, g_hi = sorted(model.to_conductance(np.array([lo, hi])))
    s_start = model.from_conductance(np.array([g_lo + 0.05 * (g_hi - g_lo)]))[0]
    s0 = np.full(seeds, s_start)
    sign = np.r_[np.ones(pulses), (1 if name == "pcm" else -1) * np.ones(pulses)]
    amps = np.tile(sign * model.v_write, (seeds, 1))
    var_l, noise_l = [], []
    for k in range(seeds):
        rng = np.random.default_rng(seed + k)
        var_l.append(model.draw_variation(1, rng))
        noise_l.append(model.draw_noise(1, rng))
    var = {key: np.concatenate([v[key] for v in var_l]) for key in var_l[0]} if var_l[0] else None
    noise = {key: np.concatenate([v[key] for v in noise_l]) for key in noise_l[0]} if noise_l[0] else None

    t0 = time.perf_counter()
    res = engine.run(model.pulse_deck(s0, amps, shape, var, noise), name=f"{name}-pulses")
    spice_s = _sample(res, seeds, shape, amps.shape[1])
    twin_s = model.trajectory(s0, amps, shape, var, noise)
    g_sp, g_tw = model.to_conductance(spice_s), model.to_conductance(twin_s)
    step = np.abs(np.diff(g_tw, axis=1)).max()

    # I-V at three states, below every threshold
    iv_states = model.from_conductance(g_lo + np.array([0.2, 0.5, 0.8]) * (g_hi - g_lo))
    v_max = model.v_read if name == "cap3t1c" else 0.9 * model.v_threshold
    res_iv = engine.run(model.iv_deck(iv_states, v_max), name=f"{name}-iv")
    elapsed = time.perf_counter() - t0
    iv = []
    for i in range(iv_states.size):
        v = res_iv.vectors[f"v(a{i})"]
        order = np.argsort(v, kind="stable")
        i_sp = -res_iv.vectors[f"i(vr{i})"]
        i_tw = model.current(res_iv.vectors[f"v(x{i}.s)"], v)
        iv.append((v[order], i_sp[order], i_tw[order]))
    iv_diff = np.concatenate([a[1] - a[2] for a in iv])
    i_scale = max(np.abs(a[2]).max() for a in iv)

    csv_path = out_dir / f"{name}_characterization.csv"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kind", "index", "x", "spice", "twin"])
        for k in range(seeds):
            for j in range(g_sp.shape[1]):
                w.writerow(["pulse_G_S", k, j, f"{g_sp[k, j]:.9g}", f"{g_tw[k, j]:.9g}"])
        for k, (v, a, b) in enumerate(iv):
            for x, y, z in zip(v, a, b):
                w.writerow(["iv_A", k, f"{x:.9g}", f"{y:.9g}", f"{z:.9g}"])

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    n_axis = np.arange(g_sp.shape[1])
    for k in range(seeds):
        ax1.plot(n_axis, g_sp[k] * 1e6, "-", color=f"C{k % 10}", lw=1.2,
                 label="SPICE" if k == 0 else None)
        ax1.plot(n_axis, g_tw[k] * 1e6, "o", color=f"C{k % 10}", ms=2.5, mfc="none",
                 label="twin" if k == 0 else None)
    ax1.axvline(pulses, color="0.6", lw=0.8, ls=":")
    ax1.set_xlabel("pulse number")
    ax1.set_ylabel(f"G at {model.v_read:g} V [uS]")
    ax1.set_title(f"{name}: pulse response ({seeds} devices)")
    ax1.legend()
    for k, (v, a, b) in enumerate(iv):
        ax2.plot(v, a * 1e6, "-", color=f"C{k}", label="SPICE" if k == 0 else None)
        ax2.plot(v[::3], b[::3] * 1e6, "o", color=f"C{k}", ms=3, mfc="none", label="twin" if k == 0 else None)
    ax2.set_xlabel("V [V]")
    ax2.set_ylabel("I [uA]")
    ax2.set_title(f"{name}: I-V (read regime)")
    ax2.legend()
    fig.tight_layout()
    png_path = out_dir / f"{name}_characterization.png"
    fig.savefig(png_path, dpi=120)
    plt.close(fig)

    d = (g_sp - g_tw).ravel()
    return {
        "device": name, "seeds": seeds, "pulses": pulses,
        "pulse_max_diff_s": float(np.abs(d).max()), "pulse_rms_diff_s": float(np.sqrt(np.mean(d ** 2))),
        "pulse_max_diff_steps": float(np.abs(d).max() / step), "max_step_s": float(step),
        "iv_max_diff_a": float(np.abs(iv_diff).max()), "iv_rms_diff_a": float(np.sqrt(np.mean(iv_diff ** 2))),
        "iv_max_diff_rel": float(np.abs(iv_diff).max() / i_scale),
        "spice_s": elapsed, "png": str(png_path), "csv": str(csv_path),
    }


def pcm_array_update_experiment(n: int = 64, *, slots: int = 10, r_wire: float = 1.0,
                                live_current: bool = False, method: str = "gear",
                                knots: bool = False, shape: PulseShape | None = None,
                                p_pulse: float = 0.5, seed: int = 1, engine=None) -> dict:
    """One update phase of an n x n PCM array: rows driven at +V/2, columns at -V/2, each
    slot holding a pulse with probability ``p_pulse``; wires of ``r_wire`` per cell segment,
    driven from one end. Returns wall time, time points, and the SPICE-vs-twin error (twin fed
    the coincidence counts, ideal wires) in steps, on every cell."""
    from cosim.sim.engine import SubprocessEngine
    from models.pcm import PCM
    engine = engine or SubprocessEngine(timeout=900)
    shape = shape or PulseShape(width=50e-9, rise=5e-9, period=70e-9, tstep=20e-9)
    model = PCM()
    rng = np.random.default_rng(seed)
    xr = rng.random((n, slots)) < p_pulse
    xc = rng.random((n, slots)) < p_pulse
    s0 = rng.uniform(1.0, 20.0, (n, n))
    half = model.v_write / 2
    kn = tuple(k / 2 for k in model.knots) if knots else ()  # each line carries half the cell voltage
    lines = [f"* pcm {n}x{n} update phase", model.subckt(live_current=live_current)]
    for i in range(n):
        lines.append(f"VR{i} r{i}_d 0 PWL({pwl_text(xr[i] * half, shape, knots=kn)})")
        lines.append(f"VC{i} c{i}_d 0 PWL({pwl_text(xc[i] * -half, shape, knots=kn)})")
    for i in range(n):
        prev = f"r{i}_d"
        for j in range(n):
            lines.append(f"RR{i}_{j} {prev} r{i}_{j} {fmt(r_wire)}")
            prev = f"r{i}_{j}"
    for j in range(n):
        prev = f"c{j}_d"
        for i in range(n):
            lines.append(f"RC{i}_{j} {prev} c{i}_{j} {fmt(r_wire)}")
            prev = f"c{i}_{j}"
    inst = model.instance_params(s0.ravel())
    keys = list(inst)
    for i in range(n):
        for j in range(n):
            k = i * n + j
            params = " ".join(f"{key}={fmt(inst[key][k])}" for key in keys)
            lines.append(f"X{i}_{j} r{i}_{j} c{i}_{j} {model.subckt_name} {params}")
    lines += [f".options klu acct method={method}",
              f".tran {fmt(shape.tstep)} {fmt(slots * shape.period)} 0 {fmt(shape.tstep)} uic",
              ".save " + " ".join(f"v(x{i}_{j}.s)" for i in range(n) for j in range(n)), ".end"]
    deck = "\n".join(lines)
    t0 = time.perf_counter()
    res = engine.run(deck, name=f"pcm{n}-update")
    wall = time.perf_counter() - t0
    spice = np.array([[res.vectors[f"v(x{i}_{j}.s)"][-1] for j in range(n)] for i in range(n)])
    counts = (xr[:, None, :] & xc[None, :, :]).sum(axis=2)
    twin = model.apply_counts(s0.ravel(), counts.ravel(), shape).reshape(n, n)
    one = model.apply_counts(s0.ravel(), np.ones(n * n, int), shape).reshape(n, n) - s0
    import re
    stats = {}
    for key, pat in (("points", r"Transient timepoints\s*=\s*(\d+)"), ("iterations", r"Transient iterations\s*=\s*(\d+)")):
        m = re.search(pat, res.log)
        stats[key] = int(m.group(1)) if m else len(res.vectors["time"])
    return {"n": n, "slots": slots, "wall_s": wall, "points": len(res.vectors["time"]),
            "live_current": live_current, "method": method, "knots": knots,
            "max_err_steps": float(np.max(np.abs(spice - twin) / one)),
            "mean_err_steps": float(np.mean((spice - twin) / one)),
            "mean_pulses": float(counts.mean()), "deck_chars": len(deck), **stats}

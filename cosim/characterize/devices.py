"""Device characterisation: pulse response and I-V, SPICE and numpy twin overlaid.

Layer: cosim.characterize. ``characterize_device(name, out_dir)`` is the library function behind
``xbar device NAME``: the benches of :mod:`netlists.benches` in ngspice beside the device's
twin, with a PNG and a CSV. ``pcm_array_update_experiment`` times one update phase of an N x N
PCM array of device subcircuits with wire resistance
(:func:`netlists.update_circuit.build_update_circuit`) against the twin.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from cosim.sim.engine import SubprocessEngine
from cosim.sim.files import save_figure, write_csv
from models.device import DeviceModel
from models.errors import ParameterError
from models.pcm import PCM
from models.pulse import PulseShape
from models.registry import get_device
from netlists.benches import Bench, iv_bench, pulse_bench
from netlists.crossbar import CrossbarSpec
from netlists.spice import Tran, write_spice
from netlists.update_circuit import WriteScheme, build_update_circuit, state_vectors, update_duration

__all__ = ["sample_states", "characterize_device", "pcm_array_update_experiment"]


def sample_states(res, bench: Bench, shape: PulseShape, slots: int) -> np.ndarray:
    """States of every device of a pulse bench after each slot, (devices, slots + 1): the
    transient sampled at ``k * shape.period``."""
    t = res.vectors["time"]
    return np.stack([np.interp(np.arange(slots + 1) * shape.period, t, res.vectors[name])
                     for name in bench.vectors["state"]])


def _draws(model: DeviceModel, seed: int, n: int):
    """Device-to-device and cycle-to-cycle draws of device k from ``default_rng(seed + k)``."""
    var_l, noise_l = [], []
    for k in range(n):
        rng = np.random.default_rng(seed + k)
        var_l.append(model.draw_variation(1, rng))
        noise_l.append(model.draw_noise(1, rng))
    var = {key: np.concatenate([v[key] for v in var_l]) for key in var_l[0]} if var_l[0] else None
    noise = {key: np.concatenate([v[key] for v in noise_l]) for key in noise_l[0]} if noise_l[0] else None
    return var, noise


def _pulse_response(model: DeviceModel, name: str, seeds: int, pulses: int, seed: int, shape: PulseShape, engine):
    """SPICE and twin conductances (devices, 2 pulses + 1) [S] of pulses up, then down (PCM:
    SET only)."""
    lo, hi = model.state_range
    g_lo, g_hi = sorted(model.to_conductance(np.array([lo, hi])))
    s_start = model.from_conductance(np.array([g_lo + 0.05 * (g_hi - g_lo)]))[0]
    s0 = np.full(seeds, s_start)
    sign = np.r_[np.ones(pulses), (1 if name == "pcm" else -1) * np.ones(pulses)]
    amps = np.tile(sign * model.v_write, (seeds, 1))
    var, noise = _draws(model, seed, seeds)
    bench = pulse_bench(model, s0, amps, shape, var, noise)
    res = engine.run(bench.deck(), need=bench.need(), name=f"{name}-pulses")
    spice_s = sample_states(res, bench, shape, amps.shape[1])
    twin_s = model.trajectory(s0, amps, shape, var, noise)
    return model.to_conductance(spice_s), model.to_conductance(twin_s), (g_lo, g_hi)


def _iv_curves(model: DeviceModel, name: str, g_range, engine) -> list:
    """(v, SPICE current, twin current) at three states, below every threshold."""
    g_lo, g_hi = g_range
    iv_states = model.from_conductance(g_lo + np.array([0.2, 0.5, 0.8]) * (g_hi - g_lo))
    v_max = model.v_read if name == "cap3t1c" else 0.9 * model.v_threshold
    bench = iv_bench(model, iv_states, v_max)
    res = engine.run(bench.deck(), need=bench.need(), name=f"{name}-iv")
    iv = []
    for v_name, i_name, s_name in zip(bench.vectors["v"], bench.vectors["i"], bench.vectors["state"]):
        v = res.vectors[v_name]
        order = np.argsort(v, kind="stable")
        i_sp = -res.vectors[i_name]
        i_tw = model.current(res.vectors[s_name], v)
        iv.append((v[order], i_sp[order], i_tw[order]))
    return iv


#: Largest bench of :func:`characterize_device`: its transient resolves every pulse edge of every
#: device, so its deck, its run and its raw file grow with pulses x seeds.
MAX_PULSES, MAX_SEEDS = 10_000, 100


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
    for what, v, most in (("seeds", seeds, MAX_SEEDS), ("pulses", pulses, MAX_PULSES)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= most:
            raise ParameterError(f"{what} must be an integer in 1..{most:,}, got {v!r} (one ngspice transient "
                                 "resolves every pulse edge of every seed's device: its deck, run time and raw "
                                 "file grow with pulses x seeds)")
    engine = engine or SubprocessEngine()
    shape = shape or PulseShape()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = get_device(name)
    t0 = time.perf_counter()
    g_sp, g_tw, g_range = _pulse_response(model, name, seeds, pulses, seed, shape, engine)
    iv = _iv_curves(model, name, g_range, engine)
    elapsed = time.perf_counter() - t0
    step = np.abs(np.diff(g_tw, axis=1)).max()
    iv_diff = np.concatenate([a[1] - a[2] for a in iv])
    i_scale = max(np.abs(a[2]).max() for a in iv)
    csv_path = _write_csv(out_dir / f"{name}_characterization.csv", g_sp, g_tw, iv)
    png_path = _plot(out_dir / f"{name}_characterization.png", model, name, g_sp, g_tw, iv, pulses)
    d = (g_sp - g_tw).ravel()
    return {
        "device": name, "seeds": seeds, "pulses": pulses,
        "pulse_max_diff_s": float(np.abs(d).max()), "pulse_rms_diff_s": float(np.sqrt(np.mean(d ** 2))),
        "pulse_max_diff_steps": float(np.abs(d).max() / step), "max_step_s": float(step),
        "iv_max_diff_a": float(np.abs(iv_diff).max()), "iv_rms_diff_a": float(np.sqrt(np.mean(iv_diff ** 2))),
        "iv_max_diff_rel": float(np.abs(iv_diff).max() / i_scale),
        "spice_s": elapsed, "png": str(png_path), "csv": str(csv_path),
    }


def _write_csv(path: Path, g_sp: np.ndarray, g_tw: np.ndarray, iv: list) -> Path:
    rows = [["pulse_G_S", k, j, f"{g_sp[k, j]:.9g}", f"{g_tw[k, j]:.9g}"]
            for k in range(g_sp.shape[0]) for j in range(g_sp.shape[1])]
    rows += [["iv_A", k, f"{x:.9g}", f"{y:.9g}", f"{z:.9g}"] for k, (v, a, b) in enumerate(iv) for x, y, z in zip(v, a, b)]
    return write_csv(path, ["kind", "index", "x", "spice", "twin"], rows)


def _plot(path: Path, model: DeviceModel, name: str, g_sp, g_tw, iv, pulses: int) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    n_axis = np.arange(g_sp.shape[1])
    for k in range(g_sp.shape[0]):
        ax1.plot(n_axis, g_sp[k] * 1e6, "-", color=f"C{k % 10}", lw=1.2, label="SPICE" if k == 0 else None)
        ax1.plot(n_axis, g_tw[k] * 1e6, "o", color=f"C{k % 10}", ms=2.5, mfc="none", label="twin" if k == 0 else None)
    ax1.axvline(pulses, color="0.6", lw=0.8, ls=":")
    ax1.set(xlabel="pulse number", ylabel=f"G at {model.v_read:g} V [uS]",
            title=f"{name}: pulse response ({g_sp.shape[0]} devices)")
    ax1.legend()
    for k, (v, a, b) in enumerate(iv):
        ax2.plot(v, a * 1e6, "-", color=f"C{k}", label="SPICE" if k == 0 else None)
        ax2.plot(v[::3], b[::3] * 1e6, "o", color=f"C{k}", ms=3, mfc="none", label="twin" if k == 0 else None)
    ax2.set(xlabel="V [V]", ylabel="I [uA]", title=f"{name}: I-V (read regime)")
    ax2.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def pcm_array_update_experiment(n: int = 64, *, slots: int = 10, r_wire: float = 1.0,
                                live_current: bool = False, method: str = "gear",
                                knots: bool = False, shape: PulseShape | None = None,
                                p_pulse: float = 0.5, seed: int = 1, engine=None) -> dict:
    """One update phase of an n x n PCM array: rows driven at +V/2, columns at -V/2, each
    slot holding a pulse with probability ``p_pulse``; wires of ``r_wire`` per cell segment,
    driven from one end. Returns wall time, time points, and the SPICE-vs-twin error (twin fed
    the coincidence counts, ideal wires) in steps, on every cell."""
    engine = engine or SubprocessEngine(timeout=900)
    shape = shape or PulseShape(width=50e-9, rise=5e-9, period=70e-9, tstep=20e-9)
    model = PCM()
    rng = np.random.default_rng(seed)
    xr = rng.random((slots, n)) < p_pulse
    xc = rng.random((slots, n)) < p_pulse
    s0 = rng.uniform(1.0, 20.0, (n, n))
    v = model.v_write
    scheme = WriteScheme(v_write=v, t_pulse=shape.width, t_edge=shape.rise, t_slot=shape.period,
                         knots=tuple(k / v for k in model.knots if 0 < k / v < 1) if knots else ())
    spec = CrossbarSpec(rows=n, cols=n, r_row=r_wire, r_col=r_wire)
    params = {k: np.asarray(a, float).reshape(n, n) for k, a in model.instance_params(s0.ravel()).items()}
    circuit = build_update_circuit(spec, subckt=model.subckt(live_current=live_current), subckt_name=model.subckt_name,
                                   params=params, row_bits=xr, col_bits=xc, polarity=np.ones(slots), scheme=scheme)
    names = state_vectors(spec)
    deck = write_spice(circuit, Tran(shape.tstep, update_duration(slots, scheme), max_step=shape.tstep, uic=True),
                       save=names, options={"acct": None, "method": method})
    t0 = time.perf_counter()
    res = engine.run(deck, need=names, name=f"pcm{n}-update")
    wall = time.perf_counter() - t0
    spice = np.array([res.vectors[k][-1] for k in names]).reshape(n, n)
    counts = xr.astype(int).T @ xc.astype(int)
    twin = model.apply_counts(s0.ravel(), counts.ravel(), shape).reshape(n, n)
    one = model.apply_counts(s0.ravel(), np.ones(n * n, int), shape).reshape(n, n) - s0
    stats = {}
    for key, pat in (("points", r"Transient timepoints\s*=\s*(\d+)"), ("iterations", r"Transient iterations\s*=\s*(\d+)")):
        m = re.search(pat, res.log)
        stats[key] = int(m.group(1)) if m else len(res.vectors["time"])
    return {"n": n, "slots": slots, "wall_s": wall, "points": len(res.vectors["time"]),
            "live_current": live_current, "method": method, "knots": knots,
            "max_err_steps": float(np.max(np.abs(spice - twin) / one)),
            "mean_err_steps": float(np.mean((spice - twin) / one)),
            "mean_pulses": float(counts.mean()), "deck_chars": len(deck), **stats}

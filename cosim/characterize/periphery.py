"""Periphery benches and characterisation: DAC -> cells -> integrator -> ADC, SPICE and twin.

Layer: cosim.characterize. The read bench is the read chain of
:func:`netlists.readchain.build_read_chain` on a bare cell matrix (no wires, zero cells open, no
sense sources) for one read; the ADC and op-amp benches come from :mod:`netlists.benches`.
Each bench runs in ngspice and is compared with the numpy twins.
``characterize_periphery(out_dir)`` writes plots + CSV per block and returns a summary dict (the
library function behind ``xbar periphery``).

Timeline of one bench read (:func:`read_timing`; logic signals 0 / 1 V, edges of one
``t_lsb``)::

    rst  1 ____                                   (integrator reset, 0 .. t_reset)
              \\_______________________________________
    rows        |<- DAC phases (read_duration) ->|
    en   0 _________________________________________/------   (ramp ADC: ramp + counting)
    clr  1 _________________________________________
                                                    \\______   (counter clear)
              t_reset                  t_adc = t_reset + read + 2 t_lsb     t_end

Cells are plain resistors ``g[i, j]`` from row i to column j: the charge into column j is
exactly ``sum_i g_ij * volt_seconds_i`` for an ideal virtual ground.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cosim.sim.engine import SubprocessEngine
from cosim.sim.files import save_figure, write_csv
from models.adc import (QuantizerParams, RampAdcParams, inl_dnl, quantize, ramp_convert, transition_levels)
from models.dac import (DacParams, read_duration, row_waveforms, sample_waveforms, shift_and_add, union_times,
                        volt_second_moments, volt_seconds)
from models.errors import ShapeError
from models.integrator import IntegratorParams, charge_to_voltage, integrate_waveform
from models.opamp import MacroOpAmpParams, TwoStageOpAmpParams
from netlists.benches import adc_sweep_bench, opamp_bench
from netlists.crossbar import CrossbarSpec
from netlists.readchain import ChainSchedule, ChainTiming, PeripheryConfig, build_read_chain
from netlists.spice import AcSweep, Op, Tran, write_spice

__all__ = ["read_timing", "read_bench", "run_read", "read_twin", "measure_opamp", "run_adc_sweep",
           "characterize_periphery"]


def read_timing(dac: DacParams, adc: QuantizerParams | RampAdcParams | None = None,
                t_reset: float | None = None) -> ChainTiming:
    """Timeline of one bench read with ``dac`` (all its bits in one window) and, optionally, a
    ramp converter (see the module docstring)."""
    te = dac.t_lsb
    t_reset = 4 * te if t_reset is None else t_reset
    t_pulses = t_reset + te
    t_adc = t_pulses + read_duration(dac) + te
    t_end = t_adc + (adc.t_conv + 2 * adc.t_clk if isinstance(adc, RampAdcParams) else te)
    return ChainTiming(t_reset, t_pulses, t_adc, t_end, te)


def _bench_schedule(codes: np.ndarray, dac: DacParams, tm: ChainTiming, ramp: bool,
                    reset_at: float | None) -> ChainSchedule:
    te = tm.t_edge
    waves = row_waveforms(codes, dac, t_start=tm.t_pulses)
    rst = ([0.0, tm.t_reset - te, tm.t_reset], [1.0, 1.0, 0.0])
    t_stop = tm.t_end
    if reset_at is not None:
        rst = (rst[0] + [reset_at, reset_at + te], rst[1] + [0.0, 1.0])
        t_stop = max(t_stop, reset_at + 40 * te)
    control = {"rst": (tuple(rst[0]), tuple(rst[1]))}
    if ramp:
        control["en"] = ((0.0, tm.t_adc, tm.t_adc + te), (0.0, 0.0, 1.0))
        control["clr"] = ((0.0, tm.t_adc, tm.t_adc + te), (1.0, 1.0, 0.0))
    return ChainSchedule(tuple(tuple(w[:, 0]) for w in waves), tuple(tuple(w[:, 1]) for w in waves), control, t_stop)


def read_bench(codes: np.ndarray, g: np.ndarray, dac: DacParams, integ: IntegratorParams,
               adc: QuantizerParams | RampAdcParams | None = None, *, kind: str = "pwl",
               vos: np.ndarray | None = None, tmax: float | None = None, reset_at: float | None = None):
    """The circuit of one bench read: ``rows`` DAC lines (one input vector of signed ``codes``),
    resistor cells ``g`` (rows x cols) [S], ``cols`` integrators and, with ``adc``, ``cols``
    converters (ideal quantisers, or ramp converters with comparator offsets ``vos`` [V]).
    ``kind``: ``"pwl"`` DAC sources with a breakpoint at every corner, ``"bpwl"`` without.
    ``reset_at`` [s]: close the reset switch again then (the run is extended by 40 edges).

    Returns ``(deck, timing, vectors)``; vectors name the integrator outputs (``"out"``), the
    codes (``"code"``) and the ramp (``"ramp"``)."""
    codes = np.asarray(codes)
    g = np.atleast_2d(np.asarray(g, dtype=float))
    rows, cols = g.shape
    if codes.shape != (rows,):
        raise ShapeError(f"codes has shape {codes.shape}, expected ({rows},)")
    if kind not in ("pwl", "bpwl"):
        raise ShapeError(f"kind must be 'pwl' or 'bpwl', got {kind!r}")
    tm = read_timing(dac, adc)
    ramp = isinstance(adc, RampAdcParams)
    cfg = PeripheryConfig(dac=dac, integrator=integ, adc=adc if adc is not None else QuantizerParams(),
                          exact_corners=kind == "pwl", range_check="warn")
    sched = _bench_schedule(codes, dac, tm, ramp, reset_at)
    spec = CrossbarSpec(rows=rows, cols=cols, v_read=dac.v_read)
    circuit = build_read_chain(spec, g, cfg, sched, sense=False, adc_offsets=vos, converters=adc is not None,
                               title=f"periphery read: {rows} rows x {cols} columns, {dac.encoding}, {kind}")
    vec = {"out": [f"v(io{j})" for j in range(cols)]}
    if adc is not None:
        vec["code"] = [f"v(code{j})" for j in range(cols)]
    if ramp:
        vec["ramp"] = ["v(ramp)"]
    save = ["time"] + [v for names in vec.values() for v in names]
    deck = write_spice(circuit, Tran(tm.t_edge, sched.t_stop, max_step=tmax or 4 * tm.t_edge), save=save)
    return deck, replace(tm, t_end=sched.t_stop), vec


def run_read(codes, g, dac, integ, adc=None, *, engine=None, **kw) -> dict:
    """Run :func:`read_bench`; return final ``v_out`` [V] and ``codes`` per column, the output
    at the end of the read window, the waveforms, wall time and number of time points."""
    engine = engine or SubprocessEngine()
    deck, tm, vec = read_bench(codes, g, dac, integ, adc, **kw)
    res = engine.run(deck, need=[v for names in vec.values() for v in names], name="periphery")
    v = res.vectors
    t = v["time"]
    out = np.stack([v[name] for name in vec["out"]])
    k_read = np.searchsorted(t, tm.t_adc) - 1
    r = {"time": t, "out": out, "v_read_end": np.array([np.interp(tm.t_adc, t, o) for o in out]),
         "v_out": out[:, -1], "elapsed_s": res.elapsed_s, "points": len(t), "timing": tm,
         "vectors": v, "k_read_end": k_read}
    if adc is not None:
        r["codes"] = np.rint([v[name][-1] for name in vec["code"]]).astype(np.int64)
    return r


def read_twin(codes, g, dac: DacParams, integ: IntegratorParams, adc=None, vos=None, *,
              exact: bool = False) -> dict:
    """Numpy twin of :func:`run_read`.

    ``exact=False``: charge-level (``charge_to_voltage``: finite gain and bandwidth, offset,
    saturation). ``exact=True``: the two-state ODE on the union of the DAC corners
    (``integrate_waveform``), per column.
    """
    g = np.atleast_2d(np.asarray(g, dtype=float))
    tm = read_timing(dac, adc)
    vs = volt_seconds(codes, dac)
    if dac.encoding == "bitserial":
        vs = vs.sum(axis=0)  # one integration over all bit slots (no shift-and-add here)
    q = vs @ g
    gt = g.sum(axis=0)
    if exact:
        waves = row_waveforms(codes, dac, t_start=tm.t_pulses)
        t = union_times(waves, tm.t_adc)
        t = t[t >= tm.t_reset]
        vr = sample_waveforms(waves, t)
        v_out = np.array([integrate_waveform(integ, t, g[:, j] @ vr, gt[j])[-1] for j in range(g.shape[1])])
    else:
        mom = volt_second_moments(codes, dac, tm.t_adc, t_start=tm.t_pulses) @ g
        v_out = charge_to_voltage(integ, q, gt, t_int=tm.t_adc - tm.t_reset, moment=mom)
    out = {"q": q, "g_total": gt, "v_out": v_out}
    if isinstance(adc, QuantizerParams):
        out["codes"] = quantize(v_out, adc)
    elif isinstance(adc, RampAdcParams):
        out["codes"] = ramp_convert(adc, v_out, 0.0 if vos is None else vos,
                                    t_window=tm.t_end - tm.t_adc - tm.t_edge / 2)
    return out


# ----------------------------------------------------------------------------------------------
# Op-amp open loop


def measure_opamp(p: MacroOpAmpParams | TwoStageOpAmpParams, *, vdd: float = 0.9, vss: float = -0.9,
                  c_load: float = 1e-12, engine=None) -> dict:
    """Open-loop ``.ac`` (1 Hz - 10 GHz) with a DC feedback path (1 GOhm / 1 F) and an ``.op``
    (:func:`netlists.benches.opamp_bench`).

    Returns ``a0``, ``gbw_hz`` (unity-gain frequency), ``phase_margin_deg``, ``v_os`` (input
    offset: the output of the unity-gain DC loop with inp at 0 V), and ``f``, ``h`` arrays.
    """
    engine = engine or SubprocessEngine()
    ac = opamp_bench(p, AcSweep(40, 1.0, 1e10), vdd=vdd, vss=vss, c_load=c_load)
    r = engine.run(ac.deck(), need=ac.need(), name="opamp_ac")
    f = r.vectors["frequency"].real
    h = r.vectors["v(out)"]
    mag = np.abs(h)
    k = int(np.argmax(mag < 1))
    fu = float(np.exp(np.interp(0.0, -np.log(mag[k - 1:k + 1]), np.log(f[k - 1:k + 1]))))
    ph = np.unwrap(np.angle(h))
    pm = 180 + float(np.degrees(np.interp(np.log(fu), np.log(f), ph)))
    dc = opamp_bench(p, Op(), vdd=vdd, vss=vss, c_load=c_load)
    op = engine.run(dc.deck(), need=dc.need(), name="opamp_op")
    return {"a0": float(mag[0]), "gbw_hz": fu, "phase_margin_deg": pm,
            "v_os": float(op.vectors["v(out)"][0]), "f": f, "h": h,
            "elapsed_s": r.elapsed_s + op.elapsed_s}


# ----------------------------------------------------------------------------------------------
# ADC static sweep


def run_adc_sweep(v_in, adc, vos=None, *, engine=None) -> dict:
    """Codes from SPICE (one deck, :func:`netlists.benches.adc_sweep_bench`) and from the twin
    for inputs ``v_in`` [V]."""
    engine = engine or SubprocessEngine()
    v_in = np.asarray(v_in, dtype=float)
    bench = adc_sweep_bench(v_in, adc, vos)
    res = engine.run(bench.deck(), need=bench.need(), name="adc_sweep")
    codes = np.rint([res.vectors[name][-1] for name in bench.vectors["code"]]).astype(np.int64)
    if isinstance(adc, RampAdcParams):
        tw = adc.t_conv + 2.5 * adc.t_clk  # from the middle of the en edge to the end
        twin = ramp_convert(adc, v_in, 0.0 if vos is None else vos, t_window=tw)
        count = ramp_convert(adc, v_in, 0.0 if vos is None else vos, t_window=tw, return_count=True)
    else:
        twin = quantize(v_in, adc)
        count = (v_in - adc.v_lo) / adc.lsb
    return {"codes": codes, "twin": twin, "twin_count": count, "elapsed_s": res.elapsed_s,
            "points": len(res.vectors.get("time", [0]))}


# ----------------------------------------------------------------------------------------------
# Characterisation (plots + CSV)


def characterize_periphery(out_dir: str | Path, *, seed: int = 0, engine=None,
                           include_two_stage: bool = True) -> dict:
    """Characterise every block; write PNG + CSV files into ``out_dir``; return a summary.

    - ``dac_transfer``: volt-seconds vs code for the three encodings (twin) and the SPICE
      integrator output for PWM codes through one 10 uS cell (ideal-ish macro).
    - ``integrator``: waveform with reset, a read, and a saturating read; SPICE vs twin.
    - ``adc``: ramp-converter transfer, INL/DNL (SPICE) and twin.
    - ``opamp``: open-loop gain/phase of both op-amps.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engine = engine or SubprocessEngine()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    summary: dict = {"out_dir": str(out)}
    t0 = time.perf_counter()
    summary.update(_dac_transfer(out, engine, plt))
    summary.update(_integrator_waveform(out, engine, plt, rng))
    summary.update(_adc_transfer(out, engine, plt))
    summary.update(_opamps(out, engine, plt, include_two_stage))
    summary["elapsed_s"] = time.perf_counter() - t0
    return summary


def _dac_transfer(out: Path, engine, plt) -> dict:
    """Volt-seconds vs code for the three encodings (twin) and the SPICE integrator output for
    PWM codes through one 10 uS cell (ideal-ish macro)."""
    dac = DacParams(encoding="pwm", bits=6, t_lsb=1e-9)
    codes = np.arange(-dac.max_code, dac.max_code + 1, 9)
    integ = IntegratorParams(c_int=1e-12)
    # one row and one column per code (diagonal cells)
    g_diag = np.diag(np.full(len(codes), 10e-6))
    r = run_read(codes, g_diag, dac, integ, engine=engine)
    tw = read_twin(codes, g_diag, dac, integ)
    summary = {"dac_integrator_max_err_v": float(np.max(np.abs(r["v_read_end"] - tw["v_out"])))}
    encs = {e: volt_seconds(np.arange(0, 64), replace(dac, encoding=e)) for e in ("amplitude", "pwm")}
    bs = volt_seconds(np.arange(0, 64), replace(dac, encoding="bitserial"))
    sp = dict(zip(codes.tolist(), r["v_read_end"]))
    tv = dict(zip(codes.tolist(), tw["v_out"]))
    sa = shift_and_add(bs)
    write_csv(out / "dac_transfer.csv", ["code", "pwm_vs", "amplitude_vs", "bitserial_shift_add_vs", "spice_v_out",
                                         "twin_v_out"],
              [[k, encs["pwm"][k], encs["amplitude"][k], sa[k], sp.get(k, ""), tv.get(k, "")] for k in range(64)])
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for e, y in encs.items():
        ax[0].plot(np.arange(64), y, label=e)
    ax[0].plot(np.arange(64), sa, "--", label="bitserial (shift-add)")
    ax[0].set_xlabel("code"), ax[0].set_ylabel("volt-seconds [V s]"), ax[0].legend()
    ax[1].plot(codes, r["v_read_end"], "o", label="SPICE")
    ax[1].plot(codes, tw["v_out"], "-", label="twin")
    ax[1].set_xlabel("signed PWM code"), ax[1].set_ylabel("integrator output [V]"), ax[1].legend()
    fig.tight_layout(), save_figure(fig, out / "dac_transfer.png", dpi=110), plt.close(fig)
    return summary


def _integrator_waveform(out: Path, engine, plt, rng) -> dict:
    """Waveform with reset, a read, and a saturating read; SPICE vs twin."""
    dac8 = DacParams(encoding="pwm", bits=8, t_lsb=1e-9)
    integ = IntegratorParams(c_int=2e-12)
    codes8 = rng.integers(-255, 256, size=4)
    g4 = rng.uniform(5e-6, 25e-6, size=(4, 2))
    g4[:, 1] *= 4  # the second column saturates
    r = run_read(codes8, g4, dac8, integ, engine=engine)
    tw = read_twin(codes8, g4, dac8, integ)
    write_csv(out / "integrator_waveform.csv", ["time_s", "v_out0", "v_out1"],
              [[r["time"][k], r["out"][0, k], r["out"][1, k]] for k in range(len(r["time"]))])
    fig, ax = plt.subplots(figsize=(7, 4))
    for j in range(2):
        ax.plot(r["time"] * 1e9, r["out"][j], label=f"SPICE col {j}")
        ax.axhline(tw["v_out"][j], ls=":", color=f"C{j}", label=f"twin col {j}")
    ax.set_xlabel("time [ns]"), ax.set_ylabel("v(out) [V]"), ax.legend()
    fig.tight_layout(), save_figure(fig, out / "integrator_waveform.png", dpi=110), plt.close(fig)
    # column 0 stays linear; column 1 (4x the conductance) saturates during the read, where
    # the charge-level twin is not expected to follow SPICE
    return {"integrator_v_out_spice": r["v_read_end"].tolist(), "integrator_v_out_twin": tw["v_out"].tolist()}


def _adc_transfer(out: Path, engine, plt) -> dict:
    """Ramp-converter transfer, INL/DNL (SPICE) and twin."""
    adc = RampAdcParams()
    v = np.linspace(adc.v_lo - 2 * adc.lsb, adc.v_hi + 2 * adc.lsb, 8 * adc.n_codes + 1)
    sw = run_adc_sweep(v, adc, engine=engine)
    lv = transition_levels(v, sw["codes"], adc.n_codes)
    lin = inl_dnl(lv, adc)
    lv_t = transition_levels(v, sw["twin"], adc.n_codes)
    lin_t = inl_dnl(lv_t, adc)
    write_csv(out / "adc_transfer.csv", ["v_in", "code_spice", "code_twin"], zip(v, sw["codes"], sw["twin"]))
    write_csv(out / "adc_inl_dnl.csv", ["transition_k", "level_v", "inl_lsb"],
              [[k, a, b] for k, (a, b) in enumerate(zip(lv, lin["inl"]), start=1)])
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].step(v, sw["codes"], where="post", label="SPICE")
    ax[0].plot(v, sw["twin"], ":", label="twin")
    ax[0].set_xlabel("v_in [V]"), ax[0].set_ylabel("code"), ax[0].legend()
    ax[1].plot(lin["inl"], label="INL"), ax[1].plot(lin["dnl"], label="DNL")
    ax[1].set_xlabel("transition"), ax[1].set_ylabel("LSB"), ax[1].legend()
    fig.tight_layout(), save_figure(fig, out / "adc_transfer.png", dpi=110), plt.close(fig)
    return {"adc": {"inl_max_lsb": lin["inl_max"], "dnl_max_lsb": lin["dnl_max"],
                      "missing_codes": lin["missing_codes"], "offset_lsb": lin["offset_lsb"],
                      "gain_error": lin["gain_error"], "twin_inl_max_lsb": lin_t["inl_max"],
                      "code_mismatch_fraction": float(np.mean(sw["codes"] != sw["twin"])),
                      "spice_s": sw["elapsed_s"]}}


def _opamps(out: Path, engine, plt, include_two_stage: bool) -> dict:
    """Open-loop gain and phase of both op-amps."""
    amps = [MacroOpAmpParams()] + ([TwoStageOpAmpParams()] if include_two_stage else [])
    fig, ax = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    rows, summary = [], {}
    for p in amps:
        m = measure_opamp(p, engine=engine)
        summary[f"opamp_{p.name}"] = {k: m[k] for k in ("a0", "gbw_hz", "phase_margin_deg", "v_os")}
        ax[0].semilogx(m["f"], 20 * np.log10(np.abs(m["h"])), label=p.name)
        ax[1].semilogx(m["f"], np.degrees(np.unwrap(np.angle(m["h"]))), label=p.name)
        rows += [(p.name, f, abs(h), np.degrees(np.angle(h))) for f, h in zip(m["f"], m["h"])]
    ax[0].set_ylabel("gain [dB]"), ax[1].set_ylabel("phase [deg]"), ax[1].set_xlabel("f [Hz]")
    ax[0].legend()
    fig.tight_layout(), save_figure(fig, out / "opamp_open_loop.png", dpi=110), plt.close(fig)
    write_csv(out / "opamp_open_loop.csv", ["opamp", "f_hz", "gain", "phase_deg"], rows)
    return summary

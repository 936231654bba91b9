"""Periphery transfer fit: charge -> integrator voltage -> ADC code of one read chain, fitted to SPICE.

Layer: cosim.calibrate. ``fit_periphery(integ, adc)``: one transient of ``2 points - 1``
diagonal cells (:func:`cosim.characterize.periphery.run_read`, the read chain on a bare cell
matrix) sweeps the column charge across and beyond full scale (PWM codes, fixed cell
conductance); an ADC sweep gives its transition levels. The fitted model is
:class:`cosim.read.periphery_fit.PeripheryFit`. Even sweep points are fitted, odd ones held
out; errors of the fit and of the uncalibrated twin (:func:`cosim.characterize.periphery.read_twin`)
against SPICE are given in LSB and as a fraction of the ADC range. The fit holds for the swept
column load (``g_total`` in the result): the gain depends on it through ``G / (2 pi GBW)``;
:meth:`~cosim.read.periphery_fit.PeripheryFit.chain_voltage` carries it over to another
capacitor, column load and integration time.

:func:`periphery_configs` gives the two integrator configurations (macro and two-stage op-amp).

JSON: each result is a JSON-able dict (lists and floats only); it is
``fits.json["periphery"][name]`` of :func:`cosim.calibrate.blocks.fit_all`, whose ``"fit"`` entry is
:meth:`PeripheryFit.to_dict` (the dataclass fields; :meth:`PeripheryFit.from_dict` reads it
back).
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from cosim.characterize.periphery import read_timing, read_twin, run_adc_sweep, run_read
from cosim.read.periphery_fit import PeripheryFit, circuit_record, transfer_curve
from cosim.sim.engine import SubprocessEngine
from models.adc import RampAdcParams, inl_dnl, transition_levels
from models.dac import DacParams, volt_seconds
from models.errors import ParameterError, check_positive
from models.integrator import IntegratorParams
from models.opamp import MacroOpAmpParams, TwoStageOpAmpParams

__all__ = ["periphery_configs", "fit_periphery"]


def periphery_configs() -> dict:
    """The two integrator configurations the calibration fits: macro and two-stage transistor op-amp."""
    return {"macro": IntegratorParams(opamp=MacroOpAmpParams()),
            "two_stage": IntegratorParams(opamp=TwoStageOpAmpParams())}


def _fit_integrator(x, v, lsb):
    from scipy.optimize import least_squares
    inner = np.abs(x) <= 0.5
    k1, v0 = np.polyfit(x[inner], v[inner], 1)
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo
    theta0 = np.array([v0, k1, 0.0, 0.0, lo, hi, 0.01 * span, 0.01 * span])

    def resid(t):
        return (transfer_curve(t[:4], t[4], t[5], t[6], t[7], x) - v) / lsb

    lb = [-np.inf] * 4 + [lo - 0.2 * span, hi - 0.2 * span, 1e-6, 1e-6]
    ub = [np.inf] * 4 + [lo + 0.2 * span, hi + 0.2 * span, 0.2 * span, 0.2 * span]
    sol = least_squares(resid, theta0, bounds=(lb, ub), x_scale="jac")
    return sol.x


def _adc_count(adc, points_per_code: int, engine) -> tuple[np.ndarray, dict]:
    """The converter alone: its count polynomial (a cubic through its transition levels) and
    its INL/DNL, from an ADC sweep in ngspice."""
    lsb = adc.lsb
    # grid points half a step off the nominal transitions: the midpoint estimate of a level
    # is then unbiased (on the nominal levels it reads a quarter step low)
    h = lsb / points_per_code
    v_grid = adc.v_lo - 4 * lsb + (np.arange(points_per_code * (adc.n_codes + 8)) + 0.5) * h
    sw = run_adc_sweep(v_grid, adc, engine=engine)
    lv = transition_levels(v_grid, sw["codes"], adc.n_codes)
    lin = inl_dnl(lv, adc)
    ok = np.isfinite(lv)
    return np.polyfit(lv[ok], np.arange(1, adc.n_codes)[ok], 3), lin


def _shift_count(count: np.ndarray, v_tr: np.ndarray, c_tr: np.ndarray, adc) -> tuple[float, float]:
    """Correct ``count`` in place by ``a + b v`` so that it reproduces the codes the chain gave.

    Inside a read the converter is timed differently from the ADC-alone bench, and the
    integrator output keeps moving during the conversion (its virtual ground is off by
    v_os + v_out/a0, so the cells keep delivering charge). ``a`` and ``b`` (each within +-0.6
    LSB over the range) are chosen to reproduce the fitted points' codes ``c_tr`` at their
    voltages ``v_tr``. Returns ``(a [LSB], b [LSB per half range])``."""
    inner = (c_tr > c_tr.min()) & (c_tr < c_tr.max())
    v_half = (adc.v_hi - adc.v_lo) / 2
    base_count = np.polyval(count, v_tr[inner])
    best = (np.inf, 0.0, 0.0)
    for a in np.linspace(-0.6, 0.6, 49):
        for b in np.linspace(-0.6, 0.6, 49):
            miss = np.sum(np.floor(base_count + a + b * v_tr[inner] / v_half) != c_tr[inner])
            best = min(best, (miss + 1e-3 * (abs(a) + abs(b)), a, b))
    shift = (float(best[1]), float(best[2]))
    count[-1] += shift[0]
    count[-2] += shift[1] / v_half
    return shift


def _circuit_entry(integ, adc) -> dict:
    """What a fit records of the circuit it was taken on (matched by
    :func:`cosim.read.periphery_fit.select_periphery_fit`)."""
    op = integ.opamp
    return {"opamp": op.name, "opamp_kind": type(op).__name__, "adc_kind": type(adc).__name__,
            "opamp_macro": asdict(integ.macro), "circuit": circuit_record(integ),
            "adc_params": {"bits": adc.bits, "v_lo": adc.v_lo, "v_hi": adc.v_hi}}


def _integrator_entry(fit: PeripheryFit, integ, lsb: float) -> dict:
    """The fitted integrator in plain numbers: gain against the ideal ``-1/C``, offset, rails."""
    return {"gain_v_per_c": fit.gain, "gain_ideal_v_per_c": -1 / integ.c_int,
            "gain_error": float(fit.gain * integ.c_int + 1), "offset_v": fit.offset,
            "offset_lsb": fit.offset / lsb, "k2_v": fit.poly[2], "k3_v": fit.poly[3],
            "sat_lo_v": fit.sat_lo, "sat_hi_v": fit.sat_hi}


def _errs_v_code(v_pred, c_pred, v_ref, c_ref, lsb, n_codes) -> dict:
    dv = (np.asarray(v_pred) - np.asarray(v_ref)) / lsb
    dc = np.asarray(c_pred, float) - np.asarray(c_ref, float)
    return {"v_rms_lsb": float(np.sqrt(np.mean(dv ** 2))), "v_max_lsb": float(np.abs(dv).max()),
            "v_rms_fs": float(np.sqrt(np.mean(dv ** 2)) / n_codes),
            "code_rms_lsb": float(np.sqrt(np.mean(dc ** 2))), "code_max_lsb": float(np.abs(dc).max()),
            "code_rms_fs": float(np.sqrt(np.mean(dc ** 2)) / n_codes)}


def fit_periphery(integ=None, adc=None, dac=None, *, points: int = 41, overdrive: float = 1.5,
                  adc_points_per_code: int = 2, engine=None) -> dict:
    """Fit the charge -> voltage -> code transfer of one integrator + ADC chain to SPICE.

    Parameters
    ----------
    integ : IntegratorParams, optional
        Default: macro op-amp, 10 pF.
    adc : QuantizerParams or RampAdcParams, optional
        Default: ``RampAdcParams()``.
    dac : DacParams, optional
        Input encoding of the sweep (default 8-bit signed PWM, 1 ns LSB).
    points : int
        Fitted sweep points (as many minus one are held out, between them).
    overdrive : float
        The sweep spans ``+- overdrive q_fs`` (beyond full scale: the rails get fitted).
    adc_points_per_code : int
        Density of the ADC-only sweep that gives the transition levels.

    Returns
    -------
    dict
        ``fit`` (:meth:`PeripheryFit.to_dict`), ``integrator`` (gain [V/C], ideal gain
        ``-1/c_int``, gain_error, offset [V], rails [V]), ``adc`` (INL/DNL, offset, gain error
        of the SPICE converter), ``error`` = ``{"fit", "twin"}`` on the held-out points and
        ``error_train`` on the fitted ones (``v_*_lsb``: integrator voltage, ``code_*_lsb``:
        codes; ``*_fs``: fraction of the ADC range), ``curves`` (for plots), ``spice_s``.
    """
    engine = engine or SubprocessEngine()
    integ = integ or IntegratorParams()
    adc = adc or RampAdcParams()
    dac = dac or DacParams(encoding="pwm", bits=8, t_lsb=1e-9)
    if points < 9:
        raise ParameterError(f"points must be >= 9, got {points}")
    check_positive("overdrive", overdrive)
    t0 = time.perf_counter()
    n = 2 * points - 1
    codes = np.rint(np.linspace(-dac.max_code, dac.max_code, n)).astype(np.int64)
    q_fs = integ.c_int * (adc.v_hi - adc.v_lo) / 2
    g = overdrive * q_fs / float(volt_seconds(np.array([dac.max_code]), dac)[0])
    G = np.diag(np.full(n, g))
    sp = run_read(codes, G, dac, integ, adc, engine=engine)
    tw = read_twin(codes, G, dac, integ, adc)
    q = tw["q"]
    v_sp, c_sp = sp["v_read_end"], sp["codes"]

    lsb = adc.lsb
    count, lin = _adc_count(adc, adc_points_per_code, engine)
    fit_i, test_i = np.arange(0, n, 2), np.arange(1, n, 2)
    x = q / q_fs
    th = _fit_integrator(x[fit_i], v_sp[fit_i], lsb)
    v_tr, c_tr = v_sp[fit_i], c_sp[fit_i]
    shift = _shift_count(count, v_tr, c_tr, adc)
    tm = read_timing(dac, adc)
    fit = PeripheryFit(q_fs=q_fs, poly=tuple(map(float, th[:4])), sat_lo=float(th[4]), sat_hi=float(th[5]),
                       knee_lo=float(th[6]), knee_hi=float(th[7]), count=tuple(map(float, count)),
                       n_codes=adc.n_codes, g_total=g, code_lo=int(c_tr.min()), code_hi=int(c_tr.max()),
                       c_int=integ.c_int, t_int=tm.t_adc - tm.t_reset, adc_range=(adc.v_lo, adc.v_hi))
    v_fit, c_fit = fit.voltage(q), fit.codes(q)
    errors = {"fit": _errs_v_code(v_fit[test_i], c_fit[test_i], v_sp[test_i], c_sp[test_i], lsb, adc.n_codes),
              "twin": _errs_v_code(tw["v_out"][test_i], tw["codes"][test_i], v_sp[test_i], c_sp[test_i], lsb, adc.n_codes)}
    err_train = {"fit": _errs_v_code(v_fit[fit_i], c_fit[fit_i], v_sp[fit_i], c_sp[fit_i], lsb, adc.n_codes),
                 "twin": _errs_v_code(tw["v_out"][fit_i], tw["codes"][fit_i], v_sp[fit_i], c_sp[fit_i], lsb, adc.n_codes)}
    return {
        **_circuit_entry(integ, adc), "c_int": integ.c_int, "g_cell": g, "t_int": tm.t_adc - tm.t_reset,
        "points": points, "overdrive": overdrive, "fit": fit.to_dict(), "integrator": _integrator_entry(fit, integ, lsb),
        "adc": {"inl_max_lsb": lin["inl_max"], "dnl_max_lsb": lin["dnl_max"],
                "offset_lsb": lin.get("offset_lsb"), "gain_error": lin.get("gain_error"),
                "missing_codes": lin["missing_codes"], "chain_shift_lsb": shift,  # (a [LSB], b [LSB per half range])
                "chain_code_range": [fit.code_lo, fit.code_hi]},
        "error": errors, "error_train": err_train,
        "curves": {"q": q.tolist(), "v_spice": v_sp.tolist(), "v_fit": v_fit.tolist(),
                   "v_twin": tw["v_out"].tolist(), "code_spice": c_sp.tolist(),
                   "code_fit": c_fit.tolist(), "code_twin": tw["codes"].tolist(),
                   "held_out": test_i.tolist()},
        "spice_s": time.perf_counter() - t0,
    }

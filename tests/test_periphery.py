"""Periphery blocks (DAC, op-amps, integrator, ADCs): SPICE (real ngspice) vs closed forms and
numpy twins. Benches live in cosim.characterize.periphery."""

from __future__ import annotations

import re
import warnings
from dataclasses import replace

import numpy as np
import pytest

from cosim.characterize.periphery import (measure_opamp, read_bench, read_timing, read_twin, run_adc_sweep,
                                          run_read)
from models.adc import (SPEC_DNL_LSB, SPEC_INL_LSB, QuantizerParams, RampAdcParams, check_adc_range,
                        inl_dnl, quantize, quantizer_subckt, ramp_convert, ramp_library,
                        transition_levels)
from models.dac import (DacParams, row_waveforms, shift_and_add, volt_second_moments,
                        volt_seconds)
from models.errors import ParameterError
from models.integrator import (IntegratorParams, check_integrator_range, effective_capacitance,
                               integrator_library, swing)
from models.opamp import (TWO_STAGE_MEASURED, MacroOpAmpParams, TwoStageOpAmpParams, opamp_subckt)

PWM8 = DacParams(encoding="pwm", bits=8, t_lsb=1e-9)


def _ideal_v(codes, g, dac, c):
    return -(volt_seconds(codes, dac) @ g) / c


# -- numpy-only contracts ---------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["amplitude", "pwm", "bitserial"])
def test_waveform_area_equals_volt_seconds(encoding, rng):
    p = DacParams(encoding=encoding, bits=5, t_lsb=2e-9)
    codes = rng.integers(-p.max_code, p.max_code + 1, size=12)
    waves = row_waveforms(codes, p, t_start=3e-9)
    area = np.array([np.trapezoid(w[:, 1], w[:, 0]) for w in waves])
    vs = volt_seconds(codes, p)
    vs = vs.sum(axis=0) if encoding == "bitserial" else vs
    np.testing.assert_allclose(area, vs, rtol=1e-12, atol=1e-24)
    t_end = 400e-9
    mom = np.array([np.trapezoid(np.interp(tt := np.linspace(0, t_end, 200001), w[:, 0], w[:, 1]) * (t_end - tt), tt)
                    for w in waves])
    np.testing.assert_allclose(mom, volt_second_moments(codes, p, t_end, t_start=3e-9), rtol=1e-6, atol=1e-26)


def test_bitserial_shift_and_add_equals_pwm():
    codes = np.arange(-31, 32)
    bs = DacParams(encoding="bitserial", bits=5, pulse_slots=1)
    pw = DacParams(encoding="pwm", bits=5)
    np.testing.assert_allclose(shift_and_add(volt_seconds(codes, bs)), volt_seconds(codes, pw), rtol=1e-12)


def test_parameters_validated_with_field_named():
    with pytest.raises(ParameterError, match="c_int"):
        IntegratorParams(c_int=-1e-12)
    with pytest.raises(ParameterError, match="gbw"):
        MacroOpAmpParams(gbw=0)
    with pytest.raises(ParameterError, match="encoding"):
        DacParams(encoding="pdm")
    with pytest.raises(ParameterError, match="v_hi"):
        RampAdcParams(v_lo=0.5, v_hi=0.1)
    with pytest.raises(ParameterError, match="l_in"):
        TwoStageOpAmpParams(l_in=50e-9)


def test_spice_text_has_plain_si_numbers():
    text = "\n".join([opamp_subckt(MacroOpAmpParams()), opamp_subckt(TwoStageOpAmpParams()),
                      integrator_library(IntegratorParams()), quantizer_subckt(QuantizerParams()),
                      ramp_library(RampAdcParams()),
                      read_bench(np.array([3, -5]), np.full((2, 1), 10e-6), PWM8, IntegratorParams(), RampAdcParams())[0]])
    assert not re.search(r"\b\d+(\.\d+)?(meg|[fpnumkg])\b", text, re.I), "SPICE suffix in the text"


def test_range_checks_name_the_numbers():
    integ = IntegratorParams(c_int=1e-12)
    with pytest.raises(ParameterError, match=r"1e-10 C.*c_int >= "):
        check_integrator_range(integ, 1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_integrator_range(integ, 5e-13) < 1
    with pytest.warns(RuntimeWarning, match="saturates"):
        check_integrator_range(integ, 1e-10, action="warn")
    adc = QuantizerParams()
    with pytest.raises(ParameterError, match=r"cannot hold outputs \[-0.9, 0.3\]"):
        check_adc_range(adc, -0.9, 0.3)
    assert check_adc_range(adc, -0.7, 0.7) == pytest.approx(1.4 / 1.6)


# -- integrator -------------------------------------------------------------------------------


def test_pwm_integrator_matches_closed_form(engine, rng):
    """Reference experiment 2 of docs/physics.md: V = -V_read sum(G_i t_i) / C, up to the op-amp's finite gain."""
    integ = IntegratorParams(c_int=5e-12)
    codes = rng.integers(-255, 256, size=4)
    g = rng.uniform(2e-6, 25e-6, size=(4, 1))
    r = run_read(codes, g, PWM8, integ, engine=engine)
    ideal = _ideal_v(codes, g, PWM8, integ.c_int)
    gt = g.sum()
    gain_err = float(effective_capacitance(integ, gt) / integ.c_int - 1)  # 1/a0 + G/(2 pi GBW C)
    assert abs(r["v_read_end"][0] / ideal[0] - 1) <= gain_err * 1.2 + 2e-3
    tw = read_twin(codes, g, PWM8, integ)
    tx = read_twin(codes, g, PWM8, integ, exact=True)
    assert abs(r["v_read_end"][0] - tw["v_out"][0]) <= 2e-4 * abs(ideal[0]) + 2e-5
    assert abs(r["v_read_end"][0] - tx["v_out"][0]) <= 2e-4 * abs(ideal[0]) + 2e-5


def test_reset_returns_to_zero(engine):
    integ = IntegratorParams(c_int=2e-12, opamp=MacroOpAmpParams(v_os=2e-3))
    codes = np.array([200, 150])
    g = np.array([[20e-6], [10e-6]])
    tm = read_timing(PWM8)
    r = run_read(codes, g, PWM8, integ, engine=engine, reset_at=tm.t_adc + 10e-9)
    assert abs(r["v_read_end"][0]) > 0.3  # it integrated
    # back to the post-reset state of t = 0 (the offset, loaded by the cells through the switch)
    assert r["v_out"][0] == pytest.approx(r["out"][0][0], abs=1e-4)
    assert abs(r["v_out"][0]) < 2.5e-3


def test_saturation_clips_at_the_rail(engine):
    integ = IntegratorParams(c_int=1e-12)
    codes = np.array([255, 255])
    g = np.array([[25e-6], [25e-6]])
    with pytest.raises(ParameterError, match="saturates"):
        check_integrator_range(integ, float(np.abs(volt_seconds(codes, PWM8) @ g).max()))
    r = run_read(codes, g, PWM8, integ, engine=engine)
    lo, _ = swing(integ)
    # clipped at the rail (within the clamp's knee), never beyond it
    assert r["out"][0].min() == pytest.approx(lo, abs=1e-2)
    assert read_twin(codes, g, PWM8, integ)["v_out"][0] == pytest.approx(lo, abs=1e-2)
    # once the pulses stop, the lost virtual ground drains through the cells and the output
    # creeps back from the rail: physics the twin (which holds the rail) does not model
    assert lo - 1e-2 < r["v_read_end"][0] < lo + 0.15


@pytest.mark.parametrize("encoding", ["amplitude", "bitserial"])
def test_other_encodings_integrate_like_the_twin(engine, rng, encoding):
    dac = DacParams(encoding=encoding, bits=4, t_lsb=2e-9)
    integ = IntegratorParams(c_int=1e-12)
    codes = rng.integers(-15, 16, size=3)
    g = rng.uniform(2e-6, 25e-6, size=(3, 2))
    r = run_read(codes, g, dac, integ, engine=engine)
    tx = read_twin(codes, g, dac, integ, exact=True)  # short pulses: not fully settled at read end
    np.testing.assert_allclose(r["v_read_end"], tx["v_out"], rtol=3e-4, atol=3e-5)
    tw = read_twin(codes, g, dac, integ)
    np.testing.assert_allclose(r["v_read_end"], tw["v_out"], rtol=3e-3, atol=3e-5)


def test_two_stage_integrator_agrees_with_macro(engine, rng):
    """Transistor-level integrator vs the macro-model with the two-stage's measured a0, GBW and
    offset (models.opamp.macro_equivalent): within 1 % of |v| + 2.5 mV. (Against the default
    100 MHz macro the difference is the GBW term G/(2 pi GBW C): ~2 % here.)"""
    from models.opamp import macro_equivalent
    two_amp = TwoStageOpAmpParams()
    for _ in range(3):
        codes = rng.integers(-255, 256, size=4)
        g = rng.uniform(2e-6, 20e-6, size=(4, 1))
        two = IntegratorParams(c_int=5e-12, opamp=two_amp)
        mac = replace(two, opamp=replace(macro_equivalent(two_amp), name="opamp_eq"))
        v_t = run_read(codes, g, PWM8, two, engine=engine)["v_read_end"][0]
        v_m = run_read(codes, g, PWM8, mac, engine=engine)["v_read_end"][0]
        assert abs(v_t - v_m) <= 1e-2 * abs(v_m) + 2.5e-3
        tw = read_twin(codes, g, PWM8, two)["v_out"][0]
        assert abs(v_t - tw) <= 1e-2 * abs(v_m) + 2.5e-3


def test_opamp_open_loop_as_stated(engine):
    m = measure_opamp(MacroOpAmpParams(), engine=engine)
    assert m["a0"] == pytest.approx(1e4, rel=1e-3)
    assert m["gbw_hz"] == pytest.approx(100e6, rel=1e-2)
    t = measure_opamp(TwoStageOpAmpParams(), engine=engine)
    assert t["a0"] == pytest.approx(TWO_STAGE_MEASURED["a0"], rel=0.05)
    assert t["gbw_hz"] == pytest.approx(TWO_STAGE_MEASURED["gbw_hz"], rel=0.05)
    assert t["phase_margin_deg"] > 45


# -- ADCs ------------------------------------------------------------------------------------


def _away_from_edges(v, p, frac=1e-3):
    x = (v - p.v_lo) / p.lsb
    return np.abs(x - np.rint(x)) > frac


def test_ideal_adc_codes_match_quantizer(engine, rng):
    p = QuantizerParams(bits=6)
    v = rng.uniform(p.v_lo - 0.1, p.v_hi + 0.1, size=200)
    v = v[_away_from_edges(v, p)]
    sw = run_adc_sweep(v, p, engine=engine)
    np.testing.assert_array_equal(sw["codes"], quantize(v, p))


def test_ramp_adc_inl_dnl_within_spec(engine):
    p = RampAdcParams(bits=6)
    v = np.linspace(p.v_lo - 2 * p.lsb, p.v_hi + 2 * p.lsb, 8 * p.n_codes + 33) + p.lsb / 16
    sw = run_adc_sweep(v, p, engine=engine)
    np.testing.assert_array_equal(sw["codes"], sw["twin"])
    lin = inl_dnl(transition_levels(v, sw["codes"], p.n_codes), p)
    print(f"ramp ADC 6 bit: INL {lin['inl_max']:.3f} LSB, DNL {lin['dnl_max']:.3f} LSB, "
          f"offset {lin['offset_lsb']:.3f} LSB, gain {lin['gain_error']:.2e}")
    assert lin["missing_codes"] == 0
    assert lin["inl_max"] <= SPEC_INL_LSB and lin["dnl_max"] <= SPEC_DNL_LSB


@pytest.mark.slow
def test_ramp_adc_default_8bit_spec(engine):
    p = RampAdcParams()
    v = np.linspace(p.v_lo - 2 * p.lsb, p.v_hi + 2 * p.lsb, 8 * p.n_codes + 33) + p.lsb / 16
    sw = run_adc_sweep(v, p, engine=engine)
    assert np.mean(sw["codes"] != sw["twin"]) <= 0.002
    lin = inl_dnl(transition_levels(v, sw["codes"], p.n_codes), p)
    assert lin["missing_codes"] == 0
    assert lin["inl_max"] <= SPEC_INL_LSB and lin["dnl_max"] <= SPEC_DNL_LSB


def test_ramp_adc_offset_and_gain_errors_match_twin(engine, rng):
    p = RampAdcParams(bits=6, gain_error=0.03, comp_offset=0.01, r_out=float("inf"))
    n = 60
    v = rng.uniform(p.v_lo, p.v_hi - 0.1, size=n)
    vos = rng.normal(0, 0.02, size=n)
    sw = run_adc_sweep(v, p, vos, engine=engine)
    frac = sw["twin_count"] - np.floor(sw["twin_count"])
    ok = (frac > 0.01) & (frac < 0.99)  # not on a code edge
    np.testing.assert_array_equal(sw["codes"][ok], sw["twin"][ok])
    # the ramp pivots on its start, margin LSBs below v_lo
    ideal = (v + p.comp_offset + vos - p.v_start) / (p.lsb * (1 + p.gain_error)) - p.margin
    np.testing.assert_allclose(sw["twin_count"], ideal, atol=0.02)


def test_twins_match_spice_on_random_reads(engine, rng):
    """Seeded random 8 x 3 reads, PWM + macro integrator + ideal and ramp ADCs."""
    q = QuantizerParams(bits=8)
    a = RampAdcParams(bits=8)
    integ = IntegratorParams(c_int=20e-12)
    for _case in range(3):
        codes = rng.integers(-255, 256, size=8)
        g = rng.uniform(0.5e-6, 25e-6, size=(8, 3))
        v_exp = _ideal_v(codes, g, PWM8, integ.c_int)
        check_integrator_range(integ, float(np.abs(v_exp).max() * integ.c_int), g.sum(0).max())
        for adc in (q, a):
            r = run_read(codes, g, PWM8, integ, adc, engine=engine)
            tw = read_twin(codes, g, PWM8, integ, adc)
            np.testing.assert_allclose(r["v_read_end"], tw["v_out"], rtol=3e-4, atol=3e-5)
            x = (tw["v_out"] - adc.v_lo) / adc.lsb
            ok = np.abs(x - np.rint(x)) > 0.05
            np.testing.assert_array_equal(r["codes"][ok], tw["codes"][ok])


def test_ramp_twin_count_consistent_with_quantizer():
    p = RampAdcParams(r_out=float("inf"))
    v = np.linspace(p.v_lo + 0.3 * p.lsb, p.v_hi - 0.7 * p.lsb, 301)
    v = v[_away_from_edges(v, p)]
    np.testing.assert_array_equal(ramp_convert(p, v), quantize(v, p))

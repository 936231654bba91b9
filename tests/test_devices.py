"""Device compact models: SPICE subcircuit vs numpy twin, closed forms, half-select, bad values.

Real ngspice (cosim.sim.engine.SubprocessEngine); nothing is mocked.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.cap3t1c import Cap3T1C, Cap3T1CParams
from models.device import REGISTRY, PulseShape, fmt, get_device
from models.errors import ParameterError
from models.linear import LinearParams
from models.pcm import PCM, PCMParams
from models.rram import RRAM, RRAMParams

SHAPE = PulseShape()  # 50 ns flat, 5 ns edges, 100 ns slots, 10 ns max step

#: SPICE vs twin, pulse response: max |difference| over a 12-slot train, as a fraction of the
#: largest single step of the twin. Measured: behavioural devices 0.001-0.002 (the benches put
#: breakpoints where the edges cross the thresholds); cap3t1c 0.09 (a fitted behavioural twin of
#: a transistor-level circuit).
PULSE_TOL = {"cap3t1c": 0.15}
PULSE_TOL_DEFAULT = 0.01
#: SPICE vs twin, I-V: max |difference| as a fraction of the largest |I| (behavioural devices: 1e-3,
#: share the expression; cap3t1c's twin is a polynomial fit of the read FET).
IV_TOL = {"cap3t1c": 0.05}  # measured 0.037 (polynomial fit of the read FET near threshold)


def _sample(res, n: int, shape: PulseShape, slots: int) -> np.ndarray:
    t = res.vectors["time"]
    return np.stack([np.interp(np.arange(slots + 1) * shape.period, t, res.vectors[f"v(x{i}.s)"])
                     for i in range(n)])


def _mixed_train(model, n: int, slots: int, rng) -> np.ndarray:
    amps = np.where(rng.random((n, slots)) < 0.7, model.v_write, 0.0)
    if model.name != "pcm":  # bipolar devices: odd rows potentiate, even rows depress
        amps[1::2] *= -1
    amps[0, :4] = model.v_write / 2  # half-selected slots
    return amps


@pytest.mark.parametrize("name", list(REGISTRY))
def test_twin_matches_spice(name, engine, rng):
    model = get_device(name)
    n, slots = 6, 12
    lo, hi = model.state_range
    s0 = rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), n)
    amps = _mixed_train(model, n, slots, rng)
    var, noise = model.draw_variation(n, rng), model.draw_noise(n, rng)
    res = engine.run(model.pulse_deck(s0, amps, SHAPE, var, noise))
    spice = _sample(res, n, SHAPE, slots)
    twin = model.trajectory(s0, amps, SHAPE, var, noise)
    step = np.abs(np.diff(twin, axis=1)).max()
    assert step > 0
    err = np.abs(spice - twin).max() / step
    assert err < PULSE_TOL.get(name, PULSE_TOL_DEFAULT), f"{name}: SPICE vs twin {err:.3f} of a step"

    # I-V in the read regime (below every threshold). The twin is evaluated on SPICE's own state
    # trace, which is flat for the behavioural cells and decays by RC for cap3t1c.
    v_max = 0.9 * model.v_threshold if name != "cap3t1c" else model.v_read
    res = engine.run(model.iv_deck(s0, v_max))
    for i in range(n):
        v = res.vectors[f"v(a{i})"]
        state = res.vectors[f"v(x{i}.s)"]
        i_spice = -res.vectors[f"i(vr{i})"]
        i_twin = model.current(state, v)
        scale = np.abs(i_twin).max()
        assert np.abs(i_spice - i_twin).max() < IV_TOL.get(name, 1e-3) * scale, name
        drift = 1e-2 if name == "cap3t1c" else 1e-3
        assert np.ptp(state) < drift * (hi - lo), f"{name}: read disturbed the state"


@pytest.mark.parametrize("name", list(REGISTRY))
def test_half_selected_pulses_leave_state(name, engine):
    model = get_device(name)
    lo, hi = model.state_range
    s0 = np.array([lo + 0.3 * (hi - lo), lo + 0.7 * (hi - lo)])
    amps = np.array([[model.v_write / 2] * 10, [-model.v_write / 2] * 10])
    res = engine.run(model.pulse_deck(s0, amps, SHAPE))
    spice = _sample(res, 2, SHAPE, 10)[:, -1]
    full = model.trajectory(s0, np.full((2, 1), model.v_write), SHAPE)
    step = np.abs(np.diff(full, axis=1)).max()
    twin_idle = model.trajectory(s0, np.zeros((2, 10)), SHAPE)[:, -1]  # leakage only
    np.testing.assert_array_equal(model.apply_pulses(s0, amps, SHAPE), twin_idle)
    # threshold devices: exactly nothing; cap3t1c: subthreshold pump current, < 1 % of a step
    tol = 0.01 * step if name == "cap3t1c" else 1e-9
    assert np.abs(spice - twin_idle).max() < tol, f"{name}: half-select moved the state"


def test_pcm_saturating_set_closed_form(engine):
    model = PCM()
    g0 = np.array([0.1e-6, 5e-6, 15e-6])
    n = 20
    s0 = model.from_conductance(g0)
    amps = np.full((3, n), model.v_write)
    twin = model.to_conductance(model.trajectory(s0, amps, SHAPE))
    closed = np.stack([model.set_closed_form(g0, k, SHAPE) for k in range(n + 1)], axis=1)
    np.testing.assert_allclose(twin, closed, rtol=1e-12)
    res = engine.run(model.pulse_deck(s0, amps, SHAPE))
    spice = model.to_conductance(_sample(res, 3, SHAPE, n))
    step = np.abs(np.diff(closed, axis=1)).max()
    assert np.abs(spice - closed).max() < PULSE_TOL_DEFAULT * step
    assert np.all(np.diff(spice, axis=1) > 0) and np.all(spice < model.params.g_max)


def test_pcm_reset_is_abrupt(engine):
    model = PCM()
    s0 = np.array([20.0, 8.0])
    amps = np.full((2, 1), model.v_reset)
    res = engine.run(model.pulse_deck(s0, amps, SHAPE))  # gear: the RESET term is stiff
    spice = _sample(res, 2, SHAPE, 1)[:, -1]
    twin = model.apply_pulses(s0, amps, SHAPE)
    lo = model.state_range[0]
    assert np.all(spice < lo + 0.05) and np.all(twin < lo + 0.05), (spice, twin)
    np.testing.assert_allclose(spice, twin, atol=0.005)


def test_pcm_drift_loglog_slope_is_minus_nu(engine, rng):
    model = PCM()
    state = np.array([2.0, 12.0])
    var = model.draw_variation(2, rng)
    nu = model.drift_nu(state, var)
    t = np.array([20.0, 200.0, 2e3, 2e4, 2e5])
    # SPICE: read currents at V_read with the drift factor as the instance parameter
    lines = [model.subckt()]
    for k, tk in enumerate(t):
        for i in range(2):
            inst = model.instance_params(state[i:i + 1], dfac=model.drift_factor(state[i:i + 1], tk, {
                key: v[i:i + 1] for key, v in var.items()}))
            params = " ".join(f"{key}={fmt(v[0])}" for key, v in inst.items())
            lines += [f"V{k}_{i} a{k}_{i} 0 {fmt(model.v_read)}", f"X{k}_{i} a{k}_{i} 0 {model.subckt_name} {params}"]
    lines += [".options klu", ".tran 1e-9 2e-9 uic",
              ".save " + " ".join(f"i(v{k}_{i})" for k in range(len(t)) for i in range(2)), ".end"]
    res = engine.run("* drift\n" + "\n".join(lines))
    for i in range(2):
        g = np.array([-res.vectors[f"i(v{k}_{i})"][-1] for k in range(len(t))]) / model.v_read
        slope = np.polyfit(np.log(t), np.log(g), 1)[0]
        assert slope == pytest.approx(-nu[i], rel=1e-6)
        twin = model.to_conductance(state[i]) * model.drift_factor(state[i], t, {k: v[i] for k, v in var.items()})
        np.testing.assert_allclose(g, twin, rtol=1e-9)
    assert 0.049 * 0.5 < nu.min() and nu.max() < 0.2


def test_pcm_noise_draws_are_seeded_and_shared():
    model = PCM()
    a = model.draw_noise(100, np.random.default_rng(1))["m_c2c"]
    b = model.draw_noise(100, np.random.default_rng(1))["m_c2c"]
    np.testing.assert_array_equal(a, b)
    assert 0.4 < a.std() < 0.8 and a.min() >= 0
    inst = model.instance_params(np.ones(100), noise={"m_c2c": a})
    np.testing.assert_allclose(inst["ks"], model.params.k_set * a / (model.params.g_max - model.params.g_min))


def test_3t1c_steps_are_i_tp_over_c_and_leak_is_rc(engine):
    model = Cap3T1C()
    p = model.params
    # pump currents measured by DC sweeps of the same FETs (the circuit, not the fit)
    decks = model.fit_decks()
    pumps = engine.run(decks["pumps"]).vectors
    vc = pumps["v(c)"]
    i_dn = -pumps["i(vc2)"]
    i_up = i_dn + pumps["i(vc)"]
    s0 = np.array([0.7, 0.9, 1.1])
    res = engine.run(model.pulse_deck(s0, np.array([[1.0], [1.0], [-1.0]]), SHAPE))
    spice = _sample(res, 3, SHAPE, 1)
    t_up = SHAPE.width + 2 * SHAPE.rise * p.rho_up
    t_dn = SHAPE.width + 2 * SHAPE.rise * p.rho_dn
    leak = np.exp(-SHAPE.period / (p.r_leak * p.c_store))
    expect = np.array([(s0[0] + np.interp(s0[0], vc, i_up) * t_up / p.c_store) * leak,
                       (s0[1] + np.interp(s0[1], vc, i_up) * t_up / p.c_store) * leak,
                       (s0[2] - np.interp(s0[2], vc, i_dn) * t_dn / p.c_store) * leak])
    steps = np.abs(expect - s0)
    assert np.all(np.abs(spice[:, -1] - expect) < 0.05 * steps), (spice[:, -1], expect)
    # up/down asymmetry comes out of the circuit: unequal and state-dependent
    r = np.interp([0.7, 1.1], vc, i_up) / np.interp([0.7, 1.1], vc, i_dn)
    assert abs(r[0] - r[1]) > 0.02

    # RC leakage over 0.5 RC, pumps off
    t_stop = 0.5 * p.r_leak * p.c_store
    s0 = np.array([0.8, 1.1])
    res = engine.run(model.leak_deck(s0, t_stop))
    v_end = np.array([res.vectors[f"v(x{i}.s)"][-1] for i in range(2)])
    np.testing.assert_allclose(v_end, s0 * np.exp(-0.5), rtol=0.02)
    np.testing.assert_allclose(model.leak(s0, t_stop), s0 * np.exp(-0.5), rtol=1e-12)


def test_3t1c_twin_constants_refit_from_circuit(engine):
    model = Cap3T1C()
    decks = model.fit_decks()
    fitted = model.fitted(*(engine.run(decks[k]).vectors for k in ("pumps", "gates", "read")))
    grid = np.linspace(model.params.vc_min, model.params.vc_max, 7)
    for a, b in zip(model.pump_currents(grid), fitted.pump_currents(grid)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(model.conductance(grid), fitted.conductance(grid), rtol=1e-6)


def test_rram_1t1r_gate_sets_compliance(engine):
    model = RRAM()
    lines = [model.model_cards(), model.subckt(), model.subckt_1t1r()]
    vg = [0.6, 0.8, 1.2]
    for k, g in enumerate(vg):
        lines += [f"Vb{k} b{k} 0 PWL(0 0 5e-9 0 10e-9 2.0 1e-6 2.0 1.005e-6 0)",
                  f"Vw{k} w{k} 0 {fmt(g)}", f"X{k} b{k} w{k} 0 rram_1t1r s0=1.7"]
    lines += [".options klu method=gear", ".tran 10e-9 1.1e-6 0 10e-9 uic",
              ".save " + " ".join(f"v(x{k}.x1.s)" for k in range(3)), ".end"]
    res = engine.run("* 1t1r\n" + "\n".join(lines))
    gap = np.array([res.vectors[f"v(x{k}.x1.s)"][-1] for k in range(3)])
    g = model.conductance(gap)
    assert np.all(np.diff(g) > 0), g  # a higher gate voltage lets SET go further
    assert gap[0] > model.params.gap_min + 0.2  # the compliance stopped SET early


def test_bad_parameters_raise_naming_the_problem():
    with pytest.raises(ParameterError, match="c_store"):
        Cap3T1CParams(c_store=-1e-15)
    with pytest.raises(ParameterError, match="g_min"):
        PCMParams(g_min=30e-6)
    with pytest.raises(ParameterError, match="g_min"):
        LinearParams(g_min=2e-6, g_max=1e-6)
    with pytest.raises(ParameterError, match="gap_min"):
        RRAMParams(gap_min=2.0)
    with pytest.raises(ParameterError, match="shorter than the time step"):
        PulseShape(width=1e-9, tstep=10e-9)
    with pytest.raises(ParameterError, match="k_set"):
        PCMParams(k_set=float("nan"))
    with pytest.raises(ParameterError, match="half-selected"):
        PCMParams(v_write=1.4)
    with pytest.raises(ParameterError, match="unknown device"):
        get_device("flash")


def test_state_conductance_round_trip():
    for name in REGISTRY:
        model = get_device(name)
        lo, hi = model.state_range
        s = np.linspace(lo, hi, 9)
        np.testing.assert_allclose(model.from_conductance(model.to_conductance(s)), s, atol=1e-6 * (hi - lo))
        assert np.all(np.diff(model.conductance(s)) > 0) or np.all(np.diff(model.conductance(s)) < 0)


def test_subckt_text_is_plain_si():
    import re
    for name in REGISTRY:
        text = get_device(name).subckt()
        assert text.startswith(".subckt") and " s 0 " in text  # the state node is named s
        # no SPICE scale suffixes after numbers (1u, 2meg, 3M ...)
        assert not re.search(r"(?<![\w.])\d+(\.\d+)?(f|p|n|u|m|k|meg|g|t)\b", text, re.I), name


@pytest.mark.slow
def test_pcm_64x64_update_phase_timing(engine):
    from cosim.characterize.devices import pcm_array_update_experiment
    out = pcm_array_update_experiment(64, slots=10, engine=engine)
    assert out["max_err_steps"] < 0.2


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_apply_counts_equals_pulse_by_pulse(name, rng):
    """Any closed form of n identical full-selected pulses is the pulse-by-pulse twin."""
    from models.device import DeviceModel

    dev = get_device(name)
    n = 300
    lo, hi = sorted(dev.state_range)
    s = rng.uniform(lo, hi, n)
    var, noise = dev.draw_variation(n, rng), dev.draw_noise(n, rng)
    counts = rng.integers(0, 12, n)
    for pol in (+1, -1):
        fast = dev.apply_counts(s, counts, PulseShape(), var, noise, polarity=pol)
        loop = DeviceModel.apply_counts(dev, s, counts, PulseShape(), var, noise, polarity=pol)
        np.testing.assert_allclose(fast, loop, rtol=1e-12, atol=1e-12 * (hi - lo))
    assert np.abs(dev.apply_counts(s, counts, PulseShape(), var, noise) - s).max() > 0

"""Device compact models: SPICE subcircuit vs numpy twin, closed forms, half-select, bad values.

Real ngspice (cosim.sim.engine.SubprocessEngine); nothing is mocked.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.cap3t1c import Cap3T1C, Cap3T1CParams
from models.pulse import PulseShape, exposure
from models.registry import REGISTRY, get_device
from models.errors import ParameterError
from models.linear import LinearParams
from models.pcm import PCM, PCMParams
from models.rram import RRAM, RRAMParams
from cosim.characterize.devices import sample_states
from netlists.benches import cap3t1c_fit_benches, cap3t1c_fit_grid, iv_bench, leak_bench, pulse_bench
from netlists.ir import Circuit, NodeTable, PwlSources, SubcktInstances, VoltageSources
from netlists.spice import Tran, write_spice

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


def _pulses(engine, model, s0, amps, var=None, noise=None) -> np.ndarray:
    """SPICE states after each slot of the pulse bench, (devices, slots + 1)."""
    bench = pulse_bench(model, s0, amps, SHAPE, var, noise)
    return sample_states(engine.run(bench.deck(), need=bench.need()), bench, SHAPE, amps.shape[1])


def _fit_vectors(engine, model) -> dict:
    """The vectors of the 3T1C fit benches by role (``read``'s ``i_s``: one array per V_C)."""
    out = {}
    for name, bench in cap3t1c_fit_benches(model).items():
        v = engine.run(bench.deck(), need=bench.need()).vectors
        out[name] = {role: [v[n] for n in names] if role == "i_s" else v[names[0]]
                     for role, names in bench.vectors.items()}
    return out


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
    spice = _pulses(engine, model, s0, amps, var, noise)
    twin = model.trajectory(s0, amps, SHAPE, var, noise)
    step = np.abs(np.diff(twin, axis=1)).max()
    assert step > 0
    err = np.abs(spice - twin).max() / step
    assert err < PULSE_TOL.get(name, PULSE_TOL_DEFAULT), f"{name}: SPICE vs twin {err:.3f} of a step"

    # I-V in the read regime (below every threshold). The twin is evaluated on SPICE's own state
    # trace, which is flat for the behavioural cells and decays by RC for cap3t1c.
    v_max = 0.9 * model.v_threshold if name != "cap3t1c" else model.v_read
    bench = iv_bench(model, s0, v_max)
    res = engine.run(bench.deck(), need=bench.need())
    for i in range(n):
        v = res.vectors[bench.vectors["v"][i]]
        state = res.vectors[bench.vectors["state"][i]]
        i_spice = -res.vectors[bench.vectors["i"][i]]
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
    spice = _pulses(engine, model, s0, amps)[:, -1]
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
    spice = model.to_conductance(_pulses(engine, model, s0, amps))
    step = np.abs(np.diff(closed, axis=1)).max()
    assert np.abs(spice - closed).max() < PULSE_TOL_DEFAULT * step
    assert np.all(np.diff(spice, axis=1) > 0) and np.all(spice < model.params.g_max)


def test_pcm_reset_is_abrupt(engine):
    model = PCM()
    s0 = np.array([20.0, 8.0])
    amps = np.full((2, 1), model.v_reset)
    spice = _pulses(engine, model, s0, amps)[:, -1]   # gear (the bench's method): the RESET term is stiff
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
    n = len(t) * 2
    dfac = np.concatenate([model.drift_factor(state, tk, var) for tk in t])
    inst = model.instance_params(np.tile(state, len(t)), dfac=dfac)
    nodes = NodeTable()
    a = nodes.add("a{0}", (n,))
    circuit = Circuit("pcm drift read", nodes, (
        SubcktInstances("dut", (n,), subckt=model.subckt_name, ports=np.column_stack([a, np.zeros(n, np.int64)]),
                        params=inst),
        VoltageSources("r", (n,), p=a, n=np.zeros(n, np.int64), value=model.v_read, role="sense")),
        subckts=(model.subckt(),))
    res = engine.run(write_spice(circuit, Tran(1e-9, 2e-9, uic=True)))
    for i in range(2):
        g = np.array([-res.vectors[f"i(vr_{2 * k + i})"][-1] for k in range(len(t))]) / model.v_read
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
    pumps = _fit_vectors(engine, model)["pumps"]
    vc = pumps["vc"]
    i_dn = -pumps["i_c2"]
    i_up = i_dn + pumps["i_c"]
    s0 = np.array([0.7, 0.9, 1.1])
    spice = _pulses(engine, model, s0, np.array([[1.0], [1.0], [-1.0]]))
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
    bench = leak_bench(model, s0, t_stop)
    res = engine.run(bench.deck(), need=bench.need())
    v_end = np.array([res.vectors[name][-1] for name in bench.vectors["state"]])
    np.testing.assert_allclose(v_end, s0 * np.exp(-0.5), rtol=0.02)
    np.testing.assert_allclose(model.leak(s0, t_stop), s0 * np.exp(-0.5), rtol=1e-12)


def test_3t1c_twin_constants_refit_from_circuit(engine):
    model = Cap3T1C()
    v = _fit_vectors(engine, model)
    fitted = model.fitted(cap3t1c_fit_grid(model), v["pumps"], v["gates"], v["read"])
    grid = np.linspace(model.params.vc_min, model.params.vc_max, 7)
    for a, b in zip(model.pump_currents(grid), fitted.pump_currents(grid)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(model.conductance(grid), fitted.conductance(grid), rtol=1e-6)


def test_rram_1t1r_gate_sets_compliance(engine):
    model = RRAM()
    vg = [0.6, 0.8, 1.2]
    n = len(vg)
    nodes = NodeTable()
    b, w = nodes.add("b{0}", (n,)), nodes.add("w{0}", (n,))
    z = np.zeros(n, np.int64)
    ramp = (np.array([0, 5e-9, 10e-9, 1e-6, 1.005e-6]), np.array([0, 0, 2.0, 2.0, 0]))
    circuit = Circuit("rram 1t1r SET under three gate voltages", nodes, (
        PwlSources("b", (n,), p=b, n=z, times=(ramp[0],) * n, values=(ramp[1],) * n),
        VoltageSources("w", (n,), p=w, n=z, value=np.array(vg), role="supply"),
        SubcktInstances("c", (n,), subckt="rram_1t1r", ports=np.column_stack([b, w, z]), params={"s0": 1.7})),
        subckts=(model.subckt(), model.subckt_1t1r()), models=(model.model_cards(),))
    states = [f"v(xc_{k}.x1.s)" for k in range(n)]
    res = engine.run(write_spice(circuit, Tran(10e-9, 1.1e-6, max_step=10e-9, uic=True), save=states,
                                 options={"method": "gear"}), need=states)
    gap = np.array([res.vectors[name][-1] for name in states])
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


def _closed_forms() -> list[str]:
    from models.device import DeviceModel
    return sorted(n for n in REGISTRY if type(get_device(n)).apply_counts is not DeviceModel.apply_counts)


@pytest.mark.parametrize("name", _closed_forms())
@pytest.mark.parametrize("compiled", [True, False])
def test_apply_counts_equals_pulse_by_pulse(name, compiled, rng, monkeypatch):
    """A device's closed form of n identical full-selected pulses (its own ``apply_counts``) is
    the slot-by-slot twin (:meth:`DeviceModel.apply_counts`: one ``step`` per slot), with and
    without device variation, compiled or not."""
    import models.cap3t1c as cap
    import models.pcm as pcm
    from models.device import DeviceModel   # noqa: I001

    assert {"pcm", "cap3t1c"} <= set(_closed_forms())
    if not compiled:
        monkeypatch.setattr(cap, "_phase_kernel", lambda: None)   # where numba is not
        monkeypatch.setattr(pcm, "_pulsed_kernels", lambda: None)
    dev = get_device(name)
    n = 300
    lo, hi = sorted(dev.state_range)
    s = rng.uniform(lo, hi, n)
    counts = rng.integers(0, 12, n)
    shape = PulseShape(5e-9, 5e-10, 1e-8, 1e-9) if name == "cap3t1c" else PulseShape()
    for var, noise in ((dev.draw_variation(n, rng) or None, dev.draw_noise(n, rng) or None), (None, None)):
        for pol in (+1, -1):
            fast = dev.apply_counts(s, counts, shape, var, noise, polarity=pol)
            loop = DeviceModel.apply_counts(dev, s, counts, shape, var, noise, polarity=pol)
            np.testing.assert_allclose(fast, loop, rtol=1e-12, atol=1e-12 * (hi - lo))
            assert np.abs(fast - s).max() > 1e-3 * (hi - lo)


@pytest.mark.parametrize("compiled", [True, False])
def test_pcm_counts_are_the_whole_array_closed_form_bit_for_bit(compiled, rng, monkeypatch):
    """The PCM's counts stepper (exp only where a device got pulses, numpy's exp) gives the
    whole-array expression's numbers exactly, for mostly-zero counts of the types the updates
    pass, compiled or not."""
    import models.pcm as pcm

    if not compiled:
        monkeypatch.setattr(pcm, "_pulsed_kernels", lambda: None)
    dev = get_device("pcm")
    n = 20_000
    lo, hi = sorted(dev.state_range)
    s = rng.uniform(lo, hi, n)
    counts = np.where(rng.random(n) < 0.15, rng.integers(1, 11, n), 0)
    var, noise = dev.draw_variation(n, rng), dev.draw_noise(n, rng)
    x = dev._ks(var, noise, n) * float(exposure(dev.v_write, PulseShape(), dev.params.v_set_lo,
                                                dev.params.v_set_hi))
    want = dev._smax - (dev._smax - s) * np.exp(-np.asarray(counts, float) * x)
    step = dev.counts_stepper(PulseShape(), var, noise)
    for dtype in (np.int32, np.int64, np.float32, np.float64, np.float16, np.uint8):
        assert np.array_equal(step(s, counts.astype(dtype)), want)
    assert np.array_equal(step(s, np.full(n, 3)), dev._smax - (dev._smax - s) * np.exp(-3.0 * x))


def test_apply_phases_is_apply_counts_phase_after_phase(rng, monkeypatch):
    """The fused update of a tile (every sub-phase in one pass) gives the numbers of
    :meth:`Cap3T1C.apply_counts` phase by phase, compiled or not, with counts of any numeric
    type, and the slots they took; bad counts are refused with the state untouched."""
    import models.cap3t1c as cap
    from models.device import DeviceModel
    from models.errors import ShapeError

    dev = cap.Cap3T1C()
    shape = PulseShape(5e-9, 5e-10, 1e-8, 1e-9)
    s = rng.uniform(*dev.state_range, 500)
    counts = rng.integers(0, 5, (12, 500))
    counts[rng.random(counts.shape) < 0.7] = 0
    counts[[2, 7]] = 0                                     # phases without pulses take no slots
    pol = np.where(rng.random(12) < 0.5, 1, -1)
    loop, slots = s.copy(), 0
    for c, p in zip(counts, pol):
        if c.any():
            slots += int(c.max())
            loop = DeviceModel.apply_counts(dev, loop, c, shape, polarity=int(p))   # slot by slot
    for dtype in (np.float32, np.int32, np.int64, np.int16, np.float64):
        fused, n = dev.apply_phases(s, counts.astype(dtype), pol, shape)
        assert n == slots
        np.testing.assert_allclose(fused, loop, rtol=1e-12, atol=0)
    for bad in (np.where(counts == 4, -1, counts), counts + 0.5, np.where(counts == 4, np.nan, counts)):
        with pytest.raises(ParameterError, match="whole numbers"):
            dev.apply_phases(s, bad, pol, shape)
    with pytest.raises(ShapeError, match="polarity"):
        dev.apply_phases(s, counts[:, :10], pol, shape)
    with pytest.raises(ShapeError, match="polarity"):
        dev.apply_phases(s, counts, pol[:3], shape)
    monkeypatch.setattr(cap, "_phase_kernel", lambda: None)   # where numba is not
    fused, n = dev.apply_phases(s, counts, pol, shape)
    assert n == slots
    np.testing.assert_allclose(fused, loop, rtol=1e-12, atol=0)
    with pytest.raises(ParameterError, match="whole numbers"):
        dev.apply_phases(s, counts + 0.5, pol, shape)


@pytest.mark.parametrize("compiled", [True, False])
def test_apply_masks_is_apply_phases_of_the_popcounts(compiled, rng, monkeypatch):
    """Pulses given as each line's slot masks (a cell's count: the popcount of its row's AND
    its column's mask) give :meth:`Cap3T1C.apply_phases`' numbers of those counts bit for bit,
    the same slots and the pulses, compiled or not (the count-free pass where numba is)."""
    import models.cap3t1c as cap
    from models.errors import ShapeError

    if not compiled:
        monkeypatch.setattr(cap, "_phase_kernel", lambda: None)
    dev = cap.Cap3T1C()
    shape = PulseShape(5e-9, 5e-10, 1e-8, 1e-9)
    s = rng.uniform(*dev.state_range, (17, 6))
    rm = np.where(rng.random((12, 17)) < 0.4, rng.integers(1, 1 << 10, (12, 17)), 0)
    cm = np.where(rng.random((12, 6)) < 0.6, rng.integers(1, 1 << 10, (12, 6)), 0)
    rm[[3, 8]] = 0                                         # phases without pulses take no slots
    pol = np.where(rng.random(12) < 0.5, 1, -1)
    counts = np.array([[bin(int(a) & int(b)).count("1") for a in r for b in c] for r, c in zip(rm, cm)])
    want, want_slots = dev.apply_phases(s.ravel(), counts, pol, shape)
    got, slots, pulses = dev.apply_masks(s, rm, cm, pol, shape)
    assert np.array_equal(got, want.reshape(s.shape)) and slots == want_slots and pulses == counts.sum()
    assert np.array_equal(s, dev.apply_masks(s, rm[:0], cm[:0], pol[:0], shape)[0])   # no phases, no change
    for bad in (rm - 1, rm + 0.5, rm + (1 << 16), rm.astype(np.uint64) + np.uint64(1 << 63)):
        with pytest.raises(ParameterError, match=r"integers in \[0, 2\^16\): 16 slots at most"):
            dev.apply_masks(s, bad, cm, pol, shape)
    with pytest.raises(ShapeError, match="row masks"):
        dev.apply_masks(s, rm[:, :5], cm, pol, shape)

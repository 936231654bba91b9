"""Behavioural models fitted to SPICE (cosim.calibrate.blocks): step tables, periphery transfer,
Monte Carlo of MVM errors. Every fit is scored against real ngspice runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosim.calibrate.blocks import load_json, plot_fits, save_json
from cosim.calibrate.devices import fit_device_steps, fit_step_table
from cosim.write.step_table import StepTable
from cosim.calibrate.periphery import fit_periphery
from cosim.read.periphery_fit import PeripheryFit
from cosim.calibrate.montecarlo import (
    FaultMap, MonteCarloRuns, Variation, draw_fault_map, fault_map_for_run, monte_carlo_mvm,
)
from models.registry import device_names
from models.errors import ParameterError

# Small but honest settings: 32 bins (the 3T1C step curve needs them), 12 pulses per train,
# 3 device draws fitted, 2 held out. About 1 s of SPICE per device.
SMALL = dict(pulses=12, bins=32, seeds=(0, 1, 2), holdout_seeds=(10, 11))


@pytest.fixture(scope="module")
def device_fits(engine):
    return {name: fit_device_steps(name, engine=engine, **SMALL) for name in device_names()}


@pytest.mark.parametrize("name", device_names())
def test_step_table_predicts_held_out_spice(device_fits, name):
    r = device_fits[name]
    tab, twin = r["error"]["step_table"]["rmse_frac"], r["error"]["twin"]["rmse_frac"]
    # the SPICE runner pairs each instance with its own draws: the twin told those draws
    # follows SPICE (3T1C: no draws, its twin is fitted to DC sweeps, so it is looser)
    assert r["error"]["twin_same_draws"]["rmse_frac"] < (5e-3 if name == "cap3t1c" else 2e-4)
    if name == "cap3t1c":
        # the pump asymmetry and edge charge of the circuit: the table, fitted to transients,
        # beats the twin fitted to DC sweeps by a wide margin
        assert tab < 0.3 * twin, (tab, twin)
    elif name == "linear":
        # the ideal device: nothing to calibrate; the table is as good as the exact twin
        assert tab <= twin + 1e-5, (tab, twin)
    else:
        # noise-dominated devices (held-out draws unknown to both predictors): the table
        # estimates the mean step from 3 draws, the twin has it exactly
        assert tab <= 1.5 * twin + 2e-4, (tab, twin)
    assert set(r["table"]["curves"]) == ({"up"} if name == "pcm" else {"up", "down"})


def test_step_table_beats_a_miscalibrated_twin_direction(device_fits):
    """3T1C: the table catches the up/down asymmetry that comes out of the circuit."""
    t = StepTable.from_dict(device_fits["cap3t1c"]["table"])
    g = np.linspace(t.g_min, t.g_max, 9)[2:-2]
    up, dn = t.mean_step(g, "up"), -t.mean_step(g, "down")
    assert np.all(up > 0) and np.all(dn > 0)
    assert np.max(np.abs(up / dn - 1)) > 0.005  # asymmetric, and measurably so


def _const_table(step=1e-7, std=0.0, bins=4, set_only=False):
    edges = tuple(np.linspace(0.0, 10e-6, bins + 1))
    g = list(0.5 * (np.array(edges[1:]) + np.array(edges[:-1])))
    c = lambda s: {"g": g, "mean": [s] * bins, "std": [std] * bins, "count": [5] * bins}
    curves = {"up": c(step)} if set_only else {"up": c(step), "down": c(-step)}
    return StepTable("toy", 0.0, 10e-6, edges, curves)


def test_step_table_apply_counts_bounds_and_noise():
    t = _const_table()
    G = np.array([1e-6, 5e-6, 9.95e-6])
    np.testing.assert_allclose(t.apply(G, 3, "up"), [1.3e-6, 5.3e-6, 10e-6])
    np.testing.assert_allclose(t.apply(G, np.array([0, 1, 2]), -1), [1e-6, 4.9e-6, 9.75e-6])
    np.testing.assert_allclose(t.apply_signed(G, np.array([2, -2, 0])), [1.2e-6, 4.8e-6, 9.95e-6])
    noisy = _const_table(std=0.5e-7)
    a = noisy.apply(np.full(1000, 5e-6), 4, "up", np.random.default_rng(1))
    b = noisy.apply(np.full(1000, 5e-6), 4, "up", np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    d = (a - 5e-6) / 4  # one z per device per call: the spread of the mean step is the std
    assert abs(d.mean() - 1e-7) < 5e-9 and abs(d.std() - 0.5e-7) < 5e-9
    with pytest.raises(ParameterError, match="SET-only"):
        _const_table(set_only=True).apply(G, 1, "down")
    with pytest.raises(ParameterError):
        t.apply(G, -1, "up")


def test_step_table_apply_with_a_given_noise_draw():
    """``z``: the caller's one draw per device, the same as the draw ``rng`` would make."""
    t = _const_table(std=0.5e-7)
    G = np.full(200, 5e-6)
    z = np.random.default_rng(3).standard_normal(G.size)
    np.testing.assert_array_equal(t.apply(G, 3, "up", z=z), t.apply(G, 3, "up", np.random.default_rng(3)))
    once = t.apply(t.apply(G, 1, "up", z=z), 2, "up", z=z)       # split over calls: same result
    np.testing.assert_allclose(once, t.apply(G, 3, "up", z=z), rtol=1e-12)
    # a table whose step falls with G: each pulse sees the conductance the previous one left
    g = np.linspace(1e-6, 10e-6, 8)
    sat = StepTable("x", 1e-6, 10e-6, tuple(np.linspace(1e-6, 10e-6, 9)),
                    {"up": {"g": list(g), "mean": list(1e-6 - 0.09 * (g - 1e-6)), "std": [0.2e-6] * 8,
                            "count": [1] * 8}})
    G2 = np.linspace(1e-6, 9e-6, 200)
    step = G2.copy()
    for _ in range(3):
        step = np.clip(step + np.maximum(sat.mean_step(step, "up") + sat.std_step(step, "up") * z, 0), 1e-6, 10e-6)
    np.testing.assert_allclose(sat.apply(G2, 3, "up", z=z), step, rtol=1e-12)
    np.testing.assert_allclose(sat.apply(sat.apply(G2, 2, "up", z=z), 1, "up", z=z), step, rtol=1e-12)
    assert np.array_equal(sat.apply(G2, 0, "down"), G2)           # nothing to do: no 'down' table needed
    with pytest.raises(ParameterError, match="not with rng"):
        t.apply(G, 1, "up", np.random.default_rng(0), z=z)


def test_fit_step_table_counts_each_train_once_per_bin():
    """A train that does not move (a zero cycle-to-cycle draw) stays in its bin for every pulse:
    with ``groups`` it counts once there, like each train that crosses the bin in one step."""
    from cosim.calibrate.devices import fit_step_table
    moving = np.linspace(0.05, 0.95, 10) * 1e-6                  # ten trains, one sample each in bin 0
    gb = np.concatenate([moving, np.full(30, 0.5e-6)])           # ... and one stuck train, 30 samples
    ga = np.concatenate([moving + 1e-6, np.full(30, 0.5e-6)])
    grp = np.concatenate([np.arange(10), np.full(30, 10)])
    kw = dict(g_min=0.0, g_max=10e-6, bins=10)
    plain = fit_step_table("x", gb, ga, 1, **kw).curves["up"]
    fair = fit_step_table("x", gb, ga, 1, groups=grp, **kw).curves["up"]
    assert plain["mean"][0] == pytest.approx(10 / 40 * 1e-6)
    assert fair["mean"][0] == pytest.approx(10 / 11 * 1e-6)
    assert fair["count"][0] == 40                                # samples, as before
    # the spread: weighted residuals about the mean curve, unbiased for the weights
    # (sum w r^2 / (W - sum w^2 / W)), here brute force
    x, dg = gb, ga - gb
    w = np.concatenate([np.ones(10), np.full(30, 1 / 30)])
    res = dg - np.interp(x, fair["g"], fair["mean"])
    want = np.sqrt(np.sum(w * res ** 2) / (w.sum() - np.sum(w ** 2) / w.sum()))
    assert fair["std"][0] == pytest.approx(want, rel=1e-12)


def test_fit_step_table_recovers_a_known_curve_and_spread():
    rng = np.random.default_rng(3)
    g = rng.uniform(0, 10e-6, 20000)
    mean = lambda x: 2e-7 * (1 - x / 10e-6) + 1e-8
    step = mean(g) * (1 + 0.3 * rng.standard_normal(g.size))
    t = fit_step_table("toy", g, g + step, np.ones(g.size), g_min=0.0, g_max=10e-6, bins=16)
    x = np.linspace(1e-6, 9e-6, 7)
    np.testing.assert_allclose(t.mean_step(x, "up"), mean(x), rtol=0.03)
    np.testing.assert_allclose(t.std_step(x, "up"), 0.3 * mean(x), rtol=0.1)
    assert t.directions == ("up",)


@pytest.fixture(scope="module")
def macro_fit(engine):
    """A macro integrator with a known finite GBW (gain) and input offset, ideal quantiser."""
    from models.adc import QuantizerParams
    from models.integrator import IntegratorParams
    from models.opamp import MacroOpAmpParams
    integ = IntegratorParams(opamp=MacroOpAmpParams(a0=1e6, gbw=20e6, v_os=5e-3))
    return integ, fit_periphery(integ, QuantizerParams(), points=21, engine=engine)


def test_periphery_fit_recovers_injected_gain_and_offset(macro_fit):
    integ, r = macro_fit
    m = integ.opamp
    g = r["g_cell"]
    c_eff = integ.c_int * (1 + 1 / m.a0) + g / (2 * np.pi * m.gbw)  # charge lost at the virtual ground
    gain = -1 / c_eff
    offset = m.v_os * m.a0 / (1 + m.a0) + g * m.v_os * r["t_int"] / c_eff  # column held at v_os
    fit = r["integrator"]
    assert fit["gain_v_per_c"] == pytest.approx(gain, rel=5e-3)
    assert fit["offset_v"] == pytest.approx(offset, abs=1.5e-3)
    # the injected errors are far larger than the tolerances: the test can fail
    assert abs(-1 / integ.c_int / gain - 1) > 0.1 and abs(offset) > 0.03
    # rails: where SPICE went, not where the nominal swing says
    v = np.asarray(r["curves"]["v_spice"])
    assert fit["sat_hi_v"] == pytest.approx(v.max(), abs=0.01)
    assert fit["sat_lo_v"] == pytest.approx(v.min(), abs=0.01)
    assert r["error"]["fit"]["v_rms_lsb"] < 0.5 and r["error"]["fit"]["code_max_lsb"] <= 1


def test_periphery_fit_beats_uncalibrated_twin_on_two_stage_opamp(engine):
    from models.adc import QuantizerParams
    from models.integrator import IntegratorParams
    from models.opamp import TwoStageOpAmpParams
    r = fit_periphery(IntegratorParams(opamp=TwoStageOpAmpParams()), QuantizerParams(), points=15, engine=engine)
    fit, twin = r["error"]["fit"], r["error"]["twin"]
    assert fit["v_rms_lsb"] < 1.0 and fit["v_rms_lsb"] < 0.2 * twin["v_rms_lsb"], (fit, twin)
    assert fit["code_rms_lsb"] < twin["code_rms_lsb"]


def test_periphery_fit_json_round_trip(macro_fit, tmp_path):
    _, r = macro_fit
    p = save_json({"periphery": {"macro": r}}, tmp_path / "f.json")
    back = PeripheryFit.from_dict(load_json(p)["periphery"]["macro"]["fit"])
    fit = PeripheryFit.from_dict(r["fit"])
    q = np.asarray(r["curves"]["q"])
    np.testing.assert_array_equal(back.voltage(q), fit.voltage(q))
    np.testing.assert_array_equal(back.codes(q), np.asarray(r["curves"]["code_fit"]))


def test_step_table_json_round_trip(device_fits, tmp_path):
    r = device_fits["rram"]
    p = save_json(r, tmp_path / "rram.json")
    loaded = load_json(p)
    assert loaded["error"] == json.loads(json.dumps(r["error"]))
    a, b = StepTable.from_dict(r["table"]), StepTable.from_dict(loaded["table"])
    G = np.linspace(a.g_min, a.g_max, 50)
    for d in ("up", "down"):
        np.testing.assert_array_equal(a.apply(G, 5, d, np.random.default_rng(0)),
                                      b.apply(G, 5, d, np.random.default_rng(0)))


# ----------------------------------------------------------------------------------------------
# Monte Carlo


MC = dict(runs=6, batch=8, g_min=1e-6, g_max=25e-6)


def test_monte_carlo_same_seed_same_result():
    var = Variation(d2d_sigma=0.1, stuck_frac=0.02, opamp_offset_sigma_v=1e-3, adc_offset_sigma_fs=1e-3)
    a = monte_carlo_mvm(16, 1.0, var, seed=7, **MC)
    b = monte_carlo_mvm(16, 1.0, var, seed=7, **MC)
    c = monte_carlo_mvm(16, 1.0, var, seed=8, **MC)
    assert a["per_run_rms"] == b["per_run_rms"] and a["rms"] == b["rms"]
    assert a["per_run_rms"] != c["per_run_rms"]


def test_monte_carlo_without_variation_is_the_wire_error():
    from cosim.read.mvm import Crossbar
    from netlists.crossbar import CrossbarSpec, interleave
    r = monte_carlo_mvm(16, 2.0, seed=3, **MC)
    assert r["rms"]["std"] == 0.0
    assert r["rms"]["mean"] == pytest.approx(r["wire_only"], rel=1e-12)
    # independently: the same weights and inputs, read once
    base = np.random.default_rng([3, 0])
    W = base.uniform(-1, 1, (16, 16))
    V = base.uniform(-0.2, 0.2, (8, 16))
    gp, gm = 1e-6 + 24e-6 * np.maximum(W, 0), 1e-6 + 24e-6 * np.maximum(-W, 0)
    xb = Crossbar(CrossbarSpec(rows=16, cols=16, cell="diff", r_row=2.0, r_col=2.0), interleave(gp, gm))
    ideal = V @ (gp - gm)
    e = (xb.read(V, backend="fast") - ideal) / np.abs(ideal).max()
    assert r["wire_only"] == pytest.approx(np.sqrt(np.mean(e ** 2)), rel=1e-9)
    assert r["wire_only"] > 1e-4  # the wires do something at 2 ohm
    assert monte_carlo_mvm(16, 0.0, seed=3, **MC)["rms"]["mean"] < 1e-12


def test_monte_carlo_error_grows_with_sigma():
    means = [monte_carlo_mvm(16, 1.0, Variation(d2d_sigma=s), seed=0, **MC)["rms"]["mean"]
             for s in (0.0, 0.05, 0.1, 0.2)]
    assert np.all(np.diff(means) > 0), means
    stuck = monte_carlo_mvm(16, 1.0, Variation(d2d_sigma=0.05, stuck_frac=0.05), seed=0, **MC)["rms"]["mean"]
    assert stuck > means[1]


def test_fault_map_for_run_reproduces_a_monte_carlo_run():
    """The helper hands a training run exactly the instance the Monte Carlo sampled."""
    from cosim.read.mvm import Crossbar
    from netlists.crossbar import CrossbarSpec, interleave
    var = Variation(d2d_sigma=0.1, stuck_frac=0.05)
    r = monte_carlo_mvm(12, 1.0, var, seed=5, runs=3, batch=8)
    base = np.random.default_rng([5, 0])
    W = base.uniform(-1, 1, (12, 12))
    V = base.uniform(-0.2, 0.2, (8, 12))
    gp, gm = 1e-6 + 24e-6 * np.maximum(W, 0), 1e-6 + 24e-6 * np.maximum(-W, 0)
    G = fault_map_for_run((12, 24), 5, 2, var).apply(interleave(gp, gm), 1e-6, 25e-6)
    I = Crossbar(CrossbarSpec(rows=12, cols=12, cell="diff", r_row=1.0, r_col=1.0), G).read(V)
    ideal = V @ (gp - gm)
    e = (I - ideal) / np.abs(ideal).max()
    assert r["per_run_rms"][2] == pytest.approx(np.sqrt(np.mean(e ** 2)), rel=1e-9)


def test_monte_carlo_spice_spot_check(engine):
    r = monte_carlo_mvm(8, 1.0, Variation(d2d_sigma=0.2, stuck_frac=0.05), seed=1, runs=2, batch=4,
                        spice_runs=2, engine=engine)
    assert len(r["spice_checks"]) == 2
    assert max(c["max_abs_diff_frac"] for c in r["spice_checks"]) < 1e-6


def test_fault_map_apply_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    fm = draw_fault_map((20, 10), rng, Variation(d2d_sigma=0.1, stuck_frac=0.2, opamp_offset_sigma_v=1e-3))
    G = np.full((20, 10), 10e-6)
    out = fm.apply(G, 1e-6, 25e-6)
    assert np.all(out[fm.stuck < 0] == 1e-6) and np.all(out[fm.stuck > 0] == 25e-6)
    free = fm.stuck == 0
    np.testing.assert_allclose(out[free], np.clip(G[free] * fm.g_factor[free], 1e-6, 25e-6))
    assert 0.1 < np.mean(fm.stuck != 0) < 0.3
    back = FaultMap.load(fm.save(tmp_path / "fm.npz"))
    np.testing.assert_array_equal(back.apply(G, 1e-6, 25e-6), out)
    again = FaultMap.from_dict(json.loads(json.dumps(fm.to_dict())))
    np.testing.assert_array_equal(again.v_os, fm.v_os)
    # same seed, no variation: same stuck cells (fixed draw order), factors exactly 1
    fm0 = draw_fault_map((20, 10), np.random.default_rng(0), Variation(stuck_frac=0.2))
    np.testing.assert_array_equal(fm0.stuck, fm.stuck)
    assert np.all(fm0.g_factor == 1.0)


def test_plot_fits_writes_pngs(device_fits, macro_fit, tmp_path):
    mc = monte_carlo_mvm(8, 1.0, Variation(d2d_sigma=0.1), seed=0, runs=4, batch=4)
    paths = plot_fits({"devices": {"cap3t1c": device_fits["cap3t1c"], "pcm": device_fits["pcm"]},
                       "periphery": {"macro": macro_fit[1]}, "monte_carlo": [mc]}, tmp_path)
    assert len(paths) == 4
    for p in paths:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    from cosim.calibrate.blocks import report_markdown
    text = report_markdown({"devices": {"pcm": device_fits["pcm"]}, "periphery": {"macro": macro_fit[1]},
                            "monte_carlo": [mc]})
    rows = [ln for ln in text.splitlines() if ln.startswith("| pcm |") or ln.startswith("| macro |")]
    assert len(rows) == 2 and all(ln.count("|") == 9 for ln in rows)
    assert f"{100 * device_fits['pcm']['error']['step_table']['rmse_frac']:.4f}" in rows[0]


def test_monte_carlo_accuracy_is_seeded_restores_the_network_and_faults_cost_accuracy(tmp_path):
    from cosim.train.data import load_digits_split
    from cosim.calibrate.montecarlo import monte_carlo_accuracy
    from cosim.train.layers import LayerConfig
    from cosim.train.loop import TrainConfig, train

    data = load_digits_split()
    cfg = TrainConfig(epochs=1, forward="fast", backward="fast", layer=LayerConfig(r_wire=1.0))
    m = train(cfg, data, tmp_path / "run", progress=False, monte_carlo=MonteCarloRuns(Variation(), runs=3))
    mc = m["monte_carlo"]
    # no variation, no stuck cells: every instance is the trained network
    assert mc["accuracies"] == [m["final"]["test_accuracy"]] * 3 == [mc["nominal_accuracy"]] * 3
    assert (tmp_path / "run" / "monte_carlo.json").exists()
    # the finished run resumes straight to the evaluation: faults on the trained arrays cost accuracy
    faulty = train(cfg, data, tmp_path / "run", progress=False, monte_carlo=MonteCarloRuns(
        Variation(d2d_sigma=0.2, stuck_frac=0.05, opamp_offset_sigma_v=0.005), runs=3))
    assert faulty["history"] == m["history"]
    assert faulty["monte_carlo"]["mean"] < m["final"]["test_accuracy"] - 0.02

    from cosim.train.network import MLP
    net = MLP([64, 32, 10], cfg.layer, seed=0)
    before = [t.g_plus.copy() for layer in net.layers for t in layer.tiles]
    var = Variation(stuck_frac=0.05, d2d_sigma=0.3, opamp_offset_sigma_v=0.01)
    a = monte_carlo_accuracy(net, data.X_test, data.y_test, var, runs=4, seed=3)
    assert a == {**monte_carlo_accuracy(net, data.X_test, data.y_test, var, runs=4, seed=3), "elapsed_s": a["elapsed_s"]}
    assert all(np.array_equal(b, t.g_plus) for b, t in zip(before, (t for layer in net.layers for t in layer.tiles)))
    assert all(t.out_offset is None for layer in net.layers for t in layer.tiles)
    assert len(set(a["accuracies"])) > 1          # the instances differ

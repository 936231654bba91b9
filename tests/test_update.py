"""Pulse-coincidence updates of device pairs: numpy twin against one ngspice transient."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.train.layers import AnalogLayer, LayerConfig
from cosim.write.pair_update import PulseUpdate, mapping_for
from models.registry import get_device
from models.errors import ParameterError


@pytest.mark.parametrize("name", ["pcm", "linear", "rram"])
def test_spice_update_matches_the_twin_on_the_same_trains(name, engine):
    dev = get_device(name)
    W = np.random.default_rng(1).uniform(-1, 1, (6, 4))
    x = np.random.default_rng(2).uniform(0, 1, (3, 6))
    d = np.random.default_rng(3).uniform(-0.2, 0.2, (3, 4))
    out = {}
    for backend in ("fast", "spice"):
        layer = AnalogLayer(W, LayerConfig(mapping=mapping_for(dev), adc_bits=None, bias=False))
        up = PulseUpdate(dev, bl=8, backend=backend, engine=engine, refresh_at=1.0)
        layer.update(x, d, 0.5, up, np.random.default_rng(4))
        out[backend] = layer.weights()
    dW = out["fast"] - W
    assert np.abs(dW).max() > 0.01                                   # the update did something
    assert np.abs(out["spice"] - out["fast"]).max() < 0.01 * np.abs(dW).max()
    # the sign follows gradient descent: dW ~ -lr x^T d
    assert np.corrcoef(dW.ravel(), -(x.T @ d).ravel())[0, 1] > 0.5   # stochastic, 60 % c2c on PCM


def test_write_wires_make_spice_updates_smaller(engine):
    dev = get_device("linear")
    W = np.zeros((12, 6))
    x, d = np.ones((1, 12)), -np.full((1, 6), 0.5)
    res = {}
    for r in (0.0, 150.0):
        layer = AnalogLayer(W, LayerConfig(mapping=mapping_for(dev), adc_bits=None, bias=False))
        layer.update(x, d, 0.5, PulseUpdate(dev, bl=4, backend="spice", engine=engine, r_wire=r), np.random.default_rng(0))
        res[r] = layer.weights()
    assert res[150.0].sum() < res[0.0].sum()


def test_pulse_update_rejects_bad_settings():
    with pytest.raises(ParameterError, match="two-terminal"):
        PulseUpdate(get_device("ecram"))
    with pytest.raises(ParameterError, match="backend"):
        PulseUpdate(get_device("pcm"), backend="magic")


@pytest.mark.parametrize("name", ["pcm", "linear"])
def test_pulse_count_programming_twin_and_spice_agree(name, engine):
    from cosim.write.program import program_counts
    dev = get_device(name)
    lo, hi = dev.state_range
    s = np.full((4, 3), lo + 0.3 * (hi - lo))
    counts = np.random.default_rng(0).integers(-2 if name == "linear" else 0, 4, (4, 3))
    fast = program_counts(dev, s, counts)
    spice = program_counts(dev, s, counts, backend="spice", engine=engine)
    assert np.array_equal(np.sign(np.round(fast - s, 9)), np.sign(counts))   # only counted cells move
    assert np.abs(spice - fast).max() < 0.01 * np.abs(fast - s).max()


@pytest.mark.parametrize("name, backend", [("pcm", "fast"), ("pcm", "spice"), ("linear", "fast")])
def test_write_verify_reaches_targets(name, backend, engine):
    from cosim.write.program import write_verify
    dev = get_device(name)
    lo, hi = np.sort(dev.to_conductance(np.array(dev.state_range)))
    rng = np.random.default_rng(1)
    start = dev.from_conductance(np.full((3, 3), lo + 0.5 * (hi - lo)))
    target = rng.uniform(lo + 0.1 * (hi - lo), lo + 0.8 * (hi - lo), (3, 3))   # some below the start
    res = write_verify(dev, start, target, tol=0.02 * (hi - lo), backend=backend, engine=engine)
    assert res.converged.all() and res.rounds <= 6
    assert np.abs(res.conductance - target).max() <= 0.02 * (hi - lo)
    with pytest.raises(ParameterError, match="device range"):
        write_verify(dev, start, np.full((3, 3), 10 * hi), tol=1e-7)


@pytest.mark.parametrize("r_wire", [0.0, 30.0])
def test_slot_sweep_update_matches_the_full_transient(r_wire, engine):
    """method="slots" (one .dc point per slot, twin integrates at the solved cell voltages)
    against the transient of the array of device subcircuits, same trains."""
    dev = get_device("pcm")
    W = np.random.default_rng(1).uniform(-1, 1, (8, 4))
    x = np.random.default_rng(2).uniform(0, 1, (4, 8))
    d = np.random.default_rng(3).uniform(-0.2, 0.2, (4, 4))
    out = {}
    for method in ("slots", "transient"):
        layer = AnalogLayer(W, LayerConfig(mapping=mapping_for(dev), adc_bits=None, bias=False))
        up = PulseUpdate(dev, bl=10, backend="spice", method=method, r_wire=r_wire, engine=engine, refresh_at=1.0)
        layer.update(x, d, 0.5, up, np.random.default_rng(4))
        out[method] = layer.weights()
    change = np.abs(out["transient"] - W).max()
    assert change > 0.05
    assert np.abs(out["slots"] - out["transient"]).max() < 2e-3 * change

"""Pulse-coincidence updates of device pairs: numpy twin against one ngspice transient."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.network import AnalogLayer, LayerConfig
from cosim.update import PulseUpdate, mapping_for
from models.device import get_device
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

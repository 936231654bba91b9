"""Energy of a read, integrated from the ngspice transient, against the hand formula."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.read.energy import read_energy
from models.errors import ParameterError
from netlists.crossbar import CrossbarSpec


def test_resistive_array_energy_is_sum_v2_g_t(rng, engine):
    spec = CrossbarSpec(rows=8, cols=6)
    G = rng.uniform(1e-6, 25e-6, (8, 6))
    V = rng.uniform(0, 0.2, (1, 8))
    t, e = 100e-9, 1e-9
    res = read_energy(spec, G, V, t_read=t, t_edge=e, engine=engine)
    hand = float((V[0] ** 2) @ G.sum(axis=1)) * (t + 2 * e / 3)   # plateau + two linear ramps
    assert res.total_j == pytest.approx(hand, rel=1e-3)
    assert res.tops_per_w == pytest.approx(2 * 48 / hand / 1e12, rel=1e-3)


def test_wires_add_dissipation(rng, engine):
    G = rng.uniform(1e-6, 25e-6, (16, 16))
    V = rng.uniform(0, 0.2, (1, 16))
    ideal = read_energy(CrossbarSpec(rows=16, cols=16), G, V, engine=engine)
    wired = read_energy(CrossbarSpec(rows=16, cols=16, r_row=500.0, r_col=500.0), G, V, engine=engine)
    assert wired.total_j < ideal.total_j        # series wire resistance lowers the power drawn
    with pytest.raises(ParameterError, match="t_edge"):
        read_energy(CrossbarSpec(rows=2, cols=2), np.full((2, 2), 1e-6), np.zeros((1, 2)), t_read=1e-9, t_edge=1e-8)

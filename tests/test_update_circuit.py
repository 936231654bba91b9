"""The update-phase circuit (array of device instances under write pulses), in ngspice.

The device here is a minimal threshold cell written for this test (the registry's devices have
their own tests): the state s charges at a fixed rate while |V| exceeds 0.6 V, so a full-select
pulse (1 V) moves it by a fixed step and a half-select pulse (0.5 V) not at all.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import ParameterError, ShapeError
from netlists.crossbar import CrossbarSpec
from netlists.spice import Tran, write_spice
from netlists.update_circuit import WriteScheme, build_update_circuit, line_waveforms, state_vectors, update_duration

CELL = """.subckt tcell p n params: s0=0.5
Cs s 0 1 IC={s0}
Bs 0 s I=1e7*(min(max((v(p,n)-0.6)*3.3333333,0),1) - min(max((-v(p,n)-0.6)*3.3333333,0),1))
Bi p n I=(1e-6+24e-6*v(s))*v(p,n)
.ends"""
SCHEME = WriteScheme(v_write=1.0, t_pulse=40e-9, t_edge=5e-9, t_slot=60e-9)


def run(spec, s0, rb, cb, pol, engine, scheme=SCHEME):
    c = build_update_circuit(spec, subckt=CELL, subckt_name="tcell", params={"s0": s0}, row_bits=rb,
                             col_bits=cb, polarity=pol, scheme=scheme)
    T = update_duration(len(pol), scheme)
    deck = write_spice(c, Tran(1e-9, T, start=T - 2e-9, max_step=5e-9, uic=True), save=state_vectors(spec))
    res = engine.run(deck, need=state_vectors(spec))
    return np.array([res[v][-1] for v in state_vectors(spec)]).reshape(spec.g_shape)


def test_change_is_coincidences_times_step_and_half_select_is_immune(rng, engine):
    spec = CrossbarSpec(rows=5, cols=4, r_row=0.5, r_col=0.5)
    S = 8
    rb, cb = rng.random((S, 5)) < 0.5, rng.random((S, 4)) < 0.5
    pol = np.repeat([1, -1], S // 2)
    s0 = rng.uniform(0.3, 0.7, (5, 4))
    ds = run(spec, s0, rb, cb, pol, engine) - s0
    n = np.einsum("s,si,sj->ij", pol, rb.astype(int), cb.astype(int))
    step = ds[n == 1].mean()
    assert step > 0.3
    assert np.allclose(ds, n * step, atol=0.01 * step)            # per trial: count x step
    hits = np.einsum("si,sj->ij", rb.astype(int), cb.astype(int))        # coincidences, any sign
    half = (np.einsum("si,sj->ij", rb.astype(int), 1 - cb.astype(int)) > 0) & (hits == 0)
    assert half.any()
    assert np.abs(ds[half]).max() < 1e-6                           # V/2 alone changes nothing


def test_write_side_ir_drop_far_cells_change_less(engine):
    spec = CrossbarSpec(rows=16, cols=16, r_row=100.0, r_col=100.0)
    S = 2
    ds = run(spec, np.full((16, 16), 0.5), np.ones((S, 16), bool), np.ones((S, 16), bool), np.ones(S), engine) - 0.5
    # the cell nearest both drivers (row 15 sits next to the column ends, column 0 next to the row
    # ends) changes most; the one farthest from both (row 0, column 15) least
    assert ds[15, 0] > ds[0, 15] > 0
    assert ds[15, 0] / ds[0, 15] > 1.05


def test_waveforms_and_bad_schemes():
    t, v = line_waveforms(np.array([[True], [False], [True]]), np.array([0.5, 0.5, -0.5]), SCHEME)
    assert t[0][0] == 0 and len(t[0]) == 9 and v[0].max() == 0.5 and v[0].min() == -0.5
    with pytest.raises(ParameterError, match="shorter"):
        WriteScheme(v_write=1.0, t_pulse=40e-9, t_edge=15e-9, t_slot=60e-9)
    with pytest.raises(ParameterError, match="t_edge"):
        WriteScheme(v_write=1.0, t_pulse=1e-9, t_edge=5e-9, t_slot=60e-9)
    with pytest.raises(ParameterError, match="v_write"):
        WriteScheme(v_write=-1.0, t_pulse=40e-9, t_edge=5e-9, t_slot=60e-9)
    with pytest.raises(ShapeError, match="do not fit"):
        build_update_circuit(CrossbarSpec(rows=2, cols=2), subckt=CELL, subckt_name="tcell",
                             params={"s0": np.zeros((2, 2))}, row_bits=np.zeros((3, 2), bool),
                             col_bits=np.zeros((3, 5), bool), polarity=np.ones(3), scheme=SCHEME)

"""The IR, the crossbar builder, the SPICE writer and validation (structure, golden decks, errors)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from netlists.crossbar import CrossbarSpec, build_crossbar, interleave
from netlists.ir import (
    ELEMENT_TYPES, Capacitors, Circuit, NodeTable, Resistors, SubcktInstances, VoltageSources,
)
from netlists.spice import WRITERS, BatchSweep, Op, Tran, write_spice
from netlists.validate import (
    DuplicateNameError, FloatingNodeError, InvalidValueError, TopologyError, validate,
)
from models.errors import ParameterError, ShapeError

GOLDEN = Path(__file__).parent / "golden"


def normalise(deck: str) -> list[str]:
    """Deck lines without comments, blank lines, case or spacing differences."""
    out = []
    for line in deck.splitlines():
        line = line.strip()
        if not line or line.startswith("*"):
            continue
        out.append(re.sub(r"\s+", " ", line.lower()))
    return out


def test_reference_topology_forward():
    spec = CrossbarSpec(rows=3, cols=2, r_row=1.0, r_col=2.0)
    xc = build_crossbar(spec, np.full((3, 2), 1e-5))
    c, lay = xc.circuit, xc.layout
    name = c.nodes.name
    # cell (i, j) joins r{i}_{j} and c{i}_{j}
    cells = c.group("cell")
    assert [(name(a), name(b)) for a, b in zip(cells.a[:2], cells.b[:2])] == [("r0_0", "c0_0"), ("r0_1", "c0_1")]
    # row i: driver rd{i} -> r{i}_0 -> r{i}_1 (far end open)
    row = c.group("row")
    assert [(name(a), name(b)) for a, b in zip(row.a[:2], row.b[:2])] == [("rd0", "r0_0"), ("r0_0", "r0_1")]
    # column j: c0_j -> c1_j -> c2_j -> cs{j} (sense end after the last row)
    col = c.group("col")
    pairs = [(name(a), name(b)) for a, b in zip(col.a, col.b)]
    assert pairs[0::2] == [("c0_0", "c1_0"), ("c1_0", "c2_0"), ("c2_0", "cs0")]
    assert np.all(row.resistance == 1.0) and np.all(col.resistance == 2.0)
    assert [g.role for g in c.sources("drive")] == ["drive"] and c.sources("drive")[0].name == "rd"
    assert c.sense_names() == ["Vcs_0", "Vcs_1"]
    assert lay.row_nodes.shape == (3, 2)


def test_transposed_swaps_roles_on_the_same_array():
    spec = CrossbarSpec(rows=3, cols=2, r_row=1.0, r_col=1.0)
    fwd = build_crossbar(spec, np.full((3, 2), 1e-5))
    tr = build_crossbar(spec, np.full((3, 2), 1e-5), transpose=True)
    assert tr.circuit.sources("drive")[0].name == "cs"
    assert tr.circuit.sense_names() == ["Vrd_0", "Vrd_1", "Vrd_2"]
    for gname in ("cell", "row", "col"):
        a, b = fwd.circuit.group(gname), tr.circuit.group(gname)
        assert np.array_equal(a.a, b.a) and np.array_equal(a.b, b.b)


def test_zero_wire_resistance_connects_cells_to_line_ends():
    spec = CrossbarSpec(rows=2, cols=3)
    xc = build_crossbar(spec, np.full((2, 3), 1e-5))
    assert [g.name for g in xc.circuit.groups] == ["cell", "rd", "cs"]
    cells = xc.circuit.group("cell")
    assert xc.circuit.nodes.name(int(cells.a[4])) == "rd1" and xc.circuit.nodes.name(int(cells.b[4])) == "cs1"


def test_differential_maps():
    spec = CrossbarSpec(rows=2, cols=2, cell="diff")
    G = interleave(np.full((2, 2), 3e-6), np.full((2, 2), 1e-6))
    fwd = build_crossbar(spec, G)
    tr = build_crossbar(spec, G, transpose=True)
    assert np.allclose(fwd.outputs(np.array([[5.0, 2.0, 7.0, 1.0]])), [[3.0, 6.0]])
    assert np.allclose(tr.drive_values(np.array([[0.1, -0.2]])), [[0.1, -0.1, -0.2, 0.2]])


def test_capacitance_adds_grounded_capacitors():
    spec = CrossbarSpec(rows=2, cols=2, r_row=1.0, r_col=1.0, c_row=1e-16, c_col=2e-16)
    c = build_crossbar(spec, np.full((2, 2), 1e-5)).circuit
    assert c.group("crow").count == 4 and np.all(c.group("ccol").capacitance == 2e-16)
    deck = write_spice(c, Tran(1e-12, 1e-9))
    assert "Ccrow_0_0 r0_0 0 1e-16" in deck and ".tran 1e-12 1e-09" in deck


@pytest.mark.parametrize("case", ["1r_3x2_op", "diff_2x2_transposed_batch"])
def test_golden_decks(case, regen_golden):
    if case == "1r_3x2_op":
        spec = CrossbarSpec(rows=3, cols=2, r_row=1.5, r_col=2.5)
        G = np.arange(1, 7).reshape(3, 2) * 1e-6
        deck = write_spice(build_crossbar(spec, G, inputs=np.array([0.1, 0.05, -0.2])).circuit, Op())
    else:
        spec = CrossbarSpec(rows=2, cols=2, cell="diff", r_row=1.0, r_col=1.0)
        G = interleave(np.array([[2e-6, 4e-6], [6e-6, 8e-6]]), np.full((2, 2), 1e-6))
        xc = build_crossbar(spec, G, transpose=True)
        deck = write_spice(xc.circuit, BatchSweep(xc.drive_values(np.array([[0.1, 0.2], [-0.1, 0.05], [0, 0.2]]))))
    path = GOLDEN / f"{case}.cir"
    if regen_golden:
        path.write_text(deck)
    assert normalise(deck) == normalise(path.read_text()), f"deck differs from {path} (--regen-golden to accept)"


def test_writer_uses_plain_si_numbers_and_klu():
    spec = CrossbarSpec(rows=2, cols=2, r_row=1e-3, r_col=1e6)
    deck = write_spice(build_crossbar(spec, np.full((2, 2), 1e-6)).circuit)
    assert ".options klu" in deck
    assert "Rcol_0_0 c0_0 c1_0 1000000" in deck and "Rrow_0_0 rd0 r0_0 0.001" in deck
    assert not re.search(r"\d(meg|[munpfk])\b", deck, re.I)
    assert ".save i(vcs_0) i(vcs_1)" in deck


def test_batch_sweep_emits_index_pwl_sources():
    spec = CrossbarSpec(rows=2, cols=1)
    xc = build_crossbar(spec, np.full((2, 1), 1e-6))
    deck = write_spice(xc.circuit, BatchSweep(np.array([[0.1, 0.2], [0.0, -0.1], [0.2, 0.2]])))
    assert "Brd_0 rd0 0 V=pwl(v(xbar_idx),0,0.1,1,0,2,0.2)" in deck
    assert ".dc Vxbar_idx 0 2 1" in deck
    with pytest.raises(ShapeError, match="2 drive sources"):
        write_spice(xc.circuit, BatchSweep(np.zeros((3, 5))))


def test_every_element_type_has_a_writer():
    assert set(WRITERS) == set(ELEMENT_TYPES)


def _tiny(groups, n_extra=2):
    nodes = NodeTable()
    nodes.add("n{0}", (n_extra,))
    return Circuit("t", nodes, tuple(groups))


def test_validation_finds_a_floating_node():
    c = _tiny([VoltageSources("in", (1,), p=[1], n=[0], value=1.0),
               Resistors("a", (1,), a=[1], b=[0], resistance=1e3),
               Capacitors("c", (1,), a=[1], b=[2], capacitance=1e-12)])
    with pytest.raises(FloatingNodeError, match="n1"):
        validate(c)
    validate(c, connectivity=False)          # a caller that checked this topology before skips the search


def test_crossbar_reads_check_values_on_every_state_and_topology_once():
    """Crossbar.circuit runs the DC-path search once per (spec, direction); every new state
    still gets the element checks."""
    from cosim.read import mvm
    from cosim.read.mvm import Crossbar
    from models.errors import XbarError
    spec = CrossbarSpec(rows=3, cols=4, r_row=1.0, r_col=1.0)
    mvm._CONNECTED.discard((spec, False))
    Crossbar(spec, np.full(spec.g_shape, 1e-5)).circuit()
    assert (spec, False) in mvm._CONNECTED
    xb = Crossbar(spec, np.full(spec.g_shape, 1e-5))
    xb.G[0, 0] = -1e-6                          # past Crossbar's own check: the build still refuses it
    with pytest.raises(XbarError, match="must be > 0"):
        xb.circuit()


def test_validation_names_bad_values_and_duplicates():
    ok = [VoltageSources("in", (1,), p=[1], n=[0], value=1.0)]
    with pytest.raises(InvalidValueError, match=r"Rr_0_1: resistance = -5"):
        validate(_tiny(ok + [Resistors("r", (1, 2), a=[1, 2], b=[2, 0], resistance=[1.0, -5.0])]))
    with pytest.raises(InvalidValueError, match="nan"):
        validate(_tiny(ok + [Resistors("r", (2,), a=[1, 2], b=[2, 0], resistance=[np.nan, 1.0])]))
    with pytest.raises(DuplicateNameError, match="'r'"):
        validate(_tiny(ok + [Resistors("r", (1,), a=[1], b=[2], resistance=1.0),
                             Resistors("r", (1,), a=[2], b=[0], resistance=1.0)]))
    with pytest.raises(TopologyError, match="node index 7"):
        validate(_tiny(ok + [Resistors("r", (1,), a=[1], b=[7], resistance=1.0)]))
    with pytest.raises(TopologyError, match="to itself"):
        validate(_tiny([VoltageSources("in", (1,), p=[1], n=[1], value=1.0)]))


def test_validation_scales_to_large_arrays():
    spec = CrossbarSpec(rows=256, cols=256, r_row=1.0, r_col=1.0)
    validate(build_crossbar(spec, np.full(spec.g_shape, 1e-5)).circuit)


def test_bad_specs_and_conductances_name_the_problem():
    with pytest.raises(ParameterError, match="rows"):
        CrossbarSpec(rows=0, cols=2)
    with pytest.raises(ParameterError, match="r_row"):
        CrossbarSpec(rows=2, cols=2, r_row=-1.0)
    with pytest.raises(ParameterError, match="r_col"):
        CrossbarSpec(rows=2, cols=2, r_col=float("nan"))
    with pytest.raises(ParameterError, match="cell"):
        CrossbarSpec(rows=2, cols=2, cell="3t1c")
    with pytest.raises(ParameterError, match="tile"):
        CrossbarSpec(rows=100_000, cols=100_000)
    spec = CrossbarSpec(rows=2, cols=2, cell="diff")
    with pytest.raises(ShapeError, match=r"\(2, 4\)"):
        build_crossbar(spec, np.full((2, 2), 1e-6))
    with pytest.raises(ParameterError, match=r"G\[1,2\]"):
        G = np.full((2, 4), 1e-6)
        G[1, 2] = -1e-6
        build_crossbar(spec, G)
    with pytest.raises(ParameterError, match="finite"):
        G = np.full((2, 4), 1e-6)
        G[0, 0] = np.inf
        build_crossbar(spec, G)


def test_subckt_instances_render_with_parameters():
    nodes = NodeTable()
    n = nodes.add("n{0}", (2,))
    inst = SubcktInstances("dev", (2,), subckt="cell", ports=np.array([[n[0], 0], [n[1], 0]]),
                           params={"s0": [0.5, 0.25]})
    c = Circuit("t", nodes, (inst,), subckts=(".subckt cell p n params: s0=0\nR1 p n {1/(1e-6*(1+s0))}\n.ends",))
    deck = write_spice(c, save=["v(n0)"])
    assert "Xdev_1 n1 0 cell s0=0.25" in deck and ".subckt cell" in deck


def test_pwl_sources_run_in_ngspice(engine):
    from netlists.ir import PwlSources
    nodes = NodeTable()
    n = nodes.add("n{0}", (2,))
    t = np.array([0.0, 1e-6, 1.001e-6, 3e-6])
    v = np.array([0.0, 0.0, 1.0, 1.0])
    c = Circuit("rc", nodes, (PwlSources("in", (1,), p=[n[0]], n=[0], times=(t,), values=(v,)),
                              Resistors("r", (1,), a=[n[0]], b=[n[1]], resistance=1e3),
                              Capacitors("c", (1,), a=[n[1]], b=[0], capacitance=1e-10)))
    validate(c)
    res = engine.run(write_spice(c, Tran(1e-8, 3e-6), save=["v(n1)"]), need=["v(n1)", "time"])
    tt, vv = res["time"], res["v(n1)"]
    sel = tt > 1.5e-6
    expected = 1 - np.exp(-(tt[sel] - 1.0005e-6) / 1e-7)
    assert np.abs(vv[sel] - expected).max() < 0.01
    with pytest.raises(ParameterError, match="increase"):
        PwlSources("bad", (1,), p=[1], n=[0], times=(np.array([0, 2, 1.0]),), values=(np.zeros(3),))

"""Reads through the crossbar: the fast solver against ngspice (the ground truth), closed forms,
and the ideal limit."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from cosim.read.mvm import Crossbar, mvm
from cosim.read.solver import CrossbarSolver, NodalSolver, STAMPERS, UNSUPPORTED, SolverError
from models.errors import ParameterError, ShapeError, UnsupportedElementError
from netlists.crossbar import CrossbarSpec
from netlists.ir import ELEMENT_TYPES, Circuit, NodeTable, SubcktInstances, VoltageSources

TOL = 1e-6  # relative to the largest spice current, as the issue asks (we reach ~1e-12)


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("cell", ["1r", "diff"])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("wires", [(1.0, 2.5), (0.0, 1.5), (2.0, 0.0)])
def test_fast_matches_spice_on_random_arrays(cell, transpose, wires, rng, engine):
    spec = CrossbarSpec(rows=int(rng.integers(5, 24)), cols=int(rng.integers(3, 17)), cell=cell,
                        r_row=wires[0], r_col=wires[1], c_row=1e-16, c_col=1e-16)
    G = rng.uniform(0.5e-6, 25e-6, spec.g_shape)
    V = rng.uniform(-spec.v_read, spec.v_read, (7, spec.cols if transpose else spec.rows))
    xb = Crossbar(spec, G, engine=engine)
    spice = xb.read(V, transpose=transpose, backend="spice")
    fast = xb.read(V, transpose=transpose, backend="fast")
    assert spice.shape == (7, spec.rows if transpose else spec.cols)
    assert rel_err(fast, spice) < TOL
    # the general nodal solver (stamped from the same IR) agrees too
    xc = xb.circuit(transpose)
    nodal = xc.outputs(NodalSolver(xc.circuit).solve(xc.drive_values(V)))
    assert rel_err(nodal, spice) < TOL


@pytest.mark.parametrize("transpose", [False, True])
def test_shared_engine_gives_the_same_reads(transpose, rng, engine, shared_engine):
    spec = CrossbarSpec(rows=9, cols=6, cell="diff", r_row=1.0, r_col=1.0)
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    V = rng.uniform(-0.2, 0.2, (4, spec.cols if transpose else spec.rows))
    a = Crossbar(spec, G, engine=engine).read(V, transpose=transpose, backend="spice")
    b = Crossbar(spec, G, engine=shared_engine).read(V, transpose=transpose, backend="spice")
    assert rel_err(b, a) < 1e-12


def test_single_vector_and_batch_split_over_workers(rng, engine):
    spec = CrossbarSpec(rows=16, cols=8, r_row=1.0, r_col=1.0)
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    V = rng.uniform(0, 0.2, (9, 16))
    xb = Crossbar(spec, G, engine=engine)
    one = xb.read(V[3], backend="spice")                    # a 1-D vector: .op deck
    split = xb.read(V, backend="spice", workers=3)          # three .dc decks
    assert one.shape == (1, 8)
    assert rel_err(split[3:4], one) < 1e-12
    assert rel_err(split, xb.read(V, backend="fast")) < TOL


def test_word_line_closed_form():
    """Reference experiment 1 of docs/physics.md: one word line into virtual grounds, far end open."""
    N, G, r, V0 = 64, 10e-6, 2.5, 0.2
    lam = np.arccosh(1 + r * G / 2)
    k = np.arange(1, N + 1)
    Vk = V0 * np.cosh(lam * (N + 0.5 - k)) / np.cosh(lam * (N + 0.5))
    I_total = (V0 - Vk[0]) / r
    assert I_total == pytest.approx(1.237065e-4, rel=1e-6)
    spec = CrossbarSpec(rows=1, cols=N, r_row=r, r_col=0.0)
    xb = Crossbar(spec, np.full((1, N), G))
    for backend in ("spice", "fast"):
        I = xb.read(np.array([[V0]]), backend=backend)
        assert I.sum() == pytest.approx(I_total, rel=1e-9)
        assert I[0] == pytest.approx(G * Vk, rel=1e-9)    # each cell sees the closed-form V_k


@pytest.mark.parametrize("transpose", [False, True])
def test_zero_wire_resistance_reduces_to_the_ideal_product(transpose, rng):
    spec = CrossbarSpec(rows=33, cols=17, cell="diff")
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    V = rng.uniform(-0.2, 0.2, (5, spec.cols if transpose else spec.rows))
    xb = Crossbar(spec, G)
    W = G[:, 0::2] - G[:, 1::2]
    ideal = V @ (W.T if transpose else W)
    assert rel_err(xb.read(V, transpose=transpose, backend="ideal"), ideal) < 1e-14
    assert rel_err(xb.read(V, transpose=transpose, backend="fast"), ideal) < 1e-12


def test_ir_drop_grows_with_size_and_resistance(rng):
    """Currents fall with wire resistance (r G N^2 / 3 rule of thumb) and the solver sees it."""
    losses = []
    for N, r in ((32, 1.0), (128, 1.0), (128, 2.5)):
        spec = CrossbarSpec(rows=N, cols=N, r_row=r, r_col=r)
        xb = Crossbar(spec, np.full((N, N), 25e-6))
        V = np.full((1, N), 0.2)
        losses.append(1 - xb.read(V, backend="fast").sum() / xb.read(V, backend="ideal").sum())
    assert 0 < losses[0] < losses[1] < losses[2]


def test_fast_solver_parity_table():
    assert set(STAMPERS) == set(ELEMENT_TYPES)
    assert UNSUPPORTED <= set(STAMPERS)
    nodes = NodeTable()
    n = nodes.add("n{0}", (1,))
    c = Circuit("t", nodes, (VoltageSources("in", (1,), p=n, n=[0], value=1.0),
                             SubcktInstances("dev", (1,), subckt="pcm", ports=np.array([[n[0], 0]]))))
    with pytest.raises(UnsupportedElementError, match="pcm"):
        NodalSolver(c)


def test_bad_inputs_name_the_problem(rng):
    spec = CrossbarSpec(rows=4, cols=3, r_row=1.0, r_col=1.0)
    xb = Crossbar(spec, rng.uniform(1e-6, 2e-6, (4, 3)))
    with pytest.raises(ShapeError, match=r"\(batch, 4\)"):
        xb.read(np.zeros((2, 3)))
    with pytest.raises(ShapeError, match=r"\(batch, 3\)"):
        xb.read(np.zeros((2, 4)), transpose=True)
    with pytest.raises(ParameterError, match="finite"):
        xb.read(np.array([[0.1, np.nan, 0, 0]]))
    with pytest.raises(ParameterError, match="v_read"):
        xb.read(np.full((1, 4), 5.0))
    with pytest.raises(ValueError, match="backend"):
        xb.read(np.zeros((1, 4)), backend="magic")
    with pytest.raises(SolverError, match="layout"):
        CrossbarSolver(Circuit("t", NodeTable(), ()))


@pytest.mark.slow
@pytest.mark.parametrize("transpose", [False, True])
def test_fast_matches_spice_at_256(transpose, rng, engine):
    spec = CrossbarSpec(rows=256, cols=256, r_row=2.0, r_col=2.0)
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    V = rng.uniform(0, 0.2, (4, 256))
    xb = Crossbar(spec, G, engine=engine)
    assert rel_err(xb.read(V, transpose=transpose, backend="fast"),
                   xb.read(V, transpose=transpose, backend="spice")) < TOL


def test_mvm_function_wraps_crossbar(rng):
    spec = CrossbarSpec(rows=5, cols=4, r_row=0.5, r_col=0.5)
    G = rng.uniform(1e-6, 25e-6, (5, 4))
    V = rng.uniform(0, 0.2, (3, 5))
    assert np.array_equal(mvm(G, V, spec), Crossbar(spec, G).read(V))


@pytest.mark.parametrize("cell", ["1r", "diff"])
@pytest.mark.parametrize("transpose", [False, True])
def test_a_batch_of_many_vectors_reads_through_the_states_exact_transfer(cell, transpose, rng, engine):
    spec = CrossbarSpec(rows=12, cols=5, cell=cell, r_row=1.0, r_col=2.5)
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    V = rng.uniform(-spec.v_read, spec.v_read, (40, spec.cols if transpose else spec.rows))
    xb = Crossbar(spec, G, engine=engine)
    xc, solver = xb.circuit(transpose), xb.solver(transpose)
    n_in = V.shape[1]

    def direct(X):
        return xc.outputs(solver.solve(xc.drive_values(X)))

    small = xb.read(V[:n_in - 1], transpose=transpose)          # fewer vectors than inputs: solved
    assert np.array_equal(small, direct(V[:n_in - 1]))
    big = xb.read(V, transpose=transpose)                          # as many or more: the transfer
    T = xb.transfer(transpose)
    assert T.shape == ((spec.cols, spec.rows) if transpose else (spec.rows, spec.cols))
    assert np.array_equal(big, V @ T)
    assert rel_err(big, direct(V)) < 1e-10
    assert rel_err(big, xb.read(V, transpose=transpose, backend="spice")) < TOL     # the circuit's answer
    # what was read before does not matter (a resumed run reads as the run it continues)
    assert np.array_equal(xb.read(V[:n_in - 1], transpose=transpose), small)


def test_a_read_state_is_freed_without_the_cycle_collector(rng):
    """Training builds a Crossbar per conductance state, thousands per epoch. A state read
    both ways, solved and through its transfer, must go when the last reference does: one held
    in a reference cycle waits for the cyclic collector, which large numpy arrays do not wake,
    and 784-250-10 training with exact reads grew to 4.5 GB that way."""
    spec = CrossbarSpec(rows=12, cols=5, cell="diff", r_row=1.0, r_col=2.5)
    xb = Crossbar(spec, rng.uniform(1e-6, 25e-6, spec.g_shape))
    for transpose in (False, True):
        n_in = spec.cols if transpose else spec.rows
        xb.read(rng.uniform(-0.2, 0.2, (2, n_in)), transpose=transpose)          # solved
        xb.read(rng.uniform(-0.2, 0.2, (n_in, n_in)), transpose=transpose)       # through the transfer
    state = weakref.ref(xb)
    gc.disable()
    try:
        del xb
        assert state() is None, "a Crossbar outlived its last reference (a reference cycle holds it)"
    finally:
        gc.enable()


_NUMPY_LOOPS = """
import sys, numpy as np
from cosim.read.mvm import Crossbar
from cosim.read.kernels import compiled
from netlists.crossbar import CrossbarSpec
assert compiled() is None
rng = np.random.default_rng(3)
for shape, transpose in (((40, 24), False), ((40, 24), True), ((17, 33), False)):
    spec = CrossbarSpec(*shape, r_row=2.0, r_col=1.5)
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    V = rng.uniform(0, 0.2, (7, shape[1] if transpose else shape[0]))
    np.save(f"{sys.argv[1]}/{shape[0]}x{shape[1]}{'T' if transpose else ''}.npy", Crossbar(spec, G).read(V, transpose=transpose))
"""


def test_compiled_and_numpy_solver_loops_agree(tmp_path):
    """The numba kernels and the numpy loops they replace give the same currents (to rounding),
    and both agree with the general sparse LU."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from cosim.read.kernels import compiled
    if compiled() is None:
        pytest.skip("numba is not importable here: only the numpy loops run")
    env = {**os.environ, "XBAR_NO_NUMBA": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", _NUMPY_LOOPS, str(tmp_path)], env=env, check=True, timeout=300)
    rng = np.random.default_rng(3)
    for shape, transpose in (((40, 24), False), ((40, 24), True), ((17, 33), False)):
        spec = CrossbarSpec(*shape, r_row=2.0, r_col=1.5)
        G = rng.uniform(1e-6, 25e-6, spec.g_shape)
        V = rng.uniform(0, 0.2, (7, shape[1] if transpose else shape[0]))
        xb = Crossbar(spec, G)
        fast = xb.read(V, transpose=transpose)
        loops = np.load(tmp_path / f"{shape[0]}x{shape[1]}{'T' if transpose else ''}.npy")
        lu = NodalSolver(xb.circuit(transpose).circuit).solve(xb.circuit(transpose).drive_values(V))
        lu = xb.circuit(transpose).outputs(lu)
        assert np.abs(fast - loops).max() <= 1e-12 * np.abs(loops).max()
        assert np.abs(fast - lu).max() <= 1e-9 * np.abs(lu).max()


def test_solver_work_fields_carry_nothing_between_solves():
    """The compiled CG keeps its work fields from one solve to the next (a fresh field's page
    faults cost more than the solve): a solve after another one of the same shape, on other
    conductances and inputs, gives the currents it gives first, and the pool keeps to its limit."""
    from cosim.read.kernels import FieldPool
    rng = np.random.default_rng(5)
    spec = CrossbarSpec(48, 40, r_row=2.0, r_col=1.0)
    G1, G2 = rng.uniform(1e-6, 25e-6, (2, *spec.g_shape))
    V1, V2 = rng.uniform(0, 0.2, (2, 9, 48))
    first = Crossbar(spec, G2).read(V2)
    Crossbar(spec, G1).read(V1)
    assert np.array_equal(Crossbar(spec, G2).read(V2), first)
    pool = FieldPool(3 * 8 * 10)
    fields = [pool.take((10,)) for _ in range(4)] + [pool.take((5,))]
    pool.give(*fields)
    kept = [a for lst in pool._free.values() for a in lst]
    assert sum(a.nbytes for a in kept) <= 3 * 8 * 10 and any(a.shape == (5,) for a in kept)   # newest shape kept


def test_solver_refines_vectors_whose_currents_do_not_balance():
    """CG can meet its residual while the currents into the row and column ends do not yet
    cancel (seen on one-column drives of a 256 x 500 array): those vectors are solved again,
    tighter, before the answer is refused. A loose CG tolerance forces the case here."""
    from netlists.crossbar import build_crossbar
    rng = np.random.default_rng(0)
    xc = build_crossbar(CrossbarSpec(rows=64, cols=64, r_row=2.5, r_col=2.5), rng.uniform(1e-6, 25e-6, (64, 64)),
                        transpose=True)
    loose = CrossbarSolver(xc.circuit, tol=1e-5)
    out = loose.solve(np.eye(64))
    assert len(loose.iterations) == 2                              # the first pass fell short, the second did not
    ref = CrossbarSolver(xc.circuit, tol=1e-12).solve(np.eye(64))
    assert np.abs(out - ref).max() <= 1e-9 * np.abs(ref).max()

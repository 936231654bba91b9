"""The fast solver: the same Circuit IR that the SPICE writer renders, stamped into a sparse
nodal system and solved exactly, factored once per conductance state, many inputs per factor.

Layer: cosim.read. Two solvers, both exact (not behavioural models):

:class:`NodalSolver`
    Any circuit of the DC-linear element types. Stamps through :data:`STAMPERS` (the
    counterpart of the SPICE writer's table), eliminates the nodes fixed by grounded voltage
    sources, factors the rest once (SuperLU) and solves a batch of drive values at once.
:class:`CrossbarSolver`
    Circuits with a :class:`~netlists.ir.CrossbarLayout` (what ``build_crossbar`` returns). The
    nodal matrix there is two families of 1-D chains (row wires, column wires) coupled by the
    cells. It factors every chain once (tridiagonal, O(cells)) and solves the Schur complement
    on the column nodes, S = T_C - D T_R^-1 D, by conjugate gradients preconditioned with
    T_C^-1. Each CG step costs two batched tridiagonal solves; the preconditioned spectrum lies
    in [1 - rho, 1] with rho = the coupling of the block-Jacobi split, so a few steps reach the
    relative residual of 1e-10 at which it stops (docs/fast-solver.md has the iteration counts
    and the agreement with ngspice).

Both return the currents of the sense sources with the IR's sign convention (positive when
current flows out of the array into the virtual ground).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Mapping

import numpy as np
import scipy.sparse as sp

from cosim.read.kernels import FIELDS, compiled
from models.errors import ShapeError, UnsupportedElementError, XbarError
from netlists.ir import (
    ELEMENT_TYPES, BehavioralSources, Capacitors, Circuit, Group, Mosfets, PwlSources, Resistors, SubcktInstances,
    VoltageSources,
)


class SolverError(XbarError, RuntimeError):
    """The fast solver could not produce a trustworthy answer."""


# ---------------------------------------------------------------------------------------------
# Stamping tables


class _Stamps:
    """Collects conductance triplets and grounded-source constraints."""

    def __init__(self, n_nodes: int):
        self.n = n_nodes
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.fixed: list[tuple[VoltageSources, np.ndarray]] = []

    def conductance(self, a: np.ndarray, b: np.ndarray, g: np.ndarray) -> None:
        self.rows += [a, b, a, b]
        self.cols += [a, b, b, a]
        self.vals += [g, g, -g, -g]

    def matrix(self) -> sp.csr_matrix:
        if not self.vals:
            return sp.csr_matrix((self.n, self.n))
        return sp.coo_matrix((np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
                             shape=(self.n, self.n)).tocsr()


def _stamp_resistors(g: Resistors, st: _Stamps) -> None:
    st.conductance(g.a, g.b, 1.0 / g.resistance)


def _stamp_capacitors(g: Capacitors, st: _Stamps) -> None:
    """Open at DC: nothing to stamp."""


def _stamp_sources(g: VoltageSources, st: _Stamps) -> None:
    if (g.n != 0).any():
        k = int(np.argmax(g.n != 0))
        raise UnsupportedElementError(
            f"{g.element_name(k)} is a floating voltage source (its - node is not ground); the fast "
            "solver handles grounded sources only: use the spice backend")
    st.fixed.append((g, g.p))


def _stamp_instances(g: SubcktInstances, st: _Stamps) -> None:
    raise UnsupportedElementError(
        f"the fast solver has no DC model for subcircuit {g.subckt!r} (group {g.name!r}); "
        "use the spice backend, or read the devices at their stored states as resistors")


def _stamp_pwl(g: PwlSources, st: _Stamps) -> None:
    raise UnsupportedElementError(
        f"the fast solver is a DC solver; {g.name!r} is a transient waveform source: use the spice backend "
        "(or the numpy twins of the update phase)")


def _stamp_behavioral(g: BehavioralSources, st: _Stamps) -> None:
    raise UnsupportedElementError(
        f"the fast solver has no model for behavioural sources ({g.name!r}: expressions of node voltages "
        "and time); use the spice backend")


def _stamp_mosfets(g: Mosfets, st: _Stamps) -> None:
    raise UnsupportedElementError(
        f"the fast solver is linear; {g.name!r} holds MOS transistors: use the spice backend")


#: Element type -> stamp function. Every type in ``netlists.ir.ELEMENT_TYPES`` is here; those
#: the solver cannot handle raise UnsupportedElementError naming the element.
STAMPERS: Mapping[type[Group], Callable[[Group, _Stamps], None]] = {
    Resistors: _stamp_resistors,
    Capacitors: _stamp_capacitors,
    VoltageSources: _stamp_sources,
    SubcktInstances: _stamp_instances,
    PwlSources: _stamp_pwl,
    BehavioralSources: _stamp_behavioral,
    Mosfets: _stamp_mosfets,
}
#: Types whose stamp only raises (listed so the parity test knows it is on purpose).
UNSUPPORTED: frozenset[type[Group]] = frozenset({SubcktInstances, PwlSources, BehavioralSources, Mosfets})
assert set(STAMPERS) == set(ELEMENT_TYPES)


def _drive_and_sense(circuit: Circuit) -> tuple[list[VoltageSources], list[VoltageSources]]:
    return circuit.sources("drive"), circuit.sources("sense")


# ---------------------------------------------------------------------------------------------
# General nodal solver


class NodalSolver:
    """Exact DC solve of a DC-linear circuit: factor once, solve many drive vectors.

    Parameters
    ----------
    circuit : Circuit
        Resistors, capacitors (open) and grounded voltage sources.
    """

    def __init__(self, circuit: Circuit):
        from scipy.sparse.linalg import splu

        st = _Stamps(len(circuit.nodes))
        for g in circuit.groups:
            STAMPERS[type(g)](g, st)
        A = st.matrix()
        fixed = np.zeros(st.n, dtype=bool)
        fixed[0] = True
        for _g, p in st.fixed:
            fixed[p] = True
        self._fixed = np.flatnonzero(fixed)
        self._free = np.flatnonzero(~fixed)
        self._pos = np.full(st.n, -1)
        self._pos[self._fixed] = np.arange(self._fixed.size)
        A = A.tocsr()
        self._A_ff = A[self._free][:, self._free].tocsc()
        self._A_fk = A[self._free][:, self._fixed].tocsr()
        self._A_kf = A[self._fixed][:, self._free].tocsr()
        self._A_kk = A[self._fixed][:, self._fixed].tocsr()
        try:
            self._lu = splu(self._A_ff, permc_spec="MMD_AT_PLUS_A") if self._free.size else None
        except RuntimeError as exc:
            raise SolverError(f"the nodal matrix is singular ({exc}): a node has no DC path to a source "
                              "(run netlists.validate.validate for its name)") from None
        self.circuit = circuit
        drive, sense = _drive_and_sense(circuit)
        self._drive = np.concatenate([g.p for g in drive]) if drive else np.zeros(0, np.int64)
        self._sense = np.concatenate([g.p for g in sense]) if sense else np.zeros(0, np.int64)
        self._base = np.zeros(self._fixed.size)
        for g, p in st.fixed:
            self._base[self._pos[p]] = g.value

    def solve(self, drive_values: np.ndarray) -> np.ndarray:
        """Sense currents (batch, n_sense) [A] for drive values (batch, n_drive) [V]."""
        V = np.atleast_2d(np.asarray(drive_values, dtype=float))
        if V.shape[1] != self._drive.size:
            raise ShapeError(f"drive values have {V.shape[1]} columns, the circuit has {self._drive.size} drive sources")
        vk = np.repeat(self._base[:, None], V.shape[0], axis=1)
        vk[self._pos[self._drive], :] = V.T
        if self._lu is not None:
            xf = self._lu.solve(-(self._A_fk @ vk))
            inj = self._A_kf @ xf + self._A_kk @ vk
        else:
            inj = self._A_kk @ vk
        # a source injects inj into the circuit; i(V) (into p, through the source) is -inj
        return -inj[self._pos[self._sense], :].T

    def node_voltages(self, drive_values: np.ndarray) -> np.ndarray:
        """All node voltages (batch, n_nodes) [V]."""
        V = np.atleast_2d(np.asarray(drive_values, dtype=float))
        vk = np.repeat(self._base[:, None], V.shape[0], axis=1)
        vk[self._pos[self._drive], :] = V.T
        out = np.zeros((len(self.circuit.nodes), V.shape[0]))
        out[self._fixed] = vk
        if self._lu is not None:
            out[self._free] = self._lu.solve(-(self._A_fk @ vk))
        return out.T


# ---------------------------------------------------------------------------------------------
# Structured crossbar solver


class _Chains:
    """Symmetric positive-definite tridiagonal chains, factored for batched in-place solves.

    The chains run along ``axis`` (0 or 1) of arrays shaped (N, P, nrhs); ``diag`` has the
    shape (N, P) and ``off`` one less along ``axis`` (off[l] couples positions l and l+1).
    Factored as T = L M L^T with L unit lower bidiagonal and M diagonal (diagonally dominant:
    no pivoting). The sweeps with L are the only sequential loops (two numpy operations per
    position on an (K, nrhs) slab); scalings by M are single whole-array operations.
    """

    def __init__(self, diag: np.ndarray, off: np.ndarray, axis: int, kernels: dict | None = None):
        self.axis = axis
        d = np.moveaxis(diag, axis, 0)
        e = np.moveaxis(off, axis, 0)
        L = d.shape[0]
        self.L = L
        m = np.empty_like(d)
        w = np.zeros_like(d)
        if kernels is not None:
            kernels["chain_factor_k"](np.ascontiguousarray(d), np.ascontiguousarray(e), w, m)
        else:
            m[0] = d[0]
            for l in range(1, L):
                w[l] = e[l - 1] / m[l - 1]
                m[l] = d[l] - w[l] * e[l - 1]
        self.w = w[:, :, None]                                # L[l, l-1]
        m_field = np.moveaxis(m, 0, axis)[..., None]          # (N, P, 1)
        self.inv_m = 1.0 / m_field
        self.inv_sqrt_m = np.sqrt(self.inv_m)
        self._k = kernels                                     # numba kernels, or None: numpy loops
        if self._k is not None:
            self._w2, self._inv_m2 = np.ascontiguousarray(w), np.ascontiguousarray(1.0 / m)
            self._isq2 = np.sqrt(self._inv_m2)
            self._name = "rows" if axis == 1 else "cols"

    def _fast(self, y: np.ndarray) -> bool:
        return self._k is not None and y.dtype == np.float64 and y.ndim == 3 and y.flags.c_contiguous

    def _slab(self, y: np.ndarray, l: int) -> np.ndarray:
        return y[l] if self.axis == 0 else y[:, l]

    def lower_sweep(self, y: np.ndarray, tmp: np.ndarray) -> None:
        """y <- L^-1 y, in place."""
        if self._fast(y):
            self._k["sweep_" + self._name](y, self._w2, False)
            return
        sl, w = self._slab, self.w
        prev = sl(y, 0)
        for l in range(1, self.L):
            cur = sl(y, l)
            np.multiply(w[l], prev, out=tmp)
            cur -= tmp
            prev = cur

    def upper_sweep(self, y: np.ndarray, tmp: np.ndarray) -> None:
        """y <- L^-T y, in place."""
        if self._fast(y):
            self._k["sweep_" + self._name](y, self._w2, True)
            return
        sl, w = self._slab, self.w
        nxt = sl(y, self.L - 1)
        for l in range(self.L - 2, -1, -1):
            cur = sl(y, l)
            np.multiply(w[l + 1], nxt, out=tmp)
            cur -= tmp
            nxt = cur

    def solve(self, y: np.ndarray) -> np.ndarray:
        """y <- T^-1 y, in place; returns y."""
        if self._fast(y):
            self._k["chain_solve_" + self._name](y, self._w2, self._inv_m2)
            return y
        tmp = np.empty_like(self._slab(y, 0))
        self.lower_sweep(y, tmp)
        y *= self.inv_m
        self.upper_sweep(y, tmp)
        return y


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-right-hand-side inner products of (N, P, nrhs) arrays."""
    return np.einsum("ijr,ijr->r", a, b)


#: Largest relative current imbalance a CrossbarSolver answer may have.
BALANCE_TOL = 1e-7


def _balance(i_rd: np.ndarray, i_cs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per vector: whether the currents into the row ends and the column ends fail to cancel to
    BALANCE_TOL of their magnitude (or are not finite), the imbalance [A] and the magnitude [A]."""
    imbalance = np.abs(i_rd.sum(axis=0) + i_cs.sum(axis=0))
    scale = np.abs(i_rd).sum(axis=0) + np.abs(i_cs).sum(axis=0)
    return ~np.isfinite(imbalance) | (imbalance > BALANCE_TOL * np.maximum(scale, 1e-300)), imbalance, scale


#: Cell-vectors per chunk below which CrossbarSolver solves the chunks on the calling thread.
PARALLEL_MIN_WORK = 1 << 18


class CrossbarSolver:
    """Exact DC solve of a crossbar in the reference topology, for many input vectors.

    Parameters
    ----------
    circuit : Circuit
        Built by ``build_crossbar`` (it needs ``circuit.layout``).
    tol : float
        Relative residual at which CG stops.
    workers : int, optional
        Threads over chunks of the batch (numpy releases the GIL in the chain sweeps).
    chunk_bytes : int
        Memory per working array; the batch is split to fit it.
    compiled_loops : bool
        Run the chain sweeps and CG passes as the compiled kernels of :mod:`cosim.read.kernels`
        (where numba is there); False keeps the numpy loops (same results, slower).
    """

    def __init__(self, circuit: Circuit, *, tol: float = 1e-10, max_iter: int = 1000,
                 workers: int | None = None, chunk_bytes: int = 128 << 20, compiled_loops: bool = True):
        lay = circuit.layout
        if lay is None:
            raise SolverError("CrossbarSolver needs a circuit built by build_crossbar (no layout)")
        for g in circuit.groups:
            if isinstance(g, VoltageSources) and (g.n != 0).any():
                raise UnsupportedElementError(f"{g.name}: floating voltage source")
            if isinstance(g, SubcktInstances):
                STAMPERS[SubcktInstances](g, _Stamps(0))
        self.circuit = circuit
        self.tol, self.max_iter = tol, max_iter
        self.workers = workers or max(1, len(os.sched_getaffinity(0)))
        self.chunk_bytes = chunk_bytes
        cells = circuit.group(lay.cells)
        N, P = lay.row_nodes.shape
        self.N, self.P = N, P
        self.G = (1.0 / cells.resistance).reshape(N, P)
        self.gr = (1.0 / circuit.group(lay.row_wires).resistance).reshape(N, P) if lay.row_wires else None
        self.gc = (1.0 / circuit.group(lay.col_wires).resistance).reshape(N, P) if lay.col_wires else None
        drive, sense = _drive_and_sense(circuit)
        if len(drive) != 1 or len(sense) != 1:
            raise SolverError("CrossbarSolver expects one drive and one sense source group")
        self.transpose = drive[0].name == "cs"
        self.iterations: list[int] = []
        G = self.G
        kernels = compiled() if compiled_loops else None
        # every field is laid out (N, P, batch); row chains run along axis 1, columns along 0
        if self.gr is not None:
            gr = self.gr  # segment (i, j) reaches cell (i, j) from the driver side
            dR = G + gr
            dR[:, :-1] += gr[:, 1:]
            self._TR = _Chains(dR, -gr[:, 1:], axis=1, kernels=kernels)
        if self.gc is not None:
            gc = self.gc  # segment (i, j) leaves cell (i, j) toward the sense end
            dC = G + gc
            dC[1:] += gc[:-1]
            self._TC = _Chains(dC, -gc[:-1], axis=0, kernels=kernels)

    # -- the three cases ----------------------------------------------------------------------
    def solve(self, drive_values: np.ndarray) -> np.ndarray:
        """Sense currents (batch, n_sense) [A] for drive values (batch, n_drive) [V]."""
        V = np.atleast_2d(np.asarray(drive_values, dtype=float))
        n_in = self.P if self.transpose else self.N
        if V.shape[1] != n_in:
            raise ShapeError(f"drive values have {V.shape[1]} columns, the array has {n_in} drive sources")
        per_rhs = 8 * self.N * self.P
        # no chunk larger than chunk_bytes per working array; with threads, at least one chunk
        # per worker (numpy releases the GIL in the sweeps), but threads pay only when a chunk
        # holds enough work to hide the pool's hand-offs (measured: a 65 x 64 array with 10
        # vectors is 1.6x faster as one chunk on the calling thread)
        cap = max(1, self.chunk_bytes // per_rhs)
        chunk = max(1, min(-(-V.shape[0] // self.workers), cap))
        threads = self.workers > 1 and V.shape[0] > chunk and self.N * self.P * chunk >= PARALLEL_MIN_WORK
        if not threads:
            chunk = min(V.shape[0], cap)
        parts = [V[i:i + chunk] for i in range(0, V.shape[0], chunk)]
        if threads:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(parts))) as pool:
                out = list(pool.map(self._solve_chunk, parts))
        else:
            out = [self._solve_chunk(p) for p in parts]
        return np.concatenate(out, axis=0)

    def _solve_chunk(self, V: np.ndarray) -> np.ndarray:
        G, N, P, nb = self.G, self.N, self.P, V.shape[0]
        v_rd = np.zeros((N, nb))
        v_cs = np.zeros((P, nb))
        if self.transpose:
            v_cs[:] = V.T
        else:
            v_rd[:] = V.T
        Gx = G[:, :, None]
        if self.gr is None and self.gc is None:
            if self.transpose:   # row i senses sum_j G_ij (v_cs_j - v_rd_i)
                return (G @ v_cs - G.sum(1)[:, None] * v_rd).T
            return (G.T @ v_rd - G.sum(0)[:, None] * v_cs).T
        if self.gr is None:       # rows ideal: node voltages along row i are v_rd_i
            bC = Gx * v_rd[:, None, :]
            bC[-1] += self.gc[-1][:, None] * v_cs
            xC = self._TC.solve(bC)
            if self.transpose:
                return np.einsum("ij,ijr->ri", G, xC) - (G.sum(1)[:, None] * v_rd).T
            return (self.gc[-1][:, None] * (xC[-1] - v_cs)).T
        if self.gc is None:       # columns ideal: node voltages along column j are v_cs_j
            bR = Gx * v_cs[None, :, :]
            bR[:, 0] += self.gr[:, 0][:, None] * v_rd
            xR = self._TR.solve(bR)
            if self.transpose:
                return (self.gr[:, 0][:, None] * (xR[:, 0] - v_rd)).T
            return np.einsum("ij,ijr->rj", G, xR) - (G.sum(0)[:, None] * v_cs).T
        i_rd, i_cs = self._coupled(v_rd, v_cs)                  # into the row ends (N, batch), column ends (P, batch)
        bad = _balance(i_rd, i_cs)[0]
        if bad.any() and np.isfinite(i_rd).all() and np.isfinite(i_cs).all():
            # CG met its residual but the currents do not balance to BALANCE_TOL yet (an ill-
            # conditioned drive, e.g. one column of a wide array): those vectors once more, tighter
            i_rd[:, bad], i_cs[:, bad] = self._coupled(v_rd[:, bad], v_cs[:, bad], tol=self.tol * 1e-3)
        self._check_balance(i_rd, i_cs)
        return i_rd.T if self.transpose else i_cs.T

    def _check_balance(self, i_rd: np.ndarray, i_cs: np.ndarray) -> None:
        """Refuse an answer that does not conserve current: every row solve is exact, so what
        flows in at the row ends flows out at the column ends unless CG stopped short (the
        imbalance is the sum of the column nodes' residuals)."""
        bad, imbalance, scale = _balance(i_rd, i_cs)
        if bad.any():
            k = int(np.argmax(bad))
            raise SolverError(f"CrossbarSolver: the solution of input vector {k} does not conserve current (imbalance "
                              f"{imbalance[k]:.3g} A of {scale[k]:.3g} A); it is not returned: use the spice backend")

    def _coupled(self, v_rd: np.ndarray, v_cs: np.ndarray,
                 tol: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Both wire families resistive: currents (into the row ends, into the column ends),
        each (lines, batch); ``tol`` the CG residual (default the solver's).

        With T_C = C C^T (C = L M^1/2), the column-node Schur system S x = rhs becomes
        (I - K) u = C^-1 rhs, K = C^-1 D T_R^-1 D C^-T, x = C^-T u: plain CG on a symmetric
        operator whose eigenvalues lie in [1 - rho, 1], at one row-chain solve and one
        column-chain sweep each way per step (no separate preconditioner or matvec). The row
        drive enters through h = T_R^-1 e_0 (a row chain's response to its driver, per state),
        and the row-end voltages come back through it too (T_R is symmetric).
        """
        tol = self.tol if tol is None else tol
        if self._TC._k is not None and self._TR._k is not None:
            return self._coupled_compiled(v_rd, v_cs, tol)
        D = self.G[:, :, None]
        TC, h = self._TC, self._h_drive()
        nb = v_rd.shape[1]
        f = (D * h[:, :, None]) * (self.gr[:, 0][:, None] * v_rd)[:, None, :]    # D T_R^-1 b_R
        f[-1] += self.gc[-1][:, None] * v_cs
        TC.lower_sweep(f, np.empty((self.P, nb)))  # f = C^-1 (b_C + D T_R^-1 b_R), C = L M^1/2
        f *= TC.inv_sqrt_m
        apply_dot, step = self._cg_ops(nb)
        u = f.copy()                                 # K is small: u0 = f is a good start
        Ap = np.empty_like(f)
        apply_dot(u, Ap)
        r = np.subtract(f, Ap, out=Ap)
        p = r.copy()
        rr, norm0 = _dot(r, r), np.sqrt(_dot(f, f))
        norm0[norm0 == 0] = 1.0
        it, beta = 0, None
        Ap = f                                       # f is no longer needed: its memory is Ap's
        while self._cg_continues(rr, norm0, tol, it):
            pAp = apply_dot(p, Ap, r, beta)  # p <- r + beta p first; pAp = 0 for a solved (all-zero) input
            alpha = np.divide(rr, pAp, out=np.zeros_like(rr), where=pAp > 0)
            rr_new = step(u, r, p, Ap, alpha)
            beta = np.divide(rr_new, rr, out=np.zeros_like(rr), where=rr > 0)
            rr = rr_new
            it += 1
        self.iterations.append(it)
        u *= TC.inv_sqrt_m                           # x_C = C^-T u, the column-node voltages
        TC.upper_sweep(u, np.empty((self.P, nb)))
        x_r0 = np.einsum("ij,ijr->ir", D[:, :, 0] * h, u) + (h[:, 0] * self.gr[:, 0])[:, None] * v_rd
        return self.gr[:, 0][:, None] * (x_r0 - v_rd), self.gc[-1][:, None] * (u[-1] - v_cs)

    def _coupled_compiled(self, v_rd: np.ndarray, v_cs: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_coupled` as the compiled kernels run it: the same CG, with the passes fused
        (kernels.py): the right-hand side in one pass, the solution update deferred into the
        next operator pass, and the column-node voltages never stored (the currents need their
        coupling to the row ends and the last row only). About a third fewer passes over the
        field than the numpy loops. The four work fields come from the pool (their contents on
        entry do not matter: every kernel writes a field before it reads it)."""
        k, TC, TR = self._TC._k, self._TC, self._TR
        h = self._h_drive()
        N, P, nb = self.N, self.P, v_rd.shape[1]
        g0, gcl = self.gr[:, 0], np.ascontiguousarray(self.gc[-1])
        v_rd, v_cs = np.ascontiguousarray(v_rd), np.ascontiguousarray(v_cs)
        dh, Dc = np.ascontiguousarray(self.G * h), np.ascontiguousarray(self.G)
        slab, zeros, pAp = np.empty((P, nb)), np.zeros(nb), np.empty(nb)
        rr, ff = np.empty(nb), np.empty(nb)
        u, Ap, r, p = (FIELDS.take((N, P, nb)) for _ in range(4))
        try:
            k["cg_setup_k"](u, v_rd, v_cs, dh * g0[:, None], gcl, TC._w2, TC._isq2, slab)   # u0 = f
            k["apply_k"](u, Ap, TC._w2, TC._isq2, Dc, TR._w2, TR._inv_m2, slab, pAp, u, zeros, False, u, zeros)
            k["cg_init_k"](u, Ap, r, p, rr, ff)          # r = f - A f, p = r
            norm0 = np.sqrt(ff)
            norm0[norm0 == 0] = 1.0
            it, alpha, beta = 0, zeros, zeros
            while self._cg_continues(rr, norm0, tol, it):
                # u += alpha p (the last step's), p <- r + beta p, Ap = A p; pAp = 0 for an all-zero input
                k["apply_k"](p, Ap, TC._w2, TC._isq2, Dc, TR._w2, TR._inv_m2, slab, pAp, r, beta, it > 0, u, alpha)
                alpha = np.divide(rr, pAp, out=np.zeros_like(rr), where=pAp > 0)
                rr_new = np.empty(nb)
                k["cg_residual_k"](r, Ap, alpha, rr_new)
                beta = np.divide(rr_new, rr, out=np.zeros_like(rr), where=rr > 0)
                rr = rr_new
                it += 1
            self.iterations.append(it)
            x_r, x_last = np.empty((N, nb)), np.empty((P, nb))
            k["cg_finish_k"](u, p, alpha, TC._isq2, TC._w2, dh, x_r, x_last, slab)   # x_C = C^-T (u + alpha p)
        finally:
            FIELDS.give(u, Ap, r, p)
        x_r0 = x_r + (h[:, 0] * g0)[:, None] * v_rd
        return g0[:, None] * (x_r0 - v_rd), gcl[:, None] * (x_last - v_cs)

    def _cg_continues(self, rr: np.ndarray, norm0: np.ndarray, tol: float, it: int) -> bool:
        """Another CG step? While a vector's relative residual is above ``tol``; past
        ``max_iter`` steps, a SolverError."""
        if (np.sqrt(rr) / norm0).max() <= tol:
            return False
        if it >= self.max_iter:
            raise SolverError(f"CrossbarSolver: CG did not reach a relative residual of {tol:g} "
                              f"in {self.max_iter} iterations; use the nodal solver")
        return True

    def _h_drive(self) -> np.ndarray:
        """T_R^-1 e_0 per row (N, P): the row chains' response to a unit current at the driver."""
        if getattr(self, "_h", None) is None:
            e0 = np.zeros((self.N, self.P, 1))
            e0[:, 0] = 1.0
            self._h = self._TR.solve(e0)[:, :, 0]
        return self._h

    def _cg_ops(self, nb: int):
        """(apply_dot, step) of the numpy CG loop: ``apply_dot(p, out, r, beta)`` sets p = r +
        beta p (unless beta is None), then out = (I - K) p, and returns p . out per vector;
        ``step(u, r, p, Ap, alpha)`` does u += alpha p, r -= alpha Ap and returns |r|^2."""
        TR, TC, D = self._TR, self._TC, self.G[:, :, None]
        tmp_c, tmp = np.empty((self.P, nb)), np.empty((self.N, self.P, nb))

        def apply_dot(p, out, r=None, beta=None):
            if beta is not None:
                p *= beta
                p += r
            np.multiply(p, TC.inv_sqrt_m, out=out)
            TC.upper_sweep(out, tmp_c)
            out *= D
            TR.solve(out)
            out *= D
            TC.lower_sweep(out, tmp_c)
            out *= TC.inv_sqrt_m
            np.subtract(p, out, out=out)
            return _dot(p, out)

        def step(u, r, p, Ap, alpha):
            np.multiply(p, alpha, out=tmp)         # no temporaries: big fresh arrays page-fault
            u += tmp
            np.multiply(Ap, alpha, out=tmp)
            r -= tmp
            return _dot(r, r)

        return apply_dot, step


def make_solver(circuit: Circuit, **kwargs) -> NodalSolver | CrossbarSolver:
    """The structured solver for crossbars, the general nodal solver otherwise."""
    if circuit.layout is not None:
        return CrossbarSolver(circuit, **kwargs)
    return NodalSolver(circuit)

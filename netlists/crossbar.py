"""Crossbar array specs and the builder that turns them into circuit IR.

Layer: netlists. ``build_crossbar(spec, G, direction)`` returns a :class:`CrossbarCircuit`: the
:class:`~netlists.ir.Circuit` in the reference topology (see :mod:`netlists.ir`), plus the
two small maps a read needs: logical inputs -> drive-source values, and sense currents ->
logical outputs (I+ - I- for differential pairs).

Cell kinds
----------
``"1r"``
    One resistive cell per cross-point; ``G`` has shape (rows, cols).
``"diff"``
    A differential pair per weight: G+ and G- on adjacent physical columns (2j, 2j+1), so ``G``
    has shape (rows, 2*cols) with the pairs interleaved (:func:`interleave` builds it). A
    forward read outputs I+ - I- per pair; a transposed read drives column 2j with +v_j and
    column 2j+1 with -v_j, so each row senses sum_j (G+ - G-) v_j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import ParameterError, ShapeError, check_positive, real_array
from netlists.ir import (
    Capacitors, Circuit, CrossbarLayout, NodeTable, Resistors, VoltageSources,
)

CELL_KINDS = ("1r", "diff")
MAX_CELLS = 1 << 26  # 8192 x 8192: past this the IR alone needs gigabytes
#: The largest cell conductance this tool simulates [S] (a 1 ohm cell; memory cells are in the
#: uS to mS range). Beyond it the fast solver's answer cannot be trusted to its tolerance.
G_MAX_S = 1.0
#: The largest wire resistance per segment [ohm].
R_WIRE_MAX_OHM = 1e6


@dataclass(frozen=True)
class CrossbarSpec:
    """A crossbar array's geometry and wires.

    Attributes
    ----------
    rows : int
        Word lines (inputs of a forward read).
    cols : int
        Logical columns (outputs of a forward read); a ``"diff"`` array has 2*cols physical ones.
    cell : str
        ``"1r"`` or ``"diff"``.
    r_row : float
        Row-wire resistance per cell segment [ohm] (0: ideal row wires).
    r_col : float
        Column-wire resistance per cell segment [ohm] (0: ideal column wires).
    c_row, c_col : float
        Wire capacitance to ground per segment [F] (0: none; no effect on DC reads).
    v_read : float
        Full-scale read voltage [V]; reads with larger inputs are refused.
    """

    rows: int
    cols: int
    cell: str = "1r"
    r_row: float = 0.0
    r_col: float = 0.0
    c_row: float = 0.0
    c_col: float = 0.0
    v_read: float = 0.2

    def __post_init__(self) -> None:
        for f in ("rows", "cols"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"{f} must be a positive integer, got {v!r}")
        if self.cell not in CELL_KINDS:
            raise ParameterError(f"cell must be one of {CELL_KINDS}, got {self.cell!r}")
        if self.rows * self.pcols > MAX_CELLS:
            raise ParameterError(f"{self.rows} x {self.pcols} cells is more than this tool builds "
                                 f"({MAX_CELLS}); tile the layer over several arrays")
        for f in ("r_row", "r_col", "c_row", "c_col"):
            check_positive(f, getattr(self, f), allow_zero=True)
        for f in ("r_row", "r_col"):
            if getattr(self, f) > R_WIRE_MAX_OHM:
                raise ParameterError(f"{f} = {getattr(self, f):g} ohm per segment is beyond {R_WIRE_MAX_OHM:g} ohm: "
                                     "wire resistances are in ohm per cell segment")
        check_positive("v_read", self.v_read)

    @property
    def pcols(self) -> int:
        """Physical columns."""
        return self.cols * (2 if self.cell == "diff" else 1)

    @property
    def g_shape(self) -> tuple[int, int]:
        """Shape of the conductance array this spec expects."""
        return (self.rows, self.pcols)


def interleave(g_plus: np.ndarray, g_minus: np.ndarray) -> np.ndarray:
    """Interleave G+ and G- (each (rows, cols)) into a (rows, 2*cols) differential array."""
    gp, gm = np.asarray(g_plus, float), np.asarray(g_minus, float)
    if gp.shape != gm.shape or gp.ndim != 2:
        raise ShapeError(f"G+ {gp.shape} and G- {gm.shape} must be 2-D arrays of one shape")
    out = np.empty((gp.shape[0], 2 * gp.shape[1]))
    out[:, 0::2], out[:, 1::2] = gp, gm
    return out


def check_conductances(spec: CrossbarSpec, G: np.ndarray, name: str = "conductance G") -> np.ndarray:
    """Validate a conductance array for ``spec`` (real, finite, 0 < G <= ``G_MAX_S``); returns
    it as float64."""
    if np.shape(G) != spec.g_shape:
        kind = " (differential: G+ and G- interleaved)" if spec.cell == "diff" else ""
        raise ShapeError(f"{name} has shape {np.shape(G)}, the array needs {spec.g_shape}{kind}")
    G = real_array(name, G)
    if (G <= 0).any():
        i, j = np.argwhere(G <= 0)[0]
        raise ParameterError(f"{name}[{i},{j}] = {float(G[i, j])!r} S: conductances must be > 0 "
                             "(use a tiny value such as 1e-12 S for an open cell)")
    if (G > G_MAX_S).any():
        i, j = np.argwhere(G > G_MAX_S)[0]
        raise ParameterError(f"{name}[{i},{j}] = {float(G[i, j]):g} S is beyond {G_MAX_S:g} S (a cell below "
                             f"{1 / G_MAX_S:g} ohm), outside what this tool simulates: conductances are in siemens")
    return G


def check_inputs(spec: CrossbarSpec, V: np.ndarray, transpose: bool) -> np.ndarray:
    """Validate a (batch, n) array of input voltages; a 1-D vector becomes a batch of one."""
    V = real_array("input voltages", V)
    if V.ndim == 1:
        V = V[None, :]
    n = spec.cols if transpose else spec.rows
    what = "column" if transpose else "row"
    if V.ndim != 2 or V.shape[1] != n:
        raise ShapeError(f"input voltages have shape {V.shape}; a {'transposed' if transpose else 'forward'} "
                         f"read of this array needs (batch, {n}) {what} voltages")
    if V.shape[0] == 0:
        raise ShapeError("input voltages: the batch is empty")
    vmax = float(np.abs(V).max())
    if vmax > spec.v_read * (1 + 1e-12):
        raise ParameterError(f"input voltage of {vmax:g} V exceeds the read voltage v_read = "
                             f"{spec.v_read:g} V of this array (raise v_read if you mean it)")
    return V


@dataclass(frozen=True, eq=False)
class CrossbarCircuit:
    """A built crossbar: the IR and the maps between logical data and its sources/sensors."""

    spec: CrossbarSpec
    circuit: Circuit
    transpose: bool

    @property
    def layout(self) -> CrossbarLayout:
        assert self.circuit.layout is not None
        return self.circuit.layout

    def drive_values(self, V: np.ndarray) -> np.ndarray:
        """Logical inputs (batch, n_in) -> values of the drive sources (batch, n_sources)."""
        if self.transpose and self.spec.cell == "diff":
            out = np.empty((V.shape[0], 2 * V.shape[1]))
            out[:, 0::2], out[:, 1::2] = V, -V
            return out
        return V

    def outputs(self, currents: np.ndarray) -> np.ndarray:
        """Sense currents (batch, n_sense) [A] -> logical outputs (batch, n_out) [A]."""
        if not self.transpose and self.spec.cell == "diff":
            return currents[:, 0::2] - currents[:, 1::2]
        return currents


@dataclass(frozen=True, eq=False)
class ArrayWires:
    """The wires of the reference topology, shared by every array builder (reads, updates).

    ``row_nodes`` / ``col_nodes`` (rows, pcols) are where cell (i, j) attaches; ``row_ends`` and
    ``col_ends`` are the driver end of each row and the sense end of each column.
    """

    nodes: NodeTable
    row_ends: np.ndarray
    col_ends: np.ndarray
    row_nodes: np.ndarray
    col_nodes: np.ndarray
    groups: tuple

    def layout(self, cells: str) -> CrossbarLayout:
        names = {g.name for g in self.groups}
        return CrossbarLayout(self.row_nodes, self.col_nodes, self.row_ends, self.col_ends, cells,
                              "row" if "row" in names else "", "col" if "col" in names else "")


def array_wires(spec: CrossbarSpec) -> ArrayWires:
    """Nodes and wire segments of the reference topology (see :mod:`netlists.ir`)."""
    N, P = spec.g_shape
    nodes = NodeTable()
    rd = nodes.add("rd{0}", (N,))
    cs = nodes.add("cs{0}", (P,))
    groups = []
    if spec.r_row > 0:
        rn = nodes.add("r{0}_{1}", (N, P))
        prev = np.concatenate([rd[:, None], rn[:, :-1]], axis=1)
        groups.append(Resistors("row", (N, P), a=prev, b=rn, resistance=spec.r_row))
        if spec.c_row > 0:
            groups.append(Capacitors("crow", (N, P), a=rn, b=np.zeros_like(rn), capacitance=spec.c_row))
    else:
        rn = np.repeat(rd[:, None], P, axis=1)
    if spec.r_col > 0:
        cn = nodes.add("c{0}_{1}", (N, P))
        nxt = np.concatenate([cn[1:, :], cs[None, :]], axis=0)
        groups.append(Resistors("col", (N, P), a=cn, b=nxt, resistance=spec.r_col))
        if spec.c_col > 0:
            groups.append(Capacitors("ccol", (N, P), a=cn, b=np.zeros_like(cn), capacitance=spec.c_col))
    else:
        cn = np.repeat(cs[None, :], N, axis=0)
    return ArrayWires(nodes, rd, cs, rn, cn, tuple(groups))


def build_crossbar(spec: CrossbarSpec, G: np.ndarray, *, transpose: bool = False,
                   inputs: np.ndarray | None = None) -> CrossbarCircuit:
    """Build the reference-topology crossbar with resistive cells of conductance ``G`` [S].

    Parameters
    ----------
    spec : CrossbarSpec
    G : ndarray, shape ``spec.g_shape``
        Cell conductances [S], all > 0.
    transpose : bool
        False: rows driven at ``rd{i}``, columns sensed at ``cs{j}``. True: the reverse.
    inputs : ndarray, optional
        One logical input vector [V] for the drive sources' default values (zeros otherwise).
    """
    G = check_conductances(spec, G)
    N, P = spec.g_shape
    w = array_wires(spec)
    row_vals, col_vals = np.zeros(N), np.zeros(P)
    if inputs is not None:
        V = check_inputs(spec, inputs, transpose)
        if V.shape[0] != 1:
            raise ShapeError(f"inputs: one vector expected for default source values, got {V.shape[0]}")
        vals = V[0] if not (transpose and spec.cell == "diff") else np.ravel(np.column_stack([V[0], -V[0]]))
        if transpose:
            col_vals = vals
        else:
            row_vals = vals
    cells = Resistors("cell", (N, P), a=w.row_nodes, b=w.col_nodes, resistance=1.0 / G)
    row_src = VoltageSources("rd", (N,), p=w.row_ends, n=np.zeros(N, np.int64), value=row_vals,
                             role="sense" if transpose else "drive")
    col_src = VoltageSources("cs", (P,), p=w.col_ends, n=np.zeros(P, np.int64), value=col_vals,
                             role="drive" if transpose else "sense")
    title = (f"xbar-cosim crossbar {N}x{P} cell={spec.cell} r_row={spec.r_row:.12g} "
             f"r_col={spec.r_col:.12g} {'transposed' if transpose else 'forward'} read")
    circuit = Circuit(title, w.nodes, (cells, *w.groups, row_src, col_src), layout=w.layout("cell"))
    return CrossbarCircuit(spec, circuit, transpose)

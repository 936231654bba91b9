"""Selected-cell reads of passive (0T1R) and 1T1R arrays: the sneak-path experiment.

Layer: netlists. :func:`build_cell_read` returns the IR of one cell read on the reference
wiring of :func:`netlists.crossbar.array_wires` (a ``1r`` spec): row ``i`` driven at its
driver end ``rd{i}``, column ``j`` held at a virtual ground at its sense end ``cs{j}`` (a sense
source, IR sign convention), the other lines floating or half-biased.

0T1R (passive): the cell sits straight between the row and column wires. With unselected lines
floating, current from row i leaks through cell (i, k) into column k, through cell (m, k) into
row m and through cell (m, j) into the sensed column: sneak paths, an error of the order of
the read current itself. Half-biasing the unselected lines at ``V/2`` instead puts ``V/2``
across every cell of column j.

1T1R: an NMOS access transistor in series with each cell, its gate on the row's word line
``wl{i}`` (``v_gate`` on the selected row, 0 V elsewhere)::

    row wire r{i}_{j} --- D |M| S --- m{i}_{j} --[ 1/G ]-- column wire c{i}_{j}
                            G = wl{i},  B = 0

Only the selected row conducts, so no sneak path exists; what is left is the transistor's
on-resistance in series with the cell (and its off-leakage elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import ParameterError, check_positive
from models.mosfet import NMOS_180, MosfetCard
from netlists.crossbar import CrossbarSpec, array_wires, check_conductances
from netlists.ir import Circuit, Resistors, SubcktInstances, VoltageSources

ACCESS = ("0t1r", "1t1r")


@dataclass(frozen=True)
class AccessParams:
    """The access transistor of a 1T1R cell.

    Attributes
    ----------
    card : MosfetCard
        NMOS model card.
    w, l : float
        Width and length [m].
    v_gate : float
        Word-line voltage of a selected (conducting) row [V].
    """

    card: MosfetCard = NMOS_180
    w: float = 1e-6
    l: float = 0.18e-6
    v_gate: float = 1.8

    def __post_init__(self) -> None:
        if not isinstance(self.card, MosfetCard) or self.card.polarity != "nmos":
            raise ParameterError("card must be an NMOS MosfetCard")
        check_positive("w", self.w)
        check_positive("l", self.l)
        check_positive("v_gate", self.v_gate)
        if self.l < self.card.lmin:
            raise ParameterError(f"l = {self.l:g} m is below the card's lmin {self.card.lmin:g} m")


def access_cells(nodes, row_nodes: np.ndarray, col_nodes: np.ndarray, G: np.ndarray, gates: np.ndarray,
                 bulk: int, p: AccessParams) -> tuple[list, str, str]:
    """Groups of 1T1R cells: a transistor from each row-wire node to a new node ``m{i}_{j}``,
    the cell ``1/G`` from there to the column-wire node; gate of row i on node ``gates[i]``,
    bulk on node ``bulk``. Returns (groups, subckt text, model line)."""
    N, P = G.shape
    mid = nodes.add("m{0}_{1}", (N, P))
    cells = Resistors("cell", (N, P), a=mid, b=col_nodes, resistance=1.0 / G)
    ports = np.stack([np.asarray(row_nodes).ravel(), np.repeat(np.asarray(gates), P), mid.ravel(),
                      np.full(N * P, bulk, np.int64)], axis=1)
    acc = SubcktInstances("acc", (N, P), subckt=ACCESS_SUBCKT, ports=ports)
    return [cells, acc], access_subckt(p.card, p.w, p.l), p.card.to_spice()
UNSELECTED = ("float", "half")
ACCESS_SUBCKT = "xbar_access"


def access_subckt(card: MosfetCard, w: float, l: float) -> str:
    """``.subckt xbar_access d g s b``: one NMOS (``card``), width ``w``, length ``l`` [m]."""
    return "\n".join([f".subckt {ACCESS_SUBCKT} d g s b",
                      f"M1 d g s b {card.name} W={w:.12g} L={l:.12g}",
                      f".ends {ACCESS_SUBCKT}"])


def build_cell_read(spec: CrossbarSpec, G: np.ndarray, cell: tuple[int, int], *, access: str = "0t1r",
                    unselected: str = "float", v_read: float | None = None,
                    transistor: AccessParams = AccessParams()) -> Circuit:
    """IR of a read of one cell ``(i, j)`` (sense source ``Vsense_0`` on column j).

    Parameters
    ----------
    spec : CrossbarSpec
        A ``"1r"`` array (wires from ``r_row`` / ``r_col``).
    G : ndarray (rows, cols)
        Cell conductances [S].
    access : "0t1r" or "1t1r"
    unselected : "float" (unselected rows and columns unconnected) or "half" (held at v_read / 2)
    v_read : float, optional
        Selected-row voltage [V] (default ``spec.v_read``).
    transistor : AccessParams
        1T1R: the access transistor and the selected word-line voltage.
    """
    if spec.cell != "1r":
        raise ParameterError(f"build_cell_read needs a '1r' array, got cell={spec.cell!r}")
    if access not in ACCESS:
        raise ParameterError(f"access must be one of {ACCESS}, got {access!r}")
    if unselected not in UNSELECTED:
        raise ParameterError(f"unselected must be one of {UNSELECTED}, got {unselected!r}")
    G = check_conductances(spec, G)
    i, j = (int(c) for c in cell)
    if not (0 <= i < spec.rows and 0 <= j < spec.cols):
        raise ParameterError(f"cell {cell} is outside the {spec.rows}x{spec.cols} array")
    v = check_positive("v_read", spec.v_read if v_read is None else v_read)
    N, P = spec.g_shape
    wires = array_wires(spec)
    nodes = wires.nodes
    groups: list = list(wires.groups)
    subckts: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    if access == "0t1r":
        groups.insert(0, Resistors("cell", (N, P), a=wires.row_nodes, b=wires.col_nodes, resistance=1.0 / G))
    else:
        wl = nodes.add("wl{0}", (N,))
        cell_groups, sub, model = access_cells(nodes, wires.row_nodes, wires.col_nodes, G, wl, 0, transistor)
        groups = cell_groups + groups
        gates = np.where(np.arange(N) == i, transistor.v_gate, 0.0)
        groups.append(VoltageSources("wl", (N,), p=wl, n=np.zeros(N, np.int64), value=gates, role="supply"))
        subckts, models = (sub,), (model,)
    others_r = [k for k in range(N) if k != i]
    others_c = [k for k in range(P) if k != j]
    groups.append(VoltageSources("sel", (1,), p=[wires.row_ends[i]], n=[0], value=v, role="drive"))
    if unselected == "half":
        ends = np.concatenate([wires.row_ends[others_r], wires.col_ends[others_c]]).astype(np.int64)
        if ends.size:
            groups.append(VoltageSources("half", (ends.size,), p=ends, n=np.zeros(ends.size, np.int64),
                                         value=v / 2, role="supply"))
    groups.append(VoltageSources("sense", (1,), p=[wires.col_ends[j]], n=[0], value=0.0, role="sense"))
    title = f"xbar-cosim {access} cell read ({i}, {j}) of {N}x{P}, unselected lines {unselected}"
    return Circuit(title, nodes, tuple(groups), subckts=subckts, models=models)

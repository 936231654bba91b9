"""The update phase as a circuit: an array of device subcircuits driven by write pulses.

Layer: netlists. ``build_update_circuit`` returns the reference-topology array (same wires as a
read, :func:`netlists.crossbar.array_wires`) whose cells are instances of a device subcircuit,
with every row driven at ``rd{i}`` and every physical column at ``cs{j}`` by a piecewise-linear
pulse train. One transient then applies a whole update (all sub-phases, all slots) to the
array, wire IR drop included.

Write pulses (one per slot where a line fires)::

          t_edge  t_pulse  t_edge
    level   /------------\\
    0 _____/              \\_____    slot s starts at s * t_slot

Rows carry +V/2 and columns -V/2 for an increasing sub-phase (a coincidence puts V across the
cell, a half-selected cell sees V/2 only), the reverse for a decreasing one. Device states
live on each instance's internal node ``s``: ngspice calls it ``xcell_<i>_<j>.s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from models.errors import ParameterError, ShapeError, check_positive
from netlists.crossbar import CrossbarSpec, array_wires
from netlists.ir import Circuit, PwlSources, SubcktInstances


@dataclass(frozen=True)
class WriteScheme:
    """Timing and amplitude of the write pulses.

    Attributes
    ----------
    v_write : float
        Voltage across a fully selected cell [V] (each line carries half).
    t_pulse : float
        Flat top of a pulse [s].
    t_edge : float
        Rise and fall time [s].
    t_slot : float
        Period of the slots [s]; at least t_pulse + 2 t_edge.
    knots : tuple of float
        Fractions of the edge (0..1) at which to put extra corners: where a full-selected
        cell's voltage crosses the device's threshold knots, so the transient steps on them.
    """

    v_write: float
    t_pulse: float
    t_edge: float
    t_slot: float
    knots: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_positive("v_write", self.v_write)
        check_positive("t_pulse", self.t_pulse)
        check_positive("t_edge", self.t_edge)
        check_positive("t_slot", self.t_slot)
        if self.t_slot < self.t_pulse + 2 * self.t_edge:
            raise ParameterError(f"t_slot {self.t_slot:g} s is shorter than a pulse with its edges "
                                 f"({self.t_pulse + 2 * self.t_edge:g} s)")
        if any(not 0 < k < 1 for k in self.knots):
            raise ParameterError(f"knots are fractions of the edge in (0, 1), got {self.knots}")
        if self.t_edge > self.t_pulse:
            raise ParameterError(f"t_edge {self.t_edge:g} s is longer than the pulse ({self.t_pulse:g} s): "
                                 "the simulator's time step could not resolve the pulse")


def line_waveforms(bits: np.ndarray, levels: np.ndarray, scheme: WriteScheme) -> tuple[tuple, tuple]:
    """PWL corners for each line: ``bits`` (slots, lines) bool, ``levels`` (slots,) or
    (slots, lines) [V]. A line that never fires gets a constant 0 V."""
    bits = np.asarray(bits, bool)
    S, n = bits.shape
    lv = np.broadcast_to(np.asarray(levels, float).reshape(S, -1), (S, n))
    e, w, T = scheme.t_edge, scheme.t_pulse, scheme.t_slot
    kn = np.unique(np.asarray(scheme.knots, float))
    rise_t, fall_t = kn * e, e + w + (1 - kn[::-1]) * e
    offs = np.concatenate([[0.0], rise_t, [e, e + w], fall_t, [2 * e + w]])
    frac = np.concatenate([[0.0], kn, [1.0, 1.0], kn[::-1], [0.0]])
    times, values = [], []
    for k in range(n):
        fired = np.flatnonzero(bits[:, k])
        if fired.size == 0:
            times.append(np.array([0.0]))
            values.append(np.array([0.0]))
            continue
        # a small lead so the first slot's rise does not start at t = 0 exactly
        t = (fired[:, None] * T + e + offs[None, :]).ravel()
        v = (lv[fired, k][:, None] * frac[None, :]).ravel()
        times.append(np.concatenate([[0.0], t]))
        values.append(np.concatenate([[0.0], v]))
    return tuple(times), tuple(values)


def build_update_circuit(spec: CrossbarSpec, *, subckt: str, subckt_name: str,
                         params: Mapping[str, np.ndarray], row_bits: np.ndarray, col_bits: np.ndarray,
                         polarity: np.ndarray, scheme: WriteScheme, models: tuple[str, ...] = ()) -> Circuit:
    """The array of device instances under one update's pulse trains.

    Parameters
    ----------
    spec : CrossbarSpec
        Geometry and wires (the cell kind decides the physical columns).
    subckt, subckt_name : str
        The device subcircuit (ports ``p n``: current flows p -> n through the cell) and its name.
    params : mapping of name -> ndarray (rows, pcols)
        Per-instance parameters (initial state ``s0``, device-to-device values...).
    row_bits : ndarray bool (slots, rows)
    col_bits : ndarray bool (slots, pcols)
    polarity : ndarray (slots,)
        +1: rows at +V/2, columns at -V/2 in that slot; -1: the reverse.
    scheme : WriteScheme
    """
    N, P = spec.g_shape
    row_bits, col_bits = np.asarray(row_bits, bool), np.asarray(col_bits, bool)
    S = row_bits.shape[0]
    if row_bits.shape != (S, N) or col_bits.shape != (S, P):
        raise ShapeError(f"pulse bits {row_bits.shape} / {col_bits.shape} do not fit a {N}x{P} array "
                         f"(expected (slots, {N}) and (slots, {P}))")
    pol = np.asarray(polarity, float).reshape(S)
    for key, arr in params.items():
        if np.shape(arr) != (N, P):
            raise ShapeError(f"device parameter {key!r} has shape {np.shape(arr)}, expected {(N, P)}")
    w = array_wires(spec)
    half = scheme.v_write / 2
    rt, rv = line_waveforms(row_bits, pol * half, scheme)
    ct, cv = line_waveforms(col_bits, -pol * half, scheme)
    ports = np.stack([w.row_nodes.ravel(), w.col_nodes.ravel()], axis=1)
    cells = SubcktInstances("cell", (N, P), subckt=subckt_name, ports=ports,
                            params={k: np.asarray(v, float).ravel() for k, v in params.items()})
    rows = PwlSources("rd", (N,), p=w.row_ends, n=np.zeros(N, np.int64), times=rt, values=rv)
    cols = PwlSources("cs", (P,), p=w.col_ends, n=np.zeros(P, np.int64), times=ct, values=cv)
    title = f"xbar-cosim update phase {N}x{P} {subckt_name} {S} slots of {scheme.t_slot:.6g} s"
    return Circuit(title, w.nodes, (cells, *w.groups, rows, cols), subckts=(subckt,), models=models,
                   layout=w.layout("cell"))


def update_duration(n_slots: int, scheme: WriteScheme) -> float:
    """Transient length that covers ``n_slots`` slots and the settling after the last [s]."""
    return (n_slots + 1) * scheme.t_slot


def state_vectors(spec: CrossbarSpec, node: str = "s") -> list[str]:
    """ngspice names of every cell's state node, row-major."""
    N, P = spec.g_shape
    return [f"v(xcell_{i}_{j}.{node})" for i in range(N) for j in range(P)]

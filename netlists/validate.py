"""Validation of a Circuit before any simulation: catch what ngspice would fail on (or worse,
silently get wrong) while the error can still name the element or node.

Layer: netlists. Checks, each raising a typed error:

- duplicate element names (two groups that name elements alike)       -> DuplicateNameError
- values that are not finite, or not > 0 where they must be           -> InvalidValueError
- node indices outside the node table                                 -> TopologyError
- nodes without a DC path to ground (floating islands; capacitors do
  not count, they are open at DC)                                      -> FloatingNodeError
- a voltage source shorted by itself (p == n)                          -> TopologyError

The connectivity check runs networkx on the graph of DC-conducting elements; past
``NX_MAX_NODES`` nodes (a 22x22 array with wires) it runs scipy's compiled connected components on the
same edges instead, since networkx's Python graph would cost more than the simulation.
"""

from __future__ import annotations

import numpy as np

from models.errors import ParameterError, XbarError
from netlists.ir import (
    BehavioralSources, Capacitors, Circuit, Group, Mosfets, PwlSources, Resistors, SubcktInstances, VoltageSources,
)


class CircuitError(XbarError, ValueError):
    """The circuit cannot be simulated as described."""


class DuplicateNameError(CircuitError):
    """Two elements (or groups) share a name."""


class InvalidValueError(CircuitError, ParameterError):
    """An element value is non-finite, or non-positive where it must be positive."""


class TopologyError(CircuitError):
    """Elements refer to nodes that do not exist, or short themselves."""


class FloatingNodeError(CircuitError):
    """Some nodes have no DC path to ground."""


_POSITIVE = {Resistors: "resistance", Capacitors: "capacitance", Mosfets: "w"}
#: Fields of an element group that hold node indices.
_PORT_FIELDS = ("a", "b", "p", "n", "d", "g", "s")


def _dc_edges(g: Group) -> tuple[np.ndarray, np.ndarray] | None:
    """Node pairs that an element group connects at DC (None: it connects nothing)."""
    if isinstance(g, (Resistors,)):
        return g.a, g.b
    if isinstance(g, (VoltageSources, PwlSources, BehavioralSources)):
        return g.p, g.n
    if isinstance(g, Mosfets):
        # the channel and the bulk junctions conduct; an insulated gate needs its own DC path
        return np.concatenate([g.d, g.s]), np.concatenate([g.s, g.b])
    if isinstance(g, SubcktInstances):
        # a subcircuit is assumed to conduct between all of its ports (devices do; the
        # subcircuit's own internal nodes are ngspice's to check)
        first = np.repeat(g.ports[:, :1], g.ports.shape[1] - 1, axis=1).ravel()
        return first, g.ports[:, 1:].ravel()
    return None


def validate(circuit: Circuit, *, connectivity: bool = True) -> None:
    """Raise the first problem found in ``circuit`` (see the module docstring).

    ``connectivity=False`` skips the DC-path search (the element checks still run): for a
    caller that has checked another circuit of the same topology, which the values of its
    elements cannot change (the search is most of the cost of validating a large array)."""
    n_nodes = len(circuit.nodes)
    seen: dict[str, str] = {}
    for g in circuit.groups:
        key = f"{g.letter}{g.name}".lower()
        if key in seen:
            raise DuplicateNameError(f"two element groups are both named {g.name!r} "
                                     f"({seen[key]} and {type(g).__name__}): element names would collide")
        seen[key] = type(g).__name__
        for arr_name in _PORT_FIELDS:
            idx = getattr(g, arr_name, None)
            if isinstance(idx, np.ndarray) and idx.size and (idx.min() < 0 or idx.max() >= n_nodes):
                k = int(np.argmax((idx < 0) | (idx >= n_nodes)))
                raise TopologyError(f"{g.element_name(k)} refers to node index {idx[k]}, "
                                    f"but the circuit has nodes 0..{n_nodes - 1}")
        if isinstance(g, SubcktInstances):
            if g.ports.size and (g.ports.min() < 0 or g.ports.max() >= n_nodes):
                raise TopologyError(f"group {g.name!r} refers to a node outside 0..{n_nodes - 1}")
            for key_, vals in g.params.items():
                bad = ~np.isfinite(vals)
                if bad.any():
                    k = int(np.argmax(bad))
                    raise InvalidValueError(f"{g.element_name(k)}: parameter {key_} = {vals[k]} is not finite")
        field_ = _POSITIVE.get(type(g))
        if field_ is not None:
            vals = getattr(g, field_)
            bad = ~np.isfinite(vals) | (vals <= 0)
            if bad.any():
                k = int(np.argmax(bad))
                raise InvalidValueError(f"{g.element_name(k)}: {field_} = {float(vals[k])!r} must be finite and > 0")
        if isinstance(g, VoltageSources):
            bad = ~np.isfinite(g.value)
            if bad.any():
                k = int(np.argmax(bad))
                raise InvalidValueError(f"{g.element_name(k)}: value {float(g.value[k])!r} V is not finite")
            short = g.p == g.n
            if short.any():
                k = int(np.argmax(short))
                raise TopologyError(f"{g.element_name(k)} connects node {circuit.nodes.name(int(g.p[k]))} "
                                    "to itself")
        if isinstance(g, Mosfets):
            bad = ~np.isfinite(g.l) | (g.l <= 0)
            if bad.any():
                k = int(np.argmax(bad))
                raise InvalidValueError(f"{g.element_name(k)}: length l = {float(g.l[k])!r} m must be finite and > 0")
        if isinstance(g, Capacitors) and g.ic is not None and not np.isfinite(g.ic).all():
            k = int(np.argmax(~np.isfinite(g.ic)))
            raise InvalidValueError(f"{g.element_name(k)}: initial voltage {float(g.ic[k])!r} is not finite")

    if not connectivity:
        return
    # Connectivity at DC (capacitors are open, so they add no edge).
    a_parts, b_parts = [], []
    used = np.zeros(n_nodes, dtype=bool)
    for g in circuit.groups:
        for arr_name in _PORT_FIELDS:
            idx = getattr(g, arr_name, None)
            if isinstance(idx, np.ndarray):
                used[idx] = True
        if isinstance(g, SubcktInstances):
            used[g.ports.ravel()] = True
        e = _dc_edges(g)
        if e is not None:
            a_parts.append(e[0])
            b_parts.append(e[1])
    a = np.concatenate(a_parts) if a_parts else np.zeros(0, np.int64)
    b = np.concatenate(b_parts) if b_parts else np.zeros(0, np.int64)
    grounded = _grounded(n_nodes, a, b)
    floating = np.flatnonzero(~grounded & used)
    if floating.size:
        names = [circuit.nodes.name(int(k)) for k in floating[:5]]
        more = f" and {floating.size - 5} more" if floating.size > 5 else ""
        raise FloatingNodeError(f"{floating.size} node(s) have no DC path to ground: "
                                f"{', '.join(names)}{more} (connected only through capacitors, or not at all)")


NX_MAX_NODES = 1_000  # past this (a 22x22 array) networkx costs more than the solve: use scipy


def _grounded(n_nodes: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boolean mask of the nodes connected to node 0 through the edges (a, b)."""
    if n_nodes <= NX_MAX_NODES:
        import networkx as nx
        graph = nx.Graph()
        graph.add_nodes_from(range(n_nodes))
        graph.add_edges_from(zip(a.tolist(), b.tolist()))
        mask = np.zeros(n_nodes, dtype=bool)
        mask[list(nx.node_connected_component(graph, 0))] = True
        return mask
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    adj = coo_matrix((np.ones(a.size), (a, b)), shape=(n_nodes, n_nodes))
    _, label = connected_components(adj, directed=False)
    return label == label[0]

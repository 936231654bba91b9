"""Circuit description (IR): the one description that both renderings consume.

Layer: netlists. Builders (``build_crossbar`` and later the device and periphery builders)
return a :class:`Circuit`; only :mod:`netlists.spice` turns it into SPICE text, and only
:mod:`cosim.read.solver` stamps it into matrices. Neither consumer knows what a crossbar is: both
dispatch on element type through explicit tables, and a test checks that every type below is
handled by both (or listed as unsupported by the fast solver).

Elements come in *groups*: one group holds many elements of one type as numpy arrays (node
indices, values), so a 1024x1024 array is a dozen arrays, not three million objects.

Conventions (written once, here; both renderings are tested against them)
-------------------------------------------------------------------------
- Node 0 is ground (SPICE node ``0``). Every other node has a name from :class:`NodeTable`.
- Element ``k`` of a group named ``NAME`` with ``shape=(a, b)`` is called
  ``<letter>NAME_<i>_<j>`` with ``(i, j) = unravel_index(k, shape)``; the letter is ``R``,
  ``V``, ``C``, ``X``, ``B`` or ``M`` by type. A group with ``shape=(n,)`` names them ``<letter>NAME_<i>``.
- Currents: a voltage source ``V p n`` reports ``i(V)`` = the current that flows *into* its
  ``p`` terminal from the circuit and through the source to ``n`` (ngspice's sign). A sense
  source is a 0 V source whose ``p`` node is the sensed line end and whose ``n`` is ground, so
  a positive sensed current is current flowing out of the array into the virtual ground.
- Resistors carry resistance [ohm] > 0; capacitors capacitance [F] > 0 (open at DC);
  voltage sources a value [V] (the value of a ``drive`` source is the default input; the
  writer may replace it by a batch of inputs).

Crossbar reference topology (see :mod:`netlists.crossbar` for the builder)
--------------------------------------------------------------------------
::

    rd0 --Rr-- r0_0 --Rr-- r0_1 --Rr-- ... r0_{M-1}     (far end open)
                 |           |
                Gc          Gc           cell (i, j): from row node r{i}_{j}
                 |           |                        to column node c{i}_{j}
              c0_0        c0_1
                 |           |
                Rc          Rc
                 |           |
    rd1 --Rr-- r1_0 --Rr-- ...
                 :           :
              c{N-1}_0    c{N-1}_1
                 |           |
                Rc          Rc
                 |           |
                cs0         cs1           (sense ends; top ends open)

Row ``i`` is driven at its left end ``rd{i}`` through one segment into the first cell, and one
segment joins neighbouring cells along the row. Column ``j`` is sensed at its bottom end
``cs{j}`` (after the last row) through one segment into an ideal virtual ground, with one
segment between neighbouring cells along the column. The far ends are open. The transposed
read uses the same physical array: each column is driven at ``cs{j}`` and each row is sensed
at ``rd{i}``, both through that end's segment. With zero wire resistance on a line there are
no segments: its cells connect straight to ``rd{i}`` (or ``cs{j}``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import numpy as np

from models.errors import ParameterError, ShapeError


@dataclass(frozen=True)
class NodeBlock:
    """A block of consecutively numbered nodes named by a pattern over an index shape.

    ``pattern`` is a ``str.format`` pattern over the indices (``"r{0}_{1}"``).
    """

    pattern: str
    shape: tuple[int, ...]

    @property
    def count(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def name(self, k: int) -> str:
        return self.pattern.format(*np.unravel_index(k, self.shape)) if self.shape else self.pattern

    def names(self) -> Iterator[str]:
        if not self.shape:
            return iter([self.pattern])
        fmt = self.pattern.format
        return (fmt(*idx) for idx in itertools.product(*map(range, self.shape)))


class NodeTable:
    """Node numbering: 0 is ground, then blocks of named nodes in the order they were added."""

    def __init__(self) -> None:
        self._blocks: list[NodeBlock] = []
        self._starts: list[int] = []
        self._count = 1

    def add(self, pattern: str, shape: tuple[int, ...] = ()) -> np.ndarray:
        """Add a block of nodes; returns their indices shaped like ``shape``."""
        block = NodeBlock(pattern, tuple(int(s) for s in shape))
        start = self._count
        self._blocks.append(block)
        self._starts.append(start)
        self._count += block.count
        return np.arange(start, start + block.count).reshape(block.shape)

    def __len__(self) -> int:
        return self._count

    def name(self, k: int) -> str:
        if k == 0:
            return "0"
        if not 0 < k < self._count:
            raise IndexError(f"node {k} out of range (0..{self._count - 1})")
        b = int(np.searchsorted(self._starts, k, side="right")) - 1
        return self._blocks[b].name(k - self._starts[b])

    def names(self) -> list[str]:
        out = ["0"]
        for block in self._blocks:
            out.extend(block.names())
        return out

    @property
    def blocks(self) -> tuple[NodeBlock, ...]:
        return tuple(self._blocks)


def _as_index(name: str, arr, n: int | None = None) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype.kind not in "iu":
        raise ShapeError(f"{name} must hold integer node indices, got dtype {a.dtype}")
    a = a.astype(np.int64).ravel()
    if n is not None and a.size != n:
        raise ShapeError(f"{name} has {a.size} entries, expected {n}")
    return a


def _as_values(name: str, arr, n: int) -> np.ndarray:
    a = np.asarray(arr, dtype=float)
    if a.ndim == 0:
        a = np.full(n, float(a))
    a = a.ravel()
    if a.size != n:
        raise ShapeError(f"{name} has {a.size} values, expected {n}")
    return a


@dataclass(frozen=True, eq=False)
class Group:
    """Common part of an element group: its name and the index shape used to name elements."""

    name: str
    shape: tuple[int, ...]

    letter = "?"

    @property
    def count(self) -> int:
        return int(np.prod(self.shape))

    def element_name(self, k: int) -> str:
        idx = np.unravel_index(k, self.shape)
        return f"{self.letter}{self.name}_" + "_".join(str(int(i)) for i in idx)

    def element_names(self) -> list[str]:
        head = f"{self.letter}{self.name}_"
        if len(self.shape) == 1:
            return [f"{head}{i}" for i in range(self.shape[0])]
        if len(self.shape) == 2:
            a, b = self.shape
            tails = [f"_{j}" for j in range(b)]
            return [f"{head}{i}{t}" for i in range(a) for t in tails]
        return [head + "_".join(map(str, idx)) for idx in itertools.product(*map(range, self.shape))]


@dataclass(frozen=True, eq=False)
class Resistors(Group):
    """Linear resistors from node ``a`` to node ``b``, ``resistance`` [ohm]."""

    a: np.ndarray = field(default=None, repr=False)
    b: np.ndarray = field(default=None, repr=False)
    resistance: np.ndarray = field(default=None, repr=False)
    letter = "R"

    def __post_init__(self) -> None:
        n = self.count
        object.__setattr__(self, "a", _as_index(f"{self.name}.a", self.a, n))
        object.__setattr__(self, "b", _as_index(f"{self.name}.b", self.b, n))
        object.__setattr__(self, "resistance", _as_values(f"{self.name}.resistance", self.resistance, n))


@dataclass(frozen=True, eq=False)
class Capacitors(Group):
    """Linear capacitors from ``a`` to ``b``, ``capacitance`` [F], optional initial voltage [V]."""

    a: np.ndarray = field(default=None, repr=False)
    b: np.ndarray = field(default=None, repr=False)
    capacitance: np.ndarray = field(default=None, repr=False)
    ic: np.ndarray | None = field(default=None, repr=False)
    letter = "C"

    def __post_init__(self) -> None:
        n = self.count
        object.__setattr__(self, "a", _as_index(f"{self.name}.a", self.a, n))
        object.__setattr__(self, "b", _as_index(f"{self.name}.b", self.b, n))
        object.__setattr__(self, "capacitance", _as_values(f"{self.name}.capacitance", self.capacitance, n))
        if self.ic is not None:
            object.__setattr__(self, "ic", _as_values(f"{self.name}.ic", self.ic, n))


@dataclass(frozen=True, eq=False)
class VoltageSources(Group):
    """Independent voltage sources ``p`` to ``n`` with a DC ``value`` [V].

    ``role`` is ``"drive"`` (an input the writer may batch), ``"sense"`` (a 0 V ammeter whose
    current is an output) or ``"supply"`` (a fixed bias). ``ac``: small-signal magnitude [V]
    for an ``.ac`` analysis (None: none).
    """

    p: np.ndarray = field(default=None, repr=False)
    n: np.ndarray = field(default=None, repr=False)
    value: np.ndarray = field(default=None, repr=False)
    role: str = "drive"
    ac: np.ndarray | None = field(default=None, repr=False)
    letter = "V"

    def __post_init__(self) -> None:
        k = self.count
        object.__setattr__(self, "p", _as_index(f"{self.name}.p", self.p, k))
        object.__setattr__(self, "n", _as_index(f"{self.name}.n", self.n, k))
        object.__setattr__(self, "value", _as_values(f"{self.name}.value", self.value, k))
        if self.ac is not None:
            object.__setattr__(self, "ac", _as_values(f"{self.name}.ac", self.ac, k))
        if self.role not in ("drive", "sense", "supply"):
            raise ParameterError(f"{self.name}.role must be 'drive', 'sense' or 'supply', got {self.role!r}")


@dataclass(frozen=True, eq=False)
class SubcktInstances(Group):
    """Instances of a subcircuit defined in ``Circuit.subckts``: ``ports`` (count, nports)
    node indices, and per-instance ``params`` (name -> array of ``count`` values)."""

    subckt: str = ""
    ports: np.ndarray = field(default=None, repr=False)
    params: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    letter = "X"

    def __post_init__(self) -> None:
        k = self.count
        ports = np.asarray(self.ports)
        if ports.ndim != 2 or ports.shape[0] != k or ports.dtype.kind not in "iu":
            raise ShapeError(f"{self.name}.ports must be an integer array of shape ({k}, nports), "
                             f"got {ports.shape} {ports.dtype}")
        object.__setattr__(self, "ports", ports.astype(np.int64))
        object.__setattr__(self, "params", {key: _as_values(f"{self.name}.{key}", v, k)
                                            for key, v in self.params.items()})


@dataclass(frozen=True, eq=False)
class PwlSources(Group):
    """Voltage sources ``p`` to ``n`` following piecewise-linear waveforms (transients only).

    ``times`` and ``values`` are tuples with one array per source: the corner times [s]
    (strictly increasing, starting at 0) and the voltages there [V]; after the last corner the
    value holds.

    ``breakpoints=False`` asks the writer for behavioural sources ``B... V = pwl(time, ...)``
    instead of ``V ... PWL(...)``: the simulator then does not stop at every corner (a
    transient with many distinct corners takes several times fewer steps), at the price of
    integrating a corner that falls between two time points approximately. Such sources are
    named ``B<name>_<i>`` (their current is not available as ``i(...)``).
    """

    p: np.ndarray = field(default=None, repr=False)
    n: np.ndarray = field(default=None, repr=False)
    times: tuple = field(default=(), repr=False)
    values: tuple = field(default=(), repr=False)
    breakpoints: bool = True
    letter = "V"

    def __post_init__(self) -> None:
        k = self.count
        object.__setattr__(self, "p", _as_index(f"{self.name}.p", self.p, k))
        object.__setattr__(self, "n", _as_index(f"{self.name}.n", self.n, k))
        if len(self.times) != k or len(self.values) != k:
            raise ShapeError(f"{self.name}: {k} sources need {k} waveforms, got {len(self.times)} times "
                             f"and {len(self.values)} value arrays")
        ts, vs = [], []
        for i, (t, v) in enumerate(zip(self.times, self.values)):
            t, v = np.asarray(t, float).ravel(), np.asarray(v, float).ravel()
            if t.size != v.size or t.size < 1:
                raise ShapeError(f"{self.element_name(i)}: {t.size} times and {v.size} values")
            if not (np.isfinite(t).all() and np.isfinite(v).all()):
                raise ParameterError(f"{self.element_name(i)}: waveform has non-finite points")
            if t[0] != 0 or (np.diff(t) <= 0).any():
                raise ParameterError(f"{self.element_name(i)}: corner times must start at 0 and increase")
            ts.append(t)
            vs.append(v)
        object.__setattr__(self, "times", tuple(ts))
        object.__setattr__(self, "values", tuple(vs))


@dataclass(frozen=True, eq=False)
class BehavioralSources(Group):
    """Behavioural voltage sources ``p`` to ``n`` whose voltage is an ngspice expression of
    node voltages, currents and ``time`` (``B... p n V=expr``), one expression per source.
    Named ``B<name>_<i>``."""

    p: np.ndarray = field(default=None, repr=False)
    n: np.ndarray = field(default=None, repr=False)
    expr: tuple = field(default=(), repr=False)
    letter = "B"

    def __post_init__(self) -> None:
        k = self.count
        object.__setattr__(self, "p", _as_index(f"{self.name}.p", self.p, k))
        object.__setattr__(self, "n", _as_index(f"{self.name}.n", self.n, k))
        exprs = tuple(str(e) for e in self.expr)
        if len(exprs) != k or any(not e.strip() for e in exprs):
            raise ShapeError(f"{self.name}: {k} sources need {k} non-empty expressions, got {len(exprs)}")
        if any("\n" in e for e in exprs):
            raise ParameterError(f"{self.name}: an expression must be one line")
        object.__setattr__(self, "expr", exprs)


@dataclass(frozen=True, eq=False)
class Mosfets(Group):
    """MOS transistors (drain ``d``, gate ``g``, source ``s``, bulk ``b``) of one ``.model``
    card ``model`` (in ``Circuit.models``), width ``w`` and length ``l`` [m]."""

    d: np.ndarray = field(default=None, repr=False)
    g: np.ndarray = field(default=None, repr=False)
    s: np.ndarray = field(default=None, repr=False)
    b: np.ndarray = field(default=None, repr=False)
    model: str = ""
    w: np.ndarray = field(default=None, repr=False)
    l: np.ndarray = field(default=None, repr=False)
    letter = "M"

    def __post_init__(self) -> None:
        k = self.count
        for port in ("d", "g", "s", "b"):
            object.__setattr__(self, port, _as_index(f"{self.name}.{port}", getattr(self, port), k))
        object.__setattr__(self, "w", _as_values(f"{self.name}.w", self.w, k))
        object.__setattr__(self, "l", _as_values(f"{self.name}.l", self.l, k))
        if not self.model:
            raise ParameterError(f"{self.name}: a MOSFET group needs the name of its .model card")


ELEMENT_TYPES: tuple[type[Group], ...] = (Resistors, Capacitors, VoltageSources, SubcktInstances, PwlSources,
                                          BehavioralSources, Mosfets)


@dataclass(frozen=True)
class CrossbarLayout:
    """Where the crossbar's parts sit in a Circuit (indices into its nodes and groups).

    Lets a consumer that knows crossbars (the structured fast solver, plots) find them without
    re-deriving the topology. All node arrays hold node indices.

    Attributes
    ----------
    row_nodes, col_nodes : ndarray (rows, pcols)
        Row-wire and column-wire node at each cell (equal to ``row_ends`` / ``col_ends`` along a
        line with no wire resistance).
    row_ends : ndarray (rows,)
        Left end of each row (driven forward, sensed transposed).
    col_ends : ndarray (pcols,)
        Bottom end of each physical column (sensed forward, driven transposed).
    cells, row_wires, col_wires : str
        Names of the groups holding the cells (shape (rows, pcols)), the row segments (shape
        (rows, pcols): segment ``(i, j)`` ends at cell ``(i, j)`` coming from the driver side) and
        the column segments (shape (rows, pcols): segment ``(i, j)`` leaves cell ``(i, j)`` toward
        the sense end). Empty when the line has no resistance.
    """

    row_nodes: np.ndarray
    col_nodes: np.ndarray
    row_ends: np.ndarray
    col_ends: np.ndarray
    cells: str
    row_wires: str
    col_wires: str


@dataclass(frozen=True, eq=False)
class Circuit:
    """A flat circuit: nodes, element groups, subcircuit and model definitions.

    Attributes
    ----------
    title : str
        First line of the SPICE deck.
    nodes : NodeTable
    groups : tuple of Group
    subckts : tuple of str
        ``.subckt`` definitions (SPICE text) used by SubcktInstances groups.
    models : tuple of str
        ``.model`` lines.
    layout : CrossbarLayout or None
        Set by the crossbar builder.
    """

    title: str
    nodes: NodeTable
    groups: tuple[Group, ...]
    subckts: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    layout: CrossbarLayout | None = None

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no element group named {name!r} (have: {', '.join(g.name for g in self.groups)})")

    def sources(self, role: str) -> list[VoltageSources]:
        return [g for g in self.groups if isinstance(g, VoltageSources) and g.role == role]

    def sense_names(self) -> list[str]:
        """Element names of every sense source, in output order."""
        return [n for g in self.sources("sense") for n in g.element_names()]

    def drive_count(self) -> int:
        return sum(g.count for g in self.sources("drive"))

    def element_count(self) -> int:
        return sum(g.count for g in self.groups)


def build_circuit(title: str, nodes: NodeTable, groups: Sequence[Group], **kwargs) -> Circuit:
    """Assemble a Circuit (a convenience that keeps builders free of tuple() noise)."""
    return Circuit(title, nodes, tuple(groups), **kwargs)


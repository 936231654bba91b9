"""The SPICE writer: Circuit IR -> an ngspice deck that runs standalone (``ngspice -b deck.cir``).

Layer: netlists. The only place that produces SPICE text. It dispatches on element type
through :data:`WRITERS`; a type missing there is an error, never a silently skipped element.

- ``.options klu`` in every deck (ngspice >= 42; its default Sparse solver is 10-100x slower
  on crossbars).
- Plain SI numbers formatted ``{:.12g}``, never SPICE suffixes (in SPICE ``1M`` is milli).
- Only the needed vectors are saved: by default the currents of the sense sources.
- A batch of input vectors becomes one ``.dc`` sweep of an index source ``Vxbar_idx``: each
  drive source is rewritten as a B-source ``V = pwl(v(xbar_idx), 0, x0, 1, x1, ...)``, exact at
  the integer sweep points (an E-source TABLE would smooth the corners; docs/engines.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from models.errors import ParameterError, ShapeError, UnsupportedElementError, check_positive
from models.spice_text import fmt
from netlists.ir import (
    ELEMENT_TYPES,
    BehavioralSources,
    Capacitors,
    Circuit,
    Group,
    Mosfets,
    PwlSources,
    Resistors,
    SubcktInstances,
    VoltageSources,
)
from netlists.validate import validate

__all__ = ["SpiceDeck", "Op", "BatchSweep", "DcSweep", "AcSweep", "Tran", "Analysis", "WRITERS", "write_spice",
           "fmt"]

INDEX_NODE = "xbar_idx"
INDEX_SOURCE = "Vxbar_idx"


class SpiceDeck(str):
    """The text of a deck written by :func:`write_spice` (a ``str``; the type says where it
    came from: the engines can require it, so that no hand-written deck reaches ngspice)."""

    __slots__ = ()


# ---------------------------------------------------------------------------------------------
# Analyses


@dataclass(frozen=True)
class Op:
    """A DC operating point with the drive sources at their values in the IR."""


@dataclass(frozen=True)
class BatchSweep:
    """A batch of drive values (batch, n_drive) [V], one ``.dc`` point per row."""

    values: np.ndarray

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=float)
        if v.ndim != 2 or v.shape[0] < 1:
            raise ShapeError(f"BatchSweep values must be (batch, n_drive), got {v.shape}")
        if not np.isfinite(v).all():
            raise ParameterError("BatchSweep values must be finite")
        object.__setattr__(self, "values", v)


@dataclass(frozen=True)
class DcSweep:
    """A ``.dc`` sweep of one independent source (its element name, e.g. ``"Vc_0"``) from
    ``start`` to ``stop`` by ``step`` [V]."""

    source: str
    start: float
    stop: float
    step: float

    def __post_init__(self) -> None:
        if not self.source or any(c.isspace() for c in self.source):
            raise ParameterError(f"DcSweep.source must be one element name, got {self.source!r}")
        for f in ("start", "stop", "step"):
            check_finite_number(f"DcSweep.{f}", getattr(self, f))
        if self.step == 0 or (self.stop - self.start) / self.step < 0:
            raise ParameterError(f"DcSweep: a step of {self.step:g} does not go from {self.start:g} to {self.stop:g}")


@dataclass(frozen=True)
class AcSweep:
    """A small-signal ``.ac dec`` sweep: ``points`` per decade from ``f_start`` to ``f_stop`` [Hz]."""

    points: int
    f_start: float
    f_stop: float

    def __post_init__(self) -> None:
        if isinstance(self.points, bool) or not isinstance(self.points, int) or self.points < 1:
            raise ParameterError(f"AcSweep.points must be an integer >= 1, got {self.points!r}")
        check_positive("AcSweep.f_start", self.f_start)
        check_positive("AcSweep.f_stop", self.f_stop)
        if self.f_stop <= self.f_start:
            raise ParameterError(f"AcSweep: f_stop {self.f_stop:g} Hz must be above f_start {self.f_start:g} Hz")


@dataclass(frozen=True)
class Tran:
    """A transient analysis: ``.tran step stop [start [max_step]] [uic]`` [s]."""

    step: float
    stop: float
    start: float = 0.0
    max_step: float | None = None
    uic: bool = False

    def __post_init__(self) -> None:
        check_positive("Tran.step", self.step)
        check_positive("Tran.stop", self.stop)
        check_positive("Tran.start", self.start, allow_zero=True)
        if self.start >= self.stop:
            raise ParameterError(f"Tran.start {self.start} must be before Tran.stop {self.stop}")
        if self.max_step is not None:
            check_positive("Tran.max_step", self.max_step)


Analysis = Op | BatchSweep | DcSweep | AcSweep | Tran


def check_finite_number(name: str, value) -> None:
    if not np.isfinite(float(value)):
        raise ParameterError(f"{name} must be finite, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Element writers


def _names(nodes: list[str], idx: np.ndarray) -> list[str]:
    return [nodes[k] for k in idx.tolist()]


def _write_resistors(g: Resistors, nodes: list[str], ctx: "_Context") -> list[str]:
    return [f"{e} {a} {b} {r + 0.0:.12g}" for e, a, b, r in
            zip(g.element_names(), _names(nodes, g.a), _names(nodes, g.b), g.resistance.tolist())]


def _write_capacitors(g: Capacitors, nodes: list[str], ctx: "_Context") -> list[str]:
    ics = [""] * g.count if g.ic is None else [f" IC={fmt(v)}" for v in g.ic]
    return [f"{e} {a} {b} {fmt(c)}{ic}" for e, a, b, c, ic in
            zip(g.element_names(), _names(nodes, g.a), _names(nodes, g.b), g.capacitance, ics)]


def _write_sources(g: VoltageSources, nodes: list[str], ctx: "_Context") -> list[str]:
    names = g.element_names()
    p, n = _names(nodes, g.p), _names(nodes, g.n)
    batch = ctx.batch_for(g)
    if batch is not None and batch.shape[0] == 1:  # one point: plain DC sources and .op
        return [f"{e} {a} {b} DC {fmt(v)}" for e, a, b, v in zip(names, p, n, batch[0])]
    if batch is None:
        ac = [""] * g.count if g.ac is None else [f" AC {fmt(m)}" for m in g.ac]
        return [f"{e} {a} {b} DC {fmt(v)}{x}" for e, a, b, v, x in zip(names, p, n, g.value, ac)]
    points = np.arange(batch.shape[0])
    lines = []
    for k, (e, a, b) in enumerate(zip(names, p, n)):
        pairs = ",".join(f"{t},{fmt(v)}" for t, v in zip(points, batch[:, k]))
        lines.append(f"B{e[1:]} {a} {b} V=pwl(v({INDEX_NODE}),{pairs})")
    return lines


def _write_instances(g: SubcktInstances, nodes: list[str], ctx: "_Context") -> list[str]:
    keys = list(g.params)
    lines = []
    for k, e in enumerate(g.element_names()):
        ports = " ".join(nodes[p] for p in g.ports[k])
        params = "".join(f" {key}={fmt(g.params[key][k])}" for key in keys)
        lines.append(f"{e} {ports} {g.subckt}{params}")
    return lines


def _write_pwl(g: PwlSources, nodes: list[str], ctx: "_Context") -> list[str]:
    if not g.breakpoints:
        return _write_bpwl(g, nodes)
    lines = []
    for e, a, b, t, v in zip(g.element_names(), _names(nodes, g.p), _names(nodes, g.n), g.times, g.values):
        pairs = [f"{ti + 0.0:.12g} {vi + 0.0:.12g}" for ti, vi in zip(t.tolist(), v.tolist())]
        body = "\n+ ".join(" ".join(pairs[i:i + 16]) for i in range(0, len(pairs), 16))
        lines.append(f"{e} {a} {b} PWL(\n+ {body} )")
    return lines


def _write_bpwl(g: PwlSources, nodes: list[str]) -> list[str]:
    """``B... V = pwl(time, ...)``: no breakpoints; a flat tail point is appended because
    ngspice's ``pwl()`` extrapolates the last segment."""
    lines = []
    for e, a, b, t, v in zip(g.element_names(), _names(nodes, g.p), _names(nodes, g.n), g.times, g.values):
        if t.size == 1:
            lines.append(f"B{e[1:]} {a} {b} V = {fmt(v[0])}")
            continue
        t = np.append(t, t[-1] + max(t[-1], 1e-12))
        v = np.append(v, v[-1])
        pairs = [f"{ti + 0.0:.12g}, {vi + 0.0:.12g}" for ti, vi in zip(t.tolist(), v.tolist())]
        body = ",\n+ ".join(", ".join(pairs[i:i + 16]) for i in range(0, len(pairs), 16))
        lines.append(f"B{e[1:]} {a} {b} V = pwl(time,\n+ {body})")
    return lines


def _write_behavioral(g: BehavioralSources, nodes: list[str], ctx: "_Context") -> list[str]:
    return [f"{e} {a} {b} V={x}" for e, a, b, x in
            zip(g.element_names(), _names(nodes, g.p), _names(nodes, g.n), g.expr)]


def _write_mosfets(g: Mosfets, nodes: list[str], ctx: "_Context") -> list[str]:
    return [f"{e} {d} {gg} {s} {b} {g.model} W={fmt(w)} L={fmt(l)}" for e, d, gg, s, b, w, l in
            zip(g.element_names(), _names(nodes, g.d), _names(nodes, g.g), _names(nodes, g.s),
                _names(nodes, g.b), g.w, g.l)]


#: Element type -> writer. Every type in ``netlists.ir.ELEMENT_TYPES`` must be here.
WRITERS: Mapping[type[Group], Callable[..., list[str]]] = {
    Resistors: _write_resistors,
    Capacitors: _write_capacitors,
    VoltageSources: _write_sources,
    SubcktInstances: _write_instances,
    PwlSources: _write_pwl,
    BehavioralSources: _write_behavioral,
    Mosfets: _write_mosfets,
}
assert set(WRITERS) == set(ELEMENT_TYPES)


@dataclass
class _Context:
    """Per-deck state the element writers need: which drive sources take which batch columns."""

    batch: np.ndarray | None = None
    offsets: dict[int, int] = field(default_factory=dict)

    def batch_for(self, g: VoltageSources) -> np.ndarray | None:
        if self.batch is None or g.role != "drive":
            return None
        start = self.offsets[id(g)]
        return self.batch[:, start:start + g.count]


def write_spice(circuit: Circuit, analysis: Analysis = Op(), *, save: Sequence[str] | None = None,
                options: Mapping[str, float | str | None] | None = None,
                initial: Mapping[str, float] | None = None) -> SpiceDeck:
    """Render ``circuit`` as an ngspice deck, after :func:`netlists.validate.validate` (a circuit
    ngspice would fail on, or silently get wrong, is refused here with the element named).

    Parameters
    ----------
    circuit : Circuit
    analysis : Op, BatchSweep, DcSweep, AcSweep or Tran
    save : list of str, optional
        Vectors to save (ngspice syntax, e.g. ``"v(r0_3)"``). Default: the current of every
        sense source, in output order. An empty list saves nothing explicitly (ngspice then
        keeps every vector).
    options : mapping, optional
        Extra ``.options`` (name -> value, or None for a flag), after ``klu``.
    initial : mapping, optional
        Initial node voltages for a transient (``.ic v(node)=value`` [V]; ``node`` may be a node
        inside a subcircuit instance, e.g. ``xdut_0.s``).
    """
    for g in circuit.groups:
        if type(g) not in WRITERS:
            raise UnsupportedElementError(f"the SPICE writer has no rendering for {type(g).__name__} "
                                          f"(group {g.name!r})")
    validate(circuit)
    ctx = _Context()
    if isinstance(analysis, BatchSweep):
        drives = circuit.sources("drive")
        n_drive = sum(g.count for g in drives)
        if analysis.values.shape[1] != n_drive:
            raise ShapeError(f"batch has {analysis.values.shape[1]} values per point, the circuit "
                             f"has {n_drive} drive sources")
        ctx.batch = analysis.values
        off = 0
        for g in drives:
            ctx.offsets[id(g)] = off
            off += g.count
    nodes = circuit.nodes.names()
    out = [f"* {circuit.title}", "* written by xbar-cosim (netlists.spice); run: ngspice -b THIS_FILE"]
    opts = ["klu"] + [k if v is None else f"{k}={v if isinstance(v, str) else fmt(v)}"
                      for k, v in (options or {}).items()]
    out.append(".options " + " ".join(opts))
    out.extend(circuit.models)
    out.extend(circuit.subckts)
    for g in circuit.groups:
        out.append(f"* {type(g).__name__} {g.name} {g.shape}")
        out.extend(WRITERS[type(g)](g, nodes, ctx))
    if save is None:
        save = [f"i({name.lower()})" for name in circuit.sense_names()]
    sweep = isinstance(analysis, BatchSweep) and analysis.values.shape[0] > 1
    if sweep:
        out.append(f"{INDEX_SOURCE} {INDEX_NODE} 0 DC 0")
        out.append(f"R{INDEX_SOURCE[1:]} {INDEX_NODE} 0 1")
    # many short .save lines rather than one very long one
    for i in range(0, len(save), 40):
        out.append(".save " + " ".join(save[i:i + 40]))
    if initial:
        if not isinstance(analysis, Tran):
            raise ParameterError("initial conditions (.ic) apply to a transient analysis")
        items = [f"v({node})={fmt(v)}" for node, v in initial.items()]
        for i in range(0, len(items), 40):
            out.append(".ic " + " ".join(items[i:i + 40]))
    out.append(_analysis_line(analysis, sweep))
    out.append(".end")
    return SpiceDeck("\n".join(out) + "\n")


def _analysis_line(a: Analysis, sweep: bool) -> str:
    if isinstance(a, Op) or (isinstance(a, BatchSweep) and not sweep):
        return ".op"
    if isinstance(a, BatchSweep):
        return f".dc {INDEX_SOURCE} 0 {a.values.shape[0] - 1} 1"
    if isinstance(a, DcSweep):
        return f".dc {a.source} {fmt(a.start)} {fmt(a.stop)} {fmt(a.step)}"
    if isinstance(a, AcSweep):
        return f".ac dec {a.points} {fmt(a.f_start)} {fmt(a.f_stop)}"
    if not isinstance(a, Tran):
        raise ParameterError(f"unknown analysis {type(a).__name__}")
    line = f".tran {fmt(a.step)} {fmt(a.stop)}"
    if a.start or a.max_step is not None:
        line += f" {fmt(a.start)}"
    if a.max_step is not None:
        line += f" {fmt(a.max_step)}"
    if a.uic:
        line += " uic"
    return line

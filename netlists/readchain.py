r"""The read chain around an array as circuit IR: input codes -> DACs -> cells (with wires) ->
integrators -> ADCs -> output codes, its configuration and its timeline.

Layer: netlists. :class:`PeripheryConfig` is the spec of the periphery (JSON in and out);
:func:`chain_timing` lays out one read window; :func:`chain_schedule` turns a batch of windows
into the DAC and control waveforms of one transient; :func:`build_read_chain` is the one
builder of the chain's circuit, used by the read chain of a crossbar
(:class:`cosim.read.readchain.ReadChain`) and by the periphery benches
(:mod:`cosim.characterize.periphery`), so the circuit that a fit is taken on is the circuit
the fit is used for.

Timeline of one window (all corners on the ``t_lsb`` grid; windows follow each other)::

    rst  1 ~~~~~\___________________________________/~~~   (reset t_reset, then integrate)
    dac          |<- phase + | phase - ->|
    en   0 _______________________________/~~~~~~~~~~\__   (ramp ADC converts, integrator holds)
    clr  1 ~~~~~\_______________________________________/~  (counter cleared during reset)
         0    t_reset                  t_adc            t_end (codes sampled here)

Circuit (one line shown; forward reads drive the rows at ``rd<i>`` and integrate the columns at
``cs<j>``, transposed reads the reverse)::

    Vdac_i --> rd_i --[wires, cells]--> cs_j --Vsen_j (0 V)--> ig_j --[integrator]--> io_j --[ADC]--> code_j
                                                                  rst, vdd, vss        ramp, en, clr

The 0 V sense source ``Vsen_<j>`` (positive for current out of the array, the IR's sign) is
optional (``sense=False``: the integrator sits on the line end). Cells of zero conductance are
left open. Paired sensing of a differential array's forward read
(``PeripheryConfig.sensing="pairs"``): column ``2j`` (G+) feeds integrator ``j`` as above;
column ``2j+1`` (G-) ends, through its sense source, on the input ``mi<j>`` of a current mirror
(``xbar_mirror``) whose output draws ``mirror_gain`` times that current from ``ig<j>``::

    cs_2j   --Vsen_2j-----> ig_j --[integrator]--> io_j --[ADC]--> code_j
    cs_2j+1 --Vsen_2j+1--> mi_j --[mirror: mi_j at 0 V, gain x I(mi_j) drawn from ig_j]

1T1R arrays: an NMOS access transistor in series with every cell
(:func:`netlists.access.access_cells`), all word lines on one node at ``v_gate``, bulk on
``vss``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from models.adc import QuantizerParams, RampAdcParams, quantizer_subckt, ramp_library
from models.dac import DacParams, read_duration, row_waveforms, volt_seconds
from models.errors import ParameterError, ShapeError, check_positive
from models.integrator import IntegratorParams, integrator_library
from models.mosfet import CARDS
from models.opamp import MacroOpAmpParams, TwoStageOpAmpParams
from netlists.access import AccessParams, access_cells, access_subckt
from netlists.crossbar import CrossbarSpec, array_wires
from netlists.ir import Circuit, NodeTable, PwlSources, Resistors, SubcktInstances, VoltageSources

__all__ = ["PeripheryConfig", "ChainTiming", "ChainSchedule", "chain_timing", "window_dac", "full_scale_time",
           "full_scale_volt_seconds", "chain_schedule", "build_read_chain", "chain_title", "paired_sensing",
           "mirror_subckt", "OPAMP_KINDS", "ADC_KINDS", "SENSING"]

OPAMP_KINDS = {"macro": MacroOpAmpParams, "two_stage": TwoStageOpAmpParams}
ADC_KINDS = {"ideal": QuantizerParams, "ramp": RampAdcParams}
#: Sensing of a differential array's forward read (:attr:`PeripheryConfig.sensing`).
SENSING = ("lines", "pairs")
#: The current mirror of paired sensing: its input ``in`` a virtual ground at 0 V, its output
#: drawing ``gain`` times the input's current out of ``out``.
MIRROR = "xbar_mirror"


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class PeripheryConfig:
    """Everything around the array for one read chain.

    Attributes
    ----------
    dac : DacParams
        Input encoding (its ``v_read`` is the read voltage; ``signed="phases"`` for signed inputs).
    integrator : IntegratorParams
        Column integrator; ``integrator.opamp`` is the op-amp (macro or two-stage).
    adc : QuantizerParams or RampAdcParams
        Column converter.
    full_scale : float
        Fraction (0, 1] of the worst-case charge (every input at full scale with one sign into
        the column with the largest conductance sum) that the integrator and ADC must hold.
        1: nothing can clip; smaller values trade rare clipping for resolution.
    range_check : str
        ``"raise"`` (a saturating integrator or a too small ADC range is an error before any
        run) or ``"warn"``.
    t_reset : float or None
        Reset time at the start of each window [s]; None: ``max(4 t_lsb, 8 tau)`` with
        ``tau = c_int / g_on + 1 / (2 pi GBW)`` (switch and op-amp follower), rounded up to the
        ``t_lsb`` grid. A short reset leaves the previous window's charge behind.
    max_step : float or None
        Largest transient step [s]; None: :meth:`ReadChain.default_max_step`.
    sensing : str
        How a differential array's forward read is sensed. ``"lines"``: one integrator and ADC
        per physical column; each weight column is the digital difference of its pair's two
        codes. ``"pairs"``: one integrator and ADC per pair; the G- column ends on the input of
        a current mirror (a virtual ground at 0 V) that draws ``mirror_gain`` times its current
        from the G+ column's integrator input, so the integrator holds the pair's difference
        and the converter's whole range goes to it. Transposed reads and single-ended arrays
        are the same either way (a transposed read drives the pair's columns in opposite phases:
        each row integrator already sums the differences).
    mirror_gain : float
        Paired sensing: the current mirror's gain (1: ideal; 0.98 models a 2 % mismatch that
        leaves ``(1 - gain) I-`` of each G- column's current in the pair's output).
    exact_corners : bool
        True: DAC and control lines are ``PWL`` sources with a breakpoint at every corner (the
        integrated charge is exact; an 8-bit PWM read of 64 rows has ~130 distinct corners and
        ngspice takes ~4 steps per corner). False: ``pwl(time)`` B-sources without breakpoints
        (about 4x fewer steps; a corner between two steps is integrated approximately, a
        fraction of ``v_read t_lsb G`` per pulse edge).
    """

    dac: DacParams = field(default_factory=DacParams)
    integrator: IntegratorParams = field(default_factory=IntegratorParams)
    adc: QuantizerParams | RampAdcParams = field(default_factory=QuantizerParams)
    full_scale: float = 1.0
    range_check: str = "raise"
    t_reset: float | None = None
    max_step: float | None = None
    exact_corners: bool = True
    sensing: str = "lines"
    mirror_gain: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.dac, DacParams):
            raise ParameterError(f"dac must be DacParams, got {type(self.dac).__name__}")
        if not isinstance(self.integrator, IntegratorParams):
            raise ParameterError(f"integrator must be IntegratorParams, got {type(self.integrator).__name__}")
        if not isinstance(self.adc, (QuantizerParams, RampAdcParams)):
            raise ParameterError(f"adc must be QuantizerParams or RampAdcParams, got {type(self.adc).__name__}")
        check_positive("full_scale", self.full_scale)
        if self.full_scale > 1:
            raise ParameterError(f"full_scale must be in (0, 1], got {self.full_scale!r}")
        if self.range_check not in ("raise", "warn"):
            raise ParameterError(f"range_check must be 'raise' or 'warn', got {self.range_check!r}")
        if self.sensing not in SENSING:
            raise ParameterError(f"sensing must be one of {', '.join(SENSING)}, got {self.sensing!r}")
        check_positive("mirror_gain", self.mirror_gain)
        if not isinstance(self.exact_corners, (bool, np.bool_)):
            raise ParameterError(f"exact_corners must be true or false, got {self.exact_corners!r}")
        if self.t_reset is not None:
            check_positive("t_reset", self.t_reset)
        if self.max_step is not None:
            check_positive("max_step", self.max_step)

    @property
    def opamp_kind(self) -> str:
        return "two_stage" if isinstance(self.integrator.opamp, TwoStageOpAmpParams) else "macro"

    def with_opamp(self, opamp: MacroOpAmpParams | TwoStageOpAmpParams) -> "PeripheryConfig":
        """The same chain with another op-amp in every integrator."""
        return replace(self, integrator=replace(self.integrator, opamp=opamp))

    # -- JSON -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        op = self.integrator.opamp
        op_d = {"kind": self.opamp_kind, **asdict(op)}
        if isinstance(op, TwoStageOpAmpParams):
            op_d["nmos"], op_d["pmos"] = op.nmos.name, op.pmos.name
        integ = {f.name: getattr(self.integrator, f.name) for f in fields(self.integrator) if f.name != "opamp"}
        adc = {"kind": "ramp" if isinstance(self.adc, RampAdcParams) else "ideal", **asdict(self.adc)}
        if isinstance(self.adc, RampAdcParams) and math.isinf(self.adc.r_out):
            adc["r_out"] = None
        return {"dac": asdict(self.dac), "integrator": {**integ, "opamp": op_d}, "adc": adc,
                "full_scale": self.full_scale, "range_check": self.range_check,
                "t_reset": self.t_reset, "max_step": self.max_step, "exact_corners": self.exact_corners,
                "sensing": self.sensing, "mirror_gain": self.mirror_gain}

    @classmethod
    def from_dict(cls, d: dict) -> "PeripheryConfig":
        """Inverse of :meth:`to_dict`; missing fields take their defaults, unknown ones are errors."""
        if not isinstance(d, dict):
            raise ParameterError(f"periphery config must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        _known("periphery config", d, {f.name for f in fields(cls)})
        kw: dict = {}
        if "dac" in d:
            kw["dac"] = _make(DacParams, d["dac"], "dac")
        for k in ("dac", "integrator", "adc"):
            if k in d and not isinstance(d[k], dict):
                raise ParameterError(f"{k} must be a JSON object, got {type(d[k]).__name__}")
        if "integrator" in d:
            integ = dict(d["integrator"])
            if not isinstance(integ.get("opamp", {}), dict):
                raise ParameterError("integrator.opamp must be a JSON object")
            op = dict(integ.pop("opamp", {"kind": "macro"}))
            kind = op.pop("kind", "macro")
            if kind not in OPAMP_KINDS:
                raise ParameterError(f"integrator.opamp.kind must be one of {sorted(OPAMP_KINDS)}, got {kind!r}")
            for card in ("nmos", "pmos"):
                if card in op:
                    if op[card] not in CARDS:
                        raise ParameterError(f"integrator.opamp.{card}: unknown card {op[card]!r} (have {sorted(CARDS)})")
                    op[card] = CARDS[op[card]]
            integ["opamp"] = _make(OPAMP_KINDS[kind], op, "integrator.opamp")
            kw["integrator"] = _make(IntegratorParams, integ, "integrator")
        if "adc" in d:
            adc = dict(d["adc"])
            kind = adc.pop("kind", "ideal")
            if kind not in ADC_KINDS:
                raise ParameterError(f"adc.kind must be one of {sorted(ADC_KINDS)}, got {kind!r}")
            if kind == "ramp" and adc.get("r_out", 0) is None:
                adc["r_out"] = math.inf
            kw["adc"] = _make(ADC_KINDS[kind], adc, "adc")
        for k in ("full_scale", "range_check", "t_reset", "max_step", "exact_corners", "sensing", "mirror_gain"):
            if k in d:
                kw[k] = d[k]
        return cls(**kw)

    @classmethod
    def from_json(cls, path: str | Path) -> "PeripheryConfig":
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"periphery config {p} does not exist")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ParameterError(f"periphery config {p} is not valid JSON: {exc}") from None
        try:
            return cls.from_dict(d)
        except (TypeError, ParameterError) as exc:
            raise ParameterError(f"periphery config {p}: {exc}") from None


def _known(what: str, d: dict, names: set) -> None:
    extra = sorted(set(d) - names)
    if extra:
        raise ParameterError(f"{what}: unknown field(s) {', '.join(extra)} (known: {', '.join(sorted(names))})")


def _make(cls, d, what: str):
    if not isinstance(d, dict):
        raise ParameterError(f"{what} must be a JSON object, got {type(d).__name__}")
    _known(what, d, {f.name for f in fields(cls)})
    try:
        return cls(**d)
    except (TypeError, ParameterError) as exc:
        raise ParameterError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class ChainTiming:
    """Times inside one window, from the window start [s], and the window length."""

    t_reset: float      # reset released (integration starts)
    t_pulses: float     # first DAC corner
    t_adc: float        # integration ends, conversion starts
    t_end: float        # codes sampled; the next window starts here
    t_edge: float


def window_dac(p: DacParams) -> DacParams:
    """The encoding of one window: bit-serial reads use one 1-bit amplitude window per bit."""
    if p.encoding == "bitserial":
        return replace(p, encoding="amplitude", bits=1)
    return p


def chain_timing(cfg: PeripheryConfig) -> ChainTiming:
    """Window timeline for ``cfg`` (see the module docstring)."""
    dac = window_dac(cfg.dac)
    te = dac.t_lsb
    integ = cfg.integrator
    # the reset settles with the switch (C / g_on) and the op-amp as a follower (1 / 2 pi GBW)
    tau = integ.c_int / integ.g_on + 1 / (2 * math.pi * integ.macro.gbw)
    t_rst = cfg.t_reset if cfg.t_reset is not None else max(4 * te, 8 * tau)
    t_rst = math.ceil(t_rst / te - 1e-9) * te
    t_pulses = t_rst + te
    t_adc = t_pulses + read_duration(dac) + te
    adc = cfg.adc
    t_end = t_adc + (adc.t_conv + 2 * adc.t_clk if isinstance(adc, RampAdcParams) else te)
    return ChainTiming(t_rst, t_pulses, t_adc, t_end, te)


def full_scale_volt_seconds(p: DacParams) -> float:
    """Volt-seconds one line receives in one window at full-scale input [V s] (bit-serial: one
    bit window): the worst-case charge of a line is this times its conductance sum."""
    w = window_dac(p)
    return float(volt_seconds(np.array([w.max_code]), w)[0])


def full_scale_time(p: DacParams) -> float:
    """Volt-seconds of a full-scale input divided by v_read [s]: charge / this = current."""
    if p.encoding == "pwm":
        return p.max_code * p.t_lsb
    if p.encoding == "amplitude":
        return p.pulse_slots * p.t_lsb
    return p.max_code * p.pulse_slots * p.t_lsb




# ----------------------------------------------------------------------------------------------
# Waveforms of a batch of windows


@dataclass(frozen=True)
class ChainSchedule:
    """The waveforms of one transient: one ``(times, values)`` pair per driven line and per
    control line (``rst``, ``en``, ``clr``: logic levels 0 / 1 V), and its length [s]."""

    drive_times: tuple
    drive_values: tuple
    control: dict
    t_stop: float


def chain_schedule(cfg: PeripheryConfig, windows: np.ndarray, timing: ChainTiming | None = None) -> ChainSchedule:
    """Waveforms of a batch of read windows ``windows`` (batch, n_win, n_drive) of signed DAC
    codes, one window after the other (reset at the start of each, codes sampled at its end).

    A window without a driven line adds no DAC corner. With an ideal quantiser ``rst`` has a
    corner at the end of integration, so the transient lands on it."""
    tm = timing or chain_timing(cfg)
    dac = window_dac(cfg.dac)
    nb, nw, nd = windows.shape
    T = tm.t_end
    times: list[list[float]] = [[0.0] for _ in range(nd)]
    vals: list[list[float]] = [[0.0] for _ in range(nd)]
    for k, cw in enumerate(windows.reshape(nb * nw, nd)):
        if not cw.any():
            continue
        for i, wave in enumerate(row_waveforms(cw, dac, t_start=k * T + tm.t_pulses)):
            if len(wave) > 1:
                times[i] += wave[1:, 0].tolist()
                vals[i] += wave[1:, 1].tolist()
    te = tm.t_edge
    rt, rv, et, ev, ct, cv = [0.0], [1.0], [0.0], [0.0], [0.0], [1.0]
    for k in range(nb * nw):
        s = k * T
        if k:
            rt += [s, s + te]; rv += [0.0, 1.0]
            ct += [s, s + te]; cv += [0.0, 1.0]
        rt += [s + tm.t_reset - te, s + tm.t_reset]; rv += [1.0, 0.0]
        ct += [s + tm.t_reset - te, s + tm.t_reset]; cv += [1.0, 0.0]
        if isinstance(cfg.adc, RampAdcParams):
            et += [s + tm.t_adc, s + tm.t_adc + te, s + T - te, s + T]; ev += [0.0, 1.0, 1.0, 0.0]
        else:  # a corner at t_adc so that the transient lands on the end of integration
            rt += [s + tm.t_adc]; rv += [0.0]
    control = {"rst": (tuple(rt), tuple(rv)), "en": (tuple(et), tuple(ev)), "clr": (tuple(ct), tuple(cv))}
    return ChainSchedule(tuple(times), tuple(vals), control, nb * nw * T)


# ----------------------------------------------------------------------------------------------
# The builder


def build_read_chain(spec: CrossbarSpec, G: np.ndarray, cfg: PeripheryConfig, schedule: ChainSchedule, *,
                     transpose: bool = False, access: AccessParams | None = None, sense: bool = True,
                     converters: bool = True, adc_offsets=None, title: str | None = None) -> Circuit:
    """The read chain as IR (see the module docstring).

    Parameters
    ----------
    spec : CrossbarSpec
        The array and its wires.
    G : ndarray ``spec.g_shape``
        Cell conductances [S], finite and >= 0 (0: an open cell, no element).
    cfg : PeripheryConfig
    schedule : ChainSchedule
        DAC waveforms (one per driven line) and control waveforms (``rst``; ``en`` and ``clr``
        are used by a ramp ADC only).
    transpose : bool
        Drive the columns at ``cs<j>`` and integrate the rows at ``rd<i>``.
    access : AccessParams, optional
        1T1R cells.
    sense : bool
        A 0 V sense source between each sensed line end and its integrator (or mirror).
    converters : bool
        False: no ADCs (the integrators' outputs are the outputs: a bench of the integrators).
    adc_offsets : array, optional
        Comparator offset [V] of each ramp-ADC channel (default 0).
    """
    G = np.asarray(G, dtype=float)
    if G.shape != spec.g_shape:
        raise ShapeError(f"conductances have shape {G.shape}, the array needs {spec.g_shape}")
    if not np.isfinite(G).all() or (G < 0).any():
        raise ParameterError("read-chain cells must be finite and >= 0 S (0: an open cell)")
    ramp_adc = converters and isinstance(cfg.adc, RampAdcParams)
    w = array_wires(spec)
    nodes = w.nodes
    drive_ends, sense_ends = (w.col_ends, w.row_ends) if transpose else (w.row_ends, w.col_ends)
    nd, ns = drive_ends.size, sense_ends.size
    if len(schedule.drive_times) != nd:
        raise ShapeError(f"the schedule drives {len(schedule.drive_times)} lines, the array has {nd}")
    pairs = paired_sensing(cfg, spec, transpose)              # the pairs' G- lines on mirrors
    ni = ns // 2 if pairs else ns                              # integrators (and converters)
    ig = nodes.add("ig{0}", (ni,)) if sense else (sense_ends[0::2] if pairs else sense_ends)
    mi = (nodes.add("mi{0}", (ni,)) if sense else sense_ends[1::2]) if pairs else None
    io = nodes.add("io{0}", (ni,))
    code = nodes.add("code{0}", (ni,)) if converters else None
    ctl_names = ("rst", "en", "clr") if ramp_adc else ("rst",)
    ctl = {n: int(nodes.add(n)) for n in ctl_names}
    vdd, vss, z = int(nodes.add("vdd")), int(nodes.add("vss")), np.zeros
    groups = [*_cell_groups(nodes, w, G, spec, access, vss), *w.groups,
              PwlSources("dac", (nd,), p=drive_ends, n=z(nd, np.int64), times=schedule.drive_times,
                         values=schedule.drive_values, breakpoints=cfg.exact_corners),
              PwlSources("ctl", (len(ctl),), p=np.array(list(ctl.values())), n=z(len(ctl), np.int64),
                         times=tuple(schedule.control[n][0] for n in ctl_names),
                         values=tuple(schedule.control[n][1] for n in ctl_names)),
              VoltageSources("sup", (2,), p=np.array([vdd, vss]), n=z(2, np.int64),
                             value=np.array([cfg.integrator.vdd, cfg.integrator.vss]), role="supply")]
    if sense:
        groups.append(VoltageSources("sen", (ns,), p=sense_ends, n=np.column_stack([ig, mi]).ravel() if pairs else ig,
                                     value=0.0, role="sense"))
    groups.append(SubcktInstances("int", (ni,), subckt=cfg.integrator.name,
                                  ports=np.column_stack([ig, io, np.full(ni, ctl["rst"]), z(ni, np.int64),
                                                         np.full(ni, vdd), np.full(ni, vss)])))
    subckts = [integrator_library(cfg.integrator)]
    if pairs:
        groups.append(SubcktInstances("mir", (ni,), subckt=MIRROR, ports=np.column_stack([mi, ig]),
                                      params={"gain": np.full(ni, cfg.mirror_gain)}))
        subckts.append(mirror_subckt())
    models: tuple[str, ...] = ()
    if access is not None:
        subckts.append(access_subckt(access.card, access.w, access.l))
        if f".model {access.card.name} " not in subckts[0]:
            models = (access.card.to_spice(),)
    if converters:
        sub, adc_groups = _converter_groups(nodes, cfg.adc, io, code, ctl, adc_offsets)
        subckts.append(sub)
        groups += adc_groups
    if title is None:
        title = chain_title(spec, cfg, transpose, access)
    layout = w.layout("cell") if access is None and (G > 0).all() else None   # a full array of plain cells
    return Circuit(title, nodes, tuple(groups), subckts=tuple(subckts), models=models, layout=layout)


def chain_title(spec: CrossbarSpec, cfg: PeripheryConfig, transpose: bool, access: AccessParams | None = None,
                windows: int | None = None) -> str:
    """The first line of a read-chain deck: the array, direction, windows and periphery."""
    n = f" {windows} windows," if windows is not None else ""
    return (f"xbar-cosim read chain {spec.rows}x{spec.pcols} cell={spec.cell}{' 1T1R' if access is not None else ''} "
            f"{'transposed' if transpose else 'forward'},{n} {cfg.dac.encoding}, {cfg.opamp_kind} op-amp, "
            f"{type(cfg.adc).__name__}{', paired sensing' if paired_sensing(cfg, spec, transpose) else ''}")


def paired_sensing(cfg: PeripheryConfig, spec: CrossbarSpec, transpose: bool) -> bool:
    """Whether a read integrates each differential pair's difference on one integrator
    (:attr:`PeripheryConfig.sensing`): forward reads of differential arrays with ``"pairs"``."""
    return cfg.sensing == "pairs" and spec.cell == "diff" and not transpose


def mirror_subckt() -> str:
    """The current mirror of paired sensing: ``in`` held at 0 V, ``gain`` times the current into
    ``in`` drawn out of ``out`` (a current-controlled current source)."""
    return (f".subckt {MIRROR} in out params: gain=1\n"
            "Vin in 0 0\n"
            "Fout out 0 Vin {gain}\n"
            f".ends {MIRROR}")


def _converter_groups(nodes: NodeTable, adc, io: np.ndarray, code: np.ndarray, ctl: dict, adc_offsets):
    """One converter per sensed line (ideal quantiser, or a single-slope channel on one shared
    ramp with comparator offsets ``adc_offsets`` [V]): its subcircuit text and groups."""
    ns = io.size
    if not isinstance(adc, RampAdcParams):
        return quantizer_subckt(adc), [SubcktInstances("adc", (ns,), subckt=adc.name,
                                                       ports=np.column_stack([io, code]))]
    ramp = int(nodes.add("ramp"))
    vos = np.zeros(ns) if adc_offsets is None else np.broadcast_to(np.asarray(adc_offsets, float), (ns,))
    return ramp_library(adc), [
        SubcktInstances("ramp", (1,), subckt=f"{adc.name}_ramp", ports=np.array([[ramp, ctl["en"]]])),
        SubcktInstances("adc", (ns,), subckt=adc.name, params={"vos": vos},
                        ports=np.column_stack([io, np.full(ns, ramp), np.full(ns, ctl["en"]), np.full(ns, ctl["clr"]),
                                               code]))]


def _cell_groups(nodes, w, G: np.ndarray, spec: CrossbarSpec, access: AccessParams | None, vss: int) -> list:
    if access is not None:   # every word line on: one gate node for the whole array, bulk on vss
        if (G <= 0).any():
            raise ParameterError("1T1R read chains need every cell > 0 S")
        wl = int(nodes.add("wl"))
        groups, _, _ = access_cells(nodes, w.row_nodes, w.col_nodes, G, np.full(spec.rows, wl), vss, access)
        return [*groups, VoltageSources("wl", (1,), p=[wl], n=[0], value=access.v_gate, role="supply")]
    if (G > 0).all():
        return [Resistors("cell", G.shape, a=w.row_nodes, b=w.col_nodes, resistance=1.0 / G)]
    on = np.flatnonzero(G.ravel() > 0)
    return [Resistors("cell", (on.size,), a=w.row_nodes.ravel()[on], b=w.col_nodes.ravel()[on],
                      resistance=1.0 / G.ravel()[on])]

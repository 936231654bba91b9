"""Benches of one block as circuit IR: device pulse trains, I-V sweeps and retention, the fit
benches of the transistor-level 3T1C cell, the on-resistance of an access transistor, ADC
transfer sweeps and the op-amp open loop. (The DAC -> cells -> integrator -> ADC bench is the
read chain itself: :func:`netlists.readchain.build_read_chain`.)

Layer: netlists. Each builder returns a :class:`Bench`: the circuit, its analysis and the names
of the vectors a caller reads back (:meth:`Bench.deck` renders it with
:func:`netlists.spice.write_spice`, like every deck that reaches ngspice).

Device ``i`` of a bench is the instance ``Xdut_<i>``; its state node is ``xdut_<i>.s`` and its
ports sit on nodes ``<port><i>`` (``p0``, ``g0``, ...), each driven as the device's
:meth:`models.device.DeviceModel.bench_ports` asks: by the bench's waveform (one
piecewise-linear source per port and device, ``Vw<port>_<i>``), by a fixed level (``Vs<port>_<i>``)
or tied to ground::

    Vwp_i --> p_i --+-- Xdut_i (p n ...) -- n: ground
                    |
                 state node xdut_i.s (read back)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from models.adc import QuantizerParams, RampAdcParams, quantizer_subckt, ramp_library
from models.cap3t1c import Cap3T1C
from models.device import BenchDrive, DeviceModel
from models.errors import ParameterError, ShapeError, check_positive
from models.mosfet import MosfetCard
from models.opamp import MacroOpAmpParams, TwoStageOpAmpParams, opamp_models, opamp_subckt
from models.pulse import PulseShape, pulse_corners
from models.spice_text import fmt
from netlists.ir import (
    BehavioralSources, Capacitors, Circuit, Mosfets, NodeTable, PwlSources, Resistors, SubcktInstances,
    VoltageSources,
)
from netlists.spice import Analysis, DcSweep, Op, SpiceDeck, Tran, write_spice

__all__ = ["Bench", "pulse_bench", "iv_bench", "leak_bench", "cap3t1c_fit_benches", "cap3t1c_fit_grid",
           "on_resistance_bench", "adc_sweep_bench", "opamp_bench"]

INSTANCE = "dut"


@dataclass(frozen=True, eq=False)
class Bench:
    """A bench circuit with its analysis.

    Attributes
    ----------
    circuit : Circuit
    analysis : Analysis
    save : tuple of str
        Vectors the deck saves (empty: ngspice keeps every vector).
    vectors : mapping of str -> list of str
        The names a caller reads, by role (``"state"``: one per device, ...).
    options : mapping
        ``.options`` beyond ``klu``.
    initial : mapping
        ``.ic`` node voltages [V].
    """

    circuit: Circuit
    analysis: Analysis
    save: tuple[str, ...] = ()
    vectors: Mapping[str, list[str]] = field(default_factory=dict)
    options: Mapping[str, float | str | None] = field(default_factory=dict)
    initial: Mapping[str, float] = field(default_factory=dict)

    def deck(self) -> SpiceDeck:
        return write_spice(self.circuit, self.analysis, save=list(self.save), options=self.options,
                           initial=self.initial)

    def need(self) -> list[str]:
        """Every vector a caller reads (for the engine's missing-vector check)."""
        return [v for names in self.vectors.values() for v in names]


def _states(model: DeviceModel, state) -> np.ndarray:
    s = np.atleast_1d(np.asarray(state, float))
    if s.ndim != 1 or s.size == 0:
        raise ShapeError(f"a bench takes a 1-D array of device states, got shape {np.shape(state)}")
    return s


def _device_groups(model: DeviceModel, s: np.ndarray, kind: str, waves, inst: Mapping[str, np.ndarray],
                   *, drive_name: str = "w"):
    """Nodes and groups of ``n`` devices: each port driven per ``model.bench_ports(kind)``.
    ``waves(port, drive) -> (times, values)`` per device gives the waveform of a driven port."""
    n = s.size
    nodes = NodeTable()
    ports = model.bench_ports(kind)
    if tuple(ports) != tuple(model.ports):
        raise ParameterError(f"{model.name}.bench_ports names {tuple(ports)}, the device has ports {model.ports}")
    port_nodes, groups, driven = [], [], {}
    for port, how in ports.items():
        if isinstance(how, (int, float)) and float(how) == 0.0:
            port_nodes.append(np.zeros(n, np.int64))
            continue
        idx = nodes.add(f"{port}{{0}}", (n,))
        port_nodes.append(idx)
        if isinstance(how, BenchDrive):
            t, v = zip(*(waves(port, how, i) for i in range(n)))
            groups.append(PwlSources(f"{drive_name}{port}", (n,), p=idx, n=np.zeros(n, np.int64), times=t, values=v))
            driven[port] = idx
        else:
            groups.append(VoltageSources(f"s{port}", (n,), p=idx, n=np.zeros(n, np.int64), value=float(how),
                                         role="supply"))
    dut = SubcktInstances(INSTANCE, (n,), subckt=model.subckt_name, ports=np.stack(port_nodes, axis=1),
                          params=dict(inst))
    return nodes, [dut, *groups], driven


def _state_names(n: int) -> list[str]:
    return [f"v(x{INSTANCE}_{i}.s)" for i in range(n)]


def _initial(model: DeviceModel, s: np.ndarray) -> tuple[dict, bool]:
    """``.ic`` values and whether the transient runs with ``uic``."""
    if model.bench_initial_state() == "ic":
        return {f"x{INSTANCE}_{i}.s": float(v) for i, v in enumerate(s)}, False
    return {}, True


def _subckts(model: DeviceModel, live_current: bool = True) -> dict:
    cards = model.model_cards()
    return {"subckts": (model.subckt(live_current=live_current),), "models": (cards,) if cards else ()}


def pulse_bench(model: DeviceModel, state, amplitudes, shape: PulseShape, variation=None, noise=None, *,
                live_current: bool = True, method: str = "gear") -> Bench:
    """Device ``i`` driven by the pulse train ``amplitudes[i]`` (signed amplitude per slot, 0: no
    pulse) on its write ports; vectors ``"state"``: ``v(xdut_<i>.s)``. Sample them at
    ``(k + 1) * shape.period`` for the state after slot ``k``."""
    s = _states(model, state)
    amps = np.atleast_2d(np.asarray(amplitudes, float))
    if amps.shape[0] != s.size:
        raise ShapeError(f"amplitudes has {amps.shape[0]} rows for {s.size} devices")

    def waves(port, drive: BenchDrive, i: int):
        a = amps[i] if drive.only == 0 else np.where(np.sign(amps[i]) == drive.only, amps[i], 0.0)
        t, v = pulse_corners(drive.scale * a, shape, base=drive.base, knots=model.knots if drive.knots else ())
        return _strictly_increasing(t, v)

    nodes, groups, _ = _device_groups(model, s, "write", waves, model.instance_params(s, variation, noise))
    initial, uic = _initial(model, s)
    states = _state_names(s.size)
    circuit = Circuit(f"{model.name} pulse bench, {s.size} devices x {amps.shape[1]} slots", nodes, tuple(groups),
                      **_subckts(model, live_current))
    tstop = amps.shape[1] * shape.period
    return Bench(circuit, Tran(shape.tstep, tstop, max_step=shape.tstep, uic=uic), tuple(states), {"state": states},
                 {"method": method}, initial)


def _strictly_increasing(t: np.ndarray, v: np.ndarray):
    """Drop a corner that repeats the previous time with the same value (a pulse at t = 0)."""
    keep = np.concatenate([[True], (np.diff(t) > 0) | (np.diff(v) != 0)])
    t, v = t[keep], v[keep]
    if (np.diff(t) <= 0).any():
        raise ParameterError("pulse corners do not increase in time: the pulse shape leaves no lead in its slot")
    return t, v


def iv_bench(model: DeviceModel, state, v_max: float, *, points: int = 41) -> Bench:
    """Every device swept from ``-v_max`` to ``v_max`` across ``p -> n`` on a slow triangle
    (the state holds while ``v_max`` stays below the threshold). Vectors: ``"v"`` the sweep
    node, ``"i"`` its source current (minus the device current), ``"state"``."""
    check_positive("v_max", v_max)
    s = _states(model, state)
    T = 1e-6
    tri = (np.array([0.0, T, 3 * T, 4 * T]), np.array([0.0, -v_max, v_max, 0.0]))
    nodes, groups, driven = _device_groups(model, s, "read", lambda port, drive, i: tri, model.instance_params(s))
    if "p" not in driven:
        raise ParameterError(f"{model.name}.bench_ports('read') must drive port p")
    initial, uic = _initial(model, s)
    n = s.size
    vec = {"v": [f"v(p{i})" for i in range(n)], "i": [f"i(vwp_{i})" for i in range(n)], "state": _state_names(n)}
    circuit = Circuit(f"{model.name} I-V bench, {n} devices, +-{v_max:g} V", nodes, tuple(groups), **_subckts(model))
    step = 4 * T / points
    save = tuple(x for i in range(n) for x in (vec["v"][i], vec["i"][i], vec["state"][i]))
    return Bench(circuit, Tran(step, 4 * T, max_step=step, uic=uic), save, vec, {"method": "gear"}, initial)


def leak_bench(model: DeviceModel, state, t_stop: float) -> Bench:
    """No pulses for ``t_stop`` [s] (write ports idle): the retention of every device."""
    check_positive("t_stop", t_stop)
    s = _states(model, state)
    return pulse_bench(model, s, np.zeros((s.size, 1)),
                       PulseShape(width=t_stop / 4, rise=t_stop / 100, period=t_stop, tstep=t_stop / 200))


# ----------------------------------------------------------------------------------------------
# The 3T1C cell's fit benches (DC sweeps of its transistors)


def cap3t1c_fit_grid(model: Cap3T1C) -> np.ndarray:
    """Capacitor voltages [V] at which the read FET is characterised."""
    p = model.params
    return np.linspace(p.vc_min, p.vc_max, 13)


def _pump_fets(model: Cap3T1C, nodes: NodeTable, vdd: int, c: int, c2: int, gu: int, gd: int) -> list:
    p = model.params
    z = np.zeros(1, np.int64)
    return [Mosfets("pu", (1,), d=[c], g=[gu], s=[vdd], b=[vdd], model=model.pmos.name, w=p.w_pu, l=p.l_pu),
            Mosfets("pd", (1,), d=[c2], g=[gd], s=z, b=z, model=model.nmos.name, w=p.w_pd, l=p.l_pd)]


def cap3t1c_fit_benches(model: Cap3T1C) -> dict[str, Bench]:
    """DC benches whose vectors :meth:`models.cap3t1c.Cap3T1C.fitted` turns into the twin's
    constants.

    ``pumps``: a ``.dc`` of V_C (source ``Vc_0``) with both pumps at their pulse gate levels;
    vectors ``vc``, ``i_c`` (into ``Vc_0``) and ``i_c2`` (into ``Vc2_0``, which carries the
    pull-down current away from node ``c``). ``gates``: a ``.dc`` of the gate-drive fraction
    ``u`` in [0, 1] at mid V_C (vectors ``u``, ``i_c``, ``i_c2``). ``read``: a ``.dc`` of the
    drain voltage (``Vd_0``) for read FETs at the grid of :func:`cap3t1c_fit_grid` (vectors
    ``vd`` and ``i_s``, the drain-source current of each FET).
    """
    p = model.params
    cards = (model.nmos.to_spice(), model.pmos.to_spice())
    vc = cap3t1c_fit_grid(model)
    vmid = 0.5 * (p.vc_min + p.vc_max)
    out = {}
    for name in ("pumps", "gates"):
        nodes = NodeTable()
        vdd, c, c2, gu, gd = (int(nodes.add(x)) for x in ("vdd", "c", "c2", "gu", "gd"))
        groups = [VoltageSources("dd", (1,), p=[vdd], n=[0], value=p.vdd, role="supply"), *_pump_fets(model, nodes, vdd, c, c2, gu, gd)]
        if name == "pumps":
            groups += [VoltageSources("gu", (1,), p=[gu], n=[0], value=p.vdd - p.v_up, role="supply"),
                       VoltageSources("gd", (1,), p=[gd], n=[0], value=p.v_dn, role="supply"),
                       VoltageSources("c", (1,), p=[c], n=[0], value=0.0),
                       VoltageSources("c2", (1,), p=[c2], n=[c], value=0.0, role="sense")]
            sweep = DcSweep("Vc_0", vc[0], vc[-1] + 1e-9, vc[1] - vc[0])
            vec = {"vc": ["v(c)"]}
        else:
            u = int(nodes.add("u"))
            groups += [VoltageSources("u", (1,), p=[u], n=[0], value=0.0),
                       BehavioralSources("gu", (1,), p=[gu], n=[0], expr=(f"{fmt(p.vdd)}-v(u)*{fmt(p.v_up)}",)),
                       BehavioralSources("gd", (1,), p=[gd], n=[0], expr=(f"v(u)*{fmt(p.v_dn)}",)),
                       VoltageSources("c", (1,), p=[c], n=[0], value=vmid),
                       VoltageSources("c2", (1,), p=[c2], n=[c], value=0.0, role="sense")]
            sweep = DcSweep("Vu_0", 0.0, 1.0000001, 0.01)
            vec = {"u": ["v(u)"]}
        vec.update(i_c=["i(vc_0)"], i_c2=["i(vc2_0)"])
        circuit = Circuit(f"3T1C {name} bench", nodes, tuple(groups), models=cards)
        out[name] = Bench(circuit, sweep, tuple(v[0] for v in vec.values()), vec)
    nodes = NodeTable()
    d = int(nodes.add("d"))
    g = nodes.add("g{0}", (len(vc),))
    s = nodes.add("s{0}", (len(vc),))
    k = len(vc)
    z = np.zeros(k, np.int64)
    groups = [VoltageSources("g", (k,), p=g, n=z, value=vc, role="supply"),
              Mosfets("rd", (k,), d=np.full(k, d), g=g, s=s, b=z, model=model.nmos.name, w=p.w_rd, l=p.l_rd),
              VoltageSources("s", (k,), p=s, n=z, value=0.0, role="sense"),
              VoltageSources("d", (1,), p=[d], n=[0], value=0.0)]
    vec = {"vd": ["v(d)"], "i_s": [f"i(vs_{j})" for j in range(k)]}
    circuit = Circuit("3T1C read-FET bench", nodes, tuple(groups), models=(model.nmos.to_spice(),))
    out["read"] = Bench(circuit, DcSweep("Vd_0", -2 * p.v_read, 2 * p.v_read + 1e-9, p.v_read / 10),
                        ("v(d)", *vec["i_s"]), vec)
    return out


def on_resistance_bench(card: MosfetCard, w: float, l: float, *, v_source: float, v_gate: float, v_bulk: float,
                        v_ds: float = 1e-3) -> Bench:
    """One NMOS with ``v_ds`` across it, its source at ``v_source`` [V]: R_on = v_ds / -i(vd_0)."""
    nodes = NodeTable()
    d, g, s, b = (int(nodes.add(x)) for x in ("d", "g", "s", "b"))
    groups = [Mosfets("acc", (1,), d=[d], g=[g], s=[s], b=[b], model=card.name, w=w, l=l),
              VoltageSources("d", (1,), p=[d], n=[0], value=v_source + v_ds, role="sense"),
              VoltageSources("s", (1,), p=[s], n=[0], value=v_source, role="supply"),
              VoltageSources("g", (1,), p=[g], n=[0], value=v_gate, role="supply"),
              VoltageSources("b", (1,), p=[b], n=[0], value=v_bulk, role="supply")]
    circuit = Circuit(f"access transistor on-resistance at v_source={v_source:.12g}", nodes, tuple(groups),
                      models=(card.to_spice(),))
    return Bench(circuit, Op(), ("i(vd_0)",), {"i_d": ["i(vd_0)"]})


# ----------------------------------------------------------------------------------------------
# Periphery blocks alone


def adc_sweep_bench(v_in, adc: QuantizerParams | RampAdcParams, vos=None) -> Bench:
    """One converter channel per input voltage ``v_in`` [V] (``Vi_<j>`` on node ``in<j>``), all
    converted together: an ``.op`` for the ideal quantiser, one conversion transient sharing one
    ramp (``en`` rises after one clock, ``clr`` falls) for the single-slope converter, whose
    channels take comparator offsets ``vos`` [V]. Vectors ``"code"`` (one per channel)."""
    v = np.atleast_1d(np.asarray(v_in, dtype=float))
    n = v.size
    nodes = NodeTable()
    vin = nodes.add("in{0}", (n,))
    code = nodes.add("code{0}", (n,))
    z = np.zeros(n, np.int64)
    groups = [VoltageSources("i", (n,), p=vin, n=z, value=v, role="supply")]
    vec = {"code": [f"v(code{j})" for j in range(n)]}
    if isinstance(adc, QuantizerParams):
        groups.append(SubcktInstances("q", (n,), subckt=adc.name, ports=np.column_stack([vin, code])))
        circuit = Circuit(f"ADC sweep, {n} channels", nodes, tuple(groups), subckts=(quantizer_subckt(adc),))
        return Bench(circuit, Op(), tuple(vec["code"]), vec)
    te = adc.t_clk
    vos = np.zeros(n) if vos is None else np.broadcast_to(np.asarray(vos, dtype=float), (n,))
    en, clr, ramp = (int(nodes.add(x)) for x in ("en", "clr", "ramp"))
    groups += [PwlSources("ctl", (2,), p=np.array([en, clr]), n=np.zeros(2, np.int64),
                          times=((0.0, te), (0.0, te)), values=((0.0, 1.0), (1.0, 0.0))),
               SubcktInstances("ramp", (1,), subckt=f"{adc.name}_ramp", ports=np.array([[ramp, en]])),
               SubcktInstances("a", (n,), subckt=adc.name, params={"vos": vos},
                               ports=np.column_stack([vin, np.full(n, ramp), np.full(n, en), np.full(n, clr), code]))]
    vec["ramp"] = ["v(ramp)"]
    circuit = Circuit(f"ADC sweep, {n} channels", nodes, tuple(groups), subckts=(ramp_library(adc),))
    t_end = te + adc.t_conv + 2 * adc.t_clk
    return Bench(circuit, Tran(te, t_end, max_step=te), (*vec["code"], "v(ramp)"), vec)


def opamp_bench(p: MacroOpAmpParams | TwoStageOpAmpParams, analysis: Analysis, *, vdd: float = 0.9,
                vss: float = -0.9, c_load: float = 1e-12) -> Bench:
    """The op-amp open loop: ``inp`` driven (``Vin_0``, DC 0 V, AC 1 V), a DC feedback path
    (1 GOhm from ``out`` to ``inn``, 1 F from ``inn`` to ground) that sets the operating point
    without closing the loop at any frequency of interest, ``c_load`` [F] on ``out``. Vector
    ``"out"``: ``v(out)``."""
    nodes = NodeTable()
    vp, vn, inp, inn, out = (int(nodes.add(x)) for x in ("vdd", "vss", "inp", "inn", "out"))
    groups = [VoltageSources("dd", (1,), p=[vp], n=[0], value=vdd, role="supply"),
              VoltageSources("ss", (1,), p=[vn], n=[0], value=vss, role="supply"),
              VoltageSources("in", (1,), p=[inp], n=[0], value=0.0, ac=1.0),
              SubcktInstances("amp", (1,), subckt=p.name, ports=np.array([[inp, inn, out, vp, vn]])),
              Resistors("f", (1,), a=[out], b=[inn], resistance=1e9),
              Capacitors("f", (1,), a=[inn], b=[0], capacitance=1.0),
              Capacitors("l", (1,), a=[out], b=[0], capacitance=c_load)]
    cards = opamp_models(p)
    circuit = Circuit(f"open-loop bench of {p.name}", nodes, tuple(groups), subckts=(opamp_subckt(p),),
                      models=(cards,) if cards else ())
    return Bench(circuit, analysis, ("v(out)",), {"out": ["v(out)"]})

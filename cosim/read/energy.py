"""Energy of a read from the simulation: the power of every source integrated over time.

Layer: cosim.read. :func:`read_energy` drives the rows of a crossbar with pulses of duration
``t_read`` (amplitude-coded inputs), runs the transient in ngspice, and integrates
-v(t) i(t) of each source (the power it delivers; ngspice's i(V) flows into the + node). The
result splits the energy between the drivers and the sense side and reports energy per MVM,
per MAC and TOPS/W (2 operations per MAC). For a resistive array without wires the array
energy is sum_ij V_i^2 G_ij t_read exactly (tested); with wires it includes their dissipation.

It counts the array alone (drivers ideal, no integrators or ADCs): an upper bound of a tile's
efficiency. The read chain's energy, periphery included, is :func:`energy_summary` of a spice
read of :class:`cosim.read.readchain.ReadChain` made with ``energy=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cosim.sim.engine import Engine, SubprocessEngine
from models.errors import ParameterError, check_positive
from netlists.crossbar import CrossbarSpec, build_crossbar, check_inputs
from netlists.ir import Circuit, PwlSources, VoltageSources
from netlists.spice import Tran, write_spice


@dataclass(frozen=True)
class ReadEnergy:
    """Energies of one read [J] and the figures derived from them."""

    drive_j: float
    sense_j: float
    macs: int
    t_read: float

    @property
    def total_j(self) -> float:
        return self.drive_j + self.sense_j

    @property
    def per_mac_j(self) -> float:
        return self.total_j / self.macs

    @property
    def tops_per_w(self) -> float:
        """Tera-operations per second per watt, 2 operations per MAC."""
        return 2 * self.macs / self.total_j / 1e12


def read_energy(spec: CrossbarSpec, G: np.ndarray, V: np.ndarray, *, t_read: float = 100e-9,
                t_edge: float = 1e-9, engine: Engine | None = None) -> ReadEnergy:
    """Energy of one forward read of ``V`` (rows, [V]) held for ``t_read`` [s] with edges ``t_edge``."""
    check_positive("t_read", t_read)
    check_positive("t_edge", t_edge)
    if t_edge > t_read:
        raise ParameterError(f"t_edge {t_edge:g} s must not exceed t_read {t_read:g} s")
    V = check_inputs(spec, V, False)
    if V.shape[0] != 1:
        raise ParameterError("read_energy takes one input vector")
    xc = build_crossbar(spec, G)
    drive = xc.circuit.group("rd")
    assert isinstance(drive, VoltageSources)
    t = np.array([0.0, t_edge, t_edge * 2, t_edge * 2 + t_read, t_edge * 3 + t_read])
    shape = np.array([0.0, 0.0, 1.0, 1.0, 0.0])
    pwl = PwlSources("rd", drive.shape, p=drive.p, n=drive.n,
                     times=tuple(t for _ in range(drive.count)),
                     values=tuple(v * shape for v in xc.drive_values(V)[0]))
    groups = tuple(pwl if g is drive else g for g in xc.circuit.groups)
    circuit = Circuit(xc.circuit.title + " (energy)", xc.circuit.nodes, groups, layout=xc.circuit.layout)
    names_d = [f"i({n.lower()})" for n in drive.element_names()]
    names_s = [f"i({n.lower()})" for n in xc.circuit.sense_names()]
    stop = t_edge * 4 + t_read
    deck = write_spice(circuit, Tran(t_edge / 10, stop, max_step=t_edge), save=names_d + names_s
                       + [f"v({xc.circuit.nodes.name(int(k))})" for k in drive.p])
    res = (engine or SubprocessEngine()).run(deck, need=names_d + names_s, name="energy")
    time = res["time"]
    e_drive = 0.0
    for k, name in enumerate(names_d):
        v = res[f"v({xc.circuit.nodes.name(int(drive.p[k]))})"]
        e_drive += float(np.trapezoid(-v * res[name], time))
    # sense sources sit at 0 V: they deliver no power (kept in the split for later periphery)
    return ReadEnergy(drive_j=e_drive, sense_j=0.0, macs=spec.rows * spec.cols, t_read=t_read)


def energy_summary(result, macs_per_read: int) -> dict:
    """Energy per MVM and per MAC, TOPS/W (2 operations per MAC) and the array / periphery
    split of a spice read of the read chain made with ``energy=True`` (a
    :class:`cosim.read.readchain.ReadResult`).

    Array: the energy the DAC sources deliver (cells and wires). Periphery: the op-amp supplies
    ``vdd`` / ``vss`` (zero for the macro-model, which draws no supply current; the ramp ADC
    and the DAC drivers' own losses are behavioural and not counted).
    """
    e = result.energy
    if e is None:
        raise ParameterError("the read was made without energy=True (spice backend only)")
    n = e["reads"]
    total = e["array_j"] + e["supply_j"]
    per = total / n
    return {"per_mvm_j": per, "per_mac_j": per / macs_per_read,
            "tops_per_w": 2 * macs_per_read / per / 1e12 if per > 0 else math.inf,
            "array_j_per_mvm": e["array_j"] / n, "periphery_j_per_mvm": e["supply_j"] / n,
            "array_share": e["array_j"] / total if total else math.nan,
            "periphery_share": e["supply_j"] / total if total else math.nan,
            "read_time_s": e["time_s"] / n}

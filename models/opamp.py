"""Operational amplifiers for the column periphery: a cheap macro-model and a transistor-level
two-stage Miller op-amp, interchangeable by subcircuit name.

Layer: models (leaf). Imports numpy and ``models.*`` only.

Port order (both models)::

    .subckt NAME inp inn out vdd vss

``inp`` non-inverting input, ``inn`` inverting input, ``out`` output, ``vdd`` / ``vss``
supplies. The macro-model draws no supply current (the supplies only set its output swing);
the transistor op-amp is powered from them. Both are meant for split supplies around ground
(default +-0.9 V, the 1.8 V of the 180 nm cards) so that a crossbar column can sit at a
virtual ground of 0 V.

Macro-model (one pole, smooth output clamp, input offset)::

                 +---------------------+------------+-----------+
      inp --+    |                     |            |           |
            Gm  (gm (v(inp)-v(inn)+vos))  R1=a0/gm  C1        Bclamp    Eout
      inn --+    |                     |            |    (soft rails)    out = v(n1)
                 0                     0            0           0

``n1`` is the open-loop output: ``n1 = a0 (vd + vos)`` at DC, pole at gbw / a0. The clamp
current ``g_clamp * knee * [softplus((n1 - vdd + headroom)/knee) - softplus((vss + headroom
- n1)/knee)]`` is negligible more than ~20 knees inside the swing (below 1e-11 A, against
n1/R1 ~ 1e-7 A) and balances the overdrive current ``gm vd`` within a few knees of the rail
(saturated with vd = 0.2 V: 4.6 mV inside it, for knee = 2 mV): the output clips smoothly and, because the
internal node never winds up, recovers from saturation at once (a clamp on the output alone
would leave n1 at a0 * vd, thousands of volts, and take ~a0/gbw to recover). Cost: one
G, R, C, one B-source, one E-source per op-amp; no breakpoints.

Transistor-level two-stage (BSIM3 cards of :mod:`models.mosfet`)::

              vdd ---+-----------+----------------+
                     |           |                |
                  M3 |(diode)+---| M4          M6 |---+
                     +-------+   |                |   |
                  d1 |           | d2 ---+--Rz--Cc----+---- out
                     |           |       |            |
           inn --| M1            M2 |-- inp  (d2 drives M6's gate)
                     +-----+-----+                    |
                           | tail                     |
            Ib -> nb -| M5 (tail)            nb -| M7 (sink)
                 Mb (diode)|                          |
              vss ---------+--------------------------+

NMOS input pair, PMOS mirror load, PMOS common-source second stage, Miller capacitor with
nulling resistor, ideal bias current ``i_bias`` into the diode ``Mb``. Its open-loop figures,
taken in ngspice (``.ac``, +-0.9 V supplies, 1 pF load;
:func:`cosim.characterize.periphery.measure_opamp`), are ``TWO_STAGE_MEASURED`` below; its
macro-model equivalent is the twin of the transistor op-amp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import ParameterError, check_finite, check_positive
from models.spice_text import fmt, softplus_spice
from models.mosfet import NMOS_180, PMOS_180, MosfetCard

__all__ = ["PORTS", "MacroOpAmpParams", "TwoStageOpAmpParams", "TWO_STAGE_MEASURED",
           "opamp_subckt", "opamp_models", "macro_equivalent", "open_loop_gain", "saturate", "soft_clip"]

#: Port order of every op-amp subcircuit.
PORTS = ("inp", "inn", "out", "vdd", "vss")



def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


@dataclass(frozen=True)
class MacroOpAmpParams:
    """One-pole op-amp macro-model with smooth output clamp.

    Attributes
    ----------
    a0 : float
        DC open-loop gain [V/V].
    gbw : float
        Gain-bandwidth product (unity-gain frequency of the one-pole response) [Hz].
    v_os : float
        Input offset voltage [V], acting as if ``inp`` were higher by ``v_os``.
    headroom : float
        Output swing is ``[vss + headroom, vdd - headroom]`` [V].
    knee : float
        Width of the smooth clipping at each rail [V].
    gm : float
        Internal transconductance [S]; sets R1 = a0/gm and C1 = gm/(2 pi gbw). Has no effect
        on the transfer function; it scales the clamp overshoot (``gm * vd / g_clamp``).
    g_clamp : float
        Conductance of the rail clamp beyond the knee [S].
    name : str
        Subcircuit name.
    """

    a0: float = 1e4
    gbw: float = 100e6
    v_os: float = 0.0
    headroom: float = 0.1
    knee: float = 0.002
    gm: float = 1e-3
    g_clamp: float = 1.0
    name: str = "opamp_macro"

    def __post_init__(self) -> None:
        for f in ("a0", "gbw", "knee", "gm", "g_clamp"):
            check_positive(f, getattr(self, f))
        check_finite("v_os", self.v_os)
        check_positive("headroom", self.headroom, allow_zero=True)
        if self.a0 < 10:
            raise ParameterError(f"a0 = {self.a0:g} is too low for an op-amp (need >= 10)")
        if not self.name.isidentifier():
            raise ParameterError(f"name must be an identifier, got {self.name!r}")

    @property
    def r1(self) -> float:
        """Internal pole resistor [ohm]."""
        return self.a0 / self.gm

    @property
    def c1(self) -> float:
        """Internal pole capacitor [F]."""
        return self.gm / (2 * np.pi * self.gbw)

    @property
    def pole(self) -> float:
        """Open-loop pole [Hz]."""
        return self.gbw / self.a0


@dataclass(frozen=True)
class TwoStageOpAmpParams:
    """Two-stage Miller-compensated CMOS op-amp on the generic 180 nm BSIM3 cards.

    Attributes
    ----------
    i_bias : float
        Reference current into the diode Mb [A]; tail current = i_bias * w5/wb.
    w_in, l_in : float
        Input pair M1/M2 width and length [m].
    w_load, l_load : float
        PMOS mirror M3/M4 [m].
    w_tail, l_tail : float
        Tail M5 and reference Mb (same size) [m].
    w_cs, l_cs : float
        Second-stage PMOS M6 [m].
    w_sink, l_sink : float
        Second-stage NMOS current sink M7 [m].
    cc : float
        Miller capacitor [F].
    rz : float
        Nulling resistor in series with ``cc`` [ohm].
    nmos, pmos : MosfetCard
        Model cards.
    name : str
        Subcircuit name.
    """

    i_bias: float = 20e-6
    w_in: float = 20e-6
    l_in: float = 1e-6
    w_load: float = 8e-6
    l_load: float = 1e-6
    w_tail: float = 20e-6
    l_tail: float = 1e-6
    w_cs: float = 64e-6
    l_cs: float = 0.5e-6
    w_sink: float = 100e-6
    l_sink: float = 1e-6
    cc: float = 1e-12
    rz: float = 2e3
    nmos: MosfetCard = NMOS_180
    pmos: MosfetCard = PMOS_180
    name: str = "opamp_2stage"

    def __post_init__(self) -> None:
        for f in ("i_bias", "w_in", "l_in", "w_load", "l_load", "w_tail", "l_tail", "w_cs",
                  "l_cs", "w_sink", "l_sink", "cc"):
            check_positive(f, getattr(self, f))
        check_positive("rz", self.rz, allow_zero=True)
        for f in ("l_in", "l_load", "l_tail", "l_cs", "l_sink"):
            lmin = self.nmos.lmin
            if getattr(self, f) < lmin:
                raise ParameterError(f"{f} = {getattr(self, f):g} m is below the card's lmin {lmin:g} m")
        if self.nmos.polarity != "nmos" or self.pmos.polarity != "pmos":
            raise ParameterError("nmos/pmos cards have the wrong polarity")
        if not self.name.isidentifier():
            raise ParameterError(f"name must be an identifier, got {self.name!r}")

    @property
    def i_sink_max(self) -> float:
        """Largest current the output can sink [A]: the class-A second stage's sink M7 is a
        current source mirrored from Mb (the tail's size), i_bias (w_sink/l_sink) / (w_tail/l_tail)
        (100 uA by default). An inverting integrator sinks its whole input current: a column
        that draws more (positive inputs) loses its virtual ground in SPICE."""
        return self.i_bias * (self.w_sink / self.l_sink) / (self.w_tail / self.l_tail)


#: Measured on ngspice 46 (open loop, .ac 1 Hz-10 GHz, +-0.9 V, 1 pF load, input common mode
#: 0 V; cosim.characterize.periphery.measure_opamp): DC gain, unity-gain frequency, phase margin,
#: input-referred systematic offset. Re-measure after changing TwoStageOpAmpParams.
TWO_STAGE_MEASURED = {"a0": 12619.0, "gbw_hz": 37.75e6, "phase_margin_deg": 54.1, "v_os": 5.10e-4}


def opamp_models(p: MacroOpAmpParams | TwoStageOpAmpParams) -> str:
    """``.model`` lines that ``p``'s subcircuit needs at the top of the deck ('' for a macro)."""
    if isinstance(p, TwoStageOpAmpParams):
        return p.nmos.to_spice() + "\n" + p.pmos.to_spice()
    return ""


def opamp_subckt(p: MacroOpAmpParams | TwoStageOpAmpParams) -> str:
    """The ``.subckt p.name inp inn out vdd vss`` text (plain SI numbers).

    The transistor op-amp refers to its cards by name: put :func:`opamp_models` once in the
    deck (ngspice rejects nothing on a duplicate card, but keep one source of truth).
    """
    if isinstance(p, MacroOpAmpParams):
        hr, k = fmt(p.headroom), fmt(p.knee)
        up = f"(v(n1) - v(vdd) + {hr}) / {k}"
        dn = f"(v(vss) + {hr} - v(n1)) / {k}"
        lines = [
            f".subckt {p.name} inp inn out vdd vss",
            f"* one-pole macro: a0={fmt(p.a0)} gbw={fmt(p.gbw)} Hz vos={fmt(p.v_os)} V",
            f"Gm 0 n1 inp inn {fmt(p.gm)}",
        ]
        if p.v_os != 0.0:
            lines.append(f"Ios 0 n1 DC {fmt(p.gm * p.v_os)}")
        lines += [
            f"R1 n1 0 {fmt(p.r1)}",
            f"C1 n1 0 {fmt(p.c1)}",
            f"Bclamp n1 0 I = {fmt(p.g_clamp * p.knee)} * ({softplus_spice(up)} - {softplus_spice(dn)})",
            "Eout out 0 n1 0 1",
            f".ends {p.name}",
        ]
        return "\n".join(lines)
    if isinstance(p, TwoStageOpAmpParams):
        n, q = p.nmos.name, p.pmos.name
        return "\n".join([
            f".subckt {p.name} inp inn out vdd vss",
            "* two-stage Miller op-amp (NMOS pair, PMOS mirror, PMOS CS second stage)",
            f"Ib vdd nb DC {fmt(p.i_bias)}",
            f"Mb nb nb vss vss {n} W={fmt(p.w_tail)} L={fmt(p.l_tail)}",
            f"M5 tail nb vss vss {n} W={fmt(p.w_tail * 2)} L={fmt(p.l_tail)}",
            f"M1 d1 inn tail vss {n} W={fmt(p.w_in)} L={fmt(p.l_in)}",
            f"M2 d2 inp tail vss {n} W={fmt(p.w_in)} L={fmt(p.l_in)}",
            f"M3 d1 d1 vdd vdd {q} W={fmt(p.w_load)} L={fmt(p.l_load)}",
            f"M4 d2 d1 vdd vdd {q} W={fmt(p.w_load)} L={fmt(p.l_load)}",
            f"M6 out d2 vdd vdd {q} W={fmt(p.w_cs)} L={fmt(p.l_cs)}",
            f"M7 out nb vss vss {n} W={fmt(p.w_sink)} L={fmt(p.l_sink)}",
            f"Rz d2 nc {fmt(max(p.rz, 1e-3))}",
            f"Cc nc out {fmt(p.cc)}",
            f".ends {p.name}",
        ])
    raise ParameterError(f"not an op-amp parameter set: {type(p).__name__}")


def macro_equivalent(p: MacroOpAmpParams | TwoStageOpAmpParams, *,
                     measured: dict | None = None) -> MacroOpAmpParams:
    """The macro-model standing in for ``p`` in the numpy twin.

    A macro-model is returned as is; a two-stage op-amp becomes a macro with the measured
    ``a0``, ``gbw_hz`` and ``v_os`` (``measured``, default ``TWO_STAGE_MEASURED``, valid for the
    default sizing only). Its swing (headroom) is an estimate: 0.15 V from each rail.
    """
    if isinstance(p, MacroOpAmpParams):
        return p
    m = measured or TWO_STAGE_MEASURED
    if not m.get("a0"):
        raise ParameterError("no measured a0/gbw for the two-stage op-amp: run "
                             "cosim.characterize.periphery.measure_opamp and pass measured=")
    return MacroOpAmpParams(a0=m["a0"], gbw=m["gbw_hz"], v_os=m.get("v_os", 0.0),
                            headroom=0.15, name="opamp_2stage_eq")


def open_loop_gain(p: MacroOpAmpParams, f: np.ndarray) -> np.ndarray:
    """Complex open-loop gain of the macro-model at frequencies ``f`` [Hz]."""
    return p.a0 / (1 + 1j * np.asarray(f, dtype=float) / p.pole)


def soft_clip(p: MacroOpAmpParams, v: np.ndarray, vdd: float, vss: float) -> np.ndarray:
    """Closed-loop output limit: ``v`` inside the swing, the rail (smoothly, over ``knee``)
    outside it.

    Use it for an op-amp in a feedback loop that saturates hard (an integrator pushed past
    its rail: the lost virtual ground gives an overdrive of the order of the input, and the
    SPICE clamp then settles within ~3 knees of the rail). :func:`saturate` is the static
    open-loop balance instead (small overdrive, sits further inside).
    """
    v = np.asarray(v, dtype=float)
    hi_rail, lo_rail = vdd - p.headroom, vss + p.headroom
    k = p.knee
    return lo_rail + k * _softplus((v - lo_rail) / k) - k * _softplus((v - hi_rail) / k)


def saturate(p: MacroOpAmpParams, v: np.ndarray, vdd: float, vss: float) -> np.ndarray:
    """Static output of the macro-model when its linear output would be ``v`` [V].

    Solves ``n + R1 * Iclamp(n) = v`` (the DC balance of the internal node) by bisection,
    vectorised: the same smooth clipping as the SPICE subcircuit.
    """
    v = np.asarray(v, dtype=float)
    hi_rail, lo_rail = vdd - p.headroom, vss + p.headroom

    def resid(n):
        ic = p.g_clamp * p.knee * (_softplus((n - hi_rail) / p.knee) - _softplus((lo_rail - n) / p.knee))
        return n + p.r1 * ic - v

    lo = np.minimum(v, lo_rail) - 1.0
    hi = np.maximum(v, hi_rail) + 1.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        pos = resid(mid) > 0
        hi = np.where(pos, mid, hi)
        lo = np.where(pos, lo, mid)
    return 0.5 * (lo + hi)

r"""Virtual-ground charge integrator with reset: the column read-out of an analog tile.

Layer: models (leaf). Imports numpy/scipy and ``models.*`` only.

Schematic (subcircuit ``.subckt NAME col out rst ref vdd vss``)::

                      +-------||-------+        Cint between col and out
                      |      Cint      |
                      +--/ reset --+---+        Brst: conductance g_off + g_on * clip(v(rst), 0, 1)
                      |            |   |
    cells ---> col ---+--(-)\          |
                            >---------+---- out
               ref ------(+)/  op-amp (macro or two-stage; ports inp inn out vdd vss)

``col`` is the summing node (a crossbar column connects here; it sits at ``ref`` while the
op-amp holds it), ``rst`` is a logic voltage (1 V: switch closed, 0 V: integrate; ramps are
fine), ``ref`` the virtual-ground potential (0 V in the benches), ``vdd`` / ``vss`` the
op-amp supplies. Charge Q flowing into ``col`` gives ``v(out) = v_start - Q / C``.

Twin (what the fast backend uses), for a macro op-amp with gain a0, unity-gain frequency
GBW and offset vos, with the column loaded by a total conductance G to low-impedance sources
(every cell on the column, whether its row is driven or at 0 V)::

    v_start = vos a0 / (1 + a0)                        (after reset)
    C_eff   = C (1 + 1/a0) + G / (2 pi GBW)            (finite gain and bandwidth)
    v(out)  = sat( v_start - (Q - G vos T - G M / (C_eff a0)) / C_eff )
              (T: integration time; M = integral of i(t) (T - t) dt, the leak's first order)

The ``G/(2 pi GBW)`` term is the charge lost while the virtual ground sits at
``-dv(out)/dt / (2 pi GBW)``: with G = 100 uS, C = 10 pF, GBW = 100 MHz it is a 1.6 %
gain error, larger than the 1/a0 term. The leak ``G v(out) / a0`` (time constant
``C_eff a0 / G``) enters :func:`charge_to_voltage` to first order through ``moment``; :func:`integrate_waveform`
solves the full two-state linear ODE (one-pole op-amp + column node) exactly for
piecewise-linear inputs (matrix exponential with a first-order hold), then applies the clip :func:`models.opamp.soft_clip`.
After saturation the twin holds the rail; it does not model the loss of virtual ground.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from models.errors import ParameterError, ShapeError, check_finite, check_positive, raise_or_warn
from models.spice_text import fmt
from models.opamp import (MacroOpAmpParams, TwoStageOpAmpParams, macro_equivalent, opamp_models,
                          opamp_subckt, soft_clip)

__all__ = ["PORTS", "IntegratorParams", "integrator_subckt", "integrator_library",
           "effective_capacitance", "start_voltage", "charge_to_voltage", "integrate_waveform",
           "swing", "check_integrator_range"]

#: Port order of the integrator subcircuit.
PORTS = ("col", "out", "rst", "ref", "vdd", "vss")



@dataclass(frozen=True)
class IntegratorParams:
    """Integrator with reset switch.

    Attributes
    ----------
    c_int : float
        Integration capacitor [F].
    g_on : float
        Reset-switch conductance when ``v(rst)`` >= 1 V [S].
    g_off : float
        Reset-switch leakage conductance [S] (0: none).
    vdd, vss : float
        Supply voltages [V] used by the benches, the twin's rails and the range checks.
    opamp : MacroOpAmpParams or TwoStageOpAmpParams
        The amplifier.
    name : str
        Subcircuit name.
    """

    c_int: float = 10e-12
    g_on: float = 1e-3
    g_off: float = 0.0
    vdd: float = 0.9
    vss: float = -0.9
    opamp: MacroOpAmpParams | TwoStageOpAmpParams = field(default_factory=MacroOpAmpParams)
    name: str = "integ"

    def __post_init__(self) -> None:
        check_positive("c_int", self.c_int)
        check_positive("g_on", self.g_on)
        check_positive("g_off", self.g_off, allow_zero=True)
        check_finite("vdd", self.vdd)
        check_finite("vss", self.vss)
        if self.vdd <= self.vss:
            raise ParameterError(f"vdd ({self.vdd:g} V) must be above vss ({self.vss:g} V)")
        if not isinstance(self.opamp, (MacroOpAmpParams, TwoStageOpAmpParams)):
            raise ParameterError(f"opamp must be MacroOpAmpParams or TwoStageOpAmpParams, "
                                 f"got {type(self.opamp).__name__}")
        if not self.name.isidentifier():
            raise ParameterError(f"name must be an identifier, got {self.name!r}")

    @property
    def macro(self) -> MacroOpAmpParams:
        """The macro-model of the op-amp used by the twin."""
        return macro_equivalent(self.opamp)


def integrator_subckt(p: IntegratorParams) -> str:
    """``.subckt p.name col out rst ref vdd vss`` (needs the op-amp subcircuit in the deck)."""
    gate = "min(max(v(rst), 0), 1)"
    return "\n".join([
        f".subckt {p.name} col out rst ref vdd vss",
        f"Xamp ref col out vdd vss {p.opamp.name}",
        f"Cint col out {fmt(p.c_int)}",
        f"Brst out col I = v(out, col) * ({fmt(p.g_off)} + {fmt(p.g_on)} * {gate})",
        f".ends {p.name}",
    ])


def integrator_library(p: IntegratorParams) -> str:
    """Everything a deck needs for ``p``: model cards, op-amp and integrator subcircuits."""
    return "\n".join(s for s in (opamp_models(p.opamp), opamp_subckt(p.opamp), integrator_subckt(p)) if s)


def effective_capacitance(p: IntegratorParams, g_total: float | np.ndarray = 0.0) -> np.ndarray:
    """``C (1 + 1/a0) + G / (2 pi GBW)`` [F] for column conductance ``g_total`` [S]."""
    m = p.macro
    return p.c_int * (1 + 1 / m.a0) + np.asarray(g_total, dtype=float) / (2 * np.pi * m.gbw)


def start_voltage(p: IntegratorParams) -> float:
    """Output right after reset [V] (the op-amp offset, as a follower)."""
    m = p.macro
    return m.v_os * m.a0 / (1 + m.a0)


def swing(p: IntegratorParams) -> tuple[float, float]:
    """Linear output range ``(low, high)`` [V] of the op-amp."""
    m = p.macro
    return p.vss + m.headroom, p.vdd - m.headroom


def charge_to_voltage(p: IntegratorParams, q: np.ndarray, g_total: float | np.ndarray = 0.0,
                      t_int: float = 0.0, moment: np.ndarray | float = 0.0) -> np.ndarray:
    """Integrator output [V] after charge ``q`` [C] flowed into ``col`` (vectorised).

    Parameters
    ----------
    q : array
        Charge delivered by the cells into an ideal virtual ground [C].
    g_total : float or array
        Total conductance from the column to low-impedance nodes [S] (broadcast with ``q``).
    t_int : float
        Integration time [s]; with an offset the column sits at ``vos`` and the cells deliver
        ``G vos t_int`` less charge.
    moment : float or array
        ``integral of i(t) (t_end - t) dt`` [C s] of the ideal input current: the first-order
        leak correction ``- G moment / (C_eff a0)`` (charge arriving early leaks longer). 0
        neglects the leak (error ~ G T / (C a0)).
    """
    m = p.macro
    q = np.asarray(q, dtype=float)
    g = np.asarray(g_total, dtype=float)
    ceff = effective_capacitance(p, g)
    q_eff = q - g * m.v_os * t_int - g * np.asarray(moment, dtype=float) / (ceff * m.a0)
    v = start_voltage(p) - q_eff / ceff
    return soft_clip(m, v, p.vdd, p.vss)


def integrate_waveform(p: IntegratorParams, t: np.ndarray, i_in: np.ndarray,
                       g_total: float) -> np.ndarray:
    """Output waveform [V] for a short-circuit input current ``i_in(t)`` [A] (exact ODE).

    ``i_in`` is ``sum_i G_i V_i(t)``, the current the cells would push into an ideal virtual
    ground, sampled at times ``t`` [s] that include every corner of the (piecewise-linear)
    inputs; integration starts at ``t[0]`` from the post-reset state. Two states (op-amp
    internal node, column node), solved per interval with the matrix exponential and a first-order hold (linear
    interpolation of the input between samples): exact for PWL inputs, any stiffness.
    """
    from scipy.linalg import expm

    t = np.asarray(t, dtype=float)
    i_in = np.asarray(i_in, dtype=float)
    if t.shape != i_in.shape or t.ndim != 1:
        raise ShapeError(f"t and i_in must be equal 1-D arrays, got {t.shape} and {i_in.shape}")
    if np.any(np.diff(t) <= 0):
        raise ParameterError("t must be strictly increasing")
    m = p.macro
    tau = 1 / (2 * np.pi * m.pole)
    c = p.c_int
    a = np.array([[-1 / tau, -m.a0 / tau],
                  [-1 / tau, -m.a0 / tau - g_total / c]])
    k = m.a0 * m.v_os / tau
    b = np.array([[0.0, k], [1 / c, k]])  # inputs (i_in, 1)
    # First-order hold: exp of the augmented matrix [[A h, B h, 0], [0, 0, I], [0, 0, 0]]
    # gives x+ = Phi x + G0 u0 + G1 (u1 - u0); cached per distinct step.
    cache: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    x = np.full(2, start_voltage(p))
    y = np.empty_like(t)
    y[0] = x[0]
    for n in range(len(t) - 1):
        h = t[n + 1] - t[n]
        key = float(f"{h:.9e}")
        if key not in cache:
            mm = np.zeros((6, 6))
            mm[:2, :2] = a * h
            mm[:2, 2:4] = b * h
            mm[2:4, 4:6] = np.eye(2)
            e = expm(mm)
            cache[key] = (e[:2, :2], e[:2, 2:4], e[:2, 4:6])
        phi, g0, g1 = cache[key]
        u0 = np.array([i_in[n], 1.0])
        u1 = np.array([i_in[n + 1], 1.0])
        x = phi @ x + g0 @ u0 + g1 @ (u1 - u0)
        y[n + 1] = x[0]
    return soft_clip(m, y, p.vdd, p.vss)


def check_integrator_range(p: IntegratorParams, q_max: float, g_total: float = 0.0, *,
                           action: str = "raise") -> float:
    """Check that the largest expected |charge| ``q_max`` [C] fits in the output swing.

    Returns the fraction of the swing used (``|v| / swing``). Past 1 the integrator would
    saturate: raises :class:`ParameterError` (``action="raise"``) or warns
    (``action="warn"``), naming the charge, the voltage, the capacitor and the capacitor that
    would fit. Below 1/16 it warns that most of the range (and the ADC's) is unused.
    """
    if action not in ("raise", "warn"):
        raise ParameterError(f"action must be 'raise' or 'warn', got {action!r}")
    q_max = abs(check_finite("q_max", q_max))
    lo, hi = swing(p)
    v0 = start_voltage(p)
    room = min(hi - v0, v0 - lo)
    if room <= 0:
        raise ParameterError(f"the op-amp swing [{lo:.4g}, {hi:.4g}] V leaves no room (vdd={p.vdd:g}, "
                             f"vss={p.vss:g}, headroom={p.macro.headroom:g})")
    v = q_max / float(effective_capacitance(p, g_total))
    used = v / room
    if used > 1:
        msg = (f"integrator saturates: full-scale charge {q_max:.4g} C on c_int={p.c_int:.4g} F gives "
               f"{v:.4g} V, beyond the swing of +-{room:.4g} V (rails [{lo:.4g}, {hi:.4g}] V); "
               f"use c_int >= {q_max / room:.4g} F, or lower v_read / pulse width / conductance")
        raise_or_warn(msg, action)
    elif used < 1 / 16:
        warnings.warn(f"integrator uses only {100 * used:.2g} % of its swing ({v:.4g} V of +-{room:.4g} V "
                      f"for {q_max:.4g} C): c_int={p.c_int:.4g} F could be {used * 100:.2g} % of it",
                      RuntimeWarning, stacklevel=2)
    return used

"""Electrochemical RAM (ECRAM / ionic floating gate): three terminals, linear updates, leak.

Layer: models (leaf).

Equations (state s = channel conductance in uS, node ``s``; ports ``(p n g)``)::

    I_ds  = 1e-6 s v(p,n)                               (channel, G = G0 + beta Q)
    ds/dt = r m [F(v(g,n)) win_up(s) - F(v(n,g)) win_dn(s)] - (s - s_eq)/tau_ret
    gate  : R_gate from g to n (electrolyte + threshold switch in its off state)

The gate pulse moves ionic charge; G follows it linearly and symmetrically (Tang et al., IEDM
2018; Fuller et al., Science 364:570, 2019) until soft bounds (win = min(1, max(0, d/delta))).
The threshold switch on the gate (F: C0 ramp, 0 below ``v_lo``) gives selective parallel
programming: ``v_write`` = 1.0 V on the gate (full select), 0.5 V does nothing. Retention: the
charge leaks toward ``s_eq`` with time constant ``tau_ret``. Twin: the pulse's step, then the
leak over the whole slot (error ~ width/tau_ret of a step: negligible).
Randomness: ``draw_noise`` gives one multiplier ``m`` per device per update phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.device import BenchDrive, MicroSiemensDevice
from models.pulse import PulseShape, exposure
from models.spice_text import fmt, ramp_spice
from models.errors import ParameterError, check_positive


@dataclass(frozen=True)
class ECRAMParams:
    """ECRAM parameters (Tang et al., IEDM 2018: about 1,000 near-linear symmetric steps,
    read currents below 10 nA at small V_DS; retention time constant here: check).

    Attributes
    ----------
    g_min, g_max : float
        Channel conductance bounds [S].
    dg : float
        Conductance step per full gate pulse of the nominal shape [S].
    shape_exposure : float
        Effective duration [s] of the nominal pulse that ``dg`` refers to.
    tau_ret : float
        Retention time constant [s].
    g_eq : float
        Conductance the stored charge relaxes to [S].
    r_gate : float
        Gate-to-source resistance [ohm].
    v_lo, v_hi : float
        Gate threshold ramp [V].
    v_write, v_read : float
        Gate write amplitude and channel read voltage [V].
    sigma_c2c : float
        Relative cycle-to-cycle std of the step (per phase) [-].
    """

    g_min: float = 0.5e-6
    g_max: float = 10.5e-6
    dg: float = 10e-9
    shape_exposure: float = 52.5e-9
    tau_ret: float = 1e4
    g_eq: float = 5.5e-6
    r_gate: float = 1e9
    v_lo: float = 0.6
    v_hi: float = 0.9
    v_write: float = 1.0
    v_read: float = 0.1
    sigma_c2c: float = 0.05

    def __post_init__(self) -> None:
        for f in ("g_max", "dg", "shape_exposure", "tau_ret", "g_eq", "r_gate", "v_lo", "v_hi",
                  "v_write", "v_read"):
            check_positive(f, getattr(self, f))
        for f in ("g_min", "sigma_c2c"):
            check_positive(f, getattr(self, f), allow_zero=True)
        if self.g_min >= self.g_max:
            raise ParameterError(f"g_min ({self.g_min:g} S) must be below g_max ({self.g_max:g} S)")
        if not self.g_min <= self.g_eq <= self.g_max:
            raise ParameterError("g_eq must lie in [g_min, g_max]")
        if self.v_lo >= self.v_hi:
            raise ParameterError("v_lo must be below v_hi")
        if self.v_write / 2 >= self.v_lo:
            raise ParameterError("v_write/2 reaches v_lo: half-selected cells would switch")


class ECRAM(MicroSiemensDevice):
    """ECRAM cell, ports ``(p n g)``; state in uS; written by pulses on ``g`` against ``n``."""

    name = "ecram"
    ports = ("p", "n", "g")
    delta = 0.01  # [uS]

    def __init__(self, params: ECRAMParams | None = None):
        self.params = params or ECRAMParams()
        p = self.params
        self.knots = (p.v_lo, p.v_hi)
        self.v_write, self.v_threshold, self.v_read = p.v_write, p.v_lo, p.v_read
        self._smin, self._smax, self._seq = p.g_min * 1e6, p.g_max * 1e6, p.g_eq * 1e6
        self._rate = p.dg * 1e6 / p.shape_exposure

    def subckt(self, *, live_current: bool = True) -> str:
        p = self.params
        up = ramp_spice("v(g,n)", p.v_lo, p.v_hi)
        dn = ramp_spice("v(n,g)", p.v_lo, p.v_hi)
        d = fmt(1 / self.delta)
        cell = "Bi p n I=1e-6*v(s)*v(p,n)" if live_current else "R1 p n {1e6/s0}"
        return "\n".join([
            f".subckt {self.subckt_name} p n g params: s0={fmt(self._seq)} r=1",
            cell,
            f"Rg g n {fmt(p.r_gate)}",
            f"Bs 0 s I=r*({up}*min(1,max(0,({fmt(self._smax)}-v(s))*{d}))"
            f"-{dn}*min(1,max(0,(v(s)-{fmt(self._smin)})*{d})))"
            f"-(v(s)-{fmt(self._seq)})*{fmt(1 / p.tau_ret)}",
            "Cs s 0 1 IC={s0}",
            ".ends"])

    def retain(self, state, t) -> np.ndarray:
        """State after idling ``t`` [s] (retention leak toward g_eq)."""
        return self._seq + (np.asarray(state, float) - self._seq) * np.exp(-np.asarray(t, float) / self.params.tau_ret)

    def step(self, state, amplitude, shape: PulseShape, variation=None, noise=None) -> np.ndarray:
        p = self.params
        s = np.asarray(state, float)
        a = np.asarray(amplitude, float)
        ds = self._r(noise, s.size) * (exposure(a, shape, p.v_lo, p.v_hi) - exposure(-a, shape, p.v_lo, p.v_hi))
        return self.retain(np.clip(s + ds, self._smin, self._smax), shape.period)

    def bench_ports(self, kind: str) -> dict:
        """Write: pulses on the gate, the channel held at ``v_read``; read: the channel swept,
        the gate tied to the source."""
        super().bench_ports(kind)
        if kind == "read":
            return {"p": BenchDrive(knots=False), "n": 0.0, "g": 0.0}
        return {"p": self.params.v_read, "n": 0.0, "g": BenchDrive()}

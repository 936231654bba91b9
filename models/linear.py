"""Ideal linear-step device: the control.

Layer: models (leaf).

Equations (state s = G in uS, node ``s``; bipolar, ports ``(p n)``)::

    ds/dt = r m_c2c [F(v(p,n)) win_up(s) - F(-v(p,n)) win_dn(s)]
    win_up = min(1, max(0, (Smax - s)/delta)),  win_dn = min(1, max(0, (s - Smin)/delta))
    I = 1e-6 s v(p,n)

A full pulse (|v| = v_write) changes G by exactly ``dg`` (up for v > 0, down for v < 0) until a
bound; the twin clips at the bounds, SPICE stops within ``delta`` (0.01 uS) of them. Write
``v_write`` = 1.0 V, threshold 0.6 V, so half-selected cells do not move.
Randomness: ``draw_noise`` gives one step multiplier per device per update phase
(max(1 + sigma_c2c z, 0); sigma_c2c = 0 in the preset: an ideal device).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.device import MicroSiemensDevice
from models.pulse import PulseShape, exposure
from models.spice_text import fmt, ramp_spice
from models.errors import ParameterError, check_positive


@dataclass(frozen=True)
class LinearParams:
    """Ideal linear-step device (no paper: the control of every experiment).

    Attributes
    ----------
    g_min, g_max : float
        Conductance bounds [S].
    dg : float
        Conductance change per full pulse of the nominal ``shape`` [S].
    shape_exposure : float
        Effective duration [s] of the nominal pulse (PulseShape() with these thresholds) that
        ``dg`` refers to; the rate is dg / shape_exposure [S/s].
    v_lo, v_hi : float
        Threshold ramp [V].
    v_write, v_read : float
        Full-selected pulse amplitude and read voltage [V].
    sigma_c2c : float
        Relative cycle-to-cycle std of the step [-].
    """

    g_min: float = 0.1e-6
    g_max: float = 25e-6
    dg: float = 0.1e-6
    shape_exposure: float = 52.5e-9
    v_lo: float = 0.6
    v_hi: float = 0.9
    v_write: float = 1.0
    v_read: float = 0.2
    sigma_c2c: float = 0.0

    def __post_init__(self) -> None:
        for f in ("g_max", "dg", "shape_exposure", "v_lo", "v_hi", "v_write", "v_read"):
            check_positive(f, getattr(self, f))
        check_positive("g_min", self.g_min, allow_zero=True)
        check_positive("sigma_c2c", self.sigma_c2c, allow_zero=True)
        if self.g_min >= self.g_max:
            raise ParameterError(f"g_min ({self.g_min:g} S) must be below g_max ({self.g_max:g} S)")
        if self.v_lo >= self.v_hi:
            raise ParameterError("v_lo must be below v_hi")
        if self.v_write / 2 >= self.v_lo:
            raise ParameterError(f"v_write/2 = {self.v_write / 2:g} V reaches v_lo: half-selected cells would switch")


class LinearDevice(MicroSiemensDevice):
    """Ideal linear-step device, ports ``(p n)``; state in uS."""

    name = "linear"
    ports = ("p", "n")
    delta = 0.01  # [uS] width of the soft bound in SPICE

    def __init__(self, params: LinearParams | None = None):
        self.params = params or LinearParams()
        p = self.params
        self.knots = (p.v_lo, p.v_hi)
        self.v_write, self.v_threshold, self.v_read = p.v_write, p.v_lo, p.v_read
        self._smin, self._smax = p.g_min * 1e6, p.g_max * 1e6
        self._rate = p.dg * 1e6 / p.shape_exposure  # [uS/s]

    def subckt(self, *, live_current: bool = True) -> str:
        p = self.params
        up = ramp_spice("v(p,n)", p.v_lo, p.v_hi)
        dn = ramp_spice("v(n,p)", p.v_lo, p.v_hi)
        d = 1 / self.delta
        cell = "Bi p n I=1e-6*v(s)*v(p,n)" if live_current else "R1 p n {1e6/s0}"
        return "\n".join([
            f".subckt {self.subckt_name} p n params: s0={fmt(self._smin)} r=1",
            cell,
            f"Bs 0 s I=r*({up}*min(1,max(0,({fmt(self._smax)}-v(s))*{fmt(d)}))"
            f"-{dn}*min(1,max(0,(v(s)-{fmt(self._smin)})*{fmt(d)})))",
            "Cs s 0 1 IC={s0}",
            ".ends"])

    def step(self, state, amplitude, shape: PulseShape, variation=None, noise=None) -> np.ndarray:
        p = self.params
        s = np.asarray(state, float)
        a = np.asarray(amplitude, float)
        r = self._r(noise, s.size)
        ds = r * (exposure(a, shape, p.v_lo, p.v_hi) - exposure(-a, shape, p.v_lo, p.v_hi))
        return np.clip(s + ds, self._smin, self._smax)

"""Bipolar filamentary RRAM: Stanford/ASU gap I-V with threshold switching, and 1T1R use.

Layer: models (leaf).

Equations (state s = tunnelling gap in nm, node ``s``; ports ``(p n)``)::

    I     = I0 exp(-s/g0) sinh(v(p,n)/V0)                     (Stanford/ASU gap model I-V)
    ds/dt = -k_set m (s - gap_min) F_set(v(p,n)) + k_reset m (gap_max - s) F_reset(-v(p,n))

F are C0 threshold ramps (VTEAM-like thresholds, Kvatinsky et al. 2015), so SET (v > 0) closes
the gap, RESET (v < 0) opens it, and each full pulse moves the gap by a fixed fraction of its
distance to the bound: linear in gap, hence exponential in conductance (the usual RRAM
nonlinearity). The field- and temperature-driven hopping rate of the full Stanford model is
replaced by these thresholds: the thermal runaway of that model is what the 1T1R transistor
limits, and here the series transistor limits the cell voltage instead, which stops SET
(compliance). Write: +-``v_write`` = 1.2 V; threshold 0.7 V > v_write/2.

Exp and sinh arguments are bounded in SPICE (gap clipped to [0, 3] nm, v/V0 to [-30, 30]).
Randomness: ``draw_variation`` gives a per-device rate multiplier ``m_d2d``; ``draw_noise`` one
multiplier ``m_c2c`` per device per update phase; m = m_d2d m_c2c.

1T1R: :meth:`RRAM.subckt_1t1r` wraps the cell with an NMOS access transistor (models.mosfet
card) in series, ports ``(bl wl sl)``: bit line to the cell top, word line to the gate, source
line to the transistor source; the gate voltage sets the compliance current.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.device import DeviceModel
from models.pulse import PulseShape, exposure
from models.spice_text import fmt, ramp_spice
from models.errors import ParameterError, check_positive
from models.mosfet import NMOS_180, MosfetCard


@dataclass(frozen=True)
class RRAMParams:
    """RRAM parameters. I-V: Stanford/ASU model (Yu, Guan, Wong; Chen & Yu, IEEE TED 62:4022,
    2015) as given in docs/physics.md (I0 = 6.14e-5 A, g0 = 0.27505 nm, V0 = 0.43 V, gap range
    0.1-1.7 nm). Switching rates: chosen for about 30 levels per direction with 50 ns pulses.

    Attributes
    ----------
    i0 : float
        Current prefactor [A].
    g0 : float
        Characteristic gap length [nm].
    v0 : float
        Characteristic voltage of the sinh I-V [V].
    gap_min, gap_max : float
        Gap bounds [nm] (high and low conductance).
    k_set, k_reset : float
        Relative gap-change rates [1/s] at full drive.
    v_set_lo, v_set_hi, v_reset_lo, v_reset_hi : float
        Threshold ramps [V] (magnitudes; RESET acts at negative v(p,n)).
    v_write, v_read : float
        Full-selected write amplitude and read voltage [V].
    sigma_d2d, sigma_c2c : float
        Relative std of the rate, device to device and cycle to cycle (per phase) [-].
    """

    i0: float = 6.14e-5
    g0: float = 0.27505
    v0: float = 0.43
    gap_min: float = 0.1
    gap_max: float = 1.7
    k_set: float = 1.2e6
    k_reset: float = 1.0e6
    v_set_lo: float = 0.7
    v_set_hi: float = 1.0
    v_reset_lo: float = 0.7
    v_reset_hi: float = 1.0
    v_write: float = 1.2
    v_read: float = 0.1
    sigma_d2d: float = 0.1
    sigma_c2c: float = 0.1

    def __post_init__(self) -> None:
        for f in ("i0", "g0", "v0", "gap_max", "k_set", "k_reset", "v_set_lo", "v_set_hi",
                  "v_reset_lo", "v_reset_hi", "v_write", "v_read"):
            check_positive(f, getattr(self, f))
        for f in ("gap_min", "sigma_d2d", "sigma_c2c"):
            check_positive(f, getattr(self, f), allow_zero=True)
        if self.gap_min >= self.gap_max:
            raise ParameterError(f"gap_min ({self.gap_min:g} nm) must be below gap_max ({self.gap_max:g} nm)")
        if self.gap_max > 3.0:
            raise ParameterError("gap_max must be <= 3 nm (the SPICE exp argument is bounded there)")
        if self.v_set_lo >= self.v_set_hi or self.v_reset_lo >= self.v_reset_hi:
            raise ParameterError("each threshold ramp needs lo < hi")
        if self.v_write / 2 >= min(self.v_set_lo, self.v_reset_lo):
            raise ParameterError("v_write/2 reaches a threshold: half-selected cells would switch")
        if self.v_read >= min(self.v_set_lo, self.v_reset_lo):
            raise ParameterError("v_read reaches a threshold: reads would disturb the cell")


class RRAM(DeviceModel):
    """Bipolar RRAM cell, ports ``(p n)``; state = gap [nm] (small gap: high conductance)."""

    name = "rram"
    ports = ("p", "n")

    def __init__(self, params: RRAMParams | None = None, access: MosfetCard = NMOS_180):
        self.params = params or RRAMParams()
        self.access = access
        p = self.params
        self.knots = (p.v_set_lo, p.v_set_hi, p.v_reset_lo, p.v_reset_hi)
        self.v_write, self.v_threshold, self.v_read = p.v_write, min(p.v_set_lo, p.v_reset_lo), p.v_read

    @property
    def state_range(self) -> tuple[float, float]:
        return self.params.gap_min, self.params.gap_max

    def _iv_spice(self) -> str:
        p = self.params
        return (f"{fmt(p.i0)}*exp(-min(max(v(s),0),3)*{fmt(1 / p.g0)})"
                f"*sinh(min(max(v(p,n)*{fmt(1 / p.v0)},-30),30))")

    def subckt(self, *, live_current: bool = True) -> str:
        p = self.params
        fs = ramp_spice("v(p,n)", p.v_set_lo, p.v_set_hi)
        fr = ramp_spice("v(n,p)", p.v_reset_lo, p.v_reset_hi)
        cell = f"Bi p n I={self._iv_spice()}" if live_current else "R1 p n {1/gr}"
        return "\n".join([
            f".subckt {self.subckt_name} p n params: s0={fmt(p.gap_max)} m=1 gr=1e-6",
            cell,
            f"Bs 0 s I=m*({fmt(p.k_reset)}*({fmt(p.gap_max)}-v(s))*{fr}"
            f"-{fmt(p.k_set)}*(v(s)-{fmt(p.gap_min)})*{fs})",
            "Cs s 0 1 IC={s0}",
            ".ends"])

    def subckt_1t1r(self, *, w: float = 0.5e-6, l: float = 0.18e-6) -> str:
        """1T1R cell ``rram_1t1r (bl wl sl) params: s0 m gr``: cell from ``bl`` to ``d``, NMOS
        (drain ``d``, gate ``wl``, source and body ``sl``). Needs :meth:`model_cards` and
        :meth:`subckt` in the deck."""
        return "\n".join([
            ".subckt rram_1t1r bl wl sl params: s0=1.7 m=1 gr=1e-6",
            f"X1 bl d {self.subckt_name} s0={{s0}} m={{m}} gr={{gr}}",
            f"M1 d wl sl sl {self.access.name} W={fmt(w)} L={fmt(l)}",
            ".ends"])

    def model_cards(self) -> str:
        return self.access.to_spice()

    def _m(self, variation, noise, n):
        m = np.ones(n)
        if variation is not None and "m_d2d" in variation:
            m = m * variation["m_d2d"]
        if noise is not None and "m_c2c" in noise:
            m = m * noise["m_c2c"]
        return m

    def instance_params(self, state, variation=None, noise=None) -> dict[str, np.ndarray]:
        s = np.atleast_1d(np.asarray(state, float))
        return {"s0": s, "m": np.broadcast_to(self._m(variation, noise, s.size), s.shape),
                "gr": self.to_conductance(s)}

    def draw_variation(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"m_d2d": np.maximum(1 + self.params.sigma_d2d * rng.standard_normal(n), 0.1)}

    def draw_noise(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"m_c2c": np.maximum(1 + self.params.sigma_c2c * rng.standard_normal(n), 0.0)}

    def current(self, state, v) -> np.ndarray:
        p = self.params
        s = np.clip(np.asarray(state, float), 0, 3)
        return p.i0 * np.exp(-s / p.g0) * np.sinh(np.clip(np.asarray(v, float) / p.v0, -30, 30))

    def to_conductance(self, state) -> np.ndarray:
        return self.current(state, self.params.v_read) / self.params.v_read

    def from_conductance(self, g) -> np.ndarray:
        p = self.params
        unit = p.i0 * np.sinh(p.v_read / p.v0) / p.v_read
        gap = -p.g0 * np.log(np.maximum(np.asarray(g, float), 1e-30) / unit)
        return np.clip(gap, p.gap_min, p.gap_max)

    def step(self, state, amplitude, shape: PulseShape, variation=None, noise=None) -> np.ndarray:
        p = self.params
        s = np.asarray(state, float)
        a = np.asarray(amplitude, float)
        m = self._m(variation, noise, s.size)
        xs = m * p.k_set * exposure(a, shape, p.v_set_lo, p.v_set_hi)
        xr = m * p.k_reset * exposure(-a, shape, p.v_reset_lo, p.v_reset_hi)
        s = p.gap_min + (s - p.gap_min) * np.exp(-xs)
        return p.gap_max - (p.gap_max - s) * np.exp(-xr)

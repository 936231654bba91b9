"""Phase-change memory (PCM) cell: saturating partial SET, abrupt RESET, drift, noise.

Layer: models (leaf).

Equations (state s = programmed conductance G in uS, node ``s``)::

    ds/dt = ks (Smax - s) F_set(|v|) - kr (s - Smin) F_reset(|v|)
    ks    = k_set m_d2d m_c2c / (g_max - g_min)          [1/s]
    I     = 1e-6 dfac s v(p,n)                          (ohmic read, drift factor dfac)

so a full pulse of flat width tau gives the saturating partial-SET law
``G_n = Gmax - (Gmax - G0) exp(-n k tau / (Gmax - Gmin))`` (IBM aihwkit PCM; Nandakumar et al.
2020), a pulse above ``v_reset_hi`` melts and quenches the cell to ``g_min`` (abrupt RESET;
kr tau >> 1; the twin applies the SET window crossed on the falling edge after the melt).
SET is polarity-independent (Joule heating). Write: ``v_write`` = 1.0 V;
threshold: ``v_set_lo`` = 0.6 V > v_write/2, so half-selected cells do not move.

Drift ``G(t) = G_prog (t/t0)^-nu`` with ``nu`` from the state (docs/physics.md:
nu = clip(-0.0155 ln(G/Gmax) + 0.0244, 0.049, 0.1)) and a device-to-device spread, enters
SPICE as the instance parameter ``dfac`` (no run-time cost). Programming noise and read noise
are numpy-side (they act on reads, not on the update dynamics).

Randomness: ``draw_variation`` gives per device ``m_d2d`` (normal, sigma ``sigma_d2d``, clipped
>= 0.1) and ``z_nu`` (standard normal for the nu spread); ``draw_noise`` gives per device and
update phase one step multiplier ``m_c2c`` = max(1 + sigma_c2c z, 0), held for all pulses of
the phase.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from models.device import MicroSiemensDevice
from models.pulse import PulseShape, exposure, ramp_integral
from models.spice_text import fmt, ramp_spice
from models.errors import ParameterError, check_positive


@dataclass(frozen=True)
class PCMParams:
    """PCM parameters (preset: IBM aihwkit PCM statistics, docs/physics.md; Nandakumar
    et al., 2020; Joshi et al., Nat. Commun. 11:2473, 2020).

    Attributes
    ----------
    g_min, g_max : float
        Fully RESET and saturated SET conductance [S] (g_max = 25 uS).
    k_set : float
        Partial-SET rate k [S/s]: a flat pulse of width tau at G = g_min adds about k tau.
    k_reset : float
        RESET rate [1/s] (abrupt: k_reset * width >> 1).
    v_set_lo, v_set_hi : float
        SET threshold ramp [V] (|v| below v_set_lo: no change).
    v_reset_lo, v_reset_hi : float
        RESET threshold ramp [V].
    v_write : float
        Full-selected SET pulse amplitude [V].
    v_read : float
        Read voltage [V].
    sigma_c2c : float
        Cycle-to-cycle step noise, relative std of the step [-] (about 0.6).
    sigma_d2d : float
        Device-to-device spread of k_set, relative std [-] (about 0.2).
    t0 : float
        Drift reference time [s] (20 s).
    sigma_nu : float
        Device-to-device relative std of the drift exponent nu [-] (check).
    read_noise_q : float
        1/f read-noise scale Q [-]: sigma = Q g ... see ``read_conductance`` (check).
    t_read : float
        Read duration for the 1/f read noise [s] (250 ns).
    """

    g_min: float = 0.1e-6
    g_max: float = 25e-6
    k_set: float = 10.0
    k_reset: float = 1e9
    v_set_lo: float = 0.6
    v_set_hi: float = 0.9
    v_reset_lo: float = 1.6
    v_reset_hi: float = 1.9
    v_write: float = 1.0
    v_read: float = 0.2
    sigma_c2c: float = 0.6
    sigma_d2d: float = 0.2
    t0: float = 20.0
    sigma_nu: float = 0.1
    read_noise_q: float = 0.0088
    t_read: float = 250e-9

    def __post_init__(self) -> None:
        for f in ("g_max", "k_set", "k_reset", "v_set_lo", "v_set_hi", "v_reset_lo",
                  "v_reset_hi", "v_write", "v_read", "t0", "t_read"):
            check_positive(f, getattr(self, f))
        for f in ("g_min", "sigma_c2c", "sigma_d2d", "sigma_nu", "read_noise_q"):
            check_positive(f, getattr(self, f), allow_zero=True)
        if self.g_min >= self.g_max:
            raise ParameterError(f"g_min ({self.g_min:g} S) must be below g_max ({self.g_max:g} S)")
        if not self.v_set_lo < self.v_set_hi <= self.v_reset_lo < self.v_reset_hi:
            raise ParameterError("thresholds must satisfy v_set_lo < v_set_hi <= v_reset_lo < v_reset_hi")
        if self.v_write / 2 >= self.v_set_lo:
            raise ParameterError(f"v_write/2 = {self.v_write / 2:g} V reaches v_set_lo: "
                                 "half-selected cells would switch")
        if self.v_write >= self.v_reset_lo:
            raise ParameterError("v_write must stay below v_reset_lo (a SET pulse would RESET)")


def _pulsed_args(n, x):  # pragma: no cover - compiled
    """The devices with pulses and their exponents -n x."""
    on = np.flatnonzero(n)
    arg = np.empty(on.size)
    for k in range(on.size):
        arg[k] = -float(n[on[k]]) * x[on[k]]
    return on, arg


def _pulsed_apply(s, smax, on, e, out):  # pragma: no cover - compiled
    """out = smax - (smax - s), and smax - (smax - s) e at the pulsed devices."""
    for i in range(s.size):
        out[i] = smax - (smax - s[i])
    for k in range(on.size):
        i = on[k]
        out[i] = smax - (smax - s[i]) * e[k]


@functools.cache
def _pulsed_kernels():
    """:func:`_pulsed_args` and :func:`_pulsed_apply` compiled by numba, or None where numba is
    missing or ``XBAR_NO_NUMBA`` is set (numpy's fancy indexing then)."""
    if os.environ.get("XBAR_NO_NUMBA"):
        return None
    try:
        import numba
    except ImportError:
        return None
    jit = numba.njit(cache=True, nogil=True)
    return jit(_pulsed_args), jit(_pulsed_apply)


class PCM(MicroSiemensDevice):
    """PCM cell, ports ``(p n)``; state in uS. See the module docstring for the equations."""

    name = "pcm"
    ports = ("p", "n")

    def __init__(self, params: PCMParams | None = None):
        self.params = params or PCMParams()
        p = self.params
        self.knots = (p.v_set_lo, p.v_set_hi, p.v_reset_lo, p.v_reset_hi)
        self.v_write, self.v_threshold, self.v_read = p.v_write, p.v_set_lo, p.v_read
        self.v_reset = p.v_reset_hi + 0.1
        self._smin, self._smax = p.g_min * 1e6, p.g_max * 1e6

    # -- SPICE --------------------------------------------------------------------------------
    def subckt(self, *, live_current: bool = True) -> str:
        p = self.params
        va = "abs(v(p,n))"
        fset = ramp_spice(va, p.v_set_lo, p.v_set_hi)
        frst = ramp_spice(va, p.v_reset_lo, p.v_reset_hi)
        cell = ("Bi p n I=dfac*1e-6*v(s)*v(p,n)" if live_current else "R1 p n {1e6/(dfac*s0)}")
        return "\n".join([
            f".subckt {self.subckt_name} p n params: s0={fmt(self._smin)} ks=1 dfac=1",
            cell,
            f"Bs 0 s I=ks*({fmt(self._smax)}-v(s))*{fset}"
            f"-{fmt(p.k_reset)}*(v(s)-{fmt(self._smin)})*{frst}",
            "Cs s 0 1 IC={s0}",
            ".ends"])

    def _ks(self, variation=None, noise=None, n: int = 1) -> np.ndarray:
        p = self.params
        m = np.ones(n)
        if variation is not None and "m_d2d" in variation:
            m = m * variation["m_d2d"]
        if noise is not None and "m_c2c" in noise:
            m = m * noise["m_c2c"]
        return p.k_set * m / (p.g_max - p.g_min)

    def instance_params(self, state, variation=None, noise=None, *, dfac=None) -> dict[str, np.ndarray]:
        s = np.atleast_1d(np.asarray(state, float))
        d = np.ones_like(s) if dfac is None else np.broadcast_to(np.asarray(dfac, float), s.shape)
        return {"s0": s, "ks": np.broadcast_to(self._ks(variation, noise, s.size), s.shape),
                "dfac": d}

    # -- randomness ---------------------------------------------------------------------------
    def draw_variation(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        p = self.params
        return {"m_d2d": np.maximum(1 + p.sigma_d2d * rng.standard_normal(n), 0.1),
                "z_nu": rng.standard_normal(n)}

    # -- numpy twin ---------------------------------------------------------------------------
    def step(self, state, amplitude, shape: PulseShape, variation=None, noise=None) -> np.ndarray:
        p = self.params
        s = np.asarray(state, float)
        a = np.abs(np.asarray(amplitude, float))
        xs = self._ks(variation, noise, s.size) * exposure(a, shape, p.v_set_lo, p.v_set_hi)
        xr = p.k_reset * exposure(a, shape, p.v_reset_lo, p.v_reset_hi)
        # A RESET pulse's falling edge crosses the SET window after the melt: apply that part
        # of the SET exposure last (exact up to the overlap of the ramps on the rising edge).
        ks = self._ks(variation, noise, s.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            fall = np.where(xr > 0, shape.rise * ramp_integral(np.full_like(a, p.v_reset_lo), p.v_set_lo, p.v_set_hi)
                            / np.where(a > 0, a, 1), 0.0)
        xf = ks * fall
        xs = xs - xf
        tot = xs + xr
        with np.errstate(invalid="ignore", divide="ignore"):
            seq = np.where(tot > 0, (xs * self._smax + xr * self._smin) / np.where(tot > 0, tot, 1), s)
        s = seq + (s - seq) * np.exp(-tot)
        return self._smax - (self._smax - s) * np.exp(-xf)

    def apply_counts(self, state, counts, shape: PulseShape, variation=None, noise=None, *,
                     polarity: int = +1) -> np.ndarray:
        """Closed form of ``counts`` identical SET pulses: each multiplies the distance to the
        top by exp(-x), so n of them multiply it by exp(-n x) (exact, the same arithmetic as
        :meth:`step` n times). A write amplitude that reaches the RESET window falls back to
        the pulse-by-pulse loop."""
        return self.counts_stepper(shape, variation, noise, polarity=polarity)(state, counts)

    def counts_stepper(self, shape: PulseShape, variation=None, noise=None, *, polarity: int = +1):
        """:meth:`apply_counts` with its per-device rate ``x`` computed once for every call."""
        p = self.params
        a = abs(polarity * self.v_write)
        if exposure(a, shape, p.v_reset_lo, p.v_reset_hi) > 0:       # pulse by pulse
            base = super().apply_counts
            return lambda state, counts: base(state, counts, shape, variation, noise, polarity=polarity)
        x = None

        def step(state, counts):
            nonlocal x
            s = np.atleast_1d(np.asarray(state, float))
            if x is None:
                x = self._ks(variation, noise, s.size) * float(exposure(a, shape, p.v_set_lo, p.v_set_hi))
            n = np.asarray(counts)
            if n.shape != s.shape or x.shape != s.shape or n.dtype.kind not in "iu":
                return self._smax - (self._smax - s) * np.exp(-np.asarray(n, float) * x)
            # exp only where a device got pulses: elsewhere exp(-0 x) = 1 and d * 1 = d exactly.
            # numpy's own exp (its SIMD exp may differ from the C library's), so the numbers of
            # the whole-array expression on every CPU
            kern = _pulsed_kernels()
            if kern is None:
                on = np.flatnonzero(n)
                out = self._smax - (self._smax - s)
                out[on] = self._smax - (self._smax - s[on]) * np.exp(-n[on].astype(float) * x[on])
                return out
            on, arg = kern[0](n, x)
            out = np.empty_like(s)
            kern[1](s, self._smax, on, np.exp(arg), out)
            return out
        return step

    def set_closed_form(self, g0, n, shape: PulseShape) -> np.ndarray:
        """G_n = Gmax - (Gmax - G0) exp(-n k tau / (Gmax - Gmin)) [S], tau the effective
        pulse duration (flat top plus the above-threshold part of the edges)."""
        p = self.params
        tau = exposure(p.v_write, shape, p.v_set_lo, p.v_set_hi)
        return p.g_max - (p.g_max - np.asarray(g0, float)) * np.exp(-np.asarray(n) * p.k_set * tau / (p.g_max - p.g_min))

    def reset(self, state) -> np.ndarray:
        """Abrupt RESET (melt-quench) to g_min, as a ``v_reset`` pulse does in SPICE."""
        return np.full_like(np.asarray(state, float), self._smin)

    # -- drift and noise ----------------------------------------------------------------------
    def drift_nu(self, state, variation=None) -> np.ndarray:
        """Drift exponent nu [-] of each device (state-dependent mean, d2d spread)."""
        p = self.params
        g = np.maximum(np.asarray(state, float) * 1e-6, 1e-12)
        nu = np.clip(-0.0155 * np.log(g / p.g_max) + 0.0244, 0.049, 0.1)
        if variation is not None and "z_nu" in variation:
            nu = np.maximum(nu * (1 + p.sigma_nu * variation["z_nu"]), 0.0)
        return nu

    def drift_factor(self, state, t, variation=None) -> np.ndarray:
        """(t/t0)^-nu for t >= t0 (1 before t0): pass it as ``dfac`` to ``instance_params``."""
        p = self.params
        t = np.maximum(np.asarray(t, float), p.t0)
        return (t / p.t0) ** (-self.drift_nu(state, variation))

    def program(self, target_g, rng: np.random.Generator) -> np.ndarray:
        """State after programming to ``target_g`` [S] with programming noise
        sigma = max(-1.1731 g^2 + 1.9650 g + 0.2635, 0) uS, g = G_T/Gmax (docs/physics.md)."""
        p = self.params
        gt = np.asarray(target_g, float)
        g = gt / p.g_max
        sig = np.maximum(-1.1731 * g ** 2 + 1.9650 * g + 0.2635, 0.0)
        return self.from_conductance(gt + 1e-6 * sig * rng.standard_normal(gt.shape))

    def read_conductance(self, state, t=None, rng: np.random.Generator | None = None,
                         variation=None) -> np.ndarray:
        """Conductance [S] read at time ``t`` after programming: drift, then 1/f read noise
        sigma = G Q/g^0.65 sqrt(ln((t + t_read)/(2 t_read))) (aihwkit form, check),
        Q/g^0.65 clipped to 0.2, g = G/Gmax."""
        p = self.params
        g = self.to_conductance(state)
        if t is not None:
            g = g * self.drift_factor(state, t, variation)
        if rng is not None:
            tt = p.t0 if t is None else max(float(np.max(t)), p.t0)
            q = np.clip(p.read_noise_q / np.maximum(g / p.g_max, 1e-6) ** 0.65, 0, 0.2)
            sig = g * q * np.sqrt(np.log((tt + p.t_read) / (2 * p.t_read)))
            g = np.maximum(g + sig * rng.standard_normal(g.shape), 0.0)
        return g

"""Column ADCs: an ideal n-bit quantiser and a single-slope (ramp) converter, with INL/DNL.

Layer: models (leaf). Imports numpy and ``models.*`` only.

Transfer convention (both converters): ``lsb = (v_hi - v_lo) / 2^n``; code k covers
``[v_lo + k lsb, v_lo + (k+1) lsb)``, clipped to 0 .. 2^n - 1 (``floor``, not rounding);
:func:`code_to_voltage` returns bin centres. The integrator inverts, so a positive column
charge reads as a low code: map codes to signed outputs in the caller.

Ideal quantiser (``.subckt NAME in code``)::

    in --> Bq: code = min(max(floor((v(in) - v_lo) / lsb), 0), 2^n - 1)   (a voltage = the code)

Single-slope converter: one ramp generator shared by all columns (as in column-parallel
image-sensor ADCs) and, per column, a comparator gating a counter::

    ramp generator (.subckt NAME_ramp ramp en)          per channel (.subckt NAME in ramp en clr code  params: vos=0)

      en --> Bramp: I = en*I_r - (1-en)*g_hold*(v-v_lo)     in ---(+)\\   gate = 0.5 (1 - tanh((v(ramp) - v(in) - vos) / w))
                |                                        ramp --(-)/ comparator --> Bcnt: I = en*I_cnt*gate - clr*g_hold*v(cnt)
       ramp ----+---- C_ramp ---- v_lo                                                      |
                +---- R_out  ---- v_lo  (finite output                               cnt ---+--- C_cnt --- 0
                                         resistance: bowed ramp -> INL)              code = min(max(floor(v(cnt) 2^n), 0), 2^n - 1)

``en`` and ``clr`` are logic voltages (0 / 1 V). The counter is behavioural: it integrates
the comparator output with a current worth 1 V per clock period, so that ``v(cnt)`` is the
number of clock periods during which the ramp was below the input, and the code is its floor
minus ``margin`` (the ramp starts ``margin`` LSBs below ``v_lo``): the same as counting clock edges, without 2^n clock edges for the
simulator to step through. Because the comparator's tanh is odd about the crossing and the
ramp is (nearly) linear, the counted time equals the crossing time whatever the comparator's
width ``w`` (a wide ``w`` costs fewer time points), except within about ``w`` of ``v_lo``
where the tail of the transition is cut off; the twin integrates the same expression and
reproduces that too; the ``margin`` keeps that tail out of the range. Error sources: comparator offset ``vos`` (per channel, an instance
parameter) and ``comp_offset`` (all channels) -> offset; ramp slope error ``gain_error`` ->
gain; ramp-generator output resistance ``r_out`` -> a bowed ramp, INL of about
``2^n T / (8 R_out C_ramp)`` LSB (T the conversion time).

Cost: the comparator width (default 2 LSB) sets how finely ngspice must step through each
crossing; with ``tmax = t_clk`` one transient converts any number of channels at once.

Stated spec of the default RampAdcParams (8 bits, +-0.8 V, 1 ns clock, R_out C_ramp = 50 us),
SPICE with ``tmax = t_clk``: SPEC_INL_LSB / SPEC_DNL_LSB below, no missing codes (endpoint
fit over all transitions); checked against ngspice in tests/test_periphery.py.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from models.errors import ParameterError, ShapeError, check_finite, check_int, check_positive, raise_or_warn
from models.spice_text import fmt

#: Stated linearity spec of the default RampAdcParams [LSB] (bow of the ramp: ~0.17 LSB INL).
SPEC_INL_LSB = 0.5
SPEC_DNL_LSB = 0.5

__all__ = ["SPEC_INL_LSB", "SPEC_DNL_LSB", "QuantizerParams", "RampAdcParams", "quantize", "code_to_voltage", "quantizer_subckt",
           "ramp_subckt", "ramp_channel_subckt", "ramp_library", "ramp_waveform", "ramp_convert",
           "transition_levels", "inl_dnl", "check_adc_range"]



def _check_bits_range(bits, v_lo, v_hi) -> None:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
        raise ParameterError(f"bits must be an integer in 1..16, got {bits!r}")
    check_finite("v_lo", v_lo)
    check_finite("v_hi", v_hi)
    if v_hi <= v_lo:
        raise ParameterError(f"v_hi ({v_hi:g} V) must be above v_lo ({v_lo:g} V)")


class _CodeRange:
    """Code count and width of a converter over [v_lo, v_hi) with ``bits`` bits."""

    bits: int
    v_lo: float
    v_hi: float

    @property
    def n_codes(self) -> int:
        return 1 << self.bits

    @property
    def lsb(self) -> float:
        """(Nominal) code width [V]."""
        return (self.v_hi - self.v_lo) / self.n_codes


@dataclass(frozen=True)
class QuantizerParams(_CodeRange):
    """Ideal n-bit quantiser.

    Attributes
    ----------
    bits : int
        Resolution n.
    v_lo, v_hi : float
        Input range [V]; ``lsb = (v_hi - v_lo) / 2^n``.
    name : str
        Subcircuit name.
    """

    bits: int = 8
    v_lo: float = -0.8
    v_hi: float = 0.8
    name: str = "adc_ideal"

    def __post_init__(self) -> None:
        _check_bits_range(self.bits, self.v_lo, self.v_hi)
        if not self.name.isidentifier():
            raise ParameterError(f"name must be an identifier, got {self.name!r}")



@dataclass(frozen=True)
class RampAdcParams(_CodeRange):
    """Single-slope converter: shared ramp, per-channel comparator and counter.

    Attributes
    ----------
    bits : int
        Resolution n; a conversion lasts 2^n clock periods.
    v_lo, v_hi : float
        Input range [V] (the ramp runs from v_lo to v_hi in 2^n clocks when ideal).
    t_clk : float
        Counter clock period [s].
    comp_width : float
        Comparator transition width ``w`` [V] (tanh scale).
    comp_offset : float
        Comparator offset common to all channels [V] (``vos`` adds per channel).
    gain_error : float
        Relative error of the ramp slope [-] (+0.01: 1 % steeper, codes 1 % low).
    r_out : float
        Output resistance of the ramp current source [ohm] (``math.inf``: ideal ramp).
    c_ramp : float
        Ramp capacitor [F].
    c_cnt : float
        Counter capacitor [F] (sets only the internal current scale).
    g_hold : float
        Conductance of the ramp and counter reset switches [S].
    margin : int
        The ramp starts ``margin`` LSBs below ``v_lo`` and the conversion lasts
        ``2^n + 2 margin`` clocks; the counter subtracts ``margin``. Keeps the comparator's
        smooth transition (about 4 w wide) whole at both ends of the range.
    name : str
        Subcircuit base name (``NAME`` channel, ``NAME_ramp`` generator).
    """

    bits: int = 8
    v_lo: float = -0.8
    v_hi: float = 0.8
    t_clk: float = 1e-9
    comp_width: float = 0.0125
    comp_offset: float = 0.0
    gain_error: float = 0.0
    r_out: float = 50e6
    c_ramp: float = 1e-12
    c_cnt: float = 1e-12
    g_hold: float = 1e-3
    margin: int = 8
    name: str = "adc_ss"

    def __post_init__(self) -> None:
        _check_bits_range(self.bits, self.v_lo, self.v_hi)
        for f in ("t_clk", "comp_width", "c_ramp", "c_cnt", "g_hold"):
            check_positive(f, getattr(self, f))
        if not (self.r_out > 0):
            raise ParameterError(f"r_out must be > 0 (math.inf for an ideal ramp), got {self.r_out!r}")
        if check_int("margin", self.margin) < 0:
            raise ParameterError(f"margin must be an integer >= 0, got {self.margin!r}")
        check_finite("comp_offset", self.comp_offset)
        check_finite("gain_error", self.gain_error)
        if not -0.5 < self.gain_error < 0.5:
            raise ParameterError(f"gain_error must be within +-0.5, got {self.gain_error!r}")
        if not self.name.isidentifier():
            raise ParameterError(f"name must be an identifier, got {self.name!r}")


    @property
    def t_conv(self) -> float:
        """Conversion time (2^n + 2 margin) t_clk [s]."""
        return (self.n_codes + 2 * self.margin) * self.t_clk

    @property
    def v_start(self) -> float:
        """Ramp start voltage v_lo - margin lsb [V]."""
        return self.v_lo - self.margin * self.lsb

    @property
    def slope(self) -> float:
        """Ramp slope at its start [V/s]: lsb per clock times (1 + gain_error)."""
        return self.lsb / self.t_clk * (1 + self.gain_error)

    @property
    def i_ramp(self) -> float:
        """Ramp current [A]."""
        return self.slope * self.c_ramp

    @property
    def i_cnt(self) -> float:
        """Counter current [A]: 1 V on C_cnt per clock period (v(cnt) counts clocks)."""
        return self.c_cnt / self.t_clk


# ----------------------------------------------------------------------------------------------
# Ideal quantiser


def quantize(v: np.ndarray, p: QuantizerParams | RampAdcParams) -> np.ndarray:
    """Ideal codes ``clip(floor((v - v_lo) / lsb), 0, 2^n - 1)`` (int64)."""
    x = (np.asarray(v, dtype=float) - p.v_lo) / p.lsb
    return np.clip(np.floor(x), 0, p.n_codes - 1).astype(np.int64)


def code_to_voltage(codes: np.ndarray, p: QuantizerParams | RampAdcParams) -> np.ndarray:
    """Bin centres ``v_lo + (code + 0.5) lsb`` [V]."""
    return p.v_lo + (np.asarray(codes, dtype=float) + 0.5) * p.lsb


def quantizer_subckt(p: QuantizerParams) -> str:
    """``.subckt NAME in code``: ``v(code)`` is the integer code as a voltage."""
    return "\n".join([
        f".subckt {p.name} in code",
        f"Bq code 0 V = min(max(floor((v(in) - ({fmt(p.v_lo)})) / {fmt(p.lsb)}), 0), {p.n_codes - 1})",
        f".ends {p.name}",
    ])


# ----------------------------------------------------------------------------------------------
# Single-slope converter


def ramp_subckt(p: RampAdcParams) -> str:
    """Shared ramp generator ``.subckt NAME_ramp ramp en``."""
    en = "min(max(v(en), 0), 1)"
    lines = [
        f".subckt {p.name}_ramp ramp en",
        f"Bramp 0 ramp I = {en} * {fmt(p.i_ramp)} - (1 - {en}) * {fmt(p.g_hold)} * (v(ramp) - ({fmt(p.v_start)}))",
        f"Vlo vlo 0 DC {fmt(p.v_start)}",
        f"Cramp ramp vlo {fmt(p.c_ramp)}",
    ]
    if math.isfinite(p.r_out):
        lines.append(f"Rout ramp vlo {fmt(p.r_out)}")
    lines.append(f".ends {p.name}_ramp")
    return "\n".join(lines)


def ramp_channel_subckt(p: RampAdcParams) -> str:
    """Per-column comparator + counter ``.subckt NAME in ramp en clr code params: vos=0``."""
    en = "min(max(v(en), 0), 1)"
    clr = "min(max(v(clr), 0), 1)"
    gate = f"0.5 * (1 - tanh((v(ramp) - v(in) - {fmt(p.comp_offset)} - vos) / {fmt(p.comp_width)}))"
    return "\n".join([
        f".subckt {p.name} in ramp en clr code params: vos=0",
        f"Bcnt 0 cnt I = {en} * {fmt(p.i_cnt)} * {gate} - {clr} * {fmt(p.g_hold)} * v(cnt)",
        f"Ccnt cnt 0 {fmt(p.c_cnt)}",
        "Rdc cnt 0 1e12",  # DC path: with clr as a B-source only, ngspice can flag cnt singular
        f"Bq code 0 V = min(max(floor(v(cnt)) - {p.margin}, 0), {p.n_codes - 1})",
        f".ends {p.name}",
    ])


def ramp_library(p: RampAdcParams) -> str:
    """Both subcircuits of the single-slope converter."""
    return ramp_subckt(p) + "\n" + ramp_channel_subckt(p)


def ramp_waveform(p: RampAdcParams, t: np.ndarray) -> np.ndarray:
    """Ramp voltage [V] at times ``t`` [s] after its (effective) start."""
    t = np.maximum(np.asarray(t, dtype=float), 0.0)
    if math.isfinite(p.r_out):
        tau = p.r_out * p.c_ramp
        return p.v_start + p.i_ramp * p.r_out * -np.expm1(-t / tau)
    return p.v_start + p.slope * t


def ramp_convert(p: RampAdcParams, v_in: np.ndarray, vos: np.ndarray | float = 0.0, *,
                 t_window: float | None = None, steps_per_clk: int = 16,
                 return_count: bool = False) -> np.ndarray:
    """Numpy twin of a conversion: codes for inputs ``v_in`` [V] (vectorised).

    Integrates the same comparator gate as the SPICE channel over the same ramp for
    ``t_window`` (default ``t_conv``) on a grid of ``steps_per_clk`` points per clock,
    then floors. ``vos`` is the per-channel offset [V] (broadcast with ``v_in``).
    ``return_count=True`` returns the unfloored count (clock periods) instead.
    """
    v = np.asarray(v_in, dtype=float)
    o = np.broadcast_to(np.asarray(vos, dtype=float), v.shape)
    tw = p.t_conv if t_window is None else float(t_window)
    n = int(math.ceil(tw / p.t_clk * steps_per_clk))
    t = np.linspace(0.0, tw, n + 1)
    r = ramp_waveform(p, t)
    flat_v, flat_o = v.reshape(-1), o.reshape(-1)
    count = np.empty(flat_v.shape)
    chunk = max(1, 2_000_000 // (n + 1))
    for s in range(0, flat_v.size, chunk):
        x = (r[None, :] - flat_v[s:s + chunk, None] - p.comp_offset - flat_o[s:s + chunk, None]) / p.comp_width
        gate = 0.5 * (1 - np.tanh(x))
        count[s:s + chunk] = np.trapezoid(gate, t, axis=1) / p.t_clk
    count = count.reshape(v.shape)
    if return_count:
        return count - p.margin
    return np.clip(np.floor(count) - p.margin, 0, p.n_codes - 1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Static linearity


def transition_levels(v: np.ndarray, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Code transition levels ``T_k`` (k = 1 .. n_codes - 1) from a monotone input sweep.

    ``T_k`` is the midpoint between the last input below code k and the first input at or
    above it (resolution: the sweep step); NaN if code k is never reached.
    """
    v = np.asarray(v, dtype=float)
    c = np.asarray(codes)
    if v.shape != c.shape or v.ndim != 1:
        raise ShapeError(f"v and codes must be equal 1-D arrays, got {v.shape} and {c.shape}")
    order = np.argsort(v)
    v, c = v[order], c[order]
    reached = np.maximum.accumulate(c)
    out = np.full(n_codes - 1, np.nan)
    for k in range(1, n_codes):
        idx = np.searchsorted(reached, k, side="left")
        if 0 < idx < len(v):
            out[k - 1] = 0.5 * (v[idx - 1] + v[idx])
    return out


def inl_dnl(levels: np.ndarray, p: QuantizerParams | RampAdcParams | None = None, *,
            exclude_ends: int = 0) -> dict:
    """INL and DNL [LSB] from transition levels (endpoint fit), plus offset and gain errors.

    Returns ``dnl`` (per code 1 .. n-2), ``inl`` (per transition), ``dnl_max``, ``inl_max``
    (max absolute), ``missing_codes`` (DNL <= -0.9 or unreached), and, with ``p``,
    ``offset_lsb`` (first kept transition vs ideal ``v_lo + k lsb``) and ``gain_error``
    (endpoint span vs ideal). ``levels[i]`` is transition k = i + 1; ``exclude_ends`` drops
    that many transitions at each end from the fit and the statistics.
    """
    t = np.array(levels, dtype=float)
    if exclude_ends:
        t[:exclude_ends] = np.nan
        t[len(t) - exclude_ends:] = np.nan
    ok = np.isfinite(t)
    if ok.sum() < 3:
        raise ParameterError("fewer than 3 transition levels: sweep does not cover the range")
    k = np.nonzero(ok)[0]
    first, last = k[0], k[-1]
    lsb_fit = (t[last] - t[first]) / (last - first)
    dnl = np.diff(t) / lsb_fit - 1  # dnl[i]: code i + 1
    inl = (t - t[first]) / lsb_fit - (np.arange(len(t)) - first)
    out = {
        "dnl": dnl, "inl": inl,
        "dnl_max": float(np.nanmax(np.abs(dnl))), "inl_max": float(np.nanmax(np.abs(inl))),
        "missing_codes": int(np.sum(~ok[first:last + 1]) + np.sum(dnl[np.isfinite(dnl)] <= -0.9)),
        "lsb_fit": float(lsb_fit),
    }
    if p is not None:
        out["offset_lsb"] = float((t[first] - (p.v_lo + (first + 1) * p.lsb)) / p.lsb)
        out["gain_error"] = float(lsb_fit / p.lsb - 1)
    return out


def check_adc_range(p: QuantizerParams | RampAdcParams, v_min: float, v_max: float, *,
                    action: str = "raise") -> float:
    """Check that outputs in ``[v_min, v_max]`` [V] fit the ADC range ``[v_lo, v_hi)``.

    Returns the fraction of the ADC range used. Out of range: raises :class:`ParameterError`
    (``action="raise"``) or warns (``"warn"``) with the numbers; under 1/8 of the range (fewer
    than n - 3 effective bits) it warns.
    """
    if action not in ("raise", "warn"):
        raise ParameterError(f"action must be 'raise' or 'warn', got {action!r}")
    v_min, v_max = check_finite("v_min", v_min), check_finite("v_max", v_max)
    if v_max < v_min:
        v_min, v_max = v_max, v_min
    top = p.v_hi - p.lsb  # the last code starts here
    used = (v_max - v_min) / (p.v_hi - p.v_lo)
    if v_min < p.v_lo or v_max >= p.v_hi:
        msg = (f"ADC range [{p.v_lo:.4g}, {p.v_hi:.4g}) V cannot hold outputs [{v_min:.4g}, {v_max:.4g}] V: "
               f"{'below v_lo by %.4g V' % (p.v_lo - v_min) if v_min < p.v_lo else ''}"
               f"{' and ' if v_min < p.v_lo and v_max >= p.v_hi else ''}"
               f"{'above the last code (%.4g V) by %.4g V' % (top, v_max - top) if v_max >= p.v_hi else ''}"
               f"; codes would clip at 0 / {p.n_codes - 1}")
        raise_or_warn(msg, action)
    elif used < 1 / 8:
        warnings.warn(f"outputs [{v_min:.4g}, {v_max:.4g}] V use {100 * used:.2g} % of the ADC range "
                      f"[{p.v_lo:.4g}, {p.v_hi:.4g}) V: fewer than {p.bits - 3} effective bits",
                      RuntimeWarning, stacklevel=2)
    return used

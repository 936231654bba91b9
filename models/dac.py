"""Input encodings (DACs) of an analog tile: integer codes -> per-row voltage waveforms.

Layer: models (leaf). Imports numpy and ``models.*`` only.

Three encodings of an n-bit magnitude ``k`` (0 .. 2^n - 1) at read voltage ``V``:

``amplitude``  one pulse of level ``V k / (2^n - 1)`` and area ``level * pulse_slots * t_lsb``.
``pwm``        one pulse at level ``V`` lasting ``k`` LSBs: area ``V k t_lsb`` (IBM's chips).
``bitserial``  n bit slots, LSB first; slot b carries a pulse at ``V`` (area
               ``V pulse_slots t_lsb``) if bit b of k is set. Each slot is integrated and
               converted on its own; :func:`shift_and_add` combines the n results digitally.

Every pulse is a trapezoid whose corners lie on the grid of ``t_lsb`` (edges last one
``t_lsb``), so the area is exact whatever the edges, and all rows share one set of breakpoints
(at most 2^n + 1 per phase for PWM)::

        V  ____________                      area = V * k * t_lsb
          /            \\
    0 ___/              \\________
        t0  t0+tl   t0+k tl  t0+(k+1) tl

Signed inputs (``signed="phases"``): phase 1 drives the rows with positive codes at ``+V``,
phase 2 the rows with negative codes at ``-V`` (reversed polarity, so that one integrator
accumulates the signed sum over both phases; a device with an asymmetric I-V sees each row at
one polarity only). ``signed="unsigned"`` has one phase and rejects negative codes.

Numpy twin: :func:`volt_seconds` gives the integral of each row's voltage [V s]; with an
ideal virtual ground the charge into column j is ``sum_i G_ij volt_seconds_i``.

SPICE: :func:`row_waveforms` gives the corners of each row; the read-chain builder
(:mod:`netlists.readchain`) turns them into ``PWL`` sources (a breakpoint at every corner: the
transient lands on each, so the integrated charge is exact) or ``pwl(time, ...)`` B-sources
(no breakpoints: fewer time points, but a corner between two time points is integrated
approximately).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import ParameterError, ShapeError, check_int, check_positive, real_array

__all__ = ["ENCODINGS", "SIGNED_MODES", "DacParams", "to_codes", "from_codes", "phase_length",
           "read_duration", "bit_windows", "volt_seconds", "volt_second_moments", "row_waveforms", "union_times",
           "sample_waveforms", "shift_and_add"]

ENCODINGS = ("amplitude", "pwm", "bitserial")
SIGNED_MODES = ("phases", "unsigned")



@dataclass(frozen=True)
class DacParams:
    """Input encoding.

    Attributes
    ----------
    encoding : str
        ``"amplitude"``, ``"pwm"`` or ``"bitserial"``.
    bits : int
        Magnitude bits n (codes 0 .. 2^n - 1; a sign on top with ``signed="phases"``).
    v_read : float
        Read voltage: the full-scale level of every encoding [V].
    t_lsb : float
        Time quantum [s]: PWM duration per LSB, and the edge time of every pulse.
    pulse_slots : int
        Amplitude and bit-serial pulses have area ``level * pulse_slots * t_lsb``.
    gap_slots : int
        Idle ``t_lsb`` slots after each phase (and each bit slot).
    signed : str
        ``"phases"`` or ``"unsigned"`` (see the module docstring).
    """

    encoding: str = "pwm"
    bits: int = 8
    v_read: float = 0.2
    t_lsb: float = 1e-9
    pulse_slots: int = 8
    gap_slots: int = 2
    signed: str = "phases"

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ParameterError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.signed not in SIGNED_MODES:
            raise ParameterError(f"signed must be one of {SIGNED_MODES}, got {self.signed!r}")
        if check_int("bits", self.bits) > 16 or self.bits < 1:
            raise ParameterError(f"bits must be an integer in 1..16, got {self.bits!r}")
        check_positive("v_read", self.v_read)
        check_positive("t_lsb", self.t_lsb)
        check_int("pulse_slots", self.pulse_slots, minimum=1)
        check_int("gap_slots", self.gap_slots, minimum=0)

    @property
    def max_code(self) -> int:
        """Largest magnitude code 2^n - 1."""
        return (1 << self.bits) - 1

    @property
    def n_phases(self) -> int:
        return 2 if self.signed == "phases" else 1


def to_codes(x: np.ndarray, bits: int) -> np.ndarray:
    """Floats in [-1, 1] -> signed integer codes ``round(clip(x) (2^bits - 1))``."""
    m = (1 << int(bits)) - 1
    return np.rint(np.clip(np.asarray(x, dtype=float), -1, 1) * m).astype(np.int64)


def from_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Signed integer codes -> floats ``codes / (2^bits - 1)``."""
    return np.asarray(codes, dtype=float) / ((1 << int(bits)) - 1)


def _check_codes(codes: np.ndarray, p: DacParams) -> np.ndarray:
    if np.asarray(codes).dtype.kind == "f" and not np.all(np.mod(np.nan_to_num(codes), 1) == 0):
        raise ParameterError("input codes must be integers (use to_codes for floats)")
    c = real_array("input codes", codes, integer=True)
    if np.any(np.abs(c) > p.max_code):
        raise ParameterError(f"|code| up to {int(np.abs(c).max())} exceeds 2^{p.bits} - 1 = {p.max_code}")
    if p.signed == "unsigned" and np.any(c < 0):
        raise ParameterError("negative codes with signed='unsigned'")
    return c.astype(np.int64)


def _slot_len(p: DacParams) -> int:
    """Length of one bit slot (bit-serial) [t_lsb]."""
    return p.pulse_slots + 1 + p.gap_slots


def phase_length(p: DacParams) -> float:
    """Duration of one phase [s] (pulse slots plus the gap)."""
    if p.encoding == "pwm":
        n = p.max_code + 1 + p.gap_slots
    elif p.encoding == "amplitude":
        n = p.pulse_slots + 1 + p.gap_slots
    else:
        n = p.bits * _slot_len(p)
    return n * p.t_lsb


def read_duration(p: DacParams) -> float:
    """Duration of a whole read, all phases [s]."""
    return p.n_phases * phase_length(p)


def bit_windows(p: DacParams, t_start: float = 0.0) -> np.ndarray:
    """Bit-serial: ``(n_phases, bits, 2)`` start/end times [s] of each bit slot (gap included)."""
    if p.encoding != "bitserial":
        raise ParameterError("bit_windows needs encoding='bitserial'")
    out = np.empty((p.n_phases, p.bits, 2))
    for ph in range(p.n_phases):
        for b in range(p.bits):
            t0 = t_start + ph * phase_length(p) + b * _slot_len(p) * p.t_lsb
            out[ph, b] = (t0, t0 + _slot_len(p) * p.t_lsb)
    return out


def volt_seconds(codes: np.ndarray, p: DacParams) -> np.ndarray:
    """Signed integral of each row's voltage [V s] (the numpy twin of the DAC).

    ``codes`` has shape ``(..., rows)``. Returns the same shape for amplitude and PWM, and
    ``(bits, ..., rows)`` (one entry per bit slot, both phases summed) for bit-serial.
    """
    c = _check_codes(codes, p)
    s, k = np.sign(c), np.abs(c)
    if p.encoding == "pwm":
        return s * p.v_read * k * p.t_lsb
    if p.encoding == "amplitude":
        return s * p.v_read * (k / p.max_code) * p.pulse_slots * p.t_lsb
    bits = (k[None, ...] >> np.arange(p.bits).reshape((-1,) + (1,) * k.ndim)) & 1
    return s[None, ...] * bits * p.v_read * p.pulse_slots * p.t_lsb


def volt_second_moments(codes: np.ndarray, p: DacParams, t_end: float,
                        t_start: float = 0.0) -> np.ndarray:
    """``integral of v_i(t) (t_end - t) dt`` per row [V s^2] (same shape as ``codes``).

    With pulses starting at ``t_start`` (as in :func:`row_waveforms`). The integrator twin uses
    it for the leak of a finite-gain op-amp (charge that arrives early leaks longer). Every
    pulse is symmetric, so its moment is its area times ``t_end`` minus its centre.
    """
    c = _check_codes(codes, p)
    s, k = np.sign(c), np.abs(c)
    tl = p.t_lsb
    t0 = t_start + np.where(c < 0, phase_length(p), 0.0)
    if p.encoding == "pwm":
        return s * p.v_read * k * tl * (t_end - (t0 + (k + 1) * tl / 2))
    if p.encoding == "amplitude":
        area = s * p.v_read * (k / p.max_code) * p.pulse_slots * tl
        return area * (t_end - (t0 + (p.pulse_slots + 1) * tl / 2))
    out = np.zeros(c.shape)
    for b in range(p.bits):
        centre = t0 + b * _slot_len(p) * tl + (p.pulse_slots + 1) * tl / 2
        out += s * ((k >> b) & 1) * p.v_read * p.pulse_slots * tl * (t_end - centre)
    return out


def _pulse(t0: float, level: float, n: int, tl: float) -> list[tuple[float, float]]:
    """Trapezoid of area ``level * n * tl`` starting at t0 (corners on the tl grid)."""
    if n == 1:
        return [(t0, 0.0), (t0 + tl, level), (t0 + 2 * tl, 0.0)]
    return [(t0, 0.0), (t0 + tl, level), (t0 + n * tl, level), (t0 + (n + 1) * tl, 0.0)]


def row_waveforms(codes: np.ndarray, p: DacParams, t_start: float = 0.0) -> list[np.ndarray]:
    """PWL corners of each row: a list (one per row) of ``(n_corners, 2)`` arrays ``(t, v)``.

    ``codes`` is 1-D (one input vector). A row with code 0 is ``[[0, 0]]`` (held at 0 V).
    """
    c = _check_codes(codes, p)
    if c.ndim != 1:
        raise ShapeError(f"codes must be 1-D (rows,), got shape {c.shape}")
    out = []
    tl = p.t_lsb
    for code in c:
        pts: list[tuple[float, float]] = [(0.0, 0.0)]
        if code != 0:
            ph = 0 if code > 0 else 1
            sign = 1.0 if code > 0 else -1.0
            t0 = t_start + ph * phase_length(p)
            k = int(abs(code))
            if p.encoding == "pwm":
                pts += _pulse(t0, sign * p.v_read, k, tl)
            elif p.encoding == "amplitude":
                pts += _pulse(t0, sign * p.v_read * k / p.max_code, p.pulse_slots, tl)
            else:
                for b in range(p.bits):
                    if (k >> b) & 1:
                        pts += _pulse(t0 + b * _slot_len(p) * tl, sign * p.v_read, p.pulse_slots, tl)
        arr = np.array(pts)
        keep = np.concatenate([[True], np.diff(arr[:, 0]) > 0])  # drop a repeated t = 0
        out.append(arr[keep])
    return out


def union_times(waves: list[np.ndarray], t_end: float) -> np.ndarray:
    """All corner times of ``waves`` plus 0 and ``t_end``, sorted and unique [s]."""
    ts = np.concatenate([w[:, 0] for w in waves] + [np.array([0.0, t_end])])
    return np.unique(ts[ts <= t_end])


def sample_waveforms(waves: list[np.ndarray], t: np.ndarray) -> np.ndarray:
    """Row voltages at times ``t``: shape ``(rows, len(t))`` [V] (held after the last corner)."""
    return np.stack([np.interp(t, w[:, 0], w[:, 1]) for w in waves])


def shift_and_add(per_bit: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Bit-serial recombination: ``sum_b 2^b per_bit[b]`` over the first axis (LSB first)."""
    y = np.asarray(per_bit, dtype=float)
    nb = y.shape[0] if bits is None else int(bits)
    if y.shape[0] != nb:
        raise ShapeError(f"per_bit has {y.shape[0]} bit slots, expected {nb}")
    w = (2.0 ** np.arange(nb)).reshape((-1,) + (1,) * (y.ndim - 1))
    return (w * y).sum(axis=0)

"""Write pulses: their shape, the switching-threshold ramp every device shares, and the
closed-form exposure of a device to one pulse.

Layer: models (leaf). A pulse is a trapezoid (:class:`PulseShape`): rise, flat top ``width``,
fall, centred in a slot of length ``period``. Devices switch at ``rate(s) * F(|v|)`` with ``F``
a C0 ramp from 0 at ``lo`` to 1 at ``hi`` (:func:`ramp`): exactly zero below ``lo``, so a
half-selected cell does not move, and constant above ``hi``. :func:`exposure` integrates ``F``
over one trapezoid in closed form; :func:`pulse_corners` gives the corners of a pulse train for
a piecewise-linear source, with extra corners where the edges cross the ramp's knots so that
the simulator steps on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import ParameterError, check_positive

__all__ = ["PulseShape", "ramp", "ramp_integral", "exposure", "pulse_corners", "MASK_BITS"]

#: Slots per sub-phase up to which a line's pulses travel as the bits of one integer (bit t: slot t).
MASK_BITS = 16


@dataclass(frozen=True)
class PulseShape:
    """Trapezoidal write pulse inside a time slot.

    Attributes
    ----------
    width : float
        Flat-top duration [s].
    rise : float
        Rise time, equal to the fall time [s].
    period : float
        Slot length [s]; the pulse is centred in its slot.
    tstep : float
        Largest SPICE time step [s] (``.tran`` TMAX). A pulse shorter than it is rejected.
    """

    width: float = 50e-9
    rise: float = 5e-9
    period: float = 100e-9
    tstep: float = 10e-9

    def __post_init__(self) -> None:
        check_positive("width", self.width)
        check_positive("rise", self.rise)
        check_positive("period", self.period)
        check_positive("tstep", self.tstep)
        if self.width < self.tstep:
            raise ParameterError(f"pulse width {self.width:g} s is shorter than the time step "
                                 f"tstep {self.tstep:g} s: SPICE would step over it")
        if self.period < self.width + 2 * self.rise:
            raise ParameterError(f"period {self.period:g} s is shorter than the pulse "
                                 f"(width + 2 rise = {self.width + 2 * self.rise:g} s)")

    @property
    def lead(self) -> float:
        """Delay from slot start to the start of the rise [s]."""
        return 0.5 * (self.period - self.width - 2 * self.rise)


def ramp(v, lo: float, hi: float) -> np.ndarray:
    """The switching threshold F(v): 0 below ``lo``, 1 above ``hi``, linear between."""
    return np.clip((np.asarray(v, float) - lo) / (hi - lo), 0.0, 1.0)


def ramp_integral(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """int_0^a ramp(x, lo, hi) dx for a >= 0 (closed form) [V]."""
    d = hi - lo
    return np.where(a <= lo, 0.0,
                    np.where(a <= hi, (a - lo) ** 2 / (2 * d), d / 2 + (a - hi)))


def exposure(amplitude, shape: PulseShape, lo: float, hi: float) -> np.ndarray:
    """Time-integral of ``ramp(v(t), lo, hi)`` over one trapezoidal pulse of ``amplitude`` [s].

    Only the positive part counts: pass ``-amplitude`` for the negative polarity.
    """
    a = np.maximum(np.asarray(amplitude, float), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ramp_part = np.where(a > 0, 2 * shape.rise * ramp_integral(a, lo, hi) / np.where(a > 0, a, 1), 0.0)
    return shape.width * ramp(a, lo, hi) + ramp_part


def pulse_corners(amplitudes, shape: PulseShape, *, base: float = 0.0, knots=()) -> tuple[np.ndarray, np.ndarray]:
    """Corner times [s] and voltages [V] of a pulse train, one slot per amplitude (0: no pulse).

    The waveform sits at ``base`` between pulses and holds it after the last corner. ``knots``
    (magnitudes [V]) add collinear corners where the edges cross them: a simulator puts a
    breakpoint at every corner, so the kinks of a threshold ramp F(v(t)) fall on time points
    and the integration over the edges is exact.
    """
    pts = [(0.0, base)]
    for k, a in enumerate(np.asarray(amplitudes, float)):
        if a == 0:
            continue
        t = k * shape.period + shape.lead
        fr = sorted(float(v) / abs(a) for v in knots if 0 < float(v) / abs(a) < 1)
        t_fall = t + shape.rise + shape.width
        pts += [(t, base)] + [(t + shape.rise * f, base + a * f) for f in fr]
        pts += [(t + shape.rise, base + a), (t_fall, base + a)]
        pts += [(t_fall + shape.rise * (1 - f), base + a * f) for f in reversed(fr)]
        pts += [(t + 2 * shape.rise + shape.width, base)]
    arr = np.array(pts, dtype=float)
    return arr[:, 0], arr[:, 1]

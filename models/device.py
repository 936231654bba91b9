"""The common contract of the device compact models, and the registry of devices.

Layer: models (leaf). Imports numpy and ``models.*`` only.

Every device lives in one file (``models/pcm.py``, ``rram.py``, ``ecram.py``, ``cap3t1c.py``,
``linear.py``) with three renderings of the same equations: a frozen parameter dataclass, an
ngspice subcircuit (text), and a numpy twin vectorised over arrays of devices. The registry
below maps a name to a factory of the model with its preset parameters.

Design contract (what the array builders and the update phase rely on)
----------------------------------------------------------------------
Ports
    Two-terminal devices (``pcm``, ``rram``, ``linear``) have ports ``(p n)``; the cell current
    flows from ``p`` to ``n`` through the cell and a positive ``v(p,n)`` is a positive (SET /
    potentiating) pulse. ``ecram`` has ``(p n g)``: channel ``p -> n``, gate ``g`` written
    against ``n``. ``cap3t1c`` has ``(p n up dn vdd)``: read-FET channel ``p -> n``, pull-up
    PMOS gate ``up`` (active low), pull-down NMOS gate ``dn`` (active high), supply ``vdd``;
    ground is node ``0``. ``DeviceModel.ports`` lists them in order.
State
    Each instance keeps its state on the internal node ``s`` (read it back as
    ``v(x<inst>.s)``), in O(1) units (``pcm``/``linear``/``ecram``: G in uS; ``rram``: gap
    in nm; ``cap3t1c``: the capacitor voltage in V). The state node is a capacitor with
    ``IC={s0}``: run the transient with ``uic``. ``s0`` is an instance parameter, so the next
    phase writes the read-back state as ``s0``. Exception: ``cap3t1c`` (real FETs on the
    state node) takes ``.ic v(x<inst>.s)=...`` and a transient without ``uic``.
Instance parameters
    One ``.subckt NAME ports params: ...`` serves a whole array. Per-instance values (initial
    state, device-to-device multipliers, this phase's cycle-to-cycle multipliers, drift factor)
    are instance parameters; ``DeviceModel.instance_params`` returns them as arrays, one value
    per device. Numbers are plain SI, written ``f"{x:.12g}"`` (never SPICE suffixes).
Randomness
    Drawn in Python from an explicit ``numpy.random.Generator``, never in SPICE, so SPICE and
    twin see the same draws: ``draw_variation(n, rng)`` once per array (device-to-device),
    ``draw_noise(n, rng)`` once per update phase (cycle-to-cycle: ONE step multiplier per
    device per phase, held for all pulses of that phase).
Pulses
    A pulse is a trapezoid (:class:`PulseShape`): rise, flat top ``width``, fall, centred in a
    slot of length ``period``. The twin takes the same amplitudes per device and slot
    (``amplitudes`` of shape (n_devices, n_slots), 0 for no pulse) or counts of full-selected
    pulses, and reproduces the state after each slot. Switching rates are
    ``rate(s) * F(|v|)`` with ``F`` a C0 ramp from 0 at ``v_lo`` to 1 at ``v_hi``
    (``min(max((|v|-v_lo)/(v_hi-v_lo),0),1)``): exactly zero below ``v_lo``, so a half-selected
    cell (``v_write/2 < v_lo``) does not move at all, and constant above ``v_hi``, so the state
    changes at a piecewise-constant rate and the time step can stay large. The twin integrates
    ``F`` over the trapezoid in closed form (:func:`exposure`).
Reads
    ``conductance(state)`` [S] at the device's read voltage ``v_read``; ``current(state, v)``
    [A] its I-V; ``to_conductance`` / ``from_conductance`` convert state <-> conductance.
Integration (measured, ngspice 46)
    Benches use ``method=gear``, TMAX = ``PulseShape.tstep`` and PWL points where the edges cross
    the ramp knots (``DeviceModel.knots``; :func:`pwl_text`): SPICE then matches the twin to
    1e-3 of a step. Without the knots the kinks of F(v(t)) fall between time points: gear
    over-integrates by ~1 % per pulse, trap is 0.1 % for PCM but non-monotone (25 % of a step)
    for the windowed linear/ECRAM cells. RESET pulses are stiff: use gear.
Performance of update phases
    ``subckt(live_current=False)`` replaces the cell's current B-source by a resistor at the
    phase-start conductance (one B-source per cell). Measured on a 64 x 64 PCM array, 1 ohm
    wires, 10 slots (cosim.characterize.devices.pcm_array_update_experiment): ~19-21 s, 223 time points,
    either way; see the report in that module. The cost is time points (ngspice cuts the step
    to 0.1 x the gap after every PWL breakpoint: ~20 points per slot) times per-iteration
    matrix load + refactor (~40 ms at 64 x 64).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from models.errors import ParameterError, ShapeError, check_positive

__all__ = ["fmt", "PulseShape", "ramp", "ramp_spice", "exposure", "pwl_text", "DeviceModel",
           "MicroSiemensDevice", "REGISTRY", "get_device", "device_names"]


def fmt(x: float) -> str:
    """Plain SI number for SPICE (``1e-06``, never ``1u``: in SPICE ``1M`` is milli)."""
    return f"{float(x):.12g}"


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


def ramp_spice(expr: str, lo: float, hi: float) -> str:
    """SPICE text of ``ramp(expr, lo, hi)``."""
    return f"min(max(({expr}-{fmt(lo)})*{fmt(1.0 / (hi - lo))},0),1)"


def _ramp_integral(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """int_0^a ramp(x, lo, hi) dx for a >= 0 (closed form)."""
    d = hi - lo
    return np.where(a <= lo, 0.0,
                    np.where(a <= hi, (a - lo) ** 2 / (2 * d), d / 2 + (a - hi)))


def exposure(amplitude, shape: PulseShape, lo: float, hi: float) -> np.ndarray:
    """Time-integral of ``ramp(v(t), lo, hi)`` over one trapezoidal pulse of ``amplitude`` [s].

    Only the positive part counts: pass ``-amplitude`` for the negative polarity.
    """
    a = np.maximum(np.asarray(amplitude, float), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ramp_part = np.where(a > 0, 2 * shape.rise * _ramp_integral(a, lo, hi) / np.where(a > 0, a, 1), 0.0)
    return shape.width * ramp(a, lo, hi) + ramp_part


def pwl_text(amplitudes, shape: PulseShape, *, base: float = 0.0, knots=()) -> str:
    """PWL point list (``t v t v ...``) of a pulse train, one slot per amplitude (0: no pulse).

    The source sits at ``base`` between pulses and holds it after the last point. ``knots``
    (magnitudes [V]) add collinear points where the edges cross them: ngspice puts a breakpoint
    at every PWL point, so the kinks of a threshold ramp F(v(t)) fall on time points and the
    integration over the edges is exact (measured: SPICE vs twin 1e-4 per pulse with knots,
    up to 1-25 % of a step without, gear or trap).
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
    return " ".join(f"{fmt(t)} {fmt(v)}" for t, v in pts)


class DeviceModel(abc.ABC):
    """A device compact model: SPICE subcircuit plus numpy twin of the same equations.

    Subclasses set ``name``, ``ports``, ``v_write`` [V], ``v_threshold`` [V] (below it nothing
    switches), ``v_read`` [V] and ``params`` (their frozen parameter dataclass), and implement
    the abstract methods. States are numpy arrays (one entry per device).
    """

    name: str = ""
    ports: tuple[str, ...] = ("p", "n")
    v_write: float = 1.0
    v_threshold: float = 0.6
    v_read: float = 0.2
    #: Which ports carry the write pulse in the characterisation bench: (pos, neg).
    write_ports: tuple[str, str] = ("p", "n")
    #: Voltage magnitudes where the switching ramps kink (breakpoints for ``pwl_text``).
    knots: tuple[float, ...] = ()

    @property
    def subckt_name(self) -> str:
        return f"{self.name}_cell"

    # -- SPICE --------------------------------------------------------------------------------
    @abc.abstractmethod
    def subckt(self, *, live_current: bool = True) -> str:
        """The ``.subckt`` definition. ``live_current=False`` makes the cell current a resistor
        at the phase-start conductance (instance parameter), for fast update phases."""

    @abc.abstractmethod
    def instance_params(self, state, variation: Mapping[str, np.ndarray] | None = None,
                        noise: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Instance parameters (name -> array, one per device) for states ``state``."""

    def model_cards(self) -> str:
        """``.model`` lines the subcircuit needs (none for behavioural cells)."""
        return ""

    # -- randomness ---------------------------------------------------------------------------
    def draw_variation(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Device-to-device variation of ``n`` devices (once per array)."""
        return {}

    def draw_noise(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Cycle-to-cycle noise of ``n`` devices for one update phase."""
        return {}

    # -- numpy twin ---------------------------------------------------------------------------
    @abc.abstractmethod
    def to_conductance(self, state) -> np.ndarray:
        """Read conductance [S] of ``state``."""

    @abc.abstractmethod
    def from_conductance(self, g) -> np.ndarray:
        """State giving read conductance ``g`` [S] (clipped to the device range)."""

    def conductance(self, state) -> np.ndarray:
        """Read conductance at ``v_read`` [S]."""
        return self.to_conductance(state)

    @abc.abstractmethod
    def current(self, state, v) -> np.ndarray:
        """Cell current [A] at voltage ``v`` [V] (read regime: state held)."""

    @abc.abstractmethod
    def step(self, state, amplitude, shape: PulseShape, variation=None, noise=None) -> np.ndarray:
        """State after one slot holding a pulse of ``amplitude`` [V] per device (0: none)."""

    @property
    @abc.abstractmethod
    def state_range(self) -> tuple[float, float]:
        """(lowest, highest) state."""

    def trajectory(self, state, amplitudes, shape: PulseShape, variation=None,
                   noise=None) -> np.ndarray:
        """States after each slot, shape (n_devices, n_slots + 1) (column 0 is ``state``)."""
        s = np.atleast_1d(np.asarray(state, float)).copy()
        amps = np.atleast_2d(np.asarray(amplitudes, float))
        if amps.shape[0] != s.shape[0]:
            raise ShapeError(f"amplitudes has {amps.shape[0]} rows for {s.shape[0]} devices")
        out = [s]
        for k in range(amps.shape[1]):
            s = self.step(s, amps[:, k], shape, variation, noise)
            out.append(s)
        return np.stack(out, axis=1)

    def apply_pulses(self, state, amplitudes, shape: PulseShape, variation=None,
                     noise=None) -> np.ndarray:
        """State after the pulse train ``amplitudes`` (n_devices, n_slots)."""
        return self.trajectory(state, amplitudes, shape, variation, noise)[:, -1]

    def apply_counts(self, state, counts, shape: PulseShape, variation=None, noise=None, *,
                     polarity: int = +1) -> np.ndarray:
        """State after ``counts`` full-selected pulses (``polarity * v_write``) per device."""
        counts = np.asarray(counts, int)
        s = np.atleast_1d(np.asarray(state, float)).copy()
        for k in range(int(counts.max(initial=0))):
            s = self.step(s, np.where(counts > k, polarity * self.v_write, 0.0), shape, variation, noise)
        return s

    # -- characterisation benches (SPICE text) ------------------------------------------------
    def pulse_deck(self, state, amplitudes, shape: PulseShape, variation=None, noise=None,
                   *, live_current: bool = True, method: str = "gear") -> str:
        """A deck driving device i with the pulse train ``amplitudes[i]`` across its write
        ports; saves ``v(x<i>.s)``. Run it and sample at ``(k+1) * shape.period``."""
        s = np.atleast_1d(np.asarray(state, float))
        amps = np.atleast_2d(np.asarray(amplitudes, float))
        inst = self.instance_params(s, variation, noise)
        lines = [f"* {self.name} pulse bench", self.model_cards(), self.subckt(live_current=live_current)]
        for i in range(s.size):
            lines += self._bench_instance(i, inst, f"PWL({pwl_text(amps[i], shape, knots=self.knots)})")
        tstop = amps.shape[1] * shape.period
        lines += [f".options klu method={method}", f".tran {fmt(shape.tstep)} {fmt(tstop)} 0 "
                  f"{fmt(shape.tstep)} uic",
                  ".save " + " ".join(f"v(x{i}.s)" for i in range(s.size)), ".end"]
        return "\n".join(ln for ln in lines if ln)

    def iv_deck(self, state, v_max: float, *, points: int = 41) -> str:
        """A deck sweeping every device from ``-v_max`` to ``v_max`` (slow triangle, state held
        as long as ``v_max`` stays below the threshold); saves ``i(vr<i>)`` and ``v(a<i>)``."""
        s = np.atleast_1d(np.asarray(state, float))
        inst = self.instance_params(s)
        T = 1e-6
        pwl = f"PWL(0 0 {fmt(T)} {fmt(-v_max)} {fmt(3 * T)} {fmt(v_max)} {fmt(4 * T)} 0)"
        lines = [f"* {self.name} I-V bench", self.model_cards(), self.subckt()]
        for i in range(s.size):
            lines += self._bench_instance(i, inst, pwl, read=True)
        lines += [".options klu method=gear", f".tran {fmt(4 * T / points)} {fmt(4 * T)} 0 "
                  f"{fmt(4 * T / points)} uic",
                  ".save " + " ".join(f"v(a{i}) i(vr{i}) v(x{i}.s)" for i in range(s.size)), ".end"]
        return "\n".join(ln for ln in lines if ln)

    def _bench_instance(self, i: int, inst: Mapping[str, np.ndarray], wave: str, *,
                        read: bool = False) -> list[str]:
        """Source(s) and instance of device ``i`` in a bench. Two-terminal default: a source
        on ``p`` (named ``vr<i>``, so ``i(vr<i>)`` is minus the cell current), ``n`` grounded."""
        params = " ".join(f"{k}={fmt(v[i])}" for k, v in inst.items())
        return [f"Vr{i} a{i} 0 {wave}", f"X{i} a{i} 0 {self.subckt_name} {params}"]


# ----------------------------------------------------------------------------------------------
# Registry


class MicroSiemensDevice(DeviceModel):
    """A device whose state is its conductance in uS (``pcm``, ``linear``, ``ecram``).

    Subclasses set ``_smin`` / ``_smax`` (the state range), ``params.sigma_c2c`` and, when they
    use the shared step-rate parameter ``r``, ``_rate`` [uS per unit exposure].
    """

    _smin: float
    _smax: float
    _rate: float

    @property
    def state_range(self) -> tuple[float, float]:
        return self._smin, self._smax

    def to_conductance(self, state) -> np.ndarray:
        return np.asarray(state, float) * 1e-6

    def from_conductance(self, g) -> np.ndarray:
        return np.clip(np.asarray(g, float) * 1e6, self._smin, self._smax)

    def current(self, state, v) -> np.ndarray:
        return self.to_conductance(state) * np.asarray(v, float)

    def draw_noise(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"m_c2c": np.maximum(1 + self.params.sigma_c2c * rng.standard_normal(n), 0.0)}

    def _r(self, noise, n):
        m = np.ones(n) if noise is None or "m_c2c" not in noise else np.asarray(noise["m_c2c"], float)
        return self._rate * m

    def instance_params(self, state, variation=None, noise=None) -> dict[str, np.ndarray]:
        s = np.atleast_1d(np.asarray(state, float))
        return {"s0": s, "r": np.broadcast_to(self._r(noise, s.size), s.shape)}


def _factories() -> dict[str, Callable[[], DeviceModel]]:
    from models.cap3t1c import Cap3T1C
    from models.ecram import ECRAM
    from models.linear import LinearDevice
    from models.pcm import PCM
    from models.rram import RRAM
    return {"pcm": PCM, "rram": RRAM, "ecram": ECRAM, "cap3t1c": Cap3T1C, "linear": LinearDevice}


class _Registry(Mapping[str, Callable[[], DeviceModel]]):
    """name -> model class (called with no argument: the preset). Lazy, to avoid import cycles."""

    def __getitem__(self, key: str) -> Callable[[], DeviceModel]:
        f = _factories()
        if key not in f:
            raise ParameterError(f"unknown device {key!r}; known: {', '.join(f)}")
        return f[key]

    def __iter__(self):
        return iter(_factories())

    def __len__(self) -> int:
        return len(_factories())


REGISTRY: Mapping[str, Callable[[], DeviceModel]] = _Registry()


def device_names() -> list[str]:
    """Names in the registry."""
    return list(REGISTRY)


def get_device(name: str, params=None) -> DeviceModel:
    """The model ``name`` with its preset parameters (or ``params``, its dataclass)."""
    cls = REGISTRY[name]
    return cls() if params is None else cls(params)

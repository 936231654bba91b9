"""The common contract of the device compact models.

Layer: models (leaf). Imports numpy and ``models.*`` only.

Every device lives in one file (``models/pcm.py``, ``rram.py``, ``ecram.py``, ``cap3t1c.py``,
``linear.py``) with three renderings of the same equations: a frozen parameter dataclass, an
ngspice subcircuit (text), and a numpy twin vectorised over arrays of devices;
:mod:`models.registry` maps a name to the model with its preset parameters.

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
    ``v(<instance>.s)``), in O(1) units (``pcm``/``linear``/``ecram``: G in uS; ``rram``: gap
    in nm; ``cap3t1c``: the capacitor voltage in V). The state node is a capacitor with
    ``IC={s0}``: run the transient with ``uic``. ``s0`` is an instance parameter, so the next
    phase writes the read-back state as ``s0``. Exception: ``cap3t1c`` (real FETs on the
    state node) takes ``.ic v(<instance>.s)=...`` and a transient without ``uic``
    (:meth:`DeviceModel.bench_initial_state`).
Instance parameters
    One ``.subckt NAME ports params: ...`` serves a whole array. Per-instance values (initial
    state, device-to-device multipliers, this phase's cycle-to-cycle multipliers, drift factor)
    are instance parameters; ``DeviceModel.instance_params`` returns them as arrays, one value
    per device. Numbers are plain SI (:func:`models.spice_text.fmt`), never SPICE suffixes.
Randomness
    Drawn in Python from an explicit ``numpy.random.Generator``, never in SPICE, so SPICE and
    twin see the same draws: ``draw_variation(n, rng)`` once per array (device-to-device),
    ``draw_noise(n, rng)`` once per update phase (cycle-to-cycle: ONE step multiplier per
    device per phase, held for all pulses of that phase).
Pulses
    Trapezoids of :class:`models.pulse.PulseShape`. The twin takes the same amplitudes per
    device and slot (``amplitudes`` of shape (n_devices, n_slots), 0 for no pulse) or counts of
    full-selected pulses, and reproduces the state after each slot. Switching rates are
    ``rate(s) * F(|v|)`` with ``F`` the ramp of :func:`models.pulse.ramp`, integrated over the
    trapezoid in closed form (:func:`models.pulse.exposure`).
Reads
    ``conductance(state)`` [S] at the device's read voltage ``v_read``; ``current(state, v)``
    [A] its I-V; ``to_conductance`` / ``from_conductance`` convert state <-> conductance.
Integration
    Benches use ``method=gear``, TMAX = ``PulseShape.tstep`` and PWL corners where the edges
    cross the ramp knots (``DeviceModel.knots``; :func:`models.pulse.pulse_corners`): without
    them the kinks of F(v(t)) fall between time points and the integration over the edges is
    off by a fraction of a step. RESET pulses are stiff: use gear.
Update phases
    ``subckt(live_current=False)`` replaces the cell's current B-source by a resistor at the
    phase-start conductance (one B-source per cell).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from models.errors import ParameterError, ShapeError
from models.pulse import PulseShape

__all__ = ["BenchDrive", "DeviceModel", "MicroSiemensDevice"]


@dataclass(frozen=True)
class BenchDrive:
    """A port of a single-device bench that follows the bench's waveform.

    For a pulse bench with signed amplitudes ``a`` per slot the port sees
    ``base + scale * a`` in the slots where ``sign(a)`` is ``only`` (every slot when ``only`` is
    0) and ``base`` otherwise; ``knots``: add corners where the device's threshold knots are
    crossed. For an I-V bench the port sees the sweep voltage (``scale`` and ``only`` unused).
    """

    scale: float = 1.0
    base: float = 0.0
    only: int = 0
    knots: bool = True


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
    #: Voltage magnitudes where the switching ramps kink (corners of ``pulse_corners``).
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

    def counts_stepper(self, shape: PulseShape, variation=None, noise=None, *, polarity: int = +1):
        """``f(state, counts)``: :meth:`apply_counts` with these pulse, variation and noise
        settings, for many calls in a row (a mini-batch's samples); a device may precompute
        what does not depend on the state (the same arithmetic, so the same results)."""
        return lambda state, counts: self.apply_counts(state, counts, shape, variation, noise, polarity=polarity)

    # -- characterisation benches ------------------------------------------------------------
    def bench_ports(self, kind: str) -> dict[str, "BenchDrive | float"]:
        """How a single-device bench (:mod:`netlists.benches`) connects each port: a
        :class:`BenchDrive` (the bench's waveform) or a fixed level [V] (0.0: ground).

        ``kind="write"``: the ports that carry the pulse train; ``kind="read"``: the I-V
        sweep across the channel ``p -> n``. Two-terminal default: ``p`` driven,
        ``n`` grounded, in both."""
        if kind not in ("write", "read"):
            raise ParameterError(f"bench kind must be 'write' or 'read', got {kind!r}")
        return {"p": BenchDrive(knots=kind == "write"), "n": 0.0}

    def bench_initial_state(self) -> str:
        """How a bench sets the state node: ``"uic"`` (``IC={s0}`` on the state capacitor and a
        transient with ``uic``) or ``"ic"`` (``.ic`` on the state node, operating point kept)."""
        return "uic"


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

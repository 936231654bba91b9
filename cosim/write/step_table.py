"""Device step tables: the conductance step per full-selected pulse as a function of the
conductance, a fast behavioural model of a device fitted to SPICE pulse trains.

Layer: cosim.write. :class:`StepTable` is what the fast pair updates use in place of a device's
numpy twin (:class:`cosim.write.pair_update.PulseUpdate` ``table=``); the fit is
:func:`cosim.calibrate.devices.fit_device_steps`; :func:`select_step_table` picks one device's
table from a set of block fits.

JSON: :meth:`StepTable.to_dict` (``device``, ``g_min``, ``g_max``, ``pulse``, ``edges``,
``curves[direction] = {g, mean, std, count}``; :meth:`StepTable.from_dict` reads it back).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from models.errors import ParameterError, check_positive
from models.pulse import PulseShape

__all__ = ["DIRECTIONS", "direction_sign", "StepTable", "select_step_table"]

DIRECTIONS = ("up", "down")


def direction_sign(direction) -> int:
    """+1 for ``"up"`` / +1, -1 for ``"down"`` / -1."""
    if direction in ("up", 1, +1):
        return +1
    if direction in ("down", -1):
        return -1
    raise ParameterError(f"direction must be 'up', 'down', +1 or -1, got {direction!r}")


@dataclass(frozen=True, eq=False)
class StepTable:
    """Mean and spread of the conductance step per pulse, as functions of the conductance.

    Attributes
    ----------
    device : str
        Registry name the table was fitted to.
    g_min, g_max : float
        Conductance range of the device [S]; ``apply`` clips to it.
    edges : tuple of float
        Bin edges [S] (``bins + 1``, increasing).
    curves : dict
        ``direction -> {"g", "mean", "std", "count"}``, one entry per bin: ``g`` the mean
        conductance of the samples in the bin (bin centre if empty) [S], ``mean`` / ``std``
        the step [S] (interpolated from the neighbours where ``count`` is 0). Directions:
        ``"up"`` and, unless the device is SET-only, ``"down"``.
    pulse : (width, rise, period) [s] or None
        The write pulse the table was fitted with (None: not recorded). A table holds for that
        pulse only; :class:`cosim.write.pair_update.PulseUpdate` refuses it with another.
    """

    device: str
    g_min: float
    g_max: float
    edges: tuple[float, ...]
    curves: dict = field(default_factory=dict)
    pulse: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        check_positive("g_max", self.g_max)
        check_positive("g_min", self.g_min, allow_zero=True)
        if self.g_min >= self.g_max:
            raise ParameterError(f"g_min ({self.g_min:g} S) must be below g_max ({self.g_max:g} S)")
        e = np.asarray(self.edges, float)
        if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
            raise ParameterError("edges must be an increasing sequence of at least 2 values")
        if not self.curves or set(self.curves) - set(DIRECTIONS):
            raise ParameterError(f"curves must have keys among {DIRECTIONS}, got {list(self.curves)}")
        if self.pulse is not None:
            if len(self.pulse) != 3 or not all(np.isfinite(self.pulse)) or min(self.pulse) <= 0:
                raise ParameterError(f"pulse must be (width, rise, period) > 0 [s], got {self.pulse!r}")
            object.__setattr__(self, "pulse", tuple(float(x) for x in self.pulse))
        for d, c in self.curves.items():
            for k in ("g", "mean", "std", "count"):
                if k not in c or len(c[k]) != e.size - 1:
                    raise ParameterError(f"curves[{d!r}][{k!r}] must have one value per bin ({e.size - 1})")
            if np.any(np.diff(np.asarray(c["g"], float)) < 0):
                raise ParameterError(f"curves[{d!r}]['g'] must be non-decreasing")
        # numpy copies of the curves: apply() interpolates them once per pulse
        object.__setattr__(self, "_np", {d: {k: np.asarray(c[k], float) for k in ("g", "mean", "std")}
                                         for d, c in self.curves.items()})

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(d for d in DIRECTIONS if d in self.curves)

    def _curve(self, direction) -> dict:
        d = "up" if direction_sign(direction) > 0 else "down"
        if d not in self.curves:
            raise ParameterError(f"{self.device}: no {d!r} step table (SET-only device: use its "
                                 "reset and pulse the other device of the pair instead)")
        return self._np[d]

    def mean_step(self, G, direction) -> np.ndarray:
        """Mean step [S] at conductance ``G`` [S] (linear interpolation between bins)."""
        c = self._curve(direction)
        return np.interp(np.asarray(G, float), c["g"], c["mean"])

    def std_step(self, G, direction) -> np.ndarray:
        """Spread (std) of the step [S] at conductance ``G`` [S]."""
        c = self._curve(direction)
        return np.interp(np.asarray(G, float), c["g"], c["std"])

    def apply(self, G, n_pulses, direction, rng: np.random.Generator | None = None, *,
              per_pulse: bool = False, z=None) -> np.ndarray:
        """Conductances [S] after ``n_pulses`` full-selected pulses in ``direction``.

        Parameters
        ----------
        G : array [S]
        n_pulses : int or int array (broadcast with ``G``)
        direction : "up", "down", +1 or -1
        rng : Generator, optional
            None (and no ``z``): mean steps (deterministic). Otherwise each step is
            ``mean(G) + std(G) z`` (never against the direction), with ONE ``z`` per device
            for the whole call (the device contract: one noise draw per update phase), or a
            fresh ``z`` per pulse with ``per_pulse=True``.
        z : array, optional
            The per-device noise draw (standard normal, broadcast with ``G``) instead of
            ``rng``: lets a caller keep one draw per device over several calls, e.g. over the
            samples of a mini-batch (:class:`cosim.write.pair_update.PulseUpdate`). Not with ``rng``.
        """
        sign = direction_sign(direction)
        G = np.array(G, dtype=float, copy=True)
        n = np.broadcast_to(np.asarray(n_pulses), G.shape)
        if not np.issubdtype(n.dtype, np.integer) or np.any(n < 0):
            raise ParameterError("n_pulses must be non-negative integers")
        if not n.any():                 # nothing to apply (also in a direction the table lacks)
            return G
        c = self._curve(sign)
        if z is not None:
            if rng is not None or per_pulse:
                raise ParameterError("z is one draw per device for the whole call: not with rng or per_pulse")
            z = np.broadcast_to(np.asarray(z, float), G.shape)
        elif rng is not None and not per_pulse:
            z = rng.standard_normal(G.shape)
        noisy = z is not None or rng is not None
        for k in range(int(n.max(initial=0))):
            act = n > k                      # only the devices still being pulsed
            g = G[act]
            d = np.interp(g, c["g"], c["mean"])
            if noisy:
                zk = rng.standard_normal(G.shape)[act] if z is None else z[act]
                d = d + np.interp(g, c["g"], c["std"]) * zk
                d = np.maximum(d, 0.0) if sign > 0 else np.minimum(d, 0.0)
            G[act] = np.clip(g + d, self.g_min, self.g_max)
        return G

    def apply_signed(self, G, counts, rng: np.random.Generator | None = None) -> np.ndarray:
        """``counts`` > 0: up pulses; < 0: down pulses (per device)."""
        G = np.asarray(G, float)
        c = np.broadcast_to(np.asarray(counts), G.shape)
        out = self.apply(G, np.maximum(c, 0), "up", rng)
        if np.any(c < 0):
            out = np.where(c < 0, self.apply(G, np.maximum(-c, 0), "down", rng), out)
        return out

    def matches_pulse(self, shape: PulseShape) -> bool:
        """Whether ``shape`` is the write pulse of the fit (True when none was recorded)."""
        return self.pulse is None or bool(np.allclose(self.pulse, (shape.width, shape.rise, shape.period),
                                                      rtol=1e-9, atol=0))

    def to_dict(self) -> dict:
        return {"device": self.device, "g_min": float(self.g_min), "g_max": float(self.g_max),
                "pulse": None if self.pulse is None else list(self.pulse),
                "edges": [float(x) for x in self.edges],
                "curves": {d: {"g": [float(x) for x in c["g"]], "mean": [float(x) for x in c["mean"]],
                               "std": [float(x) for x in c["std"]], "count": [int(x) for x in c["count"]]}
                           for d, c in self.curves.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "StepTable":
        return cls(device=d["device"], g_min=float(d["g_min"]), g_max=float(d["g_max"]),
                   edges=tuple(d["edges"]), pulse=None if d.get("pulse") is None else tuple(d["pulse"]),
                   curves={k: {kk: list(vv) for kk, vv in c.items()} for k, c in d["curves"].items()})


def select_step_table(fits: dict, device: str, *, shape: PulseShape | None = None,
                      source: str = "fits.json") -> StepTable:
    """The step table of registry device ``device`` in ``fits`` (a ``fits.json`` dict of
    :func:`cosim.calibrate.blocks.fit_all`).

    ``shape``: the write pulse the table will be used with; refused if the fit recorded another
    one (a table holds for the pulse it was fitted with only). ``source`` names the file in the
    messages. Raises :class:`ParameterError` when ``fits`` has no table of ``device``, the
    table was fitted to another device, is malformed, or (given ``shape``) was fitted with
    another write pulse.
    """
    devices = fits.get("devices") if isinstance(fits, dict) else None
    if not isinstance(devices, dict) or device not in devices:
        have = sorted(devices) if isinstance(devices, dict) else []
        raise ParameterError(f"{source} has no step table of device {device!r} (it has {have})")
    entry = devices[device]
    table = entry.get("table") if isinstance(entry, dict) else None
    if not isinstance(table, dict):
        raise ParameterError(f"{source}: devices[{device!r}] has no 'table'")
    if table.get("device") != device:
        raise ParameterError(f"{source}: the table under devices[{device!r}] was fitted to device "
                             f"{table.get('device')!r}, not {device!r}")
    try:
        t = StepTable.from_dict(table)
    except (KeyError, TypeError, ValueError, ParameterError) as exc:
        raise ParameterError(f"{source}: devices[{device!r}]['table'] is malformed "
                             f"({type(exc).__name__}: {exc})") from None
    fitted = entry.get("shape")     # tables written before StepTable.pulse: the fit's record
    if t.pulse is None and isinstance(fitted, dict) and all(k in fitted for k in ("width", "rise", "period")):
        t = replace(t, pulse=(float(fitted["width"]), float(fitted["rise"]), float(fitted["period"])))
    if shape is not None and not t.matches_pulse(shape):
        raise ParameterError(f"{source}: the {device} table was fitted with the write pulse (width, rise, period) = "
                             f"{t.pulse} s, not {(shape.width, shape.rise, shape.period)} s")
    return t



"""Device step tables: cheap behavioural models of the registry devices, fitted to SPICE.

Layer: cosim. Imports ``models`` and ``cosim``; nothing heavy at import time (the SPICE runner
and the device characterisation helpers are imported inside the functions that need them).

``load_step_table(path, device)``
    The table of one device from a ``fits.json`` of ``xbar calibrate`` or from the
    ``calibration.json`` that points at it (key ``"blocks"``); the fast pair updates of training
    use it in place of the device twin (:class:`cosim.write.pair_update.PulseUpdate` ``table=``).

``fit_device_steps(name)``
    SPICE pulse trains of one registry device (up and down, over seeded device draws) become a
    :class:`StepTable`: the mean conductance change per full-selected pulse as a function of
    the conductance (``bins`` bins over the device range, each direction separately) and its
    spread (std of the residual step in the bin: device-to-device and cycle-to-cycle noise
    lumped). Held-out seeds measure the error of the table and of the uncalibrated numpy twin
    (nominal parameters, no knowledge of the draws) against SPICE, as a fraction of the
    device's conductance range. SET-only devices (those with ``reset``, i.e. PCM) have no
    ``down`` table.

:func:`run_pulse_trains` runs the SPICE trains, :func:`fit_step_table` bins (G before, step)
samples into a table.

JSON: each result is a JSON-able dict (lists and floats only); it is ``fits.json["devices"][name]``
of :func:`cosim.calibrate.blocks.fit_all`, whose ``"table"`` entry is :meth:`StepTable.to_dict`
(``device``, ``g_min``, ``g_max``, ``edges``, ``curves[direction] = {g, mean, std, count}``;
:meth:`StepTable.from_dict` reads it back).

Measured (ngspice 46, this 2-core machine, ``fit_all`` defaults: 40 pulses, 32 bins, seeds 0-3
fitted, each train counted once per bin, 100-101 held out; trajectory RMSE / max over every
held-out pulse, % of the range):

=======  ===============  ===============  ==========================================
device   step table       twin (nominal)   note
=======  ===============  ===============  ==========================================
pcm      9.48 / 55.4      8.48 / 50.9      c2c 60 %: both limited by the unknown draws
rram     2.88 / 27.6      2.56 / 22.7      idem (10 % d2d, 10 % c2c)
ecram    0.121 / 0.54     0.115 / 0.57     idem (5 % c2c)
cap3t1c  0.022 / 0.117    0.27 / 0.64      the twin's DC-fitted pumps miss ~1 % per step
linear   0.0004 / 0.008   0.0018 / 0.008   ideal: both exact to SPICE's soft bound
=======  ===============  ===============  ==========================================
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from models.device import PulseShape, get_device
from models.errors import ParameterError, ShapeError, check_positive

__all__ = ["StepTable", "fit_step_table", "run_pulse_trains", "fit_device_steps", "load_step_table"]

DIRECTIONS = ("up", "down")


def _sign(direction) -> int:
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
        d = "up" if _sign(direction) > 0 else "down"
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
        sign = _sign(direction)
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


def load_step_table(path, device: str, *, shape: PulseShape | None = None) -> StepTable:
    """The step table of registry device ``device`` from a fits or calibration file.

    Parameters
    ----------
    path : str or Path
        ``fits.json`` of :func:`cosim.calibrate.blocks.fit_all` (``xbar calibrate`` writes
        it to ``OUT/blocks/fits.json``), or the ``calibration.json`` of ``xbar calibrate``,
        whose ``"blocks"`` entry (a path relative to the calibration's folder)
        names the fits file.
    device : str
        Registry name; the file must hold a table fitted to this device.
    shape : PulseShape, optional
        The write pulse the table will be used with: refused if the fit recorded another one
        (width, rise or period; a table is valid for the pulse it was fitted with only).

    Raises
    ------
    ParameterError
        The file (or the fits file a calibration points at) does not exist or is not JSON, a
        calibration has no ``"blocks"`` entry, the fits have no table of ``device``, or the
        table was fitted to another device or, given ``shape``, with another write pulse.
    """
    from cosim.calibrate.blocks import read_block_fits
    d, src = read_block_fits(path, "devices")
    fits = d["devices"]
    if not isinstance(fits, dict) or device not in fits:
        have = sorted(fits) if isinstance(fits, dict) else []
        raise ParameterError(f"{src} has no step table of device {device!r} (it has {have})")
    entry = fits[device]
    table = entry.get("table") if isinstance(entry, dict) else None
    if not isinstance(table, dict):
        raise ParameterError(f"{src}: devices[{device!r}] has no 'table'")
    if table.get("device") != device:
        raise ParameterError(f"{src}: the table under devices[{device!r}] was fitted to device "
                             f"{table.get('device')!r}, not {device!r}")
    try:
        t = StepTable.from_dict(table)
    except (KeyError, TypeError, ValueError, ParameterError) as exc:
        raise ParameterError(f"{src}: devices[{device!r}]['table'] is malformed "
                             f"({type(exc).__name__}: {exc})") from None
    fitted = entry.get("shape")     # tables written before StepTable.pulse: the fit's record
    if t.pulse is None and isinstance(fitted, dict) and all(k in fitted for k in ("width", "rise", "period")):
        t = replace(t, pulse=(float(fitted["width"]), float(fitted["rise"]), float(fitted["period"])))
    if shape is not None and not t.matches_pulse(shape):
        raise ParameterError(f"{src}: the {device} table was fitted with the write pulse (width, rise, period) = "
                             f"{t.pulse} s, not {(shape.width, shape.rise, shape.period)} s")
    return t


def _device_g_range(model) -> tuple[float, float]:
    lo, hi = model.state_range
    g = np.sort(model.to_conductance(np.array([lo, hi])))
    return float(g[0]), float(g[1])


def _fill_empty(x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    if ok.all() or not ok.any():
        return np.where(ok, y, 0.0)
    return np.where(ok, y, np.interp(x, x[ok], y[ok]))


def fit_step_table(device: str, g_before, g_after, direction_of, *, g_min: float, g_max: float,
                   bins: int = 32, valid=None, smooth: int = 0, groups=None) -> StepTable:
    """Bin (G before, step) samples into a :class:`StepTable`.

    Parameters
    ----------
    g_before, g_after : array [S]
        Conductance before and after one pulse (any shape, flattened).
    direction_of : array of +1 / -1
        Pulse direction of each sample.
    valid : bool array, optional
        Samples to use (default all). Samples that start or end within 1e-3 of the range
        from the bound their pulse pushes toward are always dropped: they only say that the
        bound holds (``apply`` clips), and their truncated steps would drag the mean of the
        last bin toward 0.
    smooth : int
        0: the mean step of each bin is the mean of its samples. k > 0: a local straight-line
        fit through the samples of bins b-k .. b+k, evaluated at bin b (less estimation noise
        when few devices were drawn, some bias where the curve bends).
    groups : int array, optional
        The pulse train (one device, one noise draw) of each sample. Each train then counts
        once per bin, whatever number of its pulses fell in it: a train that steps slowly
        (a device drawn slow, or a cycle-to-cycle draw near zero) stays in its bin for many
        pulses and would otherwise outweigh the trains that cross the bin in one or two
        (a PCM train with a zero draw put 29 of the 37 samples of the lowest bin). None:
        every sample counts once.
    """
    if bins < 2:
        raise ParameterError(f"bins must be >= 2, got {bins}")
    gb = np.asarray(g_before, float).ravel()
    ga = np.asarray(g_after, float).ravel()
    dr = np.broadcast_to(np.asarray(direction_of), np.asarray(g_before).shape).ravel()
    if gb.shape != ga.shape:
        raise ShapeError(f"g_before {gb.shape} and g_after {ga.shape} differ")
    ok_all = np.ones(gb.shape, bool) if valid is None else np.asarray(valid, bool).ravel()
    eps = 1e-3 * (g_max - g_min)
    near_top = (dr > 0) & (np.maximum(gb, ga) > g_max - eps)
    near_bottom = (dr < 0) & (np.minimum(gb, ga) < g_min + eps)
    ok_all = ok_all & ~near_top & ~near_bottom
    grp = None if groups is None else np.broadcast_to(np.asarray(groups), np.asarray(g_before).shape).ravel()
    edges = np.linspace(g_min, g_max, bins + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    curves = {}
    for name, sgn in (("up", 1), ("down", -1)):
        sel = (dr == sgn) & ok_all
        if not sel.any():
            continue
        x, dg = gb[sel], (ga - gb)[sel]
        k = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
        cnt = np.bincount(k, minlength=bins)
        if grp is None:
            wt = np.ones(x.size)
        else:                           # 1 / (samples of the same train in the same bin)
            _, inv, per = np.unique(np.stack([grp[sel], k]), axis=1, return_inverse=True, return_counts=True)
            wt = 1.0 / per[inv.ravel()]
        wsum = np.bincount(k, wt, bins)
        ok = cnt > 0
        safe = np.where(ok, wsum, 1.0)
        gm = np.where(ok, np.bincount(k, wt * x, bins) / safe, centres)
        mu = _fill_empty(centres, np.bincount(k, wt * dg, bins) / safe, ok)
        if smooth > 0:
            for b in np.nonzero(ok)[0]:
                w = np.abs(k - b) <= smooth
                xs = (x[w] - gm[b]) / (edges[1] - edges[0])
                if np.ptp(xs) > 0.5:
                    mu[b] = np.polyfit(xs, dg[w], 1, w=np.sqrt(wt[w]))[1]
        # spread: residual about the interpolated mean curve, so the trend inside a bin
        # (PCM steps shrink along a bin) does not count as noise; weighted like the mean, with
        # the unbiased correction for the effective number of samples (cnt - 1 when unweighted)
        res = dg - np.interp(x, gm, mu)
        w2 = np.bincount(k, wt ** 2, bins)
        den = np.where(ok, wsum - w2 / safe, 0.0)
        var = np.bincount(k, wt * res ** 2, bins) / np.where(den > 0, den, 1.0)
        sd = _fill_empty(centres, np.sqrt(var), den > 0)
        curves[name] = {"g": gm.tolist(), "mean": mu.tolist(), "std": sd.tolist(), "count": cnt.tolist()}
    return StepTable(device=device, g_min=g_min, g_max=g_max, edges=tuple(edges.tolist()), curves=curves)


def _pulse_plan(model, bins: int, pulses: int, directions: tuple[str, ...]):
    """Start states (one per bin and direction: up from the bin's low edge, down from its high
    edge) and the signed amplitude rows of every instance."""
    g_lo, g_hi = _device_g_range(model)
    edges = np.linspace(g_lo, g_hi, bins + 1)
    starts, signs = [], []
    for d in directions:
        s = _sign(d)
        g0 = edges[:-1] if s > 0 else edges[1:]
        # stay a hair inside the range: from_conductance clips, and a start on the bound
        # gives no step to learn from
        g0 = np.clip(g0, g_lo + 1e-4 * (g_hi - g_lo), g_hi - 1e-4 * (g_hi - g_lo))
        starts.append(model.from_conductance(g0))
        signs.append(np.full(bins, s))
    s0 = np.concatenate(starts)
    sign = np.concatenate(signs)
    amps = np.repeat((sign * model.v_write)[:, None], pulses, axis=1)
    return s0, sign, amps


def _draws(model, seed: int, n: int):
    """Device-to-device and cycle-to-cycle draws of ``n`` instances, instance i from
    ``default_rng([seed, i])`` (independent of how many instances a deck holds)."""
    var_l, noise_l = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        var_l.append(model.draw_variation(1, rng))
        noise_l.append(model.draw_noise(1, rng))
    def cat(lst):
        return {k: np.concatenate([v[k] for v in lst]) for k in lst[0]} if lst and lst[0] else None
    return cat(var_l), cat(noise_l)


def run_pulse_trains(name: str, seeds, *, pulses: int = 40, bins: int = 32,
                     shape: PulseShape | None = None, engine=None) -> dict:
    """SPICE pulse trains of device ``name``: per seed one deck of ``bins`` instances per
    direction (each a separate device draw), ``pulses`` full-selected pulses each.

    Returns ``{seed: {"g_spice", "g_twin_draws", "g_twin_nominal" (n_inst, pulses + 1) [S],
    "in_range" (n_inst, pulses + 1) bool: the SPICE state has stayed inside ``state_range``
    so far, "sign" (n_inst,)}}`` plus ``"_elapsed_s"``.
    """
    from cosim.characterize.devices import _sample
    from cosim.sim.engine import SubprocessEngine
    engine = engine or SubprocessEngine()
    shape = shape or PulseShape()
    model = get_device(name)
    directions = ("up",) if hasattr(model, "reset") else DIRECTIONS
    s0, sign, amps = _pulse_plan(model, bins, pulses, directions)
    decks, draws = [], []
    for seed in seeds:
        var, noise = _draws(model, int(seed), s0.size)
        draws.append((var, noise))
        decks.append(model.pulse_deck(s0, amps, shape, var, noise))
    t0 = time.perf_counter()
    results = engine.run_many(decks, name=f"{name}-steps")
    out: dict = {"_elapsed_s": time.perf_counter() - t0}
    tw_nom = model.to_conductance(model.trajectory(s0, amps, shape))
    lo, hi = model.state_range
    tol = 1e-6 * (hi - lo)
    for seed, res, (var, noise) in zip(seeds, results, draws):
        st = _sample(res, s0.size, shape, pulses)
        # 3T1C: V_C is not bounded by the circuit and its read-out (a fitted cubic) means
        # nothing outside the useful range; keep each train up to where it leaves that range
        inside = np.logical_and.accumulate((st >= lo - tol) & (st <= hi + tol), axis=1)
        out[int(seed)] = {
            "g_spice": model.to_conductance(st), "in_range": inside,
            "g_twin_draws": model.to_conductance(model.trajectory(s0, amps, shape, var, noise)),
            "g_twin_nominal": tw_nom, "sign": sign}
    return out


def _err(pred: np.ndarray, ref: np.ndarray, span: float) -> dict:
    d = (np.asarray(pred) - np.asarray(ref)) / span
    return {"rmse_frac": float(np.sqrt(np.mean(d ** 2))), "max_frac": float(np.abs(d).max())}


def _table_trajectories(table: StepTable, g0: np.ndarray, sign: np.ndarray, pulses: int) -> np.ndarray:
    out = [np.asarray(g0, float)]
    g = out[0]
    for _ in range(pulses):
        g = table.apply_signed(g, sign.astype(int))
        out.append(g)
    return np.stack(out, axis=1)


def fit_device_steps(name: str, *, pulses: int = 40, seeds=(0, 1, 2, 3), holdout_seeds=(100, 101),
                     bins: int = 32, smooth: int = 0, shape: PulseShape | None = None, engine=None,
                     keep_curves: int = 8) -> dict:
    """Fit a :class:`StepTable` of device ``name`` to SPICE and score it on held-out seeds.

    Parameters
    ----------
    name : str
        Registry name.
    pulses : int
        Pulses per train (each train starts at a bin edge, so coverage needs
        ``pulses * step >= bin width``; bins a train never reaches are interpolated).
    seeds, holdout_seeds : sequences of int
        Device draws used for the fit and for the scores (disjoint).
    bins : int
        Conductance bins per direction.
    smooth : int
        Half-width (in bins) of the local linear smoothing of the mean step
        (:func:`fit_step_table`); 0: none.
    shape : PulseShape, optional
        Write pulse (default ``PulseShape()``); the table is valid for this pulse only.
    keep_curves : int
        Held-out trajectories per direction kept in the result (for plots).

    Returns
    -------
    dict
        ``table`` (:meth:`StepTable.to_dict`), ``error`` = ``{"step_table", "twin",
        "twin_same_draws"}`` each ``{"rmse_frac", "max_frac"}`` (trajectory error over every
        held-out pulse, fraction of the conductance range; ``twin`` is the uncalibrated twin
        at nominal parameters, ``twin_same_draws`` the twin told the held-out draws),
        ``error_by_direction``, ``one_step`` (RMS single-step error of each predictor, fraction
        of the range), ``spread_ratio`` (held-out residual std / tabulated std, 1 when the
        spread is calibrated; NaN for noiseless devices), ``curves`` (for plots), ``spice_s``.
    """
    if set(map(int, seeds)) & set(map(int, holdout_seeds)):
        raise ParameterError("seeds and holdout_seeds must be disjoint")
    shape = shape or PulseShape()
    model = get_device(name)
    g_lo, g_hi = _device_g_range(model)
    span = g_hi - g_lo
    runs = run_pulse_trains(name, list(seeds) + list(holdout_seeds), pulses=pulses, bins=bins,
                            shape=shape, engine=engine)
    train = [runs[int(s)] for s in seeds]
    gb = np.concatenate([r["g_spice"][:, :-1] for r in train])
    ga = np.concatenate([r["g_spice"][:, 1:] for r in train])
    ok = np.concatenate([r["in_range"][:, :-1] for r in train])
    sg = np.concatenate([np.repeat(r["sign"][:, None], pulses, axis=1) for r in train])
    trains = np.arange(gb.shape[0])[:, None] * np.ones((1, pulses), int)   # one group per train
    table = replace(fit_step_table(name, gb, ga, sg, g_min=g_lo, g_max=g_hi, bins=bins, valid=ok, smooth=smooth,
                                   groups=trains),
                    pulse=(shape.width, shape.rise, shape.period))

    hold = [runs[int(s)] for s in holdout_seeds]
    sp = np.concatenate([r["g_spice"] for r in hold])
    inside = np.concatenate([r["in_range"] for r in hold])
    sign = np.concatenate([r["sign"] for r in hold])
    preds = {"step_table": _table_trajectories(table, sp[:, 0], sign, pulses),
             "twin": np.concatenate([r["g_twin_nominal"] for r in hold]),
             "twin_same_draws": np.concatenate([r["g_twin_draws"] for r in hold])}
    error = {k: _err(v[inside], sp[inside], span) for k, v in preds.items()}
    by_dir = {}
    for d in table.directions:
        m = (sign == _sign(d))[:, None] & inside
        by_dir[d] = {k: _err(v[m], sp[m], span) for k, v in preds.items()}
    # one-step errors: each predictor started from the SPICE state before every pulse
    gb_h, ga_h = sp[:, :-1], sp[:, 1:]
    m1 = inside[:, 1:]
    sg_h = np.repeat(sign[:, None], pulses, axis=1)
    tab1 = np.clip(np.where(sg_h > 0, gb_h + table.mean_step(gb_h, "up"),
                            gb_h + (table.mean_step(gb_h, "down") if "down" in table.curves else 0.0)),
                   g_lo, g_hi)
    st = model.from_conductance(gb_h.ravel())
    tw1 = model.to_conductance(model.step(st, (sg_h * model.v_write).ravel(), shape)).reshape(gb_h.shape)
    one_step = {"step_table": _err(tab1[m1], ga_h[m1], span)["rmse_frac"],
                "twin": _err(tw1[m1], ga_h[m1], span)["rmse_frac"]}
    sd = np.where(sg_h > 0, table.std_step(gb_h, "up"),
                  table.std_step(gb_h, "down") if "down" in table.curves else 1.0)[m1]
    ratio = (float(np.std((ga_h - tab1)[m1]) / np.sqrt(np.mean(sd ** 2)))
             if np.mean(sd ** 2) > (1e-6 * span) ** 2 else float("nan"))

    # curves for plots: a few held-out trajectories per direction, and step vs G
    curves = {}
    for d in table.directions:
        idx = np.nonzero(sign == _sign(d))[0]
        idx = idx[np.linspace(0, idx.size - 1, min(keep_curves, idx.size)).astype(int)]
        gg = np.linspace(g_lo, g_hi, 4 * bins + 1)[1:-1]
        tw_step = model.to_conductance(model.step(model.from_conductance(gg), _sign(d) * model.v_write * np.ones_like(gg), shape)) - gg
        m = (sg_h == _sign(d)) & m1
        pick = np.random.default_rng(0).permutation(int(m.sum()))[:600]
        curves[d] = {"spice": np.where(inside[idx], sp[idx], np.nan).tolist(), "step_table": preds["step_table"][idx].tolist(),
                     "twin": preds["twin"][idx].tolist(), "g_grid": gg.tolist(), "twin_step": tw_step.tolist(),
                     "sample_g": gb_h[m][pick].tolist(), "sample_step": (ga_h - gb_h)[m][pick].tolist()}
    return {"device": name, "pulses": pulses, "bins": bins, "smooth": smooth, "seeds": [int(s) for s in seeds],
            "holdout_seeds": [int(s) for s in holdout_seeds], "shape": asdict(shape),
            "g_range_s": [g_lo, g_hi], "table": table.to_dict(), "error": error,
            "error_by_direction": by_dir, "one_step_rmse_frac": one_step, "spread_ratio": ratio,
            "curves": curves, "spice_s": runs["_elapsed_s"]}

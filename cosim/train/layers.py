"""Analog layers: a weight matrix on differential conductance pairs tiled over crossbars, read
and updated through the circuit.

Layer: cosim.train. An :class:`AnalogLayer` holds a weight matrix as differential conductance pairs
on one or more crossbar tiles (partial sums added digitally). Each training phase picks its
backend:

- forward read (rows driven) and backward read (columns driven, the transposed product of the
  same arrays): ``"software"`` (float weights, no analog path), ``"ideal"`` (V @ G from the
  conductances), ``"fast"`` (exact nodal solve with wire parasitics) or ``"spice"`` (ngspice);
- update: an :class:`Updater` (``IdealUpdate`` here; pulse-coincidence device updates plug in
  through the same interface).

Inputs are scaled per sample to the read voltage (abs-max, as analog chips' digital
periphery does), read, converted by an ideal ``adc_bits`` quantiser whose full scale is
``out_bound * rows * v_read * g_range``, and scaled back.

With ``LayerConfig.periphery`` (a :class:`netlists.readchain.PeripheryConfig`) the ``fast`` and
``spice`` reads go through the circuit read chain instead: inputs as DAC codes, the wired array,
one integrator and ADC per physical line, the digital difference of each pair's codes
(:class:`cosim.read.readchain.ReadChain`; ``fast`` is its numpy twin, ``spice`` one ngspice transient
per tile and read direction). The integrator capacitor is sized per tile by
:func:`periphery_for_tile` so that ``periphery.full_scale`` of the worst-case charge fills the
ADC range; ``adc_bits`` and ``out_bound`` then do not apply. With ``LayerConfig.periphery_fit``
the ``fast`` chain reads use the integrator + ADC transfer fitted to ngspice.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from cosim.read.irmodel import Calibration, IRModel
from cosim.read.mvm import Crossbar
from cosim.read.periphery_fit import PeripheryFit
from cosim.read.readchain import ReadChain
from cosim.write.mapping import MappingSpec, from_conductances, tile_slices, to_conductances
from models.errors import ParameterError, ShapeError
from models.integrator import start_voltage, swing
from netlists.crossbar import CrossbarSpec, interleave
from netlists.readchain import PeripheryConfig, full_scale_volt_seconds

READ_BACKENDS = ("software", "ideal", "fast", "spice", "calibrated")
#: Largest capacitor bank of the autoranging read chain (binary steps: 2^16 : 1).
MAX_AUTORANGE = 16
#: Autoranging: a tile's first read puts its largest code at this fraction of the half range
#: (one bit left for growth) ...
RANGE_TARGET = 0.5
#: ... and a later read whose largest code stays below this fraction raises the gain one step.
RANGE_CREEP = 0.25
#: The gain keys of a tile, in checkpoint order: (array, transposed).
GAIN_KEYS = (("main", False), ("main", True), ("lsp", False), ("lsp", True))
#: The backends that read through ``LayerConfig.periphery`` when a layer has one (``spice-array``:
#: the audit's ngspice DC read of the array behind the twin's converters).
CHAIN_BACKENDS = ("fast", "spice", "calibrated", "spice-array")


def chain_read(backend: str, cfg: "LayerConfig") -> dict:
    """The keywords of a read-chain read on ``backend``: ``calibrated`` is the chain's fast twin
    with the array's transfer from the calibrated IR-drop model."""
    if backend == "calibrated":
        return {"backend": "fast", "ir_model": cfg.ir_model}
    return {"backend": backend}


@dataclass(frozen=True)
class LayerConfig:
    """Analog hardware of one layer.

    Attributes
    ----------
    mapping : MappingSpec
    r_wire : float
        Wire resistance per segment, rows and columns [ohm].
    v_read : float
        Read voltage at full-scale input [V].
    max_rows, max_cols : int
        Largest array (logical rows, weight columns); larger layers are tiled. A weight takes
        two physical columns, so the defaults (256, 128) tile on 256 x 256 physical arrays, the
        largest size the default calibration covers.
    adc_bits : int or None
        Output quantiser resolution (None: no quantisation).
    out_bound : float
        ADC full scale as a fraction of the largest possible column current.
    bias : bool
        A bias row driven at full scale.
    periphery : PeripheryConfig or None
        Read through DACs, integrators and ADCs (fast and spice reads); None: the ideal
        quantiser above.
    calibration : Calibration, IRModel or None
        The cheap IR-drop model of ``xbar calibrate`` (loaded:
        :func:`cosim.calibrate.bundle.load_calibration`); it serves the ``"calibrated"`` read
        backend, which reads through the ideal quantiser above, never through ``periphery``.
    periphery_fit : PeripheryFit or None
        With ``periphery``: the integrator + ADC transfer fitted to ngspice
        (:meth:`cosim.calibrate.bundle.CalibrationSet.periphery_fit`), replacing the integrator
        and ADC twins in the ``fast`` chain reads, carried over to each tile's capacitor and
        column loads; ``spice`` reads simulate the circuit as before.
    chain_autorange : int
        With ``periphery``: 0 sizes each tile's integrator capacitor once, for the worst case
        (:func:`periphery_for_tile`); ``n`` > 0 lets every tile and read direction pick its gain
        from a bank of ``n`` binary capacitor steps below that, from the codes of its own reads
        (:func:`ranged_read`).
    """

    mapping: MappingSpec = field(default_factory=lambda: MappingSpec(w_max=4.0))
    r_wire: float = 1.0
    v_read: float = 0.2
    max_rows: int = 256
    max_cols: int = 128
    adc_bits: int | None = 9
    out_bound: float = 0.1
    bias: bool = True
    periphery: PeripheryConfig | None = None
    calibration: Calibration | IRModel | None = None
    periphery_fit: PeripheryFit | None = None
    chain_autorange: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.r_wire, bool) or not (np.isfinite(self.r_wire) and self.r_wire >= 0):
            raise ParameterError(f"r_wire must be >= 0 ohm, got {self.r_wire!r}")
        if not (np.isfinite(self.v_read) and self.v_read > 0):
            raise ParameterError(f"v_read must be > 0 V, got {self.v_read!r}")
        for f in ("max_rows", "max_cols"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"{f} must be an integer >= 1, got {v!r}")
        if self.adc_bits is not None and (isinstance(self.adc_bits, bool) or not 1 <= self.adc_bits <= 24):
            raise ParameterError(f"adc_bits must be in 1..24 or None, got {self.adc_bits}")
        if not 0 < self.out_bound <= 1:
            raise ParameterError(f"out_bound must be in (0, 1], got {self.out_bound}")
        if self.periphery is not None and not isinstance(self.periphery, PeripheryConfig):
            raise ParameterError(f"periphery must be a PeripheryConfig or None, got {type(self.periphery).__name__}")
        if self.calibration is not None and not isinstance(self.calibration, (Calibration, IRModel)):
            raise ParameterError(f"calibration must be a loaded Calibration or IRModel (see "
                                 f"cosim.calibrate.bundle.load_calibration), got {type(self.calibration).__name__}")
        if self.periphery_fit is not None:
            if not isinstance(self.periphery_fit, PeripheryFit):
                raise ParameterError(f"periphery_fit must be a PeripheryFit, got {type(self.periphery_fit).__name__}")
            if self.periphery is None:
                raise ParameterError("periphery_fit replaces the integrator and ADC of a read chain: it needs periphery")
        a = self.chain_autorange
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not 0 <= a <= MAX_AUTORANGE:
            raise ParameterError(f"chain_autorange must be an integer in 0..{MAX_AUTORANGE} (binary capacitor steps), "
                                 f"got {a!r}")
        if a and self.periphery is None:
            raise ParameterError("chain_autorange sets the gain of a read chain: it needs periphery")

    @property
    def ir_model(self) -> IRModel | None:
        c = self.calibration
        return c.model if isinstance(c, Calibration) else c


def quantize(I: np.ndarray, bits: int | None, full_scale: float) -> np.ndarray:
    """Ideal mid-tread ADC over [-full_scale, full_scale]: clip, then round to 2^bits - 1 levels."""
    if bits is None:
        return I
    lsb = 2 * full_scale / (2 ** bits - 2)
    return np.clip(np.round(I / lsb), -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) * lsb


@dataclass
class Tile:
    """One crossbar of a layer: logical rows/cols it covers and its conductance pairs."""

    rows: slice
    cols: slice
    g_plus: np.ndarray
    g_minus: np.ndarray
    _xbar: Crossbar | None = field(default=None, repr=False)
    _chain: object = field(default=None, repr=False)
    _chain_before: object = field(default=None, repr=False)   # the last chain built: its sizing serves the next state
    out_offset: np.ndarray | None = None    # forward-read offset per weight column [A] (Monte Carlo)
    gains: dict = field(default_factory=dict)   # autoranging: capacitor step per (array, transposed)

    def spec(self, cfg: LayerConfig) -> CrossbarSpec:
        return CrossbarSpec(rows=self.g_plus.shape[0], cols=self.g_plus.shape[1], cell="diff",
                            r_row=cfg.r_wire, r_col=cfg.r_wire, v_read=cfg.v_read)

    def crossbar(self, cfg: LayerConfig, engine=None) -> Crossbar:
        if self._xbar is None:
            self._xbar = Crossbar(self.spec(cfg), interleave(self.g_plus, self.g_minus), engine=engine)
        return self._xbar

    def read_chain(self, cfg: LayerConfig, engine=None, fit=None):
        """The tile behind ``cfg.periphery`` (:class:`cosim.read.readchain.ReadChain`), cached until
        the conductances change (or a caller asks for another engine or fit); ``fit`` (a
        :class:`cosim.read.periphery_fit.PeripheryFit`) for its fast reads."""
        if not serves(self._chain, engine, fit):
            self._chain = self._chain_before = sized_read_chain(
                cfg.periphery, self.spec(cfg), interleave(self.g_plus, self.g_minus), cfg.mapping.g_max,
                engine=engine, fit=fit, like=self._chain_before)
        return self._chain

    def changed(self) -> None:
        self._xbar = None
        self._chain = None


def serves(chain, engine, fit) -> bool:
    """Whether a cached read chain was built with this ngspice engine and periphery fit."""
    return chain is not None and chain.engine is engine and chain.fit is fit


def sized_read_chain(pc, spec: CrossbarSpec, G: np.ndarray, g_max: float, *, engine=None,
                     fit=None, g_offset: float = 0.0, like=None):
    """A :class:`cosim.read.readchain.ReadChain` of ``spec`` at conductances ``G`` behind ``pc`` with
    its capacitor sized for the array (:func:`periphery_for_tile`). Sized for the larger read
    direction, the other one uses less of the swing and the ADC: those warnings are dropped.
    ``like``: a chain this function built before; with the same arguments but ``G`` it serves
    as the new one at ``G`` (:meth:`ReadChain.with_conductances`: the sizing is not redone)."""
    key = (pc, spec, float(g_max), float(g_offset), fit, engine)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".* of the ADC range", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=".* of its swing", category=RuntimeWarning)
        made = getattr(like, "_sized_by", None)
        if made is not None and made[0] is pc and made[1:4] == key[1:4] and made[4] is fit and made[5] is engine:
            return like.with_conductances(G)
        chain = ReadChain(spec, G, periphery_for_tile(pc, spec, g_max, g_offset=g_offset), engine=engine, fit=fit)
    chain._sized_by = key
    return chain


def ranged_read(chain: ReadChain, gains: dict, key, x: np.ndarray, transpose: bool, steps: int, *,
                adapt: bool = True, **read_kw):
    """A read of ``chain`` (sized for the worst case) at the gain its tile and direction hold in
    ``gains[key]``: the capacitor divided by ``2**k`` (:meth:`ReadChain.with_gain`), ``k`` in
    0..``steps``. Autoranging from the codes alone, as a chip's digital side can do it:

    - the first read of a key starts at ``k = 0`` and raises ``k`` until its largest code sits at
      about ``RANGE_TARGET`` of the half range, reading again after each step;
    - a read with clipped codes lowers ``k`` one step and reads again (never back up within the
      read), so no result is clipped unless ``k = 0`` clips (the worst-case sizing);
    - a read whose largest code stays below ``RANGE_CREEP`` of the half range raises ``k`` one
      step for the next read.

    The bank stops where the capacitor would fall below the op-amp's lag term of the heaviest
    line (:meth:`ReadChain.max_gain`). ``adapt=False`` reads at the held gain and changes
    nothing (the audit's reads).
    Returns the :class:`ReadResult`; ``gains[key]`` holds the new step.
    """
    k = gains.get(key)
    ranging = k is None
    k = 0 if ranging else int(k)
    if not adapt:
        return chain.with_gain(k).read_values(x, transpose=transpose, **read_kw)
    steps = min(steps, chain.max_gain(transpose))        # no step below the op-amp's lag term
    k = min(k, steps)       # a held step the lag limit has since passed (the lines' conductance grew)
    ceiling = steps
    for _ in range(2 * steps + 2):          # each pass lowers the ceiling or moves k towards it
        res = chain.with_gain(k).read_values(x, transpose=transpose, **read_kw)
        peak, clipped = chain.code_use(res)
        if clipped > 0 and k > 0:
            ceiling = k = k - 1
            continue
        up = int(np.floor(np.log2(RANGE_TARGET / max(peak, 1e-9)))) if ranging else 0
        if up > 0 and k < ceiling:
            k = min(ceiling, k + up)
            continue
        break
    if not ranging and clipped == 0 and peak < RANGE_CREEP and k < steps:
        k += 1
    gains[key] = k
    return res


@contextmanager
def gains_restored(layers):
    """Reads inside leave the autoranging gains of ``layers`` as they were before (probe reads,
    an audit's reads of the layers above the audited one)."""
    saved = [[dict(t.gains) for t in layer.tiles] for layer in layers]
    try:
        yield
    finally:
        for layer, held in zip(layers, saved):
            for t, g in zip(layer.tiles, held):
                t.gains = g


def periphery_for_tile(pc, spec: CrossbarSpec, g_max: float, *, g_offset: float = 0.0):
    """``pc`` with the array's read voltage and an integrator capacitor sized for ``spec``.

    The worst-case line conductance: forward, a physical column of ``rows`` cells at ``g_max``;
    transposed, a row of ``cols`` cells at ``g_max``. A differential array's transposed read
    drives each pair's two columns in opposite phases, so the output swings with the pair's
    larger device in phase 1 before the other one brings it back: the swing, not the signed sum,
    must fit. Of it, ``pc.full_scale`` of the part above ``g_offset`` plus all of
    ``n g_offset`` (a conductance every cell of the array sits at, e.g. the 3T1C array's
    g_shared: with inputs of one sign its charge is systematic, not a rare worst case) must use
    90 % of the smaller of the ADC's and the op-amp's half ranges.
    """
    dac = replace(pc.dac, v_read=spec.v_read)
    offset = min(max(g_offset, 0.0), g_max)
    n = max(spec.rows, spec.cols)       # cells on the longer line: read along it in one direction or the other
    q_max = full_scale_volt_seconds(dac) * (n * offset + pc.full_scale * (n * g_max - n * offset))
    v0 = start_voltage(pc.integrator)
    lo, hi = swing(pc.integrator)
    half = min(v0 - pc.adc.v_lo, pc.adc.v_hi - v0, v0 - lo, hi - v0)
    if half <= 0:
        raise ParameterError(f"the integrator starts at {v0:g} V, outside the ADC range "
                             f"[{pc.adc.v_lo:g}, {pc.adc.v_hi:g}] V or the op-amp swing [{lo:g}, {hi:g}] V")
    integ = replace(pc.integrator, c_int=q_max / (0.9 * half))
    return replace(pc, dac=dac, integrator=integ)


class Updater(Protocol):
    """Applies one mini-batch's update dW = -lr x^T d to a tile's conductances (in place).

    ``x`` (batch, tile rows) and ``d`` (batch, tile cols) are per sample, so pulse-based updaters
    can apply the samples in sequence, as the hardware does.
    """

    def apply(self, tile: Tile, x: np.ndarray, d: np.ndarray, lr: float, scale: np.ndarray,
              mapping: MappingSpec, rng: np.random.Generator) -> None: ...


@dataclass(frozen=True)
class IdealUpdate:
    """The control: the exact float update, W + dW clipped to +-w_max (per column scale), written
    back onto the pair as a fresh mapping (one device at g_min, the other carrying the weight)."""

    def apply(self, tile: Tile, x: np.ndarray, d: np.ndarray, lr: float, scale: np.ndarray,
              mapping: MappingSpec, rng: np.random.Generator) -> None:
        W = scale[None, :] * (tile.g_plus - tile.g_minus) - lr * x.T @ d
        g_max_w = scale[None, :] * mapping.g_range
        W = np.clip(W, -g_max_w, g_max_w)
        tile.g_plus = mapping.g_min + np.maximum(W, 0) / scale[None, :]
        tile.g_minus = mapping.g_min + np.maximum(-W, 0) / scale[None, :]


class AnalogLayer:
    """A dense layer y = x W (+ b) stored on crossbar tiles.

    Parameters
    ----------
    W : ndarray (n_in, n_out)
        Initial weights (a bias row is appended when ``cfg.bias``).
    cfg : LayerConfig
    engine : Engine, optional
        ngspice engine for spice reads.
    """

    def __init__(self, W: np.ndarray, cfg: LayerConfig, *, b: np.ndarray | None = None, engine=None):
        W = np.asarray(W, dtype=float)
        if W.ndim != 2:
            raise ShapeError(f"W must be 2-D, got {W.shape}")
        if cfg.bias:
            W = np.vstack([W, np.zeros((1, W.shape[1])) if b is None else np.asarray(b, float)[None, :]])
        self.cfg = cfg
        self.engine = engine
        self.n_in, self.n_out = W.shape
        gp, gm, self.scale = to_conductances(W, cfg.mapping)
        self.tiles = [Tile(r, c, gp[r, c].copy(), gm[r, c].copy())
                      for r, c in tile_slices(self.n_in, self.n_out, cfg.max_rows, cfg.max_cols)]
        self.W_soft = W.copy()      # used only by the "software" backend
        self.adapt_gains = True     # autoranging chains: reads move the gains (False: held, e.g. an export)

    # -- state --------------------------------------------------------------------------------
    def weights(self) -> np.ndarray:
        """The weights the conductances store, (n_in(+1), n_out)."""
        W = np.zeros((self.n_in, self.n_out))
        for t in self.tiles:
            W[t.rows, t.cols] = from_conductances(t.g_plus, t.g_minus, self.scale[t.cols])
        return W

    def conductances(self) -> tuple[np.ndarray, np.ndarray]:
        gp, gm = np.zeros((self.n_in, self.n_out)), np.zeros((self.n_in, self.n_out))
        for t in self.tiles:
            gp[t.rows, t.cols], gm[t.rows, t.cols] = t.g_plus, t.g_minus
        return gp, gm

    def set_conductances(self, gp: np.ndarray, gm: np.ndarray) -> None:
        for t in self.tiles:
            t.g_plus, t.g_minus = gp[t.rows, t.cols].copy(), gm[t.rows, t.cols].copy()
            t.changed()

    def range_state(self) -> np.ndarray:
        """Autoranging gain steps (n_tiles, 4) in :data:`GAIN_KEYS` order, -1 where unset."""
        return np.array([[t.gains.get(key, -1) for key in GAIN_KEYS] for t in self.tiles], dtype=np.int64)

    def set_range_state(self, state) -> None:
        a = np.asarray(state)
        if a.shape != (len(self.tiles), len(GAIN_KEYS)) or not np.issubdtype(a.dtype, np.integer) \
                or a.min(initial=0) < -1 or a.max(initial=0) > MAX_AUTORANGE:
            raise ShapeError(f"autoranging state must be integers in -1..{MAX_AUTORANGE} shaped "
                             f"{(len(self.tiles), len(GAIN_KEYS))}, got {a.dtype} {a.shape}")
        for t, row in zip(self.tiles, a):
            t.gains = {key: int(k) for key, k in zip(GAIN_KEYS, row) if k >= 0}

    # -- reads --------------------------------------------------------------------------------
    def augment(self, x: np.ndarray) -> np.ndarray:
        """``x`` with the bias input (a column of ones) when the layer has a bias row."""
        if self.cfg.bias:
            return np.hstack([x, np.ones((x.shape[0], 1))])
        return x

    def forward(self, x: np.ndarray, backend: str = "fast") -> np.ndarray:
        """y = x W for a batch x (batch, n_in) through the chosen read backend."""
        xa = self.augment(np.asarray(x, float))
        if backend == "software":
            return xa @ self.W_soft
        return self._read(xa, transpose=False, backend=backend)

    def backward(self, d: np.ndarray, backend: str = "fast") -> np.ndarray:
        """dx = d W^T (bias row dropped), by the transposed read of the same arrays."""
        d = np.asarray(d, float)
        if backend == "software":
            out = d @ self.W_soft.T
        else:
            out = self._read(d, transpose=True, backend=backend)
        return out[:, :-1] if self.cfg.bias else out

    def _read(self, u: np.ndarray, transpose: bool, backend: str) -> np.ndarray:
        """The read frame every layer shares: column scales on transposed drives, per-sample
        abs-max scaling to the read voltage, the tiles' partial sums (:meth:`read_tile`), the
        scales back."""
        if backend not in READ_BACKENDS:
            raise ValueError(f"unknown read backend {backend!r}; choose one of {READ_BACKENDS}")
        V, amax = self.drive(u, transpose)
        out = np.zeros((u.shape[0], self.n_in if transpose else self.n_out))
        for t in self.tiles:
            src, dst = (t.cols, t.rows) if transpose else (t.rows, t.cols)
            out[:, dst] += self.read_tile(t, V[:, src], transpose, backend)
        return self.undrive(out, amax, transpose)

    def drive(self, u: np.ndarray, transpose: bool) -> tuple[np.ndarray, np.ndarray]:
        """Drive voltages (batch, lines) for the layer inputs ``u`` and the per-sample scale."""
        if transpose:   # dx_i = sum_j d_j s_j (G+ - G-)_ij: weight the drives by the column scales
            u = u * self.scale[None, :]
        amax = np.abs(u).max(axis=1, keepdims=True)
        amax[amax == 0] = 1.0
        return u / amax * self.cfg.v_read, amax

    def undrive(self, out: np.ndarray, amax: np.ndarray, transpose: bool) -> np.ndarray:
        """Summed tile outputs [A] back to the layer's numbers (column scales, sample scales)."""
        if not transpose:
            out = out * self.scale[None, :]
        return out * amax / self.cfg.v_read

    def read_tile(self, t: Tile, V: np.ndarray, transpose: bool, backend: str, *, adapt: bool | None = None,
                  analog: list | None = None) -> np.ndarray:
        """One tile's digitised output [A] for drive voltages ``V`` (batch, tile inputs).
        ``adapt=False``: an autoranging chain reads at its held gain and keeps it (audits); None:
        ``self.adapt_gains``. ``analog`` (a list): the same output before its converters is
        appended to it (the audit's analog error)."""
        cfg = self.cfg
        adapt = self.adapt_gains if adapt is None else adapt
        offset = t.out_offset if (t.out_offset is not None and not transpose) else 0.0
        if backend == "calibrated" and cfg.calibration is None:
            raise ParameterError("the calibrated read backend needs LayerConfig.calibration (the IR-drop model of "
                                 "`xbar calibrate`: cosim.calibrate.bundle.load_calibration)")
        if cfg.periphery is not None and backend in CHAIN_BACKENDS:
            # DAC codes -> array -> integrators -> ADCs -> digital difference [A]
            chain = t.read_chain(cfg, self.engine, cfg.periphery_fit)
            res = ranged_read(chain, t.gains, ("main", transpose), V / cfg.v_read, transpose, cfg.chain_autorange,
                              adapt=adapt, **chain_read(backend, cfg))
            if analog is not None:
                analog.append(res.current + offset)
            return res.decoded + offset
        I = t.crossbar(cfg, self.engine).read(V, transpose=transpose, backend=backend, calibration=cfg.ir_model)
        if analog is not None:
            analog.append(I + offset)
        full_scale = cfg.out_bound * V.shape[1] * cfg.v_read * cfg.mapping.g_range
        return quantize(I + offset, cfg.adc_bits, full_scale)

    # -- update -------------------------------------------------------------------------------
    def update(self, x: np.ndarray, d: np.ndarray, lr: float, updater: Updater, rng: np.random.Generator,
               software: bool = False) -> None:
        """W <- W - lr x^T d, through ``updater`` (or on the float weights when ``software``)."""
        xa = self.augment(np.asarray(x, float))
        d = np.asarray(d, float)
        if software:
            self.W_soft -= lr * xa.T @ d
            return
        for t in self.tiles:
            updater.apply(t, xa[:, t.rows], d[:, t.cols], lr, self.scale[t.cols], self.cfg.mapping, rng)
            self._written(t)

    def _written(self, tile: Tile) -> None:
        """An update wrote ``tile``: drop what was cached for its old conductances."""
        tile.changed()


def with_ideal_periphery(cfg: LayerConfig) -> LayerConfig:
    """The same layer without wires and quantisation (for baselines)."""
    return replace(cfg, r_wire=0.0, adc_bits=None, periphery=None, periphery_fit=None)

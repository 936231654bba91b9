"""The IBM 2018 unit cell: a PCM pair (more significant, gain F) plus a 3T1C cell (less
significant) per weight, with periodic transfer and polarity inversion (Ambrogio et al.,
Nature 558:60, 2018).

Layer: cosim.train. One weight is::

    W = scale * ( F (G+ - G-)  +  p (g - g_ref) )
                  \\__ MSP __/      \\__ LSP ___/

- MSP: the PCM pair of :class:`~cosim.train.layers.Tile` (``g_plus``, ``g_minus``), on the same
  interleaved differential crossbar as the plain pair. It changes only at transfers.
- LSP: one 3T1C cell per weight whose state is its capacitor voltage V_C (``UnitCellTile.vc``);
  its read conductance ``g = Cap3T1C.to_conductance(V_C)`` (chord conductance of the read FET
  at the cell's ``v_read``).
- ``g_shared``: the reference conductance: 3T1C reference cells set to ``vc_shared`` (default:
  the middle of the V_C range) at every reset, so ``g_shared = to_conductance(vc_shared)`` and a
  freshly reset cell contributes exactly zero. The reference cells are 3T1C cells of the same
  array (``UnitCellTile.vc_ref``): they leak with it during update slots, so the RC decay
  common to a cell and its reference cancels in g - g_ref.
- ``p`` = +-1: the polarity of the LSP, inverted at every transfer (all tiles of a layer
  together), so that the 3T1C up/down asymmetry, which comes from the transistor-level cell
  (:mod:`models.cap3t1c`), acts on weight increases in one transfer period and on decreases in
  the next, and cancels to first order.
- ``scale = w_max / (F g_range_pcm)`` [weight/S]: a full PCM pair (F g_range) maps to ``w_max``.

Reads. The LSP is a differential crossbar like the PCM pair's: each weight's 3T1C cell g_ij
and a reference cell at g_shared on the adjacent column (``cell="diff"``), so a forward read
senses I_lsp_j = I_j - I_ref_j from two columns that see the same row voltages, and a
transposed read drives each pair's columns with opposite signs. (A single reference column for
the whole array, as one might share g_shared, is ruined by IR drop: every cell's g_shared
current reaches the sense nodes attenuated by its position along the rows, and the reference
column at one end cannot cancel it. At 256 rows and 1 ohm per segment the residual of an
all-reference array was 2.5 times the PCM pair's signal.) Both arrays are read on the same
backend (ideal, fast or spice: a spice read simulates both arrays, wires included), each
through its own ideal ADC, and combined digitally::

    I = F q(I_msp) + p (v_read / v_lsp) q(I_lsp)

The LSP array is read at the 3T1C's own read voltage ``v_lsp`` (0.1 V, where its read FET was
fitted), its drive scaled by ``v_lsp / v_read``; the factor undoes that. The 3T1C cells are
rendered as resistors at their chord conductance at ``v_lsp``: exact for pulse-width-coded
inputs at a fixed read voltage (IBM's scheme), an approximation for the amplitude-coded reads
used here (the read FET's v^2 term is not in the array read).

With ``LayerConfig.periphery`` the ``fast`` and ``spice`` reads go through the read chain
instead of the ideal ADCs: each array behind its own DACs, integrators and ADCs
(:class:`cosim.read.readchain.ReadChain`; the PCM pair's capacitors sized for the PCM range, the
3T1C array's for the 3T1C range and its g_shared offset at its own read voltage), each pair's
reference subtracted and the two parts combined digitally from the decoded charges; with
``LayerConfig.periphery_fit`` too, the fast chain reads use the fitted integrator/ADC transfer.

Updates (:class:`CapUpdate`). Stochastic pulse coincidence (:func:`cosim.write.pulses.pulse_trains`):
each coincidence of a sub-phase of weight polarity ``s`` gives its cell an ``up`` pulse if
``s p > 0`` and a ``dn`` pulse otherwise, on the 3T1C twin (``fast``; pump currents fitted to
ngspice, so the asymmetry is the circuit's) or in ngspice (``spice``: per mini-batch and tile,
one transient of the transistor-level subcircuits of every cell that receives a pulse, each
driven on up/dn by its own coincidence pulses, sub-phase after sub-phase; the row/column AND
is evaluated in numpy and the write lines' wires are not simulated; cells without a pulse
leak on the twin over the same time). The twin leaks every cell by RC during the slots of an
update (not during reads). States are clipped to the V_C range (the pumps leave saturation
beyond it). :class:`LspIdealUpdate` is the float control
of the LSP (the exact dW, written onto the capacitors).

Transfer (:meth:`UnitCellLayer.transfer`, every ``transfer_every`` mini-batches): for every
weight, take the LSP dg = p (g - g_ref) (from the cell states: an ideal read, no ADC) and
add dg / F to the pair, SET-only: raise G+ if
dg > 0, else raise G-. A pair whose raised device would pass ``refresh_at`` of the range is
refreshed: both devices RESET, the new difference programmed onto one of them. Programming is
closed-loop (:func:`cosim.write.pair_update.write_verify` on the PCM twin, within ``transfer_tol``; a
change smaller than the tolerance leaves the pair as it is). Then p flips and every capacitor
is set (an ideal reset switch and a write of the capacitor, not part of the 3T1C model) to hold
only what the programming missed, under the new polarity: ``g_shared`` where the pair reached
its target, so no update is lost to the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cosim.read.mvm import Crossbar
from cosim.sim.engine import SubprocessEngine
from cosim.train.layers import (
    CHAIN_BACKENDS, AnalogLayer, LayerConfig, Tile, chain_read, quantize, ranged_read, serves, sized_read_chain,
)
from cosim.write.mapping import MappingSpec
from cosim.write.program import write_verify
from cosim.write.pulses import MASK_BITS, coincidence_counts, coincidence_masks
from models.device import DeviceModel
from models.errors import ParameterError, ShapeError
from models.pulse import PulseShape
from models.registry import get_device
from netlists.benches import pulse_bench
from netlists.crossbar import CrossbarSpec, interleave

CELLS = ("pair", "2pcm3t1c")


@dataclass(frozen=True)
class UnitCellSpec:
    """The 2 PCM + 3T1C unit cell.

    Attributes
    ----------
    gain_f : float
        Gain F of the PCM pair relative to the 3T1C cell [-] (3 in Ambrogio 2018).
    transfer_every : int
        Mini-batches between transfers of the LSP into the PCM pair.
    transfer_tol : float
        Write-verify tolerance of the PCM programming at a transfer [S] (at least half the
        largest PCM step, 0.52 uS for the preset, so that some pulse count lands within it).
    refresh_at : float
        Fraction of the PCM range above which a pair is refreshed (RESET both, reprogram).
    vc_shared : float or None
        Capacitor voltage of the reference cells and of a reset cell [V] (None: the middle of
        the 3T1C's V_C range).
    max_rounds : int
        Write-verify rounds per transfer.
    invert_polarity : bool
        Flip p at every transfer (the paper's scheme; False: an ablation control).
    """

    gain_f: float = 3.0
    transfer_every: int = 20
    transfer_tol: float = 0.3e-6
    refresh_at: float = 0.9
    vc_shared: float | None = None
    max_rounds: int = 20
    invert_polarity: bool = True

    def __post_init__(self) -> None:
        if not (self.gain_f > 0 and np.isfinite(self.gain_f)):
            raise ParameterError(f"gain_f must be > 0, got {self.gain_f}")
        if self.transfer_every < 1:
            raise ParameterError(f"transfer_every must be >= 1, got {self.transfer_every}")
        if not (self.transfer_tol > 0 and np.isfinite(self.transfer_tol)):
            raise ParameterError(f"transfer_tol must be > 0, got {self.transfer_tol}")
        if not 0 < self.refresh_at <= 1:
            raise ParameterError(f"refresh_at must be in (0, 1], got {self.refresh_at}")
        if self.max_rounds < 1:
            raise ParameterError(f"max_rounds must be >= 1, got {self.max_rounds}")


def _uniform(f, a: np.ndarray) -> np.ndarray:
    """``f(a)`` of an elementwise ``f``, evaluated once where every entry of ``a`` is the same
    (the reference cells: they leak alike between transfers)."""
    if a.size and a.min() == a.max():
        return np.full(a.shape, f(a.ravel()[:1])[0])
    return f(a)


@dataclass
class UnitCellTile(Tile):
    """A tile with a PCM pair (``g_plus``, ``g_minus``) and a 3T1C array (``vc`` [V]) with a
    reference cell beside each cell (``vc_ref`` [V])."""

    vc: np.ndarray | None = None
    vc_ref: np.ndarray | None = None
    polarity: int = 1
    _lsp: Crossbar | None = field(default=None, repr=False)
    _lsp_chain: object = field(default=None, repr=False)
    _lsp_chain_before: object = field(default=None, repr=False)

    def lsp_crossbar(self, cfg: LayerConfig, lsp: DeviceModel, g_shared: float, engine=None) -> Crossbar:
        """The 3T1C array: each cell beside its reference cell (a differential array, see the
        module docstring); its reads give g - g_ref directly."""
        if self._lsp is None:
            R, C = self.vc.shape
            g = np.maximum(lsp.to_conductance(self.vc), 1e-12)
            ref = np.full((R, C), g_shared) if self.vc_ref is None else np.maximum(_uniform(lsp.to_conductance,
                                                                                             self.vc_ref), 1e-12)
            spec = CrossbarSpec(rows=R, cols=C, cell="diff", r_row=cfg.r_wire, r_col=cfg.r_wire, v_read=lsp.v_read)
            self._lsp = Crossbar(spec, interleave(g, ref), engine=engine)
        return self._lsp

    def lsp_read_chain(self, cfg: LayerConfig, lsp: DeviceModel, g_shared: float, engine=None, fit=None):
        """The 3T1C array (reference cells included) behind ``cfg.periphery``: its own
        integrators and ADCs at the 3T1C read voltage, the capacitor sized for its conductance
        range (:func:`cosim.train.layers.periphery_for_tile`); cached until the LSP changes (or a
        caller asks for another engine or fit)."""
        if not serves(self._lsp_chain, engine, fit):
            xb = self.lsp_crossbar(cfg, lsp, g_shared, engine)
            g = np.sort(lsp.to_conductance(np.array(lsp.state_range, float)))
            self._lsp_chain = self._lsp_chain_before = sized_read_chain(
                cfg.periphery, xb.spec, xb.G, float(g[1]), engine=engine, fit=fit, g_offset=g_shared,
                like=self._lsp_chain_before)
        return self._lsp_chain

    def lsp_changed(self) -> None:
        self._lsp = None
        self._lsp_chain = None

    def changed(self) -> None:
        super().changed()
        self._lsp = None
        self._lsp_chain = None


class UnitCellLayer(AnalogLayer):
    """A dense layer on 2 PCM + 3T1C unit cells (see the module docstring).

    Parameters
    ----------
    W : ndarray (n_in, n_out)
        Initial weights: programmed onto the PCM pairs (the LSP starts at zero).
    cfg : LayerConfig
        Its mapping's conductance range should be the PCM's (:func:`cosim.write.pair_update.mapping_for`).
    spec : UnitCellSpec
    msp, lsp : DeviceModel, optional
        The pair's device (default: PCM preset) and the 3T1C cell (default: Cap3T1C preset).
    """

    def __init__(self, W: np.ndarray, cfg: LayerConfig, spec: UnitCellSpec | None = None, *,
                 b: np.ndarray | None = None, engine=None, msp: DeviceModel | None = None,
                 lsp: DeviceModel | None = None):
        super().__init__(W, cfg, b=b, engine=engine)
        self.spec = spec or UnitCellSpec()
        self.msp = msp or get_device("pcm")
        self.lsp = lsp or get_device("cap3t1c")
        lo, hi = self.lsp.state_range
        self.vc_shared = 0.5 * (lo + hi) if self.spec.vc_shared is None else float(self.spec.vc_shared)
        if not lo <= self.vc_shared <= hi:
            raise ParameterError(f"vc_shared = {self.vc_shared} V lies outside the 3T1C range [{lo}, {hi}] V")
        self.g_shared = float(self.lsp.to_conductance(self.vc_shared))
        self.g_lsp_range = float(np.ptp(self.lsp.to_conductance(np.array(self.lsp.state_range))))
        self.scale = self.scale / self.spec.gain_f       # W = scale (F (G+ - G-) + p (g - g_ref))
        self.tiles = [UnitCellTile(t.rows, t.cols, t.g_plus, t.g_minus, vc=np.full(t.g_plus.shape, self.vc_shared),
                                   vc_ref=np.full(t.g_plus.shape, self.vc_shared)) for t in self.tiles]
        self.transfers = 0
        self.transfer_log: list[dict] = []

    # -- state --------------------------------------------------------------------------------
    def lsp_conductance(self, t: UnitCellTile) -> np.ndarray:
        """p (g - g_ref) of a tile [S]."""
        return t.polarity * (self.lsp.to_conductance(t.vc) - self.lsp.to_conductance(t.vc_ref))

    def weights(self) -> np.ndarray:
        return self.msp_weights() + self.lsp_weights()

    def msp_weights(self) -> np.ndarray:
        W = np.zeros((self.n_in, self.n_out))
        for t in self.tiles:
            W[t.rows, t.cols] = self.scale[t.cols][None, :] * self.spec.gain_f * (t.g_plus - t.g_minus)
        return W

    def lsp_weights(self) -> np.ndarray:
        W = np.zeros((self.n_in, self.n_out))
        for t in self.tiles:
            W[t.rows, t.cols] = self.scale[t.cols][None, :] * self.lsp_conductance(t)
        return W

    def unit_state(self) -> dict[str, np.ndarray]:
        """Capacitor voltages (n_in, n_out) [V] of the cells and of their reference cells, per-tile
        polarities and the transfer count."""
        vc, ref = np.zeros((self.n_in, self.n_out)), np.zeros((self.n_in, self.n_out))
        for t in self.tiles:
            vc[t.rows, t.cols], ref[t.rows, t.cols] = t.vc, t.vc_ref
        return {"vc": vc, "vc_ref": ref, "polarity": np.array([t.polarity for t in self.tiles], int),
                "transfers": np.array(self.transfers)}

    def set_unit_state(self, state) -> None:
        vc, pol = np.asarray(state["vc"], float), np.asarray(state["polarity"]).ravel()
        ref = np.asarray(state.get("vc_ref", np.full(vc.shape, self.vc_shared)), float)
        for name, a in (("vc", vc), ("vc_ref", ref)):
            if a.shape != (self.n_in, self.n_out) or not np.isfinite(a).all():
                raise ShapeError(f"unit-cell state: {name} must be finite, shaped {(self.n_in, self.n_out)}, "
                                 f"got {a.shape}")
        if pol.shape != (len(self.tiles),) or not np.isin(pol, (-1, 1)).all():
            raise ParameterError(f"unit-cell state: polarity must hold one +-1 per tile ({len(self.tiles)}), got {pol}")
        for t, p in zip(self.tiles, pol):
            t.vc, t.vc_ref = vc[t.rows, t.cols].copy(), ref[t.rows, t.cols].copy()
            t.polarity = int(p)
            t.lsp_changed()
        self.transfers = int(state["transfers"])

    # -- reads --------------------------------------------------------------------------------
    def read_tile(self, t: UnitCellTile, V: np.ndarray, transpose: bool, backend: str, *,
                  adapt: bool | None = None, analog: list | None = None) -> np.ndarray:
        """F q(I_msp) + p (v_read / v_lsp) q(I_lsp): both arrays of the tile on ``backend``
        (through the read chain: each line quantised by its own ADC and each pair's reference
        line's decoded current subtracted digitally)."""
        cfg, F = self.cfg, self.spec.gain_f
        adapt = self.adapt_gains if adapt is None else adapt
        v_lsp = self.lsp.v_read
        k = v_lsp / cfg.v_read
        n_src = V.shape[1]
        cal = cfg.ir_model
        if backend == "calibrated" and cal is None:
            raise ParameterError("the calibrated read backend needs LayerConfig.calibration (the IR-drop model of "
                                 "`xbar calibrate`: cosim.calibrate.bundle.load_calibration)")
        if cfg.periphery is not None and backend in CHAIN_BACKENDS:
            # each array through its own DACs, integrators and ADCs; the differences to the
            # reference lines and the combination are digital
            x, kw, n = V / cfg.v_read, chain_read(backend, cfg), cfg.chain_autorange
            msp = t.read_chain(cfg, self.engine, cfg.periphery_fit)
            lsp = t.lsp_read_chain(cfg, self.lsp, self.g_shared, self.engine, cfg.periphery_fit)
            r_msp = ranged_read(msp, t.gains, ("main", transpose), x, transpose, n, adapt=adapt, **kw)
            r_lsp = ranged_read(lsp, t.gains, ("lsp", transpose), x, transpose, n, adapt=adapt, **kw)
            if analog is not None:
                analog.append(F * r_msp.current + t.polarity * r_lsp.current / k)
            return F * r_msp.decoded + t.polarity * r_lsp.decoded / k
        A_msp = t.crossbar(cfg, self.engine).read(V, transpose=transpose, backend=backend, calibration=cal)
        I_msp = quantize(A_msp, cfg.adc_bits, cfg.out_bound * n_src * cfg.v_read * cfg.mapping.g_range)
        A_lsp = t.lsp_crossbar(cfg, self.lsp, self.g_shared, self.engine).read(V * k, transpose=transpose,
                                                                              backend=backend, calibration=cal)
        I_lsp = quantize(A_lsp, cfg.adc_bits, cfg.out_bound * n_src * v_lsp * self.g_lsp_range)
        if analog is not None:
            analog.append(F * A_msp + t.polarity * A_lsp / k)
        return F * I_msp + t.polarity * I_lsp / k

    # -- update and transfer --------------------------------------------------------------------
    def _written(self, tile: UnitCellTile) -> None:
        """Updates write the 3T1C cells only (the PCM pair changes at transfers)."""
        tile.lsp_changed()

    def transfer(self) -> dict:
        """Add the LSP into the PCM pairs, invert the polarity, and leave on each capacitor only
        what the PCM programming missed (its tolerance, or the device range: ``g_shared`` when
        programming hit the target); returns statistics (pulses, refreshes, unconverged cells,
        largest weight change)."""
        spec, F, m = self.spec, self.spec.gain_f, self.cfg.mapping
        msp = self.msp
        W0 = self.weights()
        stats = {"pulses": 0, "refreshes": 0, "unconverged": 0}
        full = m.g_min + spec.refresh_at * m.g_range
        g_lo, g_hi = np.sort(self.lsp.to_conductance(np.array(self.lsp.state_range, float)))
        for t in self.tiles:
            dg = self.lsp_conductance(t) / F
            gp, gm = t.g_plus, t.g_minus
            tp = np.where(dg > 0, gp + dg, gp)
            tm = np.where(dg < 0, gm - dg, gm)
            hot = np.maximum(tp, tm) > full
            D = gp - gm + dg
            tp = np.clip(np.where(hot, m.g_min + np.maximum(D, 0), tp), m.g_min, m.g_max)
            tm = np.clip(np.where(hot, m.g_min + np.maximum(-D, 0), tm), m.g_min, m.g_max)
            sp, sm = msp.from_conductance(gp), msp.from_conductance(gm)
            if hot.any() and hasattr(msp, "reset"):
                sp, sm = np.where(hot, msp.reset(sp), sp), np.where(hot, msp.reset(sm), sm)
            stats["refreshes"] += int(hot.sum())
            for name, s, target in (("g_plus", sp, tp), ("g_minus", sm, tm)):
                res = write_verify(msp, s, target, tol=spec.transfer_tol, max_rounds=spec.max_rounds)
                setattr(t, name, res.conductance)
                stats["pulses"] += res.pulses
                stats["unconverged"] += int((~res.converged).sum())
            if spec.invert_polarity:
                t.polarity = -t.polarity
            # what programming missed (within its tolerance, or beyond the device range) stays on
            # the capacitor, under the new polarity: small updates are not lost at a transfer
            residual = F * (D - (t.g_plus - t.g_minus))
            g = np.clip(self.g_shared + t.polarity * residual, g_lo, g_hi)
            t.vc = np.asarray(self.lsp.from_conductance(g), float)
            t.vc_ref = np.full(t.vc.shape, self.vc_shared)          # the reference cells are reset too
            t.changed()
        self.transfers += 1
        stats["max_abs_dw"] = float(np.abs(self.weights() - W0).max())
        return stats


# ---------------------------------------------------------------------------------------------
# Updaters of the 3T1C cells


@dataclass
class CapUpdate:
    """Pulse-coincidence updates of a :class:`UnitCellTile`'s 3T1C cells.

    Parameters
    ----------
    device : DeviceModel
        The 3T1C cell (ports ``p n up dn vdd``).
    bl : int
        Slots per sub-phase.
    backend : "fast" or "spice"
        ``fast``: the twin; ``spice``: one ngspice transient per mini-batch and tile of the
        pulsed cells' subcircuits, driven on up/dn by their coincidences (module docstring).
    shape : PulseShape
    engine : Engine, optional
    """

    device: DeviceModel
    bl: int = 10
    backend: str = "fast"
    shape: PulseShape = field(default_factory=PulseShape)
    engine: object = None
    transients: int = 0
    pulses: int = 0

    def __post_init__(self) -> None:
        if "up" not in self.device.ports or "dn" not in self.device.ports:
            raise ParameterError(f"CapUpdate needs a cell with up/dn pump ports; {self.device.name} has "
                                 f"{self.device.ports}")
        if self.backend not in ("fast", "spice"):
            raise ParameterError(f"3T1C update backend must be 'fast' or 'spice', got {self.backend!r}")
        if self.bl < 1:
            raise ParameterError(f"bl must be >= 1, got {self.bl}")
        self._step: tuple | None = None     # (device, pulse, step) of the last step_conductance

    def step_conductance(self) -> float:
        """Conductance change of one up pulse at the middle of the V_C range [S] (computed once
        per device and pulse)."""
        dev = self.device
        if self._step is None or self._step[0] is not dev or self._step[1] != self.shape:
            mid = np.array([0.5 * sum(dev.state_range)])
            self._step = (dev, self.shape, float((dev.to_conductance(dev.step(mid, dev.v_write, self.shape))
                                                  - dev.to_conductance(mid))[0]))
        return self._step[2]

    def _dw_min(self, scale: np.ndarray) -> float:
        """The weight change of one coincidence: the tiles' mean scale times one pulse's step."""
        return float(np.mean(scale)) * self.step_conductance()

    def pulse_counts(self, x: np.ndarray, d: np.ndarray, lr: float, scale: np.ndarray, polarity: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Pulses per sub-phase and cell (samples * 4, rows, cols), float32 whole numbers, and
        each sub-phase's direction (+1 up, -1 dn) on this tile (its ``polarity`` applied)."""
        counts, pol = coincidence_counts(x, d, lr=lr, dw_min=self._dw_min(scale), bl=self.bl, rng=rng)
        return counts, pol * polarity

    def apply(self, tile: UnitCellTile, x: np.ndarray, d: np.ndarray, lr: float, scale: np.ndarray,
              mapping: MappingSpec, rng: np.random.Generator) -> None:
        dev = self.device
        if self.backend == "fast" and self.bl <= MASK_BITS and hasattr(dev, "apply_masks"):
            # all sub-phases in one pass, each cell's count the popcount of its row's and column's slots
            rm, cm, pol = coincidence_masks(x, d, lr=lr, dw_min=self._dw_min(scale), bl=self.bl, rng=rng)
            s, slots, pulses = dev.apply_masks(tile.vc, rm, cm, pol * tile.polarity, self.shape)
            self.pulses += pulses
            self._settle(tile, s.ravel(), slots)
            return
        counts, pol = self.pulse_counts(x, d, lr, scale, tile.polarity, rng)
        self.pulses += int(counts.sum(dtype=np.float64))
        s = tile.vc.ravel()
        if self.backend == "fast":         # all sub-phases in one pass (a cell with up/dn ports: the 3T1C)
            s, slots = dev.apply_phases(s, counts.reshape(len(counts), -1), pol, self.shape)
        else:
            signed = counts.astype(np.int32) * pol.astype(np.int32)[:, None, None]
            slots = sum(int(np.abs(c).max()) for c in signed if c.any())
            s = self._spice(s, signed)
        self._settle(tile, s, slots)

    def _settle(self, tile: UnitCellTile, s: np.ndarray, slots: int) -> None:
        """The new capacitor voltages (flat), within the cell's range; the reference cells get no
        pulses but leak over the same slots as the array."""
        dev = self.device
        lo, hi = dev.state_range
        tile.vc = np.clip(s, lo, hi).reshape(tile.vc.shape)
        if tile.vc_ref is not None and slots:
            tile.vc_ref = np.clip(dev.leak(tile.vc_ref, slots * self.shape.period), lo, hi)

    def _spice(self, s: np.ndarray, signed: np.ndarray) -> np.ndarray:
        """One transient: cell i gets, sub-phase after sub-phase, its count of up or dn pulses."""
        live = [c.ravel() for c in signed if c.any()]
        if not live:
            return s
        slots = []
        for c in live:   # n slots per sub-phase, n its largest count
            n = int(np.abs(c).max())
            k = np.arange(n)[None, :]
            slots.append(np.where(np.abs(c)[:, None] > k, np.sign(c)[:, None] * self.device.v_write, 0.0))
        amps = np.hstack(slots)
        cells = np.flatnonzero(np.abs(amps).sum(axis=1))   # untouched cells: no instance
        bench = pulse_bench(self.device, s[cells], amps[cells], self.shape)
        names = bench.vectors["state"]
        res = (self.engine or SubprocessEngine()).run(bench.deck(), need=names, name="cap_update")
        self.transients += 1
        out = s.copy()
        # untouched cells leak like the others over the same time
        out = self.device.leak(out, amps.shape[1] * self.shape.period)
        out[cells] = [res.vectors[n][-1] for n in names]
        return out


@dataclass(frozen=True)
class LspIdealUpdate:
    """Float control of the LSP: the exact dW written onto the capacitors (clipped to the range)."""

    device: DeviceModel

    def apply(self, tile: UnitCellTile, x: np.ndarray, d: np.ndarray, lr: float, scale: np.ndarray,
              mapping: MappingSpec, rng: np.random.Generator) -> None:
        dev = self.device
        dg = -lr * (x.T @ d) / scale[None, :] * tile.polarity
        tile.vc = dev.from_conductance(dev.to_conductance(tile.vc) + dg)

"""The peripheral read chain on a real array: input codes -> DACs -> crossbar with wires ->
integrators -> ADCs -> output codes, in ONE ngspice transient, and its numpy twin.

Layer: cosim.read. The circuit is :func:`netlists.readchain.build_read_chain` (its timeline and
configuration live there too); this module runs it, decodes the saved vectors, and is the twin.

Choices (written once, here)
----------------------------
- Signed inputs: the DAC's ``signed="phases"`` mode (:mod:`models.dac`). Phase 1 drives the
  lines with positive codes at ``+V``, phase 2 the lines with negative codes at ``-V``; ONE
  integration window covers both phases, so each integrator accumulates the signed sum. No
  digital combination of sub-reads is needed for the sign.
- Bit-serial inputs: each bit slot is its own read window (reset, integrate a 1-bit pulse of
  area ``V pulse_slots t_lsb``, convert); shift-and-add combines the signed per-bit codes.
- Differential pairs (``cell="diff"``): one single-ended integrator + ADC per *physical*
  column; the signed output of weight column j is the digital difference
  ``code(2j+1) - code(2j)`` (the integrator inverts: more charge, lower code). Transposed reads
  drive column 2j with ``+code`` and column 2j+1 with ``-code`` (opposite phases), so each row
  integrator sees ``sum_j (G+ - G-) x_j`` directly. With ``sensing="pairs"`` a forward read
  integrates each pair's difference on one integrator (the G- column through a current mirror):
  one code per weight column, the converter's range spent on the difference alone.
- Single-ended outputs (``cell="1r"`` or transposed reads): signed output
  ``mid - code`` with ``mid = floor((v0 - v_lo) / lsb)``, the code of the integrator's start
  voltage ``v0`` (0 V unless the op-amp has an offset).
- A sense source ``Vsen_k`` between each line end and its integrator measures the charge.
- Overflow: the output ramps one way in phase 1 and back in phase 2, so a window with both signs
  (every transposed read of a differential array) can pass a rail halfway and end in range, with
  charge lost. Each output carries the code of its farthest excursion from the start
  (``ReadResult.swing``, a peak detector on the integrator output): the twin takes the output
  after phase 1 (linear) or at the end, the spice backend the transient's extremes.
  :meth:`ReadChain.code_use` ranges on it: an excursion to an end code counts as clipped.

1T1R arrays (``ReadChain(..., access=AccessParams())``): the twin puts the transistor's
on-resistance, measured once in ngspice at the potential of its source, in series with each
cell.

The fast backend is the twin of the whole chain: the wired array is linear and static, so its
charges are the exact solve of the volt-seconds (:class:`cosim.read.solver.CrossbarSolver`, or
``volt_seconds @ G_eff`` through the array's transfer for a large read), then the integrator twin
(:func:`models.integrator.charge_to_voltage`: finite gain and bandwidth, offset, leak,
saturation) and the ADC twin (:func:`models.adc.quantize` / :func:`models.adc.ramp_convert`).
With ``ReadChain(..., fit=PeripheryFit)`` the integrator and ADC twins give way to the transfer
fitted to ngspice (:mod:`cosim.read.periphery_fit`), carried over to this chain's capacitor,
column loads and integration time by :meth:`~cosim.read.periphery_fit.PeripheryFit.chain_voltage`.

Decoding (``ReadResult.decoded``): the converter's bin centre relative to the integrator's
start voltage, times the ideal capacitor, unbiased (:meth:`ReadChain.decode_charge`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from typing import Literal

import numpy as np

from cosim.read.mvm import Crossbar, LinearRead, split_like, stack_rows
from cosim.read.periphery_fit import check_chain_fit
from cosim.read.read_result import ReadResult
from cosim.read.solver import CrossbarSolver
from cosim.sim.engine import SubprocessEngine
from models.adc import RampAdcParams, check_adc_range, code_to_voltage, quantize, ramp_convert
from models.dac import shift_and_add, to_codes, volt_second_moments, volt_seconds
from models.errors import ParameterError, ShapeError, raise_or_warn
from models.integrator import charge_to_voltage, check_integrator_range, effective_capacitance, start_voltage, swing
from netlists.access import AccessParams
from netlists.benches import on_resistance_bench
from netlists.crossbar import CrossbarSpec, build_crossbar, check_conductances
from netlists.ir import Circuit
from netlists.readchain import (
    PeripheryConfig, build_read_chain, chain_schedule, chain_timing, chain_title, full_scale_time,
    full_scale_volt_seconds, paired_sensing, window_dac,
)
from netlists.spice import Tran, write_spice

__all__ = ["ReadResult", "ReadChain"]

Backend = Literal["spice", "fast", "spice-array"]
#: Read backends of a chain: the whole chain in one ngspice transient, its numpy twin, or the
#: twin with the array's charges from an ngspice DC read of the wired array.
CHAIN_READ_BACKENDS = ("spice", "fast", "spice-array")
PAIRED_LAG = 4.0        #: paired sensing: the capacitor stays this many times above the lag term


# ----------------------------------------------------------------------------------------------
# The chain


class ReadChain:
    """One array at one conductance state behind a read periphery.

    Parameters
    ----------
    spec : CrossbarSpec
        The array (its wires; ``spec.v_read`` must equal ``config.dac.v_read``).
    G : ndarray ``spec.g_shape``
        Cell conductances [S] (differential: G+ and G- interleaved).
    config : PeripheryConfig
    engine : Engine, optional
        ngspice runner (default ``SubprocessEngine()``); its ``workers`` split a batch into
        parallel decks.
    access : AccessParams, optional
        1T1R array: an NMOS access transistor in series with every cell, all word lines on
        during the read (:func:`netlists.access.access_cells`); None: passive cells.
    fit : cosim.read.periphery_fit.PeripheryFit, optional
        The integrator + ADC transfer fitted to ngspice (:meth:`cosim.calibrate.bundle.CalibrationSet.periphery_fit`
        picks it from ``xbar calibrate``' output). Fast reads then take charge ->
        voltage -> code from the fit (carried over to this chain's capacitor, column loads and
        integration time by :meth:`~cosim.read.periphery_fit.PeripheryFit.chain_voltage`) instead
        of the analog twin; the charge stays the exact array transfer, spice reads are
        unchanged. None: the twin.

    The range checks run here, before any simulation, for both read directions.

    >>> import numpy as np
    >>> from netlists.crossbar import CrossbarSpec
    >>> from models.dac import DacParams
    >>> from models.integrator import IntegratorParams
    >>> spec = CrossbarSpec(rows=8, cols=3, cell="diff", r_row=1.0, r_col=1.0)
    >>> cfg = PeripheryConfig(dac=DacParams(bits=6), integrator=IntegratorParams(c_int=2e-12))
    >>> chain = ReadChain(spec, np.full(spec.g_shape, 10e-6), cfg)
    >>> out = chain.read(np.arange(-4, 4)[None, :] * 8, backend="fast")
    >>> out.codes.shape, out.current.shape          # signed codes and equivalent currents [A]
    ((1, 3), (1, 3))
    """

    def __init__(self, spec: CrossbarSpec, G: np.ndarray, config: PeripheryConfig, *, engine=None,
                 access: AccessParams | None = None, fit=None):
        if abs(spec.v_read - config.dac.v_read) > 1e-12 * spec.v_read:
            raise ParameterError(f"the array's v_read ({spec.v_read:g} V) differs from the DAC's "
                                 f"v_read ({config.dac.v_read:g} V)")
        self.spec = spec
        self.G = check_conductances(spec, G)
        self.config = config
        self.engine = engine
        if access is not None and not isinstance(access, AccessParams):
            raise ParameterError(f"access must be AccessParams or None, got {type(access).__name__}")
        self.access = access
        self.fit = check_chain_fit(fit, config)
        self.timing = chain_timing(config)
        self._geff: dict = {}
        self._r_on: dict[float, float] = {}
        self.range_used = {t: self.check_range(t) for t in (False, True)}

    def with_conductances(self, G: np.ndarray) -> "ReadChain":
        """This chain (array, periphery, fit, engine) at conductances ``G``; range checks run again."""
        new = copy.copy(self)           # shares the on-resistance cache (it does not depend on G)
        new.G, new._geff = check_conductances(self.spec, G), {}
        new.range_used = {t: new.check_range(t) for t in (False, True)}
        return new

    # -- structure ----------------------------------------------------------------------------------
    def n_drive(self, transpose: bool) -> int:
        return self.spec.pcols if transpose else self.spec.rows

    def n_lines(self, transpose: bool) -> int:
        """Sensed lines (each ends on a 0 V sense source)."""
        return self.spec.rows if transpose else self.spec.pcols

    def n_sense(self, transpose: bool) -> int:
        """Integrators and converters (paired sensing: one per pair of lines)."""
        return self.n_lines(transpose) // (2 if self.paired(transpose) else 1)

    def paired(self, transpose: bool) -> bool:
        """Whether each integrator holds a differential pair's difference (``sensing="pairs"``)."""
        return paired_sensing(self.config, self.spec, transpose)

    def _per_integrator(self, lines: np.ndarray, transpose: bool) -> np.ndarray:
        """Per-line charges (..., n_lines) -> what each integrator receives (..., n_sense)."""
        if not self.paired(transpose):
            return lines
        return lines[..., 0::2] - self.config.mirror_gain * lines[..., 1::2]

    def n_in(self, transpose: bool) -> int:
        return self.spec.cols if transpose else self.spec.rows

    def transfer(self, transpose: bool = False, polarity: int = 1, ir_model=None) -> np.ndarray:
        """Exact (n_drive, n_sense) conductance from each driven line end to each virtual ground
        [S], wires included (the fast solver with unit drives). With ``ir_model`` (a calibrated
        :class:`cosim.read.irmodel.IRModel`): its effective conductances instead, the cheap
        per-state model of the same wired array (forward rows -> physical columns; transposed
        its transpose). 1T1R arrays: each cell in series with its transistor's on-resistance,
        measured once in ngspice at the potential its source sits at (forward reads: the row's,
        ``polarity * v_read``; transposed reads: the row's virtual ground, 0 V). A small-signal
        linearisation: the drain-source voltage stays below ``v_read R_on / (R_on + 1/G)``."""
        if ir_model is not None:
            if self.access is not None:
                raise ParameterError("the calibrated IR model describes arrays of plain cells, not 1T1R: read "
                                     "1T1R chains with the exact solver")
            key = ("model", ir_model)      # one matrix per state serves both directions
            if key not in self._geff:
                self._geff[key] = ir_model.physical_weights(self.G, self.spec.r_row, self.spec.r_col)
            return self._geff[key].T if transpose else self._geff[key]
        return self._exact(transpose, polarity).matrix()

    def _exact(self, transpose: bool, polarity: int = 1) -> LinearRead:
        """The array's exact read in one direction (1T1R forward: at one source polarity)."""
        key = (transpose, polarity if (self.access is not None and not transpose) else 1)
        if key not in self._geff:
            G = self.G
            if self.access is not None:
                G = 1.0 / (1.0 / G + self.r_on(0.0 if transpose else key[1] * self.spec.v_read))
            solver = CrossbarSolver(build_crossbar(self.spec, G, transpose=transpose).circuit)
            self._geff[key] = LinearRead(solver.solve, self.n_drive(transpose))
        return self._geff[key]

    def r_on(self, v_source: float) -> float:
        """On-resistance [ohm] of the access transistor (gate at v_gate, bulk at vss) with its
        source at ``v_source`` [V] and 1 mV across it, from one ngspice ``.op`` (cached)."""
        if self.access is None:
            raise ParameterError("this array has no access transistors")
        if v_source not in self._r_on:
            a = self.access
            bench = on_resistance_bench(a.card, a.w, a.l, v_source=v_source, v_gate=a.v_gate,
                                        v_bulk=self.config.integrator.vss)
            res = (self.engine or SubprocessEngine()).run(bench.deck(), need=bench.need(), name="r_on")
            self._r_on[v_source] = 1e-3 / -float(res.vectors["i(vd_0)"][0])
        return self._r_on[v_source]

    def g_total(self, transpose: bool) -> np.ndarray:
        """Conductance loading each integrator input [S] (sum of the line's cells; paired
        sensing: the G+ line's, the G- line ends on the mirror)."""
        g = self.G.sum(axis=1) if transpose else self.G.sum(axis=0)
        return g[0::2] if self.paired(transpose) else g

    def drive_codes(self, codes: np.ndarray, transpose: bool) -> np.ndarray:
        """Logical codes (batch, n_in) -> codes of the physical drives (batch, n_drive)."""
        if transpose and self.spec.cell == "diff":
            out = np.empty((codes.shape[0], 2 * codes.shape[1]), dtype=np.int64)
            out[:, 0::2], out[:, 1::2] = codes, -codes
            return out
        return codes

    def check_codes(self, codes, transpose: bool) -> np.ndarray:
        c = np.asarray(codes)
        if c.ndim == 1:
            c = c[None, :]
        n = self.n_in(transpose)
        if c.ndim != 2 or c.shape[1] != n or c.shape[0] == 0:
            raise ShapeError(f"codes have shape {np.shape(codes)}; a {'transposed' if transpose else 'forward'} "
                             f"read needs (batch, {n}) integer codes")
        volt_seconds(c, self.config.dac)  # validates integers, range and sign mode
        return c.astype(np.int64)

    def check_range(self, transpose: bool = False) -> dict:
        """Worst-case charge vs integrator swing and ADC range (raises or warns per config)."""
        cfg = self.config
        vs_max = full_scale_volt_seconds(cfg.dac)
        gt = self.g_total(transpose)
        # worst case per sensed line: every input at full scale with the sign that adds up (wires
        # only lower it); a transposed differential read drives G+ and G- in opposite phases, so
        # the output's swing takes each pair's larger device (phase 1) before the other returns it
        if transpose and self.spec.cell == "diff":
            g_worst = np.maximum(self.G[:, 0::2], self.G[:, 1::2]).sum(axis=1)
        elif self.paired(transpose):          # each input's sign can match its pair's difference
            g_worst = np.abs(self._per_integrator(self.G, transpose)).sum(axis=0)
        else:
            g_worst = gt
        q_max = cfg.full_scale * vs_max * float(g_worst.max())
        used = check_integrator_range(cfg.integrator, q_max, float(gt.max()), action=cfg.range_check)
        ceff = float(effective_capacitance(cfg.integrator, float(gt.max())))
        v0 = start_voltage(cfg.integrator)
        adc_used = check_adc_range(cfg.adc, v0 - q_max / ceff, v0 + q_max / ceff, action=cfg.range_check)
        out = {"q_max": q_max, "integrator_swing_used": used, "adc_range_used": adc_used}
        i_sink = getattr(cfg.integrator.opamp, "i_sink_max", None)
        if i_sink is not None:      # every line driven at +v_read (a positive phase) into one integrator
            i_peak = cfg.dac.v_read * float(g_worst.max())
            out["opamp_current_used"] = i_peak / i_sink
            if i_peak > i_sink:
                raise_or_warn(f"a {'row' if transpose else 'column'} can draw {1e6 * i_peak:.4g} uA into its integrator "
                              f"(v_read {cfg.dac.v_read:g} V x {1e6 * float(g_worst.max()):.4g} uS), more than the "
                              f"two-stage op-amp can sink ({1e6 * i_sink:.4g} uA, its second-stage bias): SPICE loses "
                              "the virtual ground during such reads and neither the twin nor a fitted transfer "
                              "models it; lower v_read or the line conductance, or raise i_bias / w_sink",
                              cfg.range_check)
        return out

    def with_gain(self, k: int) -> "ReadChain":
        """This chain with its integrator capacitor divided by ``2**k`` (``k`` >= 0): one step of
        a binary capacitor bank, the gain an autoranging read picks
        (:func:`cosim.train.layers.ranged_read`). It shares this chain's array transfer (the
        capacitor does not change it) and runs no range check: a ranged read sees clipping in
        its codes (:meth:`code_use`). The reset time follows the smaller capacitor."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ParameterError(f"the gain step must be an integer >= 0, got {k!r}")
        if k == 0:
            return self
        new = copy.copy(self)           # shares the transfer and on-resistance caches
        integ = self.config.integrator
        new.config = replace(self.config, integrator=replace(integ, c_int=integ.c_int / 2 ** int(k)))
        new.timing = chain_timing(new.config)
        return new

    def max_gain(self, transpose: bool) -> int:
        """The largest gain step that pays: the capacitor stays above the op-amp's lag term ``G
        tau`` of the heaviest sensed line (``C_eff = C (1 + 1/a0) + G tau``; ``tau`` the fit's
        lag time, else ``1 / (2 pi GBW)``). Past it the gain hardly grows and the twin drifts
        from ngspice (a third of a code of bias at ``G tau / C`` = 3.5, measured). Paired sensing
        stops PAIRED_LAG times higher: the pairs' common-mode currents through the lagging virtual
        ground leave charge the twin lacks (0.8 LSB RMS at ``G+ tau / C`` = 0.9, 251 rows at 15 uS)."""
        integ = self.config.integrator
        tau = self.fit.lag_time(integ) if self.fit is not None else 1 / (2 * np.pi * integ.macro.gbw)
        load = float(self.g_total(transpose).max()) * tau * (PAIRED_LAG if self.paired(transpose) else 1)
        if load <= 0:
            return 64
        return max(0, int(np.floor(np.log2(integ.c_int / load))))

    def code_limits(self, backend: str = "fast") -> tuple[int, int]:
        """The lowest and highest code the converters give: a fitted chain's as it reached them in
        SPICE, else the converter's ends or the op-amp's rails inside them (in ngspice 8 knees
        in: its smooth clamp holds a saturated output there, a code or two short of the rail's)."""
        lo, hi = 0, self.config.adc.n_codes - 1
        if self.fit is not None:
            f = self.fit
            return (lo if f.code_lo < 0 else f.code_lo), (hi if f.code_hi < 0 else f.code_hi)
        integ = self.config.integrator
        m, (r_lo, r_hi) = (8 * integ.macro.knee if backend == "spice" else 0.0), swing(integ)
        c_lo, c_hi = quantize(np.array([r_lo + m, r_hi - m]), self.config.adc)   # the rails' codes, within the ends
        return int(c_lo), int(c_hi)

    def code_use(self, result: ReadResult) -> tuple[float, float]:
        """How much of its converters a read used: the largest ``|code - mid code|`` as a fraction
        of the smaller half range, and the fraction of outputs clipped (the charge may have been
        larger): a raw code at an end of the range, or an output that reached one during the
        window (``result.swing``: the two signed phases can take it past a rail and back). What a
        chip's digital side sees: its codes and a peak detector's."""
        lo, hi = self.code_limits(result.backend)
        mid = self.mid_code()
        half = max(1, min(mid - lo, hi - mid))
        sw = np.asarray(result.swing)        # never nearer the start than the final codes
        return float(np.abs(sw - mid).max() / half), float(np.mean((sw <= lo) | (sw >= hi)))

    def mid_code(self) -> int:
        """The code of the integrator's start voltage (0 V unless the op-amp has an offset; the
        quantiser's own floor rule): single-ended outputs are ``mid - code``, so no charge
        reads 0 whatever the offset (a differential pair's difference cancels it anyway)."""
        a = self.config.adc
        return int(np.floor((start_voltage(self.config.integrator) - a.v_lo) / a.lsb))

    # -- reads --------------------------------------------------------------------------------------
    def read(self, codes, *, transpose: bool = False, backend: Backend = "spice",
             energy: bool = False, workers: int | None = None, ir_model=None) -> ReadResult:
        """Read a batch of signed integer input codes, (batch, rows) forward or (batch, cols)
        transposed (|code| <= 2^bits - 1).

        ``backend="spice"``: every read of the batch is a window of one transient (reset between
        windows); ``workers`` (default: the engine's) splits the batch into parallel decks.
        ``backend="fast"``: the numpy twin (with ``fit``: the fitted integrator and ADC; with
        ``ir_model``: the array's transfer from the calibrated IR-drop model, not the exact solve).
        ``backend="spice-array"``: the twin with the array's charges from ngspice: the wired
        array is linear and static, so the charge a window's DAC pulses deliver is the DC
        current at their volt-seconds over a time, read in one ``.dc`` deck (seconds at 256 x
        256, where the full transient resolves every DAC edge: minutes per window). DACs,
        integrators and ADCs are the twin's (or ``fit``'s). Plain cells only.
        ``energy`` (spice only) also integrates the power of the DAC and supply sources into
        ``result.energy`` (see :func:`energy_summary`).
        Returns a :class:`ReadResult` (codes and the analog values behind them).
        """
        if backend not in CHAIN_READ_BACKENDS:
            raise ParameterError(f"backend must be one of {', '.join(CHAIN_READ_BACKENDS)}, got {backend!r}")
        if energy and backend != "spice":
            raise ParameterError("energy comes from the ngspice transient: use backend='spice'")
        if ir_model is not None and backend != "fast":
            raise ParameterError("ir_model replaces the exact transfer of the fast twin: use backend='fast'")
        if backend == "spice-array" and self.access is not None:
            raise ParameterError("backend 'spice-array' reads plain cells; a 1T1R array's transistors are not "
                                 "linear: read it with backend='spice'")
        c = self.check_codes(codes, transpose)
        windows = self._windows(self.drive_codes(c, transpose))  # (batch, n_win, n_drive)
        t0 = time.perf_counter()
        if backend == "fast":
            raw = self._fast(windows, transpose, ir_model)
        elif backend == "spice-array":
            raw = self._fast(windows, transpose, array=self._spice_array(transpose, workers))
            raw["points"] = 1
        else:
            raw = self._spice(windows, transpose, energy, workers)
        return self._finish(raw, transpose, backend, time.perf_counter() - t0, idle=~windows.any(axis=-1))

    def read_values(self, x, **kw) -> ReadResult:
        """Floats in [-1, 1] -> codes (:func:`models.dac.to_codes`) -> :meth:`read`."""
        return self.read(to_codes(x, self.config.dac.bits), **kw)

    def _windows(self, dcodes: np.ndarray) -> np.ndarray:
        p = self.config.dac
        if p.encoding != "bitserial":
            return dcodes[:, None, :]
        s, k = np.sign(dcodes), np.abs(dcodes)
        bits = (k[:, None, :] >> np.arange(p.bits)[None, :, None]) & 1
        return s[:, None, :] * bits

    # fast -------------------------------------------------------------------------------------
    def _spice_array(self, transpose: bool, workers: int | None):
        """``x -> x @ transfer`` for volt-second fields (..., n_drive): ONE ngspice ``.dc`` deck of
        the wired array (each physical line its own source and sensor), all fields side by side."""
        plain = Crossbar(replace(self.spec, cols=self.spec.pcols, cell="1r"), self.G, engine=self.engine)

        def apply(*fields: np.ndarray) -> list[np.ndarray]:
            flat = stack_rows(fields)
            scale = np.abs(flat).max(axis=1, keepdims=True)
            scale[scale == 0] = 1.0
            I = plain.read(flat / scale * self.spec.v_read, transpose=transpose, backend="spice", workers=workers)
            return split_like(I * scale / self.spec.v_read, fields)
        return apply

    def _fast(self, windows: np.ndarray, transpose: bool, ir_model=None, array=None) -> dict:
        cfg, tm = self.config, self.timing
        dac = window_dac(cfg.dac)
        gt = self.g_total(transpose)
        vs = volt_seconds(windows, dac)  # (batch, n_win, n_drive)
        mom = volt_second_moments(windows, dac, tm.t_adc, t_start=tm.t_pulses)
        # windows with both signs: phase 1 (the positive drives alone) is where the output turns
        mixed = bool((vs > 0).any() and (vs < 0).any())
        turn = [np.where(vs > 0, vs, 0), np.where(vs > 0, mom, 0)] if mixed else []
        if array is not None:             # the array's charges from ngspice (spice-array); the turning
            charges = array(vs, mom) + (self._charges(turn, vs, transpose, None) if turn else [])  # point: exact
        else:
            charges = self._charges([vs, mom] + turn, vs, transpose, ir_model)
        charges = [self._per_integrator(c, transpose) for c in charges]
        integ, m = cfg.integrator, cfg.integrator.macro
        t_int = tm.t_adc - tm.t_reset
        ceff = effective_capacitance(integ, gt)

        def at_capacitor(q, mom):       # the charge that reaches the capacitor (what spice measures)
            q_eff = q - gt * m.v_os * t_int - gt * mom / (ceff * m.a0)
            return q_eff * integ.c_int * (1 + 1 / m.a0) / ceff
        q, mom = charges[0], charges[1]
        if self.fit is not None:
            v = self.fit.chain_voltage(q, integ, gt, t_int)
        else:
            v = charge_to_voltage(integ, q, gt, t_int=t_int, moment=mom)
        q = at_capacitor(q, mom)
        if self.fit is not None:
            codes = self.fit.codes_from_voltage(v)
        elif isinstance(cfg.adc, RampAdcParams):
            codes = ramp_convert(cfg.adc, v, 0.0, t_window=tm.t_end - tm.t_adc - tm.t_edge / 2)
        else:
            codes = quantize(v, cfg.adc)
        swing = codes
        if mixed:                         # the output after phase 1 (linear), if it went farther
            turned = quantize(start_voltage(integ) - at_capacitor(*charges[2:]) / integ.c_int, cfg.adc)
            swing = self._farther(codes, turned)
        return {"q": q, "v": v, "codes": codes, "swing": swing, "points": 0, "energy": None}

    def _charges(self, fields: list, vs: np.ndarray, transpose: bool, ir_model) -> list:
        """Volt-second fields (batch, n_win, n_drive), their drives signed as ``vs``'s, through the
        array: charges (batch, n_win, n_sense) each (exact reads: the fields as one batch)."""
        if ir_model is not None:
            return [f @ self.transfer(transpose, ir_model=ir_model) for f in fields]
        if self.access is None or transpose:
            return self._exact(transpose).fields(fields)
        out = [0.0] * len(fields)      # 1T1R: the on-resistance follows each row's sign
        for sign in (1, -1) if (vs < 0).any() else (1,):
            part = self._exact(transpose, sign).fields([np.where(sign * vs > 0, f, 0) for f in fields])
            out = [o + c for o, c in zip(out, part)]
        return out

    def _farther(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Elementwise, the code of ``a`` and ``b`` farther from the start voltage's."""
        mid = self.mid_code()
        return np.where(np.abs(b - mid) > np.abs(a - mid), b, a)

    # spice ------------------------------------------------------------------------------------
    def circuit(self, windows: np.ndarray, transpose: bool = False) -> tuple[Circuit, float]:
        """The chain as IR for a batch of windows (batch, n_win, n_drive); returns it and t_stop."""
        sched = chain_schedule(self.config, windows, self.timing)
        title = chain_title(self.spec, self.config, transpose, self.access, windows.shape[0] * windows.shape[1])
        circ = build_read_chain(self.spec, self.G, self.config, sched, transpose=transpose, access=self.access,
                                title=title)
        return circ, sched.t_stop

    def deck(self, codes, transpose: bool = False, *, energy: bool = False) -> str:
        """The ngspice deck of one read of the batch ``codes`` (all windows in one transient)."""
        c = self.check_codes(codes, transpose)
        return self._deck(self._windows(self.drive_codes(c, transpose)), transpose, energy)[0]

    def _deck(self, windows, transpose, energy):
        circ, stop = self.circuit(windows, transpose)
        ns, nd = self.n_sense(transpose), self.n_drive(transpose)
        tm = self.timing
        save = ([f"v(io{j})" for j in range(ns)] + [f"v(code{j})" for j in range(ns)]
                + [f"i(vsen_{j})" for j in range(self.n_lines(transpose))])
        if energy:
            save += [f"i({self._dac_letter}dac_{i})" for i in range(nd)] + ["i(vsup_0)", "i(vsup_1)"]
            drive = circ.group("dac")
            save += [f"v({circ.nodes.name(int(k))})" for k in drive.p]
        step = self.config.max_step or self.default_max_step()
        return write_spice(circ, Tran(tm.t_edge, stop, max_step=step), save=save), save, circ

    def _spice(self, windows, transpose, energy, workers) -> dict:
        engine = self.engine or SubprocessEngine()
        nb = windows.shape[0]
        n_work = max(1, min(workers or getattr(engine, "workers", 1), nb))
        bounds = np.linspace(0, nb, n_work + 1).astype(int)
        chunks = [windows[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
        built = [self._deck(ch, transpose, energy) for ch in chunks]      # (deck, saved vectors, circuit)
        need = built[0][1]
        results = engine.run_many([deck for deck, _, _ in built], need=need, name="readchain")
        parts = [self._decode(r, ch, transpose, energy, circ) for r, ch, (_, _, circ) in zip(results, chunks, built)]
        out = {k: np.concatenate([p[k] for p in parts]) for k in ("q", "v", "codes", "swing")}
        out["points"] = sum(p["points"] for p in parts)
        out["energy"] = None
        if energy:
            out["energy"] = {k: sum(p["energy"][k] for p in parts) for k in parts[0]["energy"]}
            out["energy"]["reads"] = nb
        return out

    def _decode(self, res, windows, transpose, energy, circ) -> dict:
        tm = self.timing
        nb, nw, nd = windows.shape
        ns = self.n_sense(transpose)
        v = res.vectors
        t = v["time"]
        starts = np.arange(nb * nw) * tm.t_end
        isen = self._per_integrator(np.stack([v[f"i(vsen_{j})"] for j in range(self.n_lines(transpose))], -1),
                                    transpose).T
        cum = np.concatenate([np.zeros((ns, 1)), np.cumsum(0.5 * (isen[:, 1:] + isen[:, :-1]) * np.diff(t), axis=1)], axis=1)
        q = np.stack([np.interp(starts + tm.t_adc, t, c) - np.interp(starts + tm.t_reset, t, c) for c in cum], axis=-1)
        vo = np.stack([np.interp(starts + tm.t_adc, t, v[f"v(io{j})"]) for j in range(ns)], axis=-1)
        t_code = starts + tm.t_end  # a corner of rst and clr: the transient lands on it
        codes = np.rint(np.stack([np.interp(t_code, t, v[f"v(code{j})"]) for j in range(ns)], axis=-1)).astype(np.int64)
        # the output's extremes over each window's integration (the twin's test of its turning point)
        io = np.stack([v[f"v(io{j})"] for j in range(ns)])
        edges = np.searchsorted(t, np.stack([starts + tm.t_pulses, starts + tm.t_adc], axis=-1))
        ext = np.array([[io[:, a:b + 1].min(axis=1), io[:, a:b + 1].max(axis=1)] for a, b in edges])
        ext = quantize(ext, self.config.adc)
        swing = self._farther(codes, self._farther(ext[:, 0], ext[:, 1]))
        out = {"q": q.reshape(nb, nw, ns), "v": vo.reshape(nb, nw, ns), "codes": codes.reshape(nb, nw, ns),
               "swing": swing.reshape(nb, nw, ns), "points": len(t)}
        if energy:
            drive = circ.group("dac")
            e_arr = 0.0
            for i in range(nd):
                vn = v[f"v({circ.nodes.name(int(drive.p[i]))})"]
                e_arr += float(np.trapezoid(-vn * v[f"i({self._dac_letter}dac_{i})"], t))
            cfg = self.config.integrator
            e_sup = float(np.trapezoid(-(cfg.vdd * v["i(vsup_0)"] + cfg.vss * v["i(vsup_1)"]), t))
            out["energy"] = {"array_j": e_arr, "supply_j": e_sup, "time_s": float(t[-1])}
        return out

    # both -------------------------------------------------------------------------------------
    def _finish(self, raw: dict, transpose: bool, backend: str, elapsed: float, idle=None) -> ReadResult:
        cfg = self.config
        q, v, codes = raw["q"], raw["v"], raw["codes"]   # (batch, n_win, n_sense)
        signed = self.mid_code() - codes
        q_win = self.decode_charge(codes)
        if idle is not None:   # (batch, n_win): windows without a driven line read 0
            q_win = np.where(idle[..., None], 0.0, q_win)
        if cfg.dac.encoding == "bitserial":
            to_last = lambda a: np.moveaxis(a, 1, -1)  # noqa: E731
            q_tot = shift_and_add(np.moveaxis(q, 1, 0))
            s_tot = np.rint(shift_and_add(np.moveaxis(signed, 1, 0))).astype(np.int64)
            adc_codes, v_out, swing = to_last(codes), to_last(v), to_last(raw["swing"])
            q_dec = shift_and_add(np.moveaxis(q_win, 1, 0))
        else:
            q_tot, s_tot = q[:, 0], signed[:, 0]
            adc_codes, v_out, swing = codes[:, 0], v[:, 0], raw["swing"][:, 0]
            q_dec = q_win[:, 0]
        t_fs = full_scale_time(cfg.dac)
        if self.spec.cell == "diff" and not transpose and not self.paired(transpose):
            out_codes = s_tot[:, 0::2] - s_tot[:, 1::2]
            cur = (q_tot[:, 0::2] - q_tot[:, 1::2]) / t_fs
            dec = (q_dec[:, 0::2] - q_dec[:, 1::2]) / t_fs
        else:
            out_codes, cur, dec = s_tot, q_tot / t_fs, q_dec / t_fs
        return ReadResult(codes=out_codes, adc_codes=adc_codes, v_out=v_out, charge=q_tot, current=cur,
                          decoded=dec, backend=backend, elapsed_s=elapsed, points=raw["points"],
                          energy=raw["energy"], swing=swing)

    def decode_charge(self, codes) -> np.ndarray:
        """Charge [C] the digital side reads from raw converter codes of one window, ideal
        capacitor: ``-(bin centre - v0) c_int`` with ``v0`` the integrator's start voltage
        (:func:`models.integrator.start_voltage`, the op-amp offset as a follower).

        Unbiased, and zero charge (the integrator left at ``v0``) decodes to within half an LSB
        of 0 (exactly half an LSB when ``v0`` sits on a transition, as 0 V does in a symmetric
        range: a mid-rise converter has no level at 0). :meth:`read` sets windows in which no
        line is driven (zero inputs; bit-serial: bit planes without a set bit) to 0. Decoding
        each code as ``zero code - code`` LSBs would read every other charge half an LSB high:
        12 % of the signal in a layer's transposed reads, half the accuracy of
        tests/test_train.py's chain run. Pairs: the difference of two decoded charges."""
        v = code_to_voltage(np.asarray(codes), self.config.adc)
        return -(v - start_voltage(self.config.integrator)) * self.config.integrator.c_int

    _dac_letter = property(lambda self: "v" if self.config.exact_corners else "b")

    def default_max_step(self) -> float:
        """``4 t_lsb``; with a ramp ADC at most one clock period (the comparator's transition
        must be resolved: with 4 clocks the codes drift by a few LSB from the twin)."""
        te = self.timing.t_edge
        if isinstance(self.config.adc, RampAdcParams):
            return min(4 * te, self.config.adc.t_clk)
        return 4 * te

    def lsb_current(self) -> float:
        """Output current per output code [A] (ideal capacitor)."""
        return self.config.adc.lsb * self.config.integrator.c_int / full_scale_time(self.config.dac)


"""The update phase on devices: pulse-coincidence updates of differential pairs, on the numpy
twins (``fast``) or as one ngspice transient per mini-batch over the whole array (``spice``).

Layer: cosim.write. :class:`PulseUpdate` is an updater of :mod:`cosim.train.layers` (its ``apply``). For each sample of a
mini-batch it draws stochastic pulse trains (:func:`cosim.write.pulses.pulse_trains`) and turns
every coincidence into a SET of the pair's G+ column (weight up) or G- column (weight down)
(:func:`cosim.write.pulses.pair_columns`), so one write polarity serves SET-only devices (PCM) and
bipolar ones alike. The samples are applied in sequence: on ``fast`` by the device twin, on
``spice`` by concatenating all samples' slots into one transient of the array with its wire
parasitics (:func:`netlists.update_circuit.build_update_circuit`), whose state nodes are read back.
Both see the same pulse trains and the same random draws (device-to-device variation, fixed
per tile; one cycle-to-cycle multiplier per device per mini-batch), so they differ only by
what the circuit adds: wire IR drop on the write lines and integration error.

With a :class:`~cosim.write.step_table.StepTable` (``table=``, fitted to SPICE pulse trains of the
device by :func:`cosim.calibrate.devices.fit_device_steps`; read one from ``xbar calibrate``'s
output with :func:`cosim.calibrate.bundle.load_calibration`), the ``fast`` backend moves the conductances by the
table instead of the twin: every coincidence is a SET ("up") pulse of the table, samples in
sequence as before, and ONE standard-normal draw ``z`` per device per mini-batch scales the
tabulated spread (the device contract of the twin's cycle-to-cycle draw). The spread lumps
device-to-device and cycle-to-cycle variation, so there is no separate per-tile variation
draw. The pulse trains stay those of the twin for the same ``rng`` (same ``dw_min``, from the
nominal twin, and ``z`` is drawn where the twin draws its cycle-to-cycle noise, one normal per
device like the twins of pcm, rram and linear), so the two differ only by how the device answers
the pulses.

A pair whose larger device passes ``refresh_at`` of the device range is refreshed: both are
reset and the weight is programmed back onto one of them (as IBM's occasional refresh of
SET-only PCM pairs does); the count of refreshes is kept in ``refreshes``.

Deterministic programming of chosen cells (exact pulse counts, write-verify) is in
:mod:`cosim.write.program`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cosim.sim.engine import Engine, SubprocessEngine
from cosim.write.mapping import MappingSpec
from cosim.write.pulses import pair_columns, pulse_trains_batch
from cosim.write.step_table import StepTable
from models.device import DeviceModel
from models.errors import ParameterError
from models.pulse import PulseShape
from netlists.crossbar import CrossbarSpec, array_wires, interleave
from netlists.ir import Circuit, Resistors, VoltageSources
from netlists.spice import BatchSweep, Tran, write_spice
from netlists.update_circuit import WriteScheme, build_update_circuit, state_vectors, update_duration


def mapping_for(device: DeviceModel, w_max: float = 4.0) -> MappingSpec:
    """The weight mapping whose conductance range is the device's."""
    g = np.sort(device.to_conductance(np.array(device.state_range, float)))
    return MappingSpec(g_min=float(g[0]), g_max=float(g[1]), w_max=w_max)


@dataclass
class PulseUpdate:
    """Stochastic pulse-coincidence updates of a tile's differential pairs.

    Parameters
    ----------
    device : DeviceModel
        A two-terminal device of the registry (ports ``p n``).
    bl : int
        Slots per sub-phase.
    backend : "fast" or "spice"
    shape : PulseShape
        Write pulse timing.
    r_wire : float
        Write-line resistance per segment [ohm] (spice backend).
    engine : Engine, optional
    refresh_at : float
        Fraction of the device range at which a pair is refreshed.
    seed : int
        Seed of the device-to-device variation (drawn once per tile).
    method : "slots" or "transient"
        spice backend only. ``"transient"``: one transient of the array of device subcircuits.
        ``"slots"``: ngspice solves the write network (wires and cells at their phase-start
        conductances) once per slot, all slots in one ``.dc`` sweep, and the twin integrates each
        cell's pulses at the voltage the circuit puts across it. Exact for the edges (the network
        is linear and every line ramps in step, so a cell's voltage is its plateau value times
        the common ramp); the one approximation is that cell conductances are frozen during a
        phase, which changes the wire IR drop by a fraction of a step.
    table : StepTable, optional
        fast backend only: a step table of ``device`` fitted to SPICE, used in place of the twin
        (its conductance range must be the device's and, at update time, the mapping's).
    table_noise : bool
        With a table: False uses the mean steps only (deterministic given the pulse trains);
        the noise draw is taken from ``rng`` either way, so the trains do not depend on it.
    """

    device: DeviceModel
    bl: int = 10
    backend: str = "fast"
    shape: PulseShape = field(default_factory=PulseShape)
    r_wire: float = 0.0
    engine: Engine | None = None
    refresh_at: float = 0.9
    seed: int = 0
    method: str = "slots"
    table: StepTable | None = None
    table_noise: bool = True
    refreshes: int = 0
    transients: int = 0
    slots: int = 0

    def __post_init__(self) -> None:
        if tuple(self.device.ports) != ("p", "n"):
            raise ParameterError(f"pulse updates need a two-terminal device; {self.device.name} has ports "
                                 f"{self.device.ports}")
        if self.backend not in ("fast", "spice"):
            raise ParameterError(f"update backend must be 'fast' or 'spice', got {self.backend!r}")
        if self.method not in ("slots", "transient"):
            raise ParameterError(f"method must be 'slots' or 'transient', got {self.method!r}")
        if self.bl < 1 or not 0 < self.refresh_at <= 1:
            raise ParameterError(f"need bl >= 1 and 0 < refresh_at <= 1, got {self.bl}, {self.refresh_at}")
        if self.table is not None:
            self._check_table()
        self._variation: dict = {}
        self._step: tuple | None = None     # (device, pulse, step) of the last step_conductance

    def _check_table(self) -> None:
        t, dev = self.table, self.device
        if not isinstance(t, StepTable):
            raise ParameterError(f"table must be a StepTable (see cosim.calibrate.bundle.load_calibration), got "
                                 f"{type(t).__name__}")
        if self.backend != "fast":
            raise ParameterError("a step table is a fast model of the device: use it with backend='fast' "
                                 f"(backend {self.backend!r} simulates the device itself)")
        if t.device != dev.name:
            raise ParameterError(f"the step table was fitted to device {t.device!r}, not {dev.name!r}")
        if not t.matches_pulse(self.shape):
            raise ParameterError(f"the step table was fitted with the write pulse (width, rise, period) = {t.pulse} s; "
                                 f"this updater writes {(self.shape.width, self.shape.rise, self.shape.period)} s")
        m = mapping_for(dev)
        self._check_range(m.g_min, m.g_max, f"device {dev.name!r}")
        if t.mean_step(t.g_min, "up") <= 0:
            raise ParameterError(f"the step table of {t.device} has no positive SET step at the bottom of its "
                                 "range: pair updates need a potentiating write polarity")

    def _check_range(self, g_min: float, g_max: float, what: str) -> None:
        t = self.table
        tol = 1e-6 * (t.g_max - t.g_min)
        if abs(g_min - t.g_min) > tol or abs(g_max - t.g_max) > tol:
            raise ParameterError(f"the step table's conductance range [{t.g_min:.6g}, {t.g_max:.6g}] S differs from "
                                 f"the {what} range [{g_min:.6g}, {g_max:.6g}] S; fit the table to this device "
                                 "and map the weights onto its range (cosim.write.pair_update.mapping_for)")

    # -- helpers ------------------------------------------------------------------------------
    def step_conductance(self) -> float:
        """Conductance change of one full-selected pulse from the bottom of the range [S], of
        the nominal twin (also with a table: the pulse trains' ``dw_min`` is a setting of the
        controller, designed for the nominal device, not a property of the device it drives);
        computed once per device and pulse."""
        if self._step is None or self._step[0] is not self.device or self._step[1] != self.shape:
            self._step = (self.device, self.shape, self._first_step())
        return self._step[2]

    def _first_step(self) -> float:
        dev = self.device
        lo = dev.from_conductance(np.array([min(dev.to_conductance(np.array(dev.state_range, float)))]))
        after = dev.step(lo, dev.v_write, self.shape)
        step = float(dev.to_conductance(after)[0] - dev.to_conductance(lo)[0])
        if step <= 0:
            raise ParameterError(f"a +{dev.v_write:g} V pulse does not raise the conductance of {dev.name}: "
                                 "pair updates need a potentiating write polarity")
        return step

    def variation(self, key: tuple, n: int) -> dict:
        if key not in self._variation:
            self._variation[key] = self.device.draw_variation(n, np.random.default_rng([self.seed, *key]))
        return self._variation[key]

    # -- the Updater interface ----------------------------------------------------------------
    def apply(self, tile, x: np.ndarray, d: np.ndarray, lr: float, scale: np.ndarray, mapping: MappingSpec,
              rng: np.random.Generator) -> None:
        dev = self.device
        R, C = tile.g_plus.shape
        G = interleave(tile.g_plus, tile.g_minus).ravel()
        # what the fast path integrates (conductances with a table, device states otherwise) and how
        if self.table is not None:
            self._check_range(mapping.g_min, mapping.g_max, "weight mapping's")
            z = rng.standard_normal(G.size)          # one draw per device per update phase
            zz, table = (z if self.table_noise else None), self.table
            v, to_g = G, (lambda g: g)

            def step(g, counts):
                return table.apply(g, counts, "up", z=zz)
        else:
            v, to_g = dev.from_conductance(G), dev.to_conductance
            var = self.variation((tile.rows.start, tile.cols.start, R, C), v.size)
            noise = dev.draw_noise(v.size, rng)
            step = dev.counts_stepper(self.shape, var, noise)
        dw_min = float(np.mean(scale)) * self.step_conductance()
        row_bits, col_bits = [], []
        for trains in pulse_trains_batch(x, d, lr=lr, dw_min=dw_min, bl=self.bl, rng=rng):
            rows, pcols = pair_columns(trains)
            rb, cb = rows.reshape(-1, R), pcols.reshape(-1, 2 * C)
            live = rb.any(axis=1) & cb.any(axis=1)   # a slot without a row or a column pulse
            row_bits.append(rb[live])                # cannot select any cell: skip it
            col_bits.append(cb[live])
        self.slots += sum(len(rb) for rb in row_bits)
        if self.backend == "fast":                   # (a table is fast only)
            for rb, cb in zip(row_bits, col_bits):   # counts <= bl: exact in a float32 (BLAS) product
                counts = (rb.T.astype(np.float32) @ cb.astype(np.float32)).astype(np.int32)
                if counts.any():
                    v = step(v, counts.ravel())
        else:
            v = self._spice(v, np.concatenate(row_bits), np.concatenate(col_bits), var, noise, R, C)
        G = to_g(v).reshape(R, 2 * C)
        gp, gm = G[:, 0::2], G[:, 1::2]
        full = mapping.g_min + self.refresh_at * mapping.g_range
        hot = np.maximum(gp, gm) > full
        if hot.any():
            self.refreshes += int(hot.sum())
            W = gp - gm
            gp = np.where(hot, mapping.g_min + np.maximum(W, 0), gp)
            gm = np.where(hot, mapping.g_min + np.maximum(-W, 0), gm)
        tile.g_plus, tile.g_minus = gp, gm

    def _spice(self, state, row_bits, col_bits, var, noise, R, C) -> np.ndarray:
        if not row_bits.any() or not col_bits.any():
            return state
        if self.method == "slots":
            amps = slot_voltages(self.device, state.reshape(R, 2 * C), row_bits, col_bits,
                                 np.ones(len(row_bits)), r_wire=self.r_wire, engine=self.engine)
            self.transients += 1
            return self.device.apply_pulses(state, amps.reshape(len(row_bits), -1).T, self.shape, var, noise)
        spec = CrossbarSpec(rows=R, cols=C, cell="diff", r_row=self.r_wire, r_col=self.r_wire)
        self.transients += 1
        return write_transient(self.device, spec, state, row_bits, col_bits, np.ones(len(row_bits)),
                               self.shape, var, noise, self.engine).ravel()


def write_transient(device: DeviceModel, spec: CrossbarSpec, states: np.ndarray, row_bits: np.ndarray,
                    col_bits: np.ndarray, polarity: np.ndarray, shape: PulseShape, variation=None, noise=None,
                    engine: Engine | None = None) -> np.ndarray:
    """One ngspice transient of the array of device subcircuits under the write slots; returns
    the states read back from every cell's state node, shaped ``spec.g_shape``."""
    N, P = spec.g_shape
    params = {k: np.asarray(v, float).reshape(N, P)
              for k, v in device.instance_params(np.ravel(states), variation, noise).items()}
    v = device.v_write
    scheme = WriteScheme(v_write=v, t_pulse=shape.width, t_edge=shape.rise, t_slot=shape.period,
                         knots=tuple(k / v for k in device.knots if 0 < k / v < 1))
    circuit = build_update_circuit(spec, subckt=device.subckt(live_current=True), subckt_name=device.subckt_name,
                                   params=params, row_bits=row_bits, col_bits=col_bits, polarity=polarity,
                                   scheme=scheme, models=tuple(filter(None, [device.model_cards()])))
    T = update_duration(len(row_bits), scheme)
    names = state_vectors(spec)
    deck = write_spice(circuit, Tran(shape.tstep, T, start=T - shape.tstep, max_step=shape.tstep, uic=True),
                       save=names, options={"method": "gear"})
    res = (engine or SubprocessEngine()).run(deck, need=names, name="write")
    return np.array([res.vectors[n][-1] for n in names]).reshape(N, P)


def slot_voltages(device: DeviceModel, states: np.ndarray, row_bits: np.ndarray, col_bits: np.ndarray,
                  polarity: np.ndarray, *, r_wire: float, engine: Engine | None = None) -> np.ndarray:
    """Plateau voltage across every cell in every write slot, (slots, rows, cols) [V], solved by
    ngspice: the array with its wires and the cells at their present conductances, rows at
    +-V/2 and columns at -+V/2 where they fire, one ``.dc`` sweep point per slot."""
    R, C = states.shape
    S = len(row_bits)
    spec = CrossbarSpec(rows=R, cols=C, r_row=r_wire, r_col=r_wire)
    w = array_wires(spec)
    G = device.conductance(states.ravel()).reshape(R, C)
    cells = Resistors("cell", (R, C), a=w.row_nodes, b=w.col_nodes, resistance=1.0 / G)
    rows = VoltageSources("rd", (R,), p=w.row_ends, n=np.zeros(R, np.int64), value=0.0)
    cols = VoltageSources("cs", (C,), p=w.col_ends, n=np.zeros(C, np.int64), value=0.0)
    circuit = Circuit(f"xbar-cosim write network {R}x{C}, {S} slots", w.nodes, (cells, *w.groups, rows, cols))
    half = device.v_write / 2 * np.asarray(polarity, float)[:, None]
    drive = np.hstack([row_bits * half, col_bits * -half])
    if S == 1:   # the sweep needs two points; repeat the slot
        drive = np.vstack([drive, drive])
    name = circuit.nodes.name
    rn = sorted({int(k) for k in w.row_nodes.ravel()} | {int(k) for k in w.col_nodes.ravel()})
    vecs = [f"v({name(k)})" for k in rn]
    res = (engine or SubprocessEngine()).run(write_spice(circuit, BatchSweep(drive), save=vecs), need=vecs,
                                             points=len(drive), name="slots")
    v = np.zeros((len(drive), len(circuit.nodes)))
    for k, vec in zip(rn, vecs):
        v[:, k] = res.vectors[vec]
    return (v[:, w.row_nodes] - v[:, w.col_nodes])[:S]

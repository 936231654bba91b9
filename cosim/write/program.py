"""Deterministic programming of chosen cells: exact pulse counts and write-verify.

Layer: cosim.write. :func:`program_counts` gives every cell an exact number of full-selected
pulses (row-by-row schedules, so other cells are at most half-selected), on the device twin or
as one ngspice transient of the array (:func:`cosim.write.pair_update.write_transient`);
:func:`write_verify` programs target conductances by rounds of read, pulse and read again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosim.sim.engine import Engine
from cosim.write.pair_update import write_transient
from cosim.write.step_table import StepTable
from models.device import DeviceModel
from models.errors import ParameterError, check_positive
from models.pulse import PulseShape
from netlists.crossbar import CrossbarSpec

__all__ = ["count_schedule", "program_counts", "TableDevice", "VerifyResult", "write_verify"]


def count_schedule(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slots that give cell (i, j) exactly ``counts[i, j]`` full-selected pulses.

    Row by row: row i fires in max_j counts[i, j] slots, and column j joins the first
    counts[i, j] of them, so every other cell is at most half-selected. Returns row bits
    (slots, rows) and column bits (slots, cols).
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or (counts < 0).any() or not np.issubdtype(counts.dtype, np.integer):
        raise ParameterError("pulse counts must be a 2-D array of non-negative integers")
    R, C = counts.shape
    rows, cols = [], []
    for i in range(R):
        for k in range(int(counts[i].max(initial=0))):
            r = np.zeros(R, bool)
            r[i] = True
            rows.append(r)
            cols.append(counts[i] > k)
    if not rows:
        return np.zeros((0, R), bool), np.zeros((0, C), bool)
    return np.array(rows), np.array(cols)


class TableDevice:
    """A device as its step table fitted to SPICE sees it, for :func:`write_verify` on the twin:
    the state is the conductance [S]; ``n`` pulses move it by the table's mean step at each
    conductance plus its spread (one draw per device for each call, the device contract); the
    one-pulse estimates of write-verify use the mean. A SET-only device (no ``down`` curve) is
    RESET to the table's g_min, as the device itself is."""

    def __init__(self, device: DeviceModel, table: StepTable, rng: np.random.Generator | None = None,
                 shape: PulseShape | None = None):
        if not isinstance(table, StepTable):
            raise ParameterError(f"table must be a loaded StepTable, got {type(table).__name__}")
        if table.device != device.name:
            raise ParameterError(f"the step table was fitted to {table.device!r}, not {device.name!r}")
        if not table.matches_pulse(shape or PulseShape()):
            raise ParameterError(f"the {table.device} step table was fitted with the write pulse (width, rise, "
                                 f"period) = {table.pulse} s, not the one programming uses")
        self.device, self.table, self.rng = device, table, rng
        self.name, self.v_write = device.name, device.v_write
        self.state_range = (table.g_min, table.g_max)
        if "down" not in table.directions:
            self.reset = lambda state: np.full_like(np.asarray(state, float), table.g_min)

    def to_conductance(self, state) -> np.ndarray:
        return np.asarray(state, float)

    conductance = to_conductance

    def from_conductance(self, g) -> np.ndarray:
        return np.clip(np.asarray(g, float), self.table.g_min, self.table.g_max)

    def step(self, state, amplitude, shape: PulseShape, variation=None, noise=None) -> np.ndarray:
        """The mean conductance after one pulse of sign ``amplitude`` (unchanged without a curve)."""
        s = np.asarray(state, float)
        a = np.broadcast_to(np.asarray(amplitude, float), s.shape)
        out = self.table.apply(s, (a > 0).astype(int), "up")
        if "down" in self.table.directions:
            out = np.where(a < 0, self.table.apply(s, (a < 0).astype(int), "down"), out)
        return out

    def apply_counts(self, state, counts, shape: PulseShape, variation=None, noise=None, *,
                     polarity: int = +1) -> np.ndarray:
        if polarity < 0 and "down" not in self.table.directions:
            raise ParameterError(f"{self.name} has no down step table: it is RESET, not pulsed down")
        return self.table.apply(np.asarray(state, float), np.asarray(counts, int), "up" if polarity > 0 else "down",
                                self.rng)


def program_counts(device: DeviceModel, states: np.ndarray, counts: np.ndarray, *, backend: str = "fast",
                   shape: PulseShape | None = None, r_wire: float = 0.0, engine: Engine | None = None,
                   variation: dict | None = None) -> np.ndarray:
    """Give each cell of a (rows, cols) array of ``device`` exactly ``|counts|`` full-selected
    pulses, of positive polarity where counts > 0 and negative where < 0 (bipolar devices),
    on the twin or as one ngspice transient; returns the new states."""
    shape = shape or PulseShape()
    states = np.asarray(states, float)
    counts = np.asarray(counts)
    R, C = states.shape
    if counts.shape != (R, C):
        raise ParameterError(f"counts {counts.shape} must match the array {(R, C)}")
    up_rb, up_cb = count_schedule(np.maximum(counts, 0))
    dn_rb, dn_cb = count_schedule(np.maximum(-counts, 0))
    if backend == "fast":
        out = states.ravel()
        for c, pol in ((np.maximum(counts, 0), 1), (np.maximum(-counts, 0), -1)):
            if c.any():
                out = device.apply_counts(out, c.ravel(), shape, variation, polarity=pol)
        return out.reshape(R, C)
    if backend != "spice":
        raise ParameterError(f"backend must be 'fast' or 'spice', got {backend!r}")
    rb, cb = np.concatenate([up_rb, dn_rb]), np.concatenate([up_cb, dn_cb])
    if not len(rb):
        return states.copy()
    pol = np.concatenate([np.ones(len(up_rb)), -np.ones(len(dn_rb))])
    spec = CrossbarSpec(rows=R, cols=C, r_row=r_wire, r_col=r_wire)
    return write_transient(device, spec, states, rb, cb, pol, shape, variation, None, engine)


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of write-verify: final states, conductances [S], rounds and pulses used (in all,
    and per cell: SET and RESET-side pulses counted alike; a RESET pulse is not counted)."""

    states: np.ndarray
    conductance: np.ndarray
    rounds: int
    pulses: int
    converged: np.ndarray
    cell_pulses: np.ndarray | None = None
    program: tuple = ()
    """With ``record=True``: per round ``(verify read [S], RESET first (bool), signed pulse
    counts)``, each of the array's shape (the read is the one the pulses were chosen on)."""


def write_verify(device: DeviceModel, states: np.ndarray, target_g: np.ndarray, *, tol: float,
                 max_rounds: int = 20, backend: str = "fast", shape: PulseShape | None = None,
                 r_wire: float = 0.0, engine: Engine | None = None, record: bool = False,
                 max_pulses: int | None = None) -> VerifyResult:
    """Program ``target_g`` [S] by rounds of read, pulse, read again.

    Each round reads every cell, estimates how many SET pulses would bring each cell still
    below ``target - tol`` to its target (from the present one-pulse step, so the estimate
    shrinks as a saturating device slows down, never more than half the remaining gap's worth
    of overshoot), applies them with :func:`program_counts`, and stops when every cell is
    within ``tol`` or cannot move any further. A cell above its target by more than ``tol`` is
    RESET first on SET-only devices (those with a ``reset``) and programmed up again; bipolar
    devices take pulses of the opposite polarity instead. ``record``: keep each round's verify
    read, RESETs and pulse counts (:attr:`VerifyResult.program`). ``max_pulses``: no device gets
    more pulses than this in all (it stays where it is, unconverged).
    """
    shape = shape or PulseShape()
    s = np.asarray(states, float).copy()
    target = np.asarray(target_g, float)
    lo, hi = np.sort(device.to_conductance(np.array(device.state_range, float)))
    if target.shape != s.shape or (target < lo).any() or (target > hi).any():
        raise ParameterError(f"targets must have the array's shape {s.shape} and lie in the device range "
                             f"[{lo:g}, {hi:g}] S")
    check_positive("tol", tol)
    if max_pulses is not None and (isinstance(max_pulses, bool) or int(max_pulses) != max_pulses or max_pulses < 1):
        raise ParameterError(f"max_pulses must be an integer >= 1 or None, got {max_pulses!r}")
    pulses = 0
    rounds = 0
    cell_pulses = np.zeros(s.shape, int)
    resettable = hasattr(device, "reset")
    log = []
    for rounds in range(1, max_rounds + 1):
        g = device.conductance(s)
        g_read = g
        over = g > target + tol
        if max_pulses is not None:               # a device without pulses left is not RESET either
            over &= cell_pulses < max_pulses
        reset = over & resettable
        if over.any() and resettable:            # SET-only: start those cells again from RESET
            s = np.where(over, device.reset(s), s)
            g = device.conductance(s)
            over[:] = False
        below = g < target - tol
        if not (below.any() or over.any()):
            if record and reset.any():
                log.append((g_read, reset, np.zeros(s.shape, int)))
            break
        flat = s.ravel()
        up = device.conductance(device.step(flat, device.v_write, shape).reshape(s.shape)) - g
        dn = g - device.conductance(device.step(flat, -device.v_write, shape).reshape(s.shape))
        n = np.zeros(s.shape, int)
        with np.errstate(divide="ignore", invalid="ignore"):
            n_up = np.floor((target - g) / np.where(up > 0, up, np.inf) + 0.5)
            n_dn = np.floor((g - target) / np.where(dn > 0, dn, np.inf) + 0.5)
        n = np.where(below & (up > 0), np.maximum(n_up, 1), n)
        n = np.where(over & (dn > 0), -np.maximum(n_dn, 1), n).astype(int)
        if max_pulses is not None:               # each device's budget of pulses
            left = np.maximum(max_pulses - cell_pulses, 0)
            n = np.sign(n) * np.minimum(np.abs(n), left)
        if record and (n.any() or reset.any()):
            log.append((g_read, reset, n))
        if not n.any():
            break                                # nothing can move any further
        s = program_counts(device, s, n, backend=backend, shape=shape, r_wire=r_wire, engine=engine)
        pulses += int(np.abs(n).sum())
        cell_pulses += np.abs(n)
    g = device.conductance(s)
    return VerifyResult(s, g, rounds, pulses, np.abs(g - target) <= tol, cell_pulses, tuple(log))

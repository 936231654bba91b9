"""Stochastic pulse trains for the parallel outer-product update (Gokmen & Vlasov, 2016).

Layer: cosim.write. An update dW = -lr x^T d of a whole array happens in place: row i fires in each of
BL time slots with probability p_i ~ |x_i|, column j with q_j ~ |d_j|, and a cell changes by one
device step only where a row pulse and a column pulse coincide (rows carry +-V/2 and columns
-+V/2, so only a coincidence puts the full V across a cell, above its threshold). The expected
count is E[n_ij] = BL p_i q_j, so E[dW_ij] = dw_min BL p_i q_j = lr |x_i d_j| with the gains
chosen here ("update management": the gain is split between rows and columns so that neither
probability exceeds 1).

Signs come from four sub-phases, one per quadrant (sign x_i, sign d_j): in each, only the rows
and columns of that quadrant fire, with the polarity -sign(x_i) sign(d_j) that gradient descent
asks for. On a differential pair a SET-only device (PCM) takes both polarities as a SET of the
G+ column (increase) or of the G- column (decrease): :func:`pair_columns` maps them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import ParameterError, ShapeError
from models.pulse import MASK_BITS

QUADRANTS = ((1, 1), (1, -1), (-1, 1), (-1, -1))   # (sign of x, sign of d)


@dataclass(frozen=True)
class PulseTrains:
    """The bits of one update, per sub-phase.

    Attributes
    ----------
    rows : ndarray bool (4, BL, n_rows)
    cols : ndarray bool (4, BL, n_cols)
    polarity : ndarray int (4,)
        +1: the coincidences of that sub-phase increase the weight; -1: decrease it.
    gain : float
        The factor by which the realised expectation falls short of lr |x d| (1.0 unless the
        probabilities had to be clipped at 1).
    """

    rows: np.ndarray
    cols: np.ndarray
    polarity: np.ndarray
    gain: float

    @property
    def bl(self) -> int:
        return self.rows.shape[1]

    def coincidences(self) -> np.ndarray:
        """Counts per sub-phase and cell, (4, n_rows, n_cols): popcount(row AND column)."""
        # a float product runs in BLAS; the counts (at most bl) are exact in float32
        r = self.rows.astype(np.float32)
        c = self.cols.astype(np.float32)
        return np.matmul(r.transpose(0, 2, 1), c).astype(np.int32)

    def signed_counts(self) -> np.ndarray:
        """Net coincidences (n_rows, n_cols): up-phases minus down-phases."""
        return np.einsum("p,pij->ij", self.polarity, self.coincidences())


def pulse_trains(x: np.ndarray, d: np.ndarray, *, lr: float, dw_min: float, bl: int,
                 rng: np.random.Generator) -> PulseTrains:
    """Draw the pulse trains of one sample's update dW = -lr x^T d.

    Parameters
    ----------
    x : ndarray (n_rows,)
        Layer input of the sample.
    d : ndarray (n_cols,)
        Error at the layer output.
    lr : float
        Learning rate.
    dw_min : float
        Weight change of one coincidence (the device step in weight units).
    bl : int
        Slots per sub-phase.
    rng : numpy.random.Generator
    """
    x, d = np.asarray(x, float), np.asarray(d, float)
    if x.ndim != 1 or d.ndim != 1:
        raise ShapeError(f"x and d must be vectors, got {x.shape} and {d.shape}")
    return pulse_trains_batch(x[None, :], d[None, :], lr=lr, dw_min=dw_min, bl=bl, rng=rng)[0]


def pulse_trains_batch(x: np.ndarray, d: np.ndarray, *, lr: float, dw_min: float, bl: int,
                       rng: np.random.Generator) -> list[PulseTrains]:
    """:func:`pulse_trains` of every sample of a mini-batch, x (samples, n_rows) and d
    (samples, n_cols), sample after sample: the same draws as one call per sample, drawn at once."""
    rows, cols, polarity, gain = _batch_bits(x, d, lr, dw_min, bl, rng)
    return [PulseTrains(rows[s].copy(), cols[s].copy(), polarity[:4].copy(), float(gain[s]))
            for s in range(rows.shape[0])]


def _draw_batch(x, d, lr, dw_min, bl, rng):
    """The bits of a mini-batch's samples (samples, n), in one draw: which samples update
    (``live``: a sample with x = 0 or d = 0 draws nothing), the row and column bits of those,
    (live samples, bl, n) bool each, and every sample's gain. E[n_ij] = bl p_i q_j =
    lr |x_i d_j| / dw_min ("update management"). The same numbers as drawing each live sample's
    rows, then its columns, in turn: a generator's doubles do not depend on how the draws are
    split."""
    if not (np.isfinite(x).all() and np.isfinite(d).all()):
        raise ParameterError("x and d must be finite")
    if bl < 1:
        raise ParameterError(f"bl must be >= 1, got {bl}")
    if not (lr > 0 and dw_min > 0):
        raise ParameterError(f"lr and dw_min must be > 0, got {lr} and {dw_min}")
    x_max, d_max = np.abs(x).max(axis=1), np.abs(d).max(axis=1)
    live = (x_max != 0) & (d_max != 0)
    x, d, x_max, d_max = x[live], d[live], x_max[live], d_max[live]
    k = lr * x_max * d_max / (dw_min * bl)            # = a * b
    a = np.sqrt(k)
    b = a.copy()
    over = a > 1   # keep both probabilities <= 1: put what fits on one side, clip the rest
    a[over] = 1.0
    b[over] = np.minimum(1.0, k[over])
    p = a[:, None] * np.abs(x) / x_max[:, None]
    q = b[:, None] * np.abs(d) / d_max[:, None]
    n, n_r, n_c = live.sum(), x.shape[1], d.shape[1]
    u = rng.random(n * bl * (n_r + n_c)).reshape(n, bl * (n_r + n_c))
    rbits = u[:, :bl * n_r].reshape(n, bl, n_r) < p[:, None, :]
    cbits = u[:, bl * n_r:].reshape(n, bl, n_c) < q[:, None, :]
    gain = np.ones(live.size)
    gain[live] = a * b / k
    return live, rbits, cbits, gain


def _check_batch(x, d) -> tuple[np.ndarray, np.ndarray]:
    x, d = np.asarray(x, float), np.asarray(d, float)
    if x.ndim != 2 or d.ndim != 2 or x.shape[0] != d.shape[0]:
        raise ShapeError(f"x and d must be (samples, n) with as many samples, got {x.shape} and {d.shape}")
    return x, d


def _batch_bits(x: np.ndarray, d: np.ndarray, lr: float, dw_min: float, bl: int, rng: np.random.Generator):
    """The row and column bits of a mini-batch's sub-phases, (samples, 4, bl, n) bool each,
    sample after sample (the draws of :func:`pulse_trains`), each sub-phase's polarity, and
    each sample's gain."""
    x, d = _check_batch(x, d)
    B, n_r = x.shape
    n_c = d.shape[1]
    rows = np.zeros((B, 4, bl, n_r), bool)
    cols = np.zeros((B, 4, bl, n_c), bool)
    live, rbits, cbits, gain = _draw_batch(x, d, lr, dw_min, bl, rng)
    sx, sd = np.sign(x[live])[:, None, :], np.sign(d[live])[:, None, :]
    for k_, (qx, qd) in enumerate(QUADRANTS):
        rows[live, k_] = rbits & (sx == qx)
        cols[live, k_] = cbits & (sd == qd)
    return rows, cols, np.tile([-qx * qd for qx, qd in QUADRANTS], B), gain


def coincidence_counts(x: np.ndarray, d: np.ndarray, *, lr: float, dw_min: float, bl: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The updates of a mini-batch as coincidence counts (samples * 4, n_rows, n_cols), float32
    (exact: at most ``bl``), sample after sample, sub-phase after sub-phase, and each sub-phase's
    polarity (+1: its coincidences increase the weight). The same draws and counts as
    :func:`pulse_trains` and :meth:`PulseTrains.coincidences` per sample, with one batched
    product for the counts."""
    rows, cols, pol, _ = _batch_bits(x, d, lr, dw_min, bl, rng)
    B, _, _, n_r = rows.shape
    n_c = cols.shape[-1]
    r = rows.reshape(B * 4, bl, n_r).astype(np.float32)
    c = cols.reshape(B * 4, bl, n_c).astype(np.float32)
    return np.matmul(r.transpose(0, 2, 1), c), pol


def coincidence_masks(x: np.ndarray, d: np.ndarray, *, lr: float, dw_min: float, bl: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`coincidence_counts` as bit masks: each line's slots in one integer (bit t: slot t),
    rows (samples * 4, n_rows) and columns (samples * 4, n_cols), int64, and the polarities. A
    cell's count is the popcount of its row's AND its column's mask: the same draws, and no
    (phases, rows, cols) array (``bl`` at most :data:`MASK_BITS`)."""
    if not 1 <= bl <= MASK_BITS:
        raise ParameterError(f"bit masks hold 1 to {MASK_BITS} slots per sub-phase, got bl = {bl}")
    x, d = _check_batch(x, d)
    B = x.shape[0]
    rm = np.zeros((B, 4, x.shape[1]), np.int64)
    cm = np.zeros((B, 4, d.shape[1]), np.int64)
    live, rbits, cbits, _ = _draw_batch(x, d, lr, dw_min, bl, rng)
    r, c = _pack_slots(rbits), _pack_slots(cbits)        # each line's slots, bit t for slot t
    sx, sd = np.sign(x[live]), np.sign(d[live])
    for k_, (qx, qd) in enumerate(QUADRANTS):
        rm[live, k_] = np.where(sx == qx, r, 0)
        cm[live, k_] = np.where(sd == qd, c, 0)
    return (rm.reshape(B * 4, x.shape[1]), cm.reshape(B * 4, d.shape[1]),
            np.tile([-qx * qd for qx, qd in QUADRANTS], B))


def _pack_slots(bits: np.ndarray) -> np.ndarray:
    """(samples, bl, n) bool -> (samples, n) int64, slot t as bit t (bl <= 16)."""
    packed = np.packbits(bits, axis=1, bitorder="little").astype(np.int64)   # (samples, bytes, n)
    out = packed[:, 0]
    if packed.shape[1] > 1:
        out = out | (packed[:, 1] << 8)
    return out


def pair_columns(trains: PulseTrains) -> tuple[np.ndarray, np.ndarray]:
    """For differential pairs of SET-only devices: the bits of the physical columns.

    Returns ``rows`` (4, BL, n_rows) unchanged and ``cols`` (4, BL, 2 n_cols) where a sub-phase
    that increases a weight fires its G+ column (2j) and one that decreases it fires G- (2j+1);
    every coincidence is then a SET.
    """
    four, bl, n_c = trains.cols.shape
    pcols = np.zeros((four, bl, 2 * n_c), bool)
    for k, pol in enumerate(trains.polarity):
        pcols[k, :, (0 if pol > 0 else 1)::2] = trains.cols[k]
    return trains.rows, pcols

"""Weights <-> conductances: the only place where unitless network weights meet siemens.

Layer: cosim.write. A weight matrix W (n_in, n_out) is stored as differential pairs,
W = scale * (G+ - G-), with both conductances in [g_min, g_max]. ``to_conductances`` and
``from_conductances`` are the pair of functions (tested as a round trip); ``tile_slices`` splits
a layer larger than the largest allowed array into tiles whose partial sums are added
digitally.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import ParameterError, ShapeError, check_positive


@dataclass(frozen=True)
class MappingSpec:
    """How weights map onto conductance pairs.

    Attributes
    ----------
    g_min, g_max : float
        Conductance range of one device [S].
    w_max : float
        Weight that maps to a full pair (G+ = g_max, G- = g_min); larger weights are clipped.
    per_column : bool
        One scale per output column (w_max applied to each column's largest weight) instead
        of one per layer.
    """

    g_min: float = 1e-6
    g_max: float = 25e-6
    w_max: float = 1.0
    per_column: bool = False

    def __post_init__(self) -> None:
        check_positive("g_min", self.g_min)
        check_positive("g_max", self.g_max)
        check_positive("w_max", self.w_max)
        if self.g_min >= self.g_max:
            raise ParameterError(f"g_min ({self.g_min:g} S) must be below g_max ({self.g_max:g} S)")

    @property
    def g_range(self) -> float:
        return self.g_max - self.g_min


def to_conductances(W: np.ndarray, spec: MappingSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map weights onto pairs.

    Returns
    -------
    g_plus, g_minus : ndarray (n_in, n_out) [S]
    scale : ndarray (n_out,) [weight / S]
        W ~= scale * (g_plus - g_minus), exactly for weights within +-w_max.
    """
    W = np.asarray(W, dtype=float)
    if W.ndim != 2:
        raise ShapeError(f"weights must be a 2-D (n_in, n_out) matrix, got shape {W.shape}")
    if not np.isfinite(W).all():
        raise ParameterError("weights contain NaN or infinity")
    if spec.per_column:
        w_max = np.maximum(np.abs(W).max(axis=0), 1e-12)
    else:
        w_max = np.full(W.shape[1], spec.w_max)
    scale = w_max / spec.g_range
    Wc = np.clip(W, -w_max, w_max)
    g_plus = spec.g_min + np.maximum(Wc, 0) / scale
    g_minus = spec.g_min + np.maximum(-Wc, 0) / scale
    return g_plus, g_minus, scale


def from_conductances(g_plus: np.ndarray, g_minus: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The weights a pair stores: scale * (G+ - G-)."""
    g_plus, g_minus = np.asarray(g_plus, float), np.asarray(g_minus, float)
    if g_plus.shape != g_minus.shape:
        raise ShapeError(f"G+ {g_plus.shape} and G- {g_minus.shape} differ in shape")
    return np.asarray(scale)[None, :] * (g_plus - g_minus)


def tile_slices(n_in: int, n_out: int, max_rows: int, max_cols: int) -> list[tuple[slice, slice]]:
    """Split an (n_in, n_out) layer into tiles of at most max_rows x max_cols (logical) cells."""
    if max_rows < 1 or max_cols < 1:
        raise ParameterError(f"array limits must be >= 1, got {max_rows} x {max_cols}")
    rows = [slice(a, min(a + max_rows, n_in)) for a in range(0, n_in, max_rows)]
    cols = [slice(b, min(b + max_cols, n_out)) for b in range(0, n_out, max_cols)]
    return [(r, c) for r in rows for c in cols]

"""Data sets for training: scikit-learn's bundled 8x8 digits (no download), or the user's .npz.

Layer: cosim.train. Every loader returns a :class:`Dataset` with features scaled to [0, 1] (so they
map straight onto read voltages) and integer labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import ParameterError, ShapeError


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays: X (n, features) in [0, 1], y (n,) integer classes."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 8x8 digit images (shipped with the package), split stratified with
    a fixed seed: 1,437 train / 360 test by default. Pixels 0..16 become 0..1."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = d.data / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, d.target, test_size=test_fraction, stratify=d.target,
                                          random_state=seed)
    return Dataset("digits", Xtr, ytr.astype(int), Xte, yte.astype(int))


def load_npz(path: str | Path) -> Dataset:
    """A user's data set: an .npz with X_train, y_train, X_test, y_test (X scaled to [0, 1])."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data file {p} does not exist")
    with np.load(p, allow_pickle=False) as z:
        missing = [k for k in ("X_train", "y_train", "X_test", "y_test") if k not in z]
        if missing:
            raise ShapeError(f"{p} lacks {', '.join(missing)} (need X_train, y_train, X_test, y_test)")
        arrays = {k: z[k] for k in ("X_train", "y_train", "X_test", "y_test")}
    for part in ("train", "test"):
        X, y = arrays[f"X_{part}"], arrays[f"y_{part}"]
        if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
            raise ShapeError(f"{p}: X_{part} {X.shape} and y_{part} {y.shape} must be (n, features) and (n,)")
        if not np.isfinite(X).all():
            raise ParameterError(f"{p}: X_{part} contains NaN or infinity")
        if X.min() < 0 or X.max() > 1:
            raise ParameterError(f"{p}: X_{part} must be scaled to [0, 1] (found {X.min():g}..{X.max():g})")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise ParameterError(f"{p}: y_{part} must hold non-negative integer class labels")
    if arrays["X_train"].shape[1] != arrays["X_test"].shape[1]:
        raise ShapeError(f"{p}: train and test have different feature counts")
    return Dataset(p.stem, arrays["X_train"].astype(float), arrays["y_train"].astype(int),
                   arrays["X_test"].astype(float), arrays["y_test"].astype(int))

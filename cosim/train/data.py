"""Data sets for training: scikit-learn's bundled 8x8 digits (no download), or the user's .npz.

Layer: cosim.train. Every loader returns a :class:`Dataset` with features scaled to [0, 1] (so they
map straight onto read voltages) and integer labels.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import ParameterError, ShapeError, real_array


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays: X (n, features) in [0, 1], y (n,) integer classes 0..K-1, every
    test class present in the training set (checked here, whatever the source)."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            X = real_array(f"{self.name}: X_{part}", getattr(self, f"X_{part}"))
            y = real_array(f"{self.name}: y_{part}", getattr(self, f"y_{part}"), integer=True)
            if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
                raise ShapeError(f"{self.name}: X_{part} {X.shape} and y_{part} {y.shape} must be (n, features) "
                                 "and (n,) with n > 0")
            if X.min() < 0 or X.max() > 1:
                raise ParameterError(f"{self.name}: X_{part} must be scaled to [0, 1] (found {X.min():g}..{X.max():g})")
            if y.min() < 0:
                raise ParameterError(f"{self.name}: y_{part} must hold non-negative class labels")
            object.__setattr__(self, f"X_{part}", X)
            object.__setattr__(self, f"y_{part}", y)
        if self.X_train.shape[1] != self.X_test.shape[1]:
            raise ShapeError(f"{self.name}: train and test have different feature counts "
                             f"({self.X_train.shape[1]} and {self.X_test.shape[1]})")
        extra = sorted(set(np.unique(self.y_test).tolist()) - set(np.unique(self.y_train).tolist()))
        if extra:
            raise ParameterError(f"{self.name}: y_test holds classes the training set lacks: {extra[:10]}"
                                 f"{' ...' if len(extra) > 10 else ''}")

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


def _pixel_scale(z, p: Path) -> float:
    scale = np.asarray(z["X_scale"])
    if scale.shape != () or scale.dtype.kind != "f" or not 0 < float(scale) <= 1:
        raise ParameterError(f"data file {p}: X_scale must be one number in (0, 1], the factor from stored "
                             "values to [0, 1]")
    return float(scale)


def load_npz(path: str | Path) -> Dataset:
    """A user's data set: an .npz with X_train, y_train, X_test, y_test (X scaled to [0, 1], or
    stored as integers with a scalar ``X_scale`` that scales them, as ``xbar data`` writes)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data file {p} does not exist")
    need = ("X_train", "y_train", "X_test", "y_test")
    try:
        z = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ParameterError(f"data file {p} cannot be read ({type(exc).__name__}: {str(exc)[:160]}); --data needs "
                             f"an .npz with {', '.join(need)} of numbers") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ParameterError(f"data file {p} holds one array: --data needs an .npz with {', '.join(need)}")
    with z:
        scale = _pixel_scale(z, p) if "X_scale" in z else None
        missing = [k for k in need if k not in z]
        if missing:
            raise ShapeError(f"{p} lacks {', '.join(missing)} (need {', '.join(need)})")
        arrays = {}
        for k in need:
            try:
                arrays[k] = z[k]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ParameterError(f"data file {p}: {k} cannot be read ({type(exc).__name__}: "
                                     f"{str(exc)[:160]}); it must be an array of numbers") from None
    if scale is not None:                      # images kept as bytes (xbar data): scaled as they load
        for k in ("X_train", "X_test"):
            arrays[k] = arrays[k].astype(np.float32) * np.float32(scale)
    try:
        return Dataset(p.stem, **arrays)
    except (ParameterError, ShapeError) as exc:
        raise type(exc)(f"data file {p}: {str(exc).removeprefix(p.stem + ': ')}") from None

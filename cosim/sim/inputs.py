"""The edge where files and command-line values enter: every array and path checked once, with
messages that name the file, option or field.

Layer: cosim.sim. :func:`load_array` reads ``.npy`` / ``.csv`` / ``.txt`` arrays (a missing,
empty, truncated or unparseable file, text, booleans, complex numbers, objects, NaN and
infinity are refused, naming the file); :func:`save_array` writes one atomically and refuses to
overwrite an input; the ``*_arg`` functions are argparse types that refuse a value before any
work starts.
"""

from __future__ import annotations

import argparse
import math
import zipfile
from pathlib import Path

import numpy as np

from cosim.sim.files import atomic_path
from models.errors import ParameterError, real_array

__all__ = ["load_array", "save_array", "check_output_path", "positive_int_arg", "nonneg_int_arg",
           "positive_float_arg", "nonneg_float_arg", "ARRAY_SUFFIXES"]

ARRAY_SUFFIXES = (".npy", ".csv", ".txt")


def load_array(path: str | Path, what: str, *, integer: bool = False) -> np.ndarray:
    """The array in ``path`` (``.npy``, ``.csv`` or ``.txt``) as float64 (int64 with
    ``integer``); every problem is a :class:`ParameterError` (or ``FileNotFoundError``) naming
    ``what`` and the file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} file {p} does not exist")
    if not p.is_file():
        raise ParameterError(f"{what} file {p} is not a file")
    if p.suffix not in ARRAY_SUFFIXES:
        raise ParameterError(f"{what} file {p}: expected a .npy, .csv or .txt file")
    if p.stat().st_size == 0:
        raise ParameterError(f"{what} file {p} is empty")
    try:
        if p.suffix == ".npy":
            a = np.load(p, allow_pickle=False)
        else:
            a = np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=2)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ParameterError(f"{what} file {p} could not be read ({_short(exc)})") from None
    if not isinstance(a, np.ndarray):
        raise ParameterError(f"{what} file {p} holds no array")
    return real_array(f"{what} in {p}", a, integer=integer)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def check_output_path(out: str | Path, *inputs: str | Path | None, what: str = "--out") -> Path:
    """``out`` as a Path, refused if it is one of ``inputs`` (the run would overwrite its own
    input) or an existing folder."""
    p = Path(out)
    if p.is_dir():
        raise ParameterError(f"{what} {p} is a folder: give a file name")
    for i in inputs:
        if i is not None and p.resolve() == Path(i).resolve():
            raise ParameterError(f"{what} {p} is also an input of this command: it would be overwritten")
    return p


def array_path(path: str | Path) -> Path:
    """The file :func:`save_array` writes for ``path``: ``.npy``, ``.csv`` and ``.txt`` as given
    (the suffixes :func:`load_array` reads), any other name with ``.npy`` appended (as
    ``np.save`` does)."""
    p = Path(path)
    return p if p.suffix in ARRAY_SUFFIXES else p.with_name(p.name + ".npy")


def save_array(path: str | Path, arr: np.ndarray) -> Path:
    """Write ``arr`` to ``path`` (``.csv`` comma-separated text, ``.txt`` space-separated text,
    otherwise ``.npy``: :func:`array_path`) atomically: a failed write leaves an earlier file
    untouched."""
    p = array_path(path)
    if p.suffix in (".csv", ".txt"):
        with atomic_path(p) as tmp:
            np.savetxt(tmp, arr, delimiter="," if p.suffix == ".csv" else " ")
    else:
        with atomic_path(p) as tmp, open(tmp, "wb") as fh:
            np.save(fh, arr)
    return p


def _int_arg(text: str, minimum: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"must be {what}, got {v}")
    return v


def positive_int_arg(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_arg(text, 1, ">= 1")


def nonneg_int_arg(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_arg(text, 0, ">= 0")


def _float_arg(text: str, allow_zero: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"must be {'>= 0' if allow_zero else '> 0'} and finite, got {text}")
    return v


def positive_float_arg(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _float_arg(text, allow_zero=False)


def nonneg_float_arg(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _float_arg(text, allow_zero=True)


def shape_arg(text: str) -> tuple[int, int]:
    """argparse type: ``ROWSxCOLS`` (``256x128``) or one number for a square, each >= 2."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"{text!r} is not ROWSxCOLS (for example 256x128)")
    dims = [_int_arg(t, 2, ">= 2") for t in parts]
    return (dims[0], dims[-1])

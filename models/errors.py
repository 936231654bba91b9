"""Typed errors, and the value checks that raise them, shared by every layer of xbar-cosim.

Layer: models (leaf). ``netlists`` and ``cosim`` import these; nothing here imports them.
Every error is an ``XbarError``; the ones about a bad value are also ``ValueError`` so that
ordinary ``except ValueError`` code keeps working. Every message names the value it is about.
"""

from __future__ import annotations

import numpy as np


class XbarError(Exception):
    """Base class of every error that xbar-cosim raises on purpose."""


class ParameterError(XbarError, ValueError):
    """A parameter is out of its physical or logical range (names the field)."""


class ShapeError(XbarError, ValueError):
    """An array has the wrong shape for the operation (names the array and both shapes)."""


class UnsupportedElementError(XbarError, NotImplementedError):
    """A consumer (SPICE writer or fast solver) meets an element type it cannot render."""


def check_finite(name: str, value: float) -> float:
    """Return ``value`` as float, or raise ParameterError naming ``name`` if it is not a finite
    real number (``None``, text, booleans and complex numbers included)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if v != v or v in (float("inf"), float("-inf")):
        raise ParameterError(f"{name} must be finite, got {value!r}")
    return v


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Return ``value`` as float if finite and > 0 (>= 0 with ``allow_zero``), else raise."""
    v = check_finite(name, value)
    if v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{name} must be {bound}, got {value!r}")
    return v


def check_int(name: str, value, *, minimum: int | None = None) -> int:
    """Return ``value`` as int if it is an integer (not a boolean) of at least ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ParameterError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def real_array(name: str, a, *, integer: bool = False) -> np.ndarray:
    """``a`` as a float64 array (int64 with ``integer``), refusing what would be silently
    mangled: complex numbers (the imaginary part dropped), booleans, text and objects; with
    ``integer``, values that are not whole numbers. Non-finite values are refused too."""
    arr = np.asarray(a)
    kind = arr.dtype.kind
    if kind == "c":
        raise ParameterError(f"{name} holds complex numbers: give real values")
    if kind == "b":
        raise ParameterError(f"{name} holds booleans: give numbers")
    if kind not in "iuf":
        raise ParameterError(f"{name} must hold numbers, got an array of {arr.dtype} ({_kind_name(kind)})")
    if kind == "f" and not np.isfinite(arr).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ParameterError(f"{name}{list(idx)} is {arr[idx]}: every value must be finite")
    if integer:
        if kind == "f" and not np.all(arr == np.rint(arr)):
            raise ParameterError(f"{name} must hold whole numbers")
        return arr.astype(np.int64)
    return arr.astype(np.float64)


def _kind_name(kind: str) -> str:
    return {"U": "text", "S": "bytes", "O": "Python objects", "M": "dates", "m": "time spans", "V": "records"}.get(
        kind, "not numbers")


def raise_or_warn(message: str, action: str = "raise") -> None:
    """Pre-run range checks: raise ParameterError (``action="raise"``) or warn (``"warn"``)."""
    if action == "raise":
        raise ParameterError(message)
    import warnings
    warnings.warn(message, RuntimeWarning, stacklevel=3)

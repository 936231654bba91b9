"""Typed errors shared by every layer of xbar-cosim.

Layer: models (leaf). ``netlists`` and ``cosim`` import these; nothing here imports them.
Every error is an ``XbarError``; the ones about a bad value are also ``ValueError`` so that
ordinary ``except ValueError`` code keeps working.
"""

from __future__ import annotations


class XbarError(Exception):
    """Base class of every error that xbar-cosim raises on purpose."""


class ParameterError(XbarError, ValueError):
    """A parameter is out of its physical or logical range (names the field)."""


class ShapeError(XbarError, ValueError):
    """An array has the wrong shape for the operation (names the array and both shapes)."""


class UnsupportedElementError(XbarError, NotImplementedError):
    """A consumer (SPICE writer or fast solver) meets an element type it cannot render."""


def check_finite(name: str, value: float) -> float:
    """Return ``value`` as float, or raise ParameterError naming ``name`` if it is not finite."""
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


def raise_or_warn(message: str, action: str = "raise") -> None:
    """Pre-run range checks: raise ParameterError (``action="raise"``) or warn (``"warn"``)."""
    if action == "raise":
        raise ParameterError(message)
    import warnings
    warnings.warn(message, RuntimeWarning, stacklevel=3)

"""Numbers and expressions as ngspice reads them, for the subcircuit text of the models.

Layer: models (leaf). The netlist writer (:mod:`netlists.spice`) formats its numbers with the
same :func:`fmt`, so a value reads back identically wherever it was written.
"""

from __future__ import annotations

__all__ = ["fmt", "ramp_spice", "softplus_spice"]


def fmt(x: float) -> str:
    """One number as plain SI with 12 significant digits (``1e-06``, never ``1u``: in SPICE
    ``1M`` is milli); ``-0`` is written ``0``."""
    return f"{float(x) + 0.0:.12g}"


def ramp_spice(expr: str, lo: float, hi: float) -> str:
    """B-source text of :func:`models.pulse.ramp` applied to the expression ``expr``."""
    return f"min(max(({expr}-{fmt(lo)})*{fmt(1.0 / (hi - lo))},0),1)"


def softplus_spice(x: str) -> str:
    """Overflow-free ``ln(1 + exp(x))`` as an ngspice B-source expression of ``x``."""
    return f"(({x}) > 0 ? ({x}) + ln(1 + exp(-({x}))) : ln(1 + exp({x})))"

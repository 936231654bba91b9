"""Errors of the co-simulation layer, on top of the shared hierarchy in ``models.errors``.

Layer: cosim.sim. Every failure of ngspice becomes one of the ``NgspiceError`` subclasses below,
carrying the tail of ngspice's log and the path of the deck that failed, so that a user can
rerun it by hand (``ngspice -b DECK``).
"""

from __future__ import annotations

from pathlib import Path

from models.errors import ParameterError, ShapeError, UnsupportedElementError, XbarError

__all__ = [
    "XbarError", "ParameterError", "ShapeError", "UnsupportedElementError",
    "NgspiceError", "NgspiceNotFound", "NgspiceParseError", "NgspiceSingularError",
    "NgspiceConvergenceError", "NgspiceTimeout", "NgspiceCrash", "MissingVectorError", "BatchError",
    "NGSPICE_MIN_VERSION",
]

LOG_TAIL_LINES = 25
#: The oldest ngspice with KLU (older ones are 10-100x slower on crossbars).
NGSPICE_MIN_VERSION = 42


class NgspiceError(XbarError, RuntimeError):
    """ngspice did not deliver a trustworthy result.

    Attributes
    ----------
    log : str
        The full ngspice output (stdout and stderr interleaved as ngspice wrote them).
    deck_path : Path or None
        Where the failing deck was kept for inspection (its log beside it, ``.log``).
    quote : bool
        Whether the message may quote the log. Not for a deck that includes other files:
        ngspice echoes their lines into its log, and an error message is no place for them.
    """

    def __init__(self, message: str, *, log: str = "", deck_path: Path | None = None, quote: bool = True):
        self.log = log
        self.deck_path = deck_path
        self.reason = message
        self.quote = quote
        super().__init__(message)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        kept = [ln for ln in self.log.splitlines() if ln.strip()]
        return "\n".join(kept[-lines:])

    def __str__(self) -> str:
        where = f" (deck kept at {self.deck_path})" if self.deck_path else ""
        if not self.quote:
            log = " and its log" if self.deck_path else ""
            return (f"{self.reason}{where}; the log is not quoted because the deck includes other files "
                    f"(see the deck{log})")
        tail = self.log_tail()
        return f"{self.reason}{where}" + (f"\n--- ngspice log (tail) ---\n{tail}" if tail else "")


class NgspiceNotFound(NgspiceError):
    """No usable ngspice executable or shared library (or one older than required)."""


class NgspiceParseError(NgspiceError):
    """ngspice rejected or silently dropped part of the deck."""


class NgspiceSingularError(NgspiceError):
    """The circuit matrix is singular (a voltage-source loop, a node without a DC path...)."""


class NgspiceConvergenceError(NgspiceError):
    """Newton iteration failed, or succeeded only through a fallback the caller did not allow."""


class NgspiceTimeout(NgspiceError):
    """ngspice ran past its time (or raw-file size) limit and was stopped."""


class NgspiceCrash(NgspiceError):
    """The ngspice process (or the shared-library worker) died."""


class MissingVectorError(NgspiceError):
    """A vector that the caller needs is absent, or has fewer points than asked for."""


class BatchError(NgspiceError):
    """One deck of a ``run_many`` failed; ``results`` keeps every deck that did not."""

    def __init__(self, index: int, cause: NgspiceError, results: list):
        super().__init__(f"deck {index} of {len(results)} failed: {cause.reason}",
                         log=cause.log, deck_path=cause.deck_path, quote=cause.quote)
        self.index = index
        self.cause = cause
        self.results = results

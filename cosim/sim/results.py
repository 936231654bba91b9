"""What an ngspice run gives back and how it is judged: the binary raw file, the typed result,
and the reading of ngspice's log.

Layer: cosim.sim. :func:`read_raw` parses a raw file into :class:`AnalysisResult` objects;
:class:`SimResult` is what every engine returns; :func:`check_log` turns the first fatal line of
a log into its typed :mod:`cosim.sim.errors` exception, and :func:`check_vectors` refuses a
result that lacks a vector or points. ngspice's stderr is log text, not an error signal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence

import numpy as np

from cosim.sim.errors import (
    MissingVectorError, NgspiceConvergenceError, NgspiceError, NgspiceParseError, NgspiceSingularError,
)

__all__ = ["AnalysisResult", "SimResult", "read_raw", "check_log", "check_vectors", "includes_files"]


# ----------------------------------------------------------------------------------------------
# Results and the raw file


@dataclass(frozen=True)
class AnalysisResult:
    """The vectors of one analysis of a run (ngspice calls it a plot), keyed by lower-case name."""

    name: str
    vectors: dict[str, np.ndarray]


@dataclass
class SimResult:
    """What a run gives back: plain numpy data and the evidence behind it.

    Attributes
    ----------
    plots : list of AnalysisResult
        One per analysis, in the order ngspice ran them.
    log : str
        ngspice's output.
    version : int
        ngspice's major version.
    elapsed_s : float
        Wall time of the run [s], process start and raw-file parse included.
    warnings : list of str
        Log lines that were notes, not failures (e.g. gmin stepping that recovered).
    deck_path : Path or None
        Where the deck was written (kept only with ``keep_files`` or on failure).
    """

    plots: list[AnalysisResult]
    log: str
    version: int
    elapsed_s: float
    warnings: list[str] = field(default_factory=list)
    deck_path: Path | None = None

    @property
    def vectors(self) -> dict[str, np.ndarray]:
        """The vectors of the last analysis (the only one in most decks)."""
        return self.plots[-1].vectors if self.plots else {}

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.vectors[name.lower()]
        except KeyError:
            raise MissingVectorError(
                f"vector {name!r} is not in the result (have: {', '.join(sorted(self.vectors))[:300]})",
                log=self.log, deck_path=self.deck_path) from None


def read_raw(path: str | Path) -> list[AnalysisResult]:
    """Parse an ngspice binary (or ASCII) raw file into plots of numpy arrays.

    Complex plots give complex arrays. The independent variable (``time``, ``v(v-sweep)``,
    ``frequency``) is a vector like the others.
    """
    data = Path(path).read_bytes()
    plots: list[AnalysisResult] = []
    pos = 0
    while pos < len(data):
        header: dict[str, str] = {}
        names: list[str] = []
        while True:
            end = data.index(b"\n", pos)
            line = data[pos:end].decode("latin-1")
            pos = end + 1
            if line.startswith("Variables:"):
                nvar = int(header["no. variables"])
                for _ in range(nvar):
                    end = data.index(b"\n", pos)
                    parts = data[pos:end].decode("latin-1").split()
                    pos = end + 1
                    names.append(parts[1].lower())
                continue
            if line.startswith("Binary:") or line.startswith("Values:"):
                kind = line[:-1].lower().strip(":")
                break
            key, _, value = line.partition(":")
            header[key.strip().lower()] = value.strip()
        nvar = int(header["no. variables"])
        npts = int(header["no. points"])
        is_complex = "complex" in header.get("flags", "")
        width = 2 if is_complex else 1
        if kind == "binary":
            count = npts * nvar * width
            arr = np.frombuffer(data, dtype="<f8", count=count, offset=pos)
            pos += count * 8
        else:
            vals: list[float] = []
            while len(vals) < npts * nvar * width and pos < len(data):
                end = data.find(b"\n", pos)
                end = len(data) if end < 0 else end
                tokens = data[pos:end].decode("latin-1").replace(",", " ").split()
                pos = end + 1
                if not tokens:
                    continue
                if len(vals) % (nvar * width) == 0:
                    tokens = tokens[1:]  # point index
                vals.extend(float(t) for t in tokens)
            arr = np.asarray(vals, dtype=float)
        arr = arr.reshape(npts, nvar, width) if npts else np.zeros((0, nvar, width))
        vecs = {}
        for k, name in enumerate(names):
            col = arr[:, k, 0] + 1j * arr[:, k, 1] if is_complex else arr[:, k, 0].copy()
            vecs[name] = col
        plots.append(AnalysisResult(header.get("plotname", ""), vecs))
        while pos < len(data) and data[pos:pos + 1] in (b"\n", b"\r"):
            pos += 1
    return plots


# ----------------------------------------------------------------------------------------------
# Reading ngspice's log


#: (pattern, error, what it means), tried in order on ngspice's log; the first match decides.
_FATAL = [
    (re.compile(r"singular matrix", re.I), NgspiceSingularError, "singular matrix"),
    (re.compile(r"no data saved for|save: no such vector|no such vector", re.I), MissingVectorError,
     "a .save names a vector the circuit does not have"),
    (re.compile(r"\bignored\b", re.I), NgspiceParseError, "ngspice ignored part of the deck"),
    (re.compile(r"unknown subckt|unknown (sub)?circuit|undefined (sub)?circuit", re.I), NgspiceParseError,
     "the deck instantiates a subcircuit it does not define"),
    (re.compile(r"can't find model|could not find a valid modelname|unknown parameter|undefined parameter|"
                r"cannot compute substitute|no such (device|parameter)|fatal error|circuit not parsed|"
                r"syntax error|there aren't any circuits loaded", re.I),
     NgspiceParseError, "ngspice could not parse the deck"),
    (re.compile(r"timestep too small|iteration limit|no convergence|"
                r"gmin stepping failed.*\n.*source stepping failed|aborted", re.I),
     NgspiceConvergenceError, "the analysis did not converge"),
    (re.compile(r"^\s*error\b|\berror:|\berror on line", re.I | re.M), NgspiceError,
     "ngspice reported an error"),
]
_FALLBACK = re.compile(r"transient op started|starting source stepping", re.I)
_NOTE = re.compile(r"gmin stepping|warning", re.I)
_BENIGN = re.compile(r"no compatibility mode|can't find init file|no resource usage", re.I)


def check_log(log: str, *, allow_fallback: bool = False, deck_path: Path | None = None,
              quote: bool = True) -> list[str]:
    """Raise the typed error that the first fatal line of ``log`` calls for.

    Returns the non-fatal notes (warnings, recovered gmin stepping). A convergence fallback
    (source stepping, ngspice's pseudo-transient operating point) fails unless
    ``allow_fallback``: those "succeed" with exit 0 on circuits whose answer may be wrong.
    ``quote=False``: the message names what happened but quotes no line of the log.
    """
    lines = [ln for ln in log.splitlines() if not _BENIGN.search(ln)]
    text = "\n".join(lines)
    for pattern, exc, what in _FATAL:
        m = pattern.search(text)
        if m:
            line = text[text.rfind("\n", 0, m.start()) + 1: text.find("\n", m.end()) % (len(text) + 1)]
            reason = f"{what}: {line.strip()[:200]!r}" if quote else what
            raise exc(reason, log=log, deck_path=deck_path, quote=quote)
    if not allow_fallback:
        m = _FALLBACK.search(text)
        if m:
            raise NgspiceConvergenceError(
                "the operating point needed a fallback (source stepping or pseudo-transient); "
                "pass allow_fallback=True to accept it", log=log, deck_path=deck_path, quote=quote)
    return [ln.strip() for ln in lines if _NOTE.search(ln)]


def check_vectors(plots: list[AnalysisResult], need: Sequence[str], points: int | None, log: str,
                  deck_path: Path | None, quote: bool = True) -> None:
    """Refuse a result without plots, without a vector in ``need``, with too few points, or with a
    NaN or infinity in a vector of ``need`` (a failed analysis that left no error in the log)."""
    kw = dict(log=log, deck_path=deck_path, quote=quote)
    if not plots:
        raise MissingVectorError("ngspice wrote no results", **kw)
    vecs = plots[-1].vectors
    missing = [v for v in need if v.lower() not in vecs]
    if missing:
        raise MissingVectorError(f"vectors missing from the result: {', '.join(missing)}", **kw)
    n = min((len(v) for v in vecs.values()), default=0)
    if n == 0 or (points is not None and n < points):
        raise MissingVectorError(f"ngspice returned {n} points, expected {points or 'at least 1'}", **kw)
    bad = [v for v in need if not np.all(np.isfinite(vecs[v.lower()]))]
    if bad:
        raise NgspiceConvergenceError(f"ngspice returned NaN or infinite values in {', '.join(bad)}", **kw)


def includes_files(deck: str) -> bool:
    """Whether ``deck`` pulls in other files (``.include`` / ``.lib``): ngspice echoes their lines
    into its log, so errors about such a deck do not quote the log."""
    return bool(re.search(r"^\s*\.(include|inc|lib)\b", str(deck), re.I | re.M))

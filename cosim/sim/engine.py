"""Run ngspice decks and return plain data: the engine behind one small interface.

Layer: cosim.sim. Two implementations of :class:`Engine`:

``SubprocessEngine`` (here)
    ``ngspice -b -r out.raw deck.cir`` in a fresh process per deck, results read from the
    binary raw file. Isolation, timeouts, a raw-file size cap, and ``run_many`` that keeps one
    process per core busy. The default.
``SharedEngine`` (:mod:`cosim.sim.shared`)
    ngspice's shared library through PySpice, held in a child process so that an ngspice crash
    cannot take the user's process down. Load a deck once, then ``alter`` values and re-solve
    without re-parsing.

Both return :class:`cosim.sim.results.SimResult` (numpy arrays keyed by lower-case vector name,
the log, the ngspice version). A run fails on a non-zero exit, on an error / "ignored" /
singular / aborted line in its log, on a convergence fallback the caller did not allow, or on a
missing vector or too few points; each is a typed :mod:`cosim.sim.errors` exception carrying
the log tail and the path of the deck.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Protocol, Sequence

from cosim.sim.errors import (
    NGSPICE_MIN_VERSION, BatchError, MissingVectorError, NgspiceCrash, NgspiceError, NgspiceNotFound, NgspiceTimeout,
)
from cosim.sim.shared import SharedEngine
from cosim.sim.results import SimResult, check_log, check_vectors, read_raw

__all__ = ["Engine", "ngspice_version", "default_workers", "SubprocessEngine", "SharedEngine", "make_engine"]

# ----------------------------------------------------------------------------------------------
# The interface


class Engine(Protocol):
    """Runs a complete deck and returns plain data."""

    def run(self, deck: str, *, need: Sequence[str] = (), points: int | None = None,
            allow_fallback: bool = False, name: str = "deck") -> SimResult: ...

    def run_many(self, decks: Sequence[str], *, need: Sequence[str] = (),
                 points: Sequence[int | None] | None = None, allow_fallback: bool = False,
                 progress: bool = False) -> list[SimResult]: ...

    @property
    def version(self) -> int: ...


# ----------------------------------------------------------------------------------------------
# ngspice -b in subprocesses


@lru_cache(maxsize=None)
def ngspice_version(executable: str = "ngspice") -> int:
    """Major version of the ngspice executable; raises NgspiceNotFound if absent or too old."""
    path = shutil.which(executable)
    if path is None:
        raise NgspiceNotFound(
            f"no {executable!r} on PATH: install ngspice >= {NGSPICE_MIN_VERSION} with KLU "
            "(Debian 12: apt-get install -t bookworm-backports ngspice libngspice0, "
            "or run scripts/setup.sh)")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    m = re.search(r"ngspice-(\d+)", out.stdout + out.stderr)
    if not m:
        raise NgspiceNotFound(f"could not read the version of {path}", log=out.stdout + out.stderr)
    version = int(m.group(1))
    if version < NGSPICE_MIN_VERSION:
        raise NgspiceNotFound(
            f"{path} is ngspice {version}; xbar-cosim needs >= {NGSPICE_MIN_VERSION} with KLU "
            "(older ones lack KLU and are 10-100x slower on crossbars)")
    return version


def default_workers() -> int:
    """One worker per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class SubprocessEngine:
    """Runs each deck as ``ngspice -b`` in its own process.

    Parameters
    ----------
    workers : int, optional
        Processes that ``run_many`` keeps busy at once (default: one per core).
    timeout : float
        Wall-time limit per deck [s]; past it the process is killed (NgspiceTimeout).
    max_raw_bytes : int
        Cap on the raw file [bytes], so a runaway transient cannot fill the disk.
    keep_files : bool
        Keep every deck, log and raw file (in ``workdir``); failing decks are always kept.
    workdir : path, optional
        Where decks are written (default: a temporary folder per run).
    """

    def __init__(self, *, workers: int | None = None, timeout: float = 600.0,
                 max_raw_bytes: int = 2 << 30, keep_files: bool = False,
                 workdir: str | Path | None = None, executable: str = "ngspice"):
        self.workers = workers or default_workers()
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.timeout = float(timeout)
        self.max_raw_bytes = int(max_raw_bytes)
        self.keep_files = keep_files
        self.workdir = Path(workdir) if workdir is not None else None
        self.executable = executable

    @property
    def version(self) -> int:
        return ngspice_version(self.executable)

    def _folder(self, name: str) -> Path:
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        return Path(tempfile.mkdtemp(prefix=f"xbar-{name}-"))

    def run(self, deck: str, *, need: Sequence[str] = (), points: int | None = None,
            allow_fallback: bool = False, name: str = "deck") -> SimResult:
        version = self.version
        folder = self._folder(name)
        deck_path = folder / f"{name}.cir"
        raw_path = folder / f"{name}.raw"
        deck_path.write_text(deck)
        cap = self.max_raw_bytes

        def limit_file_size() -> None:  # runs in the child before exec
            import resource
            resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))

        t0 = time.perf_counter()
        ok = False
        try:
            try:
                proc = subprocess.run(
                    [self.executable, "-b", "-r", str(raw_path), str(deck_path)],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    timeout=self.timeout, preexec_fn=limit_file_size, cwd=folder)
            except subprocess.TimeoutExpired as exc:
                log = (exc.stdout or b"").decode("utf-8", "replace")
                raise NgspiceTimeout(f"ngspice ran longer than {self.timeout:g} s and was stopped",
                                     log=log, deck_path=deck_path) from None
            log = proc.stdout.decode("utf-8", "replace")
            if proc.returncode < 0:
                sig = signal.Signals(-proc.returncode).name
                if sig == "SIGXFSZ":
                    raise NgspiceTimeout(
                        f"the raw file passed {cap} bytes and ngspice was stopped (runaway analysis?)",
                        log=log, deck_path=deck_path)
                raise NgspiceCrash(f"ngspice died with {sig}", log=log, deck_path=deck_path)
            warnings = check_log(log, allow_fallback=allow_fallback, deck_path=deck_path)
            if proc.returncode != 0:
                raise NgspiceError(f"ngspice exited with status {proc.returncode}",
                                   log=log, deck_path=deck_path)
            if not raw_path.exists():
                raise MissingVectorError("ngspice wrote no raw file", log=log, deck_path=deck_path)
            plots = read_raw(raw_path)
            check_vectors(plots, need, points, log, deck_path)
            ok = True
            return SimResult(plots, log, version, time.perf_counter() - t0, warnings,
                             deck_path if self.keep_files else None)
        finally:
            if not self.keep_files:
                raw_path.unlink(missing_ok=True)   # a failing deck and its log stay for inspection
                if ok:
                    shutil.rmtree(folder, ignore_errors=True)

    def run_many(self, decks: Sequence[str], *, need: Sequence[str] = (),
                 points: Sequence[int | None] | None = None, allow_fallback: bool = False,
                 progress: bool = False, name: str = "deck") -> list[SimResult]:
        """Run independent decks, ``workers`` at a time; results in the order of ``decks``.

        If a deck fails, the others still finish; a :class:`BatchError` then carries every
        result that succeeded (None where a deck failed) so nothing computed is lost.
        """
        pts = list(points) if points is not None else [None] * len(decks)
        results: list[SimResult | None] = [None] * len(decks)
        errors: list[tuple[int, NgspiceError]] = []
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(decks), desc="ngspice", unit="deck")

        def one(i: int) -> None:
            try:
                results[i] = self.run(decks[i], need=need, points=pts[i],
                                      allow_fallback=allow_fallback, name=f"{name}{i}")
            except NgspiceError as exc:
                errors.append((i, exc))
            finally:
                if bar is not None:
                    bar.update(1)

        if self.workers == 1 or len(decks) <= 1:
            for i in range(len(decks)):
                one(i)
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(decks))) as pool:
                list(pool.map(one, range(len(decks))))
        if bar is not None:
            bar.close()
        if errors:
            i, exc = min(errors, key=lambda e: e[0])
            raise BatchError(i, exc, results)
        return results  # type: ignore[return-value]


def make_engine(kind: str = "subprocess", **kwargs) -> Engine:
    """``"subprocess"`` (default) or ``"shared"`` (:class:`cosim.sim.shared.SharedEngine`)."""
    if kind == "subprocess":
        return SubprocessEngine(**kwargs)
    if kind == "shared":
        return SharedEngine(**kwargs)
    raise ValueError(f"unknown engine {kind!r}; choose 'subprocess' or 'shared'")

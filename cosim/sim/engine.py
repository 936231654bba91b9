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

import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from functools import cache
from pathlib import Path
from typing import Protocol
from collections.abc import Sequence

from cosim.sim.errors import (
    NGSPICE_MIN_VERSION, BatchError, MissingVectorError, NgspiceCrash, NgspiceError, NgspiceNotFound, NgspiceTimeout,
)
from cosim.sim.files import keep_scratch, prune_scratch, scratch_dir
from cosim.sim.processes import cap_file_size, kill_session, pdeathsig_prefix
from cosim.sim.results import SimResult, check_log, check_vectors, includes_files, read_raw
from cosim.sim.shared import SharedEngine
from models.errors import ParameterError

__all__ = ["Engine", "ngspice_version", "default_workers", "SubprocessEngine", "SharedEngine", "make_engine"]

#: How often [s] the main thread wakes while worker threads run decks, so that signals are handled.
SIGNAL_POLL_S = 0.1

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


@cache
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
        Where decks are written (default: a scratch folder under the per-user cache,
        :func:`cosim.sim.files.scratch_dir`).

    Every ngspice runs in a session of its own, with a parent-death signal: it dies with the
    thread that started it (a SIGKILL of this process included). An interrupt (SIGINT,
    SIGTERM, any exception) while decks run kills them at once and removes their folders.
    """

    def __init__(self, *, workers: int | None = None, timeout: float = 600.0,
                 max_raw_bytes: int = 2 << 30, keep_files: bool = False,
                 workdir: str | Path | None = None, executable: str = "ngspice"):
        self.workers = default_workers() if workers is None else workers
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ParameterError(f"workers must be an integer >= 1, got {workers!r}")
        self.timeout = float(timeout)
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ParameterError(f"timeout must be > 0 s, got {timeout!r}")
        self.max_raw_bytes = int(max_raw_bytes)
        self.keep_files = keep_files
        self.workdir = Path(workdir).resolve() if workdir is not None else None   # ngspice runs in the deck's folder
        self.executable = executable
        self._live: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._pruned = False
        self._stopping = False      # set by kill_all: the decks it killed are not failures to keep

    @property
    def version(self) -> int:
        return ngspice_version(self.executable)

    def _folder(self, name: str) -> Path:
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        if not self._pruned:          # once per engine: the folders of runs that are gone
            self._pruned = True
            prune_scratch()
        return scratch_dir(name)

    def kill_all(self) -> None:
        """Kill every ngspice this engine is running (their callers then raise)."""
        with self._lock:
            self._stopping = True
            live = list(self._live)
        for proc in live:
            kill_session(proc)

    def _spawn(self, argv: list[str], folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen([*pdeathsig_prefix(), *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=folder, start_new_session=True)
        cap_file_size(proc.pid, self.max_raw_bytes)
        with self._lock:
            self._live.add(proc)
            stopping = self._stopping
        if stopping:            # kill_all ran while this one was starting
            kill_session(proc)
        return proc

    def run(self, deck: str, *, need: Sequence[str] = (), points: int | None = None,
            allow_fallback: bool = False, name: str = "deck") -> SimResult:
        self._stopping = False
        return self._run_one(deck, need, points, allow_fallback, name)

    def _run_one(self, deck: str, need: Sequence[str], points: int | None, allow_fallback: bool,
                 name: str) -> SimResult:
        version = self.version
        folder = self._folder(name)
        deck_path = folder / f"{name}.cir"
        raw_path = folder / f"{name}.raw"
        deck_path.write_text(deck)
        t0 = time.perf_counter()
        keep = False        # a failing deck and its log stay for inspection; an interrupted one goes
        try:
            log, code = self._execute([self.executable, "-b", "-r", str(raw_path), str(deck_path)], folder, deck_path)
            warnings = self._judge(log, code, allow_fallback, deck_path, raw_path, quote=not includes_files(deck))
            plots = read_raw(raw_path)
            check_vectors(plots, need, points, log, deck_path, quote=not includes_files(deck))
            keep = self.keep_files
            return SimResult(plots, log, version, time.perf_counter() - t0, warnings,
                             deck_path if self.keep_files else None)
        except NgspiceError as exc:
            keep = not self._stopping
            if keep:
                (folder / f"{name}.log").write_text(exc.log)
            raise
        finally:
            if not self.keep_files:
                raw_path.unlink(missing_ok=True)
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
            elif self.workdir is None:
                keep_scratch(folder, "failing deck" if not self.keep_files else "keep_files")

    def _execute(self, argv: list[str], folder: Path, deck_path: Path) -> tuple[str, int]:
        """Run ngspice to its end (or the time limit); kill it on any interrupt."""
        proc = self._spawn(argv, folder)
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            kill_session(proc)
            out, _ = proc.communicate()
            raise NgspiceTimeout(f"ngspice ran longer than {self.timeout:g} s and was stopped",
                                 log=out.decode("utf-8", "replace"), deck_path=deck_path) from None
        except BaseException:
            kill_session(proc)
            raise
        finally:
            with self._lock:
                self._live.discard(proc)
        return out.decode("utf-8", "replace"), proc.returncode

    def _judge(self, log: str, code: int, allow_fallback: bool, deck_path: Path, raw_path: Path,
               quote: bool) -> list[str]:
        if code < 0:
            sig = signal.Signals(-code).name
            if sig == "SIGXFSZ":
                raise NgspiceTimeout(f"the raw file passed {self.max_raw_bytes} bytes and ngspice was stopped "
                                     "(runaway analysis?)", log=log, deck_path=deck_path)
            raise NgspiceCrash(f"ngspice died with {sig}", log=log, deck_path=deck_path)
        warnings = check_log(log, allow_fallback=allow_fallback, deck_path=deck_path, quote=quote)
        if code != 0:
            raise NgspiceError(f"ngspice exited with status {code}", log=log, deck_path=deck_path, quote=quote)
        if not raw_path.exists():
            raise MissingVectorError("ngspice wrote no raw file", log=log, deck_path=deck_path, quote=quote)
        return warnings

    def run_many(self, decks: Sequence[str], *, need: Sequence[str] = (),
                 points: Sequence[int | None] | None = None, allow_fallback: bool = False,
                 progress: bool = False, name: str = "deck") -> list[SimResult]:
        """Run independent decks, ``workers`` at a time; results in the order of ``decks``.

        If a deck fails, the others still finish; a :class:`BatchError` then carries every
        result that succeeded (None where a deck failed) so nothing computed is lost. An
        interrupt kills every deck still running.
        """
        pts = list(points) if points is not None else [None] * len(decks)
        self._stopping = False
        results: list[SimResult | None] = [None] * len(decks)
        errors: list[tuple[int, NgspiceError]] = []
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(decks), desc="ngspice", unit="deck")

        def one(i: int) -> None:
            if self._stopping:          # interrupted: start nothing more
                return
            try:
                results[i] = self._run_one(decks[i], need, pts[i], allow_fallback, f"{name}{i}")
            except NgspiceError as exc:
                errors.append((i, exc))
            finally:
                if bar is not None:
                    bar.update(1)

        try:
            if self.workers == 1 or len(decks) <= 1:
                for i in range(len(decks)):
                    one(i)
            else:
                self._run_pool(one, len(decks))
        finally:
            if bar is not None:
                bar.close()
        if errors:
            i, exc = min(errors, key=lambda e: e[0])
            raise BatchError(i, exc, results)
        return results  # type: ignore[return-value]

    def _run_pool(self, one, n: int) -> None:
        """``one(i)`` for i < n on ``workers`` threads. On any interrupt (an exception in the
        caller's thread, SIGINT, SIGTERM) every running ngspice is killed at once and nothing
        more starts; the threads are joined before the interrupt goes on."""
        pool = ThreadPoolExecutor(max_workers=min(self.workers, n))
        try:
            pending = {pool.submit(one, i) for i in range(n)}
            while pending:
                # a timed wait: a SIGINT / SIGTERM the kernel hands to a worker thread only runs its
                # handler when the main thread next runs Python, which an untimed wait would delay
                # until the deck in flight finished
                done, pending = wait(pending, timeout=SIGNAL_POLL_S, return_when=FIRST_EXCEPTION)
                for f in done:
                    f.result()
        except BaseException:
            self.kill_all()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def make_engine(kind: str = "subprocess", **kwargs) -> Engine:
    """``"subprocess"`` (default) or ``"shared"`` (:class:`cosim.sim.shared.SharedEngine`)."""
    if kind == "subprocess":
        return SubprocessEngine(**kwargs)
    if kind == "shared":
        return SharedEngine(**kwargs)
    raise ValueError(f"unknown engine {kind!r}; choose 'subprocess' or 'shared'")

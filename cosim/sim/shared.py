"""ngspice's shared library through PySpice, isolated in a child process.

Layer: cosim.sim. :class:`SharedEngine` satisfies the :class:`cosim.sim.engine.Engine`
interface. PySpice's shared library is process-global, and after ``quit`` or a fatal error
ngspice segfaults its host: the library lives in a child process that talks to this one over a
socket pair, so a crash costs the child, not the user's process, and the next call starts a new
child. ``ngSpice_Command`` silently drops what lies past ~1,023 characters: longer commands are
refused.
"""

from __future__ import annotations

import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Sequence

import numpy as np

from cosim.sim.errors import (
    NGSPICE_MIN_VERSION, BatchError, NgspiceCrash, NgspiceError, NgspiceNotFound, NgspiceParseError, NgspiceTimeout,
)
from cosim.sim.processes import die_with_parent
from cosim.sim.results import AnalysisResult, SimResult, check_log, check_vectors, includes_files
from models.errors import ParameterError

__all__ = ["SharedEngine"]


# ----------------------------------------------------------------------------------------------
# The shared library, isolated in a child process


def _library_path() -> str:
    env = os.environ.get("NGSPICE_LIBRARY_PATH")
    if env:
        return env
    import ctypes.util
    found = ctypes.util.find_library("ngspice")
    if found:
        return found
    for cand in ("/usr/lib/x86_64-linux-gnu/libngspice.so.0", "/usr/lib/aarch64-linux-gnu/libngspice.so.0",
                 "/usr/lib/libngspice.so.0", "/usr/local/lib/libngspice.so"):
        if Path(cand).exists():
            return cand
    raise NgspiceNotFound("no libngspice shared library found (Debian: apt-get install libngspice0); "
                          "set NGSPICE_LIBRARY_PATH to its path")


_MAX_COMMAND = 1000  # ngSpice_Command silently drops what lies past ~1,023 characters


def _shared_worker(conn, library: str) -> None:  # pragma: no cover - runs in the child
    """Child-process loop that owns the ngspice shared library."""
    import logging
    logging.getLogger("PySpice").setLevel(logging.CRITICAL)
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared, ffi

    class Instance(NgSpiceShared):
        LIBRARY_PATH = library
        log: list[str] = []

        def send_char(self, message, ngspice_id):
            prefix, _, content = message.partition(" ")
            self.log.append(content if prefix in ("stdout", "stderr") else message)
            return 0

    ng = Instance(ngspice_id=0, send_data=False)
    lib = ng._ngspice_shared

    def command(text: str) -> None:
        if len(text) > _MAX_COMMAND:
            raise ValueError(f"ngspice command longer than {_MAX_COMMAND} characters")
        lib.ngSpice_Command(text.encode("ascii"))

    def read_plot(names: Sequence[str]) -> list[tuple[str, dict]]:
        plot = ffi.string(lib.ngSpice_CurPlot()).decode()
        if not names:
            allv = lib.ngSpice_AllVecs(plot.encode())
            names, i = [], 0
            while allv[i] != ffi.NULL:
                names.append(ffi.string(allv[i]).decode())
                i += 1
        vecs = {}
        for nm in names:
            info = lib.ngGet_Vec_Info(f"{plot}.{nm}".encode())
            if info == ffi.NULL:
                continue
            n = info.v_length
            if info.v_compdata != ffi.NULL:
                buf = np.frombuffer(ffi.buffer(info.v_compdata, n * 16), dtype="<f8").copy()
                vecs[nm.lower()] = buf[0::2] + 1j * buf[1::2]
            else:
                vecs[nm.lower()] = np.frombuffer(ffi.buffer(info.v_realdata, n * 8), dtype="<f8").copy()
        return [(plot, vecs)]

    command("version -f")
    m = re.search(r"ngspice-(\d+)", "\n".join(ng.log))
    version = int(m.group(1)) if m else 0
    conn.send(("ready", version))
    while True:
        try:
            op, payload = conn.recv()
        except EOFError:
            return
        ng.log.clear()
        try:
            if op == "load":
                command("destroy all")
                if payload.get("replace"):
                    command("remove circuit")
                lines = [ln for ln in payload["deck"].splitlines() if ln.strip()] + [""]
                keep = [ffi.new("char[]", ln.encode()) for ln in lines] + [ffi.NULL]
                lib.ngSpice_Circ(ffi.new("char *[]", keep))
                conn.send(("ok", "\n".join(ng.log)))
            elif op == "run":
                for cmd in payload["commands"]:
                    command(cmd)
                before = ffi.string(lib.ngSpice_CurPlot()).decode()
                command("run")
                after = ffi.string(lib.ngSpice_CurPlot()).decode()
                plots = read_plot(payload["need"]) if after != before else []
                command("destroy all")
                conn.send(("ok", ("\n".join(ng.log), plots)))
            else:
                conn.send(("error", f"unknown op {op}"))
        except Exception as exc:  # report, keep serving
            conn.send(("error", f"{type(exc).__name__}: {exc}\n" + "\n".join(ng.log)))


def _shared_main(fd: int, library: str, parent_pid: int, max_memory: int) -> None:  # pragma: no cover - child
    """The worker's entry: its memory cap and parent-death signal first, then the loop."""
    from multiprocessing.connection import Connection
    resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))
    die_with_parent(parent_pid)
    _shared_worker(Connection(fd), library)


class SharedEngine:
    """ngspice's shared library (through PySpice) in an isolated child process.

    Use it for many small re-runs of one circuit: ``load`` once, then ``rerun`` with ``alter``
    commands, which skips parsing. ``run(deck)`` loads and runs in one call, so it satisfies
    the same :class:`Engine` interface as :class:`SubprocessEngine`. If the child dies (ngspice
    segfaults after a fatal error) the call raises :class:`NgspiceCrash` and the next call
    starts a new child.
    """

    def __init__(self, *, timeout: float = 600.0, workers: int = 1, max_memory_bytes: int = 8 << 30):
        self.timeout = float(timeout)
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ParameterError(f"timeout must be > 0 s, got {timeout!r}")
        self.workers = 1  # one library instance per process; run_many is sequential
        #: Address-space cap of the worker [bytes]: a runaway analysis (say a long transient that
        #: saves every vector) kills the worker instead of the machine.
        self.max_memory_bytes = int(max_memory_bytes)
        self._proc = None
        self._conn = None
        self._version = 0
        self._loaded: str | None = None
        self._quote = True          # errors may quote the log (not for a deck that includes files)

    # -- child management ------------------------------------------------------------------
    def _start(self) -> None:
        # A plain subprocess (not multiprocessing): works from scripts without a main guard,
        # and whatever ngspice prints on its own stdout cannot corrupt the message channel,
        # which is a socket pair handed to the child by descriptor.
        import socket
        from multiprocessing.connection import Connection
        ours, theirs = socket.socketpair()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from cosim.sim.shared import _shared_main; "
             "_shared_main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))",
             str(theirs.fileno()), _library_path(), str(os.getpid()), str(self.max_memory_bytes)],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir(), start_new_session=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
                str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")]))})
        theirs.close()
        self._conn = Connection(ours.detach())
        status, version = self._recv("starting the ngspice shared library", timeout=60)
        self._version = int(version)
        if self._version < NGSPICE_MIN_VERSION:
            self.close()
            raise NgspiceNotFound(f"libngspice is version {self._version}; need >= {NGSPICE_MIN_VERSION}")

    def _recv(self, what: str, timeout: float | None = None, deck_path: Path | None = None):
        assert self._conn is not None
        if not self._conn.poll(self.timeout if timeout is None else timeout):
            self.close()
            raise NgspiceTimeout(f"{what}: no answer from ngspice within {self.timeout:g} s",
                                 deck_path=deck_path)
        try:
            return self._conn.recv()
        except (EOFError, ConnectionResetError):
            code = self._proc.wait(timeout=5) if self._proc is not None else None
            self.close()
            raise NgspiceCrash(f"{what}: the ngspice shared-library worker died (exit code {code}; a worker past "
                               f"its memory cap of {self.max_memory_bytes} bytes dies too); it restarts on the "
                               "next call", deck_path=deck_path) from None

    def _call(self, op: str, payload: dict, what: str):
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            had_circuit = self._loaded is not None
            self.close()
            if had_circuit:
                raise NgspiceCrash(f"{what}: the ngspice shared-library worker died (exit code {code}) "
                                   "and its circuit with it; load the deck again")
        if self._proc is None:
            self._start()
        try:
            self._conn.send((op, payload))
        except (BrokenPipeError, OSError):
            self.close()
            raise NgspiceCrash(f"{what}: the ngspice worker is gone") from None
        try:
            status, value = self._recv(what)
        except BaseException:
            self.close()    # an interrupt while ngspice works: stop it with the call
            raise
        if status == "error":
            self.close()  # the library may be in a bad state: start afresh next time
            raise NgspiceError(f"{what} failed in the shared library", log=str(value), quote=self._quote)
        return value

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait(timeout=5)
        self._proc = self._conn = None
        self._loaded = None

    def __enter__(self) -> "SharedEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover
        try:
            self.close()
        except Exception:
            pass

    @property
    def version(self) -> int:
        if self._proc is None:
            self._start()
        return self._version

    # -- running ---------------------------------------------------------------------------
    def load(self, deck: str) -> None:
        """Parse ``deck`` into the library (replacing the previous circuit). A deck without a
        title, an element or its ``.end`` line is refused before it reaches the library (which
        would otherwise keep running the previous circuit)."""
        _check_deck(deck)
        self._quote = not includes_files(deck)
        log = self._call("load", {"deck": deck, "replace": self._loaded is not None}, "loading the deck")
        try:
            check_log(log, quote=self._quote)
        except NgspiceError:
            self.close()  # a failed parse can leave the library unusable: start afresh next time
            raise
        self._loaded = deck

    def rerun(self, commands: Sequence[str] = (), *, need: Sequence[str] = (),
              points: int | None = None, allow_fallback: bool = False) -> SimResult:
        """Send ``commands`` (e.g. ``alter`` lines, each under 1,000 characters), then ``run``."""
        if self._loaded is None:
            raise NgspiceError("rerun() before load(): no circuit in the shared library")
        if any(c.strip().lower().startswith(("quit", "exit", "bg_")) for c in commands):
            raise ValueError("quit, exit and background commands would leave the ngspice library unusable")
        too_long = [c for c in commands if len(c) > _MAX_COMMAND]
        if too_long:
            raise ValueError(f"command of {len(too_long[0])} characters: ngspice would silently "
                             f"truncate it past ~1,023; split it (first: {too_long[0][:60]!r}...)")
        t0 = time.perf_counter()
        log, raw_plots = self._call("run", {"commands": list(commands), "need": list(need)}, "running")
        plots = [AnalysisResult(name, vecs) for name, vecs in raw_plots]
        try:
            warnings = check_log(log, allow_fallback=allow_fallback, quote=self._quote)
            check_vectors(plots, need, points, log, None, quote=self._quote)
        except NgspiceError:
            self.close()
            raise
        return SimResult(plots, log, self._version, time.perf_counter() - t0, warnings)

    def run(self, deck: str, *, need: Sequence[str] = (), points: int | None = None,
            allow_fallback: bool = False, name: str = "deck") -> SimResult:
        t0 = time.perf_counter()
        self.load(deck)
        res = self.rerun(need=need or _saved_vectors(deck), points=points, allow_fallback=allow_fallback)
        res.elapsed_s = time.perf_counter() - t0
        return res

    def run_many(self, decks: Sequence[str], *, need: Sequence[str] = (),
                 points: Sequence[int | None] | None = None, allow_fallback: bool = False,
                 progress: bool = False, name: str = "deck") -> list[SimResult]:
        pts = list(points) if points is not None else [None] * len(decks)
        results: list[SimResult | None] = [None] * len(decks)
        for i, deck in enumerate(decks):
            try:
                results[i] = self.run(deck, need=need, points=pts[i], allow_fallback=allow_fallback)
            except NgspiceError as exc:
                raise BatchError(i, exc, results) from exc
        return results  # type: ignore[return-value]


def _check_deck(deck: str) -> None:
    lines = [ln.strip() for ln in str(deck).splitlines() if ln.strip() and not ln.lstrip().startswith("*")]
    body = [ln for ln in lines[1:] if not ln.startswith(".")] if lines else []
    if not lines or lines[-1].lower() != ".end" or not body:
        raise NgspiceParseError("the deck is not a complete circuit: it needs a title line, at least one element "
                                "and a final .end line (the shared library would keep running the previous "
                                "circuit)")


def _saved_vectors(deck: str) -> list[str]:
    """The vectors named on ``.save`` lines (the shared library reads only those)."""
    out: list[str] = []
    for line in deck.splitlines():
        if line.lower().startswith(".save"):
            out.extend(tok for tok in line.split()[1:] if tok.lower() not in ("all", "allv", "alli"))
    return out



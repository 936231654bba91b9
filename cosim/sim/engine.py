"""Run ngspice decks and return plain data: the engine behind one small interface.

Layer: cosim. Two implementations of :class:`Engine`:

``SubprocessEngine``
    ``ngspice -b -r out.raw deck.cir`` in a fresh process per deck, results read from the
    binary raw file. Isolation, timeouts, a raw-file size cap, and ``run_many`` that keeps one
    process per core busy. The default.
``SharedEngine``
    ngspice's shared library through PySpice, held in a child process so that an ngspice crash
    (after ``quit`` or a fatal error the library segfaults its host) cannot take the user's
    process down. Load a deck once, then ``alter`` values and re-solve without re-parsing.

Both return :class:`SimResult` (numpy arrays keyed by lower-case vector name, the log, the
ngspice version). ngspice's stderr is log text, not an error signal: a run fails on a non-zero
exit, on an error / "ignored" / singular / aborted line in its log, on a convergence fallback
the caller did not allow, or on a missing vector or too few points; each is a typed
:mod:`cosim.sim.errors` exception carrying the log tail and the path of the deck.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from cosim.sim.errors import (
    MissingVectorError, NgspiceConvergenceError, NgspiceCrash, NgspiceError, NgspiceNotFound,
    NgspiceParseError, NgspiceSingularError, NgspiceTimeout,
)

NGSPICE_MIN_VERSION = 42


# ----------------------------------------------------------------------------------------------
# Results and the raw file


@dataclass(frozen=True)
class Plot:
    """One analysis of a run: its ngspice plot name and its vectors."""

    name: str
    vectors: dict[str, np.ndarray]


@dataclass
class SimResult:
    """What a run gives back: plain numpy data and the evidence behind it.

    Attributes
    ----------
    plots : list of Plot
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

    plots: list[Plot]
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


def read_raw(path: str | Path) -> list[Plot]:
    """Parse an ngspice binary (or ASCII) raw file into plots of numpy arrays.

    Complex plots give complex arrays. The independent variable (``time``, ``v(v-sweep)``,
    ``frequency``) is a vector like the others.
    """
    data = Path(path).read_bytes()
    plots: list[Plot] = []
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
        plots.append(Plot(header.get("plotname", ""), vecs))
        while pos < len(data) and data[pos:pos + 1] in (b"\n", b"\r"):
            pos += 1
    return plots


# ----------------------------------------------------------------------------------------------
# Reading ngspice's log


_FATAL = [
    (re.compile(r"singular matrix", re.I), NgspiceSingularError, "singular matrix"),
    (re.compile(r"\bignored\b", re.I), NgspiceParseError, "ngspice ignored part of the deck"),
    (re.compile(r"can't find model|could not find a valid modelname|unknown (sub)?circuit|"
                r"unknown parameter|undefined (sub)?circuit|no such (vector|device)|"
                r"circuit not parsed|syntax error", re.I),
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


def check_log(log: str, *, allow_fallback: bool = False, deck_path: Path | None = None) -> list[str]:
    """Raise the typed error that the first fatal line of ``log`` calls for.

    Returns the non-fatal notes (warnings, recovered gmin stepping). A convergence fallback
    (source stepping, ngspice's pseudo-transient operating point) fails unless
    ``allow_fallback``: those "succeed" with exit 0 on circuits whose answer may be wrong.
    """
    lines = [ln for ln in log.splitlines() if not _BENIGN.search(ln)]
    text = "\n".join(lines)
    for pattern, exc, what in _FATAL:
        m = pattern.search(text)
        if m:
            line = text[text.rfind("\n", 0, m.start()) + 1: text.find("\n", m.end()) % (len(text) + 1)]
            raise exc(f"{what}: {line.strip()!r}", log=log, deck_path=deck_path)
    if not allow_fallback:
        m = _FALLBACK.search(text)
        if m:
            raise NgspiceConvergenceError(
                "the operating point needed a fallback (source stepping or pseudo-transient); "
                "pass allow_fallback=True to accept it", log=log, deck_path=deck_path)
    return [ln.strip() for ln in lines if _NOTE.search(ln)]


def _check_vectors(plots: list[Plot], need: Sequence[str], points: int | None, log: str,
                   deck_path: Path | None) -> None:
    if not plots:
        raise MissingVectorError("ngspice wrote no results", log=log, deck_path=deck_path)
    vecs = plots[-1].vectors
    missing = [v for v in need if v.lower() not in vecs]
    if missing:
        raise MissingVectorError(f"vectors missing from the result: {', '.join(missing)}",
                                 log=log, deck_path=deck_path)
    n = min((len(v) for v in vecs.values()), default=0)
    if n == 0 or (points is not None and n < points):
        raise MissingVectorError(f"ngspice returned {n} points, expected {points or 'at least 1'}",
                                 log=log, deck_path=deck_path)


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


class BatchError(NgspiceError):
    """One deck of a ``run_many`` failed; ``results`` keeps every deck that did not."""

    def __init__(self, index: int, cause: NgspiceError, results: list[SimResult | None]):
        super().__init__(f"deck {index} of {len(results)} failed: {cause.reason}",
                         log=cause.log, deck_path=cause.deck_path)
        self.index = index
        self.cause = cause
        self.results = results


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
                import signal
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
            _check_vectors(plots, need, points, log, deck_path)
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


def _shared_main(fd: int, library: str) -> None:  # pragma: no cover - runs in the child
    from multiprocessing.connection import Connection
    _shared_worker(Connection(fd), library)


class SharedEngine:
    """ngspice's shared library (through PySpice) in an isolated child process.

    Use it for many small re-runs of one circuit: ``load`` once, then ``rerun`` with ``alter``
    commands, which skips parsing. ``run(deck)`` loads and runs in one call, so it satisfies
    the same :class:`Engine` interface as :class:`SubprocessEngine`. If the child dies (ngspice
    segfaults after a fatal error) the call raises :class:`NgspiceCrash` and the next call
    starts a new child.
    """

    def __init__(self, *, timeout: float = 600.0, workers: int = 1):
        self.timeout = float(timeout)
        self.workers = 1  # one library instance per process; run_many is sequential
        self._proc = None
        self._conn = None
        self._version = 0
        self._loaded: str | None = None

    # -- child management ------------------------------------------------------------------
    def _start(self) -> None:
        # A plain subprocess (not multiprocessing): works from scripts without a main guard,
        # and whatever ngspice prints on its own stdout cannot corrupt the message channel,
        # which is a socket pair handed to the child by descriptor.
        import socket
        import sys
        from multiprocessing.connection import Connection
        ours, theirs = socket.socketpair()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from cosim.sim.engine import _shared_main; "
             "_shared_main(int(sys.argv[1]), sys.argv[2])", str(theirs.fileno()), _library_path()],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir(),
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
            code = self._proc.poll() if self._proc is not None else None
            self.close()
            raise NgspiceCrash(f"{what}: the ngspice shared-library worker died (exit code {code}); "
                               "it restarts on the next call", deck_path=deck_path) from None

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
        status, value = self._recv(what)
        if status == "error":
            self.close()  # the library may be in a bad state: start afresh next time
            raise NgspiceError(f"{what} failed in the shared library", log=str(value))
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
        """Parse ``deck`` into the library (replacing the previous circuit)."""
        log = self._call("load", {"deck": deck, "replace": self._loaded is not None}, "loading the deck")
        try:
            check_log(log)
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
        plots = [Plot(name, vecs) for name, vecs in raw_plots]
        try:
            warnings = check_log(log, allow_fallback=allow_fallback)
            _check_vectors(plots, need, points, log, None)
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


def _saved_vectors(deck: str) -> list[str]:
    """The vectors named on ``.save`` lines (the shared library reads only those)."""
    out: list[str] = []
    for line in deck.splitlines():
        if line.lower().startswith(".save"):
            out.extend(tok for tok in line.split()[1:] if tok.lower() not in ("all", "allv", "alli"))
    return out


def make_engine(kind: str = "subprocess", **kwargs) -> Engine:
    """``"subprocess"`` (default) or ``"shared"``."""
    if kind == "subprocess":
        return SubprocessEngine(**kwargs)
    if kind == "shared":
        return SharedEngine(**kwargs)
    raise ValueError(f"unknown engine {kind!r}; choose 'subprocess' or 'shared'")

"""Files the toolkit writes: atomically, in folders one run holds at a time, temporaries under one
cache folder with a size cap.

Layer: cosim.sim. Every output goes through :func:`atomic_write` (or :func:`atomic_path` for a
writer that wants a path, such as ``np.save`` or ``savefig``): the data goes to a temporary file
in the same folder, is flushed to disk, and is renamed over the target only when complete, so a
run that fails while writing (a full disk, a kill) leaves the earlier file byte-identical.
:class:`RunLock` holds a run folder for one run at a time (an advisory ``flock`` that the kernel
releases when its holder dies, so a stale lock is taken over). :func:`scratch_dir` makes a
temporary folder for one engine's decks under the per-user cache; :func:`prune_scratch` removes
the folders of runs that are gone (a killed run's at once, failing decks kept for a week or
until the cache passes its cap).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import fcntl
import io
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Iterator

from models.errors import XbarError

__all__ = ["RunFolderBusy", "atomic_write", "atomic_path", "atomic_json", "save_figure", "write_csv", "publish",
           "RunLock", "cache_dir", "scratch_dir", "keep_scratch", "prune_scratch", "SCRATCH_CAP_BYTES", "KEEP_MARK",
           "KEPT_MAX_AGE_S"]

#: Temporary deck folders of finished or dead runs are removed, oldest first, past this size.
SCRATCH_CAP_BYTES = 2 << 30


class RunFolderBusy(XbarError, RuntimeError):
    """Another live run holds the folder."""


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path in ``path``'s folder (same suffix, so writers that look at it behave),
    renamed to ``path`` when the block ends without an error and removed when it fails."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:     # on disk before the rename makes it the file
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp's 0600 is for the temporary, not the output
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def _read_umask() -> int:
    mask = os.umask(0o022)                   # read once, at import: os.umask is process-wide
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def publish(out_dir: str | Path, stem: str, text: str, data) -> Path:
    """Print ``text`` and write ``out_dir/stem.md`` (the text) and ``out_dir/stem.json``
    (``data``, JSON-able); returns the folder. For the thin entry points in ``scripts/``."""
    out = Path(out_dir)
    print(text)
    atomic_write(out / f"{stem}.md", text + "\n")
    atomic_write(out / f"{stem}.json", json.dumps(data, indent=2, default=_plain))
    return out


def _plain(obj):
    """numpy scalars and arrays as Python numbers and lists; anything else as its text."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


class RunLock:
    """Hold a run folder for this process: ``with RunLock(folder, "xbar train"): ...``.

    The lock is ``folder/.xbar.lock``, held with ``flock`` for as long as the run lasts; it
    records the holder (PID, host, start time, command). A second run on the folder gets a
    :class:`RunFolderBusy` that names the holder. The kernel releases the lock when its holder
    dies, however it dies, so the lock of a killed run is simply taken over.
    """

    NAME = ".xbar.lock"

    def __init__(self, folder: str | Path, command: str = ""):
        self.folder = Path(folder)
        self.command = command or " ".join(sys.argv)
        self._fh = None

    def __enter__(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fh = open(self.folder / self.NAME, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = _describe(fh.read())
            fh.close()
            raise RunFolderBusy(f"run folder {self.folder} is in use by another run ({holder}); wait for it to "
                                "finish or choose another --out folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                             "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _describe(text: str) -> str:
    try:
        d = json.loads(text)
        return f"PID {d['pid']} on {d['host']} since {d['started']}: {d['command']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def cache_dir() -> Path:
    """The per-user cache of xbar-cosim: ``$XDG_CACHE_HOME/xbar-cosim`` (``~/.cache/xbar-cosim``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xbar-cosim"


def scratch_dir(name: str) -> Path:
    """A new temporary folder for one engine's decks under ``cache_dir()/tmp``, named with this
    process's PID so that a later run can tell the folders of dead runs (a SIGKILL leaves them)."""
    root = cache_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-{os.getpid()}-", dir=root))


def keep_scratch(folder: str | Path, reason: str) -> None:
    """Mark a scratch folder as kept on purpose (a failing deck, ``keep_files``): pruning leaves
    it for :data:`KEPT_MAX_AGE_S` unless the cache passes its cap."""
    atomic_write(Path(folder) / KEEP_MARK, reason + "\n")


#: The marker of a scratch folder kept on purpose.
KEEP_MARK = ".keep"
#: Kept scratch folders (failing decks) older than this are removed [s].
KEPT_MAX_AGE_S = 7 * 24 * 3600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _scratch_entries(root: Path) -> list[tuple[float, Path, int, int, bool]]:
    """(mtime, folder, pid, bytes, kept) of every scratch folder."""
    entries = []
    for d in root.iterdir():
        try:
            pid = int(d.name.rsplit("-", 2)[-2])
            mtime = d.stat().st_mtime
            size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        except (ValueError, IndexError, OSError):
            continue
        entries.append((mtime, d, pid, size, (d / KEEP_MARK).exists()))
    return entries


def prune_scratch(cap_bytes: int = SCRATCH_CAP_BYTES) -> int:
    """Tidy the scratch area; returns how many folders went. Folders of live runs are never
    touched. Of runs that are gone: temporary folders (a killed run's decks) go at once; folders
    kept on purpose (failing decks) go after :data:`KEPT_MAX_AGE_S`, or oldest first while the
    area is over ``cap_bytes``."""
    root = cache_dir() / "tmp"
    if not root.is_dir():
        return 0
    entries = sorted(e for e in _scratch_entries(root) if not _pid_alive(e[2]))
    total = sum(e[3] for e in _scratch_entries(root))
    now = time.time()
    removed = 0
    for mtime, d, _pid, size, kept in entries:
        if kept and now - mtime < KEPT_MAX_AGE_S and total <= cap_bytes:
            continue
        shutil.rmtree(d, ignore_errors=True)
        total -= size
        removed += 1
    return removed


def atomic_json(path: str | Path, obj, **kw) -> Path:
    """Write ``obj`` as JSON (``json.dumps`` keywords ``kw``) to ``path`` atomically."""
    return atomic_write(path, json.dumps(obj, **kw) + "\n")


def save_figure(fig, path: str | Path, **kw) -> Path:
    """``fig.savefig(path)`` atomically (matplotlib picks the format from the suffix)."""
    p = Path(path)
    with atomic_path(p) as tmp:
        fig.savefig(tmp, format=p.suffix.lstrip(".") or "png", **kw)
    return p


def write_csv(path: str | Path, header: list, rows) -> Path:
    """A CSV file of ``header`` and ``rows``, written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return atomic_write(path, buf.getvalue())

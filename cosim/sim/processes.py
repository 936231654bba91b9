"""Child processes that cannot outlive their run: a parent-death signal, a session of their own,
and a kill that reaches the whole session.

Layer: cosim.sim. Nothing here runs Python between ``fork`` and ``exec`` (a ``preexec_fn``
can deadlock a parent that has threads, as the engines do): an ``ngspice -b`` gets its
parent-death signal from util-linux's ``setpriv --pdeathsig`` in front of it and its file-size
cap from ``prlimit`` once it runs; a Python worker sets both on itself when it starts.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import subprocess
from functools import lru_cache

__all__ = ["pdeathsig_prefix", "die_with_parent", "cap_file_size", "kill_session"]

_PR_SET_PDEATHSIG = 1


@lru_cache(maxsize=1)
def pdeathsig_prefix() -> tuple[str, ...]:
    """``("setpriv", "--pdeathsig", "KILL")`` where util-linux's setpriv has the option (every
    Debian has it): the command after it is killed when the thread that started it ends. Empty
    where it is missing; children then rely on being killed on interrupts alone."""
    path = shutil.which("setpriv")
    if path is None:
        return ()
    try:
        ok = subprocess.run([path, "--pdeathsig", "KILL", "true"], capture_output=True, timeout=10,
                            check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return (path, "--pdeathsig", "KILL") if ok else ()


def die_with_parent(parent_pid: int) -> None:
    """In a child process (its own code, after exec): be killed when the thread that started it
    ends; exit at once if that parent is already gone."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):   # pragma: no cover - not Linux
        return
    if os.getppid() != parent_pid:      # the parent died before the signal was armed
        os._exit(1)


def cap_file_size(pid: int, max_bytes: int) -> None:
    """Cap the size of any file process ``pid`` writes (``RLIMIT_FSIZE``): past it the kernel
    stops the process with SIGXFSZ."""
    try:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    except (ProcessLookupError, PermissionError):     # already finished
        pass


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL a child started with ``start_new_session`` and everything in its session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass

"""A stop between mini-batches: SIGINT or SIGTERM saves a checkpoint of the last whole mini-batch.

Layer: cosim.train. A run stopped in the middle of a mini-batch cannot save what it has: the
arrays are half updated. Periodic checkpoints bound the loss to ``checkpoint_seconds``; this
removes it. While :class:`StopBetweenBatches` is active, the first SIGINT or SIGTERM is noted
rather than acted on; the loop finishes its mini-batch, saves a checkpoint and then hands the
signal on to whoever handled it before (``xbar``'s handlers exit with 130 or 143; a library user's
Ctrl-C raises ``KeyboardInterrupt``; an unhandled SIGTERM ends the process). A mini-batch that
takes longer than ``grace`` seconds (ngspice at circuit level, a test-set read at an epoch's end)
is not waited for: the signal is handed on at once, as is a second one, and ngspice stops
promptly; the run then resumes from its last periodic checkpoint.

Signals belong to the main thread: elsewhere (a worker thread) this does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

#: Seconds a noted signal waits for its mini-batch to end.
GRACE_SECONDS = 3.0


class StopBetweenBatches:
    """``with StopBetweenBatches() as stop: ... if stop.claim(): save; stop.hand_on()``."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, grace: float | None = None):
        self.grace = GRACE_SECONDS if grace is None else grace
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._timer: threading.Timer | None = None

    def __enter__(self) -> StopBetweenBatches:
        if threading.current_thread() is not threading.main_thread():
            return self
        for s in self.SIGNALS:
            previous = signal.getsignal(s)
            if previous in (signal.SIG_IGN, None):     # ignored (or not set from Python): left as it is
                continue
            self._previous[s] = previous
            signal.signal(s, self._note)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def claim(self) -> bool:
        """Called at the end of a mini-batch: whether a signal is noted. If so, its grace timer
        stops (the mini-batch is whole; the checkpoint that follows is not cut short by it)."""
        if self.signum is not None and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return self.signum is not None

    def _note(self, signum: int, frame) -> None:
        if self.signum is not None:                    # a second signal: at once
            self.hand_on()
            return
        self.signum = signum
        print(f"{signal.Signals(signum).name}: stopping after this mini-batch, with a checkpoint "
              f"(at most {self.grace:g} s; send it again to stop at once)", file=sys.stderr, flush=True)
        self._timer = threading.Timer(self.grace, os.kill, (os.getpid(), signum))
        self._timer.daemon = True
        self._timer.start()

    def _restore(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous = {}

    def hand_on(self) -> None:
        """The noted signal to its previous handler (which usually raises), or its default action."""
        signum, self.signum = self.signum, None
        previous = self._previous.get(signum)
        self._restore()
        if callable(previous):
            previous(signum, None)
        else:
            signal.raise_signal(signum)

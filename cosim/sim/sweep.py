"""Sweeps of SPICE cases: one task per case, run serially or on a Dask cluster, resumable.

Layer: cosim.sim. A sweep is a list of *cases* (frozen dataclasses, one SPICE job each) and a *task*
(a module-level function ``task(case, rng) -> dict[str, ndarray]`` that builds the deck from
the case, runs ngspice and returns plain numpy data). :func:`run_sweep` runs the cases that are
not already in the results folder and writes each one there as soon as it finishes, so a sweep
that was stopped resumes where it was.

Guarantees
----------
- Same results whatever the number of workers: case ``k`` draws its random numbers from
  ``numpy.random.default_rng([seed, k])`` (:func:`case_rng`), never from shared state, and each
  task runs ngspice on its own (``SubprocessEngine(workers=1)``).
- One file pair per case, written by the client (the workers of a real cluster need not share
  its disk) through a temporary name and ``os.replace``: ``<key>.npz`` (the arrays) then
  ``<key>.json`` (the case, the status, the error if any, the wall time). The JSON is written
  last, so its presence means the case is finished.
- A case whose task raises an :class:`~models.errors.XbarError` (an ngspice failure, a bad
  parameter) is recorded with ``status: "error"`` and the error text; the other cases go on.
  On Dask any other exception of a task, or a worker that died (killed, out of memory, a lost
  node), is reported with ``status: "crashed"`` and not stored, so a resume runs the case
  again; in-process any other exception is a bug and stops the sweep (finished cases kept).
  Failed cases are not retried on resume unless ``retry_failed=True``.
- The key of a case is a hash of its JSON, the sweep seed and its index (:func:`case_key`):
  change a field, the seed or its place in the list and the case is a new one.

Where it runs
-------------
``workers=1`` and no scheduler: in this process, no Dask (cheap, for tests and small sweeps).
``workers=n > 1``: a ``dask.distributed.LocalCluster`` of n single-threaded worker processes.
``scheduler="tcp://host:8786"``: an existing cluster (the workers need xbar-cosim and ngspice).
Dask is imported only then.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
import traceback
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from cosim.sim.files import atomic_json, atomic_path
from models.errors import ParameterError, XbarError

Task = Callable[[Any, np.random.Generator], Mapping[str, np.ndarray]]


def case_key(case: Any, seed: int, index: int) -> str:
    """Stable key of case ``index`` of a sweep: a hash of its JSON (sorted keys), the sweep seed
    and the index (which seeds its random draws, so a case moved in the list is a new case)."""
    if not dataclasses.is_dataclass(case):
        raise ParameterError(f"a sweep case must be a dataclass, got {type(case).__name__}")
    text = json.dumps({"type": type(case).__name__, "case": dataclasses.asdict(case), "seed": int(seed),
                       "index": int(index)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def case_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of case ``index`` of a sweep seeded with ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


@dataclass(frozen=True)
class CaseResult:
    """One finished case as stored on disk."""

    key: str
    index: int
    case: dict
    status: str                 # "ok", "error" (the case failed; stored) or "crashed" (its worker died; not stored)
    elapsed_s: float
    arrays: dict = field(default_factory=dict)
    error: str = ""
    error_type: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class SweepSummary:
    """What :func:`run_sweep` did."""

    out_dir: Path
    results: list[CaseResult]   # in case order
    ran: int                    # cases executed by this call
    skipped: int                # cases found finished on disk
    wall_s: float
    workers: int
    backend: str                # "serial", "local-cluster" or the scheduler address
    startup_s: float = 0.0      # of wall_s: starting the cluster and connecting to it

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]


# ---------------------------------------------------------------------------------------------
# Storage


def _store(out_dir: Path, res: CaseResult) -> None:
    if res.arrays:
        with atomic_path(out_dir / f"{res.key}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **res.arrays)
    meta = {k: v for k, v in dataclasses.asdict(res).items() if k != "arrays"}
    meta["arrays"] = sorted(res.arrays)
    atomic_json(out_dir / f"{res.key}.json", meta, indent=1)


def load_case(out_dir: str | Path, key: str, *, arrays: bool = True) -> CaseResult | None:
    """A finished case from the results folder (None if it is not there). A record that cannot
    be read (cut short, damaged by hand, its arrays gone) is reported with a warning naming its
    files and treated as not there, so the sweep runs the case again."""
    out_dir = Path(out_dir)
    meta_path = out_dir / f"{key}.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        names = meta.pop("arrays", [])
        data: dict = {}
        if arrays and names:
            with np.load(out_dir / f"{key}.npz", allow_pickle=False) as z:
                data = {n: z[n] for n in names}
        return CaseResult(arrays=data, **meta)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f"sweep record {meta_path} (and {key}.npz) cannot be read ({type(exc).__name__}: "
                      f"{str(exc)[:120]}): the case runs again", RuntimeWarning, stacklevel=2)
        return None


# ---------------------------------------------------------------------------------------------
# Execution


def execute_case(task: Task, case: Any, seed: int, index: int, key: str) -> CaseResult:
    """Run one case (on a worker or in this process); failures become a recorded result."""
    t0 = time.perf_counter()
    try:
        out = task(case, case_rng(seed, index))
        arrays = {k: np.asarray(v) for k, v in out.items()}
        return CaseResult(key, index, dataclasses.asdict(case), "ok", time.perf_counter() - t0, arrays)
    except XbarError as exc:
        # keep the text, not the exception: it must cross process boundaries as plain data
        return CaseResult(key, index, dataclasses.asdict(case), "error", time.perf_counter() - t0,
                          error=str(exc)[-4000:], error_type=type(exc).__name__)


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="case", file=sys.stderr,
                disable=None if enabled else True, dynamic_ncols=True, mininterval=0.5)


def run_sweep(cases: Sequence[Any], task: Task, out_dir: str | Path, *, seed: int = 0, workers: int = 1,
              scheduler: str | None = None, retry_failed: bool = False, progress: bool = True,
              desc: str = "sweep", use_dask: bool | None = None) -> SweepSummary:
    """Run every case not yet finished in ``out_dir``; return all results in case order.

    Parameters
    ----------
    cases : sequence of frozen dataclasses
        Case ``k`` gets the generator ``case_rng(seed, k)``.
    task : callable
        Module-level ``task(case, rng) -> dict of arrays`` (pickled by reference for Dask).
    out_dir : path
        Results folder (created); one ``<key>.json`` + ``<key>.npz`` per finished case.
    seed : int
        Sweep seed.
    workers : int
        1: serial, in this process. n > 1: a local Dask cluster of n processes, 1 thread each
        (spawned: a script that calls this needs the ``if __name__ == "__main__":`` guard).
    scheduler : str, optional
        Address of a running Dask scheduler (overrides ``workers``).
    retry_failed : bool
        Run again the cases recorded as failed.
    progress : bool
        A tqdm bar on stderr (shown on a terminal only).
    use_dask : bool, optional
        Force Dask on (e.g. a one-worker LocalCluster, for benchmarks) or off; default: Dask
        when ``workers > 1`` or a scheduler is given.
    """
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ParameterError(f"workers must be a positive integer, got {workers!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    keys = [case_key(c, seed, k) for k, c in enumerate(cases)]
    if len(set(keys)) != len(keys):
        raise ParameterError("two cases of the sweep are identical (same key): make each case distinct")
    results: list[CaseResult | None] = [None] * len(cases)
    todo: list[int] = []
    for k, key in enumerate(keys):
        prev = load_case(out, key)
        if prev is not None and (prev.ok or not retry_failed):
            results[k] = prev
        else:
            todo.append(k)
    skipped = len(cases) - len(todo)
    bar = _progress(len(cases), skipped, progress, desc)

    def finish(res: CaseResult) -> None:
        if res.status != "crashed":   # a crashed worker is not the case's result: resume re-runs it
            _store(out, res)
        results[res.index] = res
        bar.update(1)

    backend = "serial" if todo else "none (all cases already done)"
    startup = 0.0
    try:
        if use_dask is None:
            use_dask = scheduler is not None or workers > 1
        if not use_dask:
            if scheduler is not None or workers > 1:
                raise ParameterError("use_dask=False runs in this process: give workers=1 and no scheduler")
            for k in todo:
                finish(execute_case(task, cases[k], seed, k, keys[k]))
        elif todo:
            backend = scheduler or "local-cluster"
            startup = _run_dask(todo, cases, keys, task, seed, workers, scheduler, finish)
    finally:
        bar.close()
    n_workers = workers if backend not in ("serial", "none (all cases already done)") else (1 if todo else 0)
    done: list[CaseResult] = results  # type: ignore[assignment]   # every slot is filled by now
    return SweepSummary(out, done, len(todo), skipped, time.perf_counter() - t0, n_workers, backend, startup)


def _run_dask(todo: list[int], cases: Sequence[Any], keys: list[str], task: Task, seed: int, workers: int,
              scheduler: str | None, finish: Callable[[CaseResult], None]) -> float:
    """Run the cases on Dask; returns the seconds spent starting / connecting to the cluster."""
    import logging

    from dask.distributed import Client, LocalCluster, as_completed

    logging.getLogger("distributed").setLevel(logging.CRITICAL)   # its INFO lines are not our output
    cluster = None
    t0 = time.perf_counter()
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=logging.CRITICAL)  # shutdown races log at ERROR
        client = Client(cluster)
    else:
        client = Client(scheduler)
    if scheduler is None:
        client.wait_for_workers(workers)
    startup = time.perf_counter() - t0
    try:
        futures = [client.submit(execute_case, task, cases[k], seed, k, keys[k], key=f"case-{keys[k]}",
                                 pure=False, retries=0) for k in todo]
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except Exception as exc:   # the worker died (killed, out of memory): report, go on, not stored
                k = todo[futures.index(fut)]
                res = CaseResult(keys[k], k, dataclasses.asdict(cases[k]), "crashed", 0.0,
                                 error="".join(traceback.format_exception_only(type(exc), exc))[-4000:],
                                 error_type=type(exc).__name__)
            finish(res)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return startup


def results_ok(summary: SweepSummary) -> list[CaseResult]:
    """The finished, successful cases of a sweep."""
    return [r for r in summary.results if r.ok]


def collect(out_dir: str | Path, cases: Iterable[Any], seed: int) -> list[CaseResult | None]:
    """Results of ``cases`` already in ``out_dir`` (None where a case is not finished)."""
    return [load_case(out_dir, case_key(c, seed, k)) for k, c in enumerate(cases)]

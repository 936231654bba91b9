"""Benchmark: a sweep of SPICE cases on 1 and on 2 Dask workers, and the in-process serial path.

    python scripts/bench_sweep.py                     # 200 cases of 64x64, 1 ohm, 8 vectors each
    python scripts/bench_sweep.py --cases 40          # a quicker look

Each case is one ngspice deck (a random 64x64 single-cell array with 1 ohm segments and a
batch of input vectors as one ``.dc`` sweep), run through :func:`cosim.sim.sweep.run_sweep` into a
fresh results folder for each configuration:

- serial: in this process, no Dask;
- dask-1: a LocalCluster with 1 worker process (1 thread);
- dask-2: a LocalCluster with 2 worker processes (1 thread each).

Wall times include the cluster start and writing every case to disk. The script checks that
the currents of every case are bit-identical across the three runs (each case draws its random
numbers from ``(seed, case index)``, whatever worker runs it). Target: dask-2 <= 0.6 x dask-1.
Writes bench_sweep.md and bench_sweep.json to --out. Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cosim.calibrate.ir_cases import ArrayCase, spice_case
from cosim.sim.engine import default_workers
from cosim.sim.files import publish
from cosim.sim.sweep import run_sweep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8, help="input vectors per case")
    ap.add_argument("--r-wire", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="xbar-out/bench_sweep")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = [ArrayCase(args.size, args.size, args.r_wire, batch=args.batch, replica=k) for k in range(args.cases)]
    configs = [("serial", 1, False), ("dask-1", 1, True), ("dask-2", 2, True)]
    runs: dict[str, dict] = {}
    currents: dict[str, list[np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for name, workers, use_dask in configs:
            folder = Path(tmp) / name
            print(f"{name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            s = run_sweep(cases, spice_case, folder, seed=args.seed, workers=workers, use_dask=use_dask,
                          progress=False)
            wall = time.perf_counter() - t0
            if s.failed:
                print(f"{name}: {len(s.failed)} cases failed, e.g. {s.failed[0].error[:300]}", file=sys.stderr)
            currents[name] = [r.arrays["I"] for r in s.results if r.ok]
            runs[name] = {"workers": workers, "dask": use_dask, "wall_s": wall, "startup_s": s.startup_s,
                          "run_s": wall - s.startup_s, "ran": s.ran, "failed": len(s.failed),
                          "per_case_ms": 1e3 * wall / max(1, s.ran),
                          "task_mean_ms": 1e3 * float(np.mean([r.elapsed_s for r in s.results]))}
            shutil.rmtree(folder, ignore_errors=True)
    ref = currents["serial"]
    identical = {name: len(c) == len(ref) and all(np.array_equal(a, b) for a, b in zip(c, ref))
                 for name, c in currents.items()}
    ratio = runs["dask-2"]["wall_s"] / runs["dask-1"]["wall_s"]
    ratio_serial = runs["dask-2"]["wall_s"] / runs["serial"]["wall_s"]
    lines = [f"sweep of {args.cases} ngspice cases, {args.size}x{args.size} single-cell arrays, {args.r_wire:g} ohm "
             f"segments, {args.batch} input vectors per case; {default_workers()} cores (a ratio near 1 "
             "means the machine had no second free core)", "",
             "| run | workers | wall [s] | of which cluster start [s] | wall per case [ms] | one task [ms] | failed | "
             "bit-identical to serial |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        lines.append(f"| {name} | {r['workers']} | {r['wall_s']:.1f} | {r['startup_s']:.1f} | {r['per_case_ms']:.0f} | "
                     f"{r['task_mean_ms']:.0f} | {r['failed']} | {'yes' if identical[name] else 'NO'} |")
    ratio_run = runs["dask-2"]["run_s"] / runs["dask-1"]["run_s"]
    lines += ["", f"dask-2 / dask-1 = {ratio:.2f} wall (target <= 0.60), {ratio_run:.2f} without the cluster start; "
              f"dask-2 / serial = {ratio_serial:.2f}",
              "(one task = the mean time of one case inside its worker; if it grows with 2 workers, the two "
              "processes did not each have a free core)"]
    text = "\n".join(lines)
    publish(out, "bench_sweep", text, {
        "cases": args.cases, "size": args.size, "batch": args.batch, "r_wire": args.r_wire, "seed": args.seed,
        "cores": default_workers(), "runs": runs, "bit_identical": identical,
        "ratio_dask2_over_dask1": ratio, "ratio_dask2_over_dask1_without_start": ratio_run,
        "ratio_dask2_over_serial": ratio_serial})
    print(f"\nwrote {out / 'bench_sweep.md'} and {out / 'bench_sweep.json'}", file=sys.stderr)
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: crossbar reads on every backend, measured in one run, as a table and as JSON.

    python scripts/bench_mvm.py                    # 32..256 on spice, 32..1024 on fast
    python scripts/bench_mvm.py --spice-max 512    # include 512 on spice (about a minute more)

For each size N (N x N, 1 ohm per segment on rows and columns, cells uniform in 1-25 uS):
- spice single: one vector, one ngspice run (our whole path: IR, validation, deck, run, parse)
- bare ngspice: ``ngspice -b`` on the same deck with nothing else (process start + parse + solve)
- spice batched: 100 vectors as .dc sweeps split over the cores (10 at 512, reported per vector)
- fast: a fresh solver (factorisation included) on 1 and on 100 vectors; beside it the same
  solver with its numpy loops (``compiled_loops=False``: the solver before its numba kernels)
- ideal: V @ G
- many vectors at one state (``--many``, default 2,000): the solver on all of them, against
  ``Crossbar.read``, which builds the state's exact transfer (one solve per input line) and reads
  through it, and how many vectors it takes to repay the transfer
Times are wall seconds, the best of ``--repeats`` runs for the short ones; ratios come from the
same run. Timings are never asserted in tests: this script is where they live.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cosim.sim.engine import SubprocessEngine, default_workers
from cosim.read.mvm import Crossbar
from cosim.read.kernels import compiled
from cosim.read.solver import CrossbarSolver
from cosim.sim.files import publish
from netlists.crossbar import CrossbarSpec


def best(fn, repeats: int) -> tuple[float, object]:
    out, t_best = None, float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        t_best = min(t_best, time.perf_counter() - t0)
    return t_best, out


def _direct(spec: CrossbarSpec, G: np.ndarray, V: np.ndarray, compiled_loops: bool = True) -> np.ndarray:
    """A fresh solver on every vector of V (no transfer, whatever the batch)."""
    xc = Crossbar(spec, G).circuit()
    return xc.outputs(CrossbarSolver(xc.circuit, compiled_loops=compiled_loops).solve(xc.drive_values(V)))


def bench_many(N: int, *, many: int, r: float, seed: int) -> dict:
    """``many`` vectors at one state: solved one by one, and through the state's exact transfer."""
    rng = np.random.default_rng([seed, N])
    spec = CrossbarSpec(rows=N, cols=N, r_row=r, r_col=r)
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    V = rng.uniform(0, 0.2, (many, N))
    t_direct, I_direct = best(lambda: _direct(spec, G, V), 1)
    xb = Crossbar(spec, G)
    t0 = time.perf_counter()
    xb.transfer()
    t_build = time.perf_counter() - t0
    t_read, I_tr = best(lambda: xb.read(V), 3)
    return {"size": N, "many": many, "direct": t_direct, "transfer_build": t_build, "transfer_read": t_read,
            "break_even_vectors": t_build / (t_direct / many),
            "rel_diff": float(np.abs(I_tr - I_direct).max() / np.abs(I_direct).max())}


def many_table(rows: list[dict]) -> str:
    m = rows[0]["many"]
    head = (f"| N | solver, {m} vec [s] | transfer: build [s] | read {m} vec [s] | speed-up on {m} vec | "
            f"break-even [vectors] | difference |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['size']} | {r['direct']:.3f} | {r['transfer_build']:.3f} | {r['transfer_read']:.4f} | "
                     f"{r['direct'] / (r['transfer_build'] + r['transfer_read']):.1f}x | "
                     f"{r['break_even_vectors']:.0f} | {r['rel_diff']:.1e} |")
    return "\n".join(lines)


def bench_size(N: int, *, spice: bool, repeats: int, batch: int, r: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    spec = CrossbarSpec(rows=N, cols=N, r_row=r, r_col=r)
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    V = rng.uniform(0, 0.2, (batch, N))
    row: dict = {"size": N, "batch": batch}
    reps = repeats if N <= 256 else 1
    t, _ = best(lambda: Crossbar(spec, G).read(V[:1], backend="fast"), reps)
    row["fast_1"] = t
    t, I_fast = best(lambda: _direct(spec, G, V), reps)
    row["fast_batch"] = t
    t, I_np = best(lambda: _direct(spec, G, V, compiled_loops=False), reps)
    row["fast_batch_numpy"] = t
    row["compiled_vs_numpy_rel_diff"] = float(np.abs(I_fast - I_np).max() / np.abs(I_np).max())
    t, _ = best(lambda: Crossbar(spec, G).read(V, backend="ideal"), reps)
    row["ideal_batch"] = t
    if spice:
        engine = SubprocessEngine(timeout=3600)
        t, I1 = best(lambda: Crossbar(spec, G, engine=engine).read(V[:1], backend="spice"), reps)
        row["spice_1"] = t
        with tempfile.TemporaryDirectory() as tmp:
            deck = Path(tmp) / "deck.cir"
            deck.write_text(Crossbar(spec, G).deck(V[:1]))
            t, _ = best(lambda: subprocess.run(["ngspice", "-b", str(deck)], capture_output=True, check=True,
                                               cwd=tmp), reps)
            row["bare_ngspice_1"] = t
        nb = batch if N < 512 else min(batch, 10)   # 512: ~10 s per sweep point
        t, I_sp = best(lambda: Crossbar(spec, G, engine=engine).read(V[:nb], backend="spice"), 1)
        row["spice_batch"] = t * batch / nb          # per-vector cost x batch, for the table
        row["spice_batch_vectors"] = nb
        row["fast_vs_spice_max_rel_error"] = float(np.abs(I_fast[:nb] - I_sp).max() / np.abs(I_sp).max())
        row["ours_over_bare"] = row["spice_1"] / row["bare_ngspice_1"]
        row["batch_gain"] = row["spice_1"] / (row["spice_batch"] / batch)
        row["fast_gain_per_vector"] = (row["spice_batch"] / batch) / (row["fast_batch"] / batch)
    return row


def table(rows: list[dict], batch: int) -> str:
    head = (f"| N | spice 1 vec [s] | bare ngspice -b [s] | ours/bare | spice batched [ms/vec] | "
            f"batch gain | fast 1 vec [s] | fast {batch} vec [s] | numpy loops {batch} vec [s] | compiled gain | "
            f"fast [ms/vec] | spice/fast per vec | "
            f"ideal {batch} vec [ms] | fast vs spice error |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        sp = "spice_1" in r
        cell = (lambda k, f: f.format(r[k]) if k in r else "-")
        lines.append("| " + " | ".join([
            str(r["size"]), cell("spice_1", "{:.3f}"), cell("bare_ngspice_1", "{:.3f}"), cell("ours_over_bare", "{:.2f}x"),
            f"{1e3 * r['spice_batch'] / batch:.1f}" if sp else "-", cell("batch_gain", "{:.1f}x"),
            f"{r['fast_1']:.4f}", f"{r['fast_batch']:.3f}", f"{r['fast_batch_numpy']:.3f}",
            f"{r['fast_batch_numpy'] / r['fast_batch']:.1f}x", f"{1e3 * r['fast_batch'] / batch:.2f}",
            cell("fast_gain_per_vector", "{:.0f}x"), f"{1e3 * r['ideal_batch']:.2f}",
            cell("fast_vs_spice_max_rel_error", "{:.1e}")]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 256, 512, 1024])
    ap.add_argument("--spice-max", type=int, default=256, help="largest size run on spice (512 takes ~1 min)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--r-wire", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--many", type=int, default=2000, help="vectors read at one state in the transfer table")
    ap.add_argument("--many-sizes", type=int, nargs="*", default=[64, 128, 256, 512])
    ap.add_argument("--out", default="xbar-out/bench_mvm")
    args = ap.parse_args(argv)
    compiled()                                   # numba compiles (or loads its cache) here, not in a timing
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for N in args.sizes:
        print(f"size {N} ...", file=sys.stderr, flush=True)
        rows.append(bench_size(N, spice=N <= args.spice_max, repeats=args.repeats, batch=args.batch,
                               r=args.r_wire, seed=args.seed))
    many = []
    for N in args.many_sizes:
        print(f"size {N}, {args.many} vectors at one state ...", file=sys.stderr, flush=True)
        many.append(bench_many(N, many=args.many, r=args.r_wire, seed=args.seed))
    text = (f"crossbar reads, {args.r_wire:g} ohm per segment, cells 1-25 uS, {default_workers()} cores; "
            f"wall seconds (best of {args.repeats} below 512)\n\n" + table(rows, args.batch))
    if many:
        text += (f"\n\n{args.many} vectors at one state: the solver on each, and Crossbar.read through the "
                 f"state's exact transfer (build once, then a matrix product; read: best of 3)\n\n" + many_table(many))
    publish(out, "bench_mvm", text, {"r_wire": args.r_wire, "batch": args.batch, "cores": default_workers(),
                                     "rows": rows, "many": many})
    print(f"\nwrote {out / 'bench_mvm.md'} and {out / 'bench_mvm.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

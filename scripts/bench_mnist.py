"""Benchmark: training throughput at MNIST scale, per phase, measured in one run.

    xbar data mnist                                   # once: the cached MNIST .npz
    python scripts/bench_mnist.py                     # about 5 minutes
    python scripts/bench_mnist.py --batches 200 --calibration cal/calibration.json

The network of the 2018 experiment's class, 784-250-10, tiled over 256 x 256 physical arrays (256
rows, 128 weight columns) with 1 ohm per wire segment, batch 10, lr 0.1, trained for ``--batches``
mini-batches (the first ``batches x 10`` MNIST training images, one epoch; 500 test images for the
evaluation) in each variant: the PCM pair and the 2 PCM + 3T1C unit cell with exact fast reads, the
pair with ``--audit-every auto`` (ngspice re-reads a random tile; its share of the time), and, with
``--calibration``, both cells with calibrated reads and the unit cell with calibrated reads through
the default read chain with its integrator + ADC fitted to ngspice (worst-case capacitors, and
autoranging: ``--chain-autorange 8``), both cells through the chain with paired sensing and
autoranging (the MNIST runs' configuration), and the unit cell through that chain with exact reads
of the wired arrays. Prints per-phase seconds, mini-batches per second, the projected time of a
60,000-image epoch, and each variant's peak memory (every variant runs in a process of its own);
writes Markdown and JSON to ``--out``. The audited variant's share is of a short run: ``auto``
audits the largest tile first, so a run of a few hundred mini-batches pays more than the 20 % that
a whole epoch does (the training runs' ``metrics.json`` hold the share over a run).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from cosim.calibrate.bundle import load_calibration
from cosim.read.kernels import compiled
from cosim.sim.files import publish
from cosim.train.audit import AuditConfig
from cosim.train.data import Dataset
from cosim.train.datasets import dataset_path, load_data
from cosim.train.layers import LayerConfig
from cosim.train.loop import TrainConfig, train
from netlists.readchain import PeripheryConfig


def variants(cal, chain=None, paired=None) -> list[tuple[str, dict, bool]]:
    base = [("pair, fast reads", {"unit_cell": "pair"}, False),
            ("2PCM+3T1C, fast reads", {"unit_cell": "2pcm3t1c"}, False),
            ("pair, fast reads, audit auto", {"unit_cell": "pair"}, True)]
    if cal is not None:
        base += [("pair, calibrated reads", {"unit_cell": "pair", "forward": "calibrated", "backward": "calibrated"},
                  False),
                 ("2PCM+3T1C, calibrated reads", {"unit_cell": "2pcm3t1c", "forward": "calibrated",
                                                  "backward": "calibrated"}, False)]
    if chain is not None:
        pc, fit = chain
        base += [("2PCM+3T1C, calibrated reads, fitted chain",
                  {"unit_cell": "2pcm3t1c", "forward": "calibrated", "backward": "calibrated",
                   "layer": {"periphery": pc, "periphery_fit": fit}}, False),
                 ("2PCM+3T1C, calibrated reads, fitted chain, autoranging",
                  {"unit_cell": "2pcm3t1c", "forward": "calibrated", "backward": "calibrated",
                   "layer": {"periphery": pc, "periphery_fit": fit, "chain_autorange": 8}}, False)]
    if paired is not None:          # the configuration of the MNIST runs in docs/mnist.md
        pc, fit = paired
        layer = {"periphery": pc, "periphery_fit": fit, "chain_autorange": 8}
        base += [(f"{cell}, calibrated reads, fitted chain, paired sensing, autoranging",
                  {"unit_cell": key, "forward": "calibrated", "backward": "calibrated", "layer": layer}, False)
                 for cell, key in (("2PCM+3T1C", "2pcm3t1c"), ("pair", "pair"))]
        base += [("2PCM+3T1C, exact reads, fitted chain, paired sensing, autoranging",     # the IR drop exact
                  {"unit_cell": "2pcm3t1c", "forward": "fast", "backward": "fast", "layer": layer}, False)]
    return base


def run(name: str, kw: dict, audit: bool, data: Dataset, cal, out: Path, seed: int) -> dict:
    kw = dict(kw)
    layer = replace(LayerConfig(r_wire=1.0, max_rows=256, max_cols=128, calibration=cal), **kw.pop("layer", {}))
    cfg = replace(TrainConfig(hidden=(250,), epochs=1, lr=0.1, forward="fast", backward="fast", update="fast",
                              device="pcm", seed=seed, layer=layer), **kw)
    t0 = time.perf_counter()
    m = train(cfg, data, out, progress=False, resume=False, audit=AuditConfig() if audit else None)
    wall = time.perf_counter() - t0
    n = -(-len(data.y_train) // cfg.batch_size)
    phases = {f"{k}_s": v for k, v in m["seconds"].items()}
    train_s = sum(v for k, v in m["seconds"].items() if k != "eval")
    row = {"variant": name, "batches": n, "wall_s": wall, **phases, "batches_per_s": n / train_s,
           "epoch_60k_min": 6000 * train_s / n / 60, "test_accuracy": m["final"]["test_accuracy"]}
    if audit:
        row["audit_s"] = m["audit"]["audit_seconds"]
        row["audit_share"] = m["audit"]["audit_seconds"] / wall
    return row


def table(rows: list[dict]) -> str:
    head = ("| variant | mini-batches | forward [s] | backward [s] | update [s] | transfer [s] | audit [s] | "
            "mini-batches / s | 60k epoch [min] | wall [s] | peak memory [GB] |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        audit = f"{r['audit_s']:.1f} ({100 * r['audit_share']:.0f} %)" if "audit_s" in r else "-"
        lines.append(f"| {r['variant']} | {r['batches']} | {r['forward_s']:.1f} | {r['backward_s']:.1f} | "
                     f"{r['update_s']:.1f} | {r.get('transfer_s', 0.0):.1f} | {audit} | {r['batches_per_s']:.2f} | "
                     f"{r['epoch_60k_min']:.0f} | {r['wall_s']:.0f} | {r['peak_rss_gb']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=100, help="mini-batches per variant (default 100)")
    ap.add_argument("--calibration", default=None, help="calibration.json: adds the calibrated-read variants")
    ap.add_argument("--only", nargs="+", type=int, help="run only these variants (0-based, in table order)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="xbar-out/bench_mnist")
    args = ap.parse_args(argv)
    if not dataset_path("mnist").exists():
        sys.exit("bench_mnist: the MNIST cache is missing: run `xbar data mnist` first")
    out = Path(args.out)
    names = [v[0] for v in variants(*_fits(args.calibration))]
    rows = []
    # each variant in a process of its own: its peak memory is its own, not the most any variant
    # before it left behind
    spawn = multiprocessing.get_context("spawn")
    for k in range(len(names)):
        if args.only and k not in args.only:
            continue
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            rows.append(pool.submit(_variant, k, args.batches, args.calibration, str(out / f"run{k}"),
                                    args.seed).result())
        print(table(rows).splitlines()[-1], file=sys.stderr, flush=True)
    text = table(rows) + "\n\npeak memory: each variant's process (the data set, the networks, every read)"
    publish(out, "bench_mnist", text, {"rows": rows})
    return 0


def _fits(calibration: str | None):
    """The calibration's IR model, and the default chain and the paired chain with their fitted
    integrator + ADC (None where the calibration has no block fits)."""
    cset = load_calibration(calibration) if calibration else None
    cal = cset.ir if cset else None
    chain = paired = None
    if cset is not None and cset.blocks is not None:
        pc, pp = PeripheryConfig(), PeripheryConfig(sensing="pairs")
        chain, paired = (pc, cset.periphery_fit(pc)), (pp, cset.periphery_fit(pp))
    return cal, chain, paired


def _variant(k: int, batches: int, calibration: str | None, out: str, seed: int) -> dict:
    """Variant ``k`` in this (child) process; its row, with this process's peak memory."""
    full = load_data("mnist")
    n = batches * 10
    data = Dataset("mnist-bench", full.X_train[:n], full.y_train[:n], full.X_test[:500], full.y_test[:500])
    del full
    cal, chain, paired = _fits(calibration)
    compiled()                                   # numba compiles (or loads its cache) here, not in a timing
    name, kw, audit = variants(cal, chain, paired)[k]
    row = run(name, kw, audit, data, cal, Path(out), seed)
    row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return row


if __name__ == "__main__":
    sys.exit(main())

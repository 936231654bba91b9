"""Benchmark: one training epoch of the digits through ngspice vs on the fast backend, one run.

    python scripts/bench_train.py                  # about 6 minutes (the spice epoch dominates)
    python scripts/bench_train.py --device linear --epochs 1

Trains the 64-32-10 MLP (batch 10, BL = 10, PCM pairs, 1 ohm wires, 9-bit output ADC) for the
same epochs with the same seed twice: every phase on ``spice`` (forward and backward reads in
ngspice, pulse-coincidence updates solved in ngspice per write slot), then every phase on
``fast`` (exact nodal solver and device twins). Prints where the time goes (forward, backward,
update, evaluation; *phases* is their sum, *wall* adds the one-off plots, netlists and data
loading of a run) and the ratio spice/fast, measured in this one run; writes Markdown and JSON
to ``--out``. Training at MNIST scale (784-250-10 on 256 x 256 arrays: exact and calibrated
reads, the read chains, audits, peak memory) is ``scripts/bench_mnist.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cosim.train.data import load_digits_split
from cosim.train.layers import LayerConfig
from cosim.sim.files import publish
from cosim.train.loop import TrainConfig, train


def run(backend: str, args, out: Path) -> dict:
    cfg = TrainConfig(epochs=args.epochs, forward=backend, backward=backend, update=backend, device=args.device,
                      layer=LayerConfig(r_wire=args.r_wire), seed=args.seed)
    t0 = time.perf_counter()
    m = train(cfg, load_digits_split(), out / backend, progress=False, resume=False)
    wall = time.perf_counter() - t0
    phases = {f"{k}_s": v for k, v in m["seconds"].items()}
    return {"backend": backend, "wall_s": wall, "phases_s": sum(phases.values()), **phases,
            "test_accuracy": m["final"]["test_accuracy"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="pcm")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--r-wire", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="xbar-out/bench_train")
    args = ap.parse_args(argv)
    out = Path(args.out)
    rows = [run("fast", args, out), run("spice", args, out)]
    keys = ["wall_s", "phases_s", "forward_s", "backward_s", "update_s", "eval_s"]
    lines = ["| backend | " + " | ".join(k[:-2] + " [s]" for k in keys) + " | test acc. |",
             "|---|" + "---|" * (len(keys) + 1)]
    for r in rows:
        lines.append(f"| {r['backend']} | " + " | ".join(f"{r.get(k, 0.0):.2f}" for k in keys)
                     + f" | {100 * r['test_accuracy']:.1f} % |")
    ratio = {k: rows[1].get(k, 0.0) / max(rows[0].get(k, 0.0), 1e-9) for k in keys}
    lines.append("| spice / fast | " + " | ".join(f"{ratio[k]:.0f}x" for k in keys) + " | |")
    text = (f"{args.epochs} epoch(s), 64-32-10, {args.device} pairs, {args.r_wire:g} ohm wires\n\n"
            + "\n".join(lines))
    publish(out, "bench_train", text, {"rows": rows, "ratio": ratio})
    return 0


if __name__ == "__main__":
    sys.exit(main())

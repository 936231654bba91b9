"""Benchmark: one pulse-coincidence update of a 64x64 PCM pair array, on every path, one run.

    python scripts/bench_update.py            # about a minute (the transient path dominates)
    python scripts/bench_update.py --no-transient

Array: 64 rows x 32 weights (64 physical columns, G+ and G- interleaved), 1 ohm per segment,
BL = 10. One update phase is one sample's trains; a mini-batch is 10 samples applied in
sequence (one deck). Reports wall seconds, the slots simulated, and the largest difference of
each path's weight change from the full transient's (or from the slot path's when the
transient is skipped), as a fraction of the largest change.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from cosim.train.layers import AnalogLayer, LayerConfig
from cosim.sim.files import publish
from cosim.write.pair_update import PulseUpdate, mapping_for
from models.registry import get_device


def one(dev, W, x, d, backend: str, method: str, r: float) -> tuple[np.ndarray, float, int]:
    """Weights after the update, wall seconds (best of 20 for the millisecond twin), slots."""
    best = np.inf
    for _ in range(20 if backend == "fast" else 1):
        layer = AnalogLayer(W, LayerConfig(mapping=mapping_for(dev), r_wire=0.0, adc_bits=None, bias=False))
        up = PulseUpdate(dev, bl=10, backend=backend, method=method, r_wire=r, refresh_at=1.0)
        t0 = time.perf_counter()
        layer.update(x, d, 0.5, up, np.random.default_rng(4))
        best = min(best, time.perf_counter() - t0)
    return layer.weights(), best, up.slots


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-transient", action="store_true", help="skip the full transient (about 20-60 s)")
    ap.add_argument("--r-wire", type=float, default=1.0)
    ap.add_argument("--out", default="xbar-out/bench_update")
    args = ap.parse_args(argv)
    dev = get_device("pcm")
    W = np.random.default_rng(1).uniform(-1, 1, (64, 32))
    rows = []
    for samples in (1, 10):
        x = np.random.default_rng(2).uniform(0, 1, (samples, 64))
        d = np.random.default_rng(3).uniform(-0.2, 0.2, (samples, 32))
        paths = [("fast", "slots"), ("spice", "slots")]
        if not args.no_transient and samples == 1:
            paths.append(("spice", "transient"))
        res = {p: one(dev, W, x, d, *p, args.r_wire) for p in paths}
        ref = res.get(("spice", "transient"), res[("spice", "slots")])[0]
        change = np.abs(ref - W).max()
        for (backend, method), (Wp, t, slots) in res.items():
            rows.append({"samples": samples, "path": "twin" if backend == "fast" else f"spice {method}",
                         "seconds": t, "slots": slots,
                         "max_diff_of_change": float(np.abs(Wp - ref).max() / change),
                         "x_twin": t / res[("fast", "slots")][1]})
    lines = ["| samples | path | slots | wall [s] | / twin | difference / largest change |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['samples']} | {r['path']} | {r['slots']} | {r['seconds']:.4g} | {r['x_twin']:.0f}x "
                     f"| {r['max_diff_of_change']:.1e} |")
    text = "\n".join(lines)
    publish(args.out, "bench_update", text, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

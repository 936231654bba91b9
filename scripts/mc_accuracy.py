"""Monte Carlo of hardware non-idealities carried to test accuracy, one table.

    python scripts/mc_accuracy.py                  # about a minute after the training runs exist
    python scripts/mc_accuracy.py --runs 50

Trains (or resumes, from ``--out``) the 64-32-10 MLP on the digits for 10 epochs with ideal
devices and with PCM pairs (fast backend, 1 ohm wires, seed 0, as in accuracy_table.py), then
reads the test set through ``--runs`` sampled instances of the trained arrays per setting:
lognormal device-to-device variation of the programmed conductances, stuck cells (half at
g_min, half at g_max) and op-amp input offsets (a column current ``-v_os sum_i G_ij``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cosim.calibrate.montecarlo import MonteCarloRuns, Variation
from cosim.sim.files import publish
from cosim.train.data import load_digits_split
from cosim.train.layers import LayerConfig
from cosim.train.loop import TrainConfig, train

SETTINGS = [  # (d2d_sigma, stuck_frac, opamp_offset_sigma_v [V])
    (0.05, 0.0, 0.0), (0.1, 0.0, 0.0), (0.2, 0.0, 0.0), (0.0, 0.001, 0.0), (0.0, 0.01, 0.0),
    (0.0, 0.0, 0.002), (0.1, 0.01, 0.002),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="xbar-out/mc_accuracy")
    args = ap.parse_args(argv)
    data = load_digits_split()
    out = Path(args.out)
    rows = []
    for name, update in (("ideal device", "ideal"), ("PCM pair", "fast")):
        cfg = TrainConfig(epochs=10, forward="fast", backward="fast", update=update, device="pcm",
                          layer=LayerConfig(r_wire=1.0), seed=args.seed)
        for sigma, stuck, vos in SETTINGS:
            var = Variation(d2d_sigma=sigma, stuck_frac=stuck, opamp_offset_sigma_v=vos)
            m = train(cfg, data, out / update, progress=False,
                      monte_carlo=MonteCarloRuns(var, runs=args.runs, seed=args.seed))
            mc = m["monte_carlo"]
            rows.append({"network": name, **{k: mc[k] for k in ("d2d_sigma", "stuck_frac", "opamp_offset_sigma_v",
                                                                   "nominal_accuracy", "mean", "std", "min")}})
    lines = ["| network | d2d sigma | stuck cells | op-amp offset sigma | nominal | mean +- std | worst |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['d2d_sigma']:g} | {100 * r['stuck_frac']:g} % | "
                     f"{1e3 * r['opamp_offset_sigma_v']:g} mV | {100 * r['nominal_accuracy']:.1f} % | "
                     f"{100 * r['mean']:.1f} +- {100 * r['std']:.1f} % | {100 * r['min']:.1f} % |")
    text = f"{args.runs} instances per setting\n\n" + "\n".join(lines)
    publish(out, "mc_accuracy", text, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fit every behavioural block to SPICE and print the error tables (issue 6).

Thin entry point over :func:`cosim.calibrate.blocks.fit_all`: writes ``fits.json`` and PNGs into the
output folder and prints the tables.

    .venv/bin/python scripts/fit_blocks_report.py --out out/fit_blocks [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time

from cosim.sim.engine import SubprocessEngine
from cosim.calibrate.blocks import fit_all, report_markdown


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/fit_blocks", help="output folder")
    ap.add_argument("--quick", action="store_true", help="fewer seeds, pulses and runs")
    ap.add_argument("--workers", type=int, default=None, help="ngspice processes")
    a = ap.parse_args(argv)
    kw = dict(pulses=20, seeds=(0, 1), holdout_seeds=(100,), mc_runs=10) if a.quick else {}
    t0 = time.perf_counter()
    res = fit_all(a.out, engine=SubprocessEngine(workers=a.workers),
                  progress=lambda m: print(f"[{time.perf_counter() - t0:6.1f} s] {m}", flush=True), **kw)
    print("\n" + report_markdown(res))
    print(f"\nwrote {res['json']} and {len(res['pngs'])} PNGs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

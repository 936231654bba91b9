"""Fit every behavioural block to SPICE and print the error tables (issue 6).

Thin entry point over :func:`cosim.fit_blocks.fit_all`: writes ``fits.json`` and PNGs into the
output folder and prints the tables.

    .venv/bin/python scripts/fit_blocks_report.py --out out/fit_blocks [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time

from cosim.engine import SubprocessEngine
from cosim.fit_blocks import fit_all


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
    print("\nDevices: trajectory error on held-out seeds vs SPICE [% of the conductance range]")
    print(f"{'device':8s} {'table RMSE':>10s} {'table max':>10s} {'twin RMSE':>10s} {'twin max':>10s} "
          f"{'1-step tab':>10s} {'1-step twin':>11s} {'spread':>7s}")
    for name, r in res["devices"].items():
        e, o = r["error"], r["one_step_rmse_frac"]
        print(f"{name:8s} {100 * e['step_table']['rmse_frac']:10.4f} {100 * e['step_table']['max_frac']:10.4f} "
              f"{100 * e['twin']['rmse_frac']:10.4f} {100 * e['twin']['max_frac']:10.4f} "
              f"{100 * o['step_table']:10.4f} {100 * o['twin']:11.4f} {r['spread_ratio']:7.2f}")
    print("\nPeriphery (held-out sweep points): fit vs uncalibrated twin against SPICE")
    for name, r in res["periphery"].items():
        i, f, t = r["integrator"], r["error"]["fit"], r["error"]["twin"]
        print(f"{name:9s} gain error {100 * i['gain_error']:+.2f} %, offset {1e3 * i['offset_v']:+.2f} mV, "
              f"rails [{i['sat_lo_v']:+.3f}, {i['sat_hi_v']:+.3f}] V")
        print(f"          v RMS/max [LSB]: fit {f['v_rms_lsb']:.3f}/{f['v_max_lsb']:.3f}  twin "
              f"{t['v_rms_lsb']:.3f}/{t['v_max_lsb']:.3f}; codes RMS/max [LSB]: fit "
              f"{f['code_rms_lsb']:.3f}/{f['code_max_lsb']:.0f}  twin {t['code_rms_lsb']:.3f}/{t['code_max_lsb']:.0f}")
    print("\nMonte Carlo MVM error [% of the largest ideal column current]")
    for r in res["monte_carlo"]:
        print(f"sigma {r['sigma_d2d']:5.2f} stuck {r['stuck_frac']:.3f} vos {r['opamp_offset_sigma']:.0e}: "
              f"RMS mean {100 * r['rms']['mean']:.3f} std {100 * r['rms']['std']:.3f} p95 {100 * r['rms']['p95']:.3f}; "
              f"|err| p95 {100 * r['abs_p95']:.3f}; wire only {100 * r['wire_only']:.3f}"
              + (f"; spice-fast {max(c['max_abs_diff_frac'] for c in r['spice_checks']):.1e}" if r["spice_checks"] else ""))
    print(f"\nwrote {res['json']} and {len(res['pngs'])} PNGs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the read chain (8-bit PWM DACs -> wired differential array -> integrators -> ADCs)
on a 64-row array, every path in one run.

    python scripts/bench_readchain.py                 # a few minutes on 2 busy cores
    python scripts/bench_readchain.py --cols 64       # 64 weights = 128 physical columns
    python scripts/bench_readchain.py --no-ramp --no-two-stage

Array: 64 rows x 32 weights by default (64 physical columns: G+ and G- interleaved, a 64x64
physical array), 1 ohm per wire segment, conductances uniform in 1-25 uS (seeded). Periphery:
8-bit signed PWM at 0.2 V, 1 ns per LSB (two phases), 80 pF integrators (nothing can clip),
macro op-amps, ideal 8-bit quantisers over +-0.8 V; variants: PWL sources with breakpoints at
every corner (exact charge), a batch of reads in one transient, the same batch over 2 parallel
decks, 8-bit ramp ADCs, transistor-level two-stage op-amps, the numpy twin.

Per row: wall seconds (ngspice parse + run + decode), seconds per read, transient points, the
agreement of the ADC codes with the twin (largest |difference| and the fraction that differ)
and, for the single reads with energy, energy per MVM / per MAC, TOPS/W and the periphery
share. Wall times on a shared machine are noisy: compare ratios within one run (the CPU seconds
of the ngspice children are printed too).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import warnings
from dataclasses import replace

import numpy as np

from cosim.sim.engine import SubprocessEngine
from cosim.read.energy import energy_summary
from cosim.read.readchain import ReadChain
from netlists.readchain import PeripheryConfig
from cosim.sim.files import publish
from models.adc import QuantizerParams, RampAdcParams
from models.dac import DacParams
from models.integrator import IntegratorParams
from models.opamp import TwoStageOpAmpParams
from netlists.crossbar import CrossbarSpec


def _cpu() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--cols", type=int, default=32, help="weight columns (physical: twice as many)")
    ap.add_argument("--batch", type=int, default=8, help="reads in the batched transient")
    ap.add_argument("--r-wire", type=float, default=1.0)
    ap.add_argument("--no-ramp", action="store_true")
    ap.add_argument("--no-two-stage", action="store_true")
    ap.add_argument("--out", default="xbar-out/bench_readchain")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)  # range under-use warnings

    rng = np.random.default_rng(0)
    spec = CrossbarSpec(rows=args.rows, cols=args.cols, cell="diff", r_row=args.r_wire, r_col=args.r_wire)
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    base = PeripheryConfig(dac=DacParams(encoding="pwm", bits=8, v_read=0.2, t_lsb=1e-9),
                           integrator=IntegratorParams(c_int=80e-12 * args.rows / 64, g_on=1e-2),
                           adc=QuantizerParams(bits=8), exact_corners=False, range_check="warn")
    one = rng.integers(-255, 256, size=(1, args.rows))
    batch = rng.integers(-255, 256, size=(args.batch, args.rows))
    macs = args.rows * args.cols
    serial = SubprocessEngine(workers=1)

    cases = [
        ("1 read, macro op-amps, ideal ADC, B-source DACs", base, one, 1, True),
        ("1 read, same, PWL DACs (breakpoint per corner)", replace(base, exact_corners=True), one, 1, False),
        (f"batch of {args.batch} reads in one transient", base, batch, 1, False),
        (f"batch of {args.batch} reads over 2 parallel decks", base, batch, 2, False),
    ]
    if not args.no_ramp:
        cases.append(("1 read, 8-bit ramp ADCs", replace(base, adc=RampAdcParams(bits=8)), one, 1, False))
    if not args.no_two_stage:
        cases.append(("1 read, transistor-level two-stage op-amps", base.with_opamp(TwoStageOpAmpParams()),
                      one, 1, True))
    rows = []
    for name, cfg, codes, workers, energy in cases:
        chain = ReadChain(spec, G, cfg, engine=SubprocessEngine(workers=workers) if workers > 1 else serial)
        c0, t0 = _cpu(), time.perf_counter()
        s = chain.read(codes, backend="spice", energy=energy, workers=workers)
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        f = chain.read(codes, backend="fast")
        d = np.abs(s.adc_codes - f.adc_codes)
        row = {"case": name, "reads": len(codes), "seconds": wall, "per_read_s": wall / len(codes),
               "ngspice_cpu_s": cpu, "points": s.points, "max_code_diff": int(d.max()),
               "frac_codes_differ": float(np.mean(d > 0)),
               "max_v_diff_lsb": float(np.abs(s.v_out - f.v_out).max() / cfg.adc.lsb)}
        if energy:
            row["energy"] = energy_summary(s, macs)
        rows.append(row)
        print(f"{name}: {wall:.2f} s", file=sys.stderr)
    # the twin alone: the first read of a conductance state (transfer matrix by the exact
    # solver), then one read and the batch (best of 5)
    chain = ReadChain(spec, G, base)
    first = _timed(lambda: chain.read(one, backend="fast"))
    rows.append({"case": "numpy twin, first read (solves the wired array)", "reads": 1, "seconds": first,
                 "per_read_s": first})
    for codes, label in ((one, "1 read"), (batch, f"batch of {args.batch}")):
        chain.read(codes, backend="fast")
        best = min(_timed(lambda: chain.read(codes, backend="fast")) for _ in range(5))
        rows.append({"case": f"numpy twin, {label}", "reads": len(codes), "seconds": best,
                     "per_read_s": best / len(codes)})
    twin_one = rows[-2]["seconds"]

    head = (f"Read chain, {args.rows} rows x {args.cols} weights ({spec.pcols} physical columns), "
            f"{args.r_wire:g} ohm wires, 8-bit signed PWM, ideal 8-bit ADCs unless stated")
    lines = _table(head, rows, twin_one)
    text = "\n".join(lines)
    out = publish(args.out, "bench_readchain", text, {"title": head, "rows": rows, "config": base.to_dict()})
    print(f"results in {out}")
    return 0


def _table(head: str, rows: list[dict], twin_one: float) -> list[str]:
    """The Markdown tables of the benchmark (times, then energies)."""
    lines = [head, "", "| case | reads | wall s | s per read | ngspice CPU s | points | max code diff vs twin "
             "| codes differing | max v diff [LSB] | x twin |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['reads']} | {r['seconds']:.3f} | {r['per_read_s']:.4f} | "
                     f"{r.get('ngspice_cpu_s', float('nan')):.2f} | {r.get('points', '')} | {r.get('max_code_diff', '')} | "
                     f"{100 * r['frac_codes_differ']:.1f} % | {r['max_v_diff_lsb']:.2f} | "
                     f"{r['per_read_s'] / twin_one:.0f} |" if "points" in r else
                     f"| {r['case']} | {r['reads']} | {r['seconds']:.4f} | {r['per_read_s']:.5f} | | | | | | "
                     f"{r['per_read_s'] / twin_one:.0f} |")
    lines += ["", "| energy (one read) | per MVM [J] | per MAC [J] | TOPS/W | array share | periphery share |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        if "energy" in r:
            e = r["energy"]
            lines.append(f"| {r['case']} | {e['per_mvm_j']:.3g} | {e['per_mac_j']:.3g} | {e['tops_per_w']:.3g} | "
                         f"{100 * e['array_share']:.1f} % | {100 * e['periphery_share']:.1f} % |")
    return lines


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())

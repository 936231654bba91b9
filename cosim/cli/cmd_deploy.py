"""``xbar deploy``, ``xbar infer`` and ``xbar export``: trained weights programmed onto arrays, read
over time, and handed over as ngspice decks.

Layer: cosim.cli.
"""

from __future__ import annotations

import sys

from cosim.cli.common import calibration_arg
from cosim.sim.inputs import positive_float_arg, positive_int_arg, nonneg_float_arg, nonneg_int_arg
from cosim.train import chip_driver
from cosim.train.chip import export_chip
from cosim.train.datasets import load_data
from cosim.train.deploy import DeployConfig, deploy, infer, load_weights, parse_times
from cosim.train.layers import READ_BACKENDS
from models.pulse import PulseShape
from models.registry import device_names
from netlists.readchain import PeripheryConfig

__all__ = ["add_parsers"]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_deploy(args) -> int:
    cfg = DeployConfig(device=args.device, tol=args.tol, max_rounds=args.max_rounds, max_pulses=args.max_pulses,
                       program=args.program,
                       w_max=args.w_max, max_rows=args.max_rows, max_cols=args.max_cols, r_wire=args.r_wire,
                       seed=args.seed)
    table = None
    if args.device_table:
        if args.program != "table":
            raise ValueError("--device-table goes with --program table")
        table = calibration_arg(args.device_table, "--device-table").step_table(args.device, PulseShape())
    elif args.program == "table":
        raise ValueError("--program table needs --device-table (the calibration.json of xbar calibrate)")
    weights = load_weights(args.weights)
    data = load_data(args.data, progress=_say)
    s = deploy(weights, cfg, args.out, data=data, table=table, progress=_say)
    for layer in s["layers"]:
        print(f"layer {layer['layer']} {layer['shape'][0]}x{layer['shape'][1]}: {layer['pulses']} pulses (at most "
              f"{layer['pulses_per_device_max']} per device, {layer['rounds']} rounds), {layer['not_converged']} "
              f"devices off target, weight error {100 * layer['weight_error_rel_rms']:.2f} % RMS")
    print(f"test accuracy right after programming {100 * s['accuracy_programmed']:.2f} % (software "
          f"{100 * s['accuracy_software']:.2f} %); programming took {s['seconds']:.2f} s")
    print(f"results in {args.out} (deployed.npz, deploy.json, pulses.csv, program.csv); next: xbar infer "
          f"{args.out}, xbar export {args.out} --out chip/")
    return 0


def cmd_infer(args) -> int:
    data = load_data(args.data, progress=_say)
    layer_kw = {"periphery": PeripheryConfig.from_json(args.periphery)} if args.periphery else None
    r = infer(args.run_dir, data, parse_times(args.times), runs=args.runs, backend=args.backend, seed=args.seed,
              layer_kw=layer_kw, progress=_say)
    chain = " through the read chain" if args.periphery else ""
    print(f"{r['device']}, {r['runs']} Monte Carlo runs, {r['backend']} reads{chain}; software "
          f"{100 * r['software_accuracy']:.2f} %")
    print("| time after programming [s] | accuracy | with drift compensation |")
    print("|---|---|---|")
    for row in r["times"]:
        u, c = row["uncompensated"], row["compensated"]
        print(f"| {row['t_s']:.3g} | {100 * u['mean']:.2f} +- {100 * u['std']:.2f} % | "
              f"{100 * c['mean']:.2f} +- {100 * c['std']:.2f} % |")
    print(f"results in {args.run_dir} (infer.json, infer.png; {r['seconds']:.1f} s)")
    return 0


def cmd_export(args) -> int:
    data = load_data(args.data, progress=_say)
    pc = PeripheryConfig.from_json(args.periphery) if args.periphery else None
    s = export_chip(args.run_dir, args.out, data, periphery=pc, images=args.images, chunk=args.chunk, progress=_say)
    print(f"{s['decks']} decks and run_network.py in {args.out} ({s['images']} test images, fast backend through the "
          f"read chain {100 * s['accuracy_fast']:.2f} %; {s['seconds']:.1f} s)")
    if args.run is None:
        print(f"next: cd {args.out} && python3 run_network.py --jobs 2")
        return 0
    r = chip_driver.run_network(args.out, images=args.run or None, jobs=args.jobs, say=_say)
    print(f"{r['images']} images in ngspice: predictions equal the fast backend's on {100 * r['agreement']:.2f} %; "
          f"accuracy {100 * r['accuracy_ngspice']:.2f} % (fast {100 * r['accuracy_fast']:.2f} %); "
          f"{r['seconds']:.0f} s; results.csv, results.json")
    return 0


def add_parsers(sub) -> None:
    """The subcommands of this module."""
    d = DeployConfig()
    p = sub.add_parser("deploy", help="program trained weights onto arrays by write-verify (ex-situ)")
    p.add_argument("weights", help="a run folder of xbar train (its software weights) or an .npz of W0, W1, ... "
                   "(b0, b1, ... as bias rows)")
    p.add_argument("--device", choices=device_names(), default=d.device, help=f"device (default {d.device})")
    p.add_argument("--tol", type=positive_float_arg, default=d.tol, help=f"write-verify tolerance [S] (default {d.tol:g})")
    p.add_argument("--max-rounds", type=positive_int_arg, default=d.max_rounds, help="write-verify rounds")
    p.add_argument("--max-pulses", type=positive_int_arg, default=None,
                   help="most pulses a device may take (default: no cap; a device that runs out is reported off "
                        "target)")
    p.add_argument("--program", choices=["fast", "table", "spice"], default=d.program,
                   help="program on the device twin (fast), its step table fitted to SPICE (table, with "
                        "--device-table), or with pulse trains in ngspice")
    p.add_argument("--device-table", metavar="FILE", help="calibration.json (or fits.json) of xbar calibrate: "
                   "the device's step table for --program table")
    p.add_argument("--seed", type=nonneg_int_arg, default=d.seed, help="seed of the step table's spread")
    p.add_argument("--w-max", type=positive_float_arg, default=None,
                   help="weight of a full pair (default: each layer's largest |weight|)")
    p.add_argument("--max-rows", type=positive_int_arg, default=d.max_rows)
    p.add_argument("--max-cols", type=positive_int_arg, default=d.max_cols)
    p.add_argument("--r-wire", type=nonneg_float_arg, default=d.r_wire, help="wire resistance per segment [ohm]")
    p.add_argument("--data", help="test set for the accuracy check (default: the digits)")
    p.add_argument("--out", "-o", default="xbar-out/deploy", help="output folder")
    p.set_defaults(func=cmd_deploy)
    p = sub.add_parser("infer", help="test accuracy of a deployed network over time (drift, read noise, Monte Carlo)")
    p.add_argument("run_dir", help="the folder of xbar deploy")
    p.add_argument("--times", default="1s,1h,1d,1w,1y", help="times after programming (units s m h d w y)")
    p.add_argument("--runs", type=positive_int_arg, default=20, help="Monte Carlo runs per time (default 20)")
    p.add_argument("--backend", choices=[b for b in READ_BACKENDS if b not in ("software", "calibrated")],
                   default="fast", help="read backend (default fast)")
    p.add_argument("--periphery", default=None, metavar="CONFIG.json",
                   help="read through this read chain (DACs, integrators, ADCs; xbar periphery --write-config): "
                        "fast is its numpy twin, spice the chain in ngspice")
    p.add_argument("--seed", type=nonneg_int_arg, default=0)
    p.add_argument("--data", help="test set (default: the digits)")
    p.set_defaults(func=cmd_infer)
    p = sub.add_parser("export", help="a deployed network as standalone ngspice decks with a driver that runs it")
    p.add_argument("run_dir",
                   help="the folder of xbar deploy, or of an in-situ xbar train run on PCM pairs (its conductances)")
    p.add_argument("--out", "-o", default="xbar-out/chip", help="the chip folder (default xbar-out/chip)")
    p.add_argument("--periphery", default=None, metavar="CONFIG.json",
                   help="read-chain config (xbar periphery --write-config; default: the default chain)")
    p.add_argument("--images", type=positive_int_arg, default=None, help="export the first N test images (default all)")
    p.add_argument("--chunk", type=positive_int_arg, default=20, help="images per deck run (default 20)")
    p.add_argument("--run", type=nonneg_int_arg, nargs="?", const=0, default=None, metavar="N",
                   help="then run the network in ngspice (on the first N images; alone: all of them)")
    p.add_argument("--jobs", type=nonneg_int_arg, default=0, help="ngspice processes at once (default: one per core)")
    p.add_argument("--data", help="test set (default: the digits)")
    p.set_defaults(func=cmd_export)

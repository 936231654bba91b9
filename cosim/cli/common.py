"""What the subcommands share: library defaults for help texts, the array options, files read once.

Layer: cosim.cli.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import numpy as np

from cosim.calibrate.bundle import load_calibration
from cosim.sim.engine import make_engine
from cosim.sim.inputs import load_array, nonneg_float_arg, nonneg_int_arg, positive_float_arg, positive_int_arg
from models.errors import ParameterError
from netlists.crossbar import CrossbarSpec

__all__ = ["default_of", "given", "add_array_options", "spec_and_G", "calibration_arg", "spice_engine"]


def default_of(cls, name: str):
    """The library default of field ``name`` of dataclass ``cls`` (for the help texts)."""
    f = {f.name: f for f in fields(cls)}[name]
    return f.default_factory() if callable(f.default_factory) else f.default


def given(args, *names: str) -> dict:
    """The options among ``names`` that the user gave (argparse default None), by field name."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def add_array_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=positive_int_arg, help="word lines (default: from --conductances)")
    p.add_argument("--cols", type=positive_int_arg, help="logical columns (default: from --conductances)")
    p.add_argument("--cell", choices=["1r", "diff"], default="1r",
                   help="1r: one cell per weight; diff: G+ and G- on adjacent columns (G has 2*cols columns)")
    p.add_argument("--r-wire", type=nonneg_float_arg, default=None, help="wire resistance per segment, rows and columns [ohm]")
    p.add_argument("--r-row", type=nonneg_float_arg, default=None, help="row-wire resistance per segment [ohm]")
    p.add_argument("--r-col", type=nonneg_float_arg, default=None, help="column-wire resistance per segment [ohm]")
    p.add_argument("--c-wire", type=nonneg_float_arg, default=0.0, help="wire capacitance per segment [F]")
    p.add_argument("--v-read", type=positive_float_arg, default=0.2, help="full-scale read voltage [V] (default 0.2)")
    p.add_argument("--conductances", "-G", help="(rows, cols) cell conductances [S], .npy, .csv or .txt")
    p.add_argument("--seed", type=nonneg_int_arg, default=0, help="seed for random conductances when no file is given")
    p.add_argument("--g-min", type=positive_float_arg, default=1e-6, help="random conductances: lower bound [S]")
    p.add_argument("--g-max", type=positive_float_arg, default=25e-6, help="random conductances: upper bound [S]")


def spec_and_G(args):
    """The array spec and conductances of ``--conductances`` or ``--rows/--cols`` (and the wire options)."""
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


def calibration_arg(path: str | None, option: str = "--calibration"):
    """``--calibration FILE`` (or another ``option`` that takes one), read once."""
    if path is None:
        return None
    if Path(path).is_dir():
        raise ParameterError(f"{option} {path} is a folder: give its calibration.json (or blocks/fits.json)")
    return load_calibration(path)


def spice_engine(args):
    """The ngspice runner of ``xbar mvm``'s engine options."""
    kw = {"timeout": args.timeout}
    if args.engine == "subprocess":
        kw.update(workers=args.workers, keep_files=args.keep_decks is not None, workdir=args.keep_decks)
    return make_engine(args.engine, **kw)

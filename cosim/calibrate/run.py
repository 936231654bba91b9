"""``xbar calibrate`` as one library call: the IR-drop sweep and fit, the block fits, the report.

Layer: cosim.calibrate. A :class:`CalibrationPlan` says what to run; :data:`DEFAULT_PLAN` and
:data:`QUICK_PLAN` are the presets the command line offers (``--quick``), and
``dataclasses.replace`` makes a variant. :func:`calibrate` runs a plan into a folder (resumable:
finished ngspice cases and block fits made with the same settings are reused) and returns a
summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cosim.calibrate.blocks import BlockFitSettings, calibrate_blocks, report_markdown
from cosim.calibrate.ir_cases import SPICE_CELLS, array_shape
from cosim.calibrate.irfit import run_ir_calibration
from cosim.sim.files import RunLock, atomic_json, atomic_write
from models.errors import ParameterError

__all__ = ["CalibrationPlan", "DEFAULT_PLAN", "QUICK_PLAN", "calibrate"]


@dataclass(frozen=True)
class CalibrationPlan:
    """What ``xbar calibrate`` runs.

    Attributes
    ----------
    sizes : tuple
        Array sizes of the IR-drop sweep: N (N x N) or (rows, cols).
    r_wires : tuple of float
        Wire resistances per segment of the sweep [ohm].
    train_per_point, test_per_point : int
        Training and held-out cases per (size, r_wire).
    batch : int
        Input vectors per case.
    seed : int
    monte_carlo_runs : int
        Monte Carlo runs of non-idealities on the calibrated model (0: none).
    timing : bool
        Time the model against the exact solve.
    blocks : BlockFitSettings or None
        Fit the device step tables, integrator/ADC transfers and a Monte Carlo sweep too
        (None: skip them).
    spice_cells : int
        Arrays of more cells are read by the exact solver, with one ngspice check case per shape
        (:mod:`cosim.calibrate.ir_cases`).
    """

    sizes: tuple = (16, 32, 64, 128, 256)
    r_wires: tuple[float, ...] = (0.5, 1.0, 2.5)
    train_per_point: int = 4
    test_per_point: int = 2
    batch: int = 16
    seed: int = 0
    monte_carlo_runs: int = 0
    timing: bool = True
    blocks: BlockFitSettings | None = field(default_factory=BlockFitSettings)
    spice_cells: int = SPICE_CELLS

    def __post_init__(self) -> None:
        shapes = [array_shape(s) for s in self.sizes]       # validates
        object.__setattr__(self, "sizes", tuple(n if n == m else (n, m) for n, m in shapes))
        object.__setattr__(self, "r_wires", tuple(float(r) for r in self.r_wires))
        for r in self.r_wires:
            if not (np.isfinite(r) and r > 0):
                raise ParameterError(f"r_wire values must be > 0 ohm, got {r!r}")
        for f in ("train_per_point", "test_per_point", "batch", "spice_cells"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"{f} must be an integer >= 1, got {v!r}")
        if isinstance(self.monte_carlo_runs, bool) or self.monte_carlo_runs < 0:
            raise ParameterError(f"monte_carlo_runs must be >= 0, got {self.monte_carlo_runs!r}")

    def with_cases(self, n: int) -> "CalibrationPlan":
        """``n`` training cases per point and half as many held out (at least one)."""
        return replace(self, train_per_point=n, test_per_point=max(1, n // 2))


#: ``xbar calibrate``: sizes 16-256, 0.5-2.5 ohm, every block fit. (One coefficient set fitted over
#: 16-512 measured worse at 256 x 256 than this one: calibrate 512-cell-line arrays on their own,
#: ``--sizes 512 256x512 512x256``, read by the exact solver; docs/interop.md.)
DEFAULT_PLAN = CalibrationPlan()
#: ``xbar calibrate --quick``: a small sweep and fewer block-fit runs (seconds).
QUICK_PLAN = CalibrationPlan(sizes=(8, 16, 32), r_wires=(1.0, 2.5), train_per_point=2, test_per_point=1,
                             blocks=BlockFitSettings(pulses=20, seeds=(0, 1), holdout_seeds=(100,), mc_runs=10))


def calibrate(out_dir, plan: CalibrationPlan = DEFAULT_PLAN, *, workers: int = 1, scheduler: str | None = None,
              progress=None) -> dict:
    """Run ``plan`` into ``out_dir``: ``calibration.json``, ``report.md``, ``report.json``, plots,
    ``sweep/`` and, with block fits, ``blocks/fits.json`` (named by ``calibration.json``'s
    ``"blocks"`` entry, its tables appended to ``report.md``). ``progress(msg)`` hears which
    block is being fitted. Returns the IR summary of :func:`cosim.calibrate.irfit.run_ir_calibration`
    with ``"blocks"`` (the fits, or None) and ``"blocks_reused"``."""
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ParameterError(f"workers must be an integer >= 1, got {workers!r}")
    out = Path(out_dir)
    with RunLock(out, "calibrate"):
        return _calibrate(out, plan, workers, scheduler, progress)


def _complete_blocks(out: Path) -> str | None:
    """The ``"blocks"`` entry of ``out``'s calibration.json when the fits it names are there."""
    try:
        entry = json.loads((out / "calibration.json").read_text()).get("blocks")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return entry if isinstance(entry, str) and (out / entry).is_file() else None


def _calibrate(out: Path, plan: CalibrationPlan, workers: int, scheduler: str | None, progress) -> dict:
    kept = _complete_blocks(out) if plan.blocks is not None else None
    s = run_ir_calibration(out, sizes=plan.sizes, r_wires=plan.r_wires, train_per_point=plan.train_per_point,
                           test_per_point=plan.test_per_point, batch=plan.batch, seed=plan.seed, workers=workers,
                           scheduler=scheduler, monte_carlo_runs=plan.monte_carlo_runs, timing=plan.timing,
                           spice_cells=plan.spice_cells)
    s["blocks"], s["blocks_reused"] = None, False
    cal_path = out / "calibration.json"
    if kept is not None:            # the last complete block fits stay named until new ones replace them
        atomic_json(cal_path, {**json.loads(cal_path.read_text()), "blocks": kept}, indent=2)
    if plan.blocks is not None:
        res, reused = calibrate_blocks(out, plan.blocks, progress=progress)
        text = report_markdown(res)
        atomic_write(out / "report.md", (out / "report.md").read_text() + "\n" + text + "\n")
        d = json.loads(cal_path.read_text())
        d["blocks"] = str(Path("blocks") / "fits.json")
        atomic_json(cal_path, d, indent=2)
        s["blocks"], s["blocks_reused"], s["blocks_text"] = res, reused, text
    return s

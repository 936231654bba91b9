"""The cases of the IR-drop calibration sweep: random arrays and inputs read in ngspice.

Layer: cosim.calibrate. An :class:`ArrayCase` is one job of the sweep
(:func:`cosim.sim.sweep.run_sweep`): a random array (conductances uniform, log-uniform or
bimodal) and a batch of random inputs (uniform, sparse or binary), read in ngspice by
:func:`spice_case`; :func:`default_cases` lays out the sweep over sizes and wire resistances,
training cases for the fit and held-out ones for the error table.

Arrays of more than :data:`SPICE_CELLS` cells are read by the exact nodal solver instead
(:class:`SolverCase`): one ngspice case of 16 vectors takes about 6 minutes at 512 x 512 on two
cores, the solver half a second, and it agrees with ngspice to about 1e-12 of full scale. The
solver is not taken on trust: every such shape also gets one ngspice ``check`` case of
:data:`CHECK_BATCH` vectors at the sweep's largest wire resistance, which the calibration solves
again with the solver and refuses to go on without agreement (:func:`check_reference`).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np

from cosim.read.mvm import Crossbar
from cosim.sim.engine import SubprocessEngine
from cosim.sim.sweep import CaseResult
from models.errors import ParameterError
from netlists.crossbar import MAX_CELLS, CrossbarSpec

__all__ = ["G_DISTS", "V_DISTS", "ArrayCase", "array_shape", "draw_case", "spice_case", "default_cases", "CaseData",
           "case_data", "SolverCase", "check_reference", "SPICE_CELLS"]

G_DISTS = ("uniform", "loguniform", "bimodal")
V_DISTS = ("uniform", "sparse", "binary")
SPICE_TIMEOUT_S = 1800.0
#: Sweep arrays of more cells than this are read by the exact solver, checked against ngspice.
SPICE_CELLS = 256 * 256
#: Input vectors of the ngspice check case of a solver-read shape.
CHECK_BATCH = 2
#: Largest disagreement (fraction of full scale) of the solver with a check case.
CHECK_TOL = 1e-8
SPLITS = ("train", "test", "check")


@dataclass(frozen=True)
class ArrayCase:
    """One SPICE case: a random square-or-not array and a batch of random inputs.

    Attributes
    ----------
    rows, cols : int
    r_wire : float
        Row and column wire resistance per segment [ohm] (> 0).
    g_min, g_max : float
        Conductance range [S].
    g_dist : str
        "uniform", "loguniform" or "bimodal" (half near g_min, half near g_max: binary weights).
    v_dist : str
        "uniform" in [0, v_read], "sparse" (uniform, 70 % zeros) or "binary" (0 or v_read).
    batch : int
        Input vectors (one ``.dc`` point each).
    v_read : float
        Full-scale input [V].
    split : str
        "train", "test", or "check" (an ngspice case that verifies the solver-read cases of its
        shape; not fitted on).
    replica : int
        Distinguishes otherwise identical cases.
    """

    rows: int
    cols: int
    r_wire: float
    g_min: float = 1e-6
    g_max: float = 25e-6
    g_dist: str = "uniform"
    v_dist: str = "uniform"
    batch: int = 16
    v_read: float = 0.2
    split: str = "train"
    replica: int = 0

    def __post_init__(self) -> None:
        for f in ("rows", "cols", "batch"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ParameterError(f"{f} must be a positive integer, got {v!r}")
        if not (np.isfinite(self.r_wire) and self.r_wire > 0):
            raise ParameterError(f"r_wire must be > 0 ohm (IR drop needs wires), got {self.r_wire!r}")
        if not (0 < self.g_min < self.g_max and np.isfinite(self.g_max)):
            raise ParameterError(f"need 0 < g_min < g_max, got {self.g_min!r} and {self.g_max!r}")
        if self.g_dist not in G_DISTS:
            raise ParameterError(f"g_dist must be one of {G_DISTS}, got {self.g_dist!r}")
        if self.v_dist not in V_DISTS:
            raise ParameterError(f"v_dist must be one of {V_DISTS}, got {self.v_dist!r}")
        if not self.v_read > 0:
            raise ParameterError(f"v_read must be > 0 V, got {self.v_read!r}")
        if self.split not in SPLITS:
            raise ParameterError(f"split must be one of {SPLITS}, got {self.split!r}")

    #: Who reads the case (the report says so).
    reference = "ngspice"

    @property
    def spec(self) -> CrossbarSpec:
        return CrossbarSpec(rows=self.rows, cols=self.cols, r_row=self.r_wire, r_col=self.r_wire,
                            v_read=self.v_read)


class SolverCase(ArrayCase):
    """A case read by the exact nodal solver (:class:`cosim.read.solver.CrossbarSolver`) instead
    of ngspice: the sweep's arrays above :data:`SPICE_CELLS` cells (a distinct type, so a
    distinct sweep key)."""

    reference = "exact solver"


def draw_case(case: ArrayCase, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Conductances (rows, cols) [S] and inputs (batch, rows) [V] of a case."""
    shape = (case.rows, case.cols)
    lo, hi = case.g_min, case.g_max
    if case.g_dist == "uniform":
        G = rng.uniform(lo, hi, shape)
    elif case.g_dist == "loguniform":
        G = np.exp(rng.uniform(np.log(lo), np.log(hi), shape))
    else:
        on = rng.random(shape) < 0.5
        G = np.where(on, hi, lo) * rng.uniform(0.9, 1.0, shape)
        G = np.clip(G, lo, hi)
    V = rng.uniform(0.0, case.v_read, (case.batch, case.rows))
    if case.v_dist == "sparse":
        V *= rng.random(V.shape) < 0.3
    elif case.v_dist == "binary":
        V = case.v_read * (rng.random(V.shape) < 0.5)
    return G, V


def spice_case(case: ArrayCase, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Sweep task: draw the case, read it in ngspice (one ``.dc`` deck) or, for a
    :class:`SolverCase`, with the exact solver; return G, V, I."""
    G, V = draw_case(case, rng)
    if isinstance(case, SolverCase):
        return {"G": G, "V": V, "I": Crossbar(case.spec, G).read(V, backend="fast")}
    engine = SubprocessEngine(workers=1, timeout=SPICE_TIMEOUT_S)
    I = Crossbar(case.spec, G, engine=engine).read(V, backend="spice", workers=1)
    return {"G": G, "V": V, "I": I}


def check_reference(checks: Sequence["CaseData"]) -> list[dict]:
    """Solve every ngspice ``check`` case again with the exact solver; one row per case with the
    largest disagreement as a fraction of full scale. Raises :class:`ParameterError` (naming the
    shape) when it exceeds :data:`CHECK_TOL`: the solver-read cases of that shape cannot stand in
    for ngspice, and the calibration must not be fitted on them."""
    rows = []
    for d in checks:
        exact = Crossbar(d.case.spec, d.G).read(d.V, backend="fast")
        dev = float(np.abs(exact - d.I).max() / d.full_scale)
        rows.append({"size": f"{d.case.rows}x{d.case.cols}", "r_wire": d.case.r_wire, "vectors": int(d.V.shape[0]),
                     "solver_vs_spice_max": dev})
        if not dev <= CHECK_TOL:
            raise ParameterError(
                f"the exact solver disagrees with ngspice on the {d.case.rows}x{d.case.cols} check case by {dev:.2e} "
                f"of full scale (tolerance {CHECK_TOL:g}): the solver-read cases of that shape cannot stand in for "
                "ngspice. Read them in ngspice instead (a larger --spice-cells)")
    return rows


def array_shape(size) -> tuple[int, int]:
    """A sweep size as (rows, cols): N is N x N, (rows, cols) or "ROWSxCOLS" as it is."""
    if isinstance(size, str):
        parts = size.lower().split("x")
        try:
            size = int(parts[0]) if len(parts) == 1 else tuple(int(p) for p in parts)
        except ValueError:
            raise ParameterError(f"an array size is N or ROWSxCOLS (e.g. 256x512), got {size!r}") from None
    if isinstance(size, (tuple, list)) and len(size) == 2:
        rows, cols = size
    else:
        rows = cols = size
    for v in (rows, cols):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ParameterError(f"array sizes must be positive integers (N or ROWSxCOLS), got {size!r}")
    if rows * cols > MAX_CELLS:
        raise ParameterError(f"array size {rows}x{cols} has {rows * cols:,} cells, more than one array can have "
                             f"({MAX_CELLS:,}, 8192 x 8192)")
    return int(rows), int(cols)


def default_cases(sizes: Sequence = (16, 32, 64, 128, 256), r_wires: Sequence[float] = (0.5, 1.0, 2.5),
                  *, train_per_point: int = 4, test_per_point: int = 2, batch: int = 16,
                  g_min: float = 1e-6, g_max: float = 25e-6, v_read: float = 0.2,
                  spice_cells: int = SPICE_CELLS) -> list[ArrayCase]:
    """The default sweep: for every (size, r_wire), ``train_per_point`` training cases cycling
    through the conductance and input distributions, and ``test_per_point`` held-out ones.
    A size is N (N x N) or (rows, cols) (:func:`array_shape`). Shapes of more than
    ``spice_cells`` cells are :class:`SolverCase` s, each shape with one ngspice ``check`` case
    (uniform, :data:`CHECK_BATCH` vectors, the largest r_wire), after all the other cases."""
    shapes = [array_shape(s) for s in sizes]
    for r in r_wires:
        if not (np.isfinite(r) and r > 0):
            raise ParameterError(f"r_wire values must be > 0 ohm, got {r!r}")
    if train_per_point < 1 or test_per_point < 1:
        raise ParameterError("need at least one training and one test case per (size, r_wire)")
    if isinstance(spice_cells, bool) or not isinstance(spice_cells, (int, np.integer)) or spice_cells < 1:
        raise ParameterError(f"spice_cells must be a positive integer, got {spice_cells!r}")
    combos = [(g, v) for g in G_DISTS for v in V_DISTS]
    cases, checks = [], []
    for n, m in shapes:
        kind = SolverCase if n * m > spice_cells else ArrayCase
        for r in r_wires:
            for split, count, shift in (("train", train_per_point, 0), ("test", test_per_point, 4)):
                for k in range(count):
                    g, v = combos[(k + shift) % len(combos)]
                    cases.append(kind(n, m, float(r), g_min, g_max, g, v, batch, v_read, split, k))
        if kind is SolverCase:
            checks.append(ArrayCase(n, m, float(max(r_wires)), g_min, g_max, "uniform", "uniform", CHECK_BATCH,
                                    v_read, "check", 0))
    # the checks last: a sweep that grows by solver-read shapes keeps the keys of the cases it had
    return cases + checks


@dataclass(frozen=True, eq=False)
class CaseData:
    """A finished sweep case: its conductances G [S], inputs V [V] and ngspice currents I [A]."""

    case: ArrayCase
    G: np.ndarray
    V: np.ndarray
    I: np.ndarray

    @property
    def full_scale(self) -> float:
        return float(self.case.v_read * self.G.sum(axis=0).max())


def case_data(results: Sequence[CaseResult], cases: Sequence[ArrayCase] | None = None) -> list[CaseData]:
    """The successful cases of a sweep as :class:`CaseData` (with ``cases``, the sweep's own case
    objects, so that solver-read ones keep their type)."""
    out = []
    for r in results:
        if r.ok:
            case = cases[r.index] if cases is not None else ArrayCase(**r.case)
            out.append(CaseData(case, r.arrays["G"], r.arrays["V"], r.arrays["I"]))
    return out

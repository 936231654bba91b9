"""Analog matrix-vector products through a crossbar: forward and transposed reads on three
backends that share one circuit description.

Layer: cosim.read. ``spice`` writes the IR as an ngspice deck (a batch of inputs becomes one ``.dc``
sweep per worker) and is the ground truth; ``fast`` stamps the same IR into the exact
structured solver; ``ideal`` is V @ G with no parasitics; ``calibrated`` is the cheap IR-drop
model of :mod:`cosim.read.irmodel` with the coefficients of a calibration (``xbar calibrate``).

>>> import numpy as np
>>> from netlists.crossbar import CrossbarSpec
>>> from cosim.read.mvm import Crossbar
>>> xb = Crossbar(CrossbarSpec(rows=8, cols=4, r_row=1.0, r_col=1.0), np.full((8, 4), 10e-6))
>>> I = xb.read(np.full((2, 8), 0.1), backend="fast")     # (2, 4) column currents [A]
>>> I.shape
(2, 4)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from cosim.read.irmodel import Calibration, IRModel
from cosim.read.solver import CrossbarSolver
from cosim.sim.engine import Engine, SubprocessEngine
from netlists.crossbar import (
    CrossbarCircuit, CrossbarSpec, build_crossbar, check_conductances, check_inputs,
)
from netlists.spice import BatchSweep, write_spice
from netlists.validate import validate

Backend = Literal["spice", "fast", "ideal", "calibrated"]
BACKENDS = ("spice", "fast", "ideal", "calibrated")


#: (spec, transpose) pairs whose circuit passed the DC-path check: build_crossbar's topology
#: depends on them only, so later conductance states skip the search (10 ms at 256 x 256).
_CONNECTED: set = set()


class LinearRead:
    """One state's exact read, a linear map X (batch, n_in) -> X @ T: a batch of fewer vectors than
    inputs is solved as it is; a larger one goes through T = solve(I), built once per state (then a
    batch costs a matrix product). The choice depends on the batch alone, never on what was read
    before, so a run resumed from a checkpoint reads bit for bit as the run it continues."""

    def __init__(self, solve, n_in: int):
        self._solve, self.n_in = solve, n_in
        self._T: np.ndarray | None = None

    #: Input lines solved at once while T is built: both transfers of a 256 x 256 array peaked at
    #: 0.73 GB of resident memory in one batch, 0.47 GB in blocks of 128 (and 13 % faster).
    BLOCK = 128

    def matrix(self) -> np.ndarray:
        """T (n_in, n_out): the answer to each input alone."""
        if self._T is None:
            eye = np.eye(self.n_in)
            self._T = np.concatenate([self._solve(eye[a:a + self.BLOCK]) for a in range(0, self.n_in, self.BLOCK)])
        return self._T

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return X @ self.matrix() if len(X) >= self.n_in else self._solve(X)

    def fields(self, fields: list[np.ndarray]) -> list[np.ndarray]:
        """Several fields (..., n_in) read as one batch: the outputs (..., n_out) of each."""
        return split_like(self(stack_rows(fields)), fields)


def stack_rows(fields: list[np.ndarray]) -> np.ndarray:
    """The rows of several fields (..., n) stacked into one batch (rows, n)."""
    return np.concatenate([f.reshape(-1, f.shape[-1]) for f in fields])


def split_like(rows: np.ndarray, fields: list[np.ndarray]) -> list[np.ndarray]:
    """Output rows of fields whose rows were stacked, back in each field's leading shape."""
    parts, k = [], 0
    for f in fields:
        n = int(np.prod(f.shape[:-1]))
        parts.append(rows[k:k + n].reshape(*f.shape[:-1], -1))
        k += n
    return parts


class Crossbar:
    """One crossbar array at one conductance state, readable forward and transposed.

    Parameters
    ----------
    spec : CrossbarSpec
    G : ndarray, shape ``spec.g_shape``
        Cell conductances [S] (differential arrays: G+ and G- interleaved).
    engine : Engine, optional
        ngspice runner for the spice backend (default: ``SubprocessEngine()``).
    keep_decks : path, optional
        Folder where every deck run by the spice backend is written.
    """

    def __init__(self, spec: CrossbarSpec, G: np.ndarray, *, engine: Engine | None = None,
                 keep_decks: str | Path | None = None):
        self.spec = spec
        self.G = check_conductances(spec, G)
        self.engine = engine
        self.keep_decks = Path(keep_decks) if keep_decks is not None else None
        self._circuits: dict[bool, CrossbarCircuit] = {}
        self._solvers: dict[bool, CrossbarSolver] = {}
        self._exact: dict[bool, LinearRead] = {}

    # -- building blocks ----------------------------------------------------------------------
    def circuit(self, transpose: bool = False) -> CrossbarCircuit:
        """The validated circuit IR for one read direction (built once)."""
        if transpose not in self._circuits:
            xc = build_crossbar(self.spec, self.G, transpose=transpose)
            key = (self.spec, transpose)     # the topology build_crossbar gives: the same for every G
            validate(xc.circuit, connectivity=key not in _CONNECTED)
            _CONNECTED.add(key)
            self._circuits[transpose] = xc
        return self._circuits[transpose]

    def deck(self, V: np.ndarray, transpose: bool = False) -> str:
        """The ngspice deck that reads the batch ``V`` (one ``.dc`` sweep point per vector)."""
        V = check_inputs(self.spec, V, transpose)
        xc = self.circuit(transpose)
        return write_spice(xc.circuit, BatchSweep(xc.drive_values(V)))

    def solver(self, transpose: bool = False) -> CrossbarSolver:
        """The fast solver for one direction, factored once per conductance state."""
        if transpose not in self._solvers:
            self._solvers[transpose] = CrossbarSolver(self.circuit(transpose).circuit)
        return self._solvers[transpose]

    def transfer(self, transpose: bool = False) -> np.ndarray:
        """The exact map at this state, wires included: (rows, cols) forward or (cols, rows)
        transposed [S], so that a read of inputs V [V] is ``V @ transfer()`` [A] (differential
        arrays: I+ - I-). Built once per direction: the solver's answer to each input line alone.

        A read is linear in its inputs, so this is the fast backend's answer at the cost of a
        matrix product; building it costs a solve of as many vectors as there are input lines.
        :meth:`read` reads a batch of at least that many vectors through it (a test set,
        inference); it agrees with the direct solve to the solver's tolerance (about 1e-11 of
        full scale at 256 x 256 and 512 x 512)."""
        return self._linear(transpose).matrix()

    def _linear(self, transpose: bool) -> LinearRead:
        if transpose not in self._exact:
            # the closure holds the circuit and its solver, not the Crossbar: a cycle through self
            # would keep every state's arrays until the cyclic collector ran (training at 256 x
            # 256 grew by gigabytes between its passes)
            xc, solver = self.circuit(transpose), self.solver(transpose)

            def solve(V: np.ndarray) -> np.ndarray:
                return xc.outputs(solver.solve(xc.drive_values(V)))
            self._exact[transpose] = LinearRead(solve, self.spec.cols if transpose else self.spec.rows)
        return self._exact[transpose]

    # -- reads --------------------------------------------------------------------------------
    def read(self, V: np.ndarray, *, transpose: bool = False, backend: Backend = "fast",
             workers: int | None = None, calibration=None) -> np.ndarray:
        """Read the array.

        Parameters
        ----------
        V : ndarray (batch, rows) or (batch, cols) if ``transpose`` [V]
            Row voltages (forward) or column voltages (transposed); a 1-D vector is a batch of 1.
        transpose : bool
            Drive the columns at their sense ends and sense the rows at their driver ends.
        backend : "spice", "fast", "ideal" or "calibrated"
        workers : int, optional
            spice backend: ngspice processes to split the batch over (default: the engine's).
        calibration : cosim.read.irmodel.Calibration or IRModel, optional
            calibrated backend: the fitted model.

        Returns
        -------
        ndarray (batch, cols) forward or (batch, rows) transposed [A]
            Currents into the virtual grounds (differential arrays: I+ - I-).
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        V = check_inputs(self.spec, V, transpose)
        if backend == "ideal":
            return self._ideal(V, transpose)
        if backend == "calibrated":
            W = self._calibrated_weights(calibration)
            return V @ W.T if transpose else V @ W
        if backend == "fast":       # one solve per vector, or the state's transfer for a large batch
            return self._linear(transpose)(V)
        xc = self.circuit(transpose)
        return xc.outputs(self._spice(xc, xc.drive_values(V), workers))

    def _ideal(self, V: np.ndarray, transpose: bool) -> np.ndarray:
        W = self.weights()
        return V @ W.T if transpose else V @ W

    def _calibrated_weights(self, calibration) -> np.ndarray:
        if calibration is None:
            raise ValueError("the calibrated backend needs calibration= (a Calibration or an IRModel: load the "
                             "calibration.json of `xbar calibrate` with Calibration.load)")
        model = calibration.model if isinstance(calibration, Calibration) else calibration
        if not isinstance(model, IRModel):
            raise ValueError(f"calibration must be a loaded Calibration or IRModel (Calibration.load(path)), got "
                             f"{type(calibration).__name__}")
        cached = getattr(self, "_cal_cache", None)
        if cached is None or cached[0] != model:       # one effective matrix per conductance state
            self._cal_cache = (model, model.effective_weights(self.spec, self.G))
        return self._cal_cache[1]

    def weights(self) -> np.ndarray:
        """The effective conductance matrix (rows, cols) [S]: G, or G+ - G- for pairs."""
        if self.spec.cell == "diff":
            return self.G[:, 0::2] - self.G[:, 1::2]
        return self.G

    def _spice(self, xc: CrossbarCircuit, drive: np.ndarray, workers: int | None) -> np.ndarray:
        engine = self.engine or SubprocessEngine(keep_files=self.keep_decks is not None,
                                                 workdir=self.keep_decks)
        n_workers = max(1, min(workers or engine.workers, drive.shape[0]))
        bounds = np.linspace(0, drive.shape[0], n_workers + 1).astype(int)
        chunks = [drive[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        decks = [write_spice(xc.circuit, BatchSweep(c)) for c in chunks]
        names = [f"i({n.lower()})" for n in xc.circuit.sense_names()]
        results = engine.run_many(decks, need=names, points=[len(c) for c in chunks], name="mvm")
        return np.concatenate([np.column_stack([r.vectors[n] for n in names]) for r in results], axis=0)


def mvm(G: np.ndarray, V: np.ndarray, spec: CrossbarSpec, *, transpose: bool = False,
        backend: Backend = "fast", engine: Engine | None = None, workers: int | None = None) -> np.ndarray:
    """One-call read: ``Crossbar(spec, G, engine=engine).read(V, ...)``."""
    return Crossbar(spec, G, engine=engine).read(V, transpose=transpose, backend=backend, workers=workers)

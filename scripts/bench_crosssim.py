"""Benchmark: our IR-drop models beside Sandia CrossSim's circuit solver, measured in one run.

    python scripts/bench_crosssim.py --calibration xbar-out/calibrate/calibration.json
    python scripts/bench_crosssim.py --calibration CAL --sizes 64 128 --r-wire 1

It installs nothing: CrossSim (3.2, https://github.com/sandialabs/cross-sim, ``pip install .`` in
its checkout; CPU needs only numpy and scipy) must be importable, or the script says why it
cannot run and exits 2.

Same arrays for every solver: N x N cells uniform in 1-25 uS, 1 or 2.5 ohm per wire segment on
both wires, 100 input vectors uniform in [0, 1] V (our arrays' read drive is one-signed;
``--inputs signed`` draws them in [-1, 1] V, which makes CrossSim's absolute threshold relatively
looser and our relative errors larger, as the largest current is smaller). CrossSim's non-interleaved input-source
array is our topology with its matrix transposed (inputs drive the rows at one end, columns are
sensed after the last row into a virtual ground). The reference is our exact solver (it agrees
with ngspice to about 1e-12). Errors are RMSE / largest error over the largest exact current.

CrossSim runs at its default settings (convergence threshold 1e-3 V, relaxation factor 1).
Where its iteration diverges at factor 1 (large N r g), it restarts on its own with a smaller
factor, which can take thousands of iterations; ``--preset-gamma`` (default on) first probes one
vector with factors 1, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2 and times the batch at the first that
converges, as a user who tuned it would. Times are wall seconds of one run each: ours
(calibrated: effective weights from G, then V @ W), our exact solve (factorisation included),
CrossSim; ratios come from the same run. Beside them, the exact transfer of the state
(``Crossbar.transfer``: one solve per row, built once, then every read is a matrix product), the
exact answer for workloads that read one state many times.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time

import numpy as np

from cosim.read.irmodel import Calibration
from cosim.read.kernels import compiled
from cosim.read.mvm import Crossbar
from cosim.sim.files import publish
from netlists.crossbar import CrossbarSpec

G_LO, G_HI = 1e-6, 25e-6
GAMMAS = (1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2)


def crosssim_or_exit():
    """CrossSim's parameter class and solver, or exit 2 saying why they cannot be had."""
    try:
        from simulator import CrossSimParameters
        from simulator.backend import ComputeBackend
        from simulator.circuits.array import NoninterleavedInputSourceArray
    except ImportError as exc:
        sys.exit(f"bench_crosssim: CrossSim cannot be imported ({exc}). Install it from its repository "
                 "(git clone https://github.com/sandialabs/cross-sim && pip install ./cross-sim) into this "
                 "environment, then run again.")
    ComputeBackend(use_gpu=False)
    return CrossSimParameters, NoninterleavedInputSourceArray


def crosssim_solver(r: float, gamma: float, max_iters: int | None = None):
    Params, Solver = crosssim_or_exit()
    p = Params()
    p.xbar.device.Rmin = 1.0 / G_HI              # conductances normalised by g_max
    par = p.xbar.array.parasitics
    par.enable, par.Rp_row, par.Rp_col, par.current_from_input = True, r, r, True
    p.core.balanced.interleaved_posneg = False
    p.simulation.relaxation_gamma = gamma
    p.simulation.hide_convergence_msg = True
    if max_iters is not None:
        p.simulation.Niters_max_parasitics = max_iters
    return Solver(p)


def crosssim_read(G: np.ndarray, V: np.ndarray, r: float, gamma: float) -> tuple[np.ndarray, float, float]:
    """Currents (batch, cols) [A], wall seconds, and the factor CrossSim ended with."""
    solver = crosssim_solver(r, gamma)
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        out = solver.iterative_solve(G.T / G_HI, V.T, row_in=True)
        dt = time.perf_counter() - t0
    return np.asarray(out).T * G_HI, dt, float(solver.gamma)


def probe_gamma(G: np.ndarray, V: np.ndarray, r: float) -> float:
    """The largest factor of GAMMAS at which one vector converges without a restart."""
    for gamma in GAMMAS:
        solver = crosssim_solver(r, gamma)
        try:                                      # one attempt, no silent restarts
            with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
                solver.solve_mvm(V[:1].T, G.T / G_HI, row_in=True)
        except (RuntimeError, FloatingPointError):
            continue
        return gamma
    return GAMMAS[-1]


def rel(err: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    scale = float(np.abs(ref).max())
    return float(np.sqrt(np.mean(err ** 2)) / scale), float(np.abs(err).max() / scale)


def bench_case(N: int, r: float, cal: Calibration, *, batch: int, seed: int, preset: bool, signed: bool) -> dict:
    rng = np.random.default_rng(seed)
    G = rng.uniform(G_LO, G_HI, (N, N))
    V = rng.uniform(-1.0 if signed else 0.0, 1.0, (batch, N))
    spec = CrossbarSpec(N, N, r_row=r, r_col=r, v_read=1.0)
    t0 = time.perf_counter()
    exact = Crossbar(spec, G).solver().solve(V)        # the solver on every vector (plain cells: drives = V)
    t_exact = time.perf_counter() - t0
    xb = Crossbar(spec, G)
    t0 = time.perf_counter()
    xb.transfer()
    t_build = time.perf_counter() - t0
    t_through = float("inf")
    for _ in range(3):                                  # best of 3: the first product pays BLAS's start-up
        t0 = time.perf_counter()
        through = xb.read(V, backend="fast")            # the state's exact transfer, built above
        t_through = min(t_through, time.perf_counter() - t0)
    t0 = time.perf_counter()
    ours = Crossbar(spec, G).read(V, backend="calibrated", calibration=cal)
    t_ours = time.perf_counter() - t0
    gamma = probe_gamma(G, V, r) if preset else 1.0
    cs, t_cs, gamma_end = crosssim_read(G, V, r, gamma)
    row = {"N": N, "r": r, "batch": batch, "gamma": gamma, "gamma_end": gamma_end,
           "t_exact": t_exact, "t_ours": t_ours, "t_crosssim": t_cs,
           "t_transfer_build": t_build, "t_transfer_read": t_through, "err_transfer": rel(through - exact, exact),
           "err_none": rel(V @ G - exact, exact), "err_ours": rel(ours - exact, exact),
           "err_crosssim": rel(cs - exact, exact)}
    row["ours_better"] = row["err_ours"][0] <= row["err_crosssim"][0]
    return row


def table(rows: list[dict], cal_path: str) -> str:
    def e(p):
        return f"{p[0]:.1e} / {p[1]:.1e}"

    lines = [f"Calibration: {cal_path}. Errors: RMSE / max over the largest exact current; "
             f"{rows[0]['batch']} vectors.", "",
             "| N | r [ohm] | no IR model | CrossSim | ours (calibrated) | ours <= CrossSim | CrossSim factor "
             "| exact [s] | ours [s] | CrossSim [s] | CrossSim / ours | exact / ours "
             "| exact transfer: build [s] | its reads [s] | its error | CrossSim / its reads |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['N']} | {r['r']:g} | {e(r['err_none'])} | {e(r['err_crosssim'])} | {e(r['err_ours'])} "
                     f"| {'yes' if r['ours_better'] else '**no**'} | {r['gamma']:g} -> {r['gamma_end']:.3g} "
                     f"| {r['t_exact']:.3f} | {r['t_ours']:.4f} | {r['t_crosssim']:.2f} "
                     f"| {r['t_crosssim'] / r['t_ours']:.0f}x | {r['t_exact'] / r['t_ours']:.1f}x "
                     f"| {r['t_transfer_build']:.3f} | {r['t_transfer_read']:.4f} | {e(r['err_transfer'])} "
                     f"| {r['t_crosssim'] / r['t_transfer_read']:.0f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calibration", required=True, help="calibration.json of `xbar calibrate`")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--r-wire", type=float, nargs="+", default=[1.0, 2.5])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--preset-gamma", action=argparse.BooleanOptionalAction, default=True,
                    help="probe CrossSim's relaxation factor on one vector first (default on)")
    ap.add_argument("--inputs", choices=["unsigned", "signed"], default="unsigned",
                    help="input voltages uniform in [0, 1] V (default) or [-1, 1] V")
    ap.add_argument("--out", default="xbar-out/bench", help="folder for bench_crosssim.md / .json")
    args = ap.parse_args(argv)
    crosssim_or_exit()
    compiled()                                   # numba compiles (or loads its cache) here, not in a timing
    cal = Calibration.load(args.calibration)
    rows = []
    for N in args.sizes:
        for r in args.r_wire:
            rows.append(bench_case(N, r, cal, batch=args.batch, seed=args.seed, preset=args.preset_gamma,
                                   signed=args.inputs == "signed"))
            print(table(rows[-1:], args.calibration).splitlines()[-1], file=sys.stderr, flush=True)
    publish(args.out, "bench_crosssim", table(rows, args.calibration), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

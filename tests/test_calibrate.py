"""Sweeps (serial and Dask, resume, failures) and the calibrated cheap IR-drop model, on real ngspice."""

from __future__ import annotations

import json
from dataclasses import replace
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cosim.calibrate.aihwkit import to_aihwkit
from cosim.calibrate.ir_cases import ArrayCase, case_data, default_cases, spice_case
from cosim.calibrate.irfit import HIGHER_ORDER, case_errors, fit_model
from cosim.read.irmodel import (
    FEATURES, Calibration, IRModel, cross_term, ir_features, line_loadings, mean_field_cross,
)
from cosim.read.mvm import Crossbar
from cosim.sim.sweep import case_key, case_rng, load_case, run_sweep
from models.errors import ParameterError
from netlists.crossbar import CrossbarSpec

ROOT = Path(__file__).resolve().parent.parent

# Counts the task calls of this process (each one is one ngspice run); serial sweeps only.
_CALLS: list[str] = []


def counting_task(case, rng):
    _CALLS.append(case.replica)
    return spice_case(case, rng)


def failing_task(case, rng):
    """Case replica 1 hands ngspice a deck it rejects (a real parse error, not a mock)."""
    if case.replica == 1:
        from cosim.sim.engine import SubprocessEngine
        SubprocessEngine(workers=1, timeout=60).run("bad deck\nR1 a\n.op\n.end\n", need=["v(a)"])
    return spice_case(case, rng)


def tiny_cases(n: int = 4) -> list[ArrayCase]:
    return [ArrayCase(6, 5, 1.0 + 0.5 * k, batch=3, replica=k) for k in range(n)]


def test_case_key_and_rng_are_stable():
    c = ArrayCase(8, 8, 1.0)
    assert case_key(c, 0, 0) == case_key(ArrayCase(8, 8, 1.0), 0, 0)
    keys = {case_key(c, 0, 0), case_key(c, 1, 0), case_key(c, 0, 1), case_key(ArrayCase(8, 8, 1.5), 0, 0)}
    assert len(keys) == 4
    assert np.array_equal(case_rng(3, 7).random(5), case_rng(3, 7).random(5))
    assert not np.array_equal(case_rng(3, 7).random(5), case_rng(3, 8).random(5))
    with pytest.raises(ParameterError, match="r_wire"):
        ArrayCase(8, 8, -1.0)
    with pytest.raises(ParameterError, match="rows"):
        ArrayCase(0, 8, 1.0)


def test_sweep_identical_on_one_and_two_dask_workers(tmp_path):
    cases = tiny_cases(4)
    serial = run_sweep(cases, spice_case, tmp_path / "serial", seed=5, workers=1, progress=False)
    dask2 = run_sweep(cases, spice_case, tmp_path / "dask2", seed=5, workers=2, progress=False)
    assert serial.backend == "serial" and dask2.backend == "local-cluster"
    assert serial.ran == dask2.ran == 4 and not serial.failed and not dask2.failed
    for a, b in zip(serial.results, dask2.results):
        assert a.key == b.key
        for name in ("G", "V", "I"):
            assert np.array_equal(a.arrays[name], b.arrays[name]), name
    # every case is on disk as a JSON + NPZ pair, and reads back identical
    files = sorted(p.name for p in (tmp_path / "dask2").iterdir())
    assert files == sorted([f"{r.key}.json" for r in dask2.results] + [f"{r.key}.npz" for r in dask2.results])
    back = load_case(tmp_path / "dask2", dask2.results[2].key)
    assert np.array_equal(back.arrays["I"], serial.results[2].arrays["I"])
    # and the currents are what the read gives (G, V from the case's own generator)
    c = cases[2]
    G, V = back.arrays["G"], back.arrays["V"]
    fast = Crossbar(c.spec, G).read(V, backend="fast")
    assert np.abs(fast - back.arrays["I"]).max() < 1e-6 * np.abs(fast).max()


def test_a_damaged_record_is_named_and_its_case_runs_again(tmp_path):
    cases = tiny_cases(3)
    first = run_sweep(cases, counting_task, tmp_path, workers=1, progress=False)
    k0, k1 = first.results[0].key, first.results[1].key
    (tmp_path / f"{k0}.npz").write_bytes((tmp_path / f"{k0}.npz").read_bytes()[:50])     # cut short
    (tmp_path / f"{k1}.json").write_text("{not json")                                      # damaged by hand
    _CALLS.clear()
    with pytest.warns(RuntimeWarning, match="cannot be read") as caught:
        again = run_sweep(cases, counting_task, tmp_path, workers=1, progress=False)
    named = " ".join(str(w.message) for w in caught)
    assert f"{k0}.json" in named and f"{k1}.json" in named
    assert sorted(_CALLS) == [0, 1] and again.ran == 2 and again.skipped == 1
    assert all(np.array_equal(a.arrays["I"], b.arrays["I"]) for a, b in zip(first.results, again.results))


def test_resume_skips_finished_cases(tmp_path):
    cases = tiny_cases(3)
    _CALLS.clear()
    first = run_sweep(cases, counting_task, tmp_path, workers=1, progress=False)
    assert len(_CALLS) == 3 and first.ran == 3
    # a sweep stopped before its last case: that case's record is missing
    (tmp_path / f"{first.results[2].key}.json").unlink()
    _CALLS.clear()
    again = run_sweep(cases, counting_task, tmp_path, workers=1, progress=False)
    assert _CALLS == [2] and again.ran == 1 and again.skipped == 2
    assert all(np.array_equal(a.arrays["I"], b.arrays["I"]) for a, b in zip(first.results, again.results))
    _CALLS.clear()
    done = run_sweep(cases, counting_task, tmp_path, workers=1, progress=False)
    assert _CALLS == [] and done.ran == 0 and done.skipped == 3
    # a new case in the same folder runs alone
    _CALLS.clear()
    more = run_sweep(cases + tiny_cases(4)[3:], counting_task, tmp_path, workers=1, progress=False)
    assert len(_CALLS) == 1 and more.ran == 1


@pytest.mark.raw_decks   # failing_task hands ngspice a bad deck on purpose
def test_failing_case_is_recorded_and_the_others_kept(tmp_path):
    cases = tiny_cases(3)
    s = run_sweep(cases, failing_task, tmp_path, workers=1, progress=False)
    assert [r.status for r in s.results] == ["ok", "error", "ok"]
    bad = s.results[1]
    assert bad.error_type.startswith("Ngspice") and "ngspice" in bad.error.lower()
    meta = json.loads((tmp_path / f"{bad.key}.json").read_text())
    assert meta["status"] == "error" and meta["error"] and not (tmp_path / f"{bad.key}.npz").exists()
    assert all((tmp_path / f"{r.key}.npz").exists() for r in (s.results[0], s.results[2]))
    again = run_sweep(cases, failing_task, tmp_path, workers=1, progress=False)
    assert again.ran == 0 and len(again.failed) == 1
    retry = run_sweep(cases, failing_task, tmp_path, workers=1, progress=False, retry_failed=True)
    assert retry.ran == 1 and len(retry.failed) == 1


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    cases = default_cases((8, 16, 24), (1.0, 2.5), train_per_point=2, test_per_point=1, batch=6)
    s = run_sweep(cases, spice_case, tmp_path_factory.mktemp("cal"), seed=11, workers=1, progress=False)
    assert not s.failed
    data = case_data(s.results)
    return [d for d in data if d.case.split == "train"], [d for d in data if d.case.split == "test"]


def test_nominal_model_is_first_order_exact(engine):
    """IR drop shrinks as r; the nominal model's error must shrink as r^2 (first order exact)."""
    rng = np.random.default_rng(4)
    G = rng.uniform(1e-6, 25e-6, (12, 10))
    V = rng.uniform(0, 0.2, (4, 12))
    ratios = []
    for r in (0.2, 2.0):
        spec = CrossbarSpec(rows=12, cols=10, r_row=r, r_col=r)
        I = Crossbar(spec, G, engine=engine).read(V, backend="spice")
        drop = np.abs(V @ G - I).max()
        ratios.append(np.abs(IRModel.nominal().read(spec, G, V) - I).max() / drop)
    assert ratios[0] < 0.02 and ratios[0] < 0.3 * ratios[1]


def test_fit_reduces_held_out_error(small_sweep):
    train, test = small_sweep
    model = fit_model(train)
    # the fit starts from the no-fit physics and must not leave its own data worse off
    fit_rows = [case_errors(d, model) for d in train]
    assert np.mean([r["cal_rmse"] for r in fit_rows]) <= np.mean([r["phys_rmse"] for r in fit_rows]) * (1 + 1e-9)
    # only the third-and-higher-order coefficients move; first and second order stay physics
    p, phys = model.to_vector(), IRModel.physical().to_vector()
    fixed = [k for k in range(p.size) if k not in HIGHER_ORDER]
    assert np.array_equal(p[fixed], phys[fixed]) and not np.array_equal(p, phys)
    rows = [case_errors(d, model) for d in test]
    uncal = np.mean([r["uncal_rmse"] for r in rows])
    cal = np.mean([r["cal_rmse"] for r in rows])
    phys_rmse = np.mean([r["phys_rmse"] for r in rows])
    ideal = np.mean([r["ideal_rmse"] for r in rows])
    # small arrays: the cross term is exact, the model second-order exact -> far below first order
    assert cal < 0.1 * uncal and phys_rmse < 0.1 * uncal and uncal < 0.05 * ideal
    assert all(r["cal_rmse"] < r["uncal_rmse"] for r in rows)


def _exact_transfer(G, r_row, r_col):
    """W[i, j]: sense current j per volt on row i, by the exact solver (one unit input per row)."""
    from cosim.read.solver import CrossbarSolver
    from netlists.crossbar import build_crossbar

    spec = CrossbarSpec(rows=G.shape[0], cols=G.shape[1], r_row=r_row, r_col=r_col)
    return CrossbarSolver(build_crossbar(spec, G).circuit, workers=1).solve(np.eye(G.shape[0]))


@pytest.mark.parametrize("shape", [(9, 9), (10, 7), (6, 11)])
def test_line_resummed_physics_is_second_order_exact(shape):
    """With the exact cross term the no-fit model's remainder falls as r^3 (the nominal's as r^2),
    and each line alone (other family ideal) is exact."""
    G = np.random.default_rng(sum(shape)).uniform(1e-6, 25e-6, shape)
    err_nom, err_phys = [], []
    for r in (1.0, 0.5):
        W = _exact_transfer(G, r, 0.7 * r)
        assert ir_features(G, r, 0.7 * r).exact_cross
        err_nom.append(np.abs(IRModel.nominal().physical_weights(G, r, 0.7 * r) - W).max())
        err_phys.append(np.abs(IRModel.physical().physical_weights(G, r, 0.7 * r) - W).max())
    assert 3.5 < err_nom[0] / err_nom[1] < 4.5
    assert 7 < err_phys[0] / err_phys[1] < 9 and err_phys[0] < 1e-3 * err_nom[0]
    for rr, rc in ((3.0, 0.0), (0.0, 3.0)):
        W = _exact_transfer(G, rr, rc)
        assert np.allclose(IRModel.physical().physical_weights(G, rr, rc), W, rtol=1e-12, atol=0)
        assert np.allclose(G / (1 + sum(line_loadings(G, rr, rc))), W, rtol=1e-12, atol=0)


def test_cross_term_is_the_brute_force_sum_and_its_mean_field():
    rng = np.random.default_rng(3)
    for N, M in ((5, 4), (4, 6)):
        G = rng.uniform(1e-6, 25e-6, (N, M))
        X = np.zeros((N, M))
        for i, j, i2, j2 in np.ndindex(N, M, N, M):
            X[i, j] += G[i, j2] * G[i2, j2] * G[i2, j] * (min(j, j2) + 1) * (N - max(i, i2))
        assert np.allclose(cross_term(G, 1.5, 0.5), 0.75 * X, rtol=1e-12)
    # constant array: the mean field is exact
    G = np.full((6, 5), 7e-6)
    f = ir_features(G, 1.0, 2.0)
    assert np.allclose(mean_field_cross(G, f.x_C, 1.0), cross_term(G, 1.0, 2.0), rtol=1e-12)
    # above the work limit the mean field is used
    big = ir_features(rng.uniform(1e-6, 25e-6, (40, 40)), 1.0, 1.0)
    assert not big.exact_cross


def test_model_warns_beyond_its_calibration_and_refuses_a_negative_denominator():
    G = np.random.default_rng(2).uniform(1e-6, 25e-6, (48, 48))
    rho = ir_features(G, 2.5, 2.5)
    top = float((rho.rho_R + rho.rho_C).max())
    fitted = IRModel(IRModel.physical().a, 1.0, 0.0, 1.0, rho_max=top / 2)
    with pytest.warns(RuntimeWarning, match="beyond the largest of its calibration"):
        fitted.physical_weights(G, 2.5, 2.5)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        IRModel(IRModel.physical().a, 1.0, 0.0, 1.0, rho_max=top).physical_weights(G, 2.5, 2.5)
        IRModel.physical().physical_weights(G, 2.5, 2.5)          # no fit, no range
    broken = IRModel((1.0, 1.0, 1.0, 1.0, 0.0, 0.0, -100.0 / top ** 2, 0.0), 1.0, 0.0, 1.0)  # den < 0 near rho = top
    with pytest.raises(ParameterError, match="outside its range"):
        broken.physical_weights(G, 2.5, 2.5)
    with pytest.raises(ParameterError, match="rho_max"):
        IRModel(rho_max=-1.0)


def test_weights_are_the_documented_formula():
    """The regrouped hot path equals W = G / (1 + sum a_k phi_k) + D (b + b2 rho/s) / s^2, s = 1 + c rho."""
    rng = np.random.default_rng(8)
    G = rng.uniform(1e-6, 25e-6, (12, 12))
    m = IRModel(tuple(rng.uniform(-0.5, 1.5, len(FEATURES))), 0.9, -0.3, 1.4)
    f = ir_features(G, 2.0, 1.5)
    rho = f.rho_R + f.rho_C
    s = 1 + m.c * rho
    ref = G / (1 + sum(a * phi for a, phi in zip(m.a, f.phi()))) + f.D * (m.b + m.b2 * rho / s) / s ** 2
    assert np.allclose(m.physical_weights(G, 2.0, 1.5), ref, rtol=1e-12, atol=0)
    assert np.allclose(m.physical_weights(G, 2.0, 1.5, f), ref, rtol=1e-12, atol=0)
    assert np.array_equal(IRModel.from_vector(m.to_vector()).to_vector(), m.to_vector())


def test_calibration_round_trip_and_backend(small_sweep, tmp_path):
    train, test = small_sweep
    model = fit_model(train)
    cal = Calibration(model, {"sizes": [8, 16, 24], "r_wire": [1.0, 2.5], "g_range": [1e-6, 25e-6]},
                      ({"size": "8x8", "cal_rmse": 1e-6},))
    path = cal.save(tmp_path / "calibration.json")
    back = Calibration.load(path)
    assert back == cal and back.model.to_vector().tolist() == model.to_vector().tolist()
    d = test[0]
    xb = Crossbar(d.case.spec, d.G)
    I = xb.read(d.V, backend="calibrated", calibration=back)
    assert np.array_equal(I, model.read(d.case.spec, d.G, d.V))
    assert np.abs(I - d.I).max() < np.abs(xb.read(d.V, backend="ideal") - d.I).max()
    # transposed reads use the same W (reciprocity), checked against the exact solve
    Vt = np.random.default_rng(0).uniform(-0.2, 0.2, (3, d.case.cols))
    It = xb.read(Vt, transpose=True, backend="calibrated", calibration=back)
    exact = xb.read(Vt, transpose=True, backend="fast")
    assert np.abs(It - exact).max() < 0.1 * np.abs(xb.read(Vt, transpose=True, backend="ideal") - exact).max()
    # differential arrays: logical columns are W+ - W-
    spec = CrossbarSpec(rows=8, cols=3, cell="diff", r_row=1.0, r_col=1.0)
    Gd = np.random.default_rng(1).uniform(1e-6, 25e-6, spec.g_shape)
    W = model.physical_weights(Gd, 1.0, 1.0)
    assert np.allclose(Crossbar(spec, Gd).read(np.full((1, 8), 0.1), backend="calibrated", calibration=model),
                       0.1 * (W[:, 0::2] - W[:, 1::2]).sum(0))
    with pytest.raises(ValueError, match="calibration="):
        xb.read(d.V, backend="calibrated")
    bad = json.loads(path.read_text())
    bad["version"] = 99
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ParameterError, match="version 99"):
        Calibration.load(tmp_path / "bad.json")
    # a version-1 file (the previous model) is refused with what to do about it
    old = {"schema": "xbar-cosim/ir-calibration", "version": 1, "model": "resummed-thevenin",
           "features": ["x_R", "x_C"], "coefficients": {"a": [1.0, 1.0], "b": 0.0, "c": 0.0}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(ParameterError, match="version 1 .*re-run `xbar calibrate`"):
        Calibration.load(tmp_path / "old.json")
    assert json.loads(path.read_text())["version"] == 2
    with pytest.raises(ValueError, match="load"):
        xb.read(d.V, backend="calibrated", calibration=str(path))   # files are read at the edge, once


def test_aihwkit_export_is_flat_in_aihwkits_units_and_fitted_to_the_circuit():
    cal = Calibration(IRModel.nominal(), fit={"g_range": [1e-6, 25e-6]})
    exp = to_aihwkit(cal, r_wire=2.0, rows=32, cols=16, adc_bits=8, dac_bits=7)
    p = exp.params
    assert set(p) == {"ir_drop", "ir_drop_g_ratio", "out_bound", "out_res", "inp_res", "inp_bound", "out_noise"}
    assert all(isinstance(v, float) for v in p.values())           # flat: IOParameters(**p)
    assert p["out_res"] == 1 / 254 and p["inp_res"] == 1 / 126
    assert p["ir_drop_g_ratio"] == pytest.approx(1 / (2.0 * 25e-6))  # G_wire / g_max
    assert p["out_bound"] == 32.0 and p["out_noise"] == 0.0          # no clipping; a fixed error is not noise
    e = exp.errors
    fitted, physical = e["aihwkit, ir_drop fitted (exported)"], e["aihwkit, ir_drop = 1 (physical)"]
    assert fitted[0] < physical[0] < e["no IR-drop model"][0]      # least squares beats the unfitted scale
    assert p["ir_drop"] > 1.0                                       # it absorbs the driven wire's drop
    assert "32 inputs (our rows) x 16 outputs" in exp.note and "left out" in exp.note
    with pytest.raises(ParameterError, match="r_wire"):
        to_aihwkit(cal, r_wire=0.0)
    with pytest.raises(ParameterError, match="bits"):
        to_aihwkit(cal, r_wire=1.0, rows=8, cols=8, adc_bits=1)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (9, 9), (13, 40), (40, 13), (70, 130)])
def test_fused_line_sweeps_equal_the_reference_kernels(shape):
    """The one-pass features equal K_R, K_C, the single-line recursions and the mean field
    computed separately, on square, wide and tall arrays (zero-padded chains)."""
    from cosim.read.irmodel import k_col, k_row
    G = np.random.default_rng(sum(shape)).uniform(1e-6, 25e-6, shape)
    rr, rc = 2.5, 0.7
    f = ir_features(G, rr, rc, exact_cross_work=0)
    rR, rC = line_loadings(G, rr, rc)
    assert np.allclose(f.x_R, rr * k_row(G), rtol=1e-12, atol=0)
    assert np.allclose(f.x_C, rc * k_col(G), rtol=1e-12, atol=0)
    assert np.allclose(f.rho_R, rR, rtol=1e-10, atol=0) and np.allclose(f.rho_C, rC, rtol=1e-10, atol=0)
    X = mean_field_cross(G, rc * k_col(G), rr)
    assert np.allclose(f.D, X - G * f.x_R * f.x_C, rtol=1e-10, atol=1e-30)


def test_work_arrays_never_leak_into_results():
    """Weights and public features are new arrays: a later call (reusing the per-thread work
    arrays) changes none of them, and the scratch path equals the public one."""
    rng = np.random.default_rng(4)
    m = IRModel(IRModel.physical().a[:5] + (-0.1, 0.02, -0.5), 1.0, -0.3, 1.0)
    G1, G2 = rng.uniform(1e-6, 25e-6, (2, 48, 48))
    f1 = ir_features(G1, 1.0, 1.0)
    keep = [a.copy() for a in (f1.x_R, f1.x_C, f1.rho_R, f1.rho_C, f1.D)]
    W1 = m.physical_weights(G1, 1.0, 1.0)
    W1_copy = W1.copy()
    W2 = m.physical_weights(G2, 1.0, 1.0)
    assert np.array_equal(W1, W1_copy) and not np.shares_memory(W1, W2)
    assert all(np.array_equal(a, b) for a, b in zip(keep, (f1.x_R, f1.x_C, f1.rho_R, f1.rho_C, f1.D)))
    assert np.array_equal(m.physical_weights(G1, 1.0, 1.0, f1), W1)


def test_features_need_no_solve_and_vanish_without_wires():
    G = np.full((4, 3), 10e-6)
    f = ir_features(G, 0.0, 0.0)
    assert not f.x_R.any() and not f.x_C.any()
    f = ir_features(G, 2.0, 0.0)   # row loading of cell j: r * G * sum_j' (min(j, j') + 1)
    assert np.allclose(f.x_R[0], 2.0 * 10e-6 * np.array([3, 5, 6]))
    assert np.allclose(IRModel.nominal().physical_weights(G, 0.0, 0.0), G)


def _xbar(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cosim.cli", "calibrate", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_calibrate_quick_and_bad_input(tmp_path):
    res = _xbar("--sizes", 6, 8, "--r-wire", 2.0, "--cases", 2, "--batch", 4, "--no-timing", "--out", "cal",
                "--no-blocks", "--export-aihwkit", "aihwkit.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "| 8x8 | 2 |" in res.stdout and "results in cal" in res.stdout
    for name in ("calibration.json", "report.md", "report.json", "error_vs_size.png", "predicted_vs_spice.png",
                 "uncalibrated_vs_calibrated.png"):
        assert (tmp_path / "cal" / name).exists(), name
    assert json.loads((tmp_path / "aihwkit.json").read_text())["ir_drop_g_ratio"] == pytest.approx(1 / 50e-6)   # the sweep's one --r-wire
    assert "What aihwkit cannot express" in (tmp_path / "aihwkit.md").read_text()
    again = _xbar("--sizes", 6, 8, "--r-wire", 2.0, "--cases", 2, "--batch", 4, "--no-timing", "--out", "cal",
                  "--no-blocks", cwd=tmp_path)
    assert again.returncode == 0 and "0 cases run, 6 already done" in again.stdout
    exp = _xbar("--export-aihwkit", "x.json", "--from", "cal/calibration.json", "--adc-bits", 8, "--r-wire", 2,
                "--tile", "16x8", cwd=tmp_path)
    assert exp.returncode == 0, exp.stderr
    x = json.loads((tmp_path / "x.json").read_text())
    assert x["out_res"] == 1 / 254 and x["out_bound"] == 16.0 and x["ir_drop_g_ratio"] == pytest.approx(1 / 50e-6)
    two = _xbar("--export-aihwkit", "y.json", "--from", "cal/calibration.json", "--r-wire", 1, 2, cwd=tmp_path)
    assert two.returncode != 0 and "one --r-wire" in two.stderr
    for bad in (["--r-wire", -1], ["--sizes", 0], ["--workers", 0], ["--cases", 0]):
        res = _xbar(*bad, "--out", "bad", cwd=tmp_path)
        assert res.returncode == 2, (bad, res.stderr)
        assert "error" in res.stderr


def test_monte_carlo_on_the_calibrated_model_is_seeded_and_grows_with_variation():
    from cosim.calibrate.montecarlo import Variation, monte_carlo_mvm

    kw = dict(runs=6, batch=4, seed=3, backend="calibrated", ir_model=IRModel.nominal())
    quiet = monte_carlo_mvm(8, 1.0, Variation(), spice_runs=1, **kw)
    noisy = monte_carlo_mvm(8, 1.0, Variation(d2d_sigma=0.2, stuck_frac=0.1, adc_offset_sigma_fs=1e-3), **kw)
    again = monte_carlo_mvm(8, 1.0, Variation(d2d_sigma=0.2, stuck_frac=0.1, adc_offset_sigma_fs=1e-3), **kw)
    noisy.pop("elapsed_s"), again.pop("elapsed_s")
    assert noisy == again
    # no variation: the error vs ideal is the IR drop alone, and the model is close to ngspice
    assert quiet["rms"]["mean"] == pytest.approx(quiet["wire_only"])
    assert noisy["rms"]["mean"] > 5 * quiet["rms"]["mean"]
    assert len(quiet["spice_checks"]) == 1 and quiet["spice_checks"][0]["max_abs_diff_frac"] < 0.01
    with pytest.raises(ParameterError, match="stuck_frac"):
        Variation(stuck_frac=1.6)


def test_fast_solver_reads_an_all_zero_input_in_a_batch(engine):
    """Found while calibrating: CG divided 0 by 0 for an all-zero vector (sparse inputs) -> NaN."""
    G = np.random.default_rng(0).uniform(1e-6, 25e-6, (8, 6))
    V = np.random.default_rng(1).uniform(0, 0.2, (3, 8))
    V[1] = 0.0
    xb = Crossbar(CrossbarSpec(rows=8, cols=6, r_row=1.0, r_col=1.0), G, engine=engine)
    fast, spice = xb.read(V, backend="fast"), xb.read(V, backend="spice")
    assert np.isfinite(fast).all() and not fast[1].any()
    assert np.abs(fast - spice).max() < 1e-6 * np.abs(spice).max()


def test_cheap_model_checks_its_inputs():
    from models.errors import ParameterError, ShapeError
    spec = CrossbarSpec(rows=4, cols=4, cell="diff", r_row=1.0, r_col=1.0)
    with pytest.raises(ShapeError):
        IRModel.nominal().effective_weights(spec, np.full((4, 4), 1e-5))      # a pair array is (4, 8)
    with pytest.raises(ParameterError):
        IRModel.nominal().effective_weights(spec, np.full((4, 8), -1e-5))
    with pytest.raises(ShapeError):
        IRModel.nominal().read(spec, np.full((4, 8), 1e-5), np.zeros((2, 3)))


def test_calibrate_blocks_end_to_end(tmp_path):
    """`xbar calibrate --quick --blocks`: the IR fit plus the block fits (step tables, periphery
    transfers, Monte Carlo) against ngspice, in the report and referenced by the calibration."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    res = subprocess.run([sys.executable, "-m", "cosim.cli", "calibrate", "--quick", "--blocks", "--no-timing",
                          "--out", str(tmp_path / "cal")], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    report = (tmp_path / "cal" / "report.md").read_text()
    for head in ("## Held-out error", "## Device step tables", "## Integrator + ADC transfer", "## Monte Carlo"):
        assert head in report
    cal = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    fits = json.loads((tmp_path / "cal" / cal["blocks"]).read_text())
    assert set(fits["devices"]) >= {"pcm", "cap3t1c"} and set(fits["periphery"]) == {"macro", "two_stage", "macro_ideal_adc", "two_stage_ideal_adc"}
    Calibration.load(tmp_path / "cal" / "calibration.json")      # the extra key does not upset the reader
    # blocks are on by default; a second run reuses both the sweep and the block fits
    again = subprocess.run([sys.executable, "-m", "cosim.cli", "calibrate", "--quick", "--no-timing",
                            "--out", str(tmp_path / "cal")], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "block fits: reusing" in again.stderr and "## Device step tables" in again.stdout
    assert json.loads((tmp_path / "cal" / "calibration.json").read_text())["blocks"] == cal["blocks"]


def test_non_square_sizes_are_calibrated_and_cover_their_tiles(tmp_path):
    """``--sizes 8 8x16 --spice-cells 64``: the 8 x 16 arrays (128 cells) are read by the exact
    solver after one ngspice check case, their held-out errors are reported by shape, and the
    audit's bound takes a calibrated shape that holds a tile."""
    from cosim.calibrate.ir_cases import array_shape
    from cosim.read.irmodel import Calibration
    from cosim.train.audit import calibration_bound
    assert [array_shape(s) for s in (8, (8, 16), "8x16")] == [(8, 8), (8, 16), (8, 16)]
    with pytest.raises(ParameterError, match="ROWSxCOLS"):
        array_shape("8x")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run([sys.executable, "-m", "cosim.cli", "calibrate", "--sizes", "8", "8x16", "--r-wire", "1",
                          "--cases", "2", "--spice-cells", "64", "--no-blocks", "--no-timing",
                          "--out", str(tmp_path / "cal")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-1000:]
    cal = Calibration.load(tmp_path / "cal" / "calibration.json")
    assert cal.fit["sizes"] == [8, [8, 16]]
    assert {(e["rows"], e["cols"]) for e in cal.errors} == {(8, 8), (8, 16)}
    assert calibration_bound(cal, 8, 12, 1.0)[1] == "calibrated 8x16 at 1 ohm"
    assert calibration_bound(cal, 16, 16, 1.0)[1].startswith("beyond")
    report = (tmp_path / "cal" / "report.md").read_text()
    assert "| 8x16 |" in report and "## Reference" in report
    ref = cal.fit["reference"]
    assert ref["solver_sizes"] == ["8x16"] and ref["spice_cells"] == 64
    assert [c["size"] for c in ref["checks"]] == ["8x16"] and ref["checks"][0]["solver_vs_spice_max"] < 1e-9
    assert "2 ngspice cases and 2 exact-solver cases" in res.stdout


def test_solver_read_shapes_keep_the_old_keys_and_are_checked(tmp_path):
    """Appending a solver-read shape leaves the keys of the ngspice cases as they were (a sweep
    grows without rerunning them); the check case comes last; a check that disagrees is refused."""
    from cosim.calibrate.ir_cases import CHECK_BATCH, CaseData, SolverCase, check_reference
    old = default_cases((8,), (0.5, 1.0), train_per_point=1, test_per_point=1, batch=3)
    new = default_cases((8, (8, 16)), (0.5, 1.0), train_per_point=1, test_per_point=1, batch=3, spice_cells=64)
    assert [case_key(c, 0, k) for k, c in enumerate(old)] == [case_key(c, 0, k) for k, c in enumerate(new[:4])]
    assert [type(c) for c in new] == [ArrayCase] * 4 + [SolverCase] * 4 + [ArrayCase]
    chk = new[-1]
    assert (chk.split, chk.batch, chk.r_wire, chk.reference) == ("check", CHECK_BATCH, 1.0, "ngspice")
    assert new[4].reference == "exact solver" and case_key(new[4], 0, 4) != case_key(ArrayCase(**new[4].__dict__), 0, 4)
    res = run_sweep(new[4:], spice_case, tmp_path, seed=3, workers=1, progress=False)
    data = case_data(res.results, new[4:])
    assert isinstance(data[0].case, SolverCase)
    rows = check_reference([data[-1]])
    assert rows[0]["size"] == "8x16" and rows[0]["solver_vs_spice_max"] < 1e-9
    bad = CaseData(data[-1].case, data[-1].G, data[-1].V, data[-1].I * 1.001)
    with pytest.raises(ParameterError, match="8x16 check case"):
        check_reference([bad])
    with pytest.raises(ParameterError, match="spice_cells"):
        default_cases((8,), (1.0,), spice_cells=0)


@pytest.mark.raw_decks   # the check case hands ngspice a bad deck on purpose (failing_task)
def test_solver_read_cases_without_a_finished_check_are_refused(tmp_path):
    """A shape whose ngspice check failed is not fitted on: the calibration stops and says which."""
    from cosim.calibrate.irfit import run_ir_calibration

    def check_fails(case, rng):         # the check case's ngspice run fails (a deck it rejects)
        return failing_task(replace(case, replica=1) if case.split == "check" else case, rng)

    plan = dict(train_per_point=1, test_per_point=1, batch=3)
    cases = default_cases((8, (8, 16)), (1.0,), spice_cells=64, **plan)
    res = run_sweep(cases, check_fails, tmp_path / "sweep", seed=0, workers=1, progress=False)
    assert len(res.failed) == 1
    with pytest.raises(ParameterError, match="no ngspice check case finished for 8x16"):
        run_ir_calibration(tmp_path, sizes=(8, (8, 16)), r_wires=(1.0,), spice_cells=64, timing=False, plots=False,
                           progress=False, **plan)


def test_an_interrupted_block_fit_keeps_the_last_complete_fits_named(tmp_path, monkeypatch):
    """calibration.json is rewritten by the IR step before the blocks are fitted: a block fit that
    is interrupted (or fails) must leave the entry naming the fits of the last complete run, and
    an unreadable fits.json is fitted again, not an error without a file name."""
    import cosim.calibrate.run as run
    from cosim.calibrate.blocks import BlockFitSettings, calibrate_blocks

    plan = run.CalibrationPlan(sizes=(8,), r_wires=(1.0,), train_per_point=1, test_per_point=1, batch=3,
                               timing=False, blocks=BlockFitSettings(pulses=5))
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "fits.json").write_text('{"devices": {}}')          # a complete earlier fit
    run.calibrate(tmp_path, replace(plan, blocks=None))
    cal = tmp_path / "calibration.json"
    cal.write_text(json.dumps({**json.loads(cal.read_text()), "blocks": "blocks/fits.json"}))

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(run, "calibrate_blocks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run.calibrate(tmp_path, plan)
    assert json.loads(cal.read_text())["blocks"] == "blocks/fits.json"
    # settings recorded as done, fits.json damaged: fitted again (the fit itself is stubbed: ngspice
    # fits of every block take minutes; what is tested is that the damaged file is not read as fits)
    (tmp_path / "blocks" / "settings.json").write_text(json.dumps(plan.blocks.record()))
    (tmp_path / "blocks" / "fits.json").write_text("{\x01 damaged")
    refit = []
    monkeypatch.setattr("cosim.calibrate.blocks.fit_all", lambda *a, **k: refit.append(1) or {"devices": {}})
    with pytest.warns(RuntimeWarning, match="fits.json cannot be read .*fitting the blocks again"):
        res, reused = calibrate_blocks(tmp_path, plan.blocks)
    assert refit == [1] and not reused

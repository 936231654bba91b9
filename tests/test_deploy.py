"""Ex-situ deployment and inference over time: write-verify programming, drift with and without
compensation, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cosim.train.data import load_digits_split
from cosim.train.deploy import DeployConfig, deploy, infer, load_deployed, load_weights, parse_times
from cosim.train.loop import TrainConfig, train
from models.errors import ParameterError, ShapeError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The digits network trained in software (10 epochs, seconds)."""
    out = tmp_path_factory.mktemp("soft")
    data = load_digits_split()
    m = train(TrainConfig(epochs=10, forward="software", backward="software"), data, out, progress=False)
    return out, data, m["final"]["software_test_accuracy"]


def test_programmed_network_matches_software_and_drift_is_compensated(trained, tmp_path):
    run, data, soft = trained
    s = deploy(load_weights(run), DeployConfig(), tmp_path, data=data)
    assert s["accuracy_software"] == pytest.approx(soft)
    assert abs(s["accuracy_programmed"] - soft) <= 0.01                       # write-verify, then an exact read
    for layer in s["layers"]:
        assert layer["not_converged"] == 0 and layer["weight_error_rel_rms"] < 0.05
    rows = (tmp_path / "pulses.csv").read_text().splitlines()
    assert rows[0].startswith("layer,row,col,side") and len(rows) == 1 + 2 * (65 * 32 + 33 * 10)
    r = infer(tmp_path, data, parse_times("1s,1d,1y"), runs=5)
    acc = {row["t_s"]: row for row in r["times"]}
    assert abs(acc[1.0]["uncompensated"]["mean"] - soft) <= 0.01              # within 1 point at 1 s
    year = acc[365.25 * 86400]
    assert year["uncompensated"]["mean"] < acc[1.0]["uncompensated"]["mean"]  # drift costs accuracy
    assert year["compensated"]["mean"] > year["uncompensated"]["mean"]        # compensation recovers it
    assert (tmp_path / "infer.png").stat().st_size > 0
    assert json.loads((tmp_path / "infer.json").read_text())["runs"] == 5
    again = infer(tmp_path, data, [1.0], runs=5)                              # seeded
    assert again["times"][0] == r["times"][0]


def test_weights_from_an_npz_and_bad_input(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "w.npz", W0=rng.normal(0, 0.5, (64, 16)), b0=np.zeros(16), W1=rng.normal(0, 0.5, (16, 10)),
             b1=np.zeros(10))
    W = load_weights(tmp_path / "w.npz")
    assert [w.shape for w in W] == [(65, 16), (17, 10)]
    capped = deploy(W, DeployConfig(max_rows=32, max_cols=8, max_pulses=5), tmp_path / "capped")
    assert all(layer["pulses_per_device_max"] <= 5 for layer in capped["layers"])
    assert sum(layer["not_converged"] for layer in capped["layers"]) > 0      # reported, not hidden
    dep = deploy(W, DeployConfig(max_rows=32, max_cols=8), tmp_path / "d")
    assert dep["tiles"] == [6, 2] and len(load_deployed(tmp_path / "d").states) == 2
    np.savez(tmp_path / "bad.npz", W0=np.ones((4, 3)), W1=np.ones((5, 2)))
    with pytest.raises(ShapeError, match="does not feed layer 1"):
        load_weights(tmp_path / "bad.npz")
    with pytest.raises(ParameterError, match="no W0"):
        np.savez(tmp_path / "none.npz", x=np.ones(3))
        load_weights(tmp_path / "none.npz")
    with pytest.raises(ParameterError, match="positive number with a unit"):
        parse_times("1h,soon")
    with pytest.raises(ParameterError, match="program must be"):
        DeployConfig(program="magic")
    with pytest.raises(FileNotFoundError, match="run xbar deploy first"):
        load_deployed(tmp_path)


def test_cli_deploy_and_infer(trained, tmp_path):
    run, _, _ = trained
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def xbar(*args):
        return subprocess.run([sys.executable, "-m", "cosim.cli", *map(str, args)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)

    res = xbar("deploy", run, "--out", "dep")
    assert res.returncode == 0, res.stderr
    assert "0 devices off target" in res.stdout and "test accuracy right after programming" in res.stdout
    res = xbar("infer", "dep", "--times", "1s,1y", "--runs", "3")
    assert res.returncode == 0, res.stderr
    assert "| 1 |" in res.stdout and "with drift compensation" in res.stdout
    assert xbar("periphery", "--write-config", "chain.json").returncode == 0
    res = xbar("infer", "dep", "--times", "1s,1y", "--runs", "2", "--periphery", "chain.json")
    assert res.returncode == 0, res.stderr
    assert "through the read chain" in res.stdout
    assert json.loads((tmp_path / "dep" / "infer.json").read_text())["periphery"]["dac"]["bits"] == 8
    assert xbar("infer", "dep", "--times", "yesterday").returncode == 2
    assert xbar("deploy", "nowhere").returncode == 2
    res = xbar("deploy", run, "--program", "table", "--out", "t")
    assert res.returncode == 2 and "--device-table" in res.stderr


def test_programming_through_a_step_table(tmp_path):
    """--program table: the device moves as its step table says (mean step and spread per
    conductance); the deployed states are the device's own, so infer reads them with drift."""
    from cosim.write.step_table import StepTable
    from models.registry import get_device
    pcm = get_device("pcm")
    lo, hi = np.sort(pcm.to_conductance(np.array(pcm.state_range, float)))
    edges = np.linspace(lo, hi, 9)
    g = 0.5 * (edges[1:] + edges[:-1])
    step = 0.4e-6 * (hi - g) / (hi - lo) + 0.02e-6        # saturating, like a SET
    table = StepTable("pcm", lo, hi, tuple(edges), {"up": {"g": g.tolist(), "mean": step.tolist(),
                                                         "std": (0.3 * step).tolist(), "count": [50] * 8}})
    rng = np.random.default_rng(1)
    W = [rng.normal(0, 0.5, (17, 6)), rng.normal(0, 0.5, (7, 3))]
    s = deploy(W, DeployConfig(program="table", max_rows=16, max_cols=8), tmp_path / "t", table=table)
    assert all(layer["not_converged"] <= 2 and layer["weight_error_rel_rms"] < 0.1 for layer in s["layers"])
    dep = load_deployed(tmp_path / "t")
    gp = pcm.to_conductance(dep.states[0][0])
    reached = np.array([float(r.split(",")[5]) for r in (tmp_path / "t" / "pulses.csv").read_text().splitlines()[1:]
                        if r.startswith("0,") and ",plus," in r]).reshape(gp.shape)
    assert np.allclose(gp, reached, rtol=1e-5)                                    # states of the device itself
    with pytest.raises(ParameterError, match="needs the device's step table"):
        deploy(W, DeployConfig(program="table"), tmp_path / "u")
    with pytest.raises(ParameterError, match="fitted to 'pcm', not 'rram'"):
        deploy(W, DeployConfig(program="table", device="rram"), tmp_path / "v", table=table)

"""The chip export: standalone decks of a deployed network and the driver that runs them in
ngspice (real ngspice, a small network on the digits, a few images)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cosim.sim.files import RunLock
from cosim.train import chip_driver
from cosim.train.chip import export_chip
from cosim.train.data import load_digits_split
from cosim.train.deploy import DeployConfig, deploy, load_deployed
from cosim.train.loop import TrainConfig, train
from models.errors import ParameterError
from netlists.readchain import PeripheryConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A 64-6-10 network of random weights, programmed on 32-row tiles (three row tiles in the
    first layer: 32 + 32 + the bias row)."""
    rng = np.random.default_rng(3)
    W = [np.vstack([rng.normal(0, 0.4, (64, 6)), np.zeros((1, 6))]), rng.normal(0, 1.0, (7, 10))]
    out = tmp_path_factory.mktemp("dep")
    deploy(W, DeployConfig(max_rows=32, max_cols=8), out)
    return out, load_digits_split()


def test_exported_network_runs_in_plain_ngspice_and_agrees_with_the_fast_backend(deployed, tmp_path):
    run, data = deployed
    chip = tmp_path / "chip"
    s = export_chip(run, chip, data, images=4, chunk=2)
    net = json.loads((chip / "network.json").read_text())
    assert s["decks"] == 5 and [len(L["tiles"]) for L in net["layers"]] == [3, 2]   # 8 columns a tile
    # the deck is the toolkit's own read-chain deck, its DAC block the driver's for the same codes
    X = np.loadtxt(chip / "images.csv", delimiter=",", skiprows=1)
    codes, _ = chip_driver.drive_codes(X[:, 1:], net["layers"][0])
    for tile in net["layers"][0]["tiles"]:
        deck = (chip / tile["deck"]).read_text()
        a, b = deck.index(chip_driver.BEGIN), deck.index(chip_driver.END) + len(chip_driver.END)
        assert deck[a:b] == chip_driver.dac_block(codes[:2, tile["inputs"][0]:tile["inputs"][1]], tile)
    # the driver imports nothing of the toolkit and runs as a plain script in the folder
    tree = ast.parse((chip / "run_network.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "argparse", "fcntl", "hashlib", "json", "os", "shutil", "subprocess", "sys",
                        "tempfile", "time", "concurrent", "pathlib", "numpy"}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "run_network.py", "--jobs", "2"], cwd=chip, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    r = json.loads((chip / "results.json").read_text())
    assert r["images"] == 4 and r["agreement"] == 1.0
    fast = np.loadtxt(chip / "expected.csv", delimiter=",", skiprows=1)[:, 2:]
    spice = np.loadtxt(chip / "results.csv", delimiter=",", skiprows=1)[:, 4:]
    assert np.abs(spice - fast).max() <= 1e-4 * np.abs(fast).max()   # the same codes: outputs decoded from them
    # finished reads are kept: a second run needs no ngspice at all
    again = subprocess.run([sys.executable, "run_network.py", "--ngspice", "true"], cwd=chip, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads((chip / "results.json").read_text())["agreement"] == 1.0


def test_a_chip_with_paired_sensing_runs_in_ngspice_as_exported(deployed, tmp_path):
    """Paired sensing: one integrator and converter per weight column (the G- column on a current
    mirror in each deck); the driver takes each code as the pair's output, and its ngspice reads
    agree with the fast backend's."""
    run, data = deployed
    chip = tmp_path / "chip"
    export_chip(run, chip, data, images=2, chunk=2, periphery=PeripheryConfig(sensing="pairs"))
    net = json.loads((chip / "network.json").read_text())
    tile = net["layers"][1]["tiles"][0]
    assert not tile["differential"] and tile["n_sense"] == tile["outputs"][1] - tile["outputs"][0]
    assert ".subckt xbar_mirror" in (chip / tile["deck"]).read_text()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "run_network.py", "--jobs", "2"], cwd=chip, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    assert json.loads((chip / "results.json").read_text())["agreement"] == 1.0


def test_program_csv_replays_the_pulse_counts(deployed):
    run, _ = deployed
    lines = (run / "program.csv").read_text().splitlines()
    assert lines[0] == "layer,row,col,side,round,verify_read_S,reset,pulses,polarity"
    rows = [ln.split(",") for ln in lines[1:]]
    counts = {}
    for r in rows:
        key = (r[0], r[1], r[2], r[3])
        counts[key] = counts.get(key, 0) + int(r[7])
    per_device = (ln.split(",") for ln in (run / "pulses.csv").read_text().splitlines()[1:])
    pulses = {tuple(r[:4]): int(r[6]) for r in per_device}
    assert counts == pulses and sum(pulses.values()) > 0
    dep = load_deployed(run)
    final = {tuple(r[:4]): float(r[5]) for r in rows if r[7] == "0" and r[6] == "0"}
    g = dep.device.to_conductance(dep.states[1][1])
    assert final[("1", "2", "3", "minus")] == pytest.approx(g[2, 3], rel=1e-6)


def test_export_refuses_what_it_cannot_write(deployed, tmp_path):
    run, data = deployed
    pc = PeripheryConfig()
    bitserial = replace(pc, dac=replace(pc.dac, encoding="bitserial"))
    with pytest.raises(ParameterError, match="bitserial"):
        export_chip(run, tmp_path / "c", data, periphery=bitserial)
    with pytest.raises(ParameterError, match="beside the deploy folder"):
        export_chip(run, run, data)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "cosim.cli", "export", str(tmp_path), "--out", str(tmp_path / "c")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "run xbar deploy first" in res.stderr
    chip = tmp_path / "ok"
    export_chip(run, chip, data, images=2, chunk=2)
    res = subprocess.run([sys.executable, "run_network.py", "--ngspice", "no-such-ngspice"], cwd=chip,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "not found" in res.stderr
    with RunLock(chip, "xbar export"):       # the driver and the toolkit share the folder's run lock
        with pytest.raises(chip_driver.DriverError, match="in use"):
            chip_driver.run_network(chip)


def test_an_in_situ_trained_pair_run_exports_and_a_software_run_is_sent_to_deploy(tmp_path):
    data = load_digits_split()
    train(TrainConfig(epochs=1, hidden=(8,)), data, tmp_path / "pair", progress=False)
    s = export_chip(tmp_path / "pair", tmp_path / "chip", data, images=2, chunk=2)
    assert s["decks"] == 2
    r = chip_driver.run_network(tmp_path / "chip", jobs=2, say=lambda m: None)
    assert r["images"] == 2 and r["agreement"] == 1.0
    train(TrainConfig(epochs=1, hidden=(8,), forward="software", backward="software"), data, tmp_path / "soft",
          progress=False)
    with pytest.raises(ParameterError, match="xbar deploy"):
        export_chip(tmp_path / "soft", tmp_path / "chip2", data)


def test_an_autoranging_run_exports_with_its_trained_gains(tmp_path):
    """The chip folder of a run whose read chains ranged themselves: each deck's capacitor is the
    worst-case one over 2^k with the run's k, and ngspice agrees with the fast backend at it."""
    from cosim.train.layers import LayerConfig
    data = load_digits_split()
    layer = LayerConfig(adc_bits=None, periphery=PeripheryConfig(), chain_autorange=8)
    train(TrainConfig(epochs=1, hidden=(8,), forward="fast", backward="fast", layer=layer), data,
          tmp_path / "ranged", progress=False)
    k = int(np.load(tmp_path / "ranged" / "checkpoint.npz")["gains0"][0, 0])
    assert k > 0
    export_chip(tmp_path / "ranged", tmp_path / "chip", data, images=2, chunk=2)
    net = json.loads((tmp_path / "chip" / "network.json").read_text())
    worst = export_chip(tmp_path / "ranged", tmp_path / "chip0", data, images=2, chunk=2,
                        periphery=PeripheryConfig())      # another chain: sized for the worst case
    net0 = json.loads((tmp_path / "chip0" / "network.json").read_text())
    c, c0 = (n["layers"][0]["tiles"][0]["c_int_F"] for n in (net, net0))
    assert c == pytest.approx(c0 / 2 ** k) and worst["decks"] == 2
    r = chip_driver.run_network(tmp_path / "chip", jobs=2, say=lambda m: None)
    assert r["images"] == 2 and r["agreement"] == 1.0

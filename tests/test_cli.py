"""The xbar command line, run as a user runs it (a subprocess), on good and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

XBAR = [sys.executable, "-m", "cosim.cli"]
ROOT = Path(__file__).resolve().parent.parent


def xbar(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(XBAR + [str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def arrays(tmp_path, rng):
    G = rng.uniform(1e-6, 25e-6, (16, 8))
    np.save(tmp_path / "G.npy", G)
    np.save(tmp_path / "V.npy", rng.uniform(0, 0.2, (5, 16)))
    np.save(tmp_path / "Vt.npy", rng.uniform(-0.2, 0.2, (5, 8)))
    return tmp_path


def test_help_shows_every_default(tmp_path):
    """-h: each option's default, 0 and strings included, where its help does not name it already."""
    out = " ".join(xbar("mvm", "-h", cwd=tmp_path).stdout.split())
    for text in ("spice backend: ngspice -b processes, or the shared library in a child process (default: subprocess)",
                 "(default: fast)", "seed for random conductances when no file is given (default: 0)"):
        assert text in out, text


def test_doctor(tmp_path):
    res = xbar("doctor", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "KLU" in res.stdout and "all checks passed" in res.stdout


def test_netlist_runs_standalone_in_ngspice(arrays):
    """The deck runs in plain ngspice, without us, and gives the currents of our exact solver."""
    from cosim.sim.results import read_raw

    res = xbar("netlist", "--conductances", "G.npy", "--r-wire", 1.0, "--voltages", "V.npy", "--out", "xbar.cir",
               cwd=arrays)
    assert res.returncode == 0, res.stderr
    assert "ngspice -b xbar.cir" in res.stdout
    run = subprocess.run(["ngspice", "-b", "-r", "xbar.raw", "xbar.cir"], cwd=arrays, capture_output=True, text=True,
                         timeout=120)
    log = (run.stdout + run.stderr).lower()
    assert run.returncode == 0 and "error" not in log and "warning" not in log, log[-2000:]
    vec = read_raw(arrays / "xbar.raw")[-1].vectors
    I = np.stack([vec[f"i(vcs_{j})"] for j in range(8)], axis=-1)
    assert xbar("mvm", "-G", "G.npy", "-V", "V.npy", "--r-wire", 1.0, "--backend", "fast", "--out", "I.npy",
                cwd=arrays).returncode == 0
    fast = np.load(arrays / "I.npy")
    assert I.shape == fast.shape == (5, 8)
    np.testing.assert_allclose(I, fast, rtol=1e-9, atol=1e-9 * np.abs(fast).max())
    res = xbar("netlist", "--rows", 4, "--cols", 3, "--cell", "diff", "--voltages", "V4.npy", "--out", "b.cir",
               cwd=arrays)
    assert res.returncode == 2 and "V4.npy does not exist" in res.stderr


def test_mvm_backends_agree_forward_and_transposed(arrays):
    for backend in ("spice", "fast", "ideal"):
        res = xbar("mvm", "-G", "G.npy", "-V", "V.npy", "--r-wire", 2.0, "--backend", backend,
                   "--out", f"I_{backend}.npy", cwd=arrays)
        assert res.returncode == 0, res.stderr
        res = xbar("mvm", "-G", "G.npy", "-V", "Vt.npy", "--r-wire", 2.0, "--backend", backend, "--transpose",
                   "--out", f"It_{backend}.npy", cwd=arrays)
        assert res.returncode == 0, res.stderr
    for prefix, shape in (("I", (5, 8)), ("It", (5, 16))):
        spice, fast, ideal = (np.load(arrays / f"{prefix}_{b}.npy") for b in ("spice", "fast", "ideal"))
        assert spice.shape == shape
        assert np.abs(fast - spice).max() < 1e-6 * np.abs(spice).max()
        assert np.abs(ideal - spice).max() > 1e-4 * np.abs(spice).max()   # the wires matter


def test_mvm_shared_engine(arrays):
    res = xbar("mvm", "-G", "G.npy", "-V", "V.npy", "--r-wire", 1.0, "--backend", "spice", "--engine", "shared",
               "--out", "I_sh.npy", cwd=arrays)
    assert res.returncode == 0, res.stderr
    ref = xbar("mvm", "-G", "G.npy", "-V", "V.npy", "--r-wire", 1.0, "--out", "I_f.npy", cwd=arrays)
    assert ref.returncode == 0
    assert np.allclose(np.load(arrays / "I_sh.npy"), np.load(arrays / "I_f.npy"), rtol=1e-9, atol=0)


@pytest.mark.parametrize("setup, args, message", [
    (lambda d: np.save(d / "bad.npy", np.ones((5, 3))), ["mvm", "-G", "G.npy", "-V", "bad.npy"], "(batch, 16)"),
    (lambda d: np.save(d / "nan.npy", np.full((2, 16), np.nan)), ["mvm", "-G", "G.npy", "-V", "nan.npy"], "finite"),
    (lambda d: np.save(d / "neg.npy", -np.ones((16, 8))), ["mvm", "-G", "neg.npy", "-V", "V.npy"], "must be > 0"),
    (lambda d: np.save(d / "G3.npy", np.ones((2, 2, 2))), ["mvm", "-G", "G3.npy", "-V", "V.npy"], "2-D"),
    (lambda d: None, ["mvm", "-G", "G.npy", "-V", "V.npy", "--r-wire", "-1"], "--r-wire: must be >= 0"),
    (lambda d: np.save(d / "G7.npy", np.full((16, 7), 1e-6)), ["mvm", "-G", "G7.npy", "-V", "V.npy", "--cell", "diff"],
     "even number"),
    (lambda d: None, ["mvm", "-G", "missing.npy", "-V", "V.npy"], "does not exist"),
    (lambda d: (d / "junk.npy").write_text("junk"), ["mvm", "-G", "junk.npy", "-V", "V.npy"], "could not be read"),
    (lambda d: None, ["netlist", "--rows", "0", "--cols", "4"], "--rows: must be >= 1"),
    (lambda d: None, ["netlist", "--rows", "100000", "--cols", "100000"], "tile"),
    (lambda d: None, ["netlist"], "--conductances"),
    (lambda d: np.save(d / "big.npy", np.ones((2, 16))), ["mvm", "-G", "G.npy", "-V", "big.npy"], "v_read"),
])
def test_bad_input_exits_non_zero_with_one_clear_line(arrays, setup, args, message):
    setup(arrays)
    res = xbar(*args, cwd=arrays)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_ngspice_failure_is_reported_and_outputs_are_kept(arrays, tmp_path):
    (arrays / "I.npy").write_bytes(b"kept")   # an earlier result must survive a failure
    res = xbar("mvm", "-G", "G.npy", "-V", "V.npy", "--r-wire", 1.0, "--backend", "spice", "--timeout", "0.0001",
               "--out", "I.npy", cwd=arrays)
    assert res.returncode == 2
    assert "NgspiceTimeout" in res.stderr or "longer than" in res.stderr
    assert (arrays / "I.npy").read_bytes() == b"kept"


def test_demo_writes_results(tmp_path):
    res = xbar("demo", "--size", 12, "--batch", 3, "--out", "demo", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "agrees" in res.stdout
    for name in ("demo.json", "demo.npz", "demo.png"):
        assert (tmp_path / "demo" / name).exists()


def test_device_characterisation(tmp_path):
    res = xbar("device", "linear", "--pulses", 10, "--seeds", 2, "--out", "dev", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "pulse_max_diff_steps" in res.stdout
    assert list((tmp_path / "dev" / "linear").glob("*.png")) and list((tmp_path / "dev" / "linear").glob("*.csv"))
    res = xbar("device", "flux-capacitor", cwd=tmp_path)
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_xbar_train_with_no_options_is_the_library_default():
    """One set of defaults: the command line passes on only what the user gives."""
    from cosim.cli import build_parser
    from cosim.cli.cmd_train import train_config as _train_config
    from cosim.train.loop import TrainConfig
    assert _train_config(build_parser().parse_args(["train"]), None) == TrainConfig()
    given = _train_config(build_parser().parse_args(["train", "--epochs", "5", "--r-wire", "0", "--adc-bits", "0"]),
                          None)
    assert (given.epochs, given.layer.r_wire, given.layer.adc_bits) == (5, 0.0, None)

"""Interoperability with other tools, run in the real tools (optional: ``pytest -m interop``).

aihwkit needs a torch build that matches its wheel (aihwkit 1.1.0's CPU wheel imports with torch
2.10.0; 2.9.1 fails on an undefined symbol and 2.13 on "weights must be a CPU tensor"), which is
gigabytes, so it may live in another environment: set ``XBAR_AIHWKIT_PYTHON`` to that Python.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cosim.calibrate.aihwkit import aihwkit_forward, to_aihwkit, to_aihwkit_weights
from cosim.read.irmodel import Calibration, IRModel
from cosim.read.mvm import Crossbar
from netlists.crossbar import CrossbarSpec

pytestmark = pytest.mark.interop

HELPER = Path(__file__).parent / "interop" / "aihwkit_forward.py"
G_LO, G_HI = 1e-6, 25e-6


def _aihwkit_python() -> str:
    if importlib.util.find_spec("aihwkit") is not None:
        return sys.executable
    other = os.environ.get("XBAR_AIHWKIT_PYTHON")
    if other:
        return other
    pytest.skip("aihwkit cannot be imported here and XBAR_AIHWKIT_PYTHON is not set (install aihwkit 1.1.0 "
                "with torch 2.10.0, or point XBAR_AIHWKIT_PYTHON at a Python that has them)")


def _rel(a, ref):
    return float(np.sqrt(np.mean((a - ref) ** 2)) / np.abs(ref).max())


def test_aihwkit_export_builds_a_layer_that_follows_the_circuit(tmp_path):
    python = _aihwkit_python()
    cal = Calibration(IRModel.nominal(), fit={"g_range": [G_LO, G_HI]})
    exp = to_aihwkit(cal, r_wire=1.0, rows=64, cols=64)
    (tmp_path / "params.json").write_text(json.dumps(exp.params))
    rng = np.random.default_rng(11)                        # a case the export was not fitted on
    G = rng.uniform(G_LO, G_HI, (64, 64))
    V = rng.uniform(0.0, 1.0, (40, 64))
    V /= V.max(axis=1, keepdims=True)
    W, x = to_aihwkit_weights(G, V, G_HI, 1.0)
    np.save(tmp_path / "W.npy", W)
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run([python, str(HELPER), *(str(tmp_path / f) for f in ("params.json", "W.npy", "x.npy", "y.npy"))],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    y = np.load(tmp_path / "y.npy")
    # aihwkit computes the formula our export was fitted with (float32)
    mine = aihwkit_forward(W, x, ir_drop=exp.params["ir_drop"], g_ratio=exp.params["ir_drop_g_ratio"])
    assert np.abs(y - mine).max() / np.abs(mine).max() < 1e-5
    # and, in amps, it is as close to the exact circuit as the note says, far closer than no model
    exact = Crossbar(CrossbarSpec(64, 64, r_row=1.0, r_col=1.0, v_read=1.0), G).read(V, backend="fast")
    err, ideal = _rel(y * G_HI, exact), _rel(V @ G, exact)
    noted = exp.errors["aihwkit, ir_drop fitted (exported)"][0]
    assert err < 1.5 * noted and err < 0.5 * ideal, (err, noted, ideal)

"""Accuracy over time after programming: ours (``xbar infer``) beside aihwkit's PCM inference
model on the same network and test set, in one run.

aihwkit's ``PCMLikeNoiseModel`` is the statistical PCM model IBM fitted to about a million
devices (programming noise, drift with a spread of the exponent, 1/f read noise); its
``GlobalDriftCompensation`` is the per-layer scale from a calibration read that ``xbar infer``
also applies. aihwkit runs in its own Python (torch is large): set ``XBAR_AIHWKIT_PYTHON``
to a Python that has aihwkit 1.1 and torch, or run this with one.

    python scripts/drift_vs_aihwkit.py DEPLOY_DIR [--runs 20] [--times 1s,1h,1d,1w,1y]

Both read the deployed network's weights (``deployed.npz``: the trained weights, bias as the
last row) on the digits test set. aihwkit: one ``AnalogLinear`` per layer with a sigmoid
between, ``InferenceRPUConfig`` with its default PCM noise model and g_max 25 uS, the
periphery made perfect (no output noise, no converters) so that both sides show the devices
alone, the bias digital. Ours: ``infer`` with the fast exact reads (the wires, 8-bit output
quantiser) on the devices as they were programmed by write-verify.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cosim.train.data import load_digits_split
from cosim.train.deploy import infer, load_deployed, parse_times

AIHWKIT_SIDE = r'''
import json, sys
import numpy as np
import torch
from aihwkit.nn import AnalogLinear, AnalogSequential
from aihwkit.simulator.configs import InferenceRPUConfig
from aihwkit.simulator.parameters.io import IOParameters
from aihwkit.inference import PCMLikeNoiseModel, GlobalDriftCompensation

z = np.load(sys.argv[1])
times, runs = json.loads(sys.argv[2]), int(sys.argv[3])
n = len([k for k in z.files if k.startswith("W")])
X, y = torch.tensor(z["X"], dtype=torch.float32), z["y"]

def model(compensate):
    rpu = InferenceRPUConfig()
    rpu.forward = IOParameters(is_perfect=True)
    rpu.noise_model = PCMLikeNoiseModel(g_max=25.0)
    rpu.drift_compensation = GlobalDriftCompensation() if compensate else None
    layers = []
    for k in range(n):
        W = z[f"W{k}"]
        lin = AnalogLinear(W.shape[0] - 1, W.shape[1], bias=True, rpu_config=rpu)
        lin.set_weights(torch.tensor(W[:-1].T, dtype=torch.float32), torch.tensor(W[-1], dtype=torch.float32))
        layers += [lin] + ([torch.nn.Sigmoid()] if k < n - 1 else [])
    return AnalogSequential(*layers).eval()

out = []
for t in times:
    row = {"t_s": t}
    for comp in (False, True):
        accs = []
        for r in range(runs):
            torch.manual_seed(1000 * r + 7)
            m = model(comp)
            m.program_analog_weights()
            m.drift_analog_weights(t)
            with torch.no_grad():
                accs.append(float((m(X).argmax(1).numpy() == y).mean()))
        row["compensated" if comp else "uncompensated"] = {"mean": float(np.mean(accs)), "std": float(np.std(accs))}
    out.append(row)
print(json.dumps(out))
'''


def aihwkit_python() -> str:
    other = os.environ.get("XBAR_AIHWKIT_PYTHON")
    if other:
        return other
    try:
        import aihwkit  # noqa: F401
    except ImportError:
        sys.exit("aihwkit cannot be imported here: set XBAR_AIHWKIT_PYTHON to a Python with aihwkit 1.1 and torch")
    return sys.executable


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("deploy_dir")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--times", default="1s,1h,1d,1w,1y")
    args = p.parse_args()
    times = parse_times(args.times)
    dep = load_deployed(args.deploy_dir)
    data = load_digits_split()
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "net.npz"
        np.savez(f, X=data.X_test, y=data.y_test, **{f"W{k}": W for k, W in enumerate(dep.weights)})
        res = subprocess.run([aihwkit_python(), "-c", AIHWKIT_SIDE, str(f), json.dumps(times), str(args.runs)],
                             capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"aihwkit failed:\n{res.stderr[-2000:]}")
    theirs = json.loads(res.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as tmp:   # infer writes into its folder: a copy keeps the user's
        (Path(tmp) / "deployed.npz").write_bytes((Path(args.deploy_dir) / "deployed.npz").read_bytes())
        ours = infer(tmp, data, times, runs=args.runs)["times"]
    print(f"digits network {[W.shape for W in dep.weights]}, {args.runs} Monte Carlo runs per time\n")
    print("| time | xbar infer | xbar infer, compensated | aihwkit PCM | aihwkit PCM, compensated |")
    print("|---|---|---|---|---|")
    for o, a in zip(ours, theirs):
        cells = [f"{100 * d[k]['mean']:.2f} +- {100 * d[k]['std']:.2f} %" for d in (o, a)
                 for k in ("uncompensated", "compensated")]
        print(f"| {args.times.split(',')[ours.index(o)]} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

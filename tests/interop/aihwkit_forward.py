"""Forward pass of one aihwkit analog layer built from an exported parameter file.

Run by tests/test_interop.py with a Python that has aihwkit (it may be another environment than
the toolkit's, so this file imports only aihwkit, torch, numpy and the standard library):

    python aihwkit_forward.py PARAMS.json W.npy X.npy OUT.npy

W is the tile's weight matrix (outputs, inputs), X the inputs (batch, inputs); OUT gets the
layer's outputs (batch, outputs) in aihwkit's units.
"""

import json
import sys

import numpy as np
import torch
from aihwkit.nn import AnalogLinear
from aihwkit.simulator.configs import InferenceRPUConfig
from aihwkit.simulator.parameters import IOParameters


def main(params_path: str, w_path: str, x_path: str, out_path: str) -> None:
    torch.set_num_threads(1)
    W = np.load(w_path)
    X = np.load(x_path)
    cfg = InferenceRPUConfig()
    cfg.forward = IOParameters(**json.load(open(params_path)))     # the export must load as it is
    cfg.drift_compensation = None
    cfg.mapping.max_input_size = W.shape[1]
    cfg.mapping.max_output_size = W.shape[0]
    layer = AnalogLinear(W.shape[1], W.shape[0], bias=False, rpu_config=cfg)
    layer.set_weights(torch.tensor(W, dtype=torch.float32))
    layer.eval()
    with torch.no_grad():
        y = layer(torch.tensor(X, dtype=torch.float32)).numpy().astype(np.float64)
    np.save(out_path, y)
    print(json.dumps({"torch": torch.__version__, "aihwkit": __import__("aihwkit").__version__}))


if __name__ == "__main__":
    main(*sys.argv[1:5])

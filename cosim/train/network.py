"""The multilayer perceptron: analog layers (or unit-cell layers) plus the rules of backprop.

Layer: cosim.train. Sigmoid hidden layers, softmax output, cross-entropy loss; the forward read,
the transposed backward read and the update each on the backend a training run picks
(:mod:`cosim.train.loop`). Initial weights are Glorot-uniform from ``default_rng([seed,
0xA11])``, so the analog network and its software twin start equal.
"""

from __future__ import annotations

import time

import numpy as np

from cosim.train.layers import AnalogLayer, LayerConfig, Updater
from cosim.train.unitcell import UnitCellLayer

__all__ = ["MLP", "sigmoid", "softmax"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, written so that it never overflows."""
    return 0.5 * (1 + np.tanh(0.5 * z))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class MLP:
    """Analog layers plus the rules of backprop; ``software=True`` uses the float weights."""

    def __init__(self, sizes: list[int], layer_cfg: LayerConfig, seed: int, engine=None, *, unit_cell=None,
                 msp=None):
        rng = np.random.default_rng([seed, 0xA11])
        self.layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            a = np.sqrt(6.0 / (n_in + n_out))
            W = rng.uniform(-a, a, (n_in, n_out))
            if unit_cell is None:
                self.layers.append(AnalogLayer(W, layer_cfg, engine=engine))
            else:
                self.layers.append(UnitCellLayer(W, layer_cfg, unit_cell, engine=engine, msp=msp))

    def forward(self, x: np.ndarray, backend: str, *, start: int = 0) -> list[np.ndarray]:
        """Activations of every layer (``acts[0] = x``); the pre-activations are kept in
        ``self.pre_activations``. ``start``: ``x`` is the input of layer ``start``."""
        acts, zs = [x], []
        for k, layer in enumerate(self.layers[start:], start):
            z = layer.forward(acts[-1], backend)
            zs.append(z)
            acts.append(z if k == len(self.layers) - 1 else sigmoid(z))
        self.pre_activations = zs
        return acts

    def step(self, x: np.ndarray, y: np.ndarray, phases, updater: Updater,
             rng: np.random.Generator, software: bool, times: dict, audit=None) -> float:
        """One mini-batch of backprop; ``phases`` has the read backends ``forward`` and
        ``backward`` and the learning rate ``lr`` (a :class:`cosim.train.loop.TrainConfig`).
        ``audit(net, acts, pre_activations, deltas)`` is called after the reads and before the
        update (the conductances the reads saw)."""
        fwd = "software" if software else phases.forward
        bwd = "software" if software else phases.backward
        t0 = time.perf_counter()
        acts = self.forward(x, fwd)
        t1 = time.perf_counter()
        p = softmax(acts[-1])
        loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
        d = p.copy()
        d[np.arange(len(y)), y] -= 1
        d /= len(y)
        deltas = [d]
        for k in range(len(self.layers) - 1, 0, -1):
            h = acts[k]
            deltas.insert(0, self.layers[k].backward(deltas[0], bwd) * h * (1 - h))
        t2 = time.perf_counter()
        if audit is not None:               # its time is its own: not in the phases' times
            audit(self, acts, self.pre_activations, deltas)
        ta = time.perf_counter()
        for k, layer in enumerate(self.layers):
            layer.update(acts[k], deltas[k], phases.lr, updater, rng, software=software)
        t3 = time.perf_counter()
        if not software:
            times["forward"] += t1 - t0
            times["backward"] += t2 - t1
            times["update"] += t3 - ta
        return loss

    def accuracy(self, X: np.ndarray, y: np.ndarray, backend: str) -> tuple[float, np.ndarray]:
        pred = self.forward(X, backend)[-1].argmax(axis=1)
        return float((pred == y).mean()), pred

"""Training at circuit fidelity: data sets, analog layers tiled over arrays, the 2 PCM + 3T1C
unit cell, the multilayer perceptron and the training loop with checkpoints.

The highest library room: it may import every other room of :mod:`cosim`.
"""

"""Writing an array: weights mapped onto conductance pairs, stochastic pulse trains, the
pulse-coincidence update of pairs (device twins, step tables or ngspice) and deterministic
programming (exact pulse counts, write-verify).

Imports :mod:`cosim.sim`, ``netlists`` and ``models``.
"""

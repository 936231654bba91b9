"""Reading an array: matrix-vector products forward and transposed on every backend (ngspice,
the exact fast solver, the calibrated IR-drop model, ideal), the read chain of DACs,
integrators and ADCs around an array, read energy and sneak paths.

Imports :mod:`cosim.sim`, ``netlists`` and ``models``.
"""

"""Running ngspice and keeping what it gives: engines (``ngspice -b`` subprocesses and the
isolated shared library), typed errors, raw-file reading, resumable sweeps (serial or Dask),
machine checks and output files.

The lowest room of :mod:`cosim`: it imports ``models`` and ``netlists`` only.
"""

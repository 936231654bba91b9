"""xbar-cosim's co-simulation layer: ngspice and the fast models behind one set of reads,
writes, fits and training loops.

Rooms, lowest first (a room imports only from rooms below it, and from ``netlists`` and
``models``): :mod:`cosim.sim` (engines, errors, sweeps, files), :mod:`cosim.read` and
:mod:`cosim.write` (the three training phases on one array), :mod:`cosim.characterize`
(device and periphery benches), :mod:`cosim.calibrate` (fast models fitted to SPICE),
:mod:`cosim.train` (layers, unit cells, the network and its training loop) and
:mod:`cosim.cli` (the ``xbar`` command). Importing a room is cheap: PySpice, matplotlib, Dask
and ngspice load only when a call needs them.
"""

"""Benches that characterise one block against its numpy twin: device pulse responses and
I-V curves, DAC/integrator/ADC reads, op-amp open loops and ADC transfers, with plots and CSV.

Imports :mod:`cosim.sim`, :mod:`cosim.read`, :mod:`cosim.write`, ``netlists`` and ``models``.
"""

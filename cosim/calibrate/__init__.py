"""Fast models fitted to SPICE and checked against it: the cheap IR-drop model over a sweep,
device step tables, integrator/ADC transfer fits, Monte Carlo of non-idealities, their reports
and the aihwkit export.

Imports :mod:`cosim.characterize` and the rooms below it.
"""

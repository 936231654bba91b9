"""Device and periphery compact models: each a frozen parameter dataclass, its numpy twin and its
ngspice subcircuit text, side by side.

The lowest layer of xbar-cosim: it imports numpy and nothing else of ours. Devices (PCM, RRAM,
ECRAM, the transistor-level 3T1C cell, an ideal linear cell) are listed in
:mod:`models.registry`; the periphery is :mod:`models.dac`, :mod:`models.opamp`,
:mod:`models.integrator`, :mod:`models.adc` and the MOSFET cards of :mod:`models.mosfet`.
"""

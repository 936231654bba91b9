"""What a read chain's read returns: :class:`ReadResult`.

Layer: cosim.read. The chain itself is :class:`cosim.read.readchain.ReadChain`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cosim.sim.files import atomic_path

__all__ = ["ReadResult"]


@dataclass(frozen=True, eq=False)
class ReadResult:
    """Output of :meth:`ReadChain.read` (batch-first arrays).

    ``codes`` (batch, n_out) int: signed digital outputs (see :mod:`cosim.read.readchain`).
    ``adc_codes`` (batch, n_sense[, bits]) int: raw converter codes per physical line (bit-serial:
    one per bit window, LSB first, on the last axis).
    ``v_out`` (batch, n_sense[, bits]) [V]: integrator outputs at the end of integration.
    ``charge`` (batch, n_sense) [C]: charge into each virtual ground (spice: the integrated
    current of the sense source; fast: the exact solve of the volt-seconds), shift-and-added for bit-serial.
    ``current`` (batch, n_out) [A]: the equivalent output current, charge / full-scale time
    (diff forward: I+ - I-), comparable to ``Crossbar.read(codes / max_code * v_read)``.
    ``decoded`` (batch, n_out) [A]: the same quantity as the digital side knows it, from the codes
    (:meth:`ReadChain.decode_charge`: bin centres relative to the integrator's start voltage,
    ideal capacitor) over the full-scale time.
    ``swing`` (like ``adc_codes``) int: the converter code of the integrator output at its
    farthest from the start during the window (a peak detector's): the two signed phases can
    swing it past a rail and back to a final code that looks in range (:mod:`cosim.read.readchain`).
    None: the final codes.
    """

    codes: np.ndarray
    adc_codes: np.ndarray
    v_out: np.ndarray
    charge: np.ndarray
    current: np.ndarray
    decoded: np.ndarray
    backend: str
    elapsed_s: float
    points: int = 0
    energy: dict | None = None
    swing: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.swing is None:
            object.__setattr__(self, "swing", self.adc_codes)

    def to_npz(self, path: str | Path) -> Path:
        p = Path(path)
        with atomic_path(p) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, codes=self.codes, adc_codes=self.adc_codes, v_out=self.v_out, charge=self.charge,
                     current=self.current, decoded=self.decoded, swing=self.swing)
        return p

"""Sneak paths: single-cell reads of passive (0T1R) and 1T1R arrays in ngspice.

Layer: cosim.read. :func:`cell_read_errors` reads cells one by one (one ``.op`` deck each, run in
parallel) with :func:`netlists.access.build_cell_read` and returns the relative error of the
sensed current against the cell alone, ``I / (G_ij v_read) - 1``: sneak paths (0T1R, unselected
lines floating or half-biased), or the access transistor's series resistance (1T1R).
"""

from __future__ import annotations

import numpy as np

from cosim.sim.engine import SubprocessEngine
from netlists.access import build_cell_read
from netlists.crossbar import CrossbarSpec
from netlists.spice import Op, write_spice


def cell_read_errors(spec: CrossbarSpec, G: np.ndarray, cells, *, access: str = "0t1r",
                     unselected: str = "float", engine=None, **kw) -> np.ndarray:
    """Relative read error of each cell in ``cells`` (a list of ``(i, j)``) [-]."""
    engine = engine or SubprocessEngine()
    G = np.asarray(G, dtype=float)
    decks = [write_spice(build_cell_read(spec, G, c, access=access, unselected=unselected, **kw), Op())
             for c in cells]
    res = engine.run_many(decks, need=["i(vsense_0)"], name=f"sneak_{access}")
    v = kw.get("v_read", spec.v_read)
    return np.array([r.vectors["i(vsense_0)"][0] / (G[i, j] * v) - 1 for r, (i, j) in zip(res, cells)])

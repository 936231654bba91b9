"""``xbar doctor``: is this machine able to run xbar-cosim, and how well?

Layer: cosim.sim. Each check returns (name, passed, detail); nothing here changes the machine.
"""

from __future__ import annotations

import os

from collections.abc import Iterator

import numpy as np

from cosim.sim.engine import SharedEngine, SubprocessEngine, ngspice_version
from cosim.sim.errors import NGSPICE_MIN_VERSION
from cosim.sim.files import cache_dir
from cosim.sim.processes import pdeathsig_prefix
from models.errors import XbarError
from netlists.ir import Circuit, NodeTable, Resistors, VoltageSources
from netlists.spice import SpiceDeck, write_spice


def divider_deck() -> SpiceDeck:
    """A 1 V source on two equal resistors in series: ``v(b)`` is 0.5 V."""
    nodes = NodeTable()
    a, b = int(nodes.add("a")), int(nodes.add("b"))
    circuit = Circuit("doctor check: a voltage divider", nodes, (
        VoltageSources("1", (1,), p=[a], n=[0], value=1.0, role="supply"),
        Resistors("div", (2,), a=np.array([a, b]), b=np.array([b, 0]), resistance=1000.0)))
    return write_spice(circuit, save=["v(b)"])


def run_checks() -> Iterator[tuple[str, bool, str]]:
    """Yield (name, passed, detail) for each check, in order."""
    tiny = divider_deck()
    try:
        v = ngspice_version()
        yield "ngspice executable", True, f"ngspice {v} (>= {NGSPICE_MIN_VERSION} required)"
    except XbarError as exc:
        yield "ngspice executable", False, exc.reason if hasattr(exc, "reason") else str(exc)
        return
    try:
        res = SubprocessEngine(workers=1, timeout=60).run(tiny, need=["v(b)"])
        klu = "Using KLU" in res.log
        ok = bool(klu and abs(res["v(b)"][0] - 0.5) < 1e-12)
        yield "KLU solver", ok, ("ngspice uses KLU (.options klu)" if klu else
                                 "this ngspice has no KLU: crossbars will be 10-100x slower; "
                                 "install ngspice >= 42 (Debian 12: bookworm-backports)")
    except XbarError as exc:
        yield "KLU solver", False, f"a one-resistor deck failed: {getattr(exc, 'reason', exc)}"
    try:
        with SharedEngine(timeout=60) as eng:
            res = eng.run(tiny, need=["v(b)"])
            ok = bool(abs(res["v(b)"][0] - 0.5) < 1e-12)
            yield "PySpice shared library", ok, f"libngspice {eng.version} runs in an isolated worker process"
    except Exception as exc:  # any failure here is the finding, not a crash of doctor
        yield "PySpice shared library", False, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    yield from _process_checks()
    import networkx
    import numpy
    import scipy
    yield "python stack", True, f"numpy {numpy.__version__}, scipy {scipy.__version__}, networkx {networkx.__version__}"
    yield _numba_check()


def _numba_check() -> tuple[str, bool, str]:
    """numba compiles the exact fast solver's loops; without it they run as numpy loops."""
    if os.environ.get("XBAR_NO_NUMBA"):
        return "compiled solver loops", True, "off (XBAR_NO_NUMBA is set): numpy loops, about 3x slower"
    try:
        import numba
    except ImportError as exc:
        return "compiled solver loops", False, f"numba cannot be imported ({exc}): the fast solver runs numpy loops, " \
                                               "about 3x slower; pip install numba"
    return "compiled solver loops", True, f"numba {numba.__version__}"


def _process_checks() -> Iterator[tuple[str, bool, str]]:
    """Whether ngspice children can be tied to their run, and where temporary decks go."""
    if pdeathsig_prefix():
        yield "child processes", True, "ngspice dies with its run (setpriv --pdeathsig)"
    else:
        yield "child processes", False, ("no setpriv with --pdeathsig (util-linux): ngspice is still killed on "
                                         "SIGINT/SIGTERM, but a SIGKILLed run may leave it running")
    yield "temporary decks", True, f"{cache_dir() / 'tmp'} (pruned of finished and killed runs)"

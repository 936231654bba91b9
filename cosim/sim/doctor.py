"""``xbar doctor``: is this machine able to run xbar-cosim, and how well?

Layer: cosim. Each check returns (name, passed, detail); nothing here changes the machine.
"""

from __future__ import annotations

from typing import Iterator

from models.errors import XbarError

_TINY = """doctor check
.options klu
V1 a 0 DC 1
R1 a b 1000
R2 b 0 1000
.save v(b)
.op
.end
"""


def run_checks() -> Iterator[tuple[str, bool, str]]:
    """Yield (name, passed, detail) for each check, in order."""
    from cosim.sim.engine import NGSPICE_MIN_VERSION, SharedEngine, SubprocessEngine, ngspice_version

    try:
        v = ngspice_version()
        yield "ngspice executable", True, f"ngspice {v} (>= {NGSPICE_MIN_VERSION} required)"
    except XbarError as exc:
        yield "ngspice executable", False, exc.reason if hasattr(exc, "reason") else str(exc)
        return
    try:
        res = SubprocessEngine(workers=1, timeout=60).run(_TINY, need=["v(b)"])
        klu = "Using KLU" in res.log
        ok = klu and abs(res["v(b)"][0] - 0.5) < 1e-12
        yield "KLU solver", ok, ("ngspice uses KLU (.options klu)" if klu else
                                 "this ngspice has no KLU: crossbars will be 10-100x slower; "
                                 "install ngspice >= 42 (Debian 12: bookworm-backports)")
    except XbarError as exc:
        yield "KLU solver", False, f"a one-resistor deck failed: {getattr(exc, 'reason', exc)}"
    try:
        with SharedEngine(timeout=60) as eng:
            res = eng.run(_TINY, need=["v(b)"])
            ok = abs(res["v(b)"][0] - 0.5) < 1e-12
            yield "PySpice shared library", ok, f"libngspice {eng.version} runs in an isolated worker process"
    except Exception as exc:  # any failure here is the finding, not a crash of doctor
        yield "PySpice shared library", False, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    import networkx
    import numpy
    import scipy
    yield "python stack", True, f"numpy {numpy.__version__}, scipy {scipy.__version__}, networkx {networkx.__version__}"

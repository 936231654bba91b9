"""Shared fixtures. Tests run the real ngspice: nothing here mocks the simulator."""

from __future__ import annotations

import numpy as np
import pytest


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true", default=False,
                     help="rewrite the golden decks under tests/golden instead of comparing")


@pytest.fixture
def regen_golden(request) -> bool:
    return bool(request.config.getoption("--regen-golden"))


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    from cosim.sim.engine import SubprocessEngine
    return SubprocessEngine(timeout=300, workdir=tmp_path_factory.mktemp("decks"))


@pytest.fixture(scope="session")
def shared_engine():
    from cosim.sim.engine import SharedEngine
    eng = SharedEngine(timeout=300)
    yield eng
    eng.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


def pytest_configure(config):
    config.addinivalue_line("markers", "raw_decks: the test hands ngspice decks written by hand (engine tests of "
                                       "bad decks); every other test may only run decks of netlists.spice.write_spice")


@pytest.fixture(autouse=True)
def decks_come_from_write_spice(request, monkeypatch):
    """Deck provenance: every deck that library code hands to an engine must be a
    :class:`netlists.spice.SpiceDeck` (the output of ``write_spice``), never text written by
    hand. Applied to every test, so every code path the suite exercises is checked."""
    if request.node.get_closest_marker("raw_decks"):
        return
    from cosim.sim.engine import SharedEngine, SubprocessEngine
    from netlists.spice import SpiceDeck

    def guard(method):
        def run(self, deck, *a, **kw):
            if not isinstance(deck, SpiceDeck):
                raise AssertionError(f"a deck that did not come from netlists.spice.write_spice reached "
                                     f"{type(self).__name__}.{method.__name__}: {str(deck)[:120]!r}")
            return method(self, deck, *a, **kw)
        return run

    # _run_one: every deck of run and run_many passes through it
    monkeypatch.setattr(SubprocessEngine, "_run_one", guard(SubprocessEngine._run_one))
    monkeypatch.setattr(SharedEngine, "load", guard(SharedEngine.load))

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

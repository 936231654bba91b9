"""The ngspice engines against the real ngspice: results, batching, and every failure mode."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.sim.engine import SharedEngine, SubprocessEngine
from cosim.sim.results import AnalysisResult, check_log, check_vectors, read_raw
from cosim.sim.errors import (
    BatchError,
    MissingVectorError, NgspiceConvergenceError, NgspiceCrash, NgspiceError, NgspiceParseError,
    NgspiceSingularError, NgspiceTimeout,
)

pytestmark = pytest.mark.raw_decks   # the engine itself, on decks written by hand (bad ones too)

DIVIDER = """divider
.options klu
V1 a 0 DC 1
R1 a b 1000
R2 b 0 3000
.save v(b) i(v1)
.op
.end
"""

NO_DC_SOLUTION = "nosolution\n.options klu\nI1 0 a 5\nB1 a 0 I = 2*tanh(v(a))\n.save v(a)\n.op\n.end\n"


def test_subprocess_engine_reads_the_raw_file(engine):
    res = engine.run(DIVIDER, need=["v(b)", "i(v1)"])
    assert res.version >= 42
    assert res["v(b)"][0] == pytest.approx(0.75, rel=1e-12)
    assert res["i(v1)"][0] == pytest.approx(-0.25e-3, rel=1e-12)   # into +, through the source
    assert "Using KLU" in res.log


def test_run_many_keeps_order_and_parallelises(engine):
    decks = [DIVIDER.replace("R2 b 0 3000", f"R2 b 0 {r}") for r in (1000, 3000, 9000)]
    out = engine.run_many(decks, need=["v(b)"])
    assert [r["v(b)"][0] for r in out] == pytest.approx([0.5, 0.75, 0.9])


def test_shared_engine_matches_subprocess_and_reruns_with_alter(engine, shared_engine):
    a = engine.run(DIVIDER)
    b = shared_engine.run(DIVIDER)
    assert b.vectors.keys() == a.vectors.keys()
    assert b["v(b)"][0] == pytest.approx(a["v(b)"][0], rel=1e-12)
    again = shared_engine.rerun(["alter R2 = 1000"], need=["v(b)"])
    assert again["v(b)"][0] == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError, match="truncate"):
        shared_engine.rerun(["alter R2 = " + "1" * 1200])


@pytest.mark.parametrize("kind", ["subprocess", "shared"])
@pytest.mark.parametrize("deck, error, match", [
    ("bad\nV1 a 0 1\nQ9 garbage line\nR1 a 0 1k\n.op\n.end\n", NgspiceParseError, "model"),
    ("loop\nV1 a 0 1\nV2 a 0 2\nR1 a 0 1\n.op\n.end\n", NgspiceSingularError, "singular"),
    ("missing\nV1 a 0 1\nR1 a 0 1\n.save v(a)\n.op\n.end\n", MissingVectorError, "v\\(nothere\\)"),
    ("garbage\nV1 a 0 1\nR1 a 0 1k\nthis is garbage\n.op\n.end\n", NgspiceParseError, "parse"),
    ("save\nV1 a 0 1\nR1 a 0 1k\n.save v(nothere)\n.op\n.end\n", MissingVectorError, "does not have"),
    ("subckt\nV1 a 0 1\nR1 a 0 1k\nX1 a 0 nosuch\n.op\n.end\n", NgspiceParseError, "subcircuit"),
    # no DC solution (5 A into a sink that takes 2 A at most): gmin stepping, source stepping and
    # the pseudo-transient operating point all fail, and ngspice's answer is NaN
    (NO_DC_SOLUTION, NgspiceConvergenceError, "did not converge"),
])
def test_failures_are_typed_with_the_log_tail(kind, deck, error, match, engine, shared_engine):
    eng = engine if kind == "subprocess" else shared_engine
    with pytest.raises(error, match=match) as info:
        eng.run(deck, need=["v(nothere)"] if deck.startswith("missing") else ())
    if error is not MissingVectorError:
        assert info.value.log_tail()
    # the shared engine serves the next deck after a failure
    assert eng.run(DIVIDER)["v(b)"][0] == pytest.approx(0.75)


@pytest.mark.parametrize("kind", ["subprocess", "shared"])
def test_errors_do_not_quote_included_files(kind, engine, shared_engine, tmp_path):
    (tmp_path / "private.sp").write_text("secret line 1 from a private model\nR9 a 0 1k\n")
    deck = f"inc\nV1 a 0 1\n.include {tmp_path / 'private.sp'}\nQ1 a b c nomodel\n.op\n.end\n"
    eng = engine if kind == "subprocess" else shared_engine
    with pytest.raises(NgspiceParseError) as info:
        eng.run(deck)
    assert "secret" not in str(info.value) and "includes other files" in str(info.value)
    assert "secret line" in info.value.log       # the log itself is kept whole


@pytest.mark.parametrize("deck", ["", "title only\n", "no end\nV1 a 0 1\nR1 a 0 2k\n.op\n"],
                         ids=["empty", "title only", "no .end"])
def test_shared_engine_refuses_an_incomplete_deck_instead_of_rerunning_the_last(shared_engine, deck):
    assert shared_engine.run(DIVIDER)["v(b)"][0] == pytest.approx(0.75)
    with pytest.raises(NgspiceParseError, match="not a complete circuit"):
        shared_engine.run(deck)


def test_shared_engine_worker_has_a_memory_cap():
    """A runaway analysis (every node of a 2,000-stage ladder saved over 20,000 steps, ~320 MB)
    kills the worker at its cap instead of growing without bound."""
    lines = ["ladder", ".options klu", "V1 n0 0 SIN(0 1 1e6)"]
    for i in range(2000):
        lines += [f"R{i} n{i} n{i + 1} 10", f"C{i} n{i + 1} 0 1p"]
    deck = "\n".join(lines + [".tran 1e-9 20e-6", ".end"]) + "\n"
    with SharedEngine(timeout=60, max_memory_bytes=300 << 20) as eng:
        with pytest.raises(NgspiceCrash, match="memory cap"):
            eng.run(deck)
        assert eng.run(DIVIDER)["v(b)"][0] == pytest.approx(0.75)      # a fresh worker serves on


def test_failing_deck_is_kept_for_inspection(engine):
    with pytest.raises(NgspiceError) as info:
        engine.run("bad\nV1 a 0 1\nQ9 garbage\n.op\n.end\n")
    assert info.value.deck_path is not None and info.value.deck_path.exists()
    assert str(info.value.deck_path) in str(info.value)


def test_ignored_lines_are_failures():
    log = "Warning: unknown parameter foo ignored!\nok\n"
    with pytest.raises(NgspiceParseError, match="ignored"):
        check_log(log)


def test_convergence_fallback_is_refused_unless_allowed():
    log = "Note: Starting dynamic gmin stepping\nWarning: Dynamic gmin stepping failed\nNote: Transient op started\n"
    with pytest.raises(NgspiceConvergenceError):
        check_log(log)
    notes = check_log(log, allow_fallback=True)
    assert any("gmin" in n for n in notes)


def test_non_finite_results_are_refused():
    plots = [AnalysisResult("op", {"v(a)": np.array([1.0, np.nan]), "v(b)": np.array([1.0, 2.0])})]
    check_vectors(plots, ["v(b)"], None, "", None)
    with pytest.raises(NgspiceConvergenceError, match=r"NaN or infinite values in v\(a\)"):
        check_vectors(plots, ["v(b)", "v(a)"], None, "", None)


def test_timeout_stops_ngspice(tmp_path):
    slow = ("slow\n.options klu\nV1 a 0 SIN(0 1 1e6)\nR1 a b 1k\nC1 b 0 1n\n.save v(b)\n"
            ".tran 1e-12 1e-3\n.end\n")
    with pytest.raises(NgspiceTimeout, match="longer than"):
        SubprocessEngine(timeout=0.5, workdir=tmp_path).run(slow)


def test_raw_file_size_cap_stops_a_runaway(tmp_path):
    big = ("big\n.options klu\nV1 a 0 SIN(0 1 1e6)\nR1 a b 1k\nC1 b 0 1n\n.save v(b) v(a)\n"
           ".tran 1e-10 1e-4\n.end\n")
    with pytest.raises(NgspiceTimeout, match="raw file"):
        SubprocessEngine(timeout=120, max_raw_bytes=200_000, workdir=tmp_path).run(big)


def test_batch_error_keeps_finished_results(engine):
    decks = [DIVIDER, "bad\nV1 a 0 1\nQ9 x\n.op\n.end\n", DIVIDER]
    with pytest.raises(BatchError) as info:
        engine.run_many(decks, need=["v(b)"])
    assert info.value.index == 1
    assert info.value.results[0] is not None and info.value.results[2] is not None
    assert info.value.results[1] is None


def test_shared_worker_crash_is_isolated():
    eng = SharedEngine(timeout=60)
    try:
        eng.load(DIVIDER)
        assert eng.rerun(need=["v(b)"])["v(b)"][0] == pytest.approx(0.75)
        eng._proc.kill()          # what a segfault in libngspice looks like from here
        eng._proc.wait()
        with pytest.raises(NgspiceCrash, match="died"):
            eng.rerun(["alter R2 = 1000"], need=["v(b)"])
        assert eng.run(DIVIDER)["v(b)"][0] == pytest.approx(0.75)   # a fresh worker
        with pytest.raises(ValueError, match="quit"):
            eng.rerun(["quit"])
    finally:
        eng.close()


def test_raw_reader_reads_sweeps(engine, tmp_path):
    deck = "sweep\n.options klu\nV1 a 0 0\nR1 a 0 2\n.save i(v1)\n.dc V1 0 2 0.5\n.end\n"
    res = SubprocessEngine(keep_files=True, workdir=tmp_path).run(deck)
    assert np.allclose(res["i(v1)"], -np.arange(0, 2.01, 0.5) / 2)
    plots = read_raw(res.deck_path.with_suffix(".raw"))
    assert plots[0].name.lower().startswith("dc") and len(plots[0].vectors["v(v-sweep)"]) == 5

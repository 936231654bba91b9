"""ngspice auditing a training run: the log, its numbers against the circuit, bounds, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cosim.read.irmodel import Calibration, IRModel
from cosim.train.audit import (AUDIT_LOG, AuditConfig, AuditError, calibration_bound, read_audit_log,
                               summarize_audit)
from cosim.train.data import Dataset, load_digits_split
from cosim.train.layers import LayerConfig
from cosim.train.loop import TrainConfig, train
from models.errors import ParameterError

ROOT = Path(__file__).resolve().parents[1]


def _small(n_train: int = 60) -> Dataset:
    d = load_digits_split()
    keep = np.isin(d.y_test, d.y_train[:n_train])
    return Dataset("digits-small", d.X_train[:n_train], d.y_train[:n_train], d.X_test[keep][:40], d.y_test[keep][:40])


def _cfg(**layer) -> TrainConfig:
    return TrainConfig(hidden=(12,), epochs=1, batch_size=10, forward="fast", backward="fast", update="ideal",
                       layer=LayerConfig(r_wire=2.0, adc_bits=None, max_rows=40, **layer))


def test_audits_every_k_mini_batches_match_ngspice(tmp_path):
    m = train(_cfg(), _small(), tmp_path, progress=False, audit=AuditConfig(every=2))
    recs = read_audit_log(tmp_path)
    assert [r["step"] for r in recs] == [0, 2, 4]
    assert {r["layer"] for r in recs} <= {0, 1} and all(r["tile"] in (0, 1) for r in recs)  # layer 0 has 2 tiles
    for r in recs:                                   # the exact solver against ngspice, both directions
        assert r["rms_error_fs"] < 1e-9 and r["bound_source"] == "the exact solver"
        if r["direction"] == "forward":
            assert r["predictions_same"] == 1.0
        else:
            assert r["layer"] > 0 and r["delta_sign_flips"] == 0.0
    assert m["audit"]["audits"] == 3 and m["audit"]["over_twice_bound"] == 0
    assert (tmp_path / "audit.png").stat().st_size > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["audit"]["audits"] == 3
    # the audit does not change the training: same weights as a run without it
    plain = train(_cfg(), _small(), tmp_path / "plain", progress=False)
    assert plain["final"] == m["final"]


def _calibration(model: IRModel, r_wire: float, cal_rmse: float) -> Calibration:
    """``model`` with a held-out RMS error ``cal_rmse`` at 64 x 64 and ``r_wire``."""
    return Calibration(model, fit={"g_range": [1e-6, 25e-6]},
                       errors=[{"rows": 64, "cols": 64, "r_wire": r_wire, "cal_rmse": cal_rmse}])


def _wrong_calibration() -> Calibration:
    """A model whose coefficients are far off, and a held-out error it cannot meet."""
    return _calibration(IRModel((30.0,) * 8), 2.0, 1e-9)


def test_an_audit_over_its_bound_warns_or_stops_the_run(tmp_path):
    cfg = _cfg(calibration=_wrong_calibration())
    cfg = TrainConfig(**{**cfg.__dict__, "forward": "calibrated", "backward": "calibrated"})
    with pytest.warns(RuntimeWarning, match="over twice its bound .*calibrated 64x64 at 2 ohm"):
        train(cfg, _small(30), tmp_path / "warn", progress=False, audit=AuditConfig(every=1))
    assert read_audit_log(tmp_path / "warn")[0]["rms_error_fs"] > 2 * read_audit_log(tmp_path / "warn")[0]["bound_fs"]
    with pytest.raises(AuditError, match="stopped .*audit.jsonl"):
        train(cfg, _small(30), tmp_path / "strict", progress=False, audit=AuditConfig(every=1, strict=True))


def test_quantised_calibrated_reads_are_judged_before_the_quantiser(tmp_path):
    """The calibration bounds analog currents: an audit of reads through the 9-bit quantiser
    records both errors and holds the analog one to the bound (a code flip next to a threshold
    is a whole LSB whatever the analog error)."""
    from cosim.train.audit import judged_error
    layer = LayerConfig(r_wire=2.0, adc_bits=9, max_rows=40, calibration=_calibration(IRModel.nominal(), 2.0, 1e-3))
    cfg = TrainConfig(hidden=(12,), epochs=1, forward="calibrated", backward="calibrated", layer=layer)
    train(cfg, _small(30), tmp_path, progress=False, audit=AuditConfig(every=1))
    recs = read_audit_log(tmp_path)
    assert all(r["judged"] == "analog" and judged_error(r) == r["analog_rms_error_fs"] for r in recs)
    assert all(0 < r["analog_rms_error_fs"] < 2 * r["bound_fs"] for r in recs)
    assert len(recs) == 3 and all(r["outputs_differing"] is not None for r in recs)


def _calibrated(r_wire: float, model: IRModel, cal_rmse: float, **layer) -> TrainConfig:
    cal = _calibration(model, r_wire, cal_rmse)
    return TrainConfig(hidden=(12,), epochs=1, forward="calibrated", backward="calibrated", update="ideal",
                       layer=LayerConfig(r_wire=r_wire, adc_bits=None, max_rows=40, calibration=cal, **layer))


def test_a_wrong_model_changes_predictions_and_the_summary_weighs_them_by_samples(tmp_path):
    """A model far off on 50 ohm wires: ngspice's outputs change predictions and flip signs of
    backpropagated errors, and the audit says so (the measures are not stuck at 1 and 0). The
    summary's share of unchanged predictions is over samples, not over audits."""
    with pytest.warns(RuntimeWarning, match="over twice its bound"):
        train(_calibrated(50.0, IRModel((30.0,) * 8), 1e-6), _small(30), tmp_path, progress=False,
              audit=AuditConfig(every=1))
    recs = read_audit_log(tmp_path)
    fwd = [r for r in recs if r["direction"] == "forward"]
    assert min(r["predictions_same"] for r in fwd) < 1.0
    assert max(r["delta_sign_flips"] for r in recs if r["direction"] == "backward") > 0.0
    fwd[0] = {**fwd[0], "samples": 30}
    s = summarize_audit(fwd)
    n = sum(r["samples"] for r in fwd)
    assert s["samples"] == n and s["predictions_same"] == pytest.approx(
        sum(r["samples"] * r["predictions_same"] for r in fwd) / n)
    assert s["predictions_same"] != pytest.approx(s["predictions_same_mean"])


@pytest.mark.filterwarnings("ignore:.*one LSB of the read chain")    # the far-off model's codes
def test_a_chain_run_holds_its_ir_model_to_the_calibration(tmp_path):
    """Through a read chain the codes are held to one LSB; at array scope the IR model's
    currents before the converters are also held to the calibration's bound, and a model far off
    is named although its codes may pass."""
    from netlists.readchain import PeripheryConfig
    from models.dac import DacParams
    chain = {"periphery": PeripheryConfig(dac=DacParams(bits=4)), "chain_autorange": 6}
    audit = AuditConfig(every=1, chain_scope="array")
    train(_calibrated(1.0, IRModel.nominal(), 1e-3, **chain), _small(20), tmp_path / "ok", progress=False,
          audit=audit)
    recs = read_audit_log(tmp_path / "ok")
    assert all(r["calibration_bound_source"] == "calibrated 64x64 at 1 ohm" for r in recs)
    assert all(r["analog_rms_error_fs"] < r["calibration_bound_fs"] for r in recs)
    s = summarize_audit(recs)
    assert s["calibration_judged"] == len(recs) and s["calibration_over_twice"] == 0
    from cosim.cli.cmd_train import audit_text
    assert f"against its calibration: {len(recs)} audits, 0 over twice the bound" in audit_text(s)
    with pytest.warns(RuntimeWarning, match="the IR model's currents before the converters.*calibrated 64x64 at 50"):
        train(_calibrated(50.0, IRModel((30.0,) * 8), 1e-6, **chain), _small(20), tmp_path / "off",
              progress=False, audit=audit)
    assert summarize_audit(read_audit_log(tmp_path / "off"))["calibration_over_twice"] == 2


def test_a_unit_cell_is_held_to_f_times_the_pairs_bound_plus_its_3t1c_arrays(tmp_path):
    """2 PCM + 3T1C: the output is F (G+ - G-) plus the 3T1C part, so the bound is F times the
    pair's calibrated error plus the 3T1C array's; the nominal model meets it."""
    cfg = replace(_calibrated(2.0, IRModel.nominal(), 1e-3), unit_cell="2pcm3t1c", update="fast")
    train(cfg, _small(30), tmp_path, progress=False, audit=AuditConfig(every=1))
    recs = read_audit_log(tmp_path)
    assert len(recs) == 3 and all(r["bound_source"] == "calibrated 64x64 at 2 ohm" for r in recs)
    assert all(r["judged"] == "analog" and r["analog_rms_error_fs"] <= r["bound_fs"] for r in recs)
    pair = replace(cfg, unit_cell="pair")
    train(pair, _small(30), tmp_path / "pair", progress=False, audit=AuditConfig(every=1))
    for u, p in zip(recs, read_audit_log(tmp_path / "pair")):       # the same tiles, drawn from (seed, step)
        assert (u["layer"], u["tile"], u["direction"]) == (p["layer"], p["tile"], p["direction"])
        assert u["bound_fs"] > 2 * p["bound_fs"]                      # F = 3 and the 3T1C array on top


def _rejecting_engine():
    """An engine that hands ngspice each audit deck with an element line it rejects (a resistor with
    one node): a real ngspice failure on every run, not a mock, and no race with ngspice's speed."""
    from cosim.sim.engine import SubprocessEngine

    class Rejecting(SubprocessEngine):
        def run_many(self, decks, **kw):
            return super().run_many([str(d).replace("\n.end", "\nRbroken a\n.end") for d in decks], **kw)
    return Rejecting(workers=1, timeout=60)


@pytest.mark.raw_decks      # the engine breaks the audit's decks on purpose
def test_an_audit_that_fails_in_ngspice_is_logged_and_the_run_goes_on(tmp_path):
    capped = _rejecting_engine()
    with pytest.warns(RuntimeWarning, match="failed in ngspice.*training goes on"):
        m = train(_cfg(), _small(30), tmp_path / "go", engine=capped, progress=False, audit=AuditConfig(every=1))
    recs = read_audit_log(tmp_path / "go")
    assert len(recs) == 3 and all("error" in r for r in recs) and m["audit"]["failed"] == 3
    assert all("not a valid resistor" in r["error"] for r in recs)   # ngspice names the line it refused
    assert m["final"]["test_accuracy"] > 0 and (tmp_path / "go" / "metrics.json").exists()
    with pytest.raises(AuditError, match="failed in ngspice.*stopped"):
        train(_cfg(), _small(30), tmp_path / "strict", engine=capped, progress=False,
              audit=AuditConfig(every=1, strict=True))


def test_a_chain_audit_rereads_the_first_samples(tmp_path):
    from netlists.readchain import PeripheryConfig
    from models.dac import DacParams
    cfg = TrainConfig(hidden=(6,), epochs=1, forward="fast", backward="fast",
                      layer=LayerConfig(r_wire=1.0, adc_bits=None, periphery=PeripheryConfig(dac=DacParams(bits=4)),
                                        chain_autorange=6))
    train(cfg, _small(20), tmp_path / "t", progress=False, audit=AuditConfig(every=1, chain_samples=2))
    recs = read_audit_log(tmp_path / "t")
    assert [(r["samples"], r["scope"]) for r in recs] == [(2, "transient")] * 2     # small tiles: the transient
    assert all(r["judged"] == "digitised" and r["rms_error_fs"] <= 2 * r["bound_fs"] for r in recs)
    # the array in one ngspice DC deck behind the twin's converters: the whole mini-batch, the
    # exact solver's charges to rounding, so the codes agree
    train(cfg, _small(20), tmp_path / "a", progress=False, audit=AuditConfig(every=1, chain_scope="array"))
    recs = read_audit_log(tmp_path / "a")
    assert [(r["samples"], r["scope"]) for r in recs] == [(10, "array")] * 2
    assert all(r["rms_error_fs"] == 0 and r["analog_rms_error_fs"] < 1e-9 for r in recs)


def test_bounds_and_refusals(tmp_path):
    cal = Calibration(IRModel.nominal(), errors=[
        {"rows": 64, "cols": 64, "r_wire": 1.0, "cal_rmse": 1e-6}, {"rows": 256, "cols": 256, "r_wire": 1.0,
                                                                    "cal_rmse": 1e-4},
        {"rows": 256, "cols": 256, "r_wire": 2.5, "cal_rmse": 1e-3}])
    assert calibration_bound(cal, 40, 40, 1.0) == (1e-6, "calibrated 64x64 at 1 ohm")
    assert calibration_bound(cal, 100, 40, 1.0)[0] == 1e-4
    assert calibration_bound(cal, 100, 40, 2.0)[0] == 1e-3           # the next wire resistance up
    assert "beyond the calibration" in calibration_bound(cal, 512, 512, 1.0)[1]
    with pytest.raises(ParameterError, match="already reads in ngspice"):
        train(TrainConfig(epochs=1), _small(), tmp_path / "run", progress=False, audit=AuditConfig(every=1))
    assert not (tmp_path / "run").exists()                          # refused before the run took a folder
    for bad in (0, -1, "sometimes", 2.5):
        with pytest.raises(ParameterError, match="audit every"):
            AuditConfig(every=bad)


def test_the_log_keeps_one_record_per_mini_batch(tmp_path):
    base = {"direction": "forward", "rms_error_fs": 0.0, "max_error_fs": 0.0, "seconds": 0.1, "every": 2}
    lines = [json.dumps({**base, "step": s, "layer": s}) for s in (0, 2, 2)]   # a resumed run re-audits step 2
    (tmp_path / AUDIT_LOG).write_text("\n".join(lines) + '\n{"step": 4, "dir')  # a kill mid-line
    recs = read_audit_log(tmp_path)
    assert [r["step"] for r in recs] == [0, 2] and recs[1]["layer"] == 2
    (tmp_path / AUDIT_LOG).write_text("garbage\n" + lines[0] + "\n")
    with pytest.raises(ParameterError, match="line 1 is not an audit record"):
        read_audit_log(tmp_path)
    (tmp_path / AUDIT_LOG).write_text('{"step": 0, "dir')               # killed while writing its first audit
    assert read_audit_log(tmp_path) == []
    (tmp_path / AUDIT_LOG).write_text('{"step": 0, "dir"}\n')           # a whole line that is no record
    with pytest.raises(ParameterError, match="line 1 is not an audit record"):
        read_audit_log(tmp_path)
    (tmp_path / AUDIT_LOG).write_text(json.dumps({**base, "step": 0, "seconds": None}) + "\n")
    with pytest.raises(ParameterError, match="no number 'seconds'"):
        read_audit_log(tmp_path)


def test_a_resumed_auto_audit_keeps_its_pace(tmp_path):
    """``auto`` after a resume: the log's costliest finished audit and last step stand in, so the
    next audit waits for its budget instead of coming after AUTO_START mini-batches."""
    from cosim.train.audit import AUTO_START, Auditor

    phases = _cfg()
    fresh = Auditor(AuditConfig(), phases, tmp_path, 0)
    assert fresh.due(AUTO_START)                       # a new run: the first audit after AUTO_START
    base = {"direction": "forward", "rms_error_fs": 0.0, "max_error_fs": 0.0, "every": 40}
    lines = [{**base, "step": 40, "seconds": 3.0}, {**base, "step": 90, "seconds": 5.0},
             {"step": 140, "error": "BatchError: ngspice ran longer than 600 s", "seconds": 700.0}]
    (tmp_path / AUDIT_LOG).write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    resumed = Auditor(AuditConfig(), phases, tmp_path, 0)
    resumed.resume()
    assert resumed._last_audit_s == 5.0 and resumed._last_step == 140   # a failed audit's time not taken as its cost
    assert not resumed.due(AUTO_START) and not resumed.due(200)         # no training time yet to spend on it
    every = Auditor(AuditConfig(every=3), phases, tmp_path, 0)
    every.resume()                                     # fixed K: multiples of K, nothing to carry
    assert every.due(3) and not every.due(4)


def test_cli_audit(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def xbar(*args):
        return subprocess.run([sys.executable, "-m", "cosim.cli", *map(str, args)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)

    res = xbar("train", "--reads", "fast", "--epochs", "1", "--hidden", "8", "--audit-every", "40", "--out", "run")
    assert res.returncode == 0, res.stderr
    assert "audit: 4 tiles re-read in ngspice" in res.stdout          # mini-batches 0, 40, 80, 120 of 144
    summary = xbar("audit", "run", "--json")
    assert summary.returncode == 0, summary.stderr
    s = json.loads(summary.stdout)
    recs = read_audit_log(tmp_path / "run")
    assert s["audits"] == len(recs) == 4 and s.get("failed", 0) == 0
    assert all(r["rms_error_fs"] < 1e-9 for r in recs)        # exact fast reads against ngspice
    assert xbar("audit", "nowhere").returncode == 2
    bad = xbar("train", "--reads", "fast", "--audit-strict", "--out", "bad")
    assert bad.returncode == 2 and "--audit-strict goes with --audit-every" in bad.stderr
    assert xbar("train", "--audit-every", "0").returncode == 2

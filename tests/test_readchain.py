"""The read chain on a wired array (DAC -> crossbar -> integrators -> ADC) in one ngspice
transient, against its numpy twin; configuration, pre-run range checks, energy, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cosim.read.energy import energy_summary
from cosim.read.readchain import ReadChain
from netlists.readchain import PeripheryConfig
from cosim.sim.files import atomic_json
from models.adc import QuantizerParams, RampAdcParams
from models.dac import DacParams
from models.errors import ParameterError
from models.integrator import IntegratorParams
from models.opamp import TwoStageOpAmpParams, macro_equivalent
from netlists.crossbar import CrossbarSpec

ROOT = Path(__file__).resolve().parent.parent

#: 8 rows x 3 weights (6 physical columns), 1 ohm wires; C sized so that nothing can clip.
SPEC = CrossbarSpec(rows=8, cols=3, cell="diff", r_row=1.0, r_col=1.0)
CFG = PeripheryConfig(dac=DacParams(encoding="pwm", bits=6),
                      integrator=IntegratorParams(c_int=2e-12, g_on=1e-2),
                      adc=QuantizerParams(bits=8), range_check="warn")


def _chain(rng, cfg=CFG, spec=SPEC, engine=None):
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # under-used range: fine for a test
        return ReadChain(spec, G, cfg, engine=engine)


def _codes(rng, chain, n, transpose):
    m = chain.config.dac.max_code
    return rng.integers(-m, m + 1, size=(n, chain.n_in(transpose)))


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [CFG, CFG.with_opamp(TwoStageOpAmpParams()),
                                 replace(CFG, adc=RampAdcParams(bits=6, r_out=float("inf")), full_scale=0.5,
                                         exact_corners=False)])
def test_config_json_round_trip(tmp_path, cfg):
    assert PeripheryConfig.from_json(save_config(cfg, tmp_path / "p.json")) == cfg


def test_bad_config_names_the_field(tmp_path):
    with pytest.raises(ParameterError, match="unknown field.*c_intt"):
        PeripheryConfig.from_dict({"integrator": {"c_intt": 1e-12}})
    with pytest.raises(ParameterError, match="c_int"):
        PeripheryConfig.from_dict({"integrator": {"c_int": -1.0}})
    with pytest.raises(ParameterError, match="adc.kind"):
        PeripheryConfig.from_dict({"adc": {"kind": "sar"}})
    with pytest.raises(ParameterError, match="full_scale"):
        PeripheryConfig(full_scale=2.0)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ParameterError, match="not valid JSON"):
        PeripheryConfig.from_json(tmp_path / "bad.json")


def test_saturating_config_is_reported_before_any_run(rng, engine):
    calls = []

    class Counting:  # the real engine, counted: the check must come before it is called
        workers = 1

        def run_many(self, decks, **kw):
            calls.append(len(decks))
            return engine.run_many(decks, **kw)

    G = rng.uniform(1e-6, 25e-6, SPEC.g_shape)
    small_c = replace(CFG, integrator=IntegratorParams(c_int=0.2e-12), range_check="raise")
    with pytest.raises(ParameterError, match=r"integrator saturates.*use c_int >= "):
        ReadChain(SPEC, G, small_c, engine=Counting())
    narrow_adc = replace(CFG, adc=QuantizerParams(v_lo=-0.1, v_hi=0.1), range_check="raise")
    with pytest.raises(ParameterError, match="ADC range .* cannot hold outputs"):
        ReadChain(SPEC, G, narrow_adc, engine=Counting())
    with pytest.warns(RuntimeWarning, match="saturates"):
        ReadChain(SPEC, G, replace(small_c, range_check="warn"), engine=Counting())
    assert calls == []
    # and the full-scale fraction is what the check uses
    ok = ReadChain(SPEC, G, replace(small_c, full_scale=0.05), engine=Counting())
    assert ok.range_used[False]["integrator_swing_used"] < 1


def test_v_read_must_match_the_array(rng):
    with pytest.raises(ParameterError, match="v_read"):
        ReadChain(replace(SPEC, v_read=0.1), rng.uniform(1e-6, 2e-5, SPEC.g_shape), CFG)


def test_bad_codes_rejected(rng):
    chain = _chain(rng)
    with pytest.raises(ParameterError, match="exceeds"):
        chain.read(np.full((1, 8), 64), backend="fast")
    with pytest.raises(ValueError, match=r"\(batch, 8\)"):
        chain.read(np.zeros((1, 5), int), backend="fast")


# -- SPICE vs twin ------------------------------------------------------------------------------


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("exact_corners", [True, False])
def test_spice_codes_match_twin_within_one_lsb(engine, rng, transpose, exact_corners):
    """Seeded random inputs and conductances, 1 ohm wires, batch of 4 windows per deck over 2
    parallel decks: every ADC code within 1 LSB of the twin, signed outputs within 2 (a
    difference of two codes), the integrator voltage within 0.5 LSB.

    ``exact_corners=False`` (B-source inputs, no breakpoints) runs with steps of one t_lsb:
    the trapezoidal rule then integrates the one-t_lsb edges exactly whatever their phase. With
    the default 4 t_lsb steps its error is random, ~v_read t_lsb G per edge (1-2 LSB on this
    8-row array, 0.1-0.2 LSB at 64 rows with 8-bit PWM: see scripts/bench_readchain.py)."""
    cfg = replace(CFG, exact_corners=exact_corners, max_step=None if exact_corners else CFG.dac.t_lsb)
    chain = _chain(rng, cfg, engine=engine)
    codes = _codes(rng, chain, 8, transpose)
    s = chain.read(codes, transpose=transpose, backend="spice", workers=2)
    f = chain.read(codes, transpose=transpose, backend="fast")
    assert s.codes.shape == f.codes.shape == (8, 8 if transpose else 3)
    lsb = CFG.adc.lsb
    assert np.abs(s.adc_codes - f.adc_codes).max() <= 1
    assert np.abs(s.codes - f.codes).max() <= (1 if transpose else 2)
    assert np.abs(s.v_out - f.v_out).max() <= 0.5 * lsb
    np.testing.assert_allclose(s.charge, f.charge, atol=0.5 * lsb * CFG.integrator.c_int)
    assert not _at_end(chain, s.swing, "spice").any() and not _at_end(chain, f.swing).any()   # nothing clips
    # the outputs mean something: the equivalent currents follow the exact array solve
    from cosim.read.mvm import Crossbar
    V = codes / CFG.dac.max_code * CFG.dac.v_read
    I = Crossbar(SPEC, chain.G).read(V, transpose=transpose, backend="fast")
    assert np.abs(f.current - I).max() < 0.15 * np.abs(I).max()  # the op-amp's finite GBW and gain
    assert np.corrcoef(s.decoded.ravel(), I.ravel())[0, 1] > 0.995


def _at_end(chain, codes, backend="fast"):
    lo, hi = chain.code_limits(backend)
    return (codes <= lo) | (codes >= hi)


def test_an_ngspice_read_saturated_by_the_smooth_clamp_counts_as_clipped(engine, rng):
    """The macro op-amp's clamp holds a saturated integrator a few knees inside its rail, a code
    or two short of the converter's end where the two ranges meet: ngspice reads count the codes
    8 knees inside the rails as clipped (the twin clips at the rail itself), so the autoranging
    of ngspice reads backs off a saturating gain too."""
    from cosim.train.layers import ranged_read

    chain = ReadChain(SPEC, rng.uniform(10e-6, 25e-6, SPEC.g_shape), CFG, engine=engine)
    assert chain.code_limits("fast") == (0, CFG.adc.n_codes - 1)
    lo, hi = chain.code_limits("spice")
    assert 0 < lo <= 3 and CFG.adc.n_codes - 5 <= hi < CFG.adc.n_codes - 1
    x = 0.8 * np.vstack([np.ones(SPEC.rows), -np.ones(SPEC.rows), rng.uniform(-1, 1, SPEC.rows)])   # k = 0 holds it
    k = chain.max_gain(False)
    sat = chain.with_gain(k).read_values(x, backend="spice")
    at_ends = np.mean((sat.swing <= 0) | (sat.swing >= CFG.adc.n_codes - 1))
    assert at_ends < chain.code_use(sat)[1]           # saturated outputs short of the converter's ends
    gains: dict = {"k": k}
    res = ranged_read(chain, gains, "k", x, False, k, backend="spice")
    assert gains["k"] < k and chain.code_use(res)[1] == 0
    # a converter wider than the op-amp's swing: the twin's saturated outputs sit at the rails'
    # codes, never at the converter's ends, and count as clipped there
    wide = ReadChain(SPEC, chain.G, replace(CFG, adc=QuantizerParams(bits=8, v_lo=-1.0, v_hi=1.0)), engine=engine)
    lo_w, hi_w = wide.code_limits("fast")
    assert 20 < lo_w < hi_w < CFG.adc.n_codes - 20
    sat = wide.with_gain(k).read_values(x, backend="fast")
    at_rail = (sat.swing >= hi_w) & (sat.swing < CFG.adc.n_codes - 1)
    assert wide.code_use(sat)[1] > 0.5 and at_rail.any()


def test_a_swing_past_a_rail_between_the_phases_is_seen_and_ranged_away(engine):
    """A transposed read of a differential array drives G+ in phase 1 and G- in phase 2: with G+
    close to G- each row's output swings far and comes back near its start. At a gain where the
    swing passes a rail, charge is lost while the final code looks in range (the twin, which
    integrates the signed sum, is then wrong by many LSB). Both backends report the excursion
    (``ReadResult.swing``); the autoranging ranges on it, to a gain where ngspice and the twin agree."""
    from cosim.train.layers import ranged_read
    from netlists.crossbar import interleave

    spec = CrossbarSpec(rows=6, cols=3, cell="diff", r_row=1.0, r_col=1.0)
    g = np.linspace(22e-6, 25e-6, 18).reshape(6, 3)
    cfg = replace(CFG, integrator=IntegratorParams(c_int=5e-12, g_on=1e-2))
    chain = ReadChain(spec, interleave(g, g - 1e-6 * np.arange(1, 4)), cfg, engine=engine)
    x = np.ones((1, 3))
    # phase 1 alone: 3 x 25 uS x 0.2 V x 63 ns = 0.9 pC, 1.5 V on 0.6 pF (step 3); the sum 0.1 V
    over, fine = chain.with_gain(3), chain.with_gain(1)
    f, s = (over.read_values(x, transpose=True, backend=b) for b in ("fast", "spice"))
    assert _at_end(over, f.swing).all() and _at_end(over, s.swing, "spice").all()
    assert over.code_use(f)[1] == over.code_use(s)[1] == 1.0
    assert not _at_end(over, f.adc_codes).any()                                  # swung to a rail, ends in range
    assert np.abs(f.adc_codes - s.adc_codes).max() > 3                           # what the flag is for
    f, s = (fine.read_values(x, transpose=True, backend=b) for b in ("fast", "spice"))
    assert not _at_end(fine, f.swing).any() and np.abs(f.swing - s.swing).max() <= 1
    assert np.abs(f.adc_codes - s.adc_codes).max() <= 1 and np.abs(f.swing - fine.mid_code()).max() > 8
    gains: dict = {}
    res = ranged_read(chain, gains, "k", x, True, 4, backend="fast")
    assert 1 <= gains["k"] < 3 and chain.code_use(res)[1] == 0
    ranged_read(chain, gains, "k", x, True, 4, backend="fast")
    assert gains["k"] < 3                                    # no creeping back up into the swing
    fwd = chain.with_gain(3).read_values(np.full((1, 6), 0.1), backend="fast")   # one sign: one phase
    assert np.array_equal(fwd.swing, fwd.adc_codes)


@pytest.mark.parametrize("encoding", ["amplitude", "bitserial"])
def test_ramp_adc_and_other_encodings_match_twin(engine, rng, encoding):
    cfg = replace(CFG, dac=DacParams(encoding=encoding, bits=4, pulse_slots=8),
                  adc=RampAdcParams(bits=6), integrator=IntegratorParams(c_int=0.5e-12, g_on=1e-2))
    chain = _chain(rng, cfg, engine=engine)
    codes = _codes(rng, chain, 2, False)
    s = chain.read(codes, backend="spice")
    f = chain.read(codes, backend="fast")
    assert np.abs(s.adc_codes - f.adc_codes).max() <= 1  # per window (bit-serial: per bit)
    assert np.abs(s.adc_codes - f.adc_codes).mean() <= 0.5  # and not off by one everywhere
    if encoding == "bitserial":
        assert s.adc_codes.shape == (2, 6, 4)
        # shift-and-add of per-bit signed codes: the digital result equals the twin's up to 1 LSB per bit
        assert np.abs(s.codes - f.codes).max() <= 2 * (2 ** 4 - 1)
    else:
        assert np.abs(s.codes - f.codes).max() <= 2


def test_transistor_opamp_chain_matches_its_macro_equivalent(engine, rng):
    """The two-stage transistor op-amp in every integrator vs the macro-model with its measured
    a0 / GBW / offset (TWO_STAGE_MEASURED): codes within 1 LSB, integrator voltages within
    1.5 LSB. The default macro (100 MHz) differs more: the GBW term G / (2 pi GBW) of C_eff."""
    spec = CrossbarSpec(rows=8, cols=2, cell="diff", r_row=1.0, r_col=1.0)
    two = CFG.with_opamp(TwoStageOpAmpParams())
    eq = CFG.with_opamp(replace(macro_equivalent(TwoStageOpAmpParams()), name="opamp_eq"))
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    codes = rng.integers(-63, 64, size=(3, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = ReadChain(spec, G, two, engine=engine).read(codes)
        m = ReadChain(spec, G, eq, engine=engine).read(codes)
        f = ReadChain(spec, G, two).read(codes, backend="fast")
    lsb = CFG.adc.lsb
    assert np.abs(t.adc_codes - m.adc_codes).max() <= 1
    assert np.abs(t.v_out - m.v_out).max() <= 1.5 * lsb
    assert np.abs(t.adc_codes - f.adc_codes).max() <= 1


def test_energy_split(engine, rng):
    """Without wires the array energy is sum_i V_i^2 (G row sum) t_i (minus the edges: a ramp of
    one t_lsb carries V^2 t_lsb / 3, not / 2); the macro op-amp draws no supply power and the
    two-stage one dominates."""
    spec = CrossbarSpec(rows=6, cols=2, cell="diff")
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    codes = rng.integers(-63, 64, size=(2, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = ReadChain(spec, G, CFG, engine=engine).read(codes, energy=True)
        r2 = ReadChain(spec, G, CFG.with_opamp(TwoStageOpAmpParams()), engine=engine).read(codes, energy=True)
    k = np.abs(codes)
    t_eff = (k - 1 + 2 / 3) * CFG.dac.t_lsb * (k > 0)
    expect = float(np.sum(t_eff * CFG.dac.v_read ** 2 * G.sum(axis=1)))
    assert r.energy["array_j"] == pytest.approx(expect, rel=0.02)
    assert r.energy["supply_j"] == 0.0
    e1, e2 = energy_summary(r, 12), energy_summary(r2, 12)
    assert e1["array_share"] == 1.0 and e1["per_mac_j"] == pytest.approx(expect / 2 / 12, rel=0.02)
    assert e2["periphery_share"] > 0.9
    assert e2["array_j_per_mvm"] == pytest.approx(e1["array_j_per_mvm"], rel=0.05)


# -- CLI ------------------------------------------------------------------------------------------


def _xbar(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cosim.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_mvm_with_periphery(tmp_path, rng):
    G = rng.uniform(1e-6, 25e-6, SPEC.g_shape)
    np.save(tmp_path / "G.npy", G)
    codes = rng.integers(-63, 64, size=(3, 8))
    np.save(tmp_path / "codes.npy", codes)
    save_config(CFG, tmp_path / "p.json")
    outs = {}
    for backend in ("spice", "fast"):
        res = _xbar("mvm", "-G", "G.npy", "--cell", "diff", "--r-wire", 1, "-V", "codes.npy", "--periphery", "p.json",
                    "--backend", backend, "-o", f"{backend}.npz", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        outs[backend] = np.load(tmp_path / f"{backend}.npz")
        assert outs[backend]["codes"].shape == (3, 3)
    assert np.abs(outs["spice"]["adc_codes"] - outs["fast"]["adc_codes"]).max() <= 1
    # a config that saturates: exit 2 with the reason, nothing simulated
    save_config(replace(CFG, integrator=IntegratorParams(c_int=0.2e-12), range_check="raise"), tmp_path / "sat.json")
    res = _xbar("mvm", "-G", "G.npy", "--cell", "diff", "-V", "codes.npy", "--periphery", "sat.json",
                "--backend", "spice", cwd=tmp_path)
    assert res.returncode == 2 and "integrator saturates" in res.stderr
    (tmp_path / "typo.json").write_text(json.dumps({"adc": {"bitz": 8}}))
    res = _xbar("mvm", "-G", "G.npy", "--cell", "diff", "-V", "codes.npy", "--periphery", "typo.json", cwd=tmp_path)
    assert res.returncode == 2 and "bitz" in res.stderr
    res = _xbar("periphery", "--write-config", "default.json", cwd=tmp_path)
    assert res.returncode == 0 and PeripheryConfig.from_json(tmp_path / "default.json") == PeripheryConfig()
    np.save(tmp_path / "frac.npy", codes / 100)
    res = _xbar("mvm", "-G", "G.npy", "--cell", "diff", "-V", "frac.npy", "--periphery", "p.json", cwd=tmp_path)
    assert res.returncode == 2 and "whole numbers" in res.stderr


@pytest.mark.slow
def test_cli_periphery_writes_plots(tmp_path):
    res = _xbar("periphery", "--out", "per", "--no-two-stage", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for name in ("dac_transfer.png", "integrator_waveform.png", "adc_transfer.png", "adc_inl_dnl.csv"):
        assert (tmp_path / "per" / name).exists()


# -- sneak paths: 0T1R vs 1T1R -------------------------------------------------------------------


def test_sneak_paths_in_0t1r_removed_by_1t1r(engine, rng):
    """Single-cell reads of an 8x8 array (1 ohm wires): with unselected lines floating or
    half-biased, the passive array reads the cell plus sneak currents (errors of the order of
    the read current and more); access transistors on the word lines remove them, leaving only
    the on-resistance in series (a few percent low)."""
    from cosim.read.sneak import cell_read_errors
    from netlists.access import build_cell_read
    from netlists.ir import SubcktInstances

    spec = CrossbarSpec(rows=8, cols=8, r_row=1.0, r_col=1.0)
    G = rng.uniform(1e-6, 25e-6, spec.g_shape)
    cells = [(0, 0), (3, 5), (7, 7), (5, 2)]
    c = build_cell_read(spec, G, (3, 5), access="1t1r")
    acc = c.group("acc")
    assert isinstance(acc, SubcktInstances) and acc.count == 64
    assert (c.group("wl").value == np.where(np.arange(8) == 3, 1.8, 0.0)).all()
    for unselected in ("float", "half"):
        passive = cell_read_errors(spec, G, cells, access="0t1r", unselected=unselected, engine=engine)
        gated = cell_read_errors(spec, G, cells, access="1t1r", unselected=unselected, engine=engine)
        assert passive.min() > 0.5, passive         # sneak currents add to every read
        assert np.abs(gated).max() < 0.06, gated    # R_on (~1.6 kOhm) in series with <= 40 kOhm
        assert (gated < 0).all()                    # series resistance: always low
        assert np.abs(gated).max() < 0.05 * passive.min()
    with pytest.raises(ParameterError, match="1r"):
        build_cell_read(SPEC, np.full(SPEC.g_shape, 1e-5), (0, 0))


@pytest.mark.parametrize("transpose", [False, True])
def test_1t1r_chain_matches_twin(engine, rng, transpose):
    """The read chain on a 1T1R array (every word line on, bulk on vss): SPICE vs the twin with
    the on-resistance measured in ngspice in series with each cell; and the transistors matter
    (the passive twin reads more charge)."""
    from netlists.access import AccessParams

    G = rng.uniform(1e-6, 25e-6, SPEC.g_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        chain = ReadChain(SPEC, G, CFG, engine=engine, access=AccessParams())
        passive = ReadChain(SPEC, G, CFG)
    assert 1e3 < chain.r_on(0.0) < 5e3  # W/L = 1 um / 0.18 um at 1.8 V on the generic 180 nm card
    codes = _codes(rng, chain, 4, transpose)
    s = chain.read(codes, transpose=transpose)
    f = chain.read(codes, transpose=transpose, backend="fast")
    p = passive.read(codes, transpose=transpose, backend="fast")
    assert np.abs(s.adc_codes - f.adc_codes).max() <= 1
    assert np.abs(s.v_out - f.v_out).max() <= 0.5 * CFG.adc.lsb
    ratio = np.abs(s.charge).sum() / np.abs(p.charge).sum()
    assert 0.9 < ratio < 0.995


def test_chain_circuit_structure(rng):
    """Structural checks on the IR: one integrator and one ADC per physical sensed line, one DAC
    per driven line, the sense sources between the line ends and the integrators."""
    chain = _chain(rng)
    for transpose, (nd, ns) in ((False, (8, 6)), (True, (6, 8))):
        codes = _codes(rng, chain, 2, transpose)
        circ, stop = chain.circuit(chain._windows(chain.drive_codes(codes, transpose)), transpose)
        assert circ.group("dac").count == nd and circ.group("int").count == ns and circ.group("adc").count == ns
        sen = circ.group("sen")
        ends = circ.layout.row_ends if transpose else circ.layout.col_ends
        assert (sen.p == ends).all()
        assert (circ.group("int").ports[:, 0] == sen.n).all()
        assert stop == pytest.approx(2 * chain.timing.t_end)
    deck = chain.deck(_codes(rng, chain, 1, False))
    assert ".options klu" in deck and ".tran" in deck
    import re
    body = "\n".join(l for l in deck.splitlines() if not l.startswith("*"))
    assert not re.search(r"\b\d+(\.\d+)?(meg|[fpnumk])\b", body, re.I)


def test_pwl_sources_without_breakpoints_render_as_b_sources(engine):
    """``PwlSources(breakpoints=False)`` becomes ``B... V = pwl(time, ...)`` with a flat tail; on
    an RC low-pass sampled on a grid, the response equals the breakpoint rendering's."""
    from netlists.ir import Capacitors, Circuit, NodeTable, PwlSources, Resistors
    from netlists.spice import Tran, write_spice

    nodes = NodeTable()
    a, b = nodes.add("in"), nodes.add("out")
    t = np.array([0, 1e-9, 2e-9, 6e-9, 7e-9])
    v = np.array([0, 0, 0.2, 0.2, 0])
    outs = []
    for bp in (True, False):
        src = PwlSources("in", (1,), p=[a], n=[0], times=(t,), values=(v,), breakpoints=bp)
        c = Circuit("rc", nodes, (src, Resistors("r", (1,), a=[a], b=[b], resistance=1e3),
                                  Capacitors("c", (1,), a=[b], b=[0], capacitance=1e-12)))
        deck = write_spice(c, Tran(1e-10, 2e-8, max_step=1e-10), save=["v(out)"])
        assert ("Bin_0 in 0 V = pwl(time," in deck) != bp
        r = engine.run(deck, need=["v(out)"], name="bpwl")
        grid = np.linspace(0, 2e-8, 41)
        outs.append(np.interp(grid, r["time"], r["v(out)"]))
    np.testing.assert_allclose(outs[0], outs[1], atol=2e-3)
    assert outs[0].max() > 0.15


def test_config_json_types_are_checked(tmp_path):
    for bad, msg in (({"exact_corners": "false"}, "exact_corners"), ({"integrator": "abc"}, "integrator"),
                     ({"integrator": {"opamp": 3}}, "opamp")):
        p = tmp_path / "c.json"
        p.write_text(json.dumps(bad))
        with pytest.raises(ParameterError, match=msg):
            PeripheryConfig.from_json(p)


# -- decoding -------------------------------------------------------------------------------------


def test_decoding_removes_the_start_voltage_and_reads_zero_inputs_as_zero(engine, rng):
    """Single-ended lines (transposed reads of a differential array). Zero input decodes to 0,
    also bit-serial (bin centres read -0.5 LSB per window there: -31.5 LSB at 6 bits); random
    inputs decode unbiased, within half an LSB. With a 20 mV op-amp offset (the integrator
    starts 3.2 LSB up) the decoded charge stays within 1 LSB of the charge on the capacitor,
    in SPICE and in the twin (bin centres without the start voltage: 3.7 LSB off), and so do
    the signed output codes."""
    chain = _chain(rng)
    zero = np.zeros((1, SPEC.cols), dtype=np.int64)
    lsb_i = chain.lsb_current()
    for c in (chain, _chain(rng, cfg=replace(CFG, dac=DacParams(encoding="bitserial", bits=6)))):
        assert np.array_equal(c.read(zero, transpose=True, backend="fast").decoded, np.zeros((1, SPEC.rows)))
    r = chain.read(_codes(rng, chain, 64, True), transpose=True, backend="fast")
    err = (r.decoded - r.current) / lsb_i
    assert np.abs(err).max() <= 0.5 + 1e-3 and abs(err.mean()) < 0.1, (err.max(), err.mean())

    from models.opamp import MacroOpAmpParams
    off = _chain(rng, cfg=CFG.with_opamp(MacroOpAmpParams(v_os=0.02)), engine=engine)
    codes = _codes(rng, off, 3, True)
    codes[0, 1:] = 0                     # one driven line: a small charge
    for backend in ("fast", "spice"):
        r = off.read(codes, transpose=True, backend=backend)
        assert np.abs(r.decoded - r.current).max() <= 1.0 * lsb_i, (backend, (r.decoded - r.current) / lsb_i)
        # the signed codes count from the start voltage's code too (3 codes off before)
        assert np.abs(r.codes - r.current / lsb_i).max() <= 1.0, (backend, r.codes - r.current / lsb_i)


def test_a_column_current_beyond_the_two_stage_op_amps_sink_is_flagged():
    """The default two-stage op-amp sinks at most 100 uA (its second-stage bias): a column that
    can draw more at v_read gets a warning naming both currents; the macro op-amp has no limit."""
    from models.opamp import TwoStageOpAmpParams
    op = TwoStageOpAmpParams()
    assert op.i_sink_max == pytest.approx(100e-6)
    spec = CrossbarSpec(rows=32, cols=2, cell="diff", r_row=1.0, r_col=1.0)
    G = np.full(spec.g_shape, 20e-6)                  # 640 uS per column: 128 uA at 0.2 V
    cfg = PeripheryConfig(dac=DacParams(bits=6), integrator=IntegratorParams(c_int=40e-12, opamp=op),
                          range_check="warn")
    with pytest.warns(RuntimeWarning, match=r"draw 128 uA .* more than the two-stage op-amp can sink \(100 uA"):
        chain = ReadChain(spec, G, cfg)
    assert chain.range_used[False]["opamp_current_used"] == pytest.approx(1.28)
    with pytest.raises(ParameterError, match="more than the two-stage op-amp can sink"):
        ReadChain(spec, G, replace(cfg, range_check="raise"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*(swing|ADC range)")
        ReadChain(spec, G / 2, cfg)                      # 64 uA: fine


def save_config(cfg: PeripheryConfig, path):
    """The config as the JSON file `xbar mvm --periphery` reads."""
    return atomic_json(path, cfg.to_dict(), indent=2)


@pytest.mark.parametrize("cell, sensing", [("diff", "lines"), ("diff", "pairs"), ("1r", "lines")])
def test_spice_array_backend_is_the_twin_with_ngspice_charges(cell, sensing):
    """The audit's cheap ngspice reference of a chain: the wired array in one DC deck, its
    charges those of the exact transfer to rounding, so every code equals the twin's, both ways."""
    from netlists.access import AccessParams
    rng = np.random.default_rng(3)
    spec = CrossbarSpec(rows=20, cols=5, cell=cell, r_row=2.0, r_col=2.0)
    cfg = PeripheryConfig(dac=DacParams(bits=6), integrator=IntegratorParams(c_int=8e-12), sensing=sensing)
    chain = ReadChain(spec, rng.uniform(1e-6, 25e-6, spec.g_shape), cfg)
    for transpose in (False, True):
        codes = rng.integers(-63, 64, (3, chain.n_in(transpose)))
        fast = chain.read(codes, transpose=transpose, backend="fast")
        arr = chain.read(codes, transpose=transpose, backend="spice-array")
        assert np.array_equal(fast.codes, arr.codes) and np.array_equal(fast.swing, arr.swing)
        assert np.abs(fast.charge - arr.charge).max() < 1e-9 * np.abs(fast.charge).max()
    with pytest.raises(ParameterError, match="spice-array"):
        ReadChain(spec, chain.G, cfg, access=AccessParams()).read(codes, backend="spice-array")


def test_paired_sensing_integrates_each_pairs_difference(engine, rng):
    """``sensing="pairs"``: a forward read of a differential array has one integrator and ADC per
    pair, the G- column on a current mirror that draws its current from the G+ integrator's
    input. In ngspice each integrator's charge is the difference of the two line charges that
    the per-line chain measures on the same inputs; the twin gives ngspice's codes; the codes
    resolve the pair's difference in finer steps than two per-line codes can (no common mode
    in the converter); transposed reads do not change."""
    paired = replace(CFG, sensing="pairs")
    G = rng.uniform(4e-6, 9e-6, SPEC.g_shape)          # both devices of a pair high: a large common mode
    lines, pairs = (ReadChain(SPEC, G, c, engine=engine) for c in (CFG, paired))
    codes = _codes(rng, lines, 6, False)
    circ, _ = pairs.circuit(pairs._windows(pairs.drive_codes(codes, False)))
    assert circ.group("int").count == circ.group("adc").count == circ.group("mir").count == 3
    assert circ.group("sen").count == 6 and ".subckt xbar_mirror" in pairs.deck(codes)
    s_l = lines.read(codes, backend="spice")
    s_p, f_p = (pairs.read(codes, backend=b) for b in ("spice", "fast"))
    assert s_p.adc_codes.shape == s_p.codes.shape == (6, 3)
    # within a tenth of an LSB: the G- line sits at the mirror's 0 V instead of an integrator's
    # virtual ground (off by v_out / a0 and the op-amp's lag), and the G+ integrator swings less
    np.testing.assert_allclose(s_p.charge, s_l.charge[:, 0::2] - s_l.charge[:, 1::2],
                               atol=0.1 * CFG.adc.lsb * CFG.integrator.c_int)
    assert np.abs(s_p.adc_codes - f_p.adc_codes).max() <= 1
    mis = ReadChain(SPEC, G, replace(paired, mirror_gain=0.95), engine=engine)    # a 5 % mirror mismatch
    s_m, f_m = (mis.read(codes, backend=b) for b in ("spice", "fast"))
    np.testing.assert_allclose(s_m.charge, s_l.charge[:, 0::2] - 0.95 * s_l.charge[:, 1::2],
                               atol=0.1 * CFG.adc.lsb * CFG.integrator.c_int)
    assert np.abs(s_m.adc_codes - f_m.adc_codes).max() <= 1
    # the pair's difference takes a fraction of the codes that its two lines take, so a smaller
    # capacitor (a higher gain, finer steps) holds it: at the gain where the lines clip, pairs do not
    peak_l, peak_p = lines.code_use(s_l)[0], pairs.code_use(s_p)[0]
    assert peak_p < 0.4 * peak_l
    k = int(np.floor(np.log2(0.9 / peak_p)))          # the highest gain that holds the pairs
    hi_l, hi_p = (c.with_gain(k) for c in (lines, pairs))
    assert hi_l.code_use(hi_l.read(codes, backend="spice"))[0] >= 0.99            # a line reaches a rail
    peak_hi, clipped = hi_p.code_use(hi_p.read(codes, backend="spice"))
    assert clipped == 0 and 3 * peak_p < peak_hi < 0.95     # several times finer (the op-amp's lag caps it)
    tr_codes = _codes(rng, lines, 3, True)
    a, b = (c.read(tr_codes, transpose=True, backend="fast") for c in (lines, pairs))
    assert np.array_equal(a.adc_codes, b.adc_codes)


def test_sensing_is_part_of_the_config(tmp_path):
    cfg = replace(CFG, sensing="pairs", mirror_gain=0.98)
    assert PeripheryConfig.from_json(save_config(cfg, tmp_path / "p.json")) == cfg
    with pytest.raises(ParameterError, match="mirror_gain"):
        replace(CFG, mirror_gain=0.0)
    with pytest.raises(ParameterError, match="sensing must be one of lines, pairs"):
        replace(CFG, sensing="diff")


def test_paired_sensing_stops_its_gain_where_the_twin_holds(engine):
    """Paired sensing on heavy lines (251 rows, pairs at 15 uS common mode, 3 uS apart): the
    common-mode currents through the op-amp's lagging virtual ground leave charge the twin does
    not model; it grows with the gain, so the capacitor bank stops PAIRED_LAG times above the lag
    term. At that step the twin's charges are within a few tenths of an LSB of ngspice; at the
    step the per-line limit would allow, they are not."""
    from cosim.read.readchain import PAIRED_LAG
    from cosim.train.layers import sized_read_chain
    rng = np.random.default_rng(0)
    spec = CrossbarSpec(rows=251, cols=10, cell="diff", r_row=1.0, r_col=1.0)
    d = rng.uniform(-3e-6, 3e-6, (251, 10))
    G = np.empty(spec.g_shape)
    G[:, 0::2], G[:, 1::2] = 15e-6 + np.maximum(d, 0), 15e-6 + np.maximum(-d, 0)
    chain = sized_read_chain(PeripheryConfig(sensing="pairs"), spec, G, 25e-6, engine=engine)
    k = chain.max_gain(False)
    assert k == int(np.floor(np.log2(chain.config.integrator.c_int / (PAIRED_LAG * chain.g_total(False).max()
                                                                        / (2 * np.pi * 1e8)))))
    x = rng.uniform(0, 1, (1, 251))
    err = {}
    for step in (k, k + 2):                  # k + 2: where the per-line limit would stop
        c = chain.with_gain(step)
        f, s = (c.read_values(x, backend=b) for b in ("fast", "spice"))
        e = (s.charge - f.charge) / (c.config.adc.lsb * c.config.integrator.c_int)
        err[step] = float(np.sqrt(np.mean(e ** 2)))
    assert err[k] < 0.3 < err[k + 2]


def test_a_chain_moved_to_new_conductances_reads_as_a_new_chain(rng):
    """``with_conductances`` (training's per-state chains): the same reads and range checks as a
    chain built at the new state, the old chain untouched; ``sized_read_chain`` reuses a chain's
    sizing only when everything but the conductances is the same."""
    from cosim.train.layers import sized_read_chain

    old = _chain(rng)
    G = rng.uniform(1e-6, 25e-6, SPEC.g_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        moved, fresh = old.with_conductances(G), ReadChain(SPEC, G, CFG)
    codes = rng.integers(-63, 64, (3, SPEC.rows))
    before = old.read(codes, backend="fast")
    for transpose, x in ((False, codes), (True, codes[:, :SPEC.cols])):
        a, b = moved.read(x, backend="fast", transpose=transpose), fresh.read(x, backend="fast", transpose=transpose)
        assert np.array_equal(a.codes, b.codes) and np.array_equal(a.charge, b.charge)
    assert moved.range_used == fresh.range_used
    assert np.array_equal(old.read(codes, backend="fast").charge, before.charge) and old.G is not moved.G
    with pytest.raises(ParameterError, match="conductance"):
        old.with_conductances(-G)

    first = sized_read_chain(CFG, SPEC, G, 25e-6)
    same = sized_read_chain(CFG, SPEC, 0.5 * G, 25e-6, like=first)
    other = sized_read_chain(CFG, SPEC, 0.5 * G, 50e-6, like=first)
    assert same.config is first.config and other.config.integrator.c_int == 2 * first.config.integrator.c_int
    built = sized_read_chain(CFG, SPEC, 0.5 * G, 25e-6)
    assert built.config == same.config and np.array_equal(same.read(codes, backend="fast").codes,
                                                          built.read(codes, backend="fast").codes)


@pytest.mark.parametrize("access", [False, True])
def test_a_few_exact_reads_are_solved_and_many_go_through_the_transfer(engine, rng, access):
    """The twin solves a read's volt-second fields as they are when they are fewer than the drive
    lines (training's small batches) and reads larger batches through the array's transfer (test
    sets): the same charges either way, whatever was read before."""
    from netlists.access import AccessParams

    G = rng.uniform(1e-6, 25e-6, SPEC.g_shape)
    kw = {"engine": engine, "access": AccessParams()} if access else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        chain = ReadChain(SPEC, G, CFG, **kw)
    codes = _codes(rng, chain, 1, False)
    codes[0, :2] = (40, -40)        # both signs: four volt-second fields, fewer than the 8 rows
    alone = chain.read(codes, backend="fast")
    many = chain.read(np.repeat(codes, 8, axis=0), backend="fast")        # 32 fields: the transfer
    assert np.abs(many.charge - alone.charge).max() < 1e-10 * np.abs(alone.charge).max()
    assert (many.codes == alone.codes).all()
    again = chain.read(codes, backend="fast")
    assert np.array_equal(again.charge, alone.charge)

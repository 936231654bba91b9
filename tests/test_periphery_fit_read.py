"""Fast read-chain reads through the integrator + ADC transfer fitted to ngspice
(:mod:`cosim.calibrate.periphery`): against ngspice on arrays sized unlike the fit, the loader and its
refusals, the CLI and the training layers."""

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

from cosim.calibrate.blocks import save_json
from cosim.calibrate.bundle import load_calibration
from cosim.calibrate.periphery import fit_periphery
from cosim.read.periphery_fit import select_periphery_fit
from cosim.train.layers import periphery_for_tile
from cosim.read.readchain import ReadChain
from netlists.readchain import PeripheryConfig
from cosim.sim.files import atomic_json
from models.adc import QuantizerParams, RampAdcParams
from models.dac import DacParams, volt_seconds
from models.errors import ParameterError
from models.integrator import IntegratorParams
from models.opamp import TwoStageOpAmpParams
from netlists.crossbar import CrossbarSpec


def load_periphery_fit(path, cfg):
    """One file read once at the edge, then the fit of one chain (what `--calibration FILE` does)."""
    return load_calibration(path).periphery_fit(cfg)

ROOT = Path(__file__).resolve().parent.parent

#: The chain of the fit: two-stage transistor op-amps, ideal 8-bit quantisers over +-0.8 V.
TWO = IntegratorParams(opamp=TwoStageOpAmpParams(), g_on=1e-2)
ADC = QuantizerParams(bits=8)


def _cfg(bits=8, c_int=10e-12, full_scale=1.0):
    return PeripheryConfig(dac=DacParams(encoding="pwm", bits=bits, v_read=0.2, t_lsb=1e-9),
                           integrator=replace(TWO, c_int=c_int), adc=ADC, exact_corners=False,
                           range_check="warn", full_scale=full_scale)


@pytest.fixture(scope="module")
def fitted(engine, tmp_path_factory):
    """One fit (10 pF, 15 sweep points, < 1 s), its fits.json and a calibration.json pointing at it."""
    from cosim.read.irmodel import Calibration, IRModel
    r = fit_periphery(IntegratorParams(opamp=TwoStageOpAmpParams()), ADC, points=15, engine=engine)
    out = tmp_path_factory.mktemp("cal")
    fits_path = save_json({"periphery": {"two_stage": r}}, out / "blocks" / "fits.json")
    cal = Calibration(IRModel.nominal()).save(out / "calibration.json")
    cal.write_text(json.dumps(dict(json.loads(cal.read_text()), blocks=str(Path("blocks") / "fits.json"))))
    return {"result": r, "fit": load_periphery_fit(fits_path, _cfg()), "fits": fits_path, "cal": cal, "dir": out}


def _ramps_and_random(rng, rows, max_code, n_random=4):
    """Every row at the same code, from -max to +max (the outputs reach both rails), then random."""
    k = np.linspace(-1, 1, 9)
    aligned = np.rint(np.outer(k, np.ones(rows)) * max_code).astype(np.int64)
    return np.vstack([aligned, rng.integers(-max_code, max_code + 1, size=(n_random, rows))])


def _err(codes, ref):
    d = np.asarray(codes, float) - ref
    return float(np.sqrt(np.mean(d ** 2))), float(np.abs(d).max())


def test_fast_read_with_the_fit_reproduces_spice_where_the_twin_is_off(fitted, engine, rng):
    """8 x 2 weights, 1 ohm wires, inputs driving the integrators into both rails: the twin's
    two-stage swing estimate (0.15 V from each supply) is 0.12-0.15 V short of SPICE's rails, so
    its codes are up to 8 LSB off there; the fitted transfer stays within 1 LSB."""
    spec = CrossbarSpec(rows=8, cols=2, cell="diff", r_row=1.0, r_col=1.0)
    G = rng.uniform(20e-6, 40e-6, spec.g_shape)
    cfg = _cfg()
    codes = _ramps_and_random(rng, 8, 255)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        chain = ReadChain(spec, G, cfg, engine=engine)
        fast_fit = ReadChain(spec, G, cfg, fit=fitted["fit"])
    s = chain.read(codes)
    twin = chain.read(codes, backend="fast")
    f = fast_fit.read(codes, backend="fast")
    e_fit, e_twin = _err(f.adc_codes, s.adc_codes), _err(twin.adc_codes, s.adc_codes)
    assert e_fit[1] <= 1 and e_fit[0] < 0.7, (e_fit, e_twin)
    assert e_twin[1] >= 5 and e_twin[0] > 3 * e_fit[0], (e_fit, e_twin)
    # the rest of the result is the fast read's: the same charge, codes from the fitted ADC
    np.testing.assert_array_equal(f.charge, twin.charge)
    np.testing.assert_array_equal(f.adc_codes, fitted["fit"].codes_from_voltage(f.v_out))
    assert np.abs(f.v_out - s.v_out).max() < np.abs(twin.v_out - s.v_out).max()
    np.testing.assert_array_equal(f.codes, f.adc_codes[:, 1::2] - f.adc_codes[:, 0::2])


@pytest.mark.parametrize("bits, c_int", [(6, None), (8, 20e-12)])
def test_fit_carries_over_to_another_capacitor_and_column_load(fitted, engine, rng, bits, c_int):
    """The fit (10 pF, 235 uS, 8-bit timing) on chains with 3 pF (sized for a 6-bit DAC) and
    20 pF capacitors, ~200 uS columns, against ngspice: the charge axis scaled by the effective
    capacitance ratio, C_eff = C (1 + 1/a0) + G tau with tau from the fit
    (PeripheryFit.chain_voltage), stays within 3 LSB (measured: 1.1 / 0.8 LSB RMS) and beats
    both the twin (2.3 / 0.9) and q_fs scaled by the bare capacitor ratio (7.1 / 2.5, max 15),
    which misses the G tau term (9 % of the fit's 10 pF, 25 % of 3 pF). What is left at 20 pF
    is the read with every input at full scale (pulses on until one t_lsb before the end of
    integration: the op-amp's step response, 2-3 LSB, in no charge-domain model)."""
    spec = CrossbarSpec(rows=8, cols=2, cell="diff", r_row=1.0, r_col=1.0)
    G = rng.uniform(10e-6, 40e-6, spec.g_shape)
    cfg = periphery_for_tile(_cfg(bits=bits, full_scale=0.5), spec, 40e-6)
    if c_int is not None:
        cfg = replace(cfg, integrator=replace(cfg.integrator, c_int=c_int))
    fit = fitted["fit"]
    codes = _ramps_and_random(rng, 8, cfg.dac.max_code)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        chain = ReadChain(spec, G, cfg, engine=engine)
        f = ReadChain(spec, G, cfg, fit=fit).read(codes, backend="fast")
    s = chain.read(codes)
    twin = chain.read(codes, backend="fast")
    q = volt_seconds(codes, cfg.dac) @ chain.transfer()
    bare = replace(fit, q_fs=fit.q_fs * cfg.integrator.c_int / fit.c_int).codes(q)
    e_fit, e_twin, e_bare = (_err(c, s.adc_codes) for c in (f.adc_codes, twin.adc_codes, bare))
    assert abs(cfg.integrator.c_int / fit.c_int - 1) > 0.5                      # sized unlike the fit
    assert e_fit[1] <= 3 and e_fit[0] < 1.5, (e_fit, e_twin, e_bare)
    assert e_fit[0] < 0.9 * e_twin[0] and e_fit[0] < 0.5 * e_bare[0], (e_fit, e_twin, e_bare)


def test_chain_charge_is_the_identity_at_the_fit_conditions(fitted):
    fit = fitted["fit"]
    q = np.linspace(-2, 2, 9) * fit.q_fs
    integ = IntegratorParams(opamp=TwoStageOpAmpParams(), c_int=fit.c_int)
    np.testing.assert_allclose(fit.chain_charge(q, integ), q, rtol=1e-12, atol=1e-24)
    np.testing.assert_allclose(fit.chain_voltage(q, integ), fit.voltage(q), rtol=1e-12)
    # twice the capacitor, no load: half the voltage swing from the charge axis
    q2 = fit.chain_charge(q, replace(integ, c_int=2 * fit.c_int), g_total=0.0, t_int=fit.t_int)
    c_fit = -fit.q_fs / fit.poly[1]                     # the fit's own effective capacitance
    np.testing.assert_allclose(q2 - q2[4], (q - q[4]) * c_fit / (2 * fit.c_int * (1 + 1 / integ.macro.a0)), rtol=1e-9)
    # its column-load term is the op-amp's GBW term, give or take the second stage
    assert 0.7 < fit.lag_time(integ) * 2 * np.pi * integ.macro.gbw < 1.1


# -- loading and refusals ---------------------------------------------------------------------------


def test_load_from_fits_json_and_calibration_json(fitted):
    a = load_periphery_fit(fitted["fits"], _cfg())
    b = load_periphery_fit(str(fitted["cal"]), _cfg(c_int=3e-12))     # capacitor may differ
    assert a == b and a.c_int == 10e-12 and a.t_int > 0 and a.adc_range == (-0.8, 0.8)
    assert a.g_total == pytest.approx(fitted["result"]["g_cell"])


def test_loader_refuses_what_does_not_match(fitted, tmp_path):
    r = fitted["result"]
    fits = {"periphery": {"two_stage": r}}
    with pytest.raises(ParameterError, match=r"no periphery fit .* matches .*macro op-amp.*MacroOpAmpParams.*passed over: "
                                             r"two_stage: TwoStageOpAmpParams"):
        select_periphery_fit(fits, PeripheryConfig(adc=ADC))
    with pytest.raises(ParameterError, match="RampAdcParams with 256 codes"):
        select_periphery_fit(fits, replace(_cfg(), adc=RampAdcParams(bits=8)))
    with pytest.raises(ParameterError, match="64 codes"):
        select_periphery_fit(fits, replace(_cfg(), adc=QuantizerParams(bits=6)))
    with pytest.raises(ParameterError, match=r"ADC range of \[-0.8, 0.8\] V, the chain's ADC spans \[-0.5, 0.5\] V"):
        select_periphery_fit(fits, replace(_cfg(), adc=QuantizerParams(bits=8, v_lo=-0.5, v_hi=0.5)))
    same = replace(_cfg(), integrator=replace(TWO, opamp=TwoStageOpAmpParams(), g_on=5e-3))   # switch on-resistance may differ
    assert select_periphery_fit(fits, same) == fitted["fit"]
    # another op-amp sizing or other supplies: the fitted rails, gain and offset do not hold
    for integ, what in ((replace(TWO, opamp=TwoStageOpAmpParams(i_bias=5e-6)), r"opamp\.i_bias"),
                        (replace(TWO, vdd=1.5, vss=-1.5), "vdd, vss")):
        with pytest.raises(ParameterError, match=f"two_stage: fitted on another circuit \\(differs in {what}"):
            select_periphery_fit(fits, replace(_cfg(), integrator=integ))
    # the first entry that matches is taken, the ones that do not are passed over
    wrong = dict(r, circuit=dict(r["circuit"], vdd=1.5))
    assert select_periphery_fit({"periphery": {"a": wrong, "b": r}}, _cfg()) == fitted["fit"]
    # a fit written before c_int / t_int / adc_range were recorded: filled from the result,
    # the range checked through the count polynomial
    old = dict(r, fit={k: v for k, v in r["fit"].items() if k not in ("c_int", "t_int", "adc_range")})
    old.pop("adc_params"), old.pop("opamp_macro"), old.pop("circuit")
    got = select_periphery_fit({"periphery": {"two_stage": old}}, _cfg())
    assert got.c_int == r["c_int"] and got.t_int == r["t_int"] and got.adc_range is None
    with pytest.raises(ParameterError, match="ADC range .* differs"):
        select_periphery_fit({"periphery": {"two_stage": old}},
                             replace(_cfg(), adc=QuantizerParams(bits=8, v_lo=-0.7, v_hi=0.7)))
    # files
    bare = tmp_path / "calibration.json"
    bare.write_text(json.dumps({k: v for k, v in json.loads(fitted["cal"].read_text()).items() if k != "blocks"}))
    with pytest.raises(ParameterError, match="no 'blocks' entry"):
        load_periphery_fit(bare, _cfg())
    moved = tmp_path / "moved.json"
    moved.write_text(fitted["cal"].read_text())
    with pytest.raises(ParameterError, match="blocks/fits.json does not exist"):
        load_periphery_fit(moved, _cfg())
    with pytest.raises(ParameterError, match="does not exist"):
        load_periphery_fit(tmp_path / "nope.json", _cfg())
    only_devices = tmp_path / "devices_only.json"
    only_devices.write_text(json.dumps({"devices": {"x": {}}}))
    with pytest.raises(ParameterError, match="holds no periphery fits"):
        load_periphery_fit(only_devices, _cfg())
    # the chain checks what it is given
    spec = CrossbarSpec(rows=4, cols=2, cell="diff")
    G = np.full(spec.g_shape, 10e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ParameterError, match="256 ADC codes, the chain's ADC 64"):
            ReadChain(spec, G, replace(_cfg(), adc=QuantizerParams(bits=6)), fit=fitted["fit"])
        with pytest.raises(ParameterError, match="PeripheryFit"):
            ReadChain(spec, G, _cfg(), fit=fitted["result"])


# -- CLI and training layers ---------------------------------------------------------------------


def _xbar(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cosim.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_mvm_periphery_fast_with_calibration(fitted, tmp_path, rng):
    spec = CrossbarSpec(rows=8, cols=2, cell="diff", r_row=1.0, r_col=1.0, v_read=0.2)
    G = rng.uniform(20e-6, 40e-6, spec.g_shape)
    np.save(tmp_path / "G.npy", G)
    codes = _ramps_and_random(rng, 8, 255, n_random=2)
    np.save(tmp_path / "codes.npy", codes)
    save_config(_cfg(), tmp_path / "p.json")
    args = ["mvm", "-G", "G.npy", "--cell", "diff", "--r-wire", 1, "--v-read", 0.2, "-V", "codes.npy",
            "--periphery", "p.json"]
    res = _xbar(*args, "--backend", "fast", "--calibration", fitted["cal"], "-o", "fit.npz", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "with the fitted integrator/ADC" in res.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = ReadChain(spec, G, _cfg(), fit=fitted["fit"]).read(codes, backend="fast")
    np.testing.assert_array_equal(np.load(tmp_path / "fit.npz")["adc_codes"], want.adc_codes)
    res = _xbar(*args, "--backend", "spice", "--calibration", fitted["cal"], cwd=tmp_path)
    assert res.returncode == 2 and "applies to --backend fast" in res.stderr, res.stderr
    save_config(replace(_cfg(), adc=RampAdcParams(bits=8)), tmp_path / "ramp.json")
    res = _xbar(*args[:-1], "ramp.json", "--backend", "fast", "--calibration", fitted["fits"], cwd=tmp_path)
    assert res.returncode == 2 and "no periphery fit" in res.stderr, res.stderr


def test_layer_fast_chain_reads_use_the_fit(fitted, rng):
    from cosim.write.mapping import MappingSpec
    from cosim.train.layers import AnalogLayer, LayerConfig
    W = rng.uniform(-1, 1, (6, 3))
    base = LayerConfig(mapping=MappingSpec(w_max=1.0), r_wire=1.0, periphery=_cfg(bits=6, full_scale=0.5))
    x = rng.uniform(-1, 1, (4, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plain = AnalogLayer(W, base)
        layer = AnalogLayer(W, replace(base, periphery_fit=load_periphery_fit(fitted["cal"], base.periphery)))
        assert layer.cfg.periphery_fit == fitted["fit"] and plain.cfg.periphery_fit is None
        y = layer.forward(x, "fast")
        chain = layer.tiles[0].read_chain(layer.cfg, fit=layer.cfg.periphery_fit)
        assert chain.fit is layer.cfg.periphery_fit
        assert layer.tiles[0].read_chain(layer.cfg, fit=layer.cfg.periphery_fit) is chain      # cached
        bare = layer.tiles[0].read_chain(layer.cfg)         # a caller without the fit gets a chain without it
        assert bare.fit is None and bare.config == chain.config
        assert layer.tiles[0].read_chain(layer.cfg, fit=layer.cfg.periphery_fit).fit is layer.cfg.periphery_fit
        y_plain = plain.forward(x, "fast")
        assert not np.array_equal(y, y_plain)
        # the twin and the fit describe the same chain: their outputs differ by a few LSB, not more
        ref = np.abs(x @ W).max()
        assert np.abs(y - y_plain).max() < 0.06 * ref
        assert np.abs(y - x @ W).max() < 1.5 * np.abs(y_plain - x @ W).max()
        # no fit for this periphery in the file: refused where the file is read
        with pytest.raises(ParameterError, match="no periphery fit"):
            load_periphery_fit(fitted["cal"], replace(_cfg(), adc=RampAdcParams(bits=8)))
        with pytest.raises(ParameterError, match="needs periphery"):
            replace(base, periphery=None, periphery_fit=fitted["fit"])


def save_config(cfg: PeripheryConfig, path):
    """The config as the JSON file `xbar mvm --periphery` reads."""
    return atomic_json(path, cfg.to_dict(), indent=2)

"""Training on device step tables fitted to SPICE: loading them (fits.json or calibration.json),
pair updates through a table against the twin, the config and CLI checks, a short run."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cosim.calibrate.blocks import save_json
from cosim.calibrate.bundle import load_calibration
from cosim.calibrate.devices import fit_device_steps
from cosim.write.step_table import StepTable
from cosim.train.layers import AnalogLayer, LayerConfig
from cosim.write.pair_update import PulseUpdate, mapping_for
from models.registry import get_device
from models.errors import ParameterError


def load_step_table(path, device, shape=None):
    """One file read once at the edge, then the table of one device (what `xbar train
    --device-table FILE` does)."""
    return load_calibration(path).step_table(device, shape)

# as in test_fit_blocks: 12 pulses per train, 32 bins, 3 draws fitted, 2 held out (~1 s each)
SMALL = dict(pulses=12, bins=32, seeds=(0, 1, 2), holdout_seeds=(10, 11))


@pytest.fixture(scope="module")
def files(engine, tmp_path_factory):
    """fits.json of linear and pcm, and a calibration.json of `xbar calibrate --blocks` pointing at it."""
    from cosim.read.irmodel import Calibration, IRModel
    out = tmp_path_factory.mktemp("cal")
    fits = {"devices": {n: fit_device_steps(n, engine=engine, **SMALL) for n in ("linear", "pcm")}}
    fits_path = save_json(fits, out / "blocks" / "fits.json")
    cal_path = Calibration(IRModel.nominal()).save(out / "calibration.json")
    bare = json.loads(cal_path.read_text())
    d = dict(bare, blocks=str(Path("blocks") / "fits.json"))     # what _calibrate_blocks writes
    cal_path.write_text(json.dumps(d))
    no_blocks = out / "no_blocks.json"
    no_blocks.write_text(json.dumps(bare))
    return {"fits": fits_path, "cal": cal_path, "no_blocks": no_blocks, "dir": out}


def test_load_step_table_from_fits_and_calibration_and_its_errors(files, tmp_path):
    a = load_step_table(files["fits"], "linear")
    b = load_step_table(str(files["cal"]), "linear")
    assert a.device == "linear" and a.to_dict() == b.to_dict()
    m = mapping_for(get_device("linear"))
    assert (a.g_min, a.g_max) == pytest.approx((m.g_min, m.g_max), rel=1e-12)
    assert load_step_table(files["cal"], "pcm").directions == ("up",)          # SET-only
    with pytest.raises(ParameterError, match="does not exist"):
        load_step_table(tmp_path / "nope.json", "linear")
    with pytest.raises(ParameterError, match="no 'blocks' entry"):
        load_step_table(files["no_blocks"], "linear")
    moved = tmp_path / "calibration.json"                        # its blocks/ folder left behind
    shutil.copy(files["cal"], moved)
    with pytest.raises(ParameterError, match="'blocks' entry of .* does not exist"):
        load_step_table(moved, "linear")
    with pytest.raises(ParameterError, match=r"no step table of device 'rram' \(it has \['linear', 'pcm'\]\)"):
        load_step_table(files["fits"], "rram")
    swapped = json.loads(files["fits"].read_text())
    swapped["devices"]["pcm"] = swapped["devices"]["linear"]
    (tmp_path / "swapped.json").write_text(json.dumps(swapped))
    with pytest.raises(ParameterError, match="fitted to device 'linear', not 'pcm'"):
        load_step_table(tmp_path / "swapped.json", "pcm")
    from models.pulse import PulseShape
    assert load_step_table(files["fits"], "linear", shape=PulseShape()).to_dict() == a.to_dict()
    with pytest.raises(ParameterError, match="fitted with the write pulse"):
        load_step_table(files["fits"], "linear", shape=PulseShape(width=100e-9, period=200e-9))
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ParameterError, match="neither a calibration.json nor a blocks/fits.json"):
        load_step_table(tmp_path / "other.json", "linear")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ParameterError, match="not valid JSON"):
        load_step_table(tmp_path / "broken.json", "linear")


def _update(dev, W, table=None, seed=4, **kw):
    """One mini-batch of 10 samples through a one-tile layer; returns the weight change."""
    x = np.random.default_rng(2).uniform(0, 1, (10, W.shape[0]))
    d = np.random.default_rng(3).uniform(-0.2, 0.2, (10, W.shape[1]))
    layer = AnalogLayer(W, LayerConfig(mapping=mapping_for(dev), adc_bits=None, bias=False))
    layer.update(x, d, 0.5, PulseUpdate(dev, bl=8, refresh_at=1.0, table=table, **kw), np.random.default_rng(seed))
    return layer.weights() - W, layer


def test_pair_updates_through_a_fitted_table_track_the_twin_on_the_linear_device(files):
    dev = get_device("linear")
    table = load_step_table(files["fits"], "linear")
    W = np.random.default_rng(1).uniform(-1, 1, (12, 8))
    twin, _ = _update(dev, W)
    big = np.abs(twin).max()
    assert big > 0.05                                             # the update did something
    for noise in (True, False):                                   # same pulse trains as the twin
        tab, _ = _update(dev, W, table, table_noise=noise)
        assert np.abs(tab - twin).max() < 0.02 * big
    det = _update(dev, W, table, table_noise=False)[0]
    assert np.array_equal(det, _update(dev, W, table, table_noise=False)[0])   # reproducible
    assert not np.array_equal(det, _update(dev, W, table, seed=5, table_noise=False)[0])


def test_table_noise_is_one_draw_per_device_per_mini_batch():
    """With a constant table (step m, spread s) a device pulsed N times over the samples of a
    mini-batch moves by N max(m + s z, 0) with its one z, the first draw of the update's rng."""
    dev = get_device("linear")
    mp = mapping_for(dev)
    bins, m, s = 8, 1e-7, 0.4e-7
    edges = tuple(np.linspace(mp.g_min, mp.g_max, bins + 1))
    g = list(0.5 * (np.array(edges[1:]) + np.array(edges[:-1])))
    table = StepTable("linear", mp.g_min, mp.g_max, edges,
                      {"up": {"g": g, "mean": [m] * bins, "std": [s] * bins, "count": [9] * bins}})
    W = np.zeros((6, 5))
    _, det = _update(dev, W, table, table_noise=False)
    _, noisy = _update(dev, W, table)
    n_pulses = np.stack([(det.tiles[0].g_plus - mp.g_min) / m, (det.tiles[0].g_minus - mp.g_min) / m], axis=-1)
    assert np.allclose(n_pulses, np.round(n_pulses), atol=1e-6) and n_pulses.max() >= 3
    z = np.random.default_rng(4).standard_normal(n_pulses.size).reshape(n_pulses.shape)
    got = np.stack([noisy.tiles[0].g_plus, noisy.tiles[0].g_minus], axis=-1) - mp.g_min
    np.testing.assert_allclose(got, np.round(n_pulses) * np.maximum(m + s * z, 0), rtol=1e-9, atol=1e-18)


def test_pulse_update_refuses_a_table_it_cannot_use(files):
    lin = load_step_table(files["fits"], "linear")
    with pytest.raises(ParameterError, match="fast model"):
        PulseUpdate(get_device("linear"), backend="spice", table=lin)
    with pytest.raises(ParameterError, match="fitted to device 'linear', not 'pcm'"):
        PulseUpdate(get_device("pcm"), table=lin)
    from models.pulse import PulseShape
    assert lin.pulse == (50e-9, 5e-9, 100e-9)                    # recorded by the fit
    with pytest.raises(ParameterError, match="fitted with the write pulse .* this updater writes"):
        PulseUpdate(get_device("linear"), table=lin, shape=PulseShape(width=80e-9, period=200e-9))
    d = lin.to_dict()
    d["g_max"] *= 2
    with pytest.raises(ParameterError, match="conductance range .* differs from the device 'linear' range"):
        PulseUpdate(get_device("linear"), table=StepTable.from_dict(d))
    layer = AnalogLayer(np.zeros((3, 2)), LayerConfig(adc_bits=None, bias=False))   # 1-25 uS, not the device's
    with pytest.raises(ParameterError, match="differs from the weight mapping's range"):
        layer.update(np.ones((1, 3)), np.ones((1, 2)), 0.1, PulseUpdate(get_device("linear"), table=lin),
                     np.random.default_rng(0))


def test_train_config_checks_the_table_and_the_unit_cell_options(files, tmp_path):
    from cosim.train.data import load_digits_split
    from cosim.train.loop import TrainConfig
    pcm = load_step_table(files["fits"], "pcm")
    tab = dict(device="pcm", device_table=pcm)
    for kw, msg in ((dict(tab, update="ideal"), "needs update='fast' and unit_cell='pair'"),
                    (dict(tab, update="fast", unit_cell="2pcm3t1c"), "needs update='fast' and unit_cell='pair'"),
                    (dict(tab, update="fast", device="rram"), "fitted to device 'pcm', the run updates 'rram'"),
                    (dict(tab, update="fast", device_table=str(files["fits"])), "must be a loaded StepTable"),
                    (dict(transfer_every=7), "transfer_every applies to unit_cell='2pcm3t1c' only"),
                    (dict(gain_f=2.0), "gain_f applies to unit_cell='2pcm3t1c' only"),
                    (dict(lsp_pulse_width=50e-9), "lsp_pulse_width applies to unit_cell='2pcm3t1c' only")):
        with pytest.raises(ParameterError, match=msg):
            TrainConfig(**kw)
    with pytest.raises(ParameterError, match="no step table of device 'rram'"):
        load_step_table(files["fits"], "rram")
    TrainConfig(unit_cell="2pcm3t1c", transfer_every=7, gain_f=2.0)             # fine on the unit cell
    data = load_digits_split()
    plain = TrainConfig(update="fast", device="pcm")
    a = TrainConfig(update="fast", device="pcm", device_table=pcm)
    b = TrainConfig(update="fast", device="pcm", device_table=load_step_table(files["cal"], "pcm"))   # other file
    assert a.fingerprint(data) == b.fingerprint(data) != plain.fingerprint(data)   # contents, not paths


def test_train_cli_device_table_and_unit_cell_options(files, tmp_path, rng, capsys):
    from cosim.cli import main
    p = tmp_path / "d.npz"
    np.savez(p, X_train=rng.uniform(0, 1, (40, 6)), y_train=rng.integers(0, 3, 40),
             X_test=rng.uniform(0, 1, (12, 6)), y_test=rng.integers(0, 3, 12))
    base = ["train", "--data", str(p), "--epochs", "1", "--hidden", "4", "--reads", "fast"]
    for extra, msg in ((["--transfer-every", "7"], "transfer_every applies to unit_cell='2pcm3t1c'"),
                       (["--gain-f", "2"], "gain_f applies to unit_cell='2pcm3t1c'"),
                       (["--lsp-pulse-width", "5e-8"], "lsp_pulse_width applies to unit_cell='2pcm3t1c'"),
                       (["--device-table", str(files["fits"])], "needs update='fast'")):
        assert main([*base, *extra, "--out", str(tmp_path / "bad")]) == 2
        assert msg in capsys.readouterr().err
    assert main([*base, "--unit-cell", "pair", "--update", "fast", "--device", "linear", "--device-table",
                 str(files["cal"]), "--out", str(tmp_path / "o")]) == 0
    cfg = json.loads((tmp_path / "o" / "metrics.json").read_text())["config"]
    table = load_step_table(files["cal"], "linear").to_dict()
    assert cfg["device_table"] == hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()
    assert cfg["transfer_every"] == 20 and cfg["gain_f"] == 3.0


def test_training_on_a_fitted_pcm_table_learns(files, tmp_path):
    from cosim.train.data import load_digits_split
    from cosim.train.loop import TrainConfig, train
    data = load_digits_split()
    cfg = TrainConfig(epochs=1, forward="fast", backward="fast", update="fast", device="pcm",
                      device_table=load_step_table(files["fits"], "pcm"))
    from cosim.train.loop import make_updater
    assert make_updater(cfg).table.to_dict() == load_step_table(files["fits"], "pcm").to_dict()
    m = train(cfg, data, tmp_path / "run", progress=False)
    f = m["final"]          # one epoch of the digits: the software run reaches ~87 %, the PCM twin ~83 %
    assert f["software_test_accuracy"] > 0.8 and f["test_accuracy"] > 0.6

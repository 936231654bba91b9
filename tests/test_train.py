"""Weight mapping, analog layers and the training loop (checkpoints, resume, baselines)."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cosim.calibrate.bundle import content_digest, load_calibration
from cosim.calibrate.montecarlo import MonteCarloRuns, Variation
from cosim.train.data import Dataset, load_digits_split, load_npz
from cosim.write.mapping import MappingSpec, from_conductances, tile_slices, to_conductances
from cosim.train.layers import AnalogLayer, IdealUpdate, LayerConfig, quantize
from cosim.train.loop import TrainConfig, train
from models.errors import ParameterError, ShapeError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("per_column", [False, True])
def test_mapping_round_trip(per_column, rng):
    spec = MappingSpec(g_min=2e-6, g_max=20e-6, w_max=1.5, per_column=per_column)
    W = rng.uniform(-1.5, 1.5, (17, 9))
    gp, gm, scale = to_conductances(W, spec)
    assert gp.min() >= spec.g_min - 1e-18 and gp.max() <= spec.g_max + 1e-18
    assert np.allclose(from_conductances(gp, gm, scale), W, rtol=0, atol=1e-12)
    assert np.all((gp == spec.g_min) | (gm == spec.g_min))     # one device of a pair idles
    big = to_conductances(np.full((2, 2), 9.0), MappingSpec(w_max=1.5))
    assert np.allclose(from_conductances(*big), 1.5)          # clipped, not wrapped
    with pytest.raises(ParameterError, match="g_min"):
        MappingSpec(g_min=30e-6, g_max=20e-6)
    with pytest.raises(ParameterError, match="NaN"):
        to_conductances(np.array([[np.nan]]), spec)


def test_tiles_cover_the_layer_and_add_up(rng):
    tiles = tile_slices(70, 33, 32, 16)
    cover = np.zeros((70, 33), int)
    for r, c in tiles:
        cover[r, c] += 1
    assert np.all(cover == 1) and len(tiles) == 9
    W = rng.uniform(-1, 1, (70, 33))
    x = rng.uniform(0, 1, (4, 70))
    d = rng.uniform(-1, 1, (4, 33))
    cfg = LayerConfig(r_wire=0.0, adc_bits=None, max_rows=32, max_cols=16)
    tiled, whole = AnalogLayer(W, cfg), AnalogLayer(W, LayerConfig(r_wire=0.0, adc_bits=None))
    assert len(tiled.tiles) == 9
    for backend in ("ideal", "fast"):
        assert np.allclose(tiled.forward(x, backend), whole.forward(x, "software"), atol=1e-9)
        assert np.allclose(tiled.backward(d, backend), whole.backward(d, "software"), atol=1e-9)


def test_spice_reads_match_fast_reads_through_a_layer(rng, engine):
    cfg = LayerConfig(r_wire=1.5, adc_bits=None, max_rows=16, max_cols=8)
    layer = AnalogLayer(rng.uniform(-2, 2, (20, 10)), cfg, engine=engine)
    x = rng.uniform(0, 1, (3, 20))
    d = rng.uniform(-1, 1, (3, 10))
    assert np.allclose(layer.forward(x, "spice"), layer.forward(x, "fast"), rtol=1e-8, atol=1e-12)
    assert np.allclose(layer.backward(d, "spice"), layer.backward(d, "fast"), rtol=1e-8, atol=1e-12)
    # and the wires make the analog result differ from the float product
    assert not np.allclose(layer.forward(x, "fast"), layer.forward(x, "ideal"), rtol=1e-4)


def test_quantiser():
    I = np.linspace(-2, 2, 401)
    q = quantize(I, 3, 1.0)
    assert q.max() == pytest.approx(1.0) and q.min() == pytest.approx(-1.0)
    assert len(np.unique(q)) == 7
    assert np.array_equal(quantize(I, None, 1.0), I)


def test_ideal_update_is_the_float_update(rng):
    cfg = LayerConfig(adc_bits=None)
    W = rng.uniform(-1, 1, (6, 4))
    layer = AnalogLayer(W, cfg)
    x, d = rng.uniform(0, 1, (5, 6)), rng.uniform(-1, 1, (5, 4))
    layer.update(x, d, 0.1, IdealUpdate(), rng)   # per-sample x, d; the float update in sum
    xa = np.hstack([x, np.ones((5, 1))])
    assert np.allclose(layer.weights(), np.vstack([W, np.zeros((1, 4))]) - 0.1 * xa.T @ d, atol=1e-12)


def _small(data: Dataset, n_train: int = 200) -> Dataset:
    """The first ``n_train`` training samples; the test samples of the classes they hold."""
    keep = np.isin(data.y_test, data.y_train[:n_train])
    return Dataset("digits-small", data.X_train[:n_train], data.y_train[:n_train], data.X_test[keep],
                   data.y_test[keep])


def test_software_baseline_and_ideal_analog_agree():
    data = load_digits_split()
    assert (len(data.y_train), len(data.y_test)) == (1437, 360)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        m = train(TrainConfig(epochs=10, forward="ideal", backward="ideal"), data, Path(tmp), progress=False,
                  resume=False)
    assert m["final"]["software_test_accuracy"] >= 0.95
    assert m["final"]["same_predictions"] >= 0.99          # only the 9-bit ADC differs


def _as_old_checkpoint(path: Path) -> None:
    """Rewrite a checkpoint as one of before: the per-mini-batch losses as lists in its meta."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    for k in ("losses", "soft_losses"):
        meta[k] = arrays.pop(k).tolist()
    np.savez(path, meta=json.dumps(meta), **arrays)


def test_training_leaves_nothing_for_the_cycle_collector(tmp_path):
    """Training builds an array state per tile and mini-batch. Each must be freed by reference
    counting as soon as it is replaced: anything of ours left in a reference cycle waits for the
    cyclic collector, which large numpy arrays do not prompt (784-250-10 training with exact reads
    grew to 4.5 GB that way). A first run does the lazy imports (matplotlib's leave cycles of their
    own); the second runs with the collector off and must leave none of our objects behind."""
    data = _small(load_digits_split(), 60)
    cfg = TrainConfig(unit_cell="2pcm3t1c", epochs=1, forward="fast", backward="fast", update="fast",
                      layer=LayerConfig(r_wire=1.0))
    train(cfg, data, tmp_path / "warm", progress=False, resume=False)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        train(cfg, data, tmp_path / "run", progress=False, resume=False)
        gc.collect()
        ours = sorted({type(o).__qualname__ for o in gc.garbage
                       if type(o).__module__.split(".")[0] in ("cosim", "netlists", "models")})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not ours, f"left in reference cycles: {ours}"


def test_killed_run_resumes_to_the_same_result(tmp_path):
    data = _small(load_digits_split())
    cfg = TrainConfig(epochs=2, forward="fast", backward="fast", checkpoint_every=5, checkpoint_seconds=0,
                      layer=LayerConfig(r_wire=1.0))
    full = train(cfg, data, tmp_path / "full", progress=False)
    part = train(cfg, data, tmp_path / "cut", progress=False, stop_after=13)   # killed mid-epoch
    assert part["stopped"] and (tmp_path / "cut" / "checkpoint.npz").exists()
    _as_old_checkpoint(tmp_path / "cut" / "checkpoint.npz")      # one written before the losses were arrays
    resumed = train(cfg, data, tmp_path / "cut", progress=False)
    assert resumed["history"] == full["history"]
    a, b = np.load(tmp_path / "full" / "checkpoint.npz"), np.load(tmp_path / "cut" / "checkpoint.npz")
    for key in ("gp0", "gm0", "gp1", "gm1", "losses", "soft_losses"):
        assert np.array_equal(a[key], b[key])
    assert "losses" not in json.loads(str(a["meta"]))     # binary, not megabytes of JSON per checkpoint
    for name in ("metrics.json", "curves.png", "conductances.png", "netlists/layer0_tile0.cir"):
        assert (tmp_path / "cut" / name).exists()
    other = TrainConfig(epochs=2, lr=0.1, forward="fast", backward="fast", checkpoint_every=5,
                        layer=LayerConfig(r_wire=2.0))
    with pytest.raises(ParameterError, match=r"another configuration \(layer.r_wire: 1.0 -> 2.0; lr: 0.5 -> "
                                             r"0.1\); use a new --out folder, or --fresh"):
        train(other, data, tmp_path / "cut", progress=False)


def test_checkpoints_are_throttled_and_their_cadence_is_not_part_of_the_run(tmp_path):
    data = _small(load_digits_split())
    cfg = TrainConfig(epochs=1, forward="fast", backward="fast", checkpoint_every=5, checkpoint_seconds=3600,
                      layer=LayerConfig(r_wire=1.0))

    def saved_at(run):
        with np.load(tmp_path / run / "checkpoint.npz") as z:
            meta = json.loads(str(z["meta"]))
        return meta["epoch"], meta["batch"]

    # the first chance after a start saves (a run killed often still advances), then not for an hour
    assert train(cfg, data, tmp_path / "cut", progress=False, stop_after=13)["stopped"]
    assert saved_at("cut") == (0, 5)
    train(replace(cfg, checkpoint_seconds=0), data, tmp_path / "cut", progress=False, stop_after=8)
    assert saved_at("cut") == (0, 10)
    # another cadence resumes the same run, to the result of a run that was never stopped, and the
    # end of the epoch is saved whatever the throttle
    resumed = train(replace(cfg, checkpoint_every=7), data, tmp_path / "cut", progress=False)
    assert saved_at("cut") == (1, 0)
    assert resumed["history"] == train(cfg, data, tmp_path / "full", progress=False)["history"]
    with pytest.raises(ParameterError, match="checkpoint_seconds must be >= 0"):
        replace(cfg, checkpoint_seconds=-1.0)


class _Stop(Exception):
    pass


def _signal_at(monkeypatch, call: int, signals: int = 1, hang: float = 0.0) -> None:
    """The analog network's ``call``-th mini-batch sends itself SIGINT ``signals`` times, then
    (``hang``) takes that many seconds more."""
    import time as _time
    from cosim.train.network import MLP
    step, calls = MLP.step, [0]

    def stepped(self, *a, **kw):
        out = step(self, *a, **kw)
        if a[5]:               # the software network's step
            return out
        calls[0] += 1
        if calls[0] == call:
            for _ in range(signals):
                signal.raise_signal(signal.SIGINT)
            _time.sleep(hang)
        return out
    monkeypatch.setattr(MLP, "step", stepped)


def _saved_batch(path: Path) -> tuple[int, int]:
    with np.load(path / "checkpoint.npz") as z:
        meta = json.loads(str(z["meta"]))
    return meta["epoch"], meta["batch"]


def test_a_signal_saves_the_mini_batch_under_way_and_hands_the_signal_on(tmp_path, monkeypatch):
    """SIGINT in the middle of a mini-batch: the mini-batch ends, a checkpoint of it is written
    (whatever the throttle), then the handler of before runs (here it raises ``_Stop``) and is
    back in place. The run resumes from there to the result of a run never stopped. A second
    signal, or a mini-batch that outlasts the grace, stops at once with the last periodic
    checkpoint."""
    from cosim.train import stopping
    data = _small(load_digits_split())
    cfg = TrainConfig(epochs=1, forward="fast", backward="fast", checkpoint_every=5, checkpoint_seconds=3600)
    full = train(cfg, data, tmp_path / "full", progress=False)

    def stop(signum, frame):
        raise _Stop()
    before = signal.signal(signal.SIGINT, stop)
    try:
        with monkeypatch.context() as m:
            _signal_at(m, 13)
            with pytest.raises(_Stop):
                train(cfg, data, tmp_path / "cut", progress=False)
        assert signal.getsignal(signal.SIGINT) is stop
        assert _saved_batch(tmp_path / "cut") == (0, 13)       # not 5, the throttled one
        for kind, kw in (("twice", {"signals": 2}), ("hung", {"hang": 30.0})):
            with monkeypatch.context() as m:
                m.setattr(stopping, "GRACE_SECONDS", 0.2)
                _signal_at(m, 7, **kw)
                with pytest.raises(_Stop):
                    train(cfg, data, tmp_path / kind, progress=False)
            assert _saved_batch(tmp_path / kind) == (0, 5), kind   # the periodic one: 7 was cut short
            assert signal.getsignal(signal.SIGINT) is stop
    finally:
        signal.signal(signal.SIGINT, before)
    assert train(cfg, data, tmp_path / "cut", progress=False)["history"] == full["history"]
    assert train(cfg, data, tmp_path / "hung", progress=False)["history"] == full["history"]


def test_a_resumed_run_with_exact_unquantised_reads_is_the_same_bit_for_bit(tmp_path):
    """Without an output quantiser any difference in the reads shows: a killed unit-cell run
    (its PCM tiles read at one state over several mini-batches, test-set reads at every epoch's
    end) resumes to exactly the arrays and losses of a run that was never stopped."""
    data = _small(load_digits_split())
    cfg = TrainConfig(epochs=2, forward="fast", backward="fast", update="fast", unit_cell="2pcm3t1c",
                      transfer_every=7, checkpoint_every=5, checkpoint_seconds=0,
                      layer=LayerConfig(r_wire=1.0, adc_bits=None))
    full = train(cfg, data, tmp_path / "full", progress=False)
    n_batches = -(-len(data.y_train) // cfg.batch_size)
    train(cfg, data, tmp_path / "cut", progress=False, stop_after=n_batches + 8)      # into epoch 2
    resumed = train(cfg, data, tmp_path / "cut", progress=False)
    assert resumed["history"] == full["history"]
    with np.load(tmp_path / "full" / "checkpoint.npz") as a, np.load(tmp_path / "cut" / "checkpoint.npz") as b:
        for key in ("gp0", "gm0", "vc0", "gp1", "vc1", "losses", "soft_losses"):
            assert np.array_equal(a[key], b[key]), key


def test_a_finished_run_is_extended_to_the_longer_run(tmp_path):
    """--epochs larger on a finished run's folder goes on from its last epoch, to the same result
    as a run started with the larger value; a smaller value is refused."""
    data = _small(load_digits_split())
    cfg = TrainConfig(epochs=1, forward="fast", backward="fast", checkpoint_every=5, checkpoint_seconds=0,
                      layer=LayerConfig(r_wire=1.0))
    longer = replace(cfg, epochs=2)
    straight = train(longer, data, tmp_path / "straight", progress=False)
    assert len(train(cfg, data, tmp_path / "run", progress=False)["history"]) == 1
    (tmp_path / "run" / "monte_carlo.json").write_text("{}")       # a result of the 1-epoch network
    extended = train(longer, data, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "monte_carlo-epoch1.json").exists()
    assert not (tmp_path / "run" / "monte_carlo.json").exists()
    assert extended["history"] == straight["history"] and extended["config"]["epochs"] == 2
    a, b = np.load(tmp_path / "straight" / "checkpoint.npz"), np.load(tmp_path / "run" / "checkpoint.npz")
    for key in ("gp0", "gm0", "gp1", "gm1", "losses", "soft_losses"):
        assert np.array_equal(a[key], b[key])
    with pytest.raises(ParameterError, match=r"trained 2 epochs, more than --epochs 1: a run can be extended, "
                                             r"not shortened"):
        train(cfg, data, tmp_path / "run", progress=False)
    with pytest.raises(ParameterError, match=r"another configuration \(epochs: 2 -> 3; lr: 0.5 -> 0.1\)"):
        train(replace(cfg, epochs=3, lr=0.1), data, tmp_path / "run", progress=False)


def test_user_npz_data(tmp_path, rng):
    p = tmp_path / "d.npz"
    np.savez(p, X_train=rng.uniform(0, 1, (30, 5)), y_train=rng.integers(0, 3, 30),
             X_test=rng.uniform(0, 1, (10, 5)), y_test=rng.integers(0, 3, 10))
    d = load_npz(p)
    assert d.n_features == 5 and d.n_classes == 3
    np.savez(tmp_path / "bad.npz", X_train=rng.uniform(0, 9, (3, 2)), y_train=np.zeros(3, int),
             X_test=np.zeros((1, 2)), y_test=np.zeros(1, int))
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", X_train=np.zeros((3, 2)))
    with pytest.raises(ShapeError, match="lacks"):
        load_npz(tmp_path / "short.npz")


def test_train_cli(tmp_path, rng):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = tmp_path / "d.npz"
    np.savez(p, X_train=rng.uniform(0, 1, (40, 6)), y_train=rng.integers(0, 3, 40),
             X_test=rng.uniform(0, 1, (12, 6)), y_test=rng.integers(0, 3, 12))
    run = lambda *a: subprocess.run([sys.executable, "-m", "cosim.cli", "train", *map(str, a)], cwd=tmp_path,
                                    env=env, capture_output=True, text=True, timeout=600)
    res = run("--data", p, "--epochs", 1, "--hidden", 4, "--out", "o")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "software baseline" in res.stdout
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["config"]["forward"] == "spice"
    for bad, msg in ((["--epochs", 0], "epochs must be an integer >= 1"), (["--data", "nope.npz"], "nope.npz: no such file"),
                     (["--lr", "nan"], "lr must be > 0"), (["--r-wire", -1], "r_wire")):
        res = run(*bad, "--out", "bad")
        assert res.returncode == 2 and msg in res.stderr, res.stderr[-500:]


def _chain_cfg(bits: int = 10, full_scale: float = 0.3, **kw) -> LayerConfig:
    from netlists.readchain import PeripheryConfig
    from models.adc import QuantizerParams
    from models.dac import DacParams
    pc = PeripheryConfig(dac=DacParams(bits=8), adc=QuantizerParams(bits=bits), full_scale=full_scale)
    return LayerConfig(adc_bits=None, periphery=pc, **kw)


def test_layer_reads_through_the_periphery_chain(rng, engine):
    """DAC codes -> wired array -> integrators -> ADCs: within a few output LSB of the exact read
    of the DAC-quantised input, spice and fast twin within one LSB of each other."""
    from models.dac import from_codes, to_codes

    cfg = _chain_cfg(r_wire=1.0, max_rows=12, max_cols=6)
    W = rng.uniform(-2, 2, (15, 8))
    layer = AnalogLayer(W, cfg, engine=engine)      # 16 rows with the bias: 2 x 2 tiles
    plain = AnalogLayer(W, replace(cfg, periphery=None))
    x = rng.uniform(0, 1, (3, 15))
    d = rng.uniform(-1, 1, (3, 8))
    xq = from_codes(to_codes(x / x.max(axis=1, keepdims=True), 8), 8) * x.max(axis=1, keepdims=True)
    y, y_exact = layer.forward(x, "fast"), plain.forward(xq, "fast")
    chains = [t.read_chain(cfg, engine) for t in layer.tiles]
    # one output LSB in weight units, per tile, summed over the row tiles
    lsb = max(c.lsb_current() for c in chains) * layer.scale.max() * x.max() / cfg.v_read * 2
    assert np.abs(y - y_exact).max() <= 3 * lsb
    assert np.abs(y - y_exact).max() > 0          # the converters are really in the path
    b, b_exact = layer.backward(d, "fast"), plain.backward(d, "fast")
    assert np.corrcoef(b.ravel(), b_exact.ravel())[0, 1] > 0.99
    ys = layer.forward(x[:1], "spice")
    assert np.abs(ys - y[:1]).max() <= 2 * lsb
    # a write invalidates the chain
    layer.update(x, d, 0.1, IdealUpdate(), rng)
    assert all(t._chain is None for t in layer.tiles)


def test_training_with_the_periphery_chain_learns(tmp_path):
    data = _small(load_digits_split())
    cfg = TrainConfig(epochs=1, forward="fast", backward="fast", layer=_chain_cfg(r_wire=1.0))
    m = train(cfg, data, tmp_path / "chain", progress=False)
    f = m["final"]          # 200 training images, one epoch: the software run reaches 35 %
    assert abs(f["test_accuracy"] - f["software_test_accuracy"]) < 0.05 and f["same_predictions"] > 0.8
    assert m["config"]["layer"]["periphery"]["adc"]["bits"] == 10


def test_autoranging_read_chain(rng, engine):
    """The capacitor bank: a first read ranges up from the worst-case size until its largest code
    is at about half the range, clipping lowers the gain and reads again, unused bits raise it;
    the ranged read is the same analog value with finer LSBs, in the twin and in ngspice."""
    from cosim.train.layers import RANGE_CREEP, ranged_read

    cfg = _chain_cfg(bits=8, full_scale=1.0, r_wire=1.0, max_rows=40, max_cols=8, chain_autorange=10)
    layer = AnalogLayer(rng.uniform(-0.3, 0.3, (39, 8)), cfg, engine=engine)
    t, x = layer.tiles[0], rng.uniform(0, 0.2, (4, 40))         # small inputs: the worst case is far away
    chain = t.read_chain(cfg, engine)
    worst = chain.read_values(x, backend="fast")
    assert chain.code_use(worst)[0] < 0.05                      # a few codes of the worst-case size
    gains: dict = {}
    res = ranged_read(chain, gains, "k", x, False, 10, backend="fast")
    k = gains["k"]
    peak, clipped = chain.code_use(res)
    assert k >= 3 and clipped == 0 and RANGE_CREEP <= peak <= 1
    assert k <= chain.max_gain(False) and chain.max_gain(False) < 30   # the op-amp's lag bounds the bank
    assert chain.with_gain(k).config.integrator.c_int == pytest.approx(chain.config.integrator.c_int / 2 ** k)
    assert chain.with_gain(k)._geff is chain._geff                # one transfer serves every gain
    # the same currents, to the finer LSB
    assert np.abs(res.decoded - worst.decoded).max() <= chain.lsb_current()
    assert np.abs(res.decoded - worst.decoded).max() > 0
    assert np.abs(res.decoded - chain.read_values(x, backend="fast").decoded).max() <= chain.lsb_current()
    # 5x larger inputs clip at step k: one step down, read again, nothing clipped
    big = np.clip(5 * x, 0, 1)
    res = ranged_read(chain, gains, "k", big, False, 10, backend="fast")
    assert gains["k"] < k and chain.code_use(res)[1] == 0
    # a read at a quarter of the range raises the gain for the next one; adapt=False keeps it
    held = gains["k"]
    ranged_read(chain, gains, "k", big / 8, False, 10, backend="fast", adapt=False)
    assert gains["k"] == held
    ranged_read(chain, gains, "k", big / 8, False, 10, backend="fast")
    assert gains["k"] == held + 1
    # ngspice at the ranged gain gives the twin's codes within one
    s = ranged_read(chain, gains, "k", x[:1], False, 10, backend="spice", adapt=False)
    f = ranged_read(chain, gains, "k", x[:1], False, 10, backend="fast", adapt=False)
    assert np.abs(s.codes - f.codes).max() <= 1
    # a held step beyond the lag limit (the lines' conductance grew since it was set: an MNIST
    # pair's layer-1 tile held 6 where the limit had fallen to 4, 2-4 LSB RMS from ngspice) is
    # read at the limit, and the limit is what is held next
    lim = chain.max_gain(False)
    over = {"k": lim + 2}
    ranged_read(chain, over, "k", x, False, lim + 4, backend="fast")
    assert over["k"] <= lim
    with pytest.raises(ParameterError, match="chain_autorange"):
        LayerConfig(chain_autorange=4)                           # without periphery


def test_autoranging_training_resumes_to_the_same_result(tmp_path):
    data = _small(load_digits_split())
    cfg = TrainConfig(epochs=1, forward="fast", backward="fast", checkpoint_every=5, checkpoint_seconds=0,
                      layer=_chain_cfg(bits=8, full_scale=1.0, r_wire=1.0, chain_autorange=8))
    full = train(cfg, data, tmp_path / "full", progress=False)
    part = train(cfg, data, tmp_path / "cut", progress=False, stop_after=13)
    resumed = train(cfg, data, tmp_path / "cut", progress=False)
    assert part["stopped"] and resumed["history"] == full["history"]
    ck = np.load(tmp_path / "full" / "checkpoint.npz")
    assert ck["gains0"].shape == (1, 4) and ck["gains0"][0, 0] > 0     # the first layer: forward reads only
    assert ck["gains1"][0, 0] > 0 and ck["gains1"][0, 1] > 0            # the second: both directions ranged up
    worst = train(replace(cfg, layer=replace(cfg.layer, chain_autorange=0)), data, tmp_path / "worst", progress=False)
    assert full["final"]["test_accuracy"] > worst["final"]["test_accuracy"]


def test_calibrated_reads_in_a_layer_and_the_cli(tmp_path, rng):
    """The cheap IR-drop model as a read backend of the training loop: close to the exact solve,
    cheaper, and refused with a clear error when no calibration is given."""
    from cosim.read.irmodel import Calibration, IRModel
    path = Calibration(IRModel.nominal()).save(tmp_path / "calibration.json")
    cfg = LayerConfig(r_wire=1.0, adc_bits=None, calibration=Calibration.load(path))
    layer = AnalogLayer(rng.uniform(-2, 2, (30, 12)), cfg)
    x = rng.uniform(0, 1, (4, 30))
    exact, cheap, ideal = (layer.forward(x, b) for b in ("fast", "calibrated", "ideal"))
    assert np.abs(cheap - exact).max() < 0.1 * np.abs(ideal - exact).max()
    d = rng.uniform(-1, 1, (4, 12))
    assert np.abs(layer.backward(d, "calibrated") - layer.backward(d, "fast")).max() < \
        0.1 * np.abs(layer.backward(d, "ideal") - layer.backward(d, "fast")).max()
    with pytest.raises(ParameterError, match="calibration"):
        AnalogLayer(np.ones((3, 2)), LayerConfig()).forward(np.ones((1, 3)), "calibrated")
    data = _small(load_digits_split(), 60)
    m = train(TrainConfig(epochs=1, forward="calibrated", backward="calibrated", layer=cfg), data,
              tmp_path / "run", progress=False)
    assert m["config"]["layer"]["calibration"] == content_digest(IRModel.nominal().to_dict())
    with pytest.raises(ParameterError, match="loaded Calibration"):
        LayerConfig(calibration=str(path))          # files are read at the edge, once
    # a calibration fitted on lighter arrays than the run's: refused before the first mini-batch
    light = Calibration(replace(IRModel.physical(), rho_max=1e-4)).save(tmp_path / "light.json")
    heavy = replace(cfg, calibration=Calibration.load(light))
    with pytest.raises(ParameterError, match="beyond the calibration.*--reads fast"):
        train(TrainConfig(epochs=1, forward="calibrated", backward="calibrated", layer=heavy), data,
              tmp_path / "run2", progress=False)
    # arrays larger than every array the calibration was checked on: refused, naming the largest
    small = Calibration(IRModel.physical(), errors=({"rows": 16, "cols": 16, "r_wire": 1.0, "cal_rmse": 1e-6},))
    with pytest.raises(ParameterError, match=r"lies beyond the calibration \(largest 16x16 at 1 ohm\)"):
        train(TrainConfig(epochs=1, forward="calibrated", backward="calibrated",
                          layer=replace(cfg, calibration=small)), data, tmp_path / "run3", progress=False)


def test_calibrated_reads_through_the_read_chain(rng):
    """With a read chain, calibrated reads are the chain's twin with the array's transfer from the
    IR-drop model: the same codes as the exact transfer but for an LSB, for both cells."""
    from cosim.read.irmodel import Calibration, IRModel
    from cosim.train.unitcell import UnitCellLayer, UnitCellSpec
    cfg = _chain_cfg(r_wire=2.5, calibration=Calibration(IRModel.physical()))
    x, d = rng.uniform(0, 1, (6, 40)), rng.uniform(-1, 1, (6, 9))
    for layer in (AnalogLayer(rng.uniform(-2, 2, (40, 9)), cfg),
                  UnitCellLayer(rng.uniform(-2, 2, (40, 9)), cfg, UnitCellSpec())):
        exact, cheap = layer.forward(x, "fast"), layer.forward(x, "calibrated")
        assert np.abs(exact - cheap).max() <= 0.02 * np.abs(exact).max()      # 10-bit ADCs: a code or two
        assert not np.array_equal(layer.forward(x, "ideal"), cheap)
        back = np.abs(layer.backward(d, "fast") - layer.backward(d, "calibrated")).max()
        assert back <= 0.02 * np.abs(layer.backward(d, "fast")).max()


def test_fingerprint_follows_the_calibration_contents_not_its_path(tmp_path):
    """A re-calibration (same path, new coefficients) invalidates a checkpoint; a copy of the
    same calibration elsewhere does not."""
    from cosim.read.irmodel import Calibration, IRModel
    data = _small(load_digits_split(), 20)
    a = Calibration(IRModel.nominal()).save(tmp_path / "a" / "calibration.json")
    b = Calibration(IRModel.nominal()).save(tmp_path / "b" / "calibration.json")

    def fp(path):
        cal = load_calibration(path).ir_calibration()            # what `--calibration PATH` does
        return TrainConfig(forward="calibrated", layer=LayerConfig(calibration=cal)).fingerprint(data)

    first = fp(a)
    assert fp(b) == first
    Calibration(IRModel.physical()).save(a)
    assert fp(a) != first


def test_paired_sensing_is_in_the_fingerprint_and_per_line_runs_keep_theirs():
    """A chain run with paired sensing is another run, and one with another mirror gain; a
    per-line one (the default) records neither, so its checkpoints of before the options resume."""
    from netlists.readchain import PeripheryConfig
    data = _small(load_digits_split(), 20)
    cfg = {(s, g): TrainConfig(layer=LayerConfig(periphery=PeripheryConfig(sensing=s, mirror_gain=g)))
           for s in ("lines", "pairs") for g in (1.0, 0.98)}
    rec = {k: c.record()["layer"]["periphery"] for k, c in cfg.items()}
    assert not {"sensing", "mirror_gain"} & set(rec["lines", 1.0])          # as before the options
    assert rec["lines", 0.98] == rec["lines", 1.0]                          # no mirror without pairs
    assert rec["pairs", 1.0]["sensing"] == "pairs" and "mirror_gain" not in rec["pairs", 1.0]
    assert rec["pairs", 0.98]["mirror_gain"] == 0.98
    assert len({c.fingerprint(data) for c in cfg.values()}) == 3


def test_bad_settings_fail_before_a_run(tmp_path):
    """Settings that would only be used at the end of a run are checked at its start."""
    data = _small(load_digits_split(), 40)
    cfg = TrainConfig(epochs=1, forward="fast", backward="fast")
    for mc, msg in ((lambda: MonteCarloRuns(Variation(), runs=0), "runs"),
                    (lambda: MonteCarloRuns(Variation(stuck_frac=2.0)), "stuck_frac"),
                    (lambda: MonteCarloRuns(Variation(d2d_sigma=-1.0)), "d2d_sigma"),
                    (lambda: {"runs": 3}, "MonteCarloRuns")):
        with pytest.raises(ParameterError, match=msg):
            train(cfg, data, tmp_path / "mc", progress=False, monte_carlo=mc())
        assert not (tmp_path / "mc" / "checkpoint.npz").exists()
    with pytest.raises(ParameterError, match="update_method"):
        TrainConfig(unit_cell="2pcm3t1c", update="fast", update_method="transient")


def test_mnist_table_groups_the_seeds_of_a_configuration(tmp_path):
    """scripts/mnist_table.py: two seeds of one configuration (one finished, one known only by its
    checkpoint) make one group with a mean at the epoch both reached; another configuration is
    its own group."""
    import runpy
    data = _small(load_digits_split(), 100)
    base = TrainConfig(epochs=2, forward="fast", backward="fast", hidden=(8,))
    for name, cfg in (("s0", base), ("s1", replace(base, seed=1)), ("other", replace(base, lr=0.2))):
        train(cfg, data, tmp_path / name, progress=False)
    (tmp_path / "s1" / "metrics.json").unlink()            # as if still running: its checkpoint alone
    main = runpy.run_path(str(Path(__file__).resolve().parent.parent / "scripts" / "mnist_table.py"))["main"]
    assert main([str(tmp_path / n) for n in ("s0", "s1", "other")] + ["--out", str(tmp_path / "t"), "--target", "10",
                                                                      "--gap-from", "2"]) == 0
    out = json.loads((tmp_path / "t" / "mnist_table.json").read_text())
    h = out["runs"][0]["history"]
    assert out["runs"][0]["first_epoch_at_target"] == 1                          # any run reaches 10 %
    assert out["runs"][0]["largest_gap_from"] == pytest.approx(
        100 * (h[1]["software_test_accuracy"] - h[1]["test_accuracy"]))
    assert [g["seeds"] for g in out["groups"]] == [[0, 1]] and out["groups"][0]["epoch"] == 2
    assert [r["finished"] for r in out["runs"]] == [True, False, True]
    text = (tmp_path / "t" / "mnist_table.md").read_text()
    assert "| mean over seeds 0, 1 | | 2 |" in text and "2 (running)" in text
    assert (tmp_path / "t" / "mnist_table.png").stat().st_size > 10_000

"""The IBM 2018 unit cell (2 PCM + 3T1C): weight formula, reads of both arrays, updates of the
3T1C part, transfer with polarity inversion, resume, and a short training run."""

from __future__ import annotations

import json


import numpy as np
import pytest

from cosim.train.data import Dataset, load_digits_split
from cosim.train.layers import LayerConfig
from cosim.train.loop import TrainConfig, train
from cosim.train.unitcell import CapUpdate, LspIdealUpdate, UnitCellLayer, UnitCellSpec
from cosim.write.pair_update import mapping_for
from models.registry import get_device
from models.errors import ParameterError

PCM_MAPPING = mapping_for(get_device("pcm"), 4.0)
CAP = get_device("cap3t1c")


def _layer(rng, n_in=20, n_out=7, *, spec=None, engine=None, **cfg) -> UnitCellLayer:
    cfg = LayerConfig(**{"mapping": PCM_MAPPING, "r_wire": 0.0, "adc_bits": None, **cfg})
    return UnitCellLayer(rng.uniform(-2, 2, (n_in, n_out)), cfg, spec or UnitCellSpec(), engine=engine)


def _scramble(layer: UnitCellLayer, rng, lo=0.65, hi=1.15) -> None:
    for t in layer.tiles:
        t.vc = rng.uniform(lo, hi, t.vc.shape)
        t.lsp_changed()


def test_weight_formula_and_round_trip(rng):
    W = rng.uniform(-3, 3, (12, 5))
    cfg = LayerConfig(mapping=PCM_MAPPING, adc_bits=None, max_rows=8, max_cols=3)
    layer = UnitCellLayer(W, cfg, UnitCellSpec(gain_f=3.0))
    assert len(layer.tiles) == 4
    assert np.allclose(layer.weights()[:-1], W, atol=1e-12)       # initial weights all on the pair
    assert np.array_equal(layer.lsp_weights(), np.zeros_like(layer.lsp_weights()))
    _scramble(layer, rng)
    layer.tiles[1].polarity = -1
    gp, gm = layer.conductances()
    state = layer.unit_state()
    pol = np.ones(gp.shape)
    pol[layer.tiles[1].rows, layer.tiles[1].cols] = -1
    expected = layer.scale[None, :] * (3.0 * (gp - gm) + pol * (CAP.to_conductance(state["vc"]) - layer.g_shared))
    assert np.allclose(layer.weights(), expected, rtol=1e-12, atol=1e-15)
    assert np.allclose(layer.weights(), layer.msp_weights() + layer.lsp_weights())
    # the scale: a full PCM pair, times F, is w_max
    assert layer.scale[0] * 3.0 * PCM_MAPPING.g_range == pytest.approx(PCM_MAPPING.w_max)
    # state round trip (what a checkpoint stores)
    other = UnitCellLayer(W, cfg, UnitCellSpec(gain_f=3.0))
    other.set_conductances(gp, gm)
    other.set_unit_state(state)
    assert np.array_equal(other.weights(), layer.weights())
    # an ideal read of both arrays combined is x W
    x = rng.uniform(0, 1, (3, 12))
    xa = np.hstack([x, np.ones((3, 1))])
    assert np.allclose(layer.forward(x, "ideal"), xa @ layer.weights(), rtol=1e-10, atol=1e-12)
    d = rng.uniform(-1, 1, (3, 5))
    assert np.allclose(layer.backward(d, "ideal"), d @ layer.weights()[:-1].T, rtol=1e-10, atol=1e-12)
    with pytest.raises(ParameterError, match="gain_f"):
        UnitCellSpec(gain_f=0)
    with pytest.raises(ParameterError, match="transfer_every"):
        UnitCellSpec(transfer_every=0)
    with pytest.raises(ParameterError, match="vc_shared"):
        UnitCellLayer(W, cfg, UnitCellSpec(vc_shared=1.7))
    with pytest.raises(ParameterError, match="cell must be"):
        TrainConfig(unit_cell="3pcm")


def test_update_moves_only_the_3t1c_part(rng):
    x, d = rng.uniform(0, 1, (10, 20)), rng.uniform(-0.1, 0.1, (10, 7))
    xa = np.hstack([x, np.ones((10, 1))])
    ideal = -0.5 * xa.T @ d
    for polarity in (1, -1):
        dW, dvc = [], []
        for seed in range(16):   # the expectation of the stochastic update, over seeds
            layer = _layer(np.random.default_rng(0))
            for t in layer.tiles:
                t.polarity = polarity
            gp, gm = layer.conductances()
            vc0, W0 = layer.unit_state()["vc"], layer.weights()
            layer.update(x, d, 0.5, CapUpdate(CAP), np.random.default_rng(seed))
            gp1, gm1 = layer.conductances()
            assert np.array_equal(gp, gp1) and np.array_equal(gm, gm1)     # the PCM pair is untouched
            dW.append(layer.weights() - W0)
            dvc.append(layer.unit_state()["vc"] - vc0)
        dW, dvc = np.mean(dW, axis=0), np.mean(dvc, axis=0)
        assert np.corrcoef(dW.ravel(), ideal.ravel())[0, 1] > 0.9         # the update is the gradient step
        assert 0.8 < (dW * ideal).sum() / (ideal * ideal).sum() < 1.25    # of the right size
        # with the inverted polarity the same weight change is made by the opposite pulses
        assert np.corrcoef(dvc.ravel(), polarity * ideal.ravel())[0, 1] > 0.9
    # the twin's up and down steps differ, and by V_C-dependent amounts (the cell's asymmetry)
    vc = np.array([0.65, 1.15])
    up = CAP.to_conductance(CAP.step(vc, 1.0, CapUpdate(CAP).shape)) - CAP.to_conductance(vc)
    dn = CAP.to_conductance(vc) - CAP.to_conductance(CAP.step(vc, -1.0, CapUpdate(CAP).shape))
    asym = (up - dn) / (up + dn)
    assert asym[0] > 0.01 and asym[1] < -0.01
    # the float control writes the exact change onto the capacitors (within the range)
    layer = _layer(rng)
    W0 = layer.weights()
    layer.update(x, d, 0.05, LspIdealUpdate(CAP), rng)
    assert np.allclose(layer.weights() - W0, -0.05 * xa.T @ d, atol=1e-6)


def test_reference_cells_leak_with_the_array_so_an_idle_cell_keeps_its_weight(rng):
    """The 3T1C reference cells get no pulses but leak over the update's slots as the array does:
    a cell that got no pulse and sits at its reference's voltage keeps a 3T1C weight of zero, and
    every reference voltage is the leak of its value before. (Held ideal, the leak alone reads as
    a weight and trains: the second cause of the unit cell's failure at MNIST scale.)"""
    layer = _layer(np.random.default_rng(0))
    x, d = np.zeros((4, 20)), np.zeros((4, 7))
    x[:, 0], d[:, 0] = 1.0, -0.1             # pulses meet in column 0 at row 0 and the bias row only
    up = CapUpdate(CAP)
    ref0 = [t.vc_ref.copy() for t in layer.tiles]
    layer.update(x, d, 0.5, up, np.random.default_rng(1))
    for t, r0 in zip(layer.tiles, ref0):
        assert np.all(t.vc_ref < r0)
        # one time for every reference cell: a whole number of the update's slots
        elapsed = -np.log(t.vc_ref.ravel()[0] / r0.ravel()[0]) * CAP.params.r_leak * CAP.c_eff
        slots = elapsed / up.shape.period
        assert slots > 0.5 and abs(slots - round(slots)) < 1e-3, slots
        assert np.allclose(t.vc_ref, CAP.leak(r0, round(slots) * up.shape.period), rtol=1e-12, atol=0)
    lsp = layer.lsp_weights()
    assert lsp[0, 0] != 0.0 and lsp[-1, 0] != 0.0                # the pulsed cells moved
    idle = np.ones(lsp.shape, bool)
    idle[[0, -1], 0] = False
    assert np.abs(lsp[idle]).max() < 1e-12 * np.abs(lsp[0, 0])    # the idle ones leaked with their references


@pytest.mark.parametrize("refresh", [False, True])
def test_transfer_preserves_the_weight_resets_and_flips(rng, refresh):
    spec = UnitCellSpec(transfer_tol=0.3e-6)
    layer = _layer(rng, 30, 9, spec=spec)
    if refresh:   # G+ near the top: raising it would pass refresh_at, so the pair is reprogrammed
        for t in layer.tiles:
            t.g_plus = np.full(t.g_plus.shape, 0.88 * PCM_MAPPING.g_max)
            t.g_minus = np.full(t.g_minus.shape, 0.7 * PCM_MAPPING.g_max)
            t.changed()
    _scramble(layer, rng)
    W0 = layer.weights()
    stats = layer.transfer()
    W1 = layer.weights()
    tol_w = layer.scale[0] * spec.gain_f * spec.transfer_tol
    assert stats["unconverged"] == 0 and stats["pulses"] > 0
    assert (stats["refreshes"] > 0) == refresh
    # the weight is kept exactly: what programming missed (within its tolerance) stays on the
    # capacitor, under the inverted polarity, so the 3T1C part is at most the tolerance
    assert np.abs(W1 - W0).max() <= 1e-6 * tol_w     # (the 3T1C's V_C(g) inversion is numerical)
    assert np.abs(layer.lsp_weights()).max() <= (2 if refresh else 1) * tol_w * (1 + 1e-9)
    assert np.abs(layer.msp_weights() - W0).mean() < 0.5 * tol_w
    for t in layer.tiles:
        assert t.polarity == -1 and not np.all(t.vc == layer.vc_shared)
    assert layer.transfers == 1
    gp, gm = layer.conductances()
    assert gp.max() <= PCM_MAPPING.g_max and gm.min() >= PCM_MAPPING.g_min
    layer.transfer()
    assert all(t.polarity == 1 for t in layer.tiles) and layer.transfers == 2


@pytest.mark.parametrize("vc_shared", [0.7, 1.1])
def test_polarity_inversion_cancels_the_3t1c_asymmetry(vc_shared):
    """A weight-symmetric update stream (+dW, -dW, ...) leaves a net drift on the 3T1C cell (its
    up and down steps differ); inverting the polarity at each transfer makes the next period's
    drift opposite, so the sum transferred into the PCM nearly cancels."""
    net = {}
    for invert in (True, False):
        cfg = LayerConfig(mapping=PCM_MAPPING, adc_bits=None, bias=False)
        layer = UnitCellLayer(np.zeros((4, 3)), cfg, UnitCellSpec(vc_shared=vc_shared, invert_polarity=invert))
        up = CapUpdate(CAP, bl=2)
        lr = float(layer.scale[0]) * up.step_conductance() * up.bl   # probabilities 1: bl pulses per update
        for _ in range(2):
            for _ in range(50):
                for sign in (1.0, -1.0):
                    layer.update(np.ones((1, 4)), np.full((1, 3), sign), lr, up, np.random.default_rng(0))
            layer.transfer()
        net[invert] = layer.weights().mean()       # the weights started at 0: this is the drift
        assert (layer.tiles[0].polarity == 1) and layer.transfers == 2
    # without inversion a drift is left (the pumps' up/down asymmetry, and the leak of a cell
    # beside its reference cell when the two sit at different V_C); inversion cancels most of it
    assert abs(net[False]) > 0.01
    assert abs(net[True]) < 0.2 * abs(net[False])


def test_spice_reads_of_both_arrays_agree_with_fast_reads(rng, engine):
    layer = _layer(rng, 20, 10, engine=engine, r_wire=1.5, max_rows=16, max_cols=8)
    _scramble(layer, rng)
    layer.tiles[0].polarity = -1
    x, d = rng.uniform(0, 1, (3, 20)), rng.uniform(-1, 1, (3, 10))
    assert np.allclose(layer.forward(x, "spice"), layer.forward(x, "fast"), rtol=1e-8, atol=1e-12)
    assert np.allclose(layer.backward(d, "spice"), layer.backward(d, "fast"), rtol=1e-8, atol=1e-12)
    # wires on both arrays: the analog result differs from the float product
    assert not np.allclose(layer.forward(x, "fast"), layer.forward(x, "ideal"), rtol=1e-4)


@pytest.mark.parametrize("width", [50e-9, 5e-9])
def test_spice_update_of_the_3t1c_cells_matches_the_twin(rng, engine, width):
    """Transistor-level transient of the cells under their coincidence pulses vs the fitted twin,
    at the write pulse of before (50 ns, 47 steps over the range) and at the unit cell's
    default update pulse (5 ns, edges 0.5 ns: the edge charge is a larger share of it)."""
    from cosim.train.loop import lsp_pulse
    x, d = rng.uniform(0, 1, (2, 6)), rng.uniform(-0.2, 0.2, (2, 4))
    out = {}
    for backend in ("spice", "fast"):
        layer = _layer(np.random.default_rng(1), 6, 4)
        up = CapUpdate(CAP, backend=backend, engine=engine, shape=lsp_pulse(width))
        layer.update(x, d, 0.5, up, np.random.default_rng(5))
        out[backend] = layer.unit_state()["vc"]
    step = float(CAP.step(np.array([0.9]), 1.0, up.shape)[0] - 0.9)
    moved = np.abs(out["fast"] - 0.9)
    assert moved.max() > 3 * step                                   # several pulses on some cells
    assert np.abs(out["spice"] - out["fast"]).max() < 0.15 * step  # measured 0.06 (50 ns) and 0.11 (5 ns) step


def test_3t1c_pulse_counts_step_only_the_pulsed_cells_to_the_same_numbers(rng):
    """Cap3T1C.apply_counts (pulsed cells stepped, idle slots one leak) gives the states of
    stepping every cell slot after slot (DeviceModel.apply_counts), both polarities."""
    from cosim.train.loop import lsp_pulse
    from models.device import DeviceModel
    s = rng.uniform(*CAP.state_range, (40, 30))
    counts = (rng.random(s.shape) < 0.2) * rng.integers(0, 11, s.shape)
    for pol in (1, -1):
        for shape in (lsp_pulse(5e-9), lsp_pulse(50e-9)):
            ref = DeviceModel.apply_counts(CAP, s, counts, shape, polarity=pol)
            out = CAP.apply_counts(s, counts, shape, polarity=pol)
            assert out.shape == s.shape and np.abs(out - ref).max() < 1e-14
    assert np.array_equal(CAP.apply_counts(s, np.zeros(s.shape, int), lsp_pulse(5e-9)), s)


def test_unit_cell_update_pulse_sets_the_3t1c_step_and_the_fingerprint():
    """``lsp_pulse_width`` sets the 3T1C update pulse: 5 ns (the default) gives about 470 steps
    over the cell's conductance range, 50 ns (the write pulse of before: ``PulseShape()``) 47; a
    unit-cell run at 50 ns keeps the fingerprint it had before the option, so it resumes."""
    from cosim.train.loop import LEGACY_LSP_PULSE_WIDTH, lsp_pulse, make_updater
    from models.pulse import PulseShape
    assert lsp_pulse(LEGACY_LSP_PULSE_WIDTH) == PulseShape()
    lo, hi = CAP.to_conductance(np.array(CAP.state_range))
    steps = {w: abs(hi - lo) / make_updater(TrainConfig(unit_cell="2pcm3t1c", update="fast",
                                                         lsp_pulse_width=w)).step_conductance()
             for w in (5e-9, 50e-9)}
    assert 400 < steps[5e-9] < 550 and 40 < steps[50e-9] < 55
    data = load_digits_split()
    rec = {w: TrainConfig(unit_cell="2pcm3t1c", lsp_pulse_width=w).record() for w in (5e-9, 50e-9)}
    assert rec[5e-9]["lsp_pulse_width"] == 5e-9 and "lsp_pulse_width" not in rec[50e-9]
    assert "lsp_pulse_width" not in TrainConfig().record()                       # a pair run: not its business
    fps = {w: TrainConfig(unit_cell="2pcm3t1c", lsp_pulse_width=w).fingerprint(data) for w in (5e-9, 50e-9)}
    assert fps[5e-9] != fps[50e-9]
    with pytest.raises(ParameterError, match="lsp_pulse_width must be > 0"):
        TrainConfig(unit_cell="2pcm3t1c", lsp_pulse_width=0.0)


def _small(n: int = 200) -> Dataset:
    data = load_digits_split()
    return Dataset("digits-small", data.X_train[:n], data.y_train[:n], data.X_test, data.y_test)


def test_killed_unit_cell_run_resumes_to_the_same_result(tmp_path):
    data = _small()
    cfg = TrainConfig(epochs=2, forward="fast", backward="fast", update="fast", unit_cell="2pcm3t1c",
                      transfer_every=7, checkpoint_every=5, checkpoint_seconds=0,
                      layer=LayerConfig(r_wire=1.0))
    full = train(cfg, data, tmp_path / "full", progress=False)
    part = train(cfg, data, tmp_path / "cut", progress=False, stop_after=13)   # between transfers
    assert part["stopped"]
    with np.load(tmp_path / "cut" / "checkpoint.npz") as z:    # as written before: the transfers in the meta
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    assert meta["transfer_keys"] and "transfers" not in meta
    cols = [arrays.pop(f"transfer_{k}").tolist() for k in meta["transfer_keys"]]
    meta["transfers"] = [dict(zip(meta.pop("transfer_keys"), row)) for row in zip(*cols)]
    np.savez(tmp_path / "cut" / "checkpoint.npz", meta=json.dumps(meta), **arrays)
    resumed = train(cfg, data, tmp_path / "cut", progress=False)
    assert resumed["history"] == full["history"]
    assert resumed["transfers"] == full["transfers"] and len(full["transfers"]) == 40 // 7
    a, b = np.load(tmp_path / "full" / "checkpoint.npz"), np.load(tmp_path / "cut" / "checkpoint.npz")
    for key in ("gp0", "gm0", "vc0", "vc1", "polarity0", "transfers1"):
        assert np.array_equal(a[key], b[key])
    assert int(a["transfers0"]) == 5 and list(a["polarity0"]) == [-1]
    assert (tmp_path / "cut" / "netlists" / "layer0_tile0_3t1c.cir").exists()


def test_short_unit_cell_training_learns_digits(tmp_path):
    data = load_digits_split()
    cfg = TrainConfig(epochs=1, forward="fast", backward="fast", update="fast", unit_cell="2pcm3t1c",
                      transfer_every=20, layer=LayerConfig(r_wire=1.0))
    m = train(cfg, data, tmp_path, progress=False)
    assert m["final"]["test_accuracy"] >= 0.7          # chance is 0.1; measured 0.861 (seed 0)
    assert len(m["transfers"]) == 144 // 20
    assert all(u == 0 for t in m["transfers"] for u in t["unconverged"])


def test_unit_cell_reads_both_arrays_through_the_calibrated_model(rng, tmp_path):
    """The cheap IR model reads the PCM pair and the 3T1C array of every tile: close to the exact
    solve, much closer than no IR model; without a calibration the backend is refused."""
    from cosim.read.irmodel import Calibration, IRModel
    path = Calibration(IRModel.physical()).save(tmp_path / "calibration.json")
    layer = _layer(rng, 40, 12, r_wire=2.0, adc_bits=None, calibration=Calibration.load(path))
    _scramble(layer, rng)
    x = rng.uniform(0, 1, (5, 40))
    exact, cheap, ideal = (layer.forward(x, b) for b in ("fast", "calibrated", "ideal"))
    assert np.abs(cheap - exact).max() < 0.05 * np.abs(ideal - exact).max()
    d = rng.uniform(-1, 1, (5, 12))
    assert np.abs(layer.backward(d, "calibrated") - layer.backward(d, "fast")).max() < \
        0.05 * np.abs(layer.backward(d, "ideal") - layer.backward(d, "fast")).max()
    with pytest.raises(ParameterError, match="calibration"):
        _layer(rng, 6, 3).forward(np.ones((1, 6)), "calibrated")


def test_unit_cell_reads_both_arrays_through_the_read_chain(rng, engine):
    """With LayerConfig.periphery both arrays go through DACs, integrators and ADCs: the fast
    chain reads converge on the exact reads as the converters get finer (what is left is
    quantisation), and ngspice reads of both arrays give the fast chain's codes within 1 LSB."""
    from dataclasses import replace as dc_replace

    from netlists.readchain import PeripheryConfig
    from models.adc import QuantizerParams
    from models.dac import DacParams
    pc8 = PeripheryConfig(dac=DacParams(encoding="pwm", bits=8), exact_corners=False)
    pc12 = dc_replace(pc8, dac=DacParams(encoding="pwm", bits=10), adc=QuantizerParams(bits=12))
    layers = [_layer(rng, 12, 4, r_wire=1.0, **kw) for kw in ({}, {"periphery": pc8, "engine": engine},
                                                               {"periphery": pc12})]
    _scramble(layers[0], rng)
    for other in layers[1:]:
        for a, b in zip(layers[0].tiles, other.tiles):
            b.g_plus, b.g_minus, b.vc = a.g_plus, a.g_minus, a.vc
            b.changed()
    x, d = rng.uniform(-1, 1, (3, 12)), rng.uniform(-1, 1, (3, 4))
    for read in (lambda lay, b: lay.forward(x, b), lambda lay, b: lay.backward(d, b)):
        ref = read(layers[0], "fast")
        e8, e12 = (np.abs(read(lay, "fast") - ref).max() / np.abs(ref).max() for lay in layers[1:])
        assert e12 < 0.01 and e12 < e8 / 4, (e8, e12)
    lay, t = layers[1], layers[1].tiles[0]
    xn = lay.augment(x[:1]) / np.abs(lay.augment(x[:1])).max()
    chains = [(t.read_chain(lay.cfg, engine), xn),
              (t.lsp_read_chain(lay.cfg, lay.lsp, lay.g_shared, engine), xn)]
    for chain, u in chains:
        fast, spice = (chain.read_values(u, backend=b).adc_codes for b in ("fast", "spice"))
        assert np.abs(fast - spice).max() <= 1


def test_unit_cells_3t1c_chain_is_sized_for_its_reference_offset(rng):
    """Every 3T1C cell and its reference sit near g_shared, so with inputs of one sign (sigmoid
    activations) each column carries a systematic charge that full_scale must not discount: the
    3T1C chain stays off its rails and its digital difference to the reference lines follows the
    exact one (with the offset discounted like a rare worst case it railed: every code 0)."""
    from netlists.readchain import PeripheryConfig
    from models.dac import DacParams
    pc = PeripheryConfig(dac=DacParams(encoding="pwm", bits=8), full_scale=0.3, exact_corners=False)
    layer = _layer(rng, 32, 10, r_wire=1.0, periphery=pc)
    _scramble(layer, rng)
    t = layer.tiles[0]
    x = np.clip(rng.normal(0.7, 0.05, (4, 33)), 0, 1)         # 32 inputs and the bias row
    x /= x.max(axis=1, keepdims=True)
    r = t.lsp_read_chain(layer.cfg, layer.lsp, layer.g_shared).read_values(x, backend="fast")
    exact = t.lsp_crossbar(layer.cfg, layer.lsp, layer.g_shared).read(x * layer.lsp.v_read, backend="fast")
    got = r.decoded
    assert r.adc_codes.min() > 0 and r.adc_codes.max() < layer.cfg.periphery.adc.n_codes - 1
    assert np.abs(got - exact).max() < 0.3 * np.abs(exact).max()


def test_the_3t1c_reference_sits_beside_each_cell_so_ir_drop_cannot_fake_a_weight(rng):
    """An all-reference 3T1C array (every LSP weight exactly 0) at 256 rows and 1 ohm per
    segment reads nearly 0: the reference cell beside each cell sees the same row voltages. (One
    reference column for the whole array read 2.5x the PCM pair's signal here: the cause of the
    unit cell's failure at MNIST scale.)"""
    cfg = LayerConfig(r_wire=1.0, adc_bits=None, max_rows=256, max_cols=256,
                      mapping=mapping_for(get_device("pcm"), LayerConfig().mapping.w_max))
    layer = UnitCellLayer(rng.uniform(-0.3, 0.3, (255, 64)), cfg, UnitCellSpec())
    t = layer.tiles[0]
    V, _ = layer.drive(layer.augment(rng.uniform(0, 1, (8, 255))), False)
    k = layer.lsp.v_read / cfg.v_read
    lsp = t.lsp_crossbar(cfg, layer.lsp, layer.g_shared).read(V * k, backend="fast") / k
    msp = layer.spec.gain_f * t.crossbar(cfg).read(V, backend="fast")
    assert np.sqrt(np.mean(lsp ** 2)) < 0.05 * np.sqrt(np.mean(msp ** 2))

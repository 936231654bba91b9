"""Stochastic pulse trains: the coincidence oracle (docs/physics.md, reference experiment 3)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cosim.write.pulses import QUADRANTS, pair_columns, pulse_trains
from models.errors import ParameterError


def test_expected_update_is_minus_lr_x_d(rng):
    x = rng.uniform(-1, 1, 6)
    d = rng.uniform(-0.3, 0.3, 4)
    lr, dw, bl = 0.01, 0.002, 20
    mean = np.zeros((6, 4))
    n = 4000
    for s in range(n):
        t = pulse_trains(x, d, lr=lr, dw_min=dw, bl=bl, rng=np.random.default_rng(s))
        mean += t.signed_counts() * dw
    mean /= n
    assert np.allclose(mean, -lr * np.outer(x, d), atol=4 * dw * np.sqrt(bl) / np.sqrt(n) + 1e-12)


def test_counts_are_binomial_and_each_cell_sees_one_quadrant(rng):
    x = np.array([0.8, -0.5, 0.0])
    d = np.array([0.4, -1.0])
    counts = []
    for s in range(3000):
        t = pulse_trains(x, d, lr=0.05, dw_min=0.01, bl=10, rng=np.random.default_rng(s))
        c = t.coincidences()
        # a cell only ever fires in the quadrant of its signs; the zero row never
        assert c[:, 2, :].sum() == 0
        for k, (sx, sd) in enumerate(QUADRANTS):
            for i in range(2):
                for j in range(2):
                    if (np.sign(x[i]), np.sign(d[j])) != (sx, sd):
                        assert c[k, i, j] == 0
        counts.append(c.sum(axis=0)[0, 0])
    k = 0.05 * 0.8 * 1.0 / (0.01 * 10)
    a = b = np.sqrt(k)
    p = (a * 0.8 / 0.8) * (b * 0.4 / 1.0)
    observed = np.bincount(counts, minlength=11)[:11]
    expected = stats.binom.pmf(np.arange(11), 10, p) * len(counts)
    keep = expected > 5
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert chi2 < stats.chi2.ppf(0.999, keep.sum() - 1)


def test_probabilities_are_clipped_and_reported():
    t = pulse_trains(np.ones(3), np.ones(2), lr=10.0, dw_min=1e-3, bl=5, rng=np.random.default_rng(0))
    assert t.gain < 1 and t.rows.any()
    with pytest.raises(ParameterError, match="bl"):
        pulse_trains(np.ones(3), np.ones(2), lr=0.1, dw_min=1e-3, bl=0, rng=np.random.default_rng(0))


def test_pair_columns_turn_every_coincidence_into_a_set(rng):
    x, d = rng.uniform(-1, 1, 5), rng.uniform(-1, 1, 3)
    t = pulse_trains(x, d, lr=0.05, dw_min=0.01, bl=8, rng=rng)
    rows, pcols = pair_columns(t)
    up = np.einsum("pti,ptj->ij", rows.astype(int), pcols[:, :, 0::2].astype(int))
    down = np.einsum("pti,ptj->ij", rows.astype(int), pcols[:, :, 1::2].astype(int))
    assert np.array_equal(up - down, t.signed_counts())


def test_batched_coincidences_are_the_per_sample_trains():
    """A mini-batch's counts in one product: the same draws, counts and polarities as
    :func:`pulse_trains` sample by sample (a sample with a zero update draws nothing)."""
    from cosim.write.pulses import coincidence_counts
    from models.errors import ShapeError

    rng = np.random.default_rng(3)
    x, d = rng.uniform(-1, 1, (5, 9)), rng.uniform(-0.5, 0.5, (5, 4))
    x[2] = 0.0
    kw = dict(lr=0.05, dw_min=0.003, bl=7)
    one = np.random.default_rng(11)
    ref, ref_pol = [], []
    for b in range(5):
        t = pulse_trains(x[b], d[b], rng=one, **kw)
        ref.extend(t.coincidences())
        ref_pol.extend(t.polarity)
    counts, pol = coincidence_counts(x, d, rng=np.random.default_rng(11), **kw)
    assert counts.shape == (20, 9, 4) and counts.dtype == np.float32
    assert np.array_equal(counts, np.array(ref)) and np.array_equal(pol, ref_pol)
    assert not counts[8:12].any() and counts.max() <= kw["bl"]
    with pytest.raises(ShapeError, match="samples"):
        coincidence_counts(x, d[:3], rng=rng, **kw)
    with pytest.raises(ParameterError, match="finite"):
        coincidence_counts(np.full((1, 9), np.nan), d[:1], rng=rng, **kw)


def test_batched_draws_keep_the_per_sample_order():
    """The mini-batch is drawn at once, with the numbers of the per-sample draws it replaced:
    each live sample's row bits (bl, n_rows), then its column bits, in turn (so seeded runs from
    before give the same updates), and the probabilities of update management."""
    from cosim.write.pulses import pulse_trains_batch

    rng = np.random.default_rng(7)
    x, d = rng.uniform(-1, 1, (6, 13)), rng.uniform(-0.5, 0.5, (6, 5))
    x[1], d[4] = 0.0, 0.0
    x[3] *= 40.0                                   # lr |x| |d| / dw_min > bl: clipped gain
    lr, dw_min, bl = 0.05, 0.003, 6
    got = pulse_trains_batch(x, d, lr=lr, dw_min=dw_min, bl=bl, rng=np.random.default_rng(2))
    ref = np.random.default_rng(2)
    for s in range(6):
        xm, dm = np.abs(x[s]).max(), np.abs(d[s]).max()
        if xm == 0 or dm == 0:
            assert not got[s].rows.any() and not got[s].cols.any() and got[s].gain == 1.0
            continue
        k = lr * xm * dm / (dw_min * bl)
        a = b = np.sqrt(k)
        if a > 1:
            a, b = 1.0, min(1.0, k)
        rbits = ref.random((bl, 13)) < a * np.abs(x[s]) / xm
        cbits = ref.random((bl, 5)) < b * np.abs(d[s]) / dm
        assert np.array_equal(got[s].rows.any(axis=0), rbits & (x[s] != 0))
        assert np.array_equal(got[s].cols.any(axis=0), cbits & (d[s] != 0))
        assert got[s].gain == a * b / k
    assert got[3].gain < 1.0


def test_coincidence_masks_hold_the_counts():
    """Each line's slots as the bits of one integer: the popcounts of row AND column masks are
    the batched counts, from the same draws."""
    from cosim.write.pulses import coincidence_counts, coincidence_masks

    rng = np.random.default_rng(4)
    x, d = rng.uniform(-1, 1, (4, 11)), rng.uniform(-0.5, 0.5, (4, 5))
    x[1] = 0.0
    kw = dict(lr=0.05, dw_min=0.003, bl=10)
    counts, pol = coincidence_counts(x, d, rng=np.random.default_rng(5), **kw)
    rm, cm, mpol = coincidence_masks(x, d, rng=np.random.default_rng(5), **kw)
    assert rm.shape == (16, 11) and cm.shape == (16, 5) and np.array_equal(mpol, pol)
    pop = np.vectorize(lambda v: bin(int(v)).count("1"))
    assert np.array_equal(pop(rm[:, :, None] & cm[:, None, :]), counts)
    with pytest.raises(ParameterError, match="1 to 16 slots"):
        coincidence_masks(x, d, rng=rng, lr=0.05, dw_min=0.003, bl=17)

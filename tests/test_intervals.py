"""Bootstrap intervals (grn_eval/intervals.py) and the weighted forms every replicate is computed with:
each weighted formula equals the metric on the explicitly resampled features; the intervals are seeded;
and their width agrees with the spread of the metric over independent draws."""

import numpy as np
import pytest

from grn_eval import intervals
from grn_eval.metrics.fid import frechet_terms, frechet_weighted, gaussian_stats
from grn_eval.metrics.kid import mmd2_unbiased, mmd2_weighted, polynomial_kernel

pytestmark = pytest.mark.filterwarnings("ignore:only .* samples for:RuntimeWarning")


def _sets(seed, n1=120, n2=90, d=16):
    rng = np.random.default_rng(seed)
    return np.abs(rng.standard_normal((n1, d))), np.abs(rng.standard_normal((n2, d)) + 0.2)


def _resample(x, c):
    return x[np.repeat(np.arange(len(x)), c.astype(int))]


def test_counts_are_seeded_resamples():
    c = intervals.counts(50, 7, seed=3, stream="fid:samples")
    assert c.shape == (7, 50) and (c.sum(1) == 50).all() and (c >= 0).all()
    assert (c == intervals.counts(50, 7, seed=3, stream="fid:samples")).all()
    assert (c != intervals.counts(50, 7, seed=4, stream="fid:samples")).any()
    assert (c != intervals.counts(50, 7, seed=3, stream="fid:reference")).any()


@pytest.mark.parametrize("d", [16, 300])  # N > d and N < d (rank-deficient covariances)
def test_weighted_frechet_equals_the_fid_of_the_resampled_features(d):
    x, y = _sets(0, d=d)
    w, v = intervals.counts(len(x), 4, 0, "x"), intervals.counts(len(y), 4, 0, "y")
    both = frechet_weighted(x, y, w, v)
    stats = frechet_weighted(x, None, w, mu2=y.mean(0), sigma2=np.cov(y, rowvar=False))
    for b in range(4):
        xb, yb = _resample(x, w[b]), _resample(y, v[b])
        want = frechet_terms(*gaussian_stats(xb), *gaussian_stats(yb)).total
        # the eigh route clips the null space of a rank-deficient S1; the weighted form works in the span
        assert both[b] == pytest.approx(want, rel=1e-9 if d < len(x) else 1e-6)
        assert stats[b] == pytest.approx(frechet_terms(*gaussian_stats(xb), *gaussian_stats(y)).total,
                                         rel=1e-9 if d < len(x) else 1e-6)
    assert frechet_weighted(x, y)[0] == pytest.approx(frechet_terms(*gaussian_stats(x), *gaussian_stats(y)).total,
                                                      rel=1e-9 if d < len(x) else 1e-6)


@pytest.mark.parametrize("d", [16, 300])
def test_the_span_and_feature_space_forms_agree(d):
    """Both exact forms of the weighted Fréchet distance, on both sides of n = d (auto picks the span at
    n <= d, the feature space above: tested here whichever auto would take)."""
    x, y = _sets(2, d=d)
    w, v = intervals.counts(len(x), 3, 1, "x"), intervals.counts(len(y), 3, 1, "y")
    mu2, s2 = gaussian_stats(y)
    for args in ((x, y, w, v), (x, None, w, None, mu2, s2)):
        span, feat = frechet_weighted(*args, form="span"), frechet_weighted(*args, form="features")
        np.testing.assert_allclose(feat, span, rtol=1e-9 if d < len(x) else 1e-6)
    auto = frechet_weighted(x, y, w, v)
    assert (auto == frechet_weighted(x, y, w, v, form="features" if len(x) > d else "span")).all()
    with pytest.raises(ValueError, match="unknown form"):
        frechet_weighted(x, y, w, v, form="dense")


def test_weighted_mmd_equals_the_direct_formula_on_the_resampled_features():
    x, y = _sets(1)
    w, v = intervals.counts(len(x), 3, 1, "x"), intervals.counts(len(y), 3, 1, "y")
    got = mmd2_weighted(x, y, w, v)
    for b in range(3):
        xb, yb = _resample(x, w[b]), _resample(y, v[b])
        # O(N^2) by hand: every pair of distinct draws (a point drawn twice pairs with its copy)
        kxx, kyy, kxy = polynomial_kernel(xb, xb), polynomial_kernel(yb, yb), polynomial_kernel(xb, yb)
        m, n = len(xb), len(yb)
        want = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                - 2 * kxy.mean())
        assert got[b] == pytest.approx(want, rel=1e-10)
    ones = (np.ones((1, len(x))), np.ones((1, 90)))
    x2, y2 = x[:90], y  # equal sizes: the subset formula of KID on the whole sets
    assert mmd2_weighted(x2, y2, ones[1], ones[1])[0] == pytest.approx(
        mmd2_unbiased(polynomial_kernel(x2, x2), polynomial_kernel(x2, y2), polynomial_kernel(y2, y2)), rel=1e-10)


def test_interval_is_centred_on_the_estimate_and_refuses_non_finite_replicates():
    assert intervals.interval([1.0, 2.0, 3.0, 4.0, 5.0], level=0.5) == pytest.approx((2.0, 4.0))
    assert intervals.interval([11.0, 12.0, 13.0, 14.0, 15.0], estimate=3.0, level=0.5) == pytest.approx((2.0, 4.0))
    assert intervals.interval([1.0, np.nan]) is None and intervals.interval([]) is None
    assert intervals.mean_interval([0, 1, 1, 0], 0, 0, "p") is None


def _spread_ratio(stat, draws: int, n: int, d: int, replicates: int) -> float:
    """Mean interval width over independent draws / the width 2 * 1.96 * sd that their spread implies."""
    values, widths = [], []
    for i in range(draws):
        rng = np.random.default_rng(1000 + i)
        x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d)) * 1.1 + 0.2
        value, lo, hi = stat(x, y, i, replicates)
        assert lo <= value <= hi
        values.append(value)
        widths.append(hi - lo)
    return float(np.mean(widths) / (2 * 1.96 * np.std(values, ddof=1)))


def _fid(x, y, seed, b):
    value = frechet_terms(*gaussian_stats(x), *gaussian_stats(y)).total
    w, v = intervals.counts(len(x), b, seed, "x"), intervals.counts(len(y), b, seed, "y")
    return (value, *intervals.interval(frechet_weighted(x, y, w, v), value))


def _mean_norm_below(x, y, seed, b):  # a mean of per-sample 0/1, as precision and coverage are
    inside = (np.linalg.norm(x, axis=1) < np.sqrt(x.shape[1])).astype(float)
    return (inside.mean(), *intervals.mean_interval(inside, b, seed, "p"))


def test_interval_width_matches_the_spread_over_independent_draws():
    # measured: FID 0.99 at d = 8, N = 400 (here 6 / 300 for time); the mean of per-sample 0/1 about 1.0
    assert 0.7 <= _spread_ratio(_fid, draws=20, n=300, d=6, replicates=100) <= 1.4
    assert 0.7 <= _spread_ratio(_mean_norm_below, draws=40, n=250, d=8, replicates=200) <= 1.4


def test_tables_show_the_interval_after_the_number():
    from grn_eval.tables import _fmt

    assert _fmt(57.5, 0.4, 3, 1, 56.2, 58.9) == "57.5 ± 0.4 [56.2, 58.9]"
    assert _fmt(57.5, 0.0, 1, 2, 56.2, 58.9) == "57.50 [56.20, 58.90]"
    assert _fmt(57.5, 0.0, 1, 2, float("nan"), None) == "57.50"

import warnings

import numpy as np
import pytest
import scipy.linalg

from grn_eval.metrics.fid import METHODS, frechet_distance, frechet_terms, gaussian_stats


@pytest.mark.parametrize("method", METHODS)
def test_closed_form_commuting_covariances(method):
    # diagonal covariances commute: d^2 = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    want = 5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method=method) == pytest.approx(want, rel=1e-12)


def test_closed_form_scaled_covariance():
    # S2 = c^2 S1 -> Tr sqrt(S1 S2) = c Tr S1 -> d^2 = (1 - c)^2 Tr S1
    rng = np.random.default_rng(0)
    m = rng.standard_normal((6, 6))
    s1 = m @ m.T + np.eye(6)
    t = frechet_terms(np.zeros(6), s1, np.zeros(6), 9 * s1)
    assert t.mean_term == 0 and t.cov_term == pytest.approx(4 * np.trace(s1), rel=1e-12)


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(1)
    mu, s = gaussian_stats(rng.standard_normal((500, 20)))
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9


def test_three_methods_agree_at_feature_scale():
    rng = np.random.default_rng(2)
    mix = rng.standard_normal((256, 256)) / 16
    a = gaussian_stats(np.abs(rng.standard_normal((1000, 256)) @ mix))
    b = gaussian_stats(np.abs(rng.standard_normal((1000, 256)) @ (mix + 0.1 * rng.standard_normal((256, 256)) / 16)))
    values = [frechet_distance(*a, *b, method=m) for m in METHODS]
    assert max(values) - min(values) <= 1e-8 * abs(values[0])


def test_eigh_trace_matches_sqrtm_trace_exactly_on_psd():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 30)), rng.standard_normal((40, 30))
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    ref = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert frechet_terms(np.zeros(30), s1, np.zeros(30), s2).cov_term == pytest.approx(
        np.trace(s1) + np.trace(s2) - 2 * ref, rel=1e-9)


def test_non_finite_statistics_raise():
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.array([np.nan, 0]), np.eye(2), np.zeros(2), np.eye(2))


def test_few_samples_warn_loudly():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        gaussian_stats(np.random.default_rng(0).standard_normal((10, 20)))
    assert any("rank-deficient" in str(x.message) for x in w)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="do not match"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_torch_form_equals_numpy_form():
    from grn_eval.metrics.fid import frechet_distance_torch

    rng = np.random.default_rng(5)
    a = gaussian_stats(rng.standard_normal((300, 40)))
    b = gaussian_stats(rng.standard_normal((300, 40)) * 1.3 + 0.2)
    assert frechet_distance_torch(*a, *b) == pytest.approx(frechet_distance(*a, *b), rel=1e-10)
    few = gaussian_stats_quiet(rng.standard_normal((20, 40))), gaussian_stats_quiet(rng.standard_normal((20, 40)))
    assert frechet_distance_torch(*few[0], *few[1]) == pytest.approx(frechet_distance(*few[0], *few[1]), rel=1e-10)


def test_cholesky_form_runs_when_a_covariance_is_positive_definite_and_says_so():
    rng = np.random.default_rng(7)
    mix = rng.standard_normal((64, 64)) / 8
    a = gaussian_stats(np.abs(rng.standard_normal((400, 64)) @ mix))
    b = gaussian_stats(np.abs(rng.standard_normal((400, 64)) @ (mix + 0.1 * rng.standard_normal((64, 64)) / 8)))
    t = frechet_terms(*a, *b)
    assert t.method == "cholesky"
    assert t.total == pytest.approx(frechet_distance(*a, *b, method="eigh"), rel=1e-10)
    assert t.total == pytest.approx(frechet_distance(*a, *b, method="sqrtm"), rel=1e-9)


def test_fewer_samples_than_dimensions_factor_the_lower_rank_side():
    """Covariances of rank 29 < 64: the pivoted Cholesky factor has 29 columns, the eigenvalue problem is
    29 x 29, and the value equals the eigh form and the exact span form."""
    from grn_eval.metrics.fid import _pivoted_factor, frechet_weighted

    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((30, 64)), rng.standard_normal((30, 64)) + 1
    a, b = gaussian_stats_quiet(x), gaussian_stats_quiet(y)
    order, low = _pivoted_factor(a[1])
    assert low.shape == (64, 29) and np.allclose(low @ low.T, a[1][np.ix_(order, order)], atol=1e-12)
    t = frechet_terms(*a, *b)
    assert t.method == "cholesky"
    assert t.total == pytest.approx(frechet_weighted(x, y)[0], rel=1e-12)
    assert t.total == pytest.approx(frechet_distance(*a, *b, method="eigh"), rel=1e-9)
    c = gaussian_stats(rng.standard_normal((500, 64)))  # one side of full rank: the other one is factorised
    assert frechet_distance(*a, *c) == pytest.approx(frechet_distance(*a, *c, method="eigh"), rel=1e-9)


def gaussian_stats_quiet(x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return gaussian_stats(x)


def test_with_fewer_samples_than_dimensions_the_forms_equal_the_exact_span_form():
    """N < d: the null space of A S2 A (or L^T S1 L) is rounding noise; counted as 0 it no longer adds the
    square roots of +-d eps values, and the closed forms equal the span (Gram / SVD) form to 1e-13."""
    from grn_eval.metrics.fid import frechet_weighted

    rng = np.random.default_rng(9)
    mix = rng.standard_normal((256, 256)) / 16
    x, y = np.abs(rng.standard_normal((60, 256)) @ mix), np.abs(rng.standard_normal((50, 256)) @ mix) + 0.01
    z = np.abs(rng.standard_normal((1000, 256)) @ mix)
    for other in (y, z):
        exact = frechet_weighted(x, other)[0]
        a, b = gaussian_stats_quiet(x), gaussian_stats_quiet(other)
        for method in ("cholesky", "eigh"):
            assert frechet_distance(*a, *b, method=method) == pytest.approx(exact, rel=1e-13)


def test_statistics_merged_block_by_block_equal_numpy_and_do_not_depend_on_the_split():
    """gaussian_stats accumulates blocks of MOMENT_BLOCK rows; the runner streams its feature blocks through
    the same merge, so both give the same bits; either equals numpy's cov to rounding."""
    from grn_eval.metrics.fid import MOMENT_BLOCK, GaussianMoments, accumulate

    rng = np.random.default_rng(5)
    x = np.abs(rng.standard_normal((2 * MOMENT_BLOCK + 37, 24))) * 3 + 10  # a large mean: the centring matters
    mu, sigma = gaussian_stats(x)
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-11, atol=1e-13)
    blocks = [x[s : s + MOMENT_BLOCK] for s in range(0, len(x), MOMENT_BLOCK)]
    streamed = accumulate(iter(blocks)).stats()
    assert (streamed[0] == mu).all() and (streamed[1] == sigma).all()
    one = GaussianMoments.of(x)  # another split: equal to rounding, not bit for bit
    np.testing.assert_allclose(one.stats()[1], sigma, rtol=1e-11, atol=1e-13)
    assert one.merge(None) is one

"""Known answers that kill the mutants `nox -s mutants` found alive or untested in the numbers (fid, kid, prc,
density_coverage, intervals, gate): hand-computed values, brute-force numpy re-derivations, invariants, the
float64 promise (float32 or integer inputs give the float64 numbers) and the metric rows built from a stub
context. Each test is small: the whole file runs in a few seconds."""

import json
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from grn.errors import UserError
from grn_eval import gate, intervals
from grn_eval.metrics import density_coverage as dc_mod
from grn_eval.metrics import fid, kid, prc
from grn_eval.metrics.density_coverage import density_coverage
from grn_eval.metrics.kid import mmd2_weighted, polynomial_kernel
from grn_eval.metrics.prc import adm_sq_distances, precision_recall

pytestmark = pytest.mark.filterwarnings("ignore:only .* samples for:RuntimeWarning")


def _rng_features(seed, n, d, shift=0.0):
    return np.abs(np.random.default_rng(seed).standard_normal((n, d))) + shift


# ---------------------------------------------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------------------------------------------


def test_polynomial_kernel_by_hand():
    x, y = np.array([[1.0, 2.0]]), np.array([[3.0, -1.0], [0.0, 0.0]])
    # (x.y / d + 1)^3: x.y = 1 -> 1.5^3; x.0 = 0 -> 1
    assert polynomial_kernel(x, y) == pytest.approx(np.array([[3.375, 1.0]]))


def test_kid_is_float64_and_seeded_with_its_defaults():
    a32 = _rng_features(0, 40, 8).astype(np.float32)
    b32 = _rng_features(1, 30, 8, 0.3).astype(np.float32)
    a64, b64 = a32.astype(np.float64), b32.astype(np.float64)
    # float32 input: the arithmetic is still float64, bit for bit
    assert kid.kid(a32, b32, subsets=3, subset_size=20, seed=1) == kid.kid(a64, b64, subsets=3, subset_size=20, seed=1)
    assert kid.kid(a32, b32, 2, 10)["kid_mean"] == kid.kid(a64, b64, 2, 10)["kid_mean"]
    # defaults: 100 subsets, seed 0, the subset capped at the smaller side (either one)
    res = kid.kid(a64, b64)
    assert res == kid.kid(a64, b64, 100, 1000, 0)
    assert set(res) == {"kid_mean", "kid_std", "subsets", "subset_size"}
    assert res["subsets"] == 100 and res["subset_size"] == 30
    assert kid.kid(b64, a64, subsets=2)["subset_size"] == 30
    # by hand: the same RandomState draws, the unbiased MMD^2 per subset, mean and (population) std
    rng, vals = np.random.RandomState(5), []
    for _ in range(4):
        x, y = a64[rng.choice(40, 12, replace=False)], b64[rng.choice(30, 12, replace=False)]
        kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
        vals.append((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (12 * 11) - 2 * kxy.mean())
    got = kid.kid(a64, b64, subsets=4, subset_size=12, seed=5)
    assert got["kid_mean"] == pytest.approx(np.mean(vals), rel=1e-12)
    assert got["kid_std"] == pytest.approx(np.std(vals), rel=1e-10)


def test_kid_default_subset_size_is_1000_and_two_samples_suffice():
    a, b = _rng_features(2, 1001, 2), _rng_features(3, 1001, 2)
    assert kid.kid(a, b, subsets=1)["subset_size"] == 1000
    two = kid.kid(a[:2], b[:2], subsets=1)  # the smallest allowed: m (m - 1) = 2 distinct pairs
    assert two["subset_size"] == 2 and math.isfinite(two["kid_mean"])
    with pytest.raises(UserError, match="at least 2 samples"):
        kid.kid(a[:1], b, subsets=1)


def test_weighted_mmd_is_float64():
    x, y = _rng_features(4, 20, 6).astype(np.float32), _rng_features(5, 15, 6).astype(np.float32)
    w, v = intervals.counts(20, 3, 0, "x"), intervals.counts(15, 3, 0, "y")
    want = mmd2_weighted(x.astype(np.float64), y.astype(np.float64), w, v)
    assert (mmd2_weighted(x, y, w, v) == want).all()


class _Rows:
    """A stub context's `row`: records what a metric reports."""

    def __call__(self, name, value, protocol, extra=None, ci=None, reason=None):
        return {"name": name, "value": value, "protocol": protocol, "extra": extra, "ci": ci, "reason": reason}


def _ctx(key, options, inc=None, seed=3, **more):
    more.setdefault("samples", list(range(len(inc.features))) if inc else [])
    return SimpleNamespace(options=options, seed=seed, given=more.pop("given", {}), spec=SimpleNamespace(key=key),
                           device="cpu", row=_Rows(), inception=lambda protocol, layer="pool": inc,
                           suite=SimpleNamespace(path="s.yaml"), **more)


def test_kid_row_and_its_interval_from_a_stub_context():
    a, b = _rng_features(6, 24, 5), _rng_features(7, 20, 5, 0.2)
    inc = SimpleNamespace(features=a, reference=b, protocol={"net": "x"})
    ctx = _ctx("kid", {"protocol": "p", "subsets": 4, "subset_size": 10, "bootstrap": 6}, inc)
    (row,) = kid._kid(ctx)
    want = kid.kid(a, b, 4, 10, 3)
    w, v = intervals.counts(24, 6, 3, "kid:samples"), intervals.counts(20, 6, 3, "kid:reference")
    ci = intervals.interval(mmd2_weighted(a, b, w, v), want["kid_mean"])
    assert row == {"name": "kid", "value": want["kid_mean"], "reason": None, "ci": ci,
                   "protocol": {"net": "x", "kernel": "cubic polynomial", "subsets": 4, "subset_size": 10},
                   "extra": {"kid_std": want["kid_std"]}}
    assert kid.kid_interval(ctx, want["kid_mean"], a, b) == ci
    ctx.options["bootstrap"] = 1  # one replicate is an interval of width 0, not None
    lo, hi = kid.kid_interval(ctx, 0.0, a, b)
    assert lo == hi
    ctx.options["bootstrap"] = 0
    assert kid.kid_interval(ctx, 0.0, a, b) is None and kid._kid(ctx)[0]["ci"] is None
    # an explicit subset larger than a side is refused; equal to the smaller side is allowed
    ctx.given = {"subset_size": 21}
    with pytest.raises(UserError, match="21 is larger than the 20 images per side"):
        kid._kid(ctx)
    ctx.given = {"subset_size": 20}
    assert kid._kid(ctx)[0]["value"] is not None
    none = kid._kid(_ctx("kid", ctx.options, SimpleNamespace(features=a, reference=None, protocol={"net": "x"})))
    assert none == [{"name": "kid", "value": None, "protocol": {"net": "x"}, "extra": None, "ci": None,
                     "reason": "not available: kid needs reference features, not only statistics"}]


# ---------------------------------------------------------------------------------------------------------------
# precision / recall and density / coverage against a brute-force numpy reading
# ---------------------------------------------------------------------------------------------------------------


def _brute(real, fake, k):
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=2)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=2)
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=2)
    r_rad, f_rad = np.sort(d_rr, 1)[:, k], np.sort(d_ff, 1)[:, k]
    fake_inside = (d_rf <= r_rad[:, None]).any(0).astype(float)
    real_inside = (d_rf <= f_rad[None]).any(1).astype(float)
    holding = (d_rf < r_rad[:, None]).sum(0)
    covered = (d_rf < r_rad[:, None]).any(1).astype(float)
    return fake_inside, real_inside, holding / k, covered


def test_knn_metrics_equal_a_brute_force_reading_per_item():
    real, fake = _rng_features(8, 23, 3), _rng_features(9, 17, 3, 0.3)
    fi, ri, fd, cov = _brute(real, fake, 2)
    for block in (4096, 5):
        pr = precision_recall(real, fake, 2, block=block, per_item=True)
        assert (pr["fake_inside"] == fi).all() and (pr["real_inside"] == ri).all()
        assert pr["precision"] == pytest.approx(fi.mean()) and pr["recall"] == pytest.approx(ri.mean())
        dcv = density_coverage(real, fake, 2, block=block, per_item=True)
        assert dcv["fake_density"].dtype == np.float64 and (dcv["fake_density"] == fd).all()
        assert (dcv["real_covered"] == cov).all()
        assert dcv["density"] == pytest.approx(fd.mean()) and dcv["coverage"] == pytest.approx(cov.mean())
    # defaults: k = 3 and k = 5, nothing per item, no `distances` key for float64
    assert precision_recall(real, fake) == precision_recall(real, fake, 3)
    assert set(precision_recall(real, fake)) == {"precision", "recall", "k"}
    assert precision_recall(real, fake)["k"] == 3
    assert density_coverage(real, fake) == density_coverage(real, fake, 5)
    assert set(density_coverage(real, fake)) == {"density", "coverage", "k"}


def test_knn_metrics_take_integer_features_as_float64():
    real = np.array([[0], [1], [2], [3], [4]])
    fake = np.array([[0], [2], [10], [11]])
    assert precision_recall(real, fake, k=1) == precision_recall(real.astype(float), fake.astype(float), k=1)
    assert density_coverage(real, fake, k=1) == density_coverage(real.astype(float), fake.astype(float), k=1)
    one = density_coverage(real, fake[:1], k=1)  # one generated sample is enough
    assert one["density"] == 1.0 and one["coverage"] == 0.2
    with pytest.raises(UserError, match="more than 3 samples per side"):
        precision_recall(real, fake[:3], k=3)  # exactly k samples on one side: refused, not a kthvalue error
    assert prc.knn_need({"k": 4}) == (5, "k = 4 nearest neighbours need k + 1 points per side")


def test_adm_float16_distances():
    # integers: every float16 step is exact, so the ADM distances are the exact squared distances
    real = np.array([[0, 0], [1, 0], [0, 2], [3, 1], [2, 2], [4, 4]], dtype=float)
    fake = np.array([[1, 1], [5, 5], [0, 1], [2, 0], [9, 9]], dtype=float)
    exact = ((real[:, None] - fake[None]) ** 2).sum(2)
    got = adm_sq_distances(torch.from_numpy(real), torch.from_numpy(fake))
    assert got.dtype == torch.float32 and (got.numpy() == exact).all()
    # float16 overflow (|u|^2 = 180000): the block falls back to float32, still exact here
    big = real * 300
    assert (adm_sq_distances(torch.from_numpy(big), torch.from_numpy(big)).numpy()
            == ((big[:, None] - big[None]) ** 2).sum(2)).all()
    # non-integers: each operation rounded to float16, as numpy's float16 arithmetic
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((7, 5)), rng.standard_normal((6, 5))
    h = np.float16
    u16, v16 = u.astype(h).astype(np.float32), v.astype(h).astype(np.float32)
    nu = (u16 * u16).astype(h).astype(np.float32).sum(1).astype(h).astype(np.float32)
    nv = (v16 * v16).astype(h).astype(np.float32).sum(1).astype(h).astype(np.float32)
    dot = (u16 @ v16.T).astype(h).astype(np.float32)
    want = ((nu[:, None] - (2 * dot).astype(h).astype(np.float32)).astype(h).astype(np.float32) + nv[None])
    want = np.maximum(want.astype(h).astype(np.float32), 0)
    np.testing.assert_array_equal(adm_sq_distances(torch.from_numpy(u), torch.from_numpy(v)).numpy(), want)


def test_adm_precision_recall_equals_float64_on_exact_inputs(monkeypatch):
    real = np.array([[0, 0], [1, 0], [0, 2], [3, 1], [2, 2], [4, 4], [1, 3]], dtype=float)
    fake = np.array([[1, 1], [5, 5], [0, 1], [2, 0], [9, 9], [3, 3]], dtype=float)
    want = precision_recall(real, fake, 2, per_item=True)
    for block in (10_000, 4, 3):  # the evaluator's blocks, and blocks smaller than the sets
        monkeypatch.setattr(prc, "ADM_BLOCK", block)
        got = precision_recall(real, fake, 2, per_item=True, distances="adm-float16")
        assert got["distances"] == "adm-float16" and got["k"] == 2
        assert got["precision"] == want["precision"] and got["recall"] == want["recall"]
        assert (got["fake_inside"] == want["fake_inside"]).all() and (got["real_inside"] == want["real_inside"]).all()
    with pytest.raises(ValueError, match="unknown distances"):
        precision_recall(real, fake, distances="float16")


def test_knn_rows_from_a_stub_context():
    real, fake = _rng_features(10, 30, 4), _rng_features(11, 25, 4, 0.2)
    inc = SimpleNamespace(features=fake, reference=real, protocol={"net": "x"})
    ctx = _ctx("prc", {"protocol": "p", "k": 3, "bootstrap": 5, "distances": "float64"}, inc)
    rows = prc._prc(ctx)
    pr = precision_recall(real, fake, 3, per_item=True)
    assert [r["name"] for r in rows] == ["precision", "recall"]
    for r, item in zip(rows, ("fake_inside", "real_inside")):
        assert r["value"] == pr[r["name"]] and r["protocol"] == {"net": "x", "k": 3}
        assert r["ci"] == intervals.mean_interval(pr[item], 5, 3, f"prc:{r['name']}")
    ctx.options["distances"] = "adm-float16"
    assert prc._prc(ctx)[0]["protocol"] == {"net": "x", "k": 3, "distances": "adm-float16"}
    ctx = _ctx("density_coverage", {"protocol": "p", "k": 2, "bootstrap": 5}, inc)
    rows = dc_mod._density_coverage(ctx)
    dcv = density_coverage(real, fake, 2, per_item=True)
    assert [r["name"] for r in rows] == ["density", "coverage"]
    assert rows[0]["value"] == dcv["density"] and rows[1]["value"] == dcv["coverage"]
    assert rows[0]["ci"] == intervals.mean_interval(dcv["fake_density"], 5, 3, "density_coverage:density")
    assert rows[1]["ci"] == intervals.mean_interval(dcv["real_covered"], 5, 3, "density_coverage:coverage")
    none = prc._prc(_ctx("prc", ctx.options | {"distances": "float64"},
                         SimpleNamespace(features=fake, reference=None, protocol={"net": "x"})))
    assert none == [{"name": "prc", "value": None, "protocol": {"net": "x"}, "extra": None, "ci": None,
                     "reason": "not available: prc needs reference features, not only statistics"}]


# ---------------------------------------------------------------------------------------------------------------
# intervals
# ---------------------------------------------------------------------------------------------------------------


def test_mean_interval_by_hand_and_provenance():
    x = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.25])
    c = intervals.counts(6, 40, 7, "prc:precision")
    assert c.dtype == np.float64
    assert intervals.mean_interval(x, 40, 7, "prc:precision") == intervals.interval(c @ x / 6)
    assert intervals.mean_interval(list(x), 40, 7, "prc:precision") == intervals.interval(c @ x / 6)
    lo, hi = intervals.mean_interval(x, 1, 7, "p")  # one replicate: an interval of width 0
    assert lo == hi == pytest.approx(intervals.counts(6, 1, 7, "p")[0] @ x / 6)
    assert intervals.mean_interval(x, 0, 7, "p") is None
    assert intervals.provenance(200) == {"bootstrap": {"replicates": 200, "level": 0.95, "interval": "percentile"}}
    assert intervals.provenance(0) == {}


def test_interval_is_float64():
    v = (np.random.default_rng(3).standard_normal(11) * 1e3 + 1 / 3).astype(np.float32)
    assert intervals.interval(v, 0.1) == intervals.interval(v.astype(np.float64), 0.1)
    assert intervals.interval(v) == intervals.interval(v.astype(np.float64))


# ---------------------------------------------------------------------------------------------------------------
# FID
# ---------------------------------------------------------------------------------------------------------------


def _stats32(seed, n=40, d=6):
    x = _rng_features(seed, n, d)
    mu, sigma = fid.gaussian_stats(x)
    return x, mu.astype(np.float32), sigma.astype(np.float32)


def test_frechet_is_float64_for_float32_statistics():
    _, m1, s1 = _stats32(0)
    _, m2, s2 = _stats32(1)
    want = fid.frechet_distance(*(a.astype(np.float64) for a in (m1, s1, m2, s2)))
    for method in fid.METHODS:
        assert fid.frechet_distance(m1, s1, m2, s2, method) == fid.frechet_distance(
            *(a.astype(np.float64) for a in (m1, s1, m2, s2)), method)
    assert fid.frechet_distance(m1, s1, m2, s2) == want
    assert fid.frechet_distance_torch(m1, s1, m2, s2) == fid.frechet_distance_torch(
        *(a.astype(np.float64) for a in (m1, s1, m2, s2)))
    x32 = _rng_features(2, 30, 5).astype(np.float32)
    assert all((a == b).all() for a, b in zip(fid.gaussian_stats(x32), fid.gaussian_stats(x32.astype(np.float64))))
    assert fid.trace_sqrt_product(s1, s2) == fid.trace_sqrt(s1.astype(np.float64), s2.astype(np.float64))[0]


def test_each_method_names_itself_and_is_passed_on():
    _, m1, s1 = _stats32(0)
    _, m2, s2 = _stats32(1)
    for method in fid.METHODS:
        assert fid.trace_sqrt(s1, s2, method)[1] == method
        assert fid.frechet_terms(m1, s1, m2, s2, method).method == method
        assert fid.trace_sqrt_product(s1, s2, method) == fid.trace_sqrt(s1, s2, method)[0]
    # frechet_distance passes the method on: sqrtm of a singular product differs from the symmetric forms
    x, y = _rng_features(3, 4, 6), _rng_features(4, 4, 6)
    a, b = fid.gaussian_stats(x), fid.gaussian_stats(y)
    assert fid.frechet_distance(*a, *b, method="eigvals") == fid.frechet_terms(*a, *b, method="eigvals").total
    assert fid.frechet_distance(*a, *b, method="eigvals") != fid.frechet_distance(*a, *b)


def test_statistics_that_do_not_match_are_refused():
    with pytest.raises(UserError, match="do not match"):
        fid.frechet_terms(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))  # only the covariances differ
    with pytest.raises(UserError, match="do not match"):
        fid.frechet_terms(np.zeros(2), np.eye(3), np.zeros(2), np.eye(3))  # covariances not of mu's size
    for i, name in enumerate(("mu1", "sigma1", "mu2", "sigma2")):
        args = [np.zeros(2), np.eye(2), np.zeros(2), np.eye(2)]
        args[i] = args[i].copy()
        args[i].flat[0] = np.inf
        with pytest.raises(UserError, match=f"non-finite values in {name}:"):
            fid.frechet_terms(*args)


def test_covariance_size_limits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fid.check_covariance_size(2, 2)  # 2 vectors are enough; n = d does not warn
        mu, sigma = fid.gaussian_stats(np.array([[0.0, 1.0], [2.0, 5.0]]))
    assert (mu == [1.0, 3.0]).all() and (sigma == [[2.0, 4.0], [4.0, 8.0]]).all()
    with pytest.warns(RuntimeWarning, match="only 2 samples for 3-dimensional"):
        fid.check_covariance_size(2, 3)
    with pytest.raises(UserError, match="the feature vectors: 1 feature vector"):
        fid.check_covariance_size(1, 1)
    assert fid.covariance_need() == (2, "a covariance, and so a Fréchet distance, needs 2 feature vectors per side, "
                                        "and thousands for a meaningful number")


def test_gaussian_moments_by_hand(monkeypatch):
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 11.0]])
    m = fid.GaussianMoments.of(x)
    assert m.n == 3 and (m.mean == [2.0, 5.0]).all() and (m.scatter == [[8.0, 20.0], [20.0, 56.0]]).all()
    assert m.mean.dtype == np.float64 and fid.GaussianMoments.of(x.astype(np.int64)).mean.dtype == np.float64
    mean, cov = m.stats()
    assert (cov == [[4.0, 10.0], [10.0, 28.0]]).all()
    with pytest.raises(UserError):
        fid.GaussianMoments.of(x[:1]).stats()
    merged = fid.GaussianMoments.of(x[:1]).merge(fid.GaussianMoments.of(x[1:]))
    assert merged.n == 3 and (merged.mean == m.mean).all() and np.allclose(merged.scatter, m.scatter, rtol=1e-15)
    empty = fid.GaussianMoments(0, np.zeros(2), np.zeros((2, 2)))
    assert m.merge(empty) is m
    monkeypatch.setattr(fid, "MOMENT_BLOCK", 2)  # blocks of 2 rows: the merge is exercised
    assert np.allclose(fid.gaussian_stats(x)[1], cov, rtol=1e-14)


def test_root_trace_counts_rounding_eigenvalues_as_zero():
    assert fid._root_trace(np.diag([4.0, 9.0, 0.0])) == 5.0
    assert fid._root_trace(np.diag([4.0, 1e-20])) == 2.0  # 1e-20 < 2 eps 4: rounding, not sqrt(1e-20)
    assert fid._root_trace(np.diag([0.25, 0.25])) == 1.0  # a tolerance of 2 eps x 0.25, not 2 eps x 1
    assert fid._root_trace(np.diag([-1e-18, -1e-17])) == 0.0  # no positive eigenvalue: the tolerance is 0
    assert fid._root_trace(np.zeros((2, 2))) == 0.0


def test_torch_forms_choose_the_factor_by_positive_definiteness():
    rng = np.random.default_rng(12)
    full = fid.gaussian_stats(rng.standard_normal((60, 6)))[1]
    low = fid.gaussian_stats(rng.standard_normal((4, 6)))[1]  # rank 3
    t = torch.from_numpy
    assert fid._pd_factor_torch(t(low)) is None
    factor = fid._pd_factor_torch(t(full))
    assert factor is not None and torch.allclose(factor, torch.linalg.cholesky(t(full)), rtol=0, atol=0)
    assert fid._pd_factor_torch(t(np.diag([1.0, 1e-30]))) is None  # positive, but below rounding
    assert fid._pd_factor_torch(t(np.diag([4.0, 1e-10]))) is not None
    assert fid._pd_factor_torch(t(np.diag([1e-8, 1e-8]))) is not None  # small, but well conditioned
    for s1, s2 in ((full, full * 2), (low, full), (full, low), (low, low * 3)):
        want = fid.trace_sqrt(s1, s2, "eigh")[0]
        assert float(fid._trace_sqrt_torch(t(s1), t(s2))) == pytest.approx(want, rel=1e-10)
        assert float(fid._trace_sqrt_torch(t(s1), t(s2), fid._pd_factor_torch(t(s2)))) == pytest.approx(want, rel=1e-10)
    # a wrong factor given for S2 is used as given: it is S2's factor only when S2 is the factor side
    wrong = torch.eye(6, dtype=torch.float64)
    assert float(fid._trace_sqrt_torch(t(low), t(full), wrong)) == pytest.approx(fid._root_trace(low), rel=1e-10)
    assert float(fid._trace_sqrt_torch(t(low), t(low), None)) == pytest.approx(np.trace(low), rel=1e-10)


def test_weighted_frechet_in_small_chunks_and_both_forms(monkeypatch):
    x, y = _rng_features(13, 9, 4), _rng_features(14, 7, 4, 0.3)
    w, v = intervals.counts(9, 5, 0, "x"), intervals.counts(7, 5, 0, "y")
    mu2, s2 = fid.gaussian_stats(y)
    both, stat = fid.frechet_weighted(x, y, w, v), fid.frechet_weighted(x, None, w, mu2=mu2, sigma2=s2)
    span = fid.frechet_weighted(x, y, w, v, form="span"), fid.frechet_weighted(x, None, w, mu2=mu2, sigma2=s2,
                                                                                form="span")
    for b in range(5):
        xb, yb = (np.repeat(a, c.astype(int), 0) for a, c in ((x, w[b]), (y, v[b])))
        assert both[b] == pytest.approx(fid.frechet_distance(*fid.gaussian_stats(xb), *fid.gaussian_stats(yb)),
                                        rel=1e-9)
        assert stat[b] == pytest.approx(fid.frechet_distance(*fid.gaussian_stats(xb), mu2, s2), rel=1e-9)
    # unweighted: one copy, the FID of the sets (also in float32 and against the statistics)
    plain = fid.frechet_distance(*fid.gaussian_stats(x), mu2, s2)
    assert fid.frechet_weighted(x, y).shape == (1,)
    assert fid.frechet_weighted(x, y)[0] == pytest.approx(plain, rel=1e-10)
    assert fid.frechet_weighted(x.astype(np.float32), y)[0] == fid.frechet_weighted(x.astype(np.float32)
                                                                                    .astype(np.float64), y)[0]
    assert fid.frechet_weighted(x, None, mu2=mu2, sigma2=s2)[0] == pytest.approx(plain, rel=1e-10)
    assert fid.frechet_weighted(x, y, w)[0] == pytest.approx(fid.frechet_weighted(x, y, w, np.ones((5, 7)))[0],
                                                             rel=1e-12)
    assert fid.frechet_weighted(x, y, w, form="features")[2] == pytest.approx(fid.frechet_weighted(x, y, w)[2],
                                                                              rel=1e-9)
    monkeypatch.setattr(fid, "_CHUNK", 1)  # one copy per batch: the chunking does not change a number
    np.testing.assert_allclose(fid.frechet_weighted(x, y, w, v), both, rtol=1e-12)
    np.testing.assert_allclose(fid.frechet_weighted(x, None, w, mu2=mu2, sigma2=s2), stat, rtol=1e-12)
    monkeypatch.setattr(fid, "_CHUNK", 2 * 9 * 9)  # two copies per batch
    np.testing.assert_allclose(fid.frechet_weighted(x, y, w, v), both, rtol=1e-12)
    np.testing.assert_allclose(fid.frechet_weighted(x, None, w, mu2=mu2, sigma2=s2), stat, rtol=1e-12)
    for got, want in zip(span, (both, stat)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ValueError, match="5 weightings of x but 2 of y"):
        fid.frechet_weighted(x, y, w, v[:2], form="span")
    with pytest.raises(ValueError, match="5 weightings of x but 2 of y"):
        fid.frechet_weighted(x, y, w, v[:2], form="features")


def test_weighted_frechet_auto_form_at_the_boundary(monkeypatch):
    """n = d rows take the span form, n = d + 1 the feature space; against statistics only x's rows count."""
    calls = []
    real = fid._frechet_weighted_features
    monkeypatch.setattr(fid, "_frechet_weighted_features", lambda *a: calls.append(1) or real(*a))
    x4, y5 = _rng_features(15, 4, 4), _rng_features(16, 5, 4)
    mu2, s2 = fid.gaussian_stats(_rng_features(17, 50, 4))
    fid.frechet_weighted(x4, x4 + 1)
    fid.frechet_weighted(x4, None, mu2=mu2, sigma2=s2)
    assert calls == []
    fid.frechet_weighted(x4, y5)
    assert calls == [1]
    fid.frechet_weighted(y5, None, mu2=mu2, sigma2=s2)
    assert calls == [1, 1]


def test_weighted_moments_in_row_blocks(monkeypatch):
    x = torch.from_numpy(_rng_features(18, 7, 3))
    w = torch.tensor([1.0, 0.0, 2.0, 1.0, 0.0, 3.0, 0.0], dtype=torch.float64)
    mean, cov = fid._weighted_moments(x, w)
    xb = np.repeat(x.numpy(), w.numpy().astype(int), 0)
    assert np.allclose(mean.numpy(), xb.mean(0), rtol=1e-14) and np.allclose(cov.numpy(), np.cov(xb, rowvar=False))
    monkeypatch.setattr(fid, "_ROWS_PER_BLOCK", 2)
    mean2, cov2 = fid._weighted_moments(x, w)
    assert torch.allclose(cov2, cov, rtol=1e-14) and torch.equal(mean2, mean)


def _stub_fid_ctx(pool, ref, bootstrap, key="fid"):
    mu, sigma = fid.gaussian_stats(ref)
    inc = SimpleNamespace(features=pool, mu=mu, sigma=sigma, stats_features=ref, protocol={"net": "x"}, reference=ref)
    stats_ = SimpleNamespace(mu_samples=fid.gaussian_stats(pool)[0], sigma_samples=fid.gaussian_stats(pool)[1], mu=mu,
                             sigma=sigma, protocol={"net": "s"})
    ctx = _ctx(key, {"protocol": "p", "bootstrap": bootstrap}, inc, inception_statistics=lambda p, layer: stats_)
    return ctx, mu, sigma


def test_fid_rows_and_intervals_from_a_stub_context():
    pool, ref = _rng_features(19, 12, 3), _rng_features(20, 10, 3, 0.4)
    ctx, mu, sigma = _stub_fid_ctx(pool, ref, 6)
    terms = fid.frechet_terms(*fid.gaussian_stats(pool), mu, sigma)
    w, v = intervals.counts(12, 6, 3, "fid:samples"), intervals.counts(10, 6, 3, "fid:reference")
    ci = intervals.interval(fid.frechet_weighted(pool, ref, w, v), terms.total)
    (row,) = fid._fid(ctx)
    assert row == {"name": "fid", "value": terms.total, "protocol": {"net": "x", "sqrt_trace": "cholesky"},
                   "extra": {"mean_term": terms.mean_term, "cov_term": terms.cov_term}, "ci": ci, "reason": None}
    assert fid.fid_interval(ctx, terms.total, pool, ref, mu, sigma) == ci
    assert fid.fid_interval(ctx, terms.total, pool, None, mu, sigma) == intervals.interval(
        fid.frechet_weighted(pool, None, w, mu2=mu, sigma2=sigma), terms.total)
    paired = fid.fid_interval(ctx, terms.total, pool, pool + 0.1, mu, sigma, paired=True)
    assert paired == intervals.interval(fid.frechet_weighted(pool, pool + 0.1, w, w), terms.total)
    ctx.options["bootstrap"] = 1
    lo, hi = fid.fid_interval(ctx, 0.0, pool, ref, mu, sigma)
    assert lo == hi
    ctx.options["bootstrap"] = 0  # no bootstrap: the streamed statistics, no interval
    (row0,) = fid.frechet_rows(ctx, "sfid", "spatial")
    t0 = fid.frechet_terms(*fid.gaussian_stats(pool), mu, sigma)
    assert row0 == {"name": "sfid", "value": t0.total, "protocol": {"net": "s", "sqrt_trace": "cholesky"},
                    "extra": {"mean_term": t0.mean_term, "cov_term": t0.cov_term}, "ci": None, "reason": None}
    assert fid.fid_interval(ctx, 0.0, pool, ref, mu, sigma) is None


def test_rfid_row_from_a_stub_context():
    ref = _rng_features(21, 10, 3)
    recon = ref + 0.05 * np.random.default_rng(0).standard_normal(ref.shape)
    mu, sigma = fid.gaussian_stats(ref)
    for reference, paired in ((ref, True), (ref[:8], False), (None, False)):
        ctx = _ctx("rfid", {"protocol": "p", "bootstrap": 4}, SimpleNamespace(features=recon), samples="S",
                   extractor=lambda p: SimpleNamespace(protocol={"net": "x"}),
                   reference_stats=lambda p, reference=reference: (mu, sigma, reference, None),
                   features=lambda samples, p: {"pool": recon}, reference_provenance={"dataset": "d"})
        (row,) = fid._rfid(ctx)
        terms = fid.frechet_terms(*fid.gaussian_stats(recon), mu, sigma)
        assert row["name"] == "rfid" and row["value"] == terms.total
        assert row["protocol"] == {"net": "x", "reference": {"dataset": "d"}, "sqrt_trace": "cholesky"}
        assert row["extra"] == {"mean_term": terms.mean_term, "cov_term": terms.cov_term}
        assert row["ci"] == fid.fid_interval(ctx, terms.total, recon, reference, mu, sigma, paired=paired)


def test_check_statistics_known_answers():
    mu, sigma = np.array([1, 2]), np.array([[2, 1], [1, 2]])  # integers: returned as float64
    m, s = fid.check_statistics(mu, sigma, "f.npz")
    assert m.dtype == s.dtype == np.float64 and (s == sigma).all()
    assert fid.check_statistics(mu, sigma, "f.npz", dim=2)[0].tolist() == [1.0, 2.0]
    bad = [
        ((np.array(["a", "b"]), sigma), "f.npz: 'mu' is an array of <U1, not real numbers"),
        ((mu, sigma.astype(complex)), "'sigma' is an array of complex128"),
        ((np.zeros((2, 1)), sigma), "'mu' has shape \\(2, 1\\); expected a vector"),
        ((np.zeros(0), np.zeros((0, 0))), "'mu' has shape \\(0,\\)"),
        ((mu, np.eye(3)), "'sigma' has shape \\(3, 3\\), 'mu' \\(2,\\); expected a \\[2, 2\\]"),
        ((np.array([np.nan, 1.0]), sigma), "'mu' holds 1 NaN/Inf values of 2"),
        ((mu, np.array([[np.inf, 0], [0, np.inf]])), "'sigma' holds 2 NaN/Inf values of 4"),
        ((mu, np.array([[2.0, 1.0], [0.0, 2.0]])), "'sigma' is not symmetric"),
        ((mu, np.array([[1.0, 2.0], [2.0, 1.0]])), "'sigma' is not positive semi-definite \\(smallest eigenvalue -1,"),
        ((mu, -np.eye(2)), "not positive semi-definite"),
    ]
    for args, words in bad:
        with pytest.raises(UserError, match=words):
            fid.check_statistics(*args, "f.npz")
    with pytest.raises(UserError, match="'m' has 2 dimensions, the features it is compared with have 3"):
        fid.check_statistics(mu, sigma, "f.npz", ("m", "s"), dim=3)
    # the tolerances: rounding-level asymmetry and negative eigenvalues pass, visibly more does not
    s = np.diag([1.0, 1.0])
    s_asym = s.copy()
    s_asym[0, 1] = 1e-5  # exactly at the tolerance: passes
    fid.check_statistics(np.zeros(2), s_asym, "f")
    s_asym[0, 1] = 2e-5
    with pytest.raises(UserError, match="not symmetric"):
        fid.check_statistics(np.zeros(2), s_asym, "f")
    fid.check_statistics(np.zeros(2), np.diag([1.0, -1e-5]), "f")  # exactly at -PSD_RTOL x the largest
    with pytest.raises(UserError, match="not positive semi-definite"):
        fid.check_statistics(np.zeros(2), np.diag([1.0, -2e-5]), "f")
    with pytest.raises(UserError, match="not positive semi-definite"):
        fid.check_statistics(np.zeros(2), np.diag([-1.0, -2.0]), "f")  # no positive eigenvalue at all
    fid.check_statistics(np.zeros(2), np.zeros((2, 2)), "f")  # all zero: a (degenerate) covariance


def test_read_statistics_known_answers(tmp_path):
    from grn_eval.features import STATS_DIMS

    d = STATS_DIMS["pool"]
    good = tmp_path / "s.npz"
    np.savez(good, mu=np.arange(d, dtype=np.float32), sigma=np.eye(d, dtype=np.float32), arr_0=np.zeros(3))
    got = fid.read_statistics(good)
    assert set(got.stats) == {"mu", "sigma"} and got.members == frozenset({"mu", "sigma", "arr_0"})
    assert got.stats["mu"].dtype == np.float64 and (got.stats["sigma"] == np.eye(d)).all()
    half = tmp_path / "half.npz"
    np.savez(half, mu=np.zeros(d))
    with pytest.raises(UserError, match=f"statistics file '{half}': has 'mu' but no 'sigma'"):
        fid.read_statistics(half)
    with pytest.raises(UserError, match="custom: has 'mu'"):
        fid.read_statistics(half, where="custom")
    with pytest.raises(UserError, match="no such file"):
        fid.read_statistics(tmp_path / "none.npz")
    text = tmp_path / "t.npz"
    text.write_text("mu, sigma")
    with pytest.raises(UserError, match="not an .npz archive"):
        fid.read_statistics(text)
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(UserError, match="not an .npz archive"):
        fid.read_statistics(npy)
    pickled = tmp_path / "p.npz"
    np.savez(pickled, mu=np.array([object()], dtype=object), sigma=np.eye(2))
    with pytest.raises(UserError, match="member 'mu' holds Python objects"):
        fid.read_statistics(pickled)
    none = tmp_path / "n.npz"
    np.savez(none, arr_0=np.zeros(2))
    assert fid.read_statistics(none) == fid.StatisticsFile({}, frozenset({"arr_0"}))


# ---------------------------------------------------------------------------------------------------------------
# the gate
# ---------------------------------------------------------------------------------------------------------------

COLUMNS = ["model", "metric", "seeds", "test", "baseline", "value", "delta", "se", "tolerance", "mde", "ci_half",
           "status"]


def _df(rows, device=("cpu", "x")):
    base = {"suite": "s", "suite_hash": "h", "n": 100, "protocol_id": "p", "available": True, "device": device[0],
            "device_name": device[1], "model": "A", "family": "f", "base_model": "A", "setting": "", "metric": "fid",
            "seed": 0, "value": 1.0}
    return pd.DataFrame([{**base, **r} for r in rows])


def _entry(mean, std, values=None, seeds=None, ci_half=None, n=100):
    e = {"mean": mean, "std": std, "n": n, "protocol_id": "p", "ci_half": ci_half}
    if values is not None:
        e["values"] = values
    if seeds is not None:
        e["seeds"] = seeds
    return e


def _baseline(metrics, device_class="cpu:x", **more):
    return {"suite": ["s"], "seeds": None, "device_class": device_class, "metrics": metrics, **more}


def test_move_known_answers():
    # unpaired, n_base from the baseline's seeds, two run seeds: se = std sqrt(1/2 + 1/4)
    t = gate.move({0: 11.0, 1: 13.0}, {"mean": 10.0, "std": 2.0, "seeds": 4})
    assert t == {"test": "unpaired", "delta": 2.0, "se": 2.0 * math.sqrt(0.75), "crit": 3.0}
    # no "seeds": the number of per-seed values (2) is n_base, the seed std is the noise
    t = gate.move({5: 11.0}, {"mean": 10.0, "std": 2.0, "values": {"0": 9.0, "1": 11.0}})
    assert t["se"] == pytest.approx(2.0 * math.sqrt(1 + 1 / 2))
    # one baseline seed: the larger finite half-width / 1.96 is sigma (the run's when the baseline has none)
    z = stats.norm.isf(0.025)
    one = {"mean": 10.0, "std": 0.0, "seeds": 1, "ci_half": None}
    assert gate.move({0: 10.0}, one, run_half=z)["se"] == pytest.approx(math.sqrt(2))
    assert gate.move({0: 10.0}, {**one, "ci_half": 2 * z}, run_half=z)["se"] == pytest.approx(2 * math.sqrt(2))
    assert gate.move({0: 10.0}, {**one, "ci_half": z}, run_half=float("nan"))["se"] == pytest.approx(math.sqrt(2))
    assert gate.move({0: 10.0}, one)["se"] == 0.0  # nothing known: no noise
    assert gate.move({0: 10.0}, {"mean": 10.0, "std": 3.0})["se"] == 0.0  # neither seeds nor values: one seed
    # paired needs 3 seeds of the baseline's; 2 are compared unpaired
    base = {"mean": 10.0, "std": 1.0, "seeds": 3, "values": {"0": 9.0, "1": 10.0, "2": 11.0}}
    assert gate.move({0: 9.5, 1: 10.5}, base)["test"] == "unpaired"
    p = gate.move({0: 10.0, 1: 10.0, 2: 13.0}, base)
    assert p["test"] == "paired" and p["delta"] == pytest.approx(1.0)
    assert p["se"] == pytest.approx(np.std([1, 0, 2], ddof=1) / math.sqrt(3))
    assert p["crit"] == pytest.approx(stats.t.isf(gate.ALPHA, 2))


def test_floors_and_tolerance():
    assert gate.floor_of("fid", 1.0) == 0.5 and gate.floor_of("fid", 100.0) == 2.0
    assert gate.floor_of("seconds_per_image", 1.0) == 0.5  # timing: half the value
    assert gate.floor_of("not_a_row", 1.0) == 0.02  # no absolute floor declared: 0
    assert gate.floor_of("not_a_row", 0.0) == 0.0
    assert gate.tolerance("fid", 10.0, 2.0) == 6.0
    assert gate.tolerance("fid", 1.0, 0.0) == 0.5


def test_compare_rows_known_answers():
    """Every branch of compare, each row checked in full: regression, improvement, exactly at the tolerance,
    a higher-is-better metric, another device (latency skipped, the rest compared), protocol changed, a non-finite
    value, a metric missing, a model x metric only the run has (skipped), the run's order kept."""
    nan = float("nan")
    rows = [{"model": "C", "metric": "fid", "seed": 0, "value": 1.0}]  # not in the baseline: ignored
    rows += [{"model": "B", "metric": "fid", "seed": s, "value": v} for s, v in enumerate([10.5, 12.5, 14.5])]
    rows += [{"model": "A", "metric": "fid", "seed": s, "value": v} for s, v in enumerate([9.0, 11.0, 13.0])]
    rows += [{"model": "A", "metric": "precision", "seed": s, "value": v} for s, v in enumerate([0.5, 0.5, 0.5])]
    rows += [{"model": "A", "metric": "recall", "seed": s, "value": v, "protocol_id": "q"}
             for s, v in enumerate([0.5, 0.5, 0.5])]
    rows += [{"model": "A", "metric": "kid", "seed": s, "value": v} for s, v in enumerate([0.1, nan, 0.1])]
    rows += [{"model": "A", "metric": "seconds_per_image", "seed": s, "value": 1.0} for s in range(3)]
    fid_values = {"0": 10.0, "1": 12.0, "2": 14.0}
    baseline = _baseline({
        "B|fid": _entry(12.0, 2.0, fid_values, 3),  # +0.5 on every seed: exactly the floor, ok
        "A|fid": _entry(12.0, 2.0, fid_values, 3),  # -1 on every seed: improved
        "A|precision": _entry(0.6, 0.0, {"0": 0.6, "1": 0.6, "2": 0.6}, 3),  # -0.1, higher is better: regression
        "A|recall": _entry(0.5, 0.0, {"0": 0.5, "1": 0.5, "2": 0.5}, 3),
        "A|kid": _entry(0.1, 0.0, {"0": 0.1, "1": 0.1, "2": 0.1}, 3),
        "A|seconds_per_image": _entry(1.0, 0.0, {"0": 1.0, "1": 1.0, "2": 1.0}, 3),
        "B|kid": _entry(0.2, 0.01, {"0": 0.2}, 1),
    })
    report = gate.compare(_df(rows), baseline)
    assert list(report.columns) == COLUMNS
    got = {(r["model"], r["metric"]): r for r in report.to_dict("records")}
    assert list(got) == [("B", "fid"), ("A", "fid"), ("A", "precision"), ("A", "recall"), ("A", "kid"),
                         ("A", "seconds_per_image"), ("B", "kid")]
    b = got[("B", "fid")]
    assert b["status"] == "ok" and b["test"] == "paired" and b["delta"] == 0.5 and b["tolerance"] == 0.5
    assert b["value"] == 12.5 and b["seeds"] == 3 and b["baseline"] == 12.0 and b["se"] == 0.0
    assert b["mde"] == 0.5 and math.isnan(b["ci_half"])
    a = got[("A", "fid")]
    assert a["status"] == "improved" and a["delta"] == -1.0 and a["value"] == 11.0
    assert got[("A", "precision")]["status"] == "REGRESSION"
    assert got[("A", "precision")]["delta"] == pytest.approx(-0.1)
    assert got[("A", "recall")]["status"] == "FAIL (protocol or N differs from the baseline)"
    k = got[("A", "kid")]
    assert k["status"] == "FAIL (non-finite value: run seed 1 is nan)" and k["test"] == "" and k["seeds"] == 3
    assert k["baseline"] == 0.1 and math.isnan(k["value"])
    assert all(math.isnan(k[c]) for c in ("delta", "se", "tolerance", "mde", "ci_half"))
    assert got[("A", "seconds_per_image")]["status"] == "ok"  # the same device: latency is compared
    m = got[("B", "kid")]
    assert m["status"] == gate.MISSING and m["seeds"] == 0 and m["test"] == "" and m["baseline"] == 0.2
    assert m["tolerance"] == gate.tolerance("kid", 0.2, 0.01) == 0.03
    assert all(math.isnan(m[c]) for c in ("value", "delta", "se", "mde", "ci_half"))
    # another device class: latency skipped by name, every other metric still compared
    other = gate.compare(_df(rows, device=("cuda", "y")), baseline).set_index(["model", "metric"])
    assert other.loc[("A", "seconds_per_image"), "status"] == "skipped (baseline from another device class)"
    assert other.loc[("A", "precision"), "status"] == "REGRESSION"
    # an unpaired row with its own interval: the interval reaches `move`, the mean is the mean
    run = _df([{"model": "B", "metric": "kid", "seed": 0, "value": 0.3, "ci_low": 0.0, "ci_high": 0.4},
               {"model": "B", "metric": "kid", "seed": 1, "value": 0.5, "ci_low": 0.3, "ci_high": 0.7}])
    r = gate.compare(run, _baseline({"B|kid": _entry(0.2, 0.0, {"0": 0.2}, 1, ci_half=0.1)})).iloc[0]
    assert r["value"] == pytest.approx(0.4) and r["ci_half"] == pytest.approx(0.2)
    assert r["se"] == pytest.approx(0.2 / stats.norm.isf(0.025) * math.sqrt(1 / 2 + 1))
    # a non-finite row keeps the run's half-width
    nf = gate.compare(_df([{"model": "B", "metric": "kid", "seed": 0, "value": nan, "ci_low": 0.0, "ci_high": 0.4}]),
                      _baseline({"B|kid": _entry(0.2, 0.0, {"0": 0.2}, 1)})).iloc[0]
    assert nf["ci_half"] == pytest.approx(0.2) and nf["status"].startswith(gate.NON_FINITE)


def test_non_finite_named_together_and_names_listed():
    bad = gate._non_finite({0: float("nan"), 1: float("inf")}, {"mean": float("nan"), "std": 1.0, "values": {}})
    assert bad == "run seed 0 is nan; run seed 1 is inf; baseline mean is nan"
    with pytest.raises(UserError, match="the run is of suite 'a', 'b' but the baseline is of suite 'ab'"):
        gate.check_comparable(_df([{"suite": "a"}, {"suite": "b"}]), {"suite": "ab"})
    gate.check_comparable(_df([{"suite": "ab", "seed": 0}]), {"suite": "ab", "seeds": [0]})  # a name, not a set
    assert gate.device_class(_df([{}, {"device": "cuda", "device_name": "y"}])) == "cpu:x,cuda:y"
    assert math.isnan(gate._value(None)) and gate._value(2) == 2.0


def test_notes_known_answers():
    df = _df([{"config_hash": "c1"}])
    assert gate.notes(df, {"suite_hash": ["h"], "seeds": [0], "config_hash": ["c1"]}) == []
    note = gate.notes(_df([{"config_hash": "c2"}, {"config_hash": "c1"}]),
                      {"suite_hash": ["h"], "seeds": [0], "config_hash": ["c0", "c3"]})
    assert len(note) == 1 and note[0].startswith("the suite configuration differs from the baseline's (config hash "
                                                 "run: c1, c2; baseline: c0, c3): the suite file changed")
    # no config hash in the run or the baseline: the suite hash decides
    assert gate.notes(_df([{}]), {"suite_hash": ["h"], "seeds": [0], "config_hash": ["c0"]}) == []
    sh = gate.notes(_df([{"suite_hash": "h2"}, {"suite_hash": "h1"}]), {"suite_hash": ["g1", "g2"], "seeds": [0]})
    assert sh[0].startswith("the suite hash differs from the baseline's (run: h1, h2; baseline: g1, g2): ")
    assert gate.notes(_df([{"config_hash": "c2"}]), {"suite_hash": ["h"], "seeds": [0]}) == []
    assert gate.notes(_df([{}]), {"seeds": [0]}) == [
        "the baseline records no suite_hash (made by an older grn-eval), so it was not checked; re-make it with "
        "`--update`"]
    assert gate.notes(_df([{}]), {})[0].startswith("the baseline records no suite_hash or seeds (made by an older "
                                                   "grn-eval), so they were not checked")


def test_detectable_known_answers():
    report = pd.DataFrame([
        {"metric": "kid", "tolerance": 0.5, "baseline": 1.0, "mde": 0.7, "ci_half": 0.1, "status": "ok"},
        {"metric": "fid", "tolerance": 2.0, "baseline": 0.0, "mde": 3.0, "ci_half": float("nan"), "status": "ok"},
        {"metric": "fid", "tolerance": 4.0, "baseline": -8.0, "mde": 5.0, "ci_half": 1.0, "status": "REGRESSION"},
        {"metric": "fid", "tolerance": 9.0, "baseline": 1.0, "mde": 9.0, "ci_half": 9.0, "status": gate.MISSING},
    ])
    d = gate.detectable(report)
    assert list(d.columns) == ["metric", "smallest_flagged", "relative", "mde", "one_seed_half_width"]
    assert list(d["metric"]) == ["kid", "fid"]  # the report's order
    assert d.iloc[0].tolist() == ["kid", 0.5, 0.5, 0.7, 0.1]
    assert d.iloc[1].tolist() == ["fid", 3.0, 0.5, 4.0, 1.0]  # relative: 4 / 8 (a zero baseline has none)
    empty = gate.detectable(report[report["status"] == gate.MISSING])
    assert empty.empty and list(empty.columns) == ["metric", "smallest_flagged", "relative", "mde",
                                                   "one_seed_half_width"]


def test_samples_identity_known_answers():
    df = _df([{"model": "A", "seed": s, "samples_sha256": f"a{s}"} for s in (10, 2)]
             + [{"model": "B", "seed": 3, "samples_sha256": "b3"}])
    same = {"A": {"2": "a2", "10": "a10"}, "B": {"3": "b3"}}
    assert gate.samples_identity(df, {"samples_sha256": same}) == {
        "A": ("identical", "seed(s) 2, 10"), "B": ("identical", "seed(s) 3")}
    changed = gate.samples_identity(df, {"samples_sha256": {"A": {"2": "x", "10": "y"}, "B": {"3": "b3"}}})
    assert changed["A"] == ("changed", "seed(s) 2, 10 differ; the statistical verdict decides")
    lack = gate.samples_identity(df, {"samples_sha256": {"A": {"2": "a2"}, "B": {"3": "b3"}}})
    assert lack["A"] == ("unknown", "seed(s) 10 lack a digest in the run or the baseline")
    assert gate.samples_identity(df, {"samples_sha256": {"A": "x"}})["A"][0] == "unknown"
    assert gate.sample_digests(df) == {"A": {"10": "a10", "2": "a2"}, "B": {"3": "b3"}}


def test_baseline_made_and_written_known_answers(tmp_path):
    df = _df([{"model": "A", "metric": "fid", "seed": s, "value": v, "config_hash": "c", "ci_low": v - 1,
               "ci_high": v + 1} for s, v in enumerate([10.0, 12.0])]
             + [{"model": "A", "metric": "fid", "seed": 2, "value": 99.0, "available": False}])
    b = gate.make_baseline(df, "name")
    assert set(b) == {"name", "suite", "suite_hash", "config_hash", "seeds", "device_class", "k_std", "rel_floor",
                      "abs_floor", "metrics", "samples_sha256"}
    assert b["name"] == "name" and b["config_hash"] == ["c"] and b["k_std"] == 3.0 and b["rel_floor"] == 0.02
    assert b["abs_floor"]["fid"] == 0.5
    e = b["metrics"]["A|fid"]
    assert set(e) == {"mean", "std", "seeds", "n", "protocol_id", "ci_half", "values"}
    assert e["values"] == {"0": 10.0, "1": 12.0} and e["ci_half"] == 1.0 and e["seeds"] == 2 and e["n"] == 100
    assert gate.make_baseline(df.drop(columns="config_hash"), "n")["config_hash"] == []
    path = tmp_path / "b.json"
    gate.write_baseline(b, path)
    assert path.read_text() == json.dumps(b, indent=1, sort_keys=True) + "\n"
    with pytest.raises(UserError, match="A\\|fid seed 1 is inf"):
        gate.make_baseline(_df([{"model": "A", "metric": "fid", "seed": 1, "value": float("inf")}]), "x")
    assert gate._half_width(_df([{"ci_low": None, "ci_high": None}])) is None
    assert gate._half_width(_df([{"value": 1.0}])) is None


def test_read_baseline_refuses_wrong_shapes(tmp_path):
    path = tmp_path / "b.json"

    def refused(baseline, words):
        path.write_text(json.dumps(baseline))
        with pytest.raises(UserError, match=words):
            gate.read_baseline(path)

    good = {"suite": ["s"], "device_class": "cpu:x", "seeds": [0], "metrics": {"A|fid": _entry(1.0, 0.0)}}
    path.write_text(json.dumps(good))
    assert gate.read_baseline(path) == good
    refused({"suite": ["s"], "device_class": "c"}, "lacks the key\\(s\\) metrics; ")
    refused({**good, "metrics": []}, "lacks the key\\(s\\) metrics \\(as an object\\); ")
    refused({**good, "suite": [1]}, "suite is \\[1\\], expected a suite name or a list of them")
    refused({**good, "seeds": "0"}, "seeds is '0', expected a list of integers")
    refused({**good, "seeds": ["0"]}, "seeds is \\['0'\\], expected a list of integers")


# ---------------------------------------------------------------------------------------------------------------
# second round: what the first mutation run left alive
# ---------------------------------------------------------------------------------------------------------------


def test_manifold_membership_includes_the_boundary():
    """A point exactly at the k-th neighbour distance is inside for precision / recall (`<=`, as the ADM
    evaluator) and outside for density / coverage (`<`, as prdc)."""
    real = np.arange(5.0)[:, None]  # k = 1: every radius is 1
    fake = np.array([[5.0], [7.0], [0.0], [9.0]])  # 5.0 is at distance 1 from 4.0; 0.0 is on a real point
    for distances in ("float64", "adm-float16"):
        out = precision_recall(real, fake, k=1, per_item=True, distances=distances)
        assert out["fake_inside"].tolist() == [1.0, 0.0, 1.0, 0.0]  # 5.0 and 0.0 are inside
        # fake radii (k = 1): 5 -> 2 (to 7), 7 -> 2, 0 -> 5 (to 5), 9 -> 2; real 4 is at distance 1 from 5
        assert out["real_inside"].tolist() == [1.0, 1.0, 1.0, 1.0, 1.0]
    tight = precision_recall(real, np.array([[5.0], [5.5], [20.0], [20.5]]), k=1, per_item=True,
                             distances="adm-float16")
    # fake radii 0.5: real 4 is at distance 1 from 5 (outside), no other real point is near
    assert tight["real_inside"].tolist() == [0.0] * 5 and tight["fake_inside"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert density_coverage(real, fake, k=1, per_item=True)["fake_density"].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert adm_sq_distances(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]])).item() == 0.0


def test_adm_radii_are_the_kth_neighbour():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert prc._adm_radii(x, 1).tolist() == [1.0, 1.0, 4.0, 16.0]  # squared distances
    assert prc._adm_radii(x, 2).tolist() == [9.0, 4.0, 9.0, 36.0]


def test_the_adm_path_is_taken_only_when_asked(monkeypatch):
    calls = []
    real = prc._adm_precision_recall
    monkeypatch.setattr(prc, "_adm_precision_recall", lambda r, f, k: calls.append(k) or real(r, f, k))
    x = np.arange(6.0)[:, None]
    precision_recall(x, x + 0.5, 2)
    assert calls == []
    precision_recall(x, x + 0.5, 2, distances="adm-float16")
    assert calls == [2]


class _Strict(SimpleNamespace):
    """A stub context whose feature accessors insist on the protocol and layer they are asked for."""

    def inception(self, protocol, layer="pool"):
        assert protocol == "p" and layer == self.layer, (protocol, layer)
        return self.inc

    def inception_statistics(self, protocol, layer):
        assert protocol == "p" and layer == self.layer, (protocol, layer)
        return self.st

    def extractor(self, protocol):
        assert protocol == "p"
        return SimpleNamespace(protocol={"net": "x"})

    def reference_stats(self, protocol):
        assert protocol == "p"
        return self.ref_stats

    def features(self, samples, protocol):
        assert protocol == "p" and samples == "S"
        return {"pool": self.inc.features}


def _strict(key, options, inc, layer="pool", **more):
    more.setdefault("samples", list(range(len(inc.features))))
    return _Strict(key=key, options=options, seed=3, given={}, spec=SimpleNamespace(key=key), device="cpu",
                   row=_Rows(), suite=SimpleNamespace(path="s.yaml"), inc=inc, layer=layer, **more)


def test_metric_rows_ask_for_their_protocol_and_layer():
    a, b = _rng_features(30, 12, 3), _rng_features(31, 10, 3, 0.3)
    inc = SimpleNamespace(features=a, reference=b, protocol={"net": "x"}, mu=b.mean(0), sigma=np.cov(b, rowvar=False),
                          stats_features=b)
    st = SimpleNamespace(mu_samples=a.mean(0), sigma_samples=np.cov(a, rowvar=False), mu=b.mean(0),
                         sigma=np.cov(b, rowvar=False), protocol={"net": "s"})
    assert kid._kid(_strict("kid", {"protocol": "p", "subsets": 2, "subset_size": 5, "bootstrap": 0}, inc))
    knn = {"protocol": "p", "k": 2, "bootstrap": 0, "distances": "float64"}
    assert prc._prc(_strict("prc", knn, inc)) and dc_mod._density_coverage(_strict("density_coverage", knn, inc))
    ctx = _strict("fid", {"protocol": "p", "bootstrap": 1}, inc, st=st)  # one replicate: the features' path
    (row,) = fid._fid(ctx)
    assert row["ci"] is not None and row["protocol"] == {"net": "x", "sqrt_trace": "cholesky"}
    ctx.options["bootstrap"] = 0
    assert fid._fid(ctx)[0]["protocol"] == {"net": "s", "sqrt_trace": "cholesky"}
    ctx.layer = "spatial"
    assert fid.frechet_rows(ctx, "sfid", "spatial")[0]["name"] == "sfid"
    r = _strict("rfid", {"protocol": "p", "bootstrap": 0}, inc, samples="S", reference_provenance={},
                ref_stats=(b.mean(0), np.cov(b, rowvar=False), None, None))
    assert fid._rfid(r)[0]["value"] == fid.frechet_distance(*fid.gaussian_stats(a), b.mean(0), np.cov(b, rowvar=False))


def test_root_trace_tolerance_is_relative_to_the_largest_eigenvalue():
    # tolerance 2 eps x 1e-3 = 4.4e-19: the eigenvalue 1e-17 counts (its root is 3.2e-9), as it would not
    # against a tolerance of 2 eps x 1
    assert fid._root_trace(np.diag([1e-3, 1e-17])) == math.sqrt(1e-3) + math.sqrt(1e-17)


def test_moments_of_float32_features_are_float64():
    x32 = _rng_features(32, 9, 3).astype(np.float32)
    m = fid.GaussianMoments.of(x32)
    assert m.mean.dtype == m.scatter.dtype == np.float64
    assert (m.scatter == fid.GaussianMoments.of(x32.astype(np.float64)).scatter).all()


def test_statistics_errors_name_the_file_and_the_layer_dimension(tmp_path):
    from grn_eval.features import STATS_DIMS

    with pytest.raises(UserError, match="^f.npz: 'sigma' is not symmetric"):
        fid.check_statistics(np.zeros(2), np.array([[1.0, 1.0], [0.0, 1.0]]), "f.npz")
    spatial = tmp_path / "spatial.npz"  # only the spatial pair: the pool layer is absent, not the end of the file
    d = STATS_DIMS["spatial"]
    np.savez(spatial, mu_s=np.zeros(d), sigma_s=np.eye(d))
    assert set(fid.read_statistics(spatial).stats) == {"mu_s", "sigma_s"}
    small = tmp_path / "small.npz"
    np.savez(small, mu=np.zeros(3), sigma=np.eye(3))
    with pytest.raises(UserError, match=f"^statistics file '{small}': 'mu' has 3 dimensions, the features it is "
                                        f"compared with have {STATS_DIMS['pool']}"):
        fid.read_statistics(small)


def test_compare_second_round():
    nan = float("nan")
    # a baseline that is not finite beside finite run values: the row's value is the run's mean
    r = gate.compare(_df([{"seed": s, "value": v} for s, v in enumerate([1.0, 3.0])]),
                     _baseline({"A|fid": _entry(nan, 0.0, {"0": 1.0}, 1)})).iloc[0]
    assert r["value"] == 2.0 and r["status"].startswith(gate.NON_FINITE)
    # exactly the tolerance better is "ok", not "improved" (paired, differences all -0.5, floor 0.5)
    base = _baseline({"A|fid": _entry(12.0, 2.0, {"0": 10.0, "1": 12.0, "2": 14.0}, 3)})
    r = gate.compare(_df([{"seed": s, "value": v} for s, v in enumerate([9.5, 11.5, 13.5])]), base).iloc[0]
    assert r["delta"] == -0.5 and r["tolerance"] == 0.5 and r["status"] == "ok"
    # a missing row's tolerance uses its metric's floor: kid's 0.002 above 2% of 0.05
    m = gate.compare(_df([{"seed": 0}]), _baseline({"A|fid": _entry(1.0, 0.0, {"0": 1.0}, 1),
                                                    "A|kid": _entry(0.05, 0.0, {"0": 0.05}, 1)}))
    assert m.set_index("metric").loc["kid", "tolerance"] == 0.002
    lack = gate.samples_identity(_df([{"seed": s, "samples_sha256": f"a{s}"} for s in (1, 2, 3)]),
                                 {"samples_sha256": {"A": {"1": "a1"}}})
    assert lack["A"] == ("unknown", "seed(s) 2, 3 lack a digest in the run or the baseline")


def test_sfid_row_with_a_bootstrap_against_statistics_only():
    """A statistics file (no reference features): the interval resamples the samples against its mu / sigma, and
    the features asked for are those of the row's layer."""
    a, b = _rng_features(33, 12, 3), _rng_features(34, 40, 3, 0.3)
    mu, sigma = fid.gaussian_stats(b)
    inc = SimpleNamespace(features=a, reference=None, protocol={"net": "x"}, mu=mu, sigma=sigma, stats_features=None)
    ctx = _strict("sfid", {"protocol": "p", "bootstrap": 3}, inc, layer="spatial")
    (row,) = fid.frechet_rows(ctx, "sfid", "spatial")
    w = intervals.counts(12, 3, 3, "sfid:samples")
    terms = fid.frechet_terms(*fid.gaussian_stats(a), mu, sigma)
    assert row["value"] == terms.total
    assert row["ci"] == intervals.interval(fid.frechet_weighted(a, None, w, mu2=mu, sigma2=sigma), terms.total)

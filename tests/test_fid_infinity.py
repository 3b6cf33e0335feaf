"""FID-infinity (grn_eval/metrics/fid_infinity.py): on Gaussian features with a known population distance it
removes the 1/N bias that FID at N carries; its subsets and fit are those of Chong and Forsyth."""

import numpy as np
import pytest

from grn_eval.metrics.fid import frechet_terms, gaussian_stats
from grn_eval.metrics.fid_infinity import fid_infinity, subset_sizes


def test_subset_sizes_are_the_papers_spacing():
    sizes = subset_sizes(50000, 15, 0.1)
    assert sizes.tolist()[:3] == [5000, 8214, 11429] and sizes[-1] == 50000
    assert len(subset_sizes(10, 15, 0.1)) == 9  # sizes 2 ... 10, each once


def test_closer_to_the_population_distance_than_fid_at_n():
    # N(0.3, 1.2^2 I) against N(0, I) in 32 dimensions: FID = 32 * 0.3^2 + 32 * (1 - 1.2)^2 = 4.16
    d, true = 32, 32 * 0.3**2 + 32 * 0.2**2
    at_n, infinity = [], []
    for seed in range(8):
        x = np.random.default_rng(seed).standard_normal((500, d)) * 1.2 + 0.3
        at_n.append(frechet_terms(*gaussian_stats(x), np.zeros(d), np.eye(d)).total)
        res = fid_infinity(x, None, np.zeros(d), np.eye(d), seed=seed)
        infinity.append(res["fid_inf"])
        assert res["se"] > 0 and res["slope"] > 0 and len(res["points"]) == 15 and res["points"][-1][0] == 500
    # measured: FID at N = 500 is 0.82 above on average, FID-infinity 0.05
    assert np.mean(at_n) - true > 0.5
    assert abs(np.mean(infinity) - true) < 0.2 * (np.mean(at_n) - true)


def test_reference_features_and_its_statistics_give_the_same_fit():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((200, 8)) + 0.2, rng.standard_normal((300, 8))
    a = fid_infinity(x, y, seed=1)
    b = fid_infinity(x, None, y.mean(0), np.cov(y, rowvar=False), seed=1)
    assert a["fid_inf"] == pytest.approx(b["fid_inf"], rel=1e-9) and a["points"][0][0] == b["points"][0][0] == 20


def test_too_few_samples_is_one_clear_error():
    from grn.errors import UserError

    with pytest.raises(UserError, match=r"metrics\.fid_inf\.points / min_fraction"):
        fid_infinity(np.random.default_rng(0).standard_normal((3, 4)), None, np.zeros(4), np.eye(4))

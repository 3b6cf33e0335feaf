import numpy as np
import pytest
import torch
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from grn_eval.metrics.kid import kid
from grn_eval.metrics.prc import precision_recall


def _features(seed, n=300, d=64, shift=0.0):
    rng = np.random.default_rng(seed)
    return np.abs(rng.standard_normal((n, d)) + shift)


def test_kid_matches_torch_fidelity_on_the_same_subsets():
    a, b = _features(0), _features(1, shift=0.3)
    ours = kid(a, b, subsets=20, subset_size=100, seed=7)
    ref = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=20, kid_subset_size=100,
                                 rng_seed=7, verbose=False)
    assert ours["kid_mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-10)
    assert ours["kid_std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-10)


def test_kid_near_zero_for_same_distribution_and_positive_for_shift():
    same = kid(_features(0, n=400), _features(1, n=400), subsets=30, subset_size=200)["kid_mean"]
    shifted = kid(_features(0, n=400), _features(1, n=400, shift=1.0), subsets=30, subset_size=200)["kid_mean"]
    assert abs(same) < 0.1 * shifted and shifted > 0


def test_precision_recall_matches_torch_fidelity():
    a, b = _features(2, n=200), _features(3, n=250, shift=0.5)
    ours = precision_recall(a, b, k=3)
    # torch-fidelity: input 1 = generated ("features_1"), input 2 = real
    ref = prc_features_to_metric(torch.from_numpy(b), torch.from_numpy(a), prc_neighborhood=3, verbose=False)
    assert ours["precision"] == pytest.approx(ref["precision"], abs=1e-6)  # it averages in float32
    assert ours["recall"] == pytest.approx(ref["recall"], abs=1e-6)
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] < 1


def test_precision_recall_known_answer():
    # real: points at 0, 1, 2, 3, 4 (radius to the 1st neighbour = 1); fake: 0.5 (inside), 10 (outside)
    real = np.arange(5, dtype=float)[:, None]
    fake = np.array([[0.5], [10.0]])
    out = precision_recall(real, np.vstack([fake, fake + 0.1]), k=1)
    assert out["precision"] == 0.5

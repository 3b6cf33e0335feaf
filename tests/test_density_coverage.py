"""Density and coverage (grn_eval/metrics/density_coverage.py): parity with the reference implementation
(`prdc`), hand-worked answers, and the suite path through the metric registry."""

import contextlib
import io

import numpy as np
import pytest
import yaml
from prdc import compute_prdc

from grn_eval.metrics import registry
from grn_eval.metrics.density_coverage import density_coverage
from grn_eval.suite import SuiteError, load_suite


def _features(seed, n, d=32, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * scale + shift


@pytest.mark.parametrize("n_fake, shift, scale", [(300, 0.0, 1.0), (250, 0.4, 1.0), (200, 0.0, 0.5), (150, 0.0, 2.0)])
def test_matches_prdc(n_fake, shift, scale):
    real, fake = _features(0, 300), _features(1, n_fake, shift=shift, scale=scale)
    ours = density_coverage(real, fake, k=5, block=64)  # blocks smaller than the sets: the loop is exercised
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        ref = compute_prdc(real, fake, nearest_k=5)
    assert ours["density"] == pytest.approx(float(ref["density"]), abs=1e-12)
    assert ours["coverage"] == pytest.approx(float(ref["coverage"]), abs=1e-12)


def test_samples_crowded_at_the_modes_raise_density_and_lower_coverage():
    # 8 dimensions: same distribution about (1, 0.98); at 0.3 of the spread about (2.8, 0.53)
    real = _features(0, 400, d=8)
    same = density_coverage(real, _features(1, 400, d=8))
    crowded = density_coverage(real, _features(1, 400, d=8, scale=0.3))
    assert same["density"] == pytest.approx(1.0, abs=0.1) and same["coverage"] > 0.95
    assert crowded["density"] > 2 * same["density"] and crowded["coverage"] < 0.7


def test_known_answers():
    # one line, real points 0, 1, 2, 3, 4 and k = 1: every radius is 1 (the nearest other point)
    real = np.arange(5.0)[:, None]
    # fakes at 0.5 (inside the balls of 0 and 1), 2.0 (only its own: distance 1 to 1 and 3 is not < 1), 10
    out = density_coverage(real, np.array([[0.5], [2.0], [10.0]]), k=1)
    assert out["density"] == pytest.approx(3 / 3) and out["coverage"] == pytest.approx(3 / 5)
    # the real set itself: each ball holds its own centre and, without ties, k - 1 more points: density 1
    x = _features(3, 100)
    assert density_coverage(x, x, k=5) == {"density": 1.0, "coverage": 1.0, "k": 5}
    assert density_coverage(x, x + 100.0, k=5)["coverage"] == 0.0


def test_too_few_reference_samples_is_one_clear_error():
    with pytest.raises(ValueError, match=r"more than 5 reference samples .*metrics\.density_coverage\.k"):
        density_coverage(np.zeros((5, 2)), np.zeros((3, 2)), k=5)


def test_registered_with_its_rows_and_range(tmp_path):
    spec = registry.get("density_coverage")
    assert spec.row_names == ("density", "coverage")
    assert spec.merged({}) == {"k": 5, "protocol": "tf-inception", "bootstrap": 200}
    assert all(registry.row(n).better == "higher" for n in spec.row_names)
    suite = {"name": "t", "datasets": {"ref": {"name": "mnist", "split": "reference"}}, "reference": {"dataset": "ref"},
             "models": [{"name": "i", "adapter": "npz", "path": "x.npz"}], "n_samples": 50,
             "metrics": {"density_coverage": {"k": 50}}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(suite))
    with pytest.raises(SuiteError, match=r"metrics\.density_coverage\.k: 50 is out of range"):
        load_suite(p)

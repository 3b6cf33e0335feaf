"""What a user hands the metrics is checked where it enters: statistics files, ADM batches, tiny sample counts,
references of the wrong form (images against videos), clip lengths and the weights cache's records. Each bad
input ends in one UserError naming the file / key and the fix (exit 1), never a number from garbage or an
"internal error" (exit 70); each good input still gives the numbers it gave before.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from grn.data import DatasetError, load_mnist, load_npz, save_npz
from grn.errors import UserError
from grn_eval import cli
from grn_eval import weights as W
from grn_eval.metrics import registry
from grn_eval.metrics.fid import (
    PSD_RTOL,
    SYMMETRY_RTOL,
    check_covariance_size,
    check_statistics,
    frechet_terms,
    gaussian_stats,
    read_statistics,
)
from grn_eval.suite import SuiteError, check_reference_data, check_reference_files, load_suite

VIDEO_TOKENIZER = Path(__file__).resolve().parents[1] / "grn" / "checkpoints" / "tokenizer_mmnist_video.pt"


def _cli(capsys, *argv) -> tuple[int, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err and "internal error" not in captured.err
    return code, captured.out + captured.err


def _suite(tmp_path, name="s", **top) -> Path:
    """A small generation suite: stored MNIST samples (an ADM batch) against the MNIST reference split."""
    if not (tmp_path / "samples.npz").exists():
        train = load_mnist("train")
        save_npz(tmp_path / "samples.npz", train.images[:8], train.labels[:8])
    data = {"name": name, "datasets": {"ref": {"name": "mnist", "split": "reference"}},
            "models": [{"name": "ext", "adapter": "npz", "path": "samples.npz"}],
            "metrics": {"fid": {"bootstrap": 0}}, "reference": {"dataset": "ref"}, "n_samples": 8, "batch_size": 4,
            **top}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _video_suite(tmp_path, frames=None, metrics=None, models=None, name="v") -> Path:
    ref = {"name": "moving_mnist", "split": "reference", **({"frames": frames} if frames is not None else {})}
    return _suite(tmp_path, name, datasets={"ref": ref}, metrics=metrics or {"psnr": {}}, n_samples=2,
                  models=models or [{"name": "tok", "adapter": "tokenizer", "checkpoint": str(VIDEO_TOKENIZER)}])


def _covariance(d=6, n=50, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d))
    return gaussian_stats(x)


# -- 1. statistics: a mean and a symmetric PSD covariance, or one message --------------------------------------


def test_valid_statistics_pass_unchanged_in_float64():
    mu, sigma = _covariance()
    got = check_statistics(mu.astype(np.float32), sigma, "f.npz")
    assert got[0].dtype == np.float64 and np.array_equal(got[0], mu.astype(np.float32)) and got[1] is not sigma
    assert np.array_equal(got[1], sigma)


def test_rounding_of_a_rank_deficient_float32_covariance_is_inside_the_tolerances():
    """N < d: the null space comes out at about -d eps; stored in float32, about -1e-8 of the largest eigenvalue."""
    x = np.abs(np.random.default_rng(1).standard_normal((40, 300)))
    with pytest.warns(RuntimeWarning, match="rank-deficient"):
        mu, sigma = gaussian_stats(x)
    stored = sigma.astype(np.float32).astype(np.float64)
    ev = np.linalg.eigvalsh(stored)
    assert ev[0] < 0 and -ev[0] / ev[-1] < PSD_RTOL / 100  # really negative, far inside the tolerance
    check_statistics(mu, stored, "f.npz")


def test_asymmetry_is_refused_beyond_the_stated_tolerance_only():
    mu, sigma = _covariance()
    scale = np.abs(sigma).max()
    for factor, ok in ((0.5, True), (2.0, False)):
        s = sigma.copy()
        s[0, 1] += factor * SYMMETRY_RTOL * scale
        if ok:
            check_statistics(mu, s, "f.npz")
        else:
            with pytest.raises(UserError, match=r"f\.npz: 'sigma' is not symmetric .*tolerance 1e-05"):
                check_statistics(mu, s, "f.npz")


def test_a_negative_eigenvalue_is_refused_beyond_the_stated_tolerance_only():
    mu = np.zeros(3)
    for smallest, ok in ((-0.5 * PSD_RTOL * 4, True), (-2 * PSD_RTOL * 4, False), (-1.0, False)):
        sigma = np.diag([4.0, 1.0, smallest])
        if ok:
            check_statistics(mu, sigma, "f.npz")
        else:
            with pytest.raises(UserError, match=r"'sigma' is not positive semi-definite \(smallest eigenvalue"):
                check_statistics(mu, sigma, "f.npz")


def test_the_matrix_that_gave_fid_minus_1588_is_refused():
    """A random square matrix as sigma: not symmetric, eigenvalues of both signs. The distance computes to a
    number without any sign of trouble, which is why statistics are checked before use."""
    rng = np.random.default_rng(0)
    mu, sigma = np.zeros(64), rng.standard_normal((64, 64))
    x = gaussian_stats(rng.standard_normal((200, 64)))
    assert np.isfinite(frechet_terms(*x, mu, sigma).total)  # garbage in, a finite number out
    with pytest.raises(UserError, match="not symmetric"):
        check_statistics(mu, sigma, "ref.npz")
    with pytest.raises(UserError, match="not positive semi-definite"):
        check_statistics(mu, -np.eye(64), "ref.npz")


@pytest.mark.parametrize("mu, sigma, names, words", [
    (np.zeros((2, 3)), np.eye(3), ("mu", "sigma"), r"'mu' has shape \(2, 3\); expected a vector"),
    (np.zeros(3), np.eye(4), ("mu", "sigma"), r"'sigma' has shape \(4, 4\), 'mu' \(3,\)"),
    (np.array([0.0, np.nan, 0.0]), np.eye(3), ("mu", "sigma"), "'mu' holds 1 NaN/Inf values of 3"),
    (np.array(["a", "b", "c"]), np.eye(3), ("mu_s", "sigma_s"), "'mu_s' is an array of <U1, not real numbers"),
    (np.zeros(3), np.eye(3) * (1 + 1j), ("mu", "sigma"), "'sigma' is an array of complex128"),
])
def test_other_arrays_than_a_mean_and_a_covariance_name_the_member(mu, sigma, names, words):
    with pytest.raises(UserError, match=words):
        check_statistics(mu, sigma, "f.npz", names)


def test_the_dimension_of_the_layer_is_checked():
    with pytest.raises(UserError, match="'mu' has 6 dimensions, the features it is compared with have 2048"):
        check_statistics(*_covariance(), "f.npz", dim=2048)


def _bad_files(tmp_path) -> dict[str, tuple[Path, str]]:
    """file name -> (path, what the message says)."""
    mu, sigma = np.zeros(2048), np.eye(2048)
    np.savez(tmp_path / "good.npz", mu=mu, sigma=sigma)
    good = (tmp_path / "good.npz").read_bytes()
    files = {"text.npz": (b"mu,sigma\n1,2\n", "a text file"), "truncated.npz": (good[: len(good) // 2],
                                                                                "damaged or truncated zip"),
             "pickle.npz": (pickle.dumps({"mu": mu}), "a Python pickle"), "empty.npz": (b"", "an empty file")}
    out = {}
    for name, (data, words) in files.items():
        (tmp_path / name).write_bytes(data)
        out[name] = (tmp_path / name, words)
    np.save(tmp_path / "single.npy", mu)
    out["single.npy"] = (tmp_path / "single.npy", "a single .npy array")
    np.savez(tmp_path / "half.npz", mu=mu)
    out["half.npz"] = (tmp_path / "half.npz", "has 'mu' but no 'sigma'")
    np.savez(tmp_path / "objects.npz", mu=np.array([None] * 2048, dtype=object), sigma=sigma)
    out["objects.npz"] = (tmp_path / "objects.npz", "member 'mu' holds Python objects")
    np.savez(tmp_path / "other_layer.npz", mu_s=mu, sigma_s=sigma)  # spatial statistics are 2023-d
    out["other_layer.npz"] = (tmp_path / "other_layer.npz", "'mu_s' has 2048 dimensions, the features it is "
                                                            "compared with have 2023")
    nonpsd = np.eye(2048)
    nonpsd[5, 5] = -3.0
    np.savez(tmp_path / "nonpsd.npz", mu=mu, sigma=nonpsd)
    out["nonpsd.npz"] = (tmp_path / "nonpsd.npz", "'sigma' is not positive semi-definite")
    return out


def test_read_statistics_returns_checked_pairs_and_the_members(tmp_path):
    mu, sigma = np.arange(2048.0), np.diag(np.arange(1.0, 2049.0))
    np.savez(tmp_path / "ref.npz", arr_0=np.zeros((2, 4, 4, 3), np.uint8), mu=mu.astype(np.float32), sigma=sigma)
    got = read_statistics(tmp_path / "ref.npz")
    assert got.members == {"arr_0", "mu", "sigma"} and set(got.stats) == {"mu", "sigma"}
    assert np.array_equal(got.stats["mu"], mu) and np.array_equal(got.stats["sigma"], sigma)


def test_every_bad_statistics_file_is_one_user_error_naming_it(tmp_path):
    for name, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(UserError, match="reference.stats") as e:
            read_statistics(path, f"reference.stats: '{path}'")
        assert words in str(e.value) and str(path) in str(e.value), name


def test_a_run_with_a_bad_statistics_file_ends_in_one_error_line(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", mu=np.zeros(2048), sigma=np.random.default_rng(0).standard_normal((2048, 2048)))
    code, out = _cli(capsys, "run", str(_suite(tmp_path, reference={"stats": "bad.npz"})), "--run-dir",
                     str(tmp_path / "run"), "--quiet")
    assert code == 1 and "reference.stats" in out and "'sigma' is not symmetric" in out
    assert [line for line in out.splitlines() if line.startswith("error:")] == [out.strip().splitlines()[-1]]


@pytest.mark.parametrize("name", ["text.npz", "truncated.npz", "pickle.npz", "nonpsd.npz"])
def test_grn_eval_fid_refuses_a_bad_reference_before_building_the_network(tmp_path, capsys, monkeypatch, name):
    import grn_eval.features

    path, words = _bad_files(tmp_path)[name]
    save_npz(tmp_path / "samples.npz", load_mnist("train").images[:4])
    monkeypatch.setattr(grn_eval.features, "InceptionFeatures", None)  # building it would fail loudly
    code, out = _cli(capsys, "fid", str(tmp_path / "samples.npz"), "--ref", str(path))
    assert code == 1 and f"error: --ref '{path}'" in out and words in out


def test_validate_function_reads_the_reference_file(tmp_path):
    files = _bad_files(tmp_path)
    check_reference_files(load_suite(_suite(tmp_path, reference={"stats": "good.npz"})))
    for name in ("nonpsd.npz", "truncated.npz"):
        with pytest.raises(UserError, match=rf"reference\.stats: .*{name}"):
            check_reference_files(load_suite(_suite(tmp_path, reference={"stats": name})))
    np.savez(tmp_path / "nothing.npz", labels=np.zeros(3))
    with pytest.raises(SuiteError, match=r"holds no statistics \(members \['labels'\]\)"):
        check_reference_files(load_suite(_suite(tmp_path, reference={"stats": "nothing.npz"})))
    with pytest.raises(SuiteError, match="file not found"):
        check_reference_files(load_suite(_suite(tmp_path, reference={"stats": "absent.npz"})))
    assert files  # the good file and the bad ones exist side by side: each suite names its own
    save_npz(tmp_path / "one.npz", load_mnist("reference").images[:1])
    with pytest.raises(SuiteError, match=r"reference.npz: 1 is too few reference images for metrics.fid"):
        check_reference_files(load_suite(_suite(tmp_path, reference={"npz": "one.npz"})))


# -- 2. too few samples ----------------------------------------------------------------------------------------


def test_a_covariance_of_one_vector_is_a_user_error():
    with pytest.raises(UserError, match=r"samples: 1 feature vector\(s\); .*needs at least 2 \(and thousands"):
        check_covariance_size(1, 2048, "samples")
    with pytest.raises(UserError, match="needs at least 2"):
        gaussian_stats(np.zeros((1, 5)))


@pytest.mark.parametrize("top, key, words", [
    ({"n_samples": 1}, "n_samples", "1 is too few samples for metrics.fid, which needs at least 2"),
    ({"reference": {"dataset": "ref", "limit": 1}}, "reference.limit", "1 is too few reference images"),
    ({"n_samples": 1, "metrics": {"kid": {}}}, "n_samples", "metrics.kid, which needs at least 2"),
    ({"n_samples": 3, "metrics": {"prc": {}}}, "n_samples", r"metrics.prc, which needs at least 4 \(k = 3"),
    ({"n_samples": 5, "metrics": {"density_coverage": {}}}, "n_samples", "needs at least 6 (k = 5"),
    ({"n_samples": 3, "metrics": {"fid_inf": {}}}, "n_samples", "metrics.fid_inf, which needs at least 4"),
])
def test_too_few_samples_for_a_metric_are_refused_at_load(tmp_path, top, key, words):
    with pytest.raises(SuiteError, match=rf"s\.yaml: {key}: ") as e:
        load_suite(_suite(tmp_path, **top))
    assert words.replace("\\", "") in str(e.value)


def test_the_smallest_counts_the_metrics_need_are_accepted(tmp_path):
    load_suite(_suite(tmp_path, n_samples=2, metrics={"fid": {}, "kid": {}, "fd_dinov2": {}}))
    load_suite(_suite(tmp_path, n_samples=4, metrics={"prc": {}, "fid_inf": {}}))
    assert registry.get("prc").needs({"k": 7}) == (8, "k = 7 nearest neighbours need k + 1 points per side")


class _Runner(SimpleNamespace):
    def _row(self, entry, metric, value, seed, n, protocol, version, extra, reason, ci):
        return {"metric": metric, "value": value, "reason": reason, "protocol": protocol}


def _context(key, samples, reference, **suite):
    spec = registry.get(key)
    runner = _Runner(suite=SimpleNamespace(metrics={key: {}}, evaluator=None, path=Path("s.yaml"),
                                           reference={"dataset": "ref"}, **suite))
    return registry.MetricContext(spec, runner, SimpleNamespace(name="m"), None, 0, samples, None, [], reference, {})


def test_a_reference_smaller_than_a_metric_needs_is_refused_before_the_metric_runs():
    """A dataset can hold fewer images than reference.limit: only the loaded reference says so."""
    images = np.zeros((8, 4, 4, 3), np.uint8)
    with pytest.raises(UserError, match=r"s\.yaml: metrics\.fid: model 'm': 1 reference images; fid needs at least 2"):
        _context("fid", images, images[:1])
    with pytest.raises(UserError, match=r"metrics\.prc: model 'm': 3 samples; prc needs at least 4"):
        _context("prc", images[:3], images)
    assert _context("prc", images[:4], images[:4]).options["k"] == 3


def test_the_k_nn_and_kernel_metrics_refuse_tiny_sets_with_a_message():
    from grn_eval.metrics.density_coverage import density_coverage
    from grn_eval.metrics.kid import kid
    from grn_eval.metrics.prc import precision_recall

    x = np.random.default_rng(0).standard_normal((3, 4))
    with pytest.raises(UserError, match="KID needs at least 2 samples per side, got 1 and 3"):
        kid(x[:1], x)
    with pytest.raises(UserError, match="k=3 needs more than 3 samples per side"):
        precision_recall(x, x, 3)
    with pytest.raises(UserError, match="k=5 needs more than 5 reference samples"):
        density_coverage(x, x, 5)
    # two samples per side: the unbiased MMD^2 of a set with itself is the known closed form, finite
    k = ((x[:2] @ x[:2].T) / 4 + 1) ** 3
    want = (k.sum() - np.trace(k)) * 2 / 2 - 2 * k.sum() / 4
    assert kid(x[:2], x[:2], subsets=1, subset_size=2)["kid_mean"] == pytest.approx(want)


# -- 3. NotAvailable anywhere inside a compute function becomes the row that says why -----------------------


def test_not_available_inside_frechet_rows_becomes_a_row():
    def unavailable(*_):
        raise registry.NotAvailable("not available: the file has no mu / sigma")

    ctx = SimpleNamespace(spec=registry.get("fid"), options={"protocol": "tf-inception", "bootstrap": 0},
                          inception_statistics=unavailable,
                          row=lambda name, value, protocol, reason=None, **_: {"metric": name, "value": value,
                                                                               "reason": reason})
    assert registry.get("fid").compute(ctx) == [{"metric": "fid", "value": None,
                                                "reason": "not available: the file has no mu / sigma"}]


def test_a_statistics_file_without_pool_statistics_gives_an_unavailable_fid_row(tmp_path, capsys):
    mu_s, sigma_s = np.zeros(2023), np.eye(2023)
    np.savez(tmp_path / "spatial.npz", mu_s=mu_s, sigma_s=sigma_s)
    code, out = _cli(capsys, "run", str(_suite(tmp_path, reference={"stats": "spatial.npz"})), "--run-dir",
                     str(tmp_path / "run"), "--quiet")
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert code == 0 and [(r["metric"], r["value"], r["available"]) for r in rows] == [("fid", None, False)]
    assert "'spatial.npz' has no mu / sigma" in rows[0]["reason"]


# -- 4. images against videos ----------------------------------------------------------------------------------


@pytest.mark.parametrize("metrics, reference, words", [
    ({"fvd": {}}, {"dataset": "ref"}, "metrics.fvd: fvd compares clips with reference clips, but the reference "
                                      "{dataset: ref} holds images"),
    ({"fvd": {}}, {"stats": "x.npz"}, "holds statistics"),
])
def test_a_video_metric_against_images_or_statistics_is_refused_at_load(tmp_path, metrics, reference, words):
    with pytest.raises(SuiteError, match="metrics.fvd") as e:
        load_suite(_suite(tmp_path, metrics=metrics, reference=reference), check_assets=False)
    assert words in str(e.value)


def test_image_samples_against_reference_videos_are_refused_at_load(tmp_path):
    with pytest.raises(SuiteError, match=r"models\[0\]\.adapter: 'npz' serves images, the reference "
                                         r"\{dataset: ref\} holds videos"):
        load_suite(_video_suite(tmp_path, metrics={"fid": {}},
                                models=[{"name": "ext", "adapter": "npz", "path": "samples.npz"}]))


def test_images_against_videos_found_at_run_time_name_the_metric_and_the_reference():
    images, videos = np.zeros((4, 8, 8, 3), np.uint8), np.zeros((4, 5, 8, 8, 3), np.uint8)
    with pytest.raises(UserError, match=r"metrics\.fid: model 'm' made images \(4, 8, 8, 3\), the reference "
                                        r"\{'dataset': 'ref'\} holds videos \(4, 5, 8, 8, 3\)"):
        _context("fid", images, videos)
    assert _context("fid", images, images).samples is images


# -- 5. clip lengths -------------------------------------------------------------------------------------------


def test_clips_the_causal_video_tokenizer_cannot_encode_are_refused_at_load(tmp_path):
    for frames in (6, 16):
        with pytest.raises(SuiteError, match=rf"datasets\.ref\.frames: clips of {frames} frames: .* 1 \+ 4k"):
            load_suite(_video_suite(tmp_path, frames))
    for frames in (5, 17):
        assert load_suite(_video_suite(tmp_path, frames)).task == "reconstruction"
    # the rule is the tokenizer's: another reconstruction model takes clips of any length
    assert load_suite(_video_suite(tmp_path, 6, models=[{"name": "i", "adapter": "identity"}])).models[0].name == "i"


@pytest.mark.parametrize("frames, words", [("17", "expected int, got str ('17')"),
                                           (17.0, "expected int, got float (17.0)")])
def test_a_clip_length_that_is_not_an_integer_is_refused_at_load(tmp_path, frames, words):
    with pytest.raises(SuiteError, match=r"datasets\.ref\.frames: ") as e:
        load_suite(_video_suite(tmp_path, frames))
    assert words in str(e.value)


def test_fvd_frames_beyond_the_reference_clips_are_refused_at_load(tmp_path):
    with pytest.raises(SuiteError, match=r"metrics\.rfvd\.frames: 16 frames per clip .* have 9; allowed: at most 9"):
        load_suite(_video_suite(tmp_path, 9, {"rfvd": {}}))
    assert load_suite(_video_suite(tmp_path, 9, {"rfvd": {"frames": 9}})).metrics == {"rfvd": {"frames": 9}}


def test_loaded_reference_clips_are_checked_like_the_suite(tmp_path):
    """video_npz / video_folder clips: their length is known once they are read (check_reference_data)."""
    suite = load_suite(_video_suite(tmp_path, metrics={"psnr": {}, "rfvd": {"frames": 9}}))
    check_reference_data(suite, np.zeros((2, 9, 8, 8, 3), np.uint8))
    with pytest.raises(SuiteError, match=r"datasets\.ref: clips of 10 frames"):
        check_reference_data(suite, np.zeros((2, 10, 8, 8, 3), np.uint8))
    with pytest.raises(SuiteError, match=r"metrics\.rfvd\.frames: 9 frames per clip .* have 5"):
        check_reference_data(suite, np.zeros((2, 5, 8, 8, 3), np.uint8))
    with pytest.raises(SuiteError, match="metrics.rfvd: rfvd compares clips with reference clips, but the reference "
                                         r"\{dataset: ref\} holds images"):
        check_reference_data(suite, np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(SuiteError, match=r"1 is too few reference images for metrics\.rfvd"):
        check_reference_data(suite, np.zeros((1, 9, 8, 8, 3), np.uint8))


# -- 6. ADM batches --------------------------------------------------------------------------------------------


def _junk_member(path: Path, data: bytes) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("arr_0.npy", data)


def test_garbage_in_an_adm_batch_names_the_file_and_the_member(tmp_path):
    import io

    images = np.zeros((4, 8, 8, 3), np.uint8)
    buf = io.BytesIO()
    np.save(buf, np.zeros((400, 32, 32, 3), np.uint8))
    cases = {
        "objects": (lambda p: np.savez(p, arr_0=np.array([{"a": 1}] * 4, dtype=object)),
                    "member 'arr_0' holds Python objects"),
        "objects_compressed": (lambda p: np.savez_compressed(p, arr_0=np.array([{"a": 1}] * 4, dtype=object)),
                               "member 'arr_0' holds Python objects"),
        "strings": (lambda p: np.savez(p, arr_0=np.array(["abc"] * 4)), r"member 'arr_0' is <U3 of shape \(4,\)"),
        "floats": (lambda p: np.savez(p, arr_0=images.astype(np.float32)), "member 'arr_0' is float32"),
        "videos": (lambda p: np.savez(p, arr_0=np.zeros((2, 5, 8, 8, 3), np.uint8)), "go in a `video_npz` dataset"),
        "float_labels": (lambda p: np.savez(p, arr_0=images, arr_1=np.array([0.5, 1.5, 2, 3])),
                         r"member 'arr_1' \(the labels\) has dtype float64; expected integer class labels"),
        "short_labels": (lambda p: np.savez(p, arr_0=images, arr_1=np.arange(3)),
                         r"member 'arr_1' \(the labels\) has shape \(3,\); expected one label per image \(4\)"),
        "negative_labels": (lambda p: np.savez(p, arr_0=images, arr_1=np.array([0, -1, 2, 3])),
                            "holds negative labels"),
        "text": (lambda p: p.write_text("hello"), "is not a valid .npz archive but a text file"),
        "junk_member": (lambda p: _junk_member(p, b"junk" * 20), "member 'arr_0' is not a readable numpy array"),
        "short_member": (lambda p: _junk_member(p, buf.getvalue()[:2000]),
                         r"member 'arr_0': its header promises \(400, 32, 32, 3\) uint8 \(1228800 bytes\) but the "
                         r"member holds 1872"),
    }
    for name, (write, words) in cases.items():
        path = tmp_path / f"{name}.npz"
        write(path)
        with pytest.raises(DatasetError, match=words) as e:
            load_npz(path)
        assert f"'{path}'" in str(e.value), name


def test_a_good_adm_batch_still_loads_memory_mapped(tmp_path):
    ref = load_mnist("reference")
    save_npz(tmp_path / "ok.npz", ref.images[:5], ref.labels[:5])
    data = load_npz(tmp_path / "ok.npz")
    assert isinstance(data.images, np.memmap) and np.array_equal(data.images, ref.images[:5])
    assert data.labels.dtype == np.int64 and np.array_equal(data.labels, ref.labels[:5])
    assert data.num_classes == int(ref.labels[:5].max()) + 1


def test_grn_eval_fid_with_a_pickled_reference_batch_is_one_error(tmp_path, capsys):
    np.savez(tmp_path / "ref.npz", arr_0=np.array([{"a": 1}] * 4, dtype=object))
    save_npz(tmp_path / "samples.npz", load_mnist("train").images[:4])
    code, out = _cli(capsys, "fid", str(tmp_path / "samples.npz"), "--ref", str(tmp_path / "ref.npz"))
    assert code == 1 and "member 'arr_0' holds Python objects" in out


# -- 7. the weights cache's records ----------------------------------------------------------------------------


@pytest.fixture
def lpips_copy(tmp_path, monkeypatch):
    """A private cache holding a copy of the converted LPIPS-alex file and its record."""
    import shutil

    _, r = W.get_asset("lpips-alex").resolve()
    monkeypatch.setenv("GRN_CACHE", str(tmp_path / "cache"))
    W.weights_dir().mkdir(parents=True)
    shutil.copy(r.path, W.weights_dir() / r.path.name)
    shutil.copy(r.path.with_name(r.path.name + ".json"), W.weights_dir() / (r.path.name + ".json"))
    return W.weights_dir() / r.path.name


@pytest.mark.parametrize("record, words", [
    ('{"sha256": "ab', "cannot be read (JSONDecodeError"),
    ('{"source": "converted"}', "is not one this program wrote"),
    ("[1, 2]", "is not one this program wrote"),
    (b"\xff\xfe\x00garbage", "cannot be read (UnicodeDecodeError"),
])
def test_a_damaged_weights_record_is_one_error_with_the_fix(lpips_copy, record, words):
    sidecar = lpips_copy.with_name(lpips_copy.name + ".json")
    sidecar.write_bytes(record if isinstance(record, bytes) else record.encode())
    with pytest.raises(W.WeightsError, match="lpips-alex: the record") as e:
        W.load_lpips("alex")
    assert words in str(e.value) and f"delete '{lpips_copy}'" in str(e.value)
    assert "grn-eval weights prepare lpips-alex" in str(e.value)


def test_a_damaged_weights_record_fails_verify_not_the_program(lpips_copy, capsys):
    lpips_copy.with_name(lpips_copy.name + ".json").write_text('{"sha')
    code, out = _cli(capsys, "weights", "verify", "lpips-alex", "--no-convert")
    assert code == 1 and "FAILED" in out.upper() and "cannot be read" in out


def test_a_folder_in_place_of_a_weights_file_is_named(lpips_copy):
    lpips_copy.unlink()
    lpips_copy.mkdir()
    with pytest.raises(W.WeightsError, match=r"lpips-alex: cache path .* is not a file\. Fix: delete it"):
        W.load_lpips("alex")


def test_a_truncated_feature_cache_entry_is_recomputed_not_trusted(tmp_path):
    from grn_eval.cache import FeatureCache

    calls = []

    class Extractor:
        fingerprint = "test"

        def __call__(self, images):
            calls.append(len(images))
            return {"pool": images.reshape(len(images), -1).astype(np.float64)}

    cache, images = FeatureCache(tmp_path), np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3)
    first = cache.features(Extractor(), images)["pool"]
    entry = next(tmp_path.rglob("*.npz"))
    entry.write_bytes(entry.read_bytes()[:100])
    again = cache.features(Extractor(), images)["pool"]
    assert calls == [2, 2] and np.array_equal(again, first) and np.array_equal(again[1], np.arange(12, 24))
    assert cache.features(Extractor(), images)["pool"].shape == (2, 12) and calls == [2, 2]  # rewritten whole

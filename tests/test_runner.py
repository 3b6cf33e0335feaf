import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from grn.data import load_mnist, save_npz
from grn_eval import runner as R
from grn_eval import weights as W
from grn_eval.cache import FeatureCache
from grn_eval.runner import Runner, run_suite
from grn_eval.suite import load_suite

SUITES = Path(__file__).parent / "suites"


def _gen_suite(tmp_path, overrides=None):
    shutil.copy(SUITES / "gen_npz.yaml", tmp_path / "gen_npz.yaml")
    save_npz(tmp_path / "samples.npz", load_mnist("train").images[:40], load_mnist("train").labels[:40])
    return load_suite(tmp_path / "gen_npz.yaml", overrides)


def _values(result):
    return {(r["model"], r["metric"], r["seed"]): r["value"] for r in result["rows"]}


def test_identity_reconstruction_suite(tmp_path):
    res = run_suite(load_suite(SUITES / "recon_identity.yaml"), run_dir=tmp_path / "run", progress=False)
    v = {r["metric"]: r["value"] for r in res["rows"]}
    assert v["psnr"] == np.inf and v["ssim"] == 1.0 and v["lpips_alex"] == pytest.approx(0, abs=1e-7)
    assert abs(v["rfid"]) < 1e-3  # identical features; N=40 < 2048 leaves only rounding in zero eigenvalues
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["suite_hash"] == res["suite_hash"] and "tf-inception" in saved["weights"]
    lp = next(r for r in saved["rows"] if r["metric"] == "lpips_alex")
    assert lp["protocol"]["weights"]["sha256"] == W.load_lpips("alex")[1].sha256
    assert saved["reference"]["dataset"] == "photos32/val" and len(saved["reference"]["sha256"]) == 64


def test_generation_metrics_match_torch_fidelity(tmp_path):
    """Parity: our FID and KID equal torch-fidelity's calculate_metrics on the same images and weights."""
    import torch_fidelity

    suite = _gen_suite(tmp_path, {"seeds": [2020]})  # torch-fidelity's default KID subset seed
    res = run_suite(suite, run_dir=tmp_path / "run", progress=False)
    v = {r["metric"]: r for r in res["rows"]}

    class DS(torch.utils.data.Dataset):
        def __init__(self, images):
            self.x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    _, inc = W.load_inception()
    ref = torch_fidelity.calculate_metrics(
        input1=DS(load_mnist("train").images[:40]), input2=DS(load_mnist("reference").images[:40]), fid=True, kid=True,
        kid_subsets=10, kid_subset_size=20, feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(inc.path), cuda=False, cache=False, verbose=False, batch_size=16)
    assert v["fid"]["value"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-4)
    assert v["kid"]["value"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4, abs=1e-6)
    assert 0 <= v["precision"]["value"] <= 1 and 0 <= v["recall"]["value"] <= 1
    assert v["isc"]["value"] is None and "not available: needs" in v["isc"]["reason"]
    assert v["fid"]["extra"]["mean_term"] + v["fid"]["extra"]["cov_term"] == pytest.approx(v["fid"]["value"])


SMALL = {"n_samples": 20, "batch_size": 5, "metrics": {"fid": {}, "kid": {"subsets": 5, "subset_size": 10}}}


class Interrupted(RuntimeError):
    """A crash after a given number of written shards."""


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    suite = _gen_suite(tmp_path, SMALL)
    full = run_suite(suite, run_dir=tmp_path / "full", progress=False)
    written, write = [], R.write_shard

    def write_then_crash(path, **arrays):
        write(path, **arrays)
        written.append(path)
        if len(written) == 2:
            raise Interrupted("simulated crash after 2 shards")

    monkeypatch.setattr(R, "write_shard", write_then_crash)
    with pytest.raises(Interrupted):
        Runner(suite, run_dir=tmp_path / "resumed", progress=False).run()
    monkeypatch.setattr(R, "write_shard", write)
    assert len(list((tmp_path / "resumed").rglob("shard_*.npz"))) == 2  # of 4
    resumed = run_suite(suite, run_dir=tmp_path / "resumed", progress=False)
    assert _values(resumed) == _values(full)


def test_cache_hit_changes_nothing_but_time(tmp_path):
    suite = _gen_suite(tmp_path, SMALL)
    cache = FeatureCache(tmp_path / "cache")
    cold = Runner(suite, run_dir=tmp_path / "a", progress=False, cache=cache).run()
    warm_cache = FeatureCache(tmp_path / "cache")
    warm = Runner(suite, run_dir=tmp_path / "b", progress=False, cache=warm_cache).run()
    assert _values(cold) == _values(warm)
    assert warm_cache.misses == 0 and warm_cache.hits > 0 and cold["cache"]["misses"] > 0


def test_features_do_not_depend_on_batch_size():
    from grn_eval.features import InceptionFeatures

    images = load_mnist("reference").images[:6]
    a = InceptionFeatures(batch_size=6)(images)["pool"]
    b = InceptionFeatures(batch_size=1)(images)["pool"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_exports_and_per_sample_logs(tmp_path):
    suite = _gen_suite(tmp_path, {"export": ["npz", "png"]})
    run_suite(suite, run_dir=tmp_path / "run", progress=False)
    folder = next((tmp_path / "run" / "samples").glob("*/seed0"))
    from grn.data import load_npz

    batch = load_npz(folder / "samples.npz")
    assert np.array_equal(batch.images, load_mnist("train").images[:40])
    assert len(list((folder / "png").glob("*.png"))) == 40


def _tiny_grn_checkpoints(tmp_path):
    from grn.checkpoint import checkpoint_record, export_tokenizer
    from grn.fileio import save_torch
    from grn.generator import build_generator
    from grn.tokenizer import build_tokenizer

    export_tokenizer(build_tokenizer("hbq-mnist", enc_dim=8, dec_dim=8), tmp_path / "tok.pt")
    torch.manual_seed(0)
    g = build_generator("GRN-T", hidden=32, depth=2, heads=2)
    with torch.no_grad():
        g.net.final_layer.linear.weight.normal_(0, 0.3)
    save_torch(checkpoint_record(g, "GRN-T", g.state_dict()), tmp_path / "gen.pt")


def test_grn_adapter_suite_with_entropy_and_latency(tmp_path):
    """The grn adapter end to end without Inception: entropy-vs-steps, latency, per-sample logs."""
    _tiny_grn_checkpoints(tmp_path)
    (tmp_path / "s.yaml").write_text(
        "name: tiny\ndatasets: {ref: {name: mnist, split: reference}}\n"
        "models:\n"
        "  - {name: fixed, adapter: grn, checkpoint: gen.pt, tokenizer: tok.pt, sampler: {steps: [4, 8]}}\n"
        "  - {name: guided, adapter: grn, checkpoint: gen.pt, tokenizer: tok.pt, sampler: {steps: 12},\n"
        "     entropy: {warmup: 2, t_min: 4, t_max: 12, calibrate: true}}\n"
        "metrics: {entropy: {}, latency: {warmup: 1, repeats: 2}}\nreference: {dataset: ref}\n"
        "n_samples: 12\nbatch_size: 6\n")
    res = run_suite(load_suite(tmp_path / "s.yaml"), run_dir=tmp_path / "run", progress=False)
    steps = {r["model"]: r for r in res["rows"] if r["metric"] == "mean_steps"}
    assert steps["fixed[sampler.steps=4]"]["value"] == 4 and steps["fixed[sampler.steps=8]"]["value"] == 8
    guided = steps["guided"]
    assert 4 <= guided["value"] <= 12 and len(guided["extra"]["steps_used"]) == 12
    lat = [r for r in res["rows"] if r["metric"] == "seconds_per_image"]
    assert len(lat) == 3 and all(r["value"] > 0 and r["extra"]["nfe_per_image"] >= 4 for r in lat)
    logs = (tmp_path / "run" / "samples" / "guided" / "seed0" / "per_sample.jsonl").read_text().splitlines()
    assert len(logs) == 12 and json.loads(logs[0])["decision_entropy"] is not None
    assert res["models"]["guided"]["entropy"]["k"] != 700.0  # calibrated to this model
    stages = res["stages"]["per_stage"]  # latency's own batches are its time, not sampling / decoding
    assert stages["sampling"]["calls"] == stages["decoding"]["calls"] == 6 and stages["metric:latency"]["calls"] == 3


def test_latency_times_the_runs_own_shards_and_fresh_batches_after_a_resume(tmp_path):
    _tiny_grn_checkpoints(tmp_path)
    (tmp_path / "s.yaml").write_text(
        "name: tiny\ndatasets: {ref: {name: mnist, split: reference}}\n"
        "models:\n  - {name: g, adapter: grn, checkpoint: gen.pt, tokenizer: tok.pt, sampler: {steps: 3}}\n"
        "metrics: {latency: {warmup: 1, repeats: 2}}\nreference: {dataset: ref}\nn_samples: 20\nbatch_size: 6\n")
    suite = load_suite(tmp_path / "s.yaml")
    first = run_suite(suite, run_dir=tmp_path / "run", progress=False)
    (lat,) = [r for r in first["rows"] if r["metric"] == "seconds_per_image"]
    # shards 0-3 hold 6, 6, 6, 2 samples: shard 0 is the warm-up, the short one is left out
    assert lat["extra"]["timed"] == "the run's sampling shards 1-2" and lat["extra"]["repeats"] == 2
    assert lat["extra"]["nfe_per_image"] == 3 and first["stages"]["per_stage"]["sampling"]["calls"] == 4
    per = first["stages"]["per_stage"]  # its peak is the sampling / decoding stages' (the log resets the peaks)
    assert lat["extra"]["peak_memory_bytes"] == max(per[k]["peak_rss_bytes"] for k in ("sampling", "decoding"))
    resumed = run_suite(suite, run_dir=tmp_path / "run", progress=False)  # every shard read from disk
    (lat,) = [r for r in resumed["rows"] if r["metric"] == "seconds_per_image"]
    assert lat["extra"]["timed"] == "fresh batches" and lat["value"] > 0


def test_without_a_bootstrap_fid_and_sfid_stream_their_statistics_to_the_same_bits(tmp_path):
    """bootstrap: 0 accumulates the statistics block by block (Runner.statistics) instead of holding every
    feature; the values equal those of the held features exactly, the interval is simply absent."""
    metrics = {"fid": {}, "sfid": {}}
    shards = {"n_samples": 40, "batch_size": 20}
    cache = FeatureCache(tmp_path / "cache")
    held = run_suite(_gen_suite(tmp_path, {**shards, "metrics": metrics}), run_dir=tmp_path / "a", progress=False,
                     cache=cache)
    streamed = run_suite(_gen_suite(tmp_path, {**shards, "metrics": {k: {"bootstrap": 0} for k in metrics}}),
                         run_dir=tmp_path / "b", progress=False, cache=cache)
    h, st = ({r["metric"]: r for r in res["rows"]} for res in (held, streamed))
    for name in metrics:
        assert st[name]["value"] == h[name]["value"] and st[name]["protocol"] == h[name]["protocol"]
        assert h[name]["ci_low"] is not None and st[name]["ci_low"] is None


def test_a_run_records_seconds_and_peak_memory_per_stage(tmp_path):
    res = run_suite(_gen_suite(tmp_path, SMALL), run_dir=tmp_path / "run", progress=False)
    stages = res["stages"]["per_stage"]
    assert {"data", "calibration", "sampling", "features", "statistics", "metric:fid", "metric:kid"} <= set(stages)
    assert stages["sampling"]["calls"] == 4  # one per shard
    assert all(s["seconds"] >= 0 and s["peak_rss_bytes"] > 0 for s in stages.values())
    assert sum(s["seconds"] for s in stages.values()) <= res["timings"]["total"]  # exclusive times add up
    assert json.loads((tmp_path / "run" / "results.json").read_text())["stages"]["per_stage"].keys() == stages.keys()


def test_a_run_folder_of_another_configuration_is_refused(tmp_path):
    suite = _gen_suite(tmp_path, SMALL)
    run_suite(suite, run_dir=tmp_path / "run", progress=False)
    other = _gen_suite(tmp_path, {**SMALL, "n_samples": 15})
    with pytest.raises(ValueError, match="another suite configuration"):
        run_suite(other, run_dir=tmp_path / "run", progress=False)

"""Video through the harness: a text-to-video GRN_bit (GRN-bit-T2V-T at a tiny width, random weights) sampled by
a suite on the causal-3D tokenizer, FVD with the real I3D, video prompt accuracy, image metrics per frame, the
reconstruction suite's rFVD, and the published GIF / frame strips. Random weights: plumbing only, every value is
checked for what it is (finite, in range, recorded with its protocol), none is a result."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from grn import registry

TINY = {"hidden": 64, "depth": 2, "heads": 4, "text": {"width": 32, "depth": 1, "heads": 2}}
TOKENIZER = {"enc_dim": 8, "dec_dim": 8}  # hbq-mmnist-video at half its width


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from grn.checkpoint import checkpoint_record, export_tokenizer
    from grn.fileio import save_torch, sha256_file
    from grn.tokenizer import build_tokenizer

    out = tmp_path_factory.mktemp("video")
    torch.manual_seed(0)
    export_tokenizer(build_tokenizer("hbq-mmnist-video", **TOKENIZER), out / "tok.pt")
    model = registry.build_model("GRN-bit-T2V-T", **TINY)
    record = checkpoint_record(model, "GRN-bit-T2V-T", model.state_dict(), tokenizer_sha256=sha256_file(out / "tok.pt"))
    save_torch(record, out / "t2v.pt")
    return out


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_video_model_is_the_text_to_image_one_on_space_time_tokens():
    with torch.device("meta"):
        video, image = registry.build_model("GRN-bit-T2V-T"), registry.build_model("GRN-bit-T2I-T")
    assert (video.cfg.hidden, video.cfg.depth, video.cfg.heads) == (image.cfg.hidden, image.cfg.depth, image.cfg.heads)
    assert (video.cfg.frames, video.cfg.grid, video.cfg.latent_channels, video.cfg.bits) == (5, 8, 4, 16)
    from grn.grn_bit_sampling import PRESETS, sampler_grid, trained_grid

    assert sampler_grid(video) == (5, 8, 8) and trained_grid(video, PRESETS["GRN-2B-t2v"]).grid == (5, 8, 8)
    from grn.tokenizer import build_tokenizer

    with torch.device("meta"):
        tok = build_tokenizer("hbq-mmnist-video")
    assert tok.video_token_shape(17, 32) == (4, 5, 8, 8)


def test_a_video_suite_samples_and_scores_videos(files, tmp_path):
    from grn_eval.publish import sample_video_files
    from grn_eval.runner import run_suite
    from grn_eval.suite import load_suite

    entry = {"name": "t2v", "adapter": "grn-bit", "checkpoint": str(files / "t2v.pt"),
             "tokenizer": str(files / "tok.pt"), "sampler": {"preset": "GRN-2B-t2v", "steps": 3}}
    suite = _write(tmp_path / "s.yaml", {
        "name": "tiny_t2v", "datasets": {"ref": {"name": "moving_mnist", "split": "reference"}}, "models": [entry],
        "metrics": {"fvd": {"bootstrap": 20}, "video_prompt_accuracy": {"bootstrap": 20}, "entropy": {},
                    "latency": {"warmup": 0, "repeats": 1}},
        "reference": {"dataset": "ref"}, "n_samples": 4, "batch_size": 4})
    res = run_suite(load_suite(suite), run_dir=tmp_path / "run", progress=False)
    rows = {r["metric"]: r for r in res["rows"]}
    shard = next((tmp_path / "run" / "samples" / "t2v" / "seed0").glob("shard_*.npz"))
    with np.load(shard) as f:
        assert f["arr_0"].shape == (4, 17, 32, 32, 3) and f["arr_0"].dtype == np.uint8
    fvd = rows["fvd"]
    assert np.isfinite(fvd["value"]) and fvd["value"] >= 0 and fvd["n"] == 4
    protocol = json.loads(fvd["protocol"]) if isinstance(fvd["protocol"], str) else fvd["protocol"]
    assert (protocol["frames"], protocol["stride"], protocol["n_reference_videos"]) == (16, 1, 4)
    assert protocol["resolution"] == "32x32 -> 224x224" and protocol["weights"]["asset"] == "i3d-kinetics-400"
    for name in ("video_prompt_accuracy", "video_digit_accuracy", "video_direction_accuracy", "video_speed_accuracy"):
        assert 0 <= rows[name]["value"] <= 1 and rows[name]["extra"]["recovery_on_real_accuracy"] > 0.9
    assert rows["mean_steps"]["value"] == 3 and res["models"]["t2v"]["prompts"][0].startswith("a handwritten zero")
    written = sample_video_files(tmp_path / "run", tmp_path / "plots" / "tiny_t2v_sample_videos")
    assert {p.suffix for p in written} == {".gif", ".mp4", ".png", ".pdf"}
    assert all(p.stat().st_size > 0 for p in written)
    import imageio.v2 as iio2
    import imageio.v3 as iio

    gif = iio.imread(next(p for p in written if p.suffix == ".gif"), index=None)
    assert gif.shape[0] == 17  # one per frame
    reader = iio2.get_reader(next(p for p in written if p.suffix == ".mp4"), format="FFMPEG")
    assert reader.count_frames() == 17
    mp4 = np.stack([reader.get_data(i) for i in range(17)])[:, : gif.shape[1], : gif.shape[2]]
    assert mp4.shape == gif.shape[:3] + (3,)  # the same frames, decoded back (H.264 is lossy: within a few levels)
    assert np.abs(mp4.astype(int) - gif[..., :3].astype(int)).mean() < 4


def test_image_metrics_see_every_frame_and_rfvd_pairs_the_reconstructions(files, tmp_path):
    from grn_eval.runner import run_suite
    from grn_eval.suite import load_suite

    suite = _write(tmp_path / "r.yaml", {
        "name": "tiny_video_recon", "datasets": {"ref": {"name": "moving_mnist", "split": "reference"}},
        "models": [{"name": "tok", "adapter": "tokenizer", "family": "tokenizer", "checkpoint": str(files / "tok.pt"),
                    "rounds": 2}],
        "metrics": {"psnr": {}, "ssim": {}, "rfvd": {"bootstrap": 0}},
        "reference": {"dataset": "ref"}, "n_samples": 3, "batch_size": 3})
    res = run_suite(load_suite(suite), run_dir=tmp_path / "run", progress=False)
    rows = {r["metric"]: r for r in res["rows"]}
    for name in ("psnr", "ssim"):
        assert rows[name]["n"] == 3 * 17 and rows[name]["extra"]["per_frame"] == {
            "videos": 3, "frames_per_video": 17, "frame_stride": 1, "clip_frames": 17, "reference_videos": 3}
    assert np.isfinite(rows["rfvd"]["value"]) and rows["rfvd"]["n"] == 3


def test_fvd_on_images_says_why_it_is_not_available(tmp_path):
    from grn_eval.metrics import registry as metrics

    spec = metrics.get("fvd")
    assert spec.video and not metrics.get("fid").video

    class Ctx:
        samples = np.zeros((2, 8, 8, 3), np.uint8)
        reference_images = samples

        def row(self, name, value, protocol, reason=None, **_):
            return {"metric": name, "value": value, "reason": reason}

    (row,) = spec.compute(Ctx())
    assert row["value"] is None and "FVD compares videos" in row["reason"]


@pytest.mark.parametrize("kind,size,sampler", [("ar", "AR-T", {"guidance": 2.0}),
                                              ("flow", "Flow-T", {"steps": 2, "method": "heun", "guidance": 2.0})])
def test_class_conditional_video_baselines_are_asked_their_class_prompts(files, tmp_path, kind, size, sampler):
    """The AR and flow video baselines of suites/t2v_mnist.yaml (grn/configs/*_mmnist_video.yaml) sample NTHWC
    videos through the same suite path, and video prompt accuracy asks each sample its motion class's prompt
    (sample i: class i % 160, whose first 80 prompts are the text models' 80)."""
    from grn.checkpoint import checkpoint_record
    from grn.fileio import save_torch, sha256_file
    from grn.video_captions import class_prompts, video_prompts
    from grn_eval.runner import run_suite
    from grn_eval.suite import load_suite

    torch.manual_seed(0)
    over = {"grid": 8, "latent_channels": 4, "frames": 5, "num_classes": 160, "hidden": 32, "depth": 1, "heads": 2}
    model = registry.build_model(size, **over)
    save_torch(checkpoint_record(model, size, model.state_dict(), tokenizer_sha256=sha256_file(files / "tok.pt")),
               tmp_path / "m.pt")
    suite = _write(tmp_path / "s.yaml", {
        "name": "tiny_video_baseline", "datasets": {"ref": {"name": "moving_mnist", "split": "reference"}},
        "models": [{"name": "b", "adapter": kind, "checkpoint": str(tmp_path / "m.pt"),
                    "tokenizer": str(files / "tok.pt"), "sampler": sampler}],
        "metrics": {"video_prompt_accuracy": {"bootstrap": 0}}, "reference": {"dataset": "ref"},
        "n_samples": 3, "batch_size": 3})
    res = run_suite(load_suite(suite), run_dir=tmp_path / "run", progress=False)
    with np.load(next((tmp_path / "run" / "samples" / "b" / "seed0").glob("shard_*.npz"))) as f:
        assert f["arr_0"].shape == (3, 17, 32, 32, 3) and f["arr_0"].dtype == np.uint8
        assert f["arr_1"].tolist() == [0, 1, 2]
    rows = {r["metric"]: r for r in res["rows"]}
    for name in ("video_prompt_accuracy", "video_digit_accuracy", "video_direction_accuracy", "video_speed_accuracy"):
        assert 0 <= rows[name]["value"] <= 1 and rows[name]["n"] == 3
    assert class_prompts()[:80] == video_prompts()
    # the prompts its classes stand for are recorded with the model (its frame strips are labelled with them)
    assert res["models"]["b"]["prompts"] == class_prompts()


def test_only_the_motion_classes_are_read_as_prompts():
    from grn.video_captions import class_model_prompts, class_prompts

    assert class_model_prompts(160) == class_prompts() and len(set(class_prompts())) == 160
    assert class_model_prompts(101) is None and class_model_prompts(1) is None  # e.g. a UCF-101 class model

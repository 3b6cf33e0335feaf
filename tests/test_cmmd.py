"""CMMD (grn_eval/metrics/cmmd.py): the estimator against a direct O(N^2) formula, known answers, and the
weights plumbing with a tiny random CLIP saved to a file (so no number is reported); without weights one
message naming the file to provide."""

import json

import numpy as np
import pytest
import torch

from grn_eval import intervals
from grn_eval import weights as W
from grn_eval.metrics import registry
from grn_eval.metrics.clip_score import load_clip
from grn_eval.metrics.cmmd import SCALE, clip_embeddings, cmmd_weighted


def _direct(x, y, sigma=10.0):
    """SCALE * MMD^2 V-statistic, pair by pair."""
    def k(a, b):
        return np.exp(-((a - b) ** 2).sum() / (2 * sigma**2))

    kxx = np.mean([k(a, b) for a in x for b in x])
    kyy = np.mean([k(a, b) for a in y for b in y])
    kxy = np.mean([k(a, b) for a in x for b in y])
    return SCALE * (kxx + kyy - 2 * kxy)


def test_estimator_matches_the_direct_formula_and_the_resampled_sets():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 8)) * 4, rng.standard_normal((20, 8)) * 4 + 1.5
    assert cmmd_weighted(x, y)[0] == pytest.approx(_direct(x, y), rel=1e-10)
    assert cmmd_weighted(x, x)[0] == pytest.approx(0, abs=1e-9) and cmmd_weighted(x, y)[0] > 0
    w, v = intervals.counts(30, 2, 0, "x"), intervals.counts(20, 2, 0, "y")
    got = cmmd_weighted(x, y, w, v)
    for b in range(2):
        xb, yb = (a[np.repeat(np.arange(len(a)), c[b].astype(int))] for a, c in ((x, w), (y, v)))
        assert got[b] == pytest.approx(_direct(xb, yb), rel=1e-10)


def test_without_weights_the_run_stops_before_sampling_naming_the_fix(no_hub_cache, asset_runner):
    spec = registry.get("cmmd")
    with pytest.raises(W.WeightsAbsent, match=r"clip:ViT-L-14-336/openai: no weights on this machine .*"
                                              r"GRN_CLIP_WEIGHTS="):
        spec.prepare(asset_runner, spec.merged({}))


def test_a_weights_file_gives_unit_embeddings(no_hub_cache, tmp_path):
    import open_clip

    vision = {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16}
    config = {"embed_dim": 16, "vision_cfg": vision,
              "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
    (tmp_path / "tiny-test-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "tiny-test-clip.json")
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model("tiny-test-clip").state_dict(), weights)
    model, preprocess, _, prov = load_clip("tiny-test-clip", "none", weights)
    assert prov["sha256"] == W.sha256_file(weights) and prov["source"] == "explicit file"
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 3), dtype=np.uint8)
    e = clip_embeddings(model, preprocess, images, batch_size=2)
    assert e.shape == (5, 16) and np.allclose(np.linalg.norm(e, axis=1), 1)
    assert np.allclose(e[:2], clip_embeddings(model, preprocess, images[:2]))

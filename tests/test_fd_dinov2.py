"""FD-DINOv2 (grn_eval/metrics/fd_dinov2.py): without weights one message naming the file to provide,
before any sampling; with a user's weights file (here a tiny random ViT, so the plumbing is tested and no
number is reported) it loads strictly, honours the sha256 pin and measures features."""


import numpy as np
import pytest
import torch

from grn.errors import UserError
from grn_eval import weights as W
from grn_eval.metrics import registry
from grn_eval.metrics.fd_dinov2 import dinov2_features, load_dinov2
from grn_eval.metrics.fid import frechet_terms, gaussian_stats

TINY = "vit_tiny_patch16_224"  # a small ViT with a class token; the metric's default is DINOv2 ViT-L/14


@pytest.fixture
def tiny_weights(tmp_path):
    import timm

    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.save(timm.create_model(TINY, pretrained=False, num_classes=0).state_dict(), path)
    return path


def test_without_weights_the_run_stops_before_sampling_naming_the_fix(no_hub_cache, asset_runner):
    spec = registry.get("fd_dinov2")
    with pytest.raises(W.WeightsAbsent, match=r"no weights on this machine .*GRN_DINOV2_WEIGHTS=.*"
                                              r"vit_large_patch14_dinov2\.lvd142m"):
        spec.prepare(asset_runner, spec.merged({}))
    assert isinstance(W.WeightsAbsent("x"), UserError)  # one `error:` line and exit 1, no traceback


def test_a_weights_file_loads_strictly_and_gives_features(no_hub_cache, tiny_weights):
    model, prov = load_dinov2(TINY, tiny_weights)
    assert prov["sha256"] == W.sha256_file(tiny_weights) and prov["source"] == "explicit file"
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    f = dinov2_features(model, images, batch_size=4)
    assert f.shape == (6, 192) and f.dtype == np.float64 and np.isfinite(f).all()
    assert np.allclose(f[:2], dinov2_features(model, images[:2]))  # batch-size independent
    # 6 samples in 192 dimensions: the eigh route's clipped null space leaves about 5e-6
    assert frechet_terms(*gaussian_stats(f), *gaussian_stats(f)).total == pytest.approx(0, abs=1e-4)


def test_a_pinned_hash_or_another_network_is_refused(no_hub_cache, tiny_weights, tmp_path):
    with pytest.raises(UserError, match=r"metrics\.fd_dinov2\.sha256"):
        load_dinov2(TINY, tiny_weights, sha256="0" * 64)
    other = tmp_path / "other.pt"
    torch.save({"head.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(UserError, match="does not hold vit_tiny_patch16_224 weights"):
        load_dinov2(TINY, other)

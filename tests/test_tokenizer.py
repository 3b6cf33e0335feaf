import numpy as np
import pytest
import torch

from grn.checkpoint import load_tokenizer
from grn.data import load_mnist
from grn.hbq import hbq_quantize
from grn.tokenizer import TOKENIZERS, build_tokenizer
from grn.train import TokenizerTrainConfig, train_tokenizer
from grn_eval import weights as W


@pytest.mark.parametrize("name", ["hbq-mnist", "hbq-photo"])
def test_shapes_and_boundary_types(name):
    tok = build_tokenizer(name).eval()
    images = load_mnist("reference").images[:3]
    d, h, w = tok.token_shape(32)
    assert tok.tokenize(images).shape == (3, d, h, w) and h == 32 // tok.cfg.stride
    assert tok.tokenize(images, "bit").shape == (3, 4 * d, h, w)
    out = tok.reconstruct(images)
    assert out.dtype == np.uint8 and out.shape == images.shape
    with pytest.raises(TypeError):
        tok.tokenize(torch.zeros(1, 32, 32, 3))


def test_official_shape_builds_on_meta():
    with torch.device("meta"):
        tok = build_tokenizer("hbq-f16-d16")
    assert tok.cfg.stride == 16 and tok.cfg.latent_channels == 16 and tok.cfg.rounds == 4


@pytest.mark.parametrize("stride_mults", [(1, 2), (1, 2, 2), (1, 2, 2, 2)])
def test_strides_4_8_16(stride_mults):
    tok = build_tokenizer("hbq-mnist", dim_mult=stride_mults)
    assert tok.cfg.stride == 2 * 2 ** (len(stride_mults) - 1)
    z = tok.encode(load_mnist("reference").images[:1])
    assert z.shape[-1] == 32 // tok.cfg.stride and z.abs().max() < 1


def test_decode_tokens_equals_reconstruct_in_both_layouts():
    tok = build_tokenizer("hbq-mnist").eval()
    images = load_mnist("reference").images[:4]
    want = tok.reconstruct(images)
    for layout in ("ind", "bit"):
        assert np.array_equal(tok.decode_tokens(tok.tokenize(images, layout), layout), want)


def test_truncated_rounds_are_the_shorter_quantization_of_the_same_latent():
    """Keeping the first M' of M = 8 rounds equals quantizing the latent with M' rounds (the bits are a prefix),
    within 2^-M' of it; more rounds than trained, or rounds of a continuous tokenizer, are refused."""
    from grn.data import to_uint8_images

    tok = build_tokenizer("hbq-mnist", rounds=8).eval()
    images = load_mnist("reference").images[:3]
    z = tok.encode(images)
    full = hbq_quantize(z, 8)
    for m in (1, 3, 8):
        short = hbq_quantize(z, m)
        assert torch.equal(full.bits[..., :m], short.bits) and (z - short.values).abs().max() <= 2.0**-m
        with torch.no_grad():
            want = to_uint8_images(tok.decode_float(short.values))
        assert np.array_equal(tok.reconstruct(images, rounds=m), want)
    assert np.array_equal(tok.reconstruct(images, rounds=8), tok.reconstruct(images))
    for bad in (0, 9):
        with pytest.raises(ValueError, match="decodes at 1 ... M"):
            tok.reconstruct(images, rounds=bad)
    with pytest.raises(ValueError, match="continuous"):
        build_tokenizer("hbq-mnist", rounds=None).reconstruct(images, rounds=2)


def test_continuous_tokenizer_has_no_tokens():
    tok = build_tokenizer("hbq-mnist", rounds=None)
    with pytest.raises(ValueError, match="continuous"):
        tok.tokenize(load_mnist("reference").images[:1])
    z = tok.encode(load_mnist("reference").images[:1])
    assert np.array_equal(tok.decode_latent(z), tok.reconstruct(load_mnist("reference").images[:1]))


def _tiny_cfg(lpips_path):
    return TokenizerTrainConfig(
        tokenizer="hbq-mnist", tokenizer_overrides={"enc_dim": 8, "dec_dim": 8}, steps=6, batch_size=4,
        lpips_net="alex", lpips_weights=str(lpips_path), gan_weight=0.3, gan_start=2, disc_ndf=8,
        checkpoint_every=3, log_every=1, lr=1e-3,
    )


def test_resume_continues_exactly(tmp_path):
    """Interrupt after 3 steps, resume: the loss sequence equals the uninterrupted run's."""
    _, lp = W.load_lpips("alex")
    cfg = _tiny_cfg(lp.path)
    full = train_tokenizer(cfg, tmp_path / "full", progress=False)
    first = train_tokenizer(cfg, tmp_path / "resumed", max_steps=3, progress=False)
    second = train_tokenizer(cfg, tmp_path / "resumed", progress=False)
    assert [r["step"] for r in first + second] == list(range(1, 7))
    assert [r["loss"] for r in first + second] == [r["loss"] for r in full]
    assert [r["d_loss"] for r in first + second] == [r["d_loss"] for r in full]
    assert full[-1]["d_loss"] > 0 and full[0]["d_loss"] == 0  # the GAN starts at step 2
    a, b = load_tokenizer(tmp_path / "full" / "tokenizer.pt"), load_tokenizer(tmp_path / "resumed" / "tokenizer.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_training_reduces_the_loss(tmp_path):
    cfg = TokenizerTrainConfig(tokenizer="hbq-mnist", steps=40, batch_size=16, lpips_weight=0.0, gan_weight=0.0,
                               checkpoint_every=1000, lr=2e-3)
    hist = train_tokenizer(cfg, tmp_path, progress=False)
    assert np.mean([r["l1"] for r in hist[-5:]]) < 0.6 * np.mean([r["l1"] for r in hist[:5]])


def test_missing_lpips_weights_is_a_clear_error(tmp_path):
    cfg = TokenizerTrainConfig(steps=1, lpips_weights=None)
    with pytest.raises(FileNotFoundError, match="grn-eval weights path lpips-vgg"):
        train_tokenizer(cfg, tmp_path, progress=False)


def test_registry_has_the_documented_configs():
    assert {"hbq-mnist", "hbq-photo", "hbq-f16-d16"} <= set(TOKENIZERS)
    z = torch.tensor([[0.3]])
    assert hbq_quantize(z, 4).labels.item() == 10

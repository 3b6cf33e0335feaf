from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grn.checkpoint import load_tokenizer as load_any_tokenizer  # official files too
from grn.convert import (
    OFFICIAL_TOKENIZER_UNUSED,
    CheckpointError,
    load_official_generator,
    load_official_tokenizer,
    official_generator_name,
    official_generator_state,
    official_tokenizer_layout,
)
from grn.tokenizer import TOKENIZERS, build_tokenizer, tokenizer_config

# every key, shape and dtype of the official checkpoints (no values), read off the public code
LAYOUT = Path(__file__).resolve().parent / "data" / "grn_official_layouts.tsv"


def _shape(text: str) -> tuple[int, ...]:
    """'(768, 256)' -> (768, 256)."""
    return tuple(int(x) for x in text.strip("()").split(",") if x.strip())


def _official_like_state(name: str) -> dict:
    """A random state dict with exactly the official keys and shapes (from the layout file)."""
    tag = name.replace("-", "_")
    rows = [line.rstrip("\n").split("\t") for line in LAYOUT.open() if line.startswith(tag + "\t")]
    shapes = {r[1]: _shape(r[2]) for r in rows}
    g = torch.Generator().manual_seed(0)
    return {f"net.{k}": torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}


def test_grn_b_official_layout_converts_strictly_and_runs(tmp_path):
    state = _official_like_state("GRN-B")
    ckpt = {"model": state, "model_ema1": state, "model_ema2": state, "epoch": 600}
    torch.save(ckpt, tmp_path / "official.pth")
    model = load_official_generator(tmp_path / "official.pth", "GRN-B")
    assert torch.equal(model.state_dict()["net.pos_embed"], state["net.pos_embed"])
    from grn.checkpoint import load_model  # what suites call: official files are recognised, the size read off

    auto = load_model(tmp_path / "official.pth")
    assert auto.cfg == model.cfg and torch.equal(auto.state_dict()["net.pos_embed"], state["net.pos_embed"])
    with torch.no_grad():
        logits = model(torch.randint(0, 16, (1, 16, 16, 16)), torch.tensor([0.5]), torch.tensor([3]))
    assert logits.shape == (1, 16, 16, 16, 16) and torch.isfinite(logits).all()


def test_wrong_shape_and_missing_key_name_the_key():
    state = _official_like_state("GRN-B")
    bad = dict(state)
    bad["net.blocks.3.attn.qkv.weight"] = torch.zeros(10, 10)
    with pytest.raises(CheckpointError, match=r"blocks\.3\.attn\.qkv\.weight.*shape"):
        load_official_generator({"model_ema1": bad}, "GRN-B")
    missing = {k: v for k, v in state.items() if k != "net.final_layer.linear.bias"}
    with pytest.raises(CheckpointError, match="final_layer.linear.bias"):
        load_official_generator({"model_ema1": missing}, "GRN-B")
    with pytest.raises(CheckpointError, match="model_ema2"):
        official_generator_state({"model": state}, "ema2")


@pytest.mark.parametrize("name", ["GRN-L", "GRN-H", "GRN-G"])
def test_large_official_layouts_match_on_meta(name):
    from grn.generator import build_generator

    with torch.device("meta"):
        mine = {k: tuple(v.shape) for k, v in build_generator(name).state_dict().items()}
    tag = name.replace("-", "_")
    rows = [line.rstrip("\n").split("\t") for line in LAYOUT.open() if line.startswith(tag + "\t")]
    assert {f"net.{r[1]}": _shape(r[2]) for r in rows} == mine


# ---------------------------------------------------------------------------------------
# The official HBQ tokenizers (causal-3D VAEs) -> this project's HBQTokenizer (the same network)
# ---------------------------------------------------------------------------------------

TOKENIZER_TAG = "HBQ_image_tokenizer_16dim_M4"
SMALL = {"enc_dim": 8, "dec_dim": 8}  # the official structure at 1/20 (encoder) and 1/32 (decoder) width


def _tsv_shapes(tag: str, layout: Path = LAYOUT) -> dict:
    rows = [line.rstrip("\n").split("\t") for line in layout.open() if line.startswith(tag + "\t")]
    return {r[1]: _shape(r[2]) for r in rows}


def _official_tokenizer_shapes(**overrides) -> dict:
    """Official keys and shapes: the TSV (full size), or read off the layout of a reduced-width build."""
    if not overrides:
        return _tsv_shapes(TOKENIZER_TAG)
    with torch.device("meta"):
        tok = build_tokenizer("hbq-f16-d16", **overrides)
    return {k: shape for k, (_, shape) in official_tokenizer_layout(tok).items()}


def _random_official_state(shapes: dict, seed: int = 0) -> dict:
    """Values of a plausible scale: weights ~ 1/sqrt(fan_in), norm gains near 1, small biases."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, s in shapes.items():
        if k.endswith(".gamma"):
            state[k] = 1 + 0.1 * torch.randn(s, generator=g)
        elif k.endswith(".bias"):
            state[k] = 0.1 * torch.randn(s, generator=g)
        else:
            state[k] = torch.randn(s, generator=g) / torch.Size(s[1:]).numel() ** 0.5
    return state


def test_official_tokenizer_layout_matches_the_released_file_and_loads_on_meta():
    """Every key and shape of the released tokenizer, converted and loaded strictly (full size, on meta)."""
    shapes = _tsv_shapes(TOKENIZER_TAG)
    assert _official_tokenizer_shapes(**{}) == shapes
    with torch.device("meta"):
        layout = official_tokenizer_layout(build_tokenizer("hbq-f16-d16"))
        state = {k: torch.empty(s) for k, s in shapes.items()}
        tok = load_official_tokenizer({"vae": state, "ema": state})  # strict load_state_dict inside
    assert {k: s for k, (_, s) in layout.items()} == shapes
    # every official key is consumed, the temporal re-sampling convs too (encoder levels 1, 2 and decoder
    # levels 0, 1: weight + bias each)
    assert all(ours is not None for ours, _ in layout.values()) and not OFFICIAL_TOKENIZER_UNUSED
    assert sum("time_conv" in k for k in layout) == 8
    assert tok.cfg.stride == 16 and tok.cfg.latent_channels == 16 and tok.cfg.temporal_stride == 4
    # the reduced-width variant used below has exactly the same keys
    assert set(_official_tokenizer_shapes(**SMALL)) == set(shapes)


@pytest.mark.parametrize("kernel", [3, 1])
def test_causal_conv3d_on_one_frame_is_conv2d_with_the_last_temporal_slice(kernel):
    g = torch.Generator().manual_seed(kernel)
    x = torch.randn(2, 5, 1, 9, 7, generator=g)  # one frame
    w = torch.randn(6, 5, kernel, kernel, kernel, generator=g)
    b = torch.randn(6, generator=g)
    pad = kernel // 2
    # causal: 2 * pad zero frames in front of the clip (none behind), 'same' zero padding in space
    y3 = F.conv3d(F.pad(x, (pad, pad, pad, pad, 2 * pad, 0)), w, b)
    y2 = F.conv2d(x[:, :, 0], w[:, :, -1], b, padding=pad)
    assert y3.shape[2] == 1
    torch.testing.assert_close(y3[:, :, 0], y2, rtol=0, atol=1e-5)


def test_official_tokenizer_wrong_shape_and_missing_key_name_the_key():
    shapes = _official_tokenizer_shapes()
    with torch.device("meta"):
        state = {k: torch.empty(s) for k, s in shapes.items()}
        bad = dict(state)
        bad["decoder.upsamples.2.upsamples.0.shortcut.weight"] = torch.empty(512, 1024, 1, 1)
        with pytest.raises(CheckpointError, match=r"decoder\.upsamples\.2\.upsamples\.0\.shortcut\.weight.*shape"):
            load_official_tokenizer({"ema": bad})
        missing = {k: v for k, v in state.items() if k != "encoder.middle.1.proj.bias"}
        with pytest.raises(CheckpointError, match=r"encoder\.middle\.1\.proj\.bias"):
            load_official_tokenizer({"ema": missing})
    with pytest.raises(CheckpointError, match="'ema' or 'vae'"):
        load_official_tokenizer({"model": {}})


# An independent single-frame reference of the official causal-3D tokenizer, written from its
# description (5D tensors, causal time padding, first-frame behaviour of every block).


def _causal3d(x, w, b):
    k = w.shape[-1]
    return F.conv3d(F.pad(x, (k // 2, k // 2, k // 2, k // 2, w.shape[2] - 1, 0)), w, b)


def _rms(x, gamma):
    return F.normalize(x, dim=1) * x.shape[1] ** 0.5 * gamma


def _frames(fn, x):
    """A 2D op on every frame of b c t h w."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


def _res(S, p, x):
    h = _causal3d(F.silu(_rms(x, S[p + "residual.0.gamma"])), S[p + "residual.2.weight"], S[p + "residual.2.bias"])
    h = _causal3d(F.silu(_rms(h, S[p + "residual.3.gamma"])), S[p + "residual.6.weight"], S[p + "residual.6.bias"])
    short = _causal3d(x, S[p + "shortcut.weight"], S[p + "shortcut.bias"]) if p + "shortcut.weight" in S else x
    return short + h


def _attention(S, p, x):
    def one(f):
        b, c, h, w = f.shape
        qkv = F.conv2d(_rms(f, S[p + "norm.gamma"]), S[p + "to_qkv.weight"], S[p + "to_qkv.bias"])
        q, k, v = qkv.flatten(2).split(c, 1)  # [b, c, hw] each
        a = torch.softmax(q.transpose(1, 2) @ k / c**0.5, dim=-1)  # [b, hw (query), hw (key)]
        o = (v @ a.transpose(1, 2)).reshape(b, c, h, w)
        return f + F.conv2d(o, S[p + "proj.weight"], S[p + "proj.bias"])
    return _frames(one, x)


def _fold_mean(x, out, ft, fs):
    """Shortcut down: zero frames in front up to a multiple of ft, every (frame, row, column) slot of a
    ft x fs x fs cell into the channels (channel-major), mean over groups of consecutive channels."""
    x = F.pad(x, (0, 0, 0, 0, (-x.shape[2]) % ft, 0))
    slots = [x[:, :, a::ft, r::fs, c::fs] for a in range(ft) for r in range(fs) for c in range(fs)]
    x = torch.stack(slots, 2).flatten(1, 2)
    return x.unflatten(1, (out, -1)).mean(2)


def _unfold_dup(x, out, ft, fs):
    """Shortcut up: repeat every channel, read the channels as (out, frame, row, column) slots; the first
    chunk drops the ft - 1 frames in front of its own."""
    b, c, t, h, w = x.shape
    x = x.repeat_interleave(out * ft * fs * fs // c, 1).reshape(b, out, ft, fs, fs, t, h, w)
    y = x.new_zeros(b, out, t * ft, h * fs, w * fs)
    for a in range(ft):
        for r in range(fs):
            for col in range(fs):
                y[:, :, a::ft, r::fs, col::fs] = x[:, :, a, r, col]
    return y[:, :, ft - 1:]


@pytest.mark.parametrize("in_dim,out_dim,temporal,spatial", [(8, 16, True, True), (8, 8, True, True),
                                                          (8, 8, False, True), (12, 6, True, False),
                                                          (6, 6, False, False)])
@pytest.mark.parametrize("frames", [1, 5])
def test_parameter_free_shortcuts_match_the_3d_reference(in_dim, out_dim, temporal, spatial, frames):
    from grn.tokenizer import avg_down, dup_up

    x = torch.randn(2, in_dim, frames, 4, 6, generator=torch.Generator().manual_seed(in_dim))
    ft, fs = 2 if temporal else 1, 2 if spatial else 1
    torch.testing.assert_close(avg_down(x, out_dim, temporal, spatial), _fold_mean(x, out_dim, ft, fs),
                               rtol=0, atol=1e-6)
    if spatial:
        torch.testing.assert_close(dup_up(x, out_dim, temporal), _unfold_dup(x, out_dim, ft, fs), rtol=0, atol=0)


def _patchify(x):
    """b c t H W -> b (c, column offset, row offset) t H/2 W/2."""
    return torch.stack([x[..., r::2, c::2] for c in range(2) for r in range(2)], 2).flatten(1, 2)


def _unpatchify(x):
    b, c4, t, h, w = x.shape
    x = x.reshape(b, c4 // 4, 2, 2, t, h, w)
    y = x.new_zeros(b, c4 // 4, t, 2 * h, 2 * w)
    for c in range(2):
        for r in range(2):
            y[..., r::2, c::2] = x[:, :, c, r]
    return y


def _ref_encode(S, image, levels=4, n_res=2, temporal=(0, 1, 1)):
    x = _causal3d(_patchify(image.unsqueeze(2)), S["encoder.conv1.weight"], S["encoder.conv1.bias"])
    for i in range(levels):
        p = f"encoder.downsamples.{i}.downsamples."
        y = x
        for j in range(n_res):
            y = _res(S, f"{p}{j}.", y)
        down = i < levels - 1
        if down:  # spatial: zero pad right/bottom, 3x3 stride 2; time_conv: skipped on the first frame
            r = f"{p}{n_res}.resample.1."
            y = _frames(lambda f, r=r: F.conv2d(F.pad(f, (0, 1, 0, 1)), S[r + "weight"], S[r + "bias"], stride=2), y)
        x = y + _fold_mean(x, y.shape[1], 2 if down and temporal[i] else 1, 2 if down else 1)
    x = _res(S, "encoder.middle.2.", _attention(S, "encoder.middle.1.", _res(S, "encoder.middle.0.", x)))
    x = _causal3d(F.silu(_rms(x, S["encoder.head.0.gamma"])), S["encoder.head.2.weight"], S["encoder.head.2.bias"])
    mu = _causal3d(x, S["conv1.weight"], S["conv1.bias"]).chunk(2, 1)[0]
    return torch.tanh(mu)[:, :, 0]


def _ref_decode(S, z, levels=4, n_res=2, temporal=(1, 1, 0)):
    x = _causal3d(_causal3d(z.unsqueeze(2), S["conv2.weight"], S["conv2.bias"]),
                  S["decoder.conv1.weight"], S["decoder.conv1.bias"])
    x = _res(S, "decoder.middle.2.", _attention(S, "decoder.middle.1.", _res(S, "decoder.middle.0.", x)))
    for i in range(levels):
        p = f"decoder.upsamples.{i}.upsamples."
        y = x
        for j in range(n_res + 1):
            y = _res(S, f"{p}{j}.", y)
        if i < levels - 1:  # spatial: nearest-exact 2x, 3x3 conv; time_conv: skipped on the first frame
            r = f"{p}{n_res + 1}.resample.1."
            y = _frames(lambda f, r=r: F.conv2d(F.interpolate(f, scale_factor=2.0, mode="nearest-exact"),
                                                S[r + "weight"], S[r + "bias"], padding=1), y)
            y = y + _unfold_dup(x, y.shape[1], 2 if temporal[i] else 1, 2)
        x = y
    x = _causal3d(F.silu(_rms(x, S["decoder.head.0.gamma"])), S["decoder.head.2.weight"], S["decoder.head.2.bias"])
    return _unpatchify(x)[:, :, 0]


def test_reduced_official_tokenizer_matches_a_3d_reference_and_round_trips(tmp_path, monkeypatch):
    shapes = _official_tokenizer_shapes(**SMALL)
    state = _random_official_state(shapes)
    tok = load_official_tokenizer({"ema": state, "vae": {}}, **SMALL)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        z = tok.encode_float(x)
        torch.testing.assert_close(z, _ref_encode(state, x), rtol=1e-4, atol=1e-5)
        zq = tok.quantizer.quantize(z)
        torch.testing.assert_close(tok.decode_float(zq), _ref_decode(state, zq), rtol=1e-4, atol=1e-4)
    images = (torch.rand(2, 32, 32, 3, generator=g) * 255).to(torch.uint8)
    out = tok.reconstruct(images)
    assert out.shape == (2, 32, 32, 3) and out.dtype.name == "uint8"
    assert tok.tokenize(images).shape == (2, 16, 2, 2)

    # the command line writes it in this project's format (float32); suites also take the official file
    from grn import cli
    from grn.checkpoint import load_tokenizer

    monkeypatch.setitem(TOKENIZERS, "hbq-f16-d16", tokenizer_config("hbq-f16-d16", **SMALL))
    torch.save({"ema": state}, tmp_path / "official.ckpt")
    assert cli.main(["convert", "official", "--tokenizer", str(tmp_path / "official.ckpt"),
                     "--out", str(tmp_path / "out")]) == 0
    for loaded in (load_tokenizer(tmp_path / "out" / "tokenizer.pt"), load_any_tokenizer(tmp_path / "official.ckpt")):
        assert loaded.cfg == tok.cfg
        assert np.array_equal(loaded.reconstruct(images), out)


def test_own_tokenizer_files_still_load_through_the_auto_detecting_loader():
    from grn.checkpoint import load_tokenizer

    path = Path(__file__).resolve().parents[1] / "grn" / "checkpoints" / "tokenizer_mnist.pt"
    a, b = load_tokenizer(path), load_any_tokenizer(path)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


@pytest.mark.parametrize("name", ["GRN-B", "GRN-L"])
def test_official_generator_size_is_read_off_the_weights(name):
    with torch.device("meta"):
        state = {f"net.{k}": torch.empty(s) for k, s in _tsv_shapes(name.replace("-", "_")).items()}
    assert official_generator_name(state) == name

"""The causal-3D tokenizer on videos: the whole-clip pass against a chunked, cached reference written the
way the official inference runs (frame 0 alone, then chunks of 4 frames; every causal conv keeps its last
2 input frames; the temporal re-sampling convs skip the first chunk; one latent frame per decoder call),
the causal property, images as the T = 1 case, and the joint tokenizer's full layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grn.convert import load_official_tokenizer, official_tokenizer_layout
from grn.tokenizer import build_tokenizer
from tests.test_convert import (
    SMALL,
    _attention,
    _fold_mean,
    _official_tokenizer_shapes,
    _patchify,
    _random_official_state,
    _rms,
    _tsv_shapes,
    _unpatchify,
)

JOINT_TAG = "HBQ_tokenizer_64dim_M4"
# its rows of ../shared/docs/reference/grn_official_layouts_t2iv.tsv (built from the official code)
JOINT_LAYOUT = Path(__file__).resolve().parent / "data" / "grn_official_layouts_t2iv_tokenizer.tsv"


# ---------------------------------------------------------------------------------------
# A chunked reference (cache per conv, as the official streaming inference)
# ---------------------------------------------------------------------------------------


def _cconv(S, name, x, cache):
    """Causal conv of one chunk: the cached frames of the previous chunk stand in for the zero frames in
    front; the cache becomes the last 2 input frames (one old frame kept when the chunk has only one)."""
    w, b = S[name + "weight"], S[name + "bias"]
    kt, k = w.shape[2], w.shape[-1]
    pad_t, prev = kt - 1, cache.get(name)
    x_in = x
    if prev is not None and pad_t > 0:
        x_in, pad_t = torch.cat([prev, x], 2), pad_t - prev.shape[2]
    y = F.conv3d(F.pad(x_in, (k // 2, k // 2, k // 2, k // 2, pad_t, 0)), w, b)
    new = x[:, :, -2:]
    if new.shape[2] < 2 and prev is not None:
        new = torch.cat([prev[:, :, -1:], new], 2)
    cache[name] = new
    return y


def _res_chunk(S, p, x, cache):
    h = _cconv(S, p + "residual.2.", F.silu(_rms(x, S[p + "residual.0.gamma"])), cache)
    h = _cconv(S, p + "residual.6.", F.silu(_rms(h, S[p + "residual.3.gamma"])), cache)
    short = _cconv(S, p + "shortcut.", x, cache) if p + "shortcut.weight" in S else x
    return short + h


def _frames2d(fn, x):
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


def _encode_chunk(S, x, cache, levels=4, n_res=2, temporal=(0, 1, 1)):
    x = _cconv(S, "encoder.conv1.", _patchify(x), cache)
    for i in range(levels):
        p = f"encoder.downsamples.{i}.downsamples."
        y = x
        for j in range(n_res):
            y = _res_chunk(S, f"{p}{j}.", y, cache)
        down = i < levels - 1
        if down:
            r = f"{p}{n_res}.resample.1."
            y = _frames2d(lambda f, r=r: F.conv2d(F.pad(f, (0, 1, 0, 1)), S[r + "weight"], S[r + "bias"], stride=2), y)
            if temporal[i]:  # downsample3d: the first chunk is only stored; later ones see its last frame
                tc = f"{p}{n_res}.time_conv."
                if tc not in cache:
                    cache[tc] = y.clone()
                else:
                    last = y[:, :, -1:].clone()
                    y = F.conv3d(torch.cat([cache[tc][:, :, -1:], y], 2), S[tc + "weight"], S[tc + "bias"],
                                 stride=(2, 1, 1))
                    cache[tc] = last
        x = y + _fold_mean(x, y.shape[1], 2 if down and temporal[i] else 1, 2 if down else 1)
    x = _res_chunk(S, "encoder.middle.0.", x, cache)
    x = _res_chunk(S, "encoder.middle.2.", _attention(S, "encoder.middle.1.", x), cache)
    x = _cconv(S, "encoder.head.2.", F.silu(_rms(x, S["encoder.head.0.gamma"])), cache)
    return _cconv(S, "conv1.", x, cache).chunk(2, 1)[0]


def ref_encode_video(S, video):
    t = video.shape[2]
    chunks = [video[:, :, :1]] + [video[:, :, 1 + 4 * i: 5 + 4 * i] for i in range((t - 1) // 4)]
    cache: dict = {}
    return torch.tanh(torch.cat([_encode_chunk(S, c, cache) for c in chunks], 2))


def _dup_chunk(x, out, ft, fs, first):
    b, c, t, h, w = x.shape
    x = x.repeat_interleave(out * ft * fs * fs // c, 1).reshape(b, out, ft, fs, fs, t, h, w)
    y = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, out, t * ft, h * fs, w * fs)
    return y[:, :, ft - 1:] if first else y


def _decode_chunk(S, z, cache, first, levels=4, n_res=2, temporal=(1, 1, 0)):
    x = _cconv(S, "decoder.conv1.", _cconv(S, "conv2.", z, cache), cache)
    x = _res_chunk(S, "decoder.middle.0.", x, cache)
    x = _res_chunk(S, "decoder.middle.2.", _attention(S, "decoder.middle.1.", x), cache)
    for i in range(levels):
        p = f"decoder.upsamples.{i}.upsamples."
        y = x
        for j in range(n_res + 1):
            y = _res_chunk(S, f"{p}{j}.", y, cache)
        if i < levels - 1:
            if temporal[i]:  # upsample3d: the first chunk marks the cache; the second has zeros in front
                tc = f"{p}{n_res + 1}.time_conv."
                if tc not in cache:
                    cache[tc] = "Rep"
                else:
                    keep = y[:, :, -2:].clone()
                    if keep.shape[2] < 2:
                        old = torch.zeros_like(keep) if isinstance(cache[tc], str) else cache[tc][:, :, -1:]
                        keep = torch.cat([old, keep], 2)
                    prev = None if isinstance(cache[tc], str) else cache[tc]
                    inp = y if prev is None else torch.cat([prev, y], 2)
                    pad = 2 if prev is None else 2 - prev.shape[2]
                    out = F.conv3d(F.pad(inp, (0, 0, 0, 0, pad, 0)), S[tc + "weight"], S[tc + "bias"])
                    cache[tc] = keep
                    b, c2, t, h, w = out.shape
                    out = out.reshape(b, 2, c2 // 2, t, h, w)
                    y = torch.stack([out[:, 0], out[:, 1]], 3).reshape(b, c2 // 2, 2 * t, h, w)
            r = f"{p}{n_res + 1}.resample.1."
            y = _frames2d(lambda f, r=r: F.conv2d(F.interpolate(f, scale_factor=2.0, mode="nearest-exact"),
                                                  S[r + "weight"], S[r + "bias"], padding=1), y)
            y = y + _dup_chunk(x, y.shape[1], 2 if temporal[i] else 1, 2, first)
        x = y
    x = _cconv(S, "decoder.head.2.", F.silu(_rms(x, S["decoder.head.0.gamma"])), cache)
    return _unpatchify(x)


def ref_decode_video(S, z):
    cache: dict = {}
    return torch.cat([_decode_chunk(S, z[:, :, i: i + 1], cache, first=i == 0) for i in range(z.shape[2])], 2)


@pytest.fixture(scope="module")
def small_official():
    state = _random_official_state(_official_tokenizer_shapes(**SMALL), seed=3)
    return state, load_official_tokenizer({"ema": state}, **SMALL)


def _video(frames, seed=0, size=32):
    return torch.rand(2, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------------------------------
# Whole clip == chunked official inference
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_video_encode_and_decode_equal_the_chunked_cached_reference(small_official, frames):
    state, tok = small_official
    x = _video(frames)
    with torch.no_grad():
        z = tok.encode_float(x)
        assert z.shape == (2, 16, 1 + (frames - 1) // 4, 2, 2)
        torch.testing.assert_close(z, ref_encode_video(state, x), rtol=1e-4, atol=1e-5)
        zq = tok.quantizer.quantize(z)
        out = tok.decode_float(zq)
        assert out.shape == x.shape  # 1 + 4 (T' - 1) frames back
        torch.testing.assert_close(out, ref_decode_video(state, zq), rtol=1e-4, atol=1e-4)


def test_an_image_is_the_one_frame_video(small_official):
    _, tok = small_official
    x = _video(1, seed=5)
    with torch.no_grad():
        z_video, z_image = tok.encode_float(x), tok.encode_float(x[:, :, 0])
        assert torch.equal(z_video[:, :, 0], z_image)
        assert torch.equal(tok.decode_float(z_video)[:, :, 0], tok.decode_float(z_image))


# ---------------------------------------------------------------------------------------
# Causality: changing frame k never changes what earlier frames produce
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 5, 8])
def test_encoder_is_causal(small_official, k):
    """Latent frame j covers frames 4(j - 1) + 1 ... 4j (frame 0 for j = 0): changing frame k leaves latent
    frames j < ceil(k / 4) bit-identical and changes latent frame ceil(k / 4)."""
    _, tok = small_official
    x = _video(9, seed=1)
    y = x.clone()
    y[:, :, k] = torch.rand_like(y[:, :, k]) * 2 - 1
    with torch.no_grad():
        a, b = tok.encode_float(x), tok.encode_float(y)
    first = -(-k // 4)
    assert torch.equal(a[:, :, :first], b[:, :, :first])
    assert not torch.allclose(a[:, :, first], b[:, :, first])


@pytest.mark.parametrize("j", [1, 2])
def test_decoder_is_causal(small_official, j):
    """Output frames 0 ... 4(j - 1) depend on latent frames < j only."""
    _, tok = small_official
    z = torch.tanh(_video(3, seed=2, size=2)[:, :1].repeat(1, 16, 1, 1, 1))  # [2, 16, 3, 2, 2]
    z2 = z.clone()
    z2[:, :, j] = -z2[:, :, j]
    with torch.no_grad():
        a, b = tok.decode_float(z), tok.decode_float(z2)
    keep = 4 * (j - 1) + 1
    assert torch.equal(a[:, :, :keep], b[:, :, :keep])
    assert not torch.allclose(a[:, :, keep:], b[:, :, keep:])


def test_frame_count_is_checked(small_official):
    _, tok = small_official
    with pytest.raises(ValueError, match=r"1 \+ 4k frames, got 6"):
        tok.encode_float(_video(6))


# ---------------------------------------------------------------------------------------
# The joint image/video tokenizer of the released text models
# ---------------------------------------------------------------------------------------


def test_joint_tokenizer_full_layout_loads_strictly_with_every_temporal_kernel():
    shapes = _tsv_shapes(JOINT_TAG, JOINT_LAYOUT)
    with torch.device("meta"):
        layout = official_tokenizer_layout(build_tokenizer("hbq-f16-d64"))
        assert {k: s for k, (_, s) in layout.items()} == shapes
        tok = load_official_tokenizer({"ema": {k: torch.empty(s) for k, s in shapes.items()}})  # name read off
    assert tok.cfg.latent_channels == 64 and tok.cfg.temporal_kernel == 3
    assert sum(p.numel() for p in tok.parameters()) == 705_693_036
    assert sum(np.prod(s) for s in shapes.values()) == 705_693_036
    assert shapes["encoder.downsamples.0.downsamples.0.residual.2.weight"] == (160, 160, 3, 3, 3)
    with torch.device("meta"):
        bad = {k: torch.empty(s) for k, s in shapes.items()}
        bad["decoder.upsamples.1.upsamples.3.time_conv.weight"] = torch.empty(2048, 1024, 1, 1, 1)
        with pytest.raises(Exception, match=r"upsamples\.1\.upsamples\.3\.time_conv\.weight.*shape"):
            load_official_tokenizer({"ema": bad})

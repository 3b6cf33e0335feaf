"""GRN_bit as a model kind (grn/registry.py: load_model opens the converted grn_bit.pt) and its official samplers
through the one GRN sampler `refine` (grn/grn_bit_sampling.py). Tiny random weights: plumbing only, no quality
number. Official rules as file:line of MGenAI/GRN at 2a3353d (docs/reference/grn_t2iv_architecture.md)."""

import dataclasses
import math

import pytest
import torch

from grn import registry
from grn.grn_bit import ASPECT_TEMPLATES, GRNBit, aspect_template, build_grn_bit
from grn.grn_bit_sampling import (
    AREA_SIDE,
    ASPECT_VALUES,
    PRESETS,
    GRNBitSamplerConfig,
    official_grid,
    sample_grn_bit,
)
from grn.sampling import T2I_MAX_KEEP, sample_generators, schedule


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_grn_bit("GRN-bit-T").eval()


def _text(model, lens, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lens), max(lens), model.cfg.text_channels, generator=g), torch.tensor(lens)


def _empty(model):  # the encoded empty prompt: one token (`</s>`)
    return _text(model, [1], seed=9)


def _t2i(steps=50, **grid):
    return dataclasses.replace(PRESETS["GRN-2B-t2i"], steps=steps, **{"height": 2, "width": 2, **grid})


# ---------------------------------------------------------------------------------------
# (a) the model kind: a converted grn_bit.pt loads through load_model
# ---------------------------------------------------------------------------------------


def test_grn_bit_is_a_complete_kind_and_load_model_opens_the_converted_record(model, tmp_path, capsys):
    from grn import cli
    from grn.checkpoint import load_model, read_generator_record
    from grn_eval.model_check import _generator_geometry

    kind = registry.KINDS["grn-bit"]
    assert registry.problems(kind) == [] and kind.model is GRNBit and kind.conditioning == "text"
    assert {"GRN-2B", "GRN-0B", "GRN-bit-T"} <= set(registry.model_sizes())
    assert kind.default_sampler == PRESETS["GRN-2B-t2i"] and set(kind.presets) == {"GRN-2B-t2i", "GRN-2B-t2v"}
    # an official flat state dict -> `grn convert official --t2iv` -> grn_bit.pt -> load_model
    torch.save({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, tmp_path / "GRN_T2I_2B.pth")
    assert cli.main(["convert", "official", "--t2iv", str(tmp_path / "GRN_T2I_2B.pth"),
                     "--out", str(tmp_path / "grn_bit.pt")]) == 0
    capsys.readouterr()
    loaded = load_model(tmp_path / "grn_bit.pt")
    assert isinstance(loaded, GRNBit) and loaded.cfg == model.cfg and not loaded.training
    assert loaded.integrity == "content_sha256 verified"
    assert all(torch.equal(loaded.state_dict()[k], v.to(torch.bfloat16).float()) for k, v in model.state_dict().items())
    # grn_eval's model check reads the same record: kind, latent channels, HBQ rounds
    assert _generator_geometry(read_generator_record(tmp_path / "grn_bit.pt")) == ("grn-bit", 4, 4)


def test_decoding_bits_names_the_missing_joint_tokenizer(model):
    from grn.errors import UserError

    with pytest.raises(UserError, match="HBQ_tokenizer_64dim_M4"):
        registry.KINDS["grn-bit"].decode(None, model, torch.zeros(1, 16, 2, 2))
    assert registry.KINDS["grn-bit"].output_shape(model, PRESETS["GRN-2B-t2v"]) == (16, 9, 30, 53)
    assert registry.KINDS["grn-bit"].output_shape(model) == (16, 64, 64)


# ---------------------------------------------------------------------------------------
# (c) the official presets
# ---------------------------------------------------------------------------------------


def test_presets_are_the_official_t2i_and_t2v_settings():
    t2i, t2v = PRESETS["GRN-2B-t2i"], PRESETS["GRN-2B-t2v"]
    common = dict(steps=50, schedule="t2i-cosine", guidance_interval=(0.0, 2.0), realised_t=True, monotone=False)
    assert {k: getattr(t2i, k) for k in common} == common == {k: getattr(t2v, k) for k in common}
    # t2i_infer.py:13-25: cfg 3.0, tau 1.1, pn 1M, h/w 1 -> 64 x 64, one frame
    assert (t2i.guidance, t2i.temperature, t2i.grid) == (3.0, 1.1, (1, 64, 64))
    # t2v_infer.py:33-50: cfg 4.0, tau 1.0, pn 0.41M, h/w 9/16, 2 s at 16 fps = 33 frames -> T' = 9, 30 x 53
    assert (t2v.guidance, t2v.temperature, t2v.grid) == (4.0, 1.0, (9, 30, 53))


def test_official_grid_by_hand():
    assert official_grid("1M", 1.0) == (1, 64, 64)  # 1024 x 1024 px
    # 9/16 -> cols sqrt(1600 / 0.5625) = 53.33 -> 53, rows 53.33 * 0.5625 = 30.0 -> 30 (480 x 848 px)
    assert official_grid("0.41M", 9 / 16, duration=2.0) == (9, 30, 53)
    assert official_grid("0.41M", 0.5, duration=10.0)[0] == 21  # capped at 81 frames: T' = 21 (grn.py:256)
    assert official_grid("0.41M", 0.57) == official_grid("0.41M", 9 / 16)  # the nearest template
    with pytest.raises(ValueError, match="unknown pn"):
        official_grid("3M", 1.0)


def test_the_grid_of_every_template_maps_back_to_its_template():
    """So the RoPE template the model derives from the grid is the official `mapped_h_div_w_template`."""
    for side in AREA_SIDE.values():
        for ratio, template in zip(ASPECT_VALUES, ASPECT_TEMPLATES):
            cols = math.sqrt(side * side / ratio)
            assert aspect_template(round(cols * ratio), round(cols)) == template


def test_the_keep_schedule_is_the_official_cosine_capped_at_0999():
    """p_{s+1} = 0.999 (1 - cos(pi/2 min(1, (s+1)/49))) (grn.py:631-634); the last step keeps all (output)."""
    t = schedule(50, "t2i-cosine")
    assert t[0] == 0 and t[1] == pytest.approx(0.999 * (1 - math.cos(math.pi / 2 / 49)), rel=1e-12)
    assert t[49] == pytest.approx(T2I_MAX_KEEP, abs=1e-15) and t[50] == 1.0 and bool((t[1:50] <= 0.999).all())


# ---------------------------------------------------------------------------------------
# (c) sampling the tiny GRN_bit through refine
# ---------------------------------------------------------------------------------------


def test_t2i_preset_runs_50_guided_steps_deterministically_per_seed(model):
    cond, uncond = _text(model, [3, 2]), _empty(model)
    seen = []
    out, trace = sample_grn_bit(model, cond, _t2i(), sample_generators([1, 2]), uncond=uncond, callback=seen.append)
    again, _ = sample_grn_bit(model, cond, _t2i(), sample_generators([1, 2]), uncond=uncond)
    other, _ = sample_grn_bit(model, cond, _t2i(), sample_generators([3, 2]), uncond=uncond)
    assert out.shape == (2, 16, 2, 2) and out.dtype == torch.long and set(out.unique().tolist()) <= {0, 1}
    assert torch.equal(out, again) and not torch.equal(out[0], other[0])
    assert len(seen) == 50 and trace.steps_used == [50, 50] and trace.nfe == [2] * 50  # CFG at every step
    assert len(trace.entropy_bits) == 50 and len(trace.entropy_bits[0]) == model.cfg.rounds
    # the output is the last step's sampled bits at every position (grn.py:702-709)
    assert bool(seen[-1]["keep"].all()) and torch.equal(seen[-1]["x"], out)


def test_pt_is_the_realised_kept_fraction_of_the_previous_step(model):
    seen = []
    sample_grn_bit(model, _text(model, [3, 2]), _t2i(), sample_generators([1, 2]), uncond=_empty(model),
                   callback=seen.append)
    assert seen[0]["t"].tolist() == [0.0, 0.0]  # step 0: pt = 0
    for before, after in zip(seen, seen[1:]):
        assert torch.equal(after["t"], before["keep"].flatten(1).double().mean(1))


def test_pt_feedback_by_hand_replaying_the_generator(model):
    """3 steps: t = (0, 0.999 (1 - cos(pi/4)), 0.999, 1). A sample's generator draws its random bits, then per
    step the sampling uniforms and the keep uniforms, so step 1's pt is the count of keep uniforms of step 0
    below 0.2926 over the 16 * 2 * 2 = 64 bits."""
    seen = []
    sample_grn_bit(model, _text(model, [3]), _t2i(steps=3), sample_generators([7]), uncond=_empty(model),
                   callback=seen.append)
    g = torch.Generator().manual_seed(7)
    noise = torch.randint(0, 2, (16, 2, 2), generator=g)
    torch.rand(16, 2, 2, generator=g)  # step 0's sampling uniforms
    u_keep = torch.rand(16, 2, 2, generator=g)
    threshold = 0.999 * (1 - math.cos(math.pi / 4))
    assert torch.equal(seen[0]["x_before"][0], noise)
    k = int((u_keep < threshold).sum())
    assert seen[1]["t"].item() == k / 64 and 0 < k < 64
    assert torch.equal(seen[0]["keep"][0], u_keep < threshold)


def test_cfg_uses_the_cached_uncond_text_and_the_official_mix(model, monkeypatch):
    """Each prompt is encoded once per run (not per step); the guided probabilities are
    softmax((l_u + 3 (l_c - l_u)) / 1.1) with l_c, l_u recomputed here on the uncached one-pass reference."""
    cond, uncond = _text(model, [3, 2]), _text(model, [2], seed=5)  # a (negative) prompt of 2 tokens
    calls = []
    encode = model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda *a: calls.append(a[0].shape) or encode(*a))
    seen = []
    sample_grn_bit(model, cond, _t2i(steps=5), sample_generators([1, 2]), uncond=uncond, callback=seen.append)
    assert calls == [(2, 3, 32), (1, 2, 32)]  # cond batch, then the one uncond prompt: once for all 5 steps
    step = seen[2]
    x, pt = step["x_before"], step["t"].float()
    with torch.no_grad():
        lc = model.forward_sequence(x, pt, *cond)
        lu = model.forward_sequence(x, pt, uncond[0].expand(2, -1, -1), uncond[1].expand(2))
    want = torch.softmax((lu + 3.0 * (lc - lu)) / 1.1, dim=1)
    torch.testing.assert_close(step["probs"], want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(step["logits_cond"], lc, rtol=1e-4, atol=1e-5)


def test_a_cache_given_once_is_used_as_it_is_and_uncond_per_sample(model):
    cond, uncond = _text(model, [3, 2]), _text(model, [1, 1], seed=4)
    with torch.no_grad():
        caches = model.encode_text(*cond), model.encode_text(*uncond)
    a, _ = sample_grn_bit(model, cond, _t2i(steps=4), sample_generators([1, 2]), uncond=uncond)
    b, _ = sample_grn_bit(model, caches[0], _t2i(steps=4), sample_generators([1, 2]), uncond=caches[1])
    assert torch.equal(a, b)


def test_t2v_grid_samples_video_bits(model):
    cfg = dataclasses.replace(PRESETS["GRN-2B-t2v"], steps=4, frames=3, height=2, width=3)
    out, trace = sample_grn_bit(model, _text(model, [2]), cfg, sample_generators([0]), uncond=_empty(model))
    assert out.shape == (1, 16, 3, 2, 3) and trace.nfe == [2] * 4
    assert len(trace.changed_bits) == 4 and registry.KINDS["grn-bit"].output_shape(model, cfg) == (16, 3, 2, 3)


def test_guidance_without_uncond_and_too_many_frames_are_refused(model):
    with pytest.raises(ValueError, match="give `uncond`"):
        sample_grn_bit(model, _text(model, [2]), _t2i(steps=2), sample_generators([0]))
    out, _ = sample_grn_bit(model, _text(model, [2]), dataclasses.replace(_t2i(steps=2), guidance=1.0),
                            sample_generators([0]))  # no guidance: no uncond needed
    assert out.shape == (1, 16, 2, 2)
    with pytest.raises(ValueError, match="at most 21"):
        sample_grn_bit(model, _text(model, [2]), _t2i(steps=2, frames=22), sample_generators([0]),
                       uncond=_empty(model))
    with pytest.raises(ValueError, match="2 prompts for 1 samples"):
        sample_grn_bit(model, _text(model, [2]), _t2i(steps=2), sample_generators([0]), uncond=_text(model, [1, 1]))
    assert isinstance(PRESETS["GRN-2B-t2i"], GRNBitSamplerConfig)


def test_a_suite_naming_a_released_grn_bit_without_umt5_stops_with_one_message_before_reading_the_tokenizer(
        model, tmp_path):
    """A released model's record (no text encoder of its own) needs the suite's `text_encoder` (UMT5's folder);
    with it, it samples (tests/test_t2i_official.py); the embedded one trained here runs as it is
    (tests/test_grn_bit_embedded.py)."""
    from types import SimpleNamespace

    from grn.checkpoint import checkpoint_record
    from grn.fileio import save_torch
    from grn_eval.model_check import ModelError, check_entry

    save_torch(checkpoint_record(model, "GRN-bit-T", model.state_dict()), tmp_path / "grn_bit.pt")
    entry = SimpleNamespace(name="GRN-2B", adapter="grn-bit", options={"checkpoint": "grn_bit.pt", "tokenizer": "x"})
    with pytest.raises(ModelError, match="model 'GRN-2B': text_encoder: 'grn_bit.pt' is a released GRN_bit model"):
        check_entry(entry, tmp_path)

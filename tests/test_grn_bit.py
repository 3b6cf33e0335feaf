"""GRN_bit, the official text-to-image / text-to-video GRN (grn/grn_bit.py), and strict loading of its
released files (grn/convert.py). Official rules are cited as file:line of MGenAI/GRN at 2a3353d, as in
docs/reference/grn_t2iv_architecture.md (grn.py, basic.py, rope.py = grn/models/...; global_refine.py
= grn/schedules/...; hbq_util_t2iv.py = grn/utils_t2iv/...)."""

import math
from pathlib import Path

import pytest
import torch

from grn import hbq
from grn.convert import (
    OFFICIAL_GRN_BIT_UNUSED,
    CheckpointError,
    is_official_grn_bit,
    load_official_grn_bit,
    official_grn_bit_name,
)
from grn.grn_bit import (
    GRN_BIT_SIZES,
    GRNBit,
    TextCache,
    apply_rope,
    aspect_template,
    attention_mask,
    build_grn_bit,
    grn_bit_config_from_dict,
    pt_positions,
    rope_extent,
    rope_tables,
    text_positions,
    visual_positions,
)

# every key and shape of the released 2B model (no values), read off the public code; in the shared
# reference folder next to the repository
LAYOUT = Path(__file__).resolve().parents[2] / "shared" / "docs" / "reference" / "grn_official_layouts_t2iv.tsv"
TAG = "GRN_2B_T2I"  # GRN_T2V_2B has the same rows (the TSV says so and does not repeat them)
RELEASED_PARAMETERS = 2_197_832_448


def _cfg(name):
    with torch.device("meta"):
        return build_grn_bit(name).cfg


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.strip("()").split(",") if x.strip())


@pytest.fixture(scope="module")
def tsv_rows():
    if not LAYOUT.is_file():
        pytest.skip(f"the official layout file is not beside the repository ({LAYOUT.name} in shared/docs/reference)")
    rows = [line.rstrip("\n").split("\t") for line in LAYOUT.open() if line.startswith(TAG + "\t")]
    assert rows, f"no {TAG} rows in {LAYOUT.name}"
    return rows


@pytest.fixture(scope="module")
def tsv_shapes(tsv_rows):
    return {r[1]: _shape(r[2]) for r in tsv_rows}


@pytest.fixture(scope="module")
def model_2b():
    with torch.device("meta"):
        return build_grn_bit("GRN-2B")


def _random(shapes: dict, seed: int = 0) -> dict:
    """Values of a plausible scale: weights ~ 1/sqrt(fan_in), norm gains near 1, small biases."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        if "norm" in k:
            out[k] = 1 + 0.1 * torch.randn(s, generator=g)
        elif k.endswith(".bias"):
            out[k] = 0.1 * torch.randn(s, generator=g)
        else:
            out[k] = torch.randn(s, generator=g) / s[1] ** 0.5
    return out


def _scaled_official_shapes(tsv_shapes: dict, name: str) -> dict:
    """The official layout at another size, built from the TSV: the non-block keys and one block's keys as
    listed, every 2B width replaced by the size's, the blocks re-numbered block_chunks.{c}.module.{j}."""
    big, small = _cfg("GRN-2B"), _cfg(name)
    widths = {big.hidden: small.hidden, big.text_channels: small.text_channels, big.mlp_hidden: small.mlp_hidden,
              big.head_dim: small.head_dim, 2 * big.bits: 2 * small.bits, big.freq_dim: small.freq_dim}
    assert len(widths) == 6 and {d for s in tsv_shapes.values() for d in s} == set(widths)  # no ambiguous width
    blocks: dict[tuple[str, str], dict] = {}
    top = {}
    for key, shape in tsv_shapes.items():
        if key.startswith("block_chunks."):
            _, c, _, j, suffix = key.split(".", 4)
            blocks.setdefault((c, j), {})[suffix] = shape
        else:
            top[key] = shape
    one = blocks[("0", "0")]
    assert len(blocks) == big.depth and all(b == one for b in blocks.values())
    assert {c for c, _ in blocks} == {str(i) for i in range(big.block_chunks)}
    out = {k: tuple(widths[d] for d in s) for k, s in top.items()}
    per = small.depth // small.block_chunks
    for c in range(small.block_chunks):
        for j in range(per):
            out.update({f"block_chunks.{c}.module.{j}.{k}": tuple(widths[d] for d in s) for k, s in one.items()})
    return out


def _tiny_state(tsv_shapes, seed=0):
    return _random(_scaled_official_shapes(tsv_shapes, "GRN-bit-T"), seed)


def _meta_state(shapes: dict) -> dict:
    with torch.device("meta"):
        return {k: torch.empty(s) for k, s in shapes.items()}


def _text(cfg, lens, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lens), max(lens), cfg.text_channels, generator=g), torch.tensor(lens)


def _bits(cfg, b, t, h, w, seed=2):
    return torch.randint(0, 2, (b, cfg.bits, t, h, w), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------
# The released size and layout
# ---------------------------------------------------------------------------------------


def test_2b_has_exactly_the_released_trainable_parameters_on_meta(model_2b):
    assert sum(p.numel() for p in model_2b.parameters() if p.requires_grad) == RELEASED_PARAMETERS
    assert list(model_2b.buffers()) == []  # the RoPE tables are computed, not state (as officially)
    cfg = model_2b.cfg
    assert (cfg.head_dim, cfg.mlp_hidden, cfg.bits, cfg.rope_pairs) == (128, 8192, 256, (21, 21, 22))
    assert len(model_2b.blocks) == 28


def test_2b_layout_is_the_official_one_key_for_key(model_2b, tsv_rows, tsv_shapes):
    assert {k: tuple(v.shape) for k, v in model_2b.state_dict().items()} == tsv_shapes
    assert all(r[3] == "float32" and r[4] == "param" for r in tsv_rows)
    assert all(p.dtype == torch.float32 for p in model_2b.parameters())


def test_2b_forward_shapes_on_meta(model_2b):
    """A 2 s T2V clip: 9 latent frames of 30 x 53 (14,310 visual tokens), cond + uncond prompts."""
    with torch.device("meta"):
        bits = torch.empty(2, 256, 9, 30, 53, dtype=torch.long)
        text = torch.empty(2, 11, 4096)
        cache = model_2b.encode_text(text)
        logits = model_2b(bits, torch.empty(2), cache=cache)
    assert logits.shape == (2, 2, 256, 9, 30, 53) and logits.dtype == torch.float32
    assert cache.keys[0].shape == (2, 18, 11, 128) and len(cache.keys) == 28


def test_released_flat_and_training_files_load_strictly_on_meta(tsv_shapes):
    state = _meta_state(tsv_shapes)
    assert is_official_grn_bit(state) and official_grn_bit_name(state) == "GRN-2B"
    model = load_official_grn_bit(state)  # the size read off the weights
    assert model.cfg == _cfg("GRN-2B") and model.source == "flat state dict"
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == RELEASED_PARAMETERS
    training = {"args": {}, "gpt_training": "", "arch": "GRN2b", "epoch": 3, "iter": 0, "g_it": 1000,
                "trainer": {"config": {}, "gpt_fsdp": state, "gpt_ema_fsdp": state, "gpt_fsdp_opt": None}}
    assert set(OFFICIAL_GRN_BIT_UNUSED) == {k for k in training if k != "trainer"} | \
        {f"trainer.{k}" for k in ("config", "gpt_fsdp_opt")}
    assert is_official_grn_bit(training)
    for which, entry in (("ema", "trainer.gpt_ema_fsdp"), ("raw", "trainer.gpt_fsdp")):
        assert load_official_grn_bit(training, which=which).source == entry


def test_missing_extra_or_misshaped_key_fails_naming_it(tsv_shapes):
    state = _meta_state(tsv_shapes)
    key = "block_chunks.3.module.2.mlp.up_proj.weight"
    missing = {k: v for k, v in state.items() if k != key}
    with pytest.raises(CheckpointError, match=r"GRN-2B.*missing \['block_chunks\.3\.module\.2\.mlp\.up_proj\.weight"):
        load_official_grn_bit(missing)  # the closest size is still found, and the key is named
    with pytest.raises(CheckpointError, match=r"unexpected \['norm0_cond\.weight'\]"):
        load_official_grn_bit({**state, "norm0_cond.weight": state["head.norm.weight"]})
    bad = dict(state)
    with torch.device("meta"):
        bad["block_chunks.6.module.3.attn.k_norm.weight"] = torch.empty(64)
    with pytest.raises(CheckpointError, match=r"'block_chunks\.6\.module\.3\.attn\.k_norm\.weight' has shape \(64,\)"):
        load_official_grn_bit(bad, "GRN-2B")
    with pytest.raises(CheckpointError, match="match none"):
        load_official_grn_bit({"foo": torch.zeros(1)})


def test_training_checkpoint_takes_the_chosen_weights_and_refuses_unknown_entries(tsv_shapes):
    ema, raw = _tiny_state(tsv_shapes, 0), _tiny_state(tsv_shapes, 1)
    ck = {"arch": "GRN0b", "trainer": {"gpt_fsdp": raw, "gpt_ema_fsdp": ema, "gpt_fsdp_opt": None, "config": {}}}
    for which, want in (("ema", ema), ("raw", raw)):
        model = load_official_grn_bit(ck, which=which)
        got = model.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(CheckpointError, match=r"'trainer\.gpt_opt' is neither weights nor a known unused entry"):
        load_official_grn_bit({**ck, "trainer": {**ck["trainer"], "gpt_opt": {}}})
    with pytest.raises(CheckpointError, match=r"no 'trainer\.gpt_ema_fsdp'.*--weights raw"):
        load_official_grn_bit({"trainer": {"gpt_fsdp": raw}})
    with pytest.raises(CheckpointError, match="unknown GRN_bit weights 'ema1'"):
        load_official_grn_bit(ck, which="ema1")


# ---------------------------------------------------------------------------------------
# The official layout at test scale, loaded and run on CPU
# ---------------------------------------------------------------------------------------


def test_tiny_official_layout_from_the_tsv_loads_strictly_and_runs(tsv_shapes):
    state = _tiny_state(tsv_shapes)
    with torch.device("meta"):
        assert {k: tuple(v.shape) for k, v in build_grn_bit("GRN-bit-T").state_dict().items()} == \
            {k: tuple(v.shape) for k, v in state.items()}  # the size has the official layout logic
    model = load_official_grn_bit(state)
    assert model.cfg == _cfg("GRN-bit-T")
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    cfg = model.cfg
    bits, (text, lens) = _bits(cfg, 2, 2, 2, 3), _text(cfg, [5, 2])
    pt = torch.tensor([0.0, 0.7])
    with torch.no_grad():
        logits = model(bits, pt, text, lens)
        one_pass = model.forward_sequence(bits, pt, text, lens)
        image = model(bits[:, :, 0], pt, text, lens)  # [B, D, h, w]: one latent frame
        frame = model(bits[:, :, :1], pt, text, lens)
        same_pt = model(bits, 0.7, text, lens)  # one pt for the whole batch
    assert logits.shape == (2, 2, cfg.bits, 2, 2, 3) and torch.isfinite(logits).all()
    # the cached path (text keys/values first, as the official sampler) = one pass over the training sequence
    torch.testing.assert_close(logits, one_pass, rtol=1e-5, atol=1e-5)
    assert image.shape == (2, 2, cfg.bits, 2, 3)
    torch.testing.assert_close(image, frame[:, :, :, 0], rtol=0, atol=0)
    torch.testing.assert_close(same_pt[1], logits[1], rtol=0, atol=0)


def test_text_cache_is_reused_across_steps_and_batches_cond_with_uncond(tsv_shapes):
    model = load_official_grn_bit(_tiny_state(tsv_shapes))
    cfg = model.cfg
    (cond, cond_len), (uncond, uncond_len) = _text(cfg, [6], 1), _text(cfg, [1], 3)
    with torch.no_grad():
        c, u = model.encode_text(cond, cond_len), model.encode_text(uncond, uncond_len)
        both = TextCache.cat([c, u])  # [cond | uncond], the uncond prompt padded to 6 tokens
        assert both.valid.tolist() == [[True] * 6, [True] + [False] * 5] and both.padded
        for step in range(3):  # one cache, every step: new bits and a new pt each time
            bits = _bits(cfg, 1, 1, 3, 3, seed=10 + step).expand(2, -1, -1, -1, -1)  # the same input twice
            pt = torch.full((2,), 0.3 * step)
            got = model(bits, pt, cache=both)
            torch.testing.assert_close(got[:1], model(bits[:1], pt[:1], cond, cond_len), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got[1:], model(bits[1:], pt[1:], uncond, uncond_len), rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="cache.index"):
            model(_bits(cfg, 3, 1, 3, 3), torch.zeros(3), cache=both)
        picked = model(bits[:1], pt[:1], cache=both.index(slice(1, 2)))  # the uncond prompt alone
        torch.testing.assert_close(picked, got[1:], rtol=1e-5, atol=1e-5)


def test_a_sample_sees_only_its_own_valid_text(tsv_shapes):
    """Per sample, the visual + pt tokens see their own prompt's valid tokens; padding and other samples'
    prompts change nothing (packed samples are isolated, flex_attn_mask.py:22-28; text is cut to its
    valid length, grn.py:416-429)."""
    model = load_official_grn_bit(_tiny_state(tsv_shapes))
    cfg = model.cfg
    bits, (text, lens) = _bits(cfg, 2, 1, 2, 2), _text(cfg, [4, 2])
    pt = torch.tensor([0.2, 0.9])
    with torch.no_grad():
        base = model(bits, pt, text, lens)
        other = text.clone()
        other[1, 2:] = 100.0  # sample 1's padding
        other[0] = -text[0]  # sample 0's whole prompt
        moved = model(bits, pt, other, lens)
        alone = model(bits[1:], pt[1:], text[1:, :2])  # sample 1 with its prompt cut to its length
    torch.testing.assert_close(moved[1], base[1], rtol=0, atol=1e-6)
    assert not torch.allclose(moved[0], base[0])
    torch.testing.assert_close(alone[0], base[1], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Hand-worked rules: RoPE positions, attention mask, bit one-hot order
# ---------------------------------------------------------------------------------------


def test_rope_positions_of_text_pt_and_visual_tokens():
    cfg = _cfg("GRN-2B")
    # text token k at (k, 0, 0), restarting at 0 for every prompt (rope.py:106-114; grn.py:456, 561-563)
    assert text_positions(3).tolist() == [[0, 0, 0], [1, 0, 0], [2, 0, 0]]
    # the pt token at (512, 0, 0): `freqs_text[..., 512:513]` (grn.py:454, 577)
    assert pt_positions(cfg).tolist() == [[512, 0, 0]]
    # aspect templates: nearest of the 15, keyed to 3 decimals (dynamic_resolution.py:27, 33; grn_pipeline.py:194)
    assert aspect_template(64, 64) == 1.0 and aspect_template(30, 53) == 0.562 and aspect_template(2, 3) == 0.666
    # RoPE extent: upw = int(sqrt(225 * 75 / r)), uph = int(r * sqrt(225 * 75 / r)) (global_refine.py:242-250)
    assert rope_extent(1.0, cfg) == (129, 129) and rope_extent(0.562, cfg) == (97, 173)
    assert rope_extent(0.666, cfg) == (106, 159)  # sqrt(16875 / 0.666) = 159.18; 0.666 * 159.18 = 106.01
    # visual (f, i, j) at (600 + f, round(i * uph / h), round(j * upw / w)), tokens in t, h, w order
    # (rope.py:93, 97, 115; global_refine.py:253-256). 2 frames of 2 x 2 at 1:1: i * 129 / 2 = 64.5 rounds
    # half to even (torch.round) to 64.
    assert visual_positions(2, 2, 2, cfg).tolist() == [
        [600, 0, 0], [600, 0, 64], [600, 64, 0], [600, 64, 64],
        [601, 0, 0], [601, 0, 64], [601, 64, 0], [601, 64, 64]]
    # 1 frame of 2 x 3 (template 0.666, extent 106 x 159): rows 0, 53; columns 0, 53, 106
    assert visual_positions(1, 2, 3, cfg).tolist() == [
        [600, 0, 0], [600, 0, 53], [600, 0, 106], [600, 53, 0], [600, 53, 53], [600, 53, 106]]
    with pytest.raises(ValueError, match="at most 21"):
        visual_positions(22, 2, 2, cfg)  # the official table holds int(81 / 4 + 1) = 21 frames (grn.py:256)


def test_rope_frequencies_split_and_interleaved_rotation():
    cfg = _cfg("GRN-2B")
    # 64 pairs split t 21 | h 21 | w 22 with frequencies 10000^(-j/21) and 10000^(-j/22) (rope.py:91-102)
    cos, sin = rope_tables(torch.tensor([[5, 7, 11]]), cfg)
    assert cos.shape == (1, 128)
    want = [5 * 10000 ** (-j / 21) for j in range(21)] + [7 * 10000 ** (-j / 21) for j in range(21)] + \
        [11 * 10000 ** (-j / 22) for j in range(22)]
    angles = torch.tensor(want, dtype=torch.float64).repeat_interleave(2)  # both members of each pair
    torch.testing.assert_close(cos[0].double(), angles.cos(), rtol=0, atol=1e-4)
    torch.testing.assert_close(sin[0].double(), angles.sin(), rtol=0, atol=1e-4)
    # interleaved pairs (x[2i], x[2i+1]) -> (a cos - b sin, a sin + b cos) (rope.py:179-184)
    x = torch.zeros(1, 1, 1, 128)
    x[..., 42], x[..., 43] = 1.0, 2.0  # pair 21 (elements 42, 43): the first h pair, angle 7 * 10000^0
    y = apply_rope(x, cos, sin)[0, 0, 0]
    c, s = math.cos(7), math.sin(7)
    torch.testing.assert_close(y[42:44], torch.tensor([c - 2 * s, s + 2 * c]), rtol=0, atol=1e-5)
    assert y[:42].abs().max() == 0 and y[44:].abs().max() == 0


def test_attention_mask_rule():
    """Visual + pt queries see visual, pt and their valid text; text queries see only valid text; nothing
    is causal (flex_attn_mask.py:22-28; global_refine.py:186-199). Sequence: [v0 v1 | pt | t0 t1 t2]."""
    m = attention_mask(2, torch.tensor([2]), 3)[0, 0].int().tolist()
    assert m == [
        #  v0 v1 pt t0 t1 t2(padding)
        [1, 1, 1, 1, 1, 0],  # v0
        [1, 1, 1, 1, 1, 0],  # v1
        [1, 1, 1, 1, 1, 0],  # pt
        [0, 0, 0, 1, 1, 0],  # t0
        [0, 0, 0, 1, 1, 0],  # t1
        [0, 0, 0, 1, 1, 0],  # t2: padding, sees the valid text so that its row is not empty (never read)
    ]
    two = attention_mask(1, torch.tensor([3, 1]), 3)[:, 0].int()
    assert two.shape == (2, 5, 5)
    assert two[1].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 0]]
    assert two[0, :2].tolist() == [[1] * 5] * 2 and two[0, 2:].tolist() == [[0, 0, 1, 1, 1]] * 3


def test_bit_onehot_is_round_major_with_the_class_innermost():
    """HBQ bit r of channel c is element r*d + c (hbq_util_t2iv.py:22-33); element i's class k is input
    2*i + k of word_embed (hbq_util_t2iv.py:46-50); tokens run over t, then h, then w (grn.py:509-514)."""
    with torch.device("meta"):
        shape = build_grn_bit("GRN-bit-T", latent_channels=2, rounds=2)
    model = GRNBit(shape.cfg)  # d = 2 channels, M = 2 rounds: 4 bits, word_embed takes 8 inputs
    # z = (0.3, -0.6): channel 0 is 0.3 > 0 -> 1 (q = 0.5), 0.3 > 0.5 -> 0; channel 1 is -0.6 > 0 -> 0
    # (q = -0.5), -0.6 > -0.5 -> 0. Round-major: (r0 c0, r0 c1, r1 c0, r1 c1) = (1, 0, 0, 0).
    z = torch.tensor([0.3, -0.6]).view(1, 2, 1, 1)
    bits = hbq.bits_to_bit_layout(hbq.hbq_quantize(z, 2).bits)  # [1, 4, 1, 1], the project's bit layout
    assert bits.flatten().tolist() == [1, 0, 0, 0]
    assert model.onehot(bits.unsqueeze(2)).tolist() == [[[0, 1, 1, 0, 1, 0, 1, 0]]]
    # token order: frame-major, then rows, then columns
    grid = torch.zeros(1, 4, 2, 2, 2, dtype=torch.long)
    grid[0, 3, 1, 0, 1] = 1  # bit 3 of frame 1, row 0, column 1: token 1*4 + 0*2 + 1 = 5
    x = model.onehot(grid)  # [1, 8 tokens, 8]
    assert x.shape == (1, 8, 8) and x[0, 5].tolist() == [1, 0, 1, 0, 1, 0, 0, 1]
    assert (x[0, [0, 1, 2, 3, 4, 6, 7]] == torch.tensor([1.0, 0.0]).repeat(4)).all()
    # the head's 2*D outputs are (bit, class) as well: output 2*i + k is logits[:, k, i] (grn.py:343, 625)
    with torch.no_grad():
        model.head.proj.weight.zero_()
        model.head.proj.bias.copy_(torch.arange(8.0))
        logits = model(grid, torch.zeros(1), torch.zeros(1, 1, model.cfg.text_channels))
    assert logits.shape == (1, 2, 4, 2, 2, 2)
    assert logits[0, :, :, 0, 0, 0].tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_pt_token_embeds_the_raw_signal_ratio_after_the_visual_tokens():
    """pt in [0, 1) goes in unscaled (grn.py:602): [cos | sin](pt * exp(-ln(1e4) i / 128)), i < 128, then the
    MLP (grn.py:95-123); its token follows the visual tokens (grn.py:416-419, 606-609)."""
    model = GRNBit(_cfg("GRN-bit-T"))
    bits, pt = _bits(model.cfg, 1, 1, 2, 2), torch.tensor([0.37])
    with torch.no_grad():
        tokens = model._image_tokens(bits, pt)  # [1, 4 + 1, H]
        freqs = torch.exp(-math.log(10000) * torch.arange(128) / 128)
        sinusoid = torch.cat([torch.cos(0.37 * freqs), torch.sin(0.37 * freqs)])[None]
        torch.testing.assert_close(tokens[:, -1], model.pt_embedder.mlp(sinusoid), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(tokens[:, :-1], model.word_embed(model.onehot(bits)), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------


def test_cli_converts_an_official_t2iv_file_strictly(tsv_shapes, tmp_path, capsys):
    from grn import cli
    from grn.checkpoint import verify

    state = _tiny_state(tsv_shapes)
    torch.save(state, tmp_path / "GRN_T2I_2B.pth")
    assert cli.main(["convert", "official", "--t2iv", str(tmp_path / "GRN_T2I_2B.pth"),
                     "--out", str(tmp_path / "grn_bit.pt")]) == 0
    assert "GRN-bit-T GRN_bit text/video model, official flat state dict" in capsys.readouterr().out
    record = torch.load(tmp_path / "grn_bit.pt", weights_only=False)
    assert verify(record, tmp_path / "grn_bit.pt") == "content_sha256 verified"
    assert (record["kind"], record["name"], record["source"]) == ("grn-bit", "GRN-bit-T", "official flat state dict")
    assert grn_bit_config_from_dict(record["config"]) == _cfg("GRN-bit-T")
    model = load_official_grn_bit(record["state_dict"])  # its weights are the official file's, key for key
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    # a training checkpoint into a folder (grn_bit.pt), its raw weights
    torch.save({"trainer": {"gpt_fsdp": state}, "g_it": 5}, tmp_path / "global_step_5.pth")
    assert cli.main(["convert", "official", "--t2iv", str(tmp_path / "global_step_5.pth"), "--weights", "raw",
                     "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "grn_bit.pt").is_file()
    capsys.readouterr()
    # one error line naming the key, no traceback
    broken = {k: v for k, v in state.items() if k != "head.norm.weight"}
    torch.save(broken, tmp_path / "broken.pth")
    assert cli.main(["convert", "official", "--t2iv", str(tmp_path / "broken.pth"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "head.norm.weight" in err and "Traceback" not in err
    assert cli.main(["convert", "official", "--t2iv", str(tmp_path / "GRN_T2I_2B.pth"), "--weights", "ema1",
                     "--out", str(tmp_path / "c")]) == 2
    assert "--weights ema1 does not apply to --t2iv" in capsys.readouterr().err


def test_registry_names_and_the_official_sizes():
    assert list(GRN_BIT_SIZES) == ["GRN-2B", "GRN-0B", "GRN-bit-T"]
    assert _cfg("GRN-0B").mlp_hidden == 1792 and _cfg("GRN-0B").head_dim == 128  # GRN0b (grn.py:751-764)
    with pytest.raises(ValueError, match="unknown GRN_bit size"):
        build_grn_bit("GRN-8B")  # no 8B constructor exists in the official code (grn.py:751-778)

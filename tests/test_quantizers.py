"""The quantizers of grn/quantizers.py: each writes the code space it claims, and its codes round-trip.

Bits per token are derived here from what a quantizer can write - every code decodes to a different
latent (for spaces up to 2^16, all of them; beyond, every class of every slot with the other slots fixed)
- and compared with what the module reports, never read from a config field.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from grn.quantizers import QUANTIZERS, build_quantizer
from grn.tokenizer import build_tokenizer
from grn_eval.metrics.codes import slot_statistics

D = 8  # latent channels, as the photo tokenizer
CASES = [("hbq", 8), ("hbq", 16), ("hbq", 32), ("fsq", 8), ("fsq", 16), ("fsq", 32), ("lfq", 8), ("lfq", 16),
         ("lfq", 32), ("bsq", 8), ("bsq", 16), ("bsq", 32), ("vq", 8), ("rvq", 16), ("rvq", 32)]


def _quantizer(name, bits):
    torch.manual_seed(0)
    q = build_quantizer(name, D, bits)
    if name in ("vq", "rvq"):  # let k-means initialise the codebooks, as the first training batch does
        q.train()
        q(torch.randn(32, D, 8, 8))  # 2048 vectors, as a training batch of 32 crops (8 x 8 tokens)
    return q.eval()


def _latent(q, seed=1):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(3, D, 4, 5, generator=g) * 1.5
    return q.bound(h)


def _distinct(latents: torch.Tensor) -> int:
    return len({tuple(v) for v in latents.reshape(len(latents), -1).tolist()})


@pytest.mark.parametrize("name,bits", CASES)
def test_bits_come_from_the_code_space(name, bits):
    q = _quantizer(name, bits)
    channels, classes = q.code_space
    assert q.bits == channels * math.log2(classes) == bits
    if classes**channels <= 2**16:  # every code: all decode to different latents
        grid = torch.tensor(list(itertools.product(range(classes), repeat=channels)))  # [K^D, D]
        values = q.values(grid.view(-1, channels, 1, 1))
        assert math.log2(_distinct(values)) == bits
    else:  # each slot's K classes, the others fixed: K different latents per slot
        base = torch.randint(classes, (1, channels, 1, 1), generator=torch.Generator().manual_seed(0))
        for slot in range(channels):
            codes = base.repeat(classes, 1, 1, 1)
            codes[:, slot, 0, 0] = torch.arange(classes)
            assert _distinct(q.values(codes)) == classes


@pytest.mark.parametrize("name,bits", CASES)
def test_codes_round_trip_exactly(name, bits):
    q = _quantizer(name, bits)
    z = _latent(q)
    codes = q.codes(z)
    channels, classes = q.code_space
    assert codes.dtype == torch.int64 and codes.shape == (3, channels, 4, 5)
    assert 0 <= int(codes.min()) and int(codes.max()) < classes
    with torch.no_grad():
        forward, _aux = q(z)
    assert torch.equal(q.values(codes), forward)  # what the decoder sees in training == decoded codes
    assert torch.equal(q.quantize(z), forward)


@pytest.mark.parametrize("name,bits", [("hbq", 16), ("hbq", 32), ("lfq", 8), ("bsq", 8), ("vq", 8)])
def test_codes_of_decoded_codes_are_the_codes(name, bits):
    """Without projections a decoded code is a point of the quantizer's grid or codebook: it quantizes to itself.
    (LFQ / BSQ above 8 bits project 8 -> bits dimensions and back, residual VQ's greedy stages need not
    recover the codes of a sum, and FSQ bounds its input with its own tanh, so none of them is asked this.)"""
    q = _quantizer(name, bits)
    channels, classes = q.code_space
    codes = torch.randint(classes, (4, channels, 3, 3), generator=torch.Generator().manual_seed(2))
    if name == "vq":  # only codes the codebook holds once (k-means on a small batch can repeat an entry)
        book = q.values(torch.arange(classes).view(-1, 1, 1, 1)).flatten(1)
        unique = torch.tensor([int((book == book[i]).all(1).sum()) == 1 for i in range(classes)])
        codes = torch.nonzero(unique).flatten()[codes % int(unique.sum())]
    assert torch.equal(q.codes(q.values(codes)), codes)


def test_hbq_codes_are_the_hbq_labels():
    from grn.hbq import hbq_quantize

    q = _quantizer("hbq", 24)
    z = _latent(q)
    assert torch.equal(q.codes(z), hbq_quantize(z, 3).labels)
    assert torch.equal(q.quantize(z), hbq_quantize(z, 3).values)


def test_tokenizer_tokens_decode_to_its_reconstruction():
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    for quantizer, bits in (("fsq", 16), ("rvq", 16), ("lfq", 16)):
        torch.manual_seed(0)
        tok = build_tokenizer("hbq-photo", quantizer=quantizer, bits=bits).eval()
        if quantizer == "rvq":
            tok.train()
            tok(torch.rand(32, 3, 32, 32) * 2 - 1)
            tok.eval()
        tokens = tok.tokenize(images)
        assert tokens.shape == (2, *tok.quantizer.code_space[:1], 8, 8)
        assert np.array_equal(tok.decode_tokens(tokens), tok.reconstruct(images))
        assert tok.bits_per_image(32) == 64 * bits
        with pytest.raises(ValueError, match="HBQ's"):
            tok.tokenize(images, layout="bit")
        with pytest.raises(ValueError, match="no rounds"):
            tok.reconstruct(images, rounds=2)


def test_configs_that_cannot_spend_their_bits_are_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        build_quantizer("fsq", 8, 12)
    with pytest.raises(ValueError, match="not trainable here"):
        build_quantizer("vq", 8, 24)
    with pytest.raises(ValueError, match="multiple of 8"):
        build_quantizer("rvq", 8, 12)
    with pytest.raises(ValueError, match="needs bits"):
        build_quantizer("lfq", 8, None)
    with pytest.raises(ValueError, match="allowed"):
        build_quantizer("pq", 8, 8)
    assert set(QUANTIZERS) == {"hbq", "fsq", "lfq", "bsq", "vq", "rvq", "none"}


def test_a_non_hbq_config_has_no_rounds():
    tok = build_tokenizer("hbq-photo", quantizer="fsq", bits=16)
    assert tok.cfg.rounds is None and not tok.cfg.continuous and tok.cfg.token_bits == 16 and not tok.hbq


def test_slot_statistics_by_hand():
    # slot 0 uses 2 of 4 classes equally (1 bit, perplexity 2); slot 1 one class (0 bits, perplexity 1)
    codes = np.array([[0, 3], [0, 3], [1, 3], [1, 3]])
    s = slot_statistics(codes, 4)
    assert s["entropy"].tolist() == [1.0, 0.0]
    assert s["usage"].tolist() == [0.5, 0.25]
    assert s["perplexity"].tolist() == [2.0, 1.0]


def test_code_statistics_through_a_suite(tmp_path):
    from grn_eval.runner import run_suite
    from grn_eval.suite import load_suite

    ckpt = Path(__file__).resolve().parents[1] / "grn" / "checkpoints" / "tokenizer_mnist.pt"
    (tmp_path / "s.yaml").write_text(
        "name: codes_test\ndescription: harness test\ndatasets:\n  ref: {name: mnist, split: reference}\n"
        f"defaults: {{adapter: tokenizer, checkpoint: '{ckpt}'}}\n"
        "models:\n  - {name: M4}\n  - {name: M4 at 2, rounds: 2}\n"
        "metrics:\n  psnr: {bootstrap: 50}\n  codes: {}\nreference: {dataset: ref}\nn_samples: 20\nbatch_size: 10\n")
    res = run_suite(load_suite(tmp_path / "s.yaml"), run_dir=tmp_path / "run", progress=False)
    v = {(r["model"], r["metric"]): r for r in res["rows"]}
    # the MNIST tokenizer: 4 channels x 4 rounds on 8 x 8 tokens of 4 x 4 pixels
    assert v["M4", "bits_per_token"]["value"] == 16 and v["M4", "bpp"]["value"] == 1.0
    assert v["M4 at 2", "bits_per_token"]["value"] == 8 and v["M4 at 2", "bpp"]["value"] == 0.5
    assert 0 < v["M4", "code_entropy"]["value"] <= 16 and 0 < v["M4", "code_usage"]["value"] <= 1
    assert v["M4", "code_perplexity"]["value"] <= 16 and v["M4 at 2", "code_perplexity"]["value"] <= 4
    per_round = v["M4", "round_error"]["extra"]["per_round"]
    assert [r["bound"] for r in per_round] == [0.5, 0.25, 0.125, 0.0625]
    assert all(r["max"] <= r["bound"] for r in per_round) and per_round[-1]["mean"] == v["M4", "round_error"]["value"]
    assert v["M4 at 2", "round_error"]["value"] == per_round[1]["mean"]  # two rounds kept: the 2-round error
    psnr = v["M4", "psnr"]
    assert psnr["ci_low"] < psnr["value"] < psnr["ci_high"] and res["models"]["M4 at 2"]["bits_per_token"] == 8


def test_training_curves_read_the_log_beside_each_checkpoint(tmp_path, monkeypatch, capsys):
    import json
    import shutil

    from grn_eval import plots, publish
    from grn_eval.suite import load_suite

    src = Path(__file__).resolve().parents[1] / "grn" / "checkpoints" / "tokenizer_mnist.pt"
    for stem in ("a", "b", "c"):
        shutil.copy(src, tmp_path / f"{stem}.pt")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.jsonl").write_text("".join(json.dumps({"step": s, "l1": 1 / s}) + "\n" for s in (10, 20)))
    (tmp_path / "logs" / "b.rerun.jsonl").write_text(json.dumps({"step": 10, "l1": 0.5}) + "\n")
    (tmp_path / "s.yaml").write_text(
        "name: curves_test\ndescription: harness test\ndatasets:\n  ref: {name: mnist, split: reference}\n"
        "defaults: {adapter: tokenizer}\nmodels:\n  - {name: A, checkpoint: a.pt}\n  - {name: B, checkpoint: b.pt}\n"
        "  - {name: C, checkpoint: c.pt}\n  - {name: A at 2, checkpoint: a.pt, rounds: 2}\n"
        "metrics:\n  psnr: {}\nreference: {dataset: ref}\nn_samples: 20\nbatch_size: 10\n")
    seen = {}
    monkeypatch.setattr(plots, "training_curves", lambda histories, prefix: seen.update(histories) or [prefix])
    publish.training_curves(load_suite(tmp_path / "s.yaml"), tmp_path / "curves")
    # A's own log; B's config re-run, labelled so; C has none (named); the truncated decode shares A's training
    assert seen == {"A": [{"step": 10, "l1": 0.1}, {"step": 20, "l1": 0.05}],
                    "B (re-run of its config)": [{"step": 10, "l1": 0.5}]}
    assert "no training log beside the checkpoints of C" in capsys.readouterr().out

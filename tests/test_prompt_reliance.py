"""Prompt reliance (grn_eval/prompt_reliance.py): the digit swap is exact, the losses are the GRN cross-entropy
(known answers from stand-in models whose logits are set by hand), every variant sees the same corrupted input,
and on the committed text-to-image GRN_bit -- whose samples show the asked digit -- a wrong digit costs loss."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from grn.captions import asked_digit
from grn.errors import UserError
from grn.video_captions import asked_motion, moving_mnist_captions
from grn_eval.prompt_reliance import held_out_set, main, prompt_reliance, swap_digit

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("caption, want", [
    ("a handwritten seven moving quickly to the left", "a handwritten zero moving quickly to the left"),
    ("the digit 7 moves slowly up and to the right", "the digit 0 moves slowly up and to the right"),
    ("the number 2 travels down, quickly", "the number 5 travels down, quickly"),
    ("one drifting slowly to the right", "four drifting slowly to the right"),
    ("the digit 9, thin strokes, upright", "the digit 2, thin strokes, upright"),
])
def test_the_swap_moves_only_the_digit_and_keeps_its_form(caption, want):
    assert swap_digit(caption) == want


def test_every_video_caption_swaps_to_another_digit_with_the_same_motion():
    rng = np.random.default_rng(0)
    meta = {"digit": rng.integers(0, 10, 200), "direction": rng.integers(0, 8, 200), "speed": rng.integers(0, 2, 200)}
    for caption, digit in zip(moving_mnist_captions(meta), meta["digit"]):
        swapped = swap_digit(caption)
        assert asked_digit(swapped) == (digit + 3) % 10
        assert asked_motion(swapped) == asked_motion(caption)


def test_a_caption_without_one_digit_is_refused():
    with pytest.raises(UserError, match="names no single digit"):
        swap_digit("moving slowly to the right")


class Oracle(torch.nn.Module):
    """Knows the targets: logits +margin / -margin towards the true bit for a sample given its own caption,
    zero logits (p = 1/2) otherwise. Records every corrupted input it sees."""

    token_classes = 2

    def __init__(self, tokens, captions, margin):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.tokens, self.true_ids, self.margin, self.seen = tokens, self.tokenize(captions), margin, []

    @staticmethod
    def tokenize(prompts):
        return torch.tensor([[hash(p) % 1000003] for p in prompts])

    def forward(self, z, t, ids):
        self.seen.append(z.clone())
        assert len(z) == len(self.tokens)  # one batch
        know = (ids == self.true_ids).all(1).view(-1, *[1] * (z.dim() - 1))  # sample i given its own caption
        sign = 2.0 * self.tokens - 1.0
        logit1 = torch.where(know, self.margin * sign, torch.zeros(()))
        return torch.stack([-logit1 / 2, logit1 / 2], 1)  # [B, 2, ...]: class 1 ahead by logit1


def test_losses_are_the_grn_cross_entropy_and_every_variant_sees_the_same_input():
    torch.manual_seed(1)  # not 0: prompt_reliance draws its random labels from seed 0
    tokens = torch.randint(0, 2, (6, 16, 4, 4))
    captions = [f"the digit {d}" for d in range(6)]
    model = Oracle(tokens, captions, margin=3.0)
    res = prompt_reliance(model, tokens, captions, t_values=(0.1, 0.6), batch_size=6)
    for r in res.values():
        assert r["true"] == pytest.approx(math.log1p(math.exp(-3.0)), rel=1e-6)  # -log sigmoid(margin)
        assert r["swapped_digit"] == pytest.approx(math.log(2), rel=1e-6)
        assert r["empty"] == pytest.approx(math.log(2), rel=1e-6)
    seen = model.seen
    assert len(seen) == 6 and all(torch.equal(seen[0], z) for z in seen[1:3]) and all(torch.equal(seen[3], z)
                                                                                      for z in seen[4:])
    assert not torch.equal(seen[0], seen[3])  # t = 0.1 keeps fewer clean elements than t = 0.6
    assert (seen[0] == tokens).float().mean() < (seen[3] == tokens).float().mean()


def test_the_text_to_image_grn_pays_for_a_wrong_digit():
    """The committed GRN-bit-T2I-T draws the asked digit in 0.99 of its samples (results/tables/t2i_mnist.md); on
    held-out MNIST it measures +0.09 nats for a swapped digit at t = 0.1 with 200 digits. 40 here."""
    model, tokens, captions = held_out_set(ROOT / "grn/checkpoints/t2i_mnist_bit.pt", 40)
    r = prompt_reliance(model, tokens, captions, t_values=(0.1,))[0.1]
    assert 0 < r["true"] < math.log(2)
    assert r["swapped_digit"] - r["true"] > 0.04
    assert r["empty"] > r["true"]


def test_a_class_conditional_checkpoint_is_refused_in_one_line(capsys):
    assert main([str(ROOT / "grn/checkpoints/generator_mnist.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs a text-conditioned generator" in err[0]
    assert main([str(ROOT / "grn/checkpoints/t2i_mnist_bit.pt"), "--n", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--n 0" in err[0]


def test_the_held_out_set_is_the_training_data_as_configured(tmp_path):
    """A model trained on a non-default Moving-MNIST (16 px digits) is read on the held-out split of that data,
    not of the default one; the tokenizer is the one its record names, checked by hash."""
    from grn import registry
    from grn.checkpoint import checkpoint_record, export_tokenizer, load_tokenizer
    from grn.fileio import save_torch, sha256_file
    from grn.tokenizer import build_tokenizer
    from grn.train import encode_dataset
    from grn.video_data import load_moving_mnist

    torch.manual_seed(0)
    export_tokenizer(build_tokenizer("hbq-mmnist-video", enc_dim=8, dec_dim=8), tmp_path / "tok.pt")
    model = registry.build_model("GRN-bit-T2V-T", hidden=64, depth=2, heads=4,
                                 text={"width": 32, "depth": 1, "heads": 2})
    train = {"dataset": "moving_mnist", "dataset_kwargs": {"split": "train", "digit_size": 16},
             "tokenizer": str(tmp_path / "tok.pt")}
    save_torch(checkpoint_record(model, "GRN-bit-T2V-T", model.state_dict(), train_config=train,
                                 tokenizer_sha256=sha256_file(tmp_path / "tok.pt")), tmp_path / "t2v.pt")
    _, tokens, captions = held_out_set(tmp_path / "t2v.pt", 3)
    want = load_moving_mnist("reference", digit_size=16)
    assert captions == want.captions[:3]
    assert torch.equal(tokens, encode_dataset(load_tokenizer(tmp_path / "tok.pt"), want.videos[:3], model))
    assert not torch.equal(tokens, encode_dataset(load_tokenizer(tmp_path / "tok.pt"),
                                                  load_moving_mnist("reference").videos[:3], model))
    (tmp_path / "tok.pt").write_bytes((tmp_path / "tok.pt").read_bytes() + b"x")  # not the recorded tokenizer
    with pytest.raises(UserError, match="is not the tokenizer"):
        held_out_set(tmp_path / "t2v.pt", 3)


def test_a_non_finite_loss_is_refused_not_reported():
    tokens = torch.randint(0, 2, (4, 16, 2, 2), generator=torch.Generator().manual_seed(1))
    captions = [f"the digit {d}" for d in range(4)]
    with pytest.raises(UserError, match="not finite"):
        prompt_reliance(Oracle(tokens, captions, margin=float("nan")), tokens, captions, t_values=(0.3,), batch_size=4)

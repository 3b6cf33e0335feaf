"""How much a text-conditioned GRN's predictions rest on the digit its prompt names.

Prompt accuracy (does the video show the asked digit?) says *whether* a model follows a prompt; this says
*why not*, from the training objective itself. On held-out samples with their true captions, the GRN loss
(cross-entropy over every token at a fixed clean fraction t, the same corruption draws for every variant)
is measured three times:

  * `true`: each sample's own caption;
  * `swapped_digit`: the same caption with its digit moved by +3 (mod 10), word for word ("seven" ->
    "zero", "7" -> "0"), everything else (motion, style) kept;
  * `empty`: the empty prompt (the unconditional stream of CFG).

`swapped_digit - true` is what the digit word is worth to the model, `empty - true` what the whole prompt is
worth, in nats per token element. A model that renders the asked digit pays for a wrong one (the embedded
text-to-image GRN_bit: +0.09 at t = 0.1); a model whose samples ignore the digit barely does.

`python -m grn_eval.prompt_reliance grn/checkpoints/t2v_mnist.pt` reads the tokenizer and the dataset from
the checkpoint's training record (its held-out split) and prints the three losses per t.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from grn.captions import DIGIT_WORDS, asked_digit
from grn.errors import UserError, run_command
from grn.generator import corrupt_labels

DIGIT_SHIFT = 3  # a swapped prompt asks digit (d + 3) % 10: never the same digit, every digit equally often
T_VALUES = (0.1, 0.3, 0.6)
_DIGIT = re.compile(r"\b(" + "|".join(DIGIT_WORDS) + r"|\d)\b", re.IGNORECASE)


def swap_digit(caption: str, shift: int = DIGIT_SHIFT) -> str:
    """The caption with the digit it names moved by `shift` (mod 10), in the same form (word or numeral);
    a caption naming no single digit is an error (there is nothing to swap)."""
    if asked_digit(caption) is None:
        raise UserError(f"prompt reliance: caption '{caption}' names no single digit; it needs captions that name "
                        f"exactly one digit (mnist, moving_mnist)")

    def moved(m: re.Match) -> str:
        w = m.group(0).lower()
        return str((int(w) + shift) % 10) if w.isdigit() else DIGIT_WORDS[(DIGIT_WORDS.index(w) + shift) % 10]

    return _DIGIT.sub(moved, caption)


@torch.no_grad()
def prompt_reliance(model, tokens: torch.Tensor, captions: list[str], t_values=T_VALUES, seed: int = 0,
                    batch_size: int = 50) -> dict[float, dict[str, float]]:
    """{t: {"true", "swapped_digit", "empty": mean GRN cross-entropy}} of `model` (with its own text encoder:
    `model.tokenize`) on targets `tokens` [N, ...] with their `captions`. Every variant sees the same corrupted
    input at each t (one generator seeded per t), so the differences are the prompt's alone."""
    if len(captions) != len(tokens):
        raise UserError(f"prompt reliance: {len(captions)} captions for {len(tokens)} samples")
    variants = {"true": list(captions), "swapped_digit": [swap_digit(c) for c in captions],
                "empty": [""] * len(captions)}
    ids = {k: model.tokenize(v) for k, v in variants.items()}
    device = next(model.parameters()).device
    out = {}
    for t_value in t_values:
        t = torch.full((len(tokens),), float(t_value))
        z = corrupt_labels(tokens, t, model.token_classes, torch.Generator().manual_seed(seed))
        out[float(t_value)] = {}
        for name, ids_v in ids.items():
            total = 0.0
            for s in range(0, len(tokens), batch_size):
                logits = model(z[s : s + batch_size].to(device), t[s : s + batch_size].to(device),
                               ids=ids_v[s : s + batch_size].to(device))
                target = tokens[s : s + batch_size].to(device).long()
                total += F.cross_entropy(logits.float(), target, reduction="sum").item()
            if not math.isfinite(total):
                raise UserError(f"prompt reliance: the model's loss at t = {t_value} ({name} prompts) is {total}; "
                                f"its logits are not finite, so no number is reported (check the checkpoint)")
            out[float(t_value)][name] = total / tokens.numel()
    return out


def held_out_set(checkpoint: Path, n: int):
    """(model, tokens [n, ...], captions) of a checkpoint trained here: its tokenizer (checked against the
    hash the record holds) and the held-out split of the dataset it was trained on, built with the same
    dataset_kwargs."""
    from grn.captions import dataset_captions
    from grn.checkpoint import load_model, load_tokenizer, read_generator_record
    from grn.data import pixels
    from grn.datasets import load_dataset
    from grn.fileio import sha256_file
    from grn.train import encode_dataset

    record = read_generator_record(checkpoint)
    train = record.get("train_config") or {}
    model = load_model(checkpoint, record=record)
    if getattr(model, "text", None) is None or not hasattr(model, "tokenize") or "tokenizer" not in train:
        raise UserError(f"'{checkpoint}': prompt reliance needs a text-conditioned generator trained here (its own "
                        f"text encoder and a training record naming its tokenizer)")
    tok_path = Path(__file__).resolve().parents[1] / train["tokenizer"]  # a relative path is the repository's
    if sha256_file(tok_path) != record.get("tokenizer_sha256"):
        raise UserError(f"'{tok_path}' is not the tokenizer '{checkpoint}' was trained with (sha256 differs); "
                        f"restore it (git checkout) or retrain the generator")
    # the held-out split of the data as trained (its frame size, digit size, ... from the record)
    data = load_dataset(train.get("dataset", "mnist"), **{**train.get("dataset_kwargs", {}), "split": "reference"})
    images = pixels(data)[:n]
    tokens = encode_dataset(load_tokenizer(tok_path), images, model)
    return model, tokens, dataset_captions(data)[:n]


def _cmd(args) -> int:
    if args.n < 2:
        raise UserError(f"--n {args.n}: give at least 2 held-out samples (default 200)")
    model, tokens, captions = held_out_set(Path(args.checkpoint), args.n)
    res = prompt_reliance(model, tokens, captions, seed=args.seed)
    print(f"{args.checkpoint}: GRN cross-entropy (nats per token element) on {len(tokens)} held-out samples")
    for t, r in res.items():
        print(f"  t = {t:.1f}: true {r['true']:.4f}  swapped digit {r['swapped_digit']:.4f} "
              f"(+{r['swapped_digit'] - r['true']:.4f})  empty {r['empty']:.4f} (+{r['empty'] - r['true']:.4f})")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grn_eval.prompt_reliance", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--n", type=int, default=200, help="held-out samples (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--debug", action="store_true")
    a = p.parse_args(argv)
    return run_command(_cmd, a, "prompt_reliance", a.debug)


if __name__ == "__main__":
    raise SystemExit(main())

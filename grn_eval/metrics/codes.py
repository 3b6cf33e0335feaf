"""What a tokenizer's code spends and how much of it is used, on the reference images.

A token is one latent position; its code is D labels of K classes (grn/quantizers.py). The rows:

  bits_per_token   D log2 K, read from the code space the quantizer writes (HBQ decoded at M' < M rounds:
                   d M'); the rate a generator models
  bpp              bits per token over the pixels a token covers (stride^2), per image pixel
  code_entropy     the sum over the D slots of each slot's empirical entropy in bits: what an entropy coder
                   of the marginals would need per token (<= bits_per_token; far below it when codes go unused)
  code_usage       the fraction of each slot's K classes used at least once, averaged over slots (a codebook
                   that collapsed uses few of its codes; N tokens can use at most N of them)
  code_perplexity  2^(slot entropy), averaged over slots: the number of equally used codes with that entropy
  round_error      HBQ only: mean |z - q| after the kept rounds; `extra.per_round` has the mean and maximum
                   after every round m with HBQ's bound 2^-m, which the maximum must meet (else the run stops)

These are properties of the quantizer on this image set, not estimates of a population value, so they carry
no interval; the set and its size are in the row.
"""

from __future__ import annotations

import numpy as np
import torch

from grn.hbq import hbq_quantize
from grn_eval.metrics.registry import Row, register_metric

VERSION = "1"
ROWS = ("bits_per_token", "bpp", "code_entropy", "code_usage", "code_perplexity")


def slot_statistics(codes: np.ndarray, classes: int) -> dict:
    """codes [N, D] (N tokens, D slots) of `classes` labels each -> per slot entropy (bits), usage, perplexity."""
    entropy, usage = [], []
    for slot in codes.T:
        counts = np.bincount(slot, minlength=classes)
        p = counts[counts > 0] / len(slot)
        entropy.append(float(-(p * np.log2(p)).sum()))
        usage.append(float((counts > 0).sum() / classes))
    entropy = np.asarray(entropy)
    return {"entropy": entropy, "usage": np.asarray(usage), "perplexity": 2.0**entropy}


@torch.no_grad()
def _latents_and_codes(ctx):
    tok, rounds = ctx.adapter.model, getattr(ctx.adapter, "rounds", None)
    bs = ctx.suite.batch_size
    zs, codes = [], []
    for s in range(0, len(ctx.reference_images), bs):
        z = tok.encode(ctx.reference_images[s : s + bs])
        c = hbq_quantize(z, rounds).labels if rounds is not None else tok.quantizer.codes(z)
        zs.append(z.cpu())
        codes.append(c.cpu())
    return torch.cat(zs), torch.cat(codes)


def _codes(ctx) -> list[dict]:
    tok = getattr(ctx.adapter, "model", None)
    if tok is None or not hasattr(tok, "quantizer"):
        return []
    if tok.cfg.continuous:
        reason = "not available: a continuous tokenizer writes no code"
        return [ctx.row("codes", None, {}, reason=reason)]
    rounds = getattr(ctx.adapter, "rounds", None)
    z, codes = _latents_and_codes(ctx)
    channels, classes = codes.shape[1], (2**rounds if rounds is not None else tok.quantizer.code_classes)
    bits = channels * float(np.log2(classes))
    stats = slot_statistics(codes.movedim(1, -1).reshape(-1, channels).numpy(), classes)
    pixels = tok.cfg.stride**2
    protocol = {"reference": ctx.reference_provenance, "tokens": int(codes[:, 0].numel()), "pixels_per_token": pixels}
    extra = {"quantizer": tok.cfg.quantizer, "code_space": [channels, classes],
             "per_slot_entropy": stats["entropy"].round(6).tolist(), "per_slot_usage": stats["usage"].round(6).tolist()}
    values = {"bits_per_token": bits, "bpp": bits / pixels, "code_entropy": float(stats["entropy"].sum()),
              "code_usage": float(stats["usage"].mean()), "code_perplexity": float(stats["perplexity"].mean())}
    rows = [ctx.row(name, values[name], protocol, extra=extra) for name in ROWS]
    if tok.cfg.quantizer == "hbq":
        rows.append(_round_error(ctx, z, rounds or tok.cfg.rounds, protocol))
    return rows


def _round_error(ctx, z: torch.Tensor, rounds: int, protocol: dict) -> dict:
    per_round = []
    for m in range(1, rounds + 1):
        err = (z - hbq_quantize(z, m).values).abs()
        mean, worst, bound = float(err.mean()), float(err.max()), 0.5**m
        if worst > bound:
            raise ValueError(f"model '{ctx.entry.name}': HBQ error {worst} after {m} rounds exceeds its bound {bound}")
        per_round.append({"round": m, "mean": mean, "max": worst, "bound": bound})
    return ctx.row("round_error", per_round[-1]["mean"], protocol, extra={"per_round": per_round})


register_metric(key="codes", task="reconstruction", version=VERSION, compute=_codes, order=60,
                rows=(Row("bits_per_token", "lower", "bits/token", 0), Row("bpp", "lower", "bpp", 3),
                      Row("code_entropy", "higher", "code entropy (bits)", 2),
                      Row("code_usage", "higher", "usage", 3), Row("code_perplexity", "higher", "perplexity", 1),
                      Row("round_error", "lower", "HBQ error", 4)))

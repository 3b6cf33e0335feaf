"""Raster-order autoregressive baseline (LlamaGen-style) over HBQ tokens.

Positions are generated one at a time in raster order; each position carries d channel labels
(2^M-way each, the `ind` layout), predicted by per-channel heads from everything before it.
The shared backbone runs in causal mode with the class tokens as the prefix; the input at
position i is the one-hot of position i-1 (zeros at i = 0). Sampling uses a KV cache, CFG on
logits, temperature and top-k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from grn.backbone import Backbone, KVCache
from grn.baselines.config import TokenBaselineConfig
from grn.errors import check_finite
from grn.generator import TokenGeometry, onehot_input
from grn.sampling import (
    GUIDANCE,
    TEMPERATURE,
    Trace,
    categorical,
    drop_condition,
    guide,
    notifier,
    null_condition,
    probs_entropy,
    refuse,
    uniform,
)


@dataclass(frozen=True)
class ARConfig(TokenBaselineConfig):
    pass  # the in-context tokens from the first block: the causal mask and the KV cache need them there


@dataclass(frozen=True)
class ARSamplerConfig:
    temperature: float = 1.0
    top_k: int | None = None
    guidance: float = 1.0  # the classifier-free guidance scale (1: no guidance)


# What a suite may set (as grn.sampling.SAMPLER_OPTIONS: ranges here, type and default from ARSamplerConfig)
SAMPLER_OPTIONS = {"temperature": TEMPERATURE, "top_k": {"min": 1}, "guidance": GUIDANCE}


class ARModel(TokenGeometry, nn.Module):
    kind = "ar"

    def __init__(self, cfg: ARConfig):
        super().__init__()
        self.cfg = cfg
        k, d = cfg.token_classes, cfg.token_channels
        self.net = Backbone(cfg.backbone(k * d, k * d, in_context_start=0))

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    def _inputs(self, seq: torch.Tensor) -> torch.Tensor:
        """Raster sequence [B, L, d] -> one-hot inputs [B, K*d, L] (class-major), shifted right by one position."""
        onehot = onehot_input(seq.transpose(1, 2), self.token_classes, torch.float32)
        return F.pad(onehot, (1, 0))[..., : seq.shape[1]]

    def _logits(self, out: torch.Tensor) -> torch.Tensor:
        """[B, n, K*d] -> [B, n, d, K]."""
        b, n, _ = out.shape
        return out.reshape(b, n, self.token_classes, self.cfg.latent_channels).transpose(2, 3)

    def forward(self, tokens: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for every position: tokens [B, d, h, w] (or [B, d, T', h, w]) -> [B, L, d, K]."""
        seq = tokens.flatten(2).transpose(1, 2)  # [B, L, d] raster order
        t = torch.ones(len(y), device=y.device)
        return self._logits(self.net.forward_causal(self._inputs(seq), t, y))

    def loss(self, tokens, y, generator=None, forward=None):
        y = drop_condition(self, y, self.cfg.class_dropout, generator)
        logits = (forward or self)(tokens, y)
        target = tokens.flatten(2).transpose(1, 2)
        return F.cross_entropy(logits.reshape(-1, self.token_classes).float(), target.reshape(-1).long())


# ---------------------------------------------------------------------------------------
# Sampling: raster decoding with a KV cache, CFG, temperature and top-k
# ---------------------------------------------------------------------------------------


def sample_ar(model: ARModel, cond: torch.Tensor, sampler: ARSamplerConfig, generators: list[torch.Generator], *,
              entropy=None, uncond=None, callback=None) -> tuple[torch.Tensor, Trace]:
    """Tokens [B, d, h, w] position by position in raster order, and the trace (conditional entropy per
    position, NFE). `callback` gets each position's info: i, active, logits_cond, probs, x (the position's labels)."""
    refuse("ar", entropy=entropy, uncond=uncond)
    return decode_raster(model, cond, sampler, generators, callback)


def _step_input(model: ARModel, seq, i: int, cached: bool) -> torch.Tensor:
    """What the network reads at position i: with the cache only the new input (the one-hot of position
    i - 1, zeros at 0), without it the whole prefix."""
    return model._inputs(seq[:, max(i - 1, 0) : i + 1])[..., -1:] if cached else model._inputs(seq[:, : i + 1])


def _position_logits(model: ARModel, i: int, cache: KVCache | None):
    """forward(x, t, cond) -> logits [B, d, K] of position i (what `guide` calls)."""
    def forward(x, t, cond):
        out = model.net.forward_causal(x, t, cond, start=i, cache=cache) if cache is not None else \
            model.net.forward_causal(x, t, cond)
        return model._logits(out)[:, -1]
    return forward


def _probs(logits: torch.Tensor, sampler: ARSamplerConfig) -> torch.Tensor:
    """Tempered, top-k truncated probabilities over the last dim."""
    logits = logits / sampler.temperature
    if sampler.top_k is not None:
        kth = logits.topk(sampler.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits.float(), dim=-1)


def _record(trace: Trace, k: int, s: dict) -> None:
    # normalised by log K after the mean (MaskGIT: before), the order these traces have always had, so that
    # their numbers do not move
    p = torch.softmax(s["logits_cond"].float(), dim=-1)
    trace.entropy_cond.append(float(probs_entropy(p, -1).mean() / torch.log(torch.tensor(float(k)))))
    trace.nfe.append(s["nfe"])
    trace.active.append(int(s["active"].numel()))


@torch.no_grad()
def decode_raster(model: ARModel, y: torch.Tensor, sampler: ARSamplerConfig, generators: list[torch.Generator],
                  callback=None, use_cache: bool = True) -> tuple[torch.Tensor, Trace]:
    """`sample_ar`, with the choice of recomputing the whole prefix each position (`use_cache=False`,
    to check the cache)."""
    b = len(y)
    d, *grid = model.token_shape  # (h, w), or (T', h, w) for a video: raster order over them
    length, k = math.prod(grid), model.token_classes
    null, t, everyone = null_condition(model, y), torch.ones(b, device=y.device), torch.arange(b)
    seq = torch.zeros(b, length, d, dtype=torch.long, device=y.device)
    cache = KVCache(model.cfg.depth) if use_cache else None
    trace = Trace()
    notify = notifier(partial(_record, trace, k), callback)
    for i in range(length):
        x = _step_input(model, seq, i, use_cache)
        lc, logits = guide(_position_logits(model, i, cache), x, t, y, null, sampler.guidance)
        check_finite([("logits", logits)], f"AR position {i}")
        probs = _probs(logits, sampler)  # [B, d, K]
        seq[:, i] = categorical(probs, uniform(generators, d, y.device), dim=-1)
        notify({"i": i, "active": everyone, "logits_cond": lc, "probs": probs, "x": seq[:, i],
                "nfe": 2 if logits is not lc else 1})
    trace.steps_used = [length] * b
    return seq.transpose(1, 2).reshape(b, d, *grid), trace


def build_ar(**overrides) -> ARModel:
    return ARModel(replace(ARConfig(), **overrides))

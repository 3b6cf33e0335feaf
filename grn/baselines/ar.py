"""Raster-order autoregressive baseline (LlamaGen-style) over HBQ tokens.

Positions are generated one at a time in raster order; each position carries d channel labels
(2^M-way each, the `ind` layout), predicted by per-channel heads from everything before it.
The shared backbone runs in causal mode with the class tokens as the prefix; the input at
position i is the one-hot of position i-1 (zeros at i = 0). Sampling uses a KV cache, CFG on
logits, temperature and top-k.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from grn.backbone import Backbone, BackboneConfig, KVCache
from grn.errors import check_finite


@dataclass(frozen=True)
class ARConfig:
    hidden: int = 128
    depth: int = 4
    heads: int = 4
    bottleneck: int = 64
    in_context_len: int = 4
    grid: int = 8
    latent_channels: int = 4
    rounds: int = 4
    num_classes: int = 10
    class_dropout: float = 0.1


@dataclass(frozen=True)
class ARSamplerConfig:
    temperature: float = 1.0
    top_k: int | None = None
    cfg: float = 1.0


class ARModel(nn.Module):
    kind = "ar"

    def __init__(self, cfg: ARConfig):
        super().__init__()
        self.cfg = cfg
        k, d = 2**cfg.rounds, cfg.latent_channels
        self.net = Backbone(BackboneConfig(grid=cfg.grid, in_channels=k * d, out_channels=k * d, hidden=cfg.hidden,
                                           depth=cfg.depth, heads=cfg.heads, bottleneck=cfg.bottleneck,
                                           num_classes=cfg.num_classes, in_context_len=cfg.in_context_len,
                                           in_context_start=0))

    @property
    def token_shape(self):
        return (self.cfg.latent_channels, self.cfg.grid, self.cfg.grid)

    @property
    def token_classes(self) -> int:
        return 2**self.cfg.rounds

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    def _inputs(self, seq: torch.Tensor) -> torch.Tensor:
        """Raster sequence [B, L, d] -> one-hot inputs [B, K*d, L], shifted right by one position."""
        b, length, d = seq.shape
        k = self.token_classes
        onehot = F.one_hot(seq.long(), k).permute(0, 3, 2, 1).reshape(b, k * d, length).float()  # class-major
        return F.pad(onehot, (1, 0))[..., :length]

    def _logits(self, out: torch.Tensor) -> torch.Tensor:
        """[B, n, K*d] -> [B, n, d, K]."""
        b, n, _ = out.shape
        return out.reshape(b, n, self.token_classes, self.cfg.latent_channels).transpose(2, 3)

    def forward(self, tokens: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for every position: tokens [B, d, h, w] -> [B, h*w, d, K]."""
        seq = tokens.flatten(2).transpose(1, 2)  # [B, L, d] raster order
        t = torch.ones(len(y), device=y.device)
        return self._logits(self.net.forward_causal(self._inputs(seq), t, y))

    def loss(self, tokens, y, generator=None, forward=None):
        drop = torch.rand(len(y), generator=generator, device=y.device) < self.cfg.class_dropout
        y = torch.where(drop, torch.full_like(y, self.null_class), y)
        logits = (forward or self)(tokens, y)
        target = tokens.flatten(2).transpose(1, 2)
        return F.cross_entropy(logits.reshape(-1, self.token_classes).float(), target.reshape(-1).long())

    @torch.no_grad()
    def sample(self, y: torch.Tensor, cfg: ARSamplerConfig, generators: list[torch.Generator],
               use_cache: bool = True) -> tuple[torch.Tensor, dict]:
        """Raster decoding. Returns tokens [B, d, h, w] and a trace (entropy per position, NFE)."""
        b = len(y)
        d, h, w = self.token_shape
        length, k = h * w, self.token_classes
        guided = cfg.cfg != 1.0
        yy = torch.cat([y, torch.full_like(y, self.null_class)]) if guided else y
        t = torch.ones(len(yy), device=y.device)
        seq = torch.zeros(b, length, d, dtype=torch.long, device=y.device)
        cache = KVCache(self.cfg.depth) if use_cache else None
        trace = {"entropy_cond": [], "nfe": [], "active": [], "steps_used": [length] * b}
        for i in range(length):
            if use_cache:
                prev = seq[:, i - 1 : i] if i > 0 else None
                x = self._inputs(seq[:, :1])[..., :1] if prev is None else \
                    F.one_hot(prev, k).permute(0, 3, 2, 1).reshape(b, k * d, 1).float()
                x = torch.cat([x, x]) if guided else x
                out = self._logits(self.net.forward_causal(x, t, yy, start=i, cache=cache))[:, -1]
            else:
                x = self._inputs(seq[:, : i + 1])
                x = torch.cat([x, x]) if guided else x
                out = self._logits(self.net.forward_causal(x, t, yy))[:, -1]
            lc, lu = (out.chunk(2) if guided else (out, out))
            logits = lu + cfg.cfg * (lc - lu) if guided else lc
            check_finite([("logits", logits)], f"AR position {i}")
            logits = logits / cfg.temperature
            if cfg.top_k is not None:
                kth = logits.topk(cfg.top_k, dim=-1).values[..., -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits.float(), dim=-1)  # [B, d, K]
            u = torch.stack([torch.rand(d, generator=g, device=g.device) for g in generators]).to(y.device)
            seq[:, i] = (u.unsqueeze(-1) > probs.cumsum(-1)).sum(-1).clamp(max=k - 1)
            p = torch.softmax(lc.float(), dim=-1)
            trace["entropy_cond"].append(float((-(p * p.clamp_min(1e-30).log()).sum(-1)).mean()
                                               / torch.log(torch.tensor(float(k)))))
            trace["nfe"].append(2 if guided else 1)
            trace["active"].append(b)
        return seq.transpose(1, 2).reshape(b, d, h, w), trace


def build_ar(**overrides) -> ARModel:
    return ARModel(replace(ARConfig(), **overrides))

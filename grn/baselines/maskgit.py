"""MaskGIT baseline: absorbing-[MASK] masked token modelling with confidence-based unmasking.

Elements (the d channel labels of every position, like GRN's corruption) are replaced by an
extra [MASK] class. Training masks ceil(gamma(r) * N) elements, r ~ U(0, 1), gamma(r) = cos(pi r / 2),
and scores the masked ones. Sampling starts fully masked; at step s of S it predicts every masked
element, samples it, and re-masks the n_s = floor(gamma((s + 1) / S) * N) least confident of the
masked ones (confidence = log-probability of the sample + Gumbel noise scaled by an annealed
temperature). Once unmasked, an element never changes: the monotone decoding GRN departs from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from grn.backbone import Backbone, BackboneConfig
from grn.errors import check_finite


@dataclass(frozen=True)
class MaskGITConfig:
    hidden: int = 128
    depth: int = 4
    heads: int = 4
    bottleneck: int = 64
    in_context_len: int = 4
    in_context_start: int = 1
    grid: int = 8
    latent_channels: int = 4
    rounds: int = 4
    num_classes: int = 10
    class_dropout: float = 0.1


@dataclass(frozen=True)
class MaskGITSamplerConfig:
    steps: int = 12
    temperature: float = 1.0  # for sampling the tokens
    choice_temperature: float = 4.5  # Gumbel noise on the confidence, annealed linearly to 0
    cfg: float = 1.0


def gamma(r):
    """Cosine mask schedule: the fraction of elements still masked at progress r in [0, 1]."""
    return torch.cos(math.pi / 2 * torch.as_tensor(r, dtype=torch.float64))


def masked_count(step: int, steps: int, total: int) -> int:
    """Elements left masked after `step` (0-based) of `steps`: floor(gamma((step + 1) / steps) * total)."""
    return int(math.floor(float(gamma((step + 1) / steps)) * total + 1e-9))


class MaskGITModel(nn.Module):
    kind = "maskgit"

    def __init__(self, cfg: MaskGITConfig):
        super().__init__()
        self.cfg = cfg
        k, d = 2**cfg.rounds, cfg.latent_channels
        self.net = Backbone(BackboneConfig(grid=cfg.grid, in_channels=(k + 1) * d, out_channels=k * d,
                                           hidden=cfg.hidden, depth=cfg.depth, heads=cfg.heads,
                                           bottleneck=cfg.bottleneck, num_classes=cfg.num_classes,
                                           in_context_len=cfg.in_context_len,
                                           in_context_start=cfg.in_context_start))

    @property
    def token_shape(self):
        return (self.cfg.latent_channels, self.cfg.grid, self.cfg.grid)

    @property
    def token_classes(self) -> int:
        return 2**self.cfg.rounds

    @property
    def mask_id(self) -> int:
        return self.token_classes

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    def forward(self, tokens: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """tokens [B, d, h, w] with mask_id where masked -> logits [B, K, d, h, w]."""
        b, d, h, w = tokens.shape
        k1 = self.token_classes + 1
        x = F.one_hot(tokens.long(), k1).permute(0, 4, 1, 2, 3).reshape(b, k1 * d, h, w).float()
        out = self.net(x, t, y)
        return out.reshape(b, h, w, self.token_classes, d).permute(0, 3, 4, 1, 2)

    def loss(self, tokens, y, generator=None, forward=None):
        b = tokens.shape[0]
        n = tokens[0].numel()
        r = torch.rand(b, generator=generator, device=tokens.device)
        n_mask = torch.ceil(gamma(r).to(tokens.device) * n).clamp(min=1).long()
        scores = torch.rand(tokens.shape, generator=generator, device=tokens.device).flatten(1)
        ranks = scores.argsort(1).argsort(1)  # a uniformly random order of the elements
        mask = (ranks < n_mask[:, None]).view_as(tokens)
        drop = torch.rand(b, generator=generator, device=tokens.device) < self.cfg.class_dropout
        y = torch.where(drop, torch.full_like(y, self.null_class), y)
        t = 1 - n_mask.float() / n  # the unmasked fraction, as GRN's clean fraction
        logits = (forward or self)(torch.where(mask, self.mask_id, tokens), t, y)
        ce = F.cross_entropy(logits.float(), tokens.long(), reduction="none")
        return (ce * mask).sum() / mask.sum()

    @torch.no_grad()
    def sample(self, y: torch.Tensor, cfg: MaskGITSamplerConfig, generators: list[torch.Generator]):
        b = len(y)
        shape = self.token_shape
        n = math.prod(shape)
        z = torch.full((b, *shape), self.mask_id, dtype=torch.long, device=y.device)
        trace = {"masked": [], "entropy_cond": [], "nfe": [], "active": [], "steps_used": [cfg.steps] * b}
        guided = cfg.cfg != 1.0
        for s in range(cfg.steps):
            masked = z == self.mask_id
            t = 1 - masked.flatten(1).float().mean(1)
            if guided:
                both = self(torch.cat([z, z]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, self.null_class)]))
                lc, lu = both.chunk(2)
                logits = lu + cfg.cfg * (lc - lu)
            else:
                lc = logits = self(z, t, y)
            check_finite([("logits", logits)], f"MaskGIT step {s}")
            probs = torch.softmax(logits.float() / cfg.temperature, dim=1)
            u = torch.stack([torch.rand(shape, generator=g, device=g.device) for g in generators]).to(y.device)
            pred = (u.unsqueeze(1) > probs.cumsum(1)).sum(1).clamp(max=self.token_classes - 1)
            pred = torch.where(masked, pred, z)
            conf = torch.log(probs.gather(1, pred.unsqueeze(1)).squeeze(1).clamp_min(1e-30))
            g_u = torch.stack([torch.rand(shape, generator=g, device=g.device) for g in generators]).to(y.device)
            gumbel = -torch.log(-torch.log(g_u.clamp(1e-20, 1 - 1e-7)))
            conf = conf + cfg.choice_temperature * (1 - (s + 1) / cfg.steps) * gumbel
            conf = torch.where(masked, conf, torch.full_like(conf, float("inf")))  # unmasked stay unmasked
            keep_masked = masked_count(s, cfg.steps, n)
            order = conf.flatten(1).argsort(1)
            remask = torch.zeros_like(masked.flatten(1))
            remask.scatter_(1, order[:, :keep_masked], True)
            z = torch.where(remask.view_as(z), self.mask_id, pred)
            p = torch.softmax(lc.float(), dim=1)
            ent = -(p * p.clamp_min(1e-30).log()).sum(1) / math.log(self.token_classes)
            trace["entropy_cond"].append(float(ent[masked].mean()) if masked.any() else 0.0)
            trace["masked"].append([int(v) for v in (z == self.mask_id).flatten(1).sum(1)])
            trace["nfe"].append(2 if guided else 1)
            trace["active"].append(b)
        return z, trace


def build_maskgit(**overrides) -> MaskGITModel:
    return MaskGITModel(replace(MaskGITConfig(), **overrides))

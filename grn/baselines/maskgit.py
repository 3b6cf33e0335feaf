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
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from grn.backbone import Backbone
from grn.baselines.config import TokenBaselineConfig
from grn.errors import check_finite
from grn.generator import TokenGeometry, onehot_input
from grn.sampling import (
    GUIDANCE,
    STEPS,
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
class MaskGITConfig(TokenBaselineConfig):
    in_context_start: int = 1


@dataclass(frozen=True)
class MaskGITSamplerConfig:
    steps: int = 12
    temperature: float = 1.0  # for sampling the tokens
    choice_temperature: float = 4.5  # Gumbel noise on the confidence, annealed linearly to 0
    guidance: float = 1.0  # the classifier-free guidance scale (1: no guidance)


# What a suite may set (as grn.sampling.SAMPLER_OPTIONS: ranges here, type and default from the config)
SAMPLER_OPTIONS = {"steps": STEPS, "temperature": TEMPERATURE, "choice_temperature": {"min": 0}, "guidance": GUIDANCE}


def gamma(r):
    """Cosine mask schedule: the fraction of elements still masked at progress r in [0, 1]."""
    return torch.cos(math.pi / 2 * torch.as_tensor(r, dtype=torch.float64))


def masked_count(step: int, steps: int, total: int) -> int:
    """Elements left masked after `step` (0-based) of `steps`: floor(gamma((step + 1) / steps) * total)."""
    return int(math.floor(float(gamma((step + 1) / steps)) * total + 1e-9))


class MaskGITModel(TokenGeometry, nn.Module):
    kind = "maskgit"

    def __init__(self, cfg: MaskGITConfig):
        super().__init__()
        self.cfg = cfg
        k, d = cfg.token_classes, cfg.token_channels
        self.net = Backbone(cfg.backbone((k + 1) * d, k * d))  # + the mask label

    @property
    def mask_id(self) -> int:
        return self.token_classes

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    def forward(self, tokens: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """tokens [B, d, h, w] with mask_id where masked -> logits [B, K, d, h, w]."""
        b, d, h, w = tokens.shape
        out = self.net(onehot_input(tokens, self.token_classes + 1, torch.float32), t, y)
        return out.reshape(b, h, w, self.token_classes, d).permute(0, 3, 4, 1, 2)

    def loss(self, tokens, y, generator=None, forward=None):
        b = tokens.shape[0]
        n = tokens[0].numel()
        r = torch.rand(b, generator=generator, device=tokens.device)
        n_mask = torch.ceil(gamma(r).to(tokens.device) * n).clamp(min=1).long()
        scores = torch.rand(tokens.shape, generator=generator, device=tokens.device).flatten(1)
        ranks = scores.argsort(1).argsort(1)  # a uniformly random order of the elements
        mask = (ranks < n_mask[:, None]).view_as(tokens)
        y = drop_condition(self, y, self.cfg.class_dropout, generator)
        t = 1 - n_mask.float() / n  # the unmasked fraction, as GRN's clean fraction
        logits = (forward or self)(torch.where(mask, self.mask_id, tokens), t, y)
        ce = F.cross_entropy(logits.float(), tokens.long(), reduction="none")
        return (ce * mask).sum() / mask.sum()


# ---------------------------------------------------------------------------------------
# Sampling: confidence-based unmasking
# ---------------------------------------------------------------------------------------


def _confidence(probs, pred, masked, g_u, sampler: MaskGITSamplerConfig, s: int) -> torch.Tensor:
    """Log-probability of each sampled label plus annealed Gumbel noise; +inf where already unmasked
    (those are never re-masked)."""
    conf = torch.log(probs.gather(1, pred.unsqueeze(1)).squeeze(1).clamp_min(1e-30))
    gumbel = -torch.log(-torch.log(g_u.clamp(1e-20, 1 - 1e-7)))
    conf = conf + sampler.choice_temperature * (1 - (s + 1) / sampler.steps) * gumbel
    return torch.where(masked, conf, torch.full_like(conf, float("inf")))


def _remask(pred, conf, n_masked: int, mask_id: int) -> torch.Tensor:
    """The code with the n_masked least confident elements masked again."""
    order = conf.flatten(1).argsort(1)
    remask = torch.zeros_like(pred, dtype=torch.bool).flatten(1)
    remask.scatter_(1, order[:, :n_masked], True)
    return torch.where(remask.view_as(pred), mask_id, pred)


def _record(trace: Trace, model: MaskGITModel, s: dict) -> None:
    ent = probs_entropy(torch.softmax(s["logits_cond"].float(), dim=1), 1) / math.log(model.token_classes)
    masked = s["masked_before"]
    trace.entropy_cond.append(float(ent[masked].mean()) if masked.any() else 0.0)
    trace.masked.append([int(v) for v in (s["x"] == model.mask_id).flatten(1).sum(1)])
    trace.nfe.append(s["nfe"])
    trace.active.append(int(s["active"].numel()))


@torch.no_grad()
def sample_maskgit(model: MaskGITModel, cond: torch.Tensor, sampler: MaskGITSamplerConfig,
                   generators: list[torch.Generator], *, entropy=None, uncond=None,
                   callback=None) -> tuple[torch.Tensor, Trace]:
    """Tokens [B, d, h, w] from a fully masked start in `sampler.steps` steps, and the trace (conditional entropy
    of the masked elements, elements still masked, NFE). `callback` gets each step's info: i, active,
    masked_before, logits_cond, probs, x."""
    refuse("maskgit", entropy=entropy, uncond=uncond)
    b, shape = len(cond), model.token_shape
    n, device = math.prod(shape), cond.device
    z = torch.full((b, *shape), model.mask_id, dtype=torch.long, device=device)
    null, everyone = null_condition(model, cond), torch.arange(b)
    trace = Trace()
    notify = notifier(partial(_record, trace, model), callback)
    for s in range(sampler.steps):
        masked = z == model.mask_id
        t = 1 - masked.flatten(1).float().mean(1)  # the unmasked fraction, as GRN's clean fraction
        lc, logits = guide(model, z, t, cond, null, sampler.guidance)
        check_finite([("logits", logits)], f"MaskGIT step {s}")
        probs = torch.softmax(logits.float() / sampler.temperature, dim=1)
        pred = torch.where(masked, categorical(probs, uniform(generators, shape, device)), z)
        conf = _confidence(probs, pred, masked, uniform(generators, shape, device), sampler, s)
        z = _remask(pred, conf, masked_count(s, sampler.steps, n), model.mask_id)
        notify({"i": s, "active": everyone, "masked_before": masked, "logits_cond": lc, "probs": probs, "x": z,
                "nfe": 2 if logits is not lc else 1})
    trace.steps_used = [sampler.steps] * b
    return z, trace


def build_maskgit(**overrides) -> MaskGITModel:
    return MaskGITModel(replace(MaskGITConfig(), **overrides))

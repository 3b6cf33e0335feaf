"""The "diffusion" column: flow matching on the continuous tanh latents of the same autoencoder.

x_t = t * x + (1 - t) * eps with t the clean fraction (as GRN's t), t ~ sigmoid(N(P_mean, P_std)).
The network predicts x ('x' prediction, JiT) or the velocity v = x - eps ('v', SiT); the loss is the
velocity error either way. Sampling integrates dx/dt = v from t = 0 (noise) to 1 with Euler or
Heun steps and CFG inside an interval of t.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn

from grn.backbone import Backbone
from grn.baselines.config import BaselineConfig
from grn.sampling import (
    GUIDANCE,
    STEPS,
    Trace,
    drop_condition,
    guide,
    in_guidance_interval,
    notifier,
    null_condition,
    per_sample,
    refuse,
)


@dataclass(frozen=True)
class FlowConfig(BaselineConfig):
    in_context_start: int = 1
    prediction: str = "x"  # 'x' (JiT) or 'v' (SiT)
    p_mean: float = -0.8
    p_std: float = 0.8
    t_eps: float = 0.05  # clamps 1 - t in the x -> v conversion


@dataclass(frozen=True)
class FlowSamplerConfig:
    steps: int = 50
    method: str = "heun"  # 'euler' or 'heun'
    guidance: float = 1.0  # the classifier-free guidance scale (1: no guidance)
    guidance_interval: tuple[float, float] = (0.0, 1.0)  # the official rule: grn.sampling.in_guidance_interval


METHODS = ("euler", "heun")
# What a suite may set (as grn.sampling.SAMPLER_OPTIONS: ranges here, type and default from the config)
SAMPLER_OPTIONS = {
    "steps": STEPS, "method": {"choices": METHODS}, "guidance": GUIDANCE,
    "guidance_interval": {"min": 2, "max": 2, "increasing": True, "why": "[lo, hi]",
                     "item": {"min": 0, "why": "power-cos guidance (lo < 0) is for GRN samplers only"}},
}


class FlowModel(nn.Module):
    kind = "flow"

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        if cfg.prediction not in ("x", "v"):
            raise ValueError("prediction must be 'x' or 'v'")
        self.cfg = cfg
        self.net = Backbone(cfg.backbone(cfg.latent_channels, cfg.latent_channels))

    @property
    def latent_shape(self):
        c, g, f = self.cfg.latent_channels, self.cfg.grid, self.cfg.frames
        return (c, g, g) if f == 1 else (c, f, g, g)

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The velocity field v(x_t, t, y)."""
        b, d = x_t.shape[:2]
        # a video [B, d, T', h, w] is seen as its frames stacked: [B, d, T' * h, w]
        out = self.net(x_t.reshape(b, d, -1, x_t.shape[-1]), t, y).transpose(1, 2).reshape(x_t.shape)
        if self.cfg.prediction == "v":
            return out
        return (out - x_t) / (1 - t).clamp(min=self.cfg.t_eps).view(-1, *[1] * (x_t.dim() - 1))

    def loss(self, x: torch.Tensor, y: torch.Tensor, generator=None, forward=None) -> torch.Tensor:
        b = x.shape[0]
        t = torch.sigmoid(torch.randn(b, generator=generator, device=x.device) * self.cfg.p_std + self.cfg.p_mean)
        eps = torch.randn(x.shape, generator=generator, device=x.device)
        tb = t.view(-1, *[1] * (x.dim() - 1))
        x_t = tb * x + (1 - tb) * eps
        y = drop_condition(self, y, self.cfg.class_dropout, generator)
        v = (forward or self)(x_t, t, y)
        return ((v - (x - eps)) ** 2).mean()


# ---------------------------------------------------------------------------------------
# Sampling: Euler / Heun integration of the guided velocity
# ---------------------------------------------------------------------------------------


@torch.no_grad()
def sample_flow(model: FlowModel, cond: torch.Tensor, sampler: FlowSamplerConfig, generators: list[torch.Generator], *,
                entropy=None, uncond=None, callback=None) -> tuple[torch.Tensor, Trace]:
    """Continuous latents [B, d, h, w] integrated from Gaussian noise, and the trace (NFE per step).
    `callback` gets each step's info: i, active, t, t_next, x."""
    refuse("flow", entropy=entropy, uncond=uncond)
    eps = per_sample(lambda g: torch.randn(model.latent_shape, generator=g, device=g.device), generators, cond.device)
    null = null_condition(model, cond)
    return integrate(lambda x, t: guided_velocity(model, x, t, cond, null, sampler), eps, sampler.steps, sampler.method,
                     callback=callback)


def guided_velocity(model: FlowModel, x, t, y, null, sampler: FlowSamplerConfig):
    """The velocity at scalar t, guided where t lies in the CFG interval (grn.sampling.in_guidance_interval)."""
    tt = torch.full((len(x),), float(t), device=x.device)
    inside = sampler.guidance != 1.0 and bool(in_guidance_interval(torch.tensor(float(t)), sampler.guidance_interval))
    return guide(model, x, tt, y, null, sampler.guidance if inside else 1.0)[1]


def _record(trace: Trace, s: dict) -> None:
    trace.nfe.append(s["nfe"])
    trace.active.append(int(s["active"].numel()))


def integrate(velocity, x0: torch.Tensor, steps: int, method: str = "heun", last_step_euler: bool = True,
              callback=None) -> tuple[torch.Tensor, Trace]:
    """Integrate dx/dt = velocity(x, t) from t = 0 to 1. Returns (x(1), trace with NFE per step).
    `last_step_euler`: the x-prediction velocity is singular at t = 1, so Heun's last step is Euler."""
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}'; allowed: {', '.join(repr(m) for m in METHODS)}")
    ts = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    x, everyone = x0, torch.arange(len(x0))
    trace = Trace()
    notify = notifier(partial(_record, trace), callback)
    for i in range(steps):
        t, t_next = float(ts[i]), float(ts[i + 1])
        dt = t_next - t
        v = velocity(x, t)
        heun = method == "heun" and (i < steps - 1 or not last_step_euler)
        if heun:
            x_pred = x + dt * v
            x = x + dt * 0.5 * (v + velocity(x_pred, t_next))
        else:
            x = x + dt * v
        notify({"i": i, "active": everyone, "t": t, "t_next": t_next, "x": x, "nfe": 2 if heun else 1})
    trace.steps_used = [steps] * len(x0)
    return x, trace


def build_flow(**overrides) -> FlowModel:
    return FlowModel(replace(FlowConfig(), **overrides))

"""The "diffusion" column: flow matching on the continuous tanh latents of the same autoencoder.

x_t = t * x + (1 - t) * eps with t the clean fraction (as GRN's t), t ~ sigmoid(N(P_mean, P_std)).
The network predicts x ('x' prediction, JiT) or the velocity v = x - eps ('v', SiT); the loss is the
velocity error either way. Sampling integrates dx/dt = v from t = 0 (noise) to 1 with Euler or
Heun steps and CFG inside an interval of t.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from grn.backbone import Backbone, BackboneConfig
from grn.sampling import in_cfg_interval


@dataclass(frozen=True)
class FlowConfig:
    hidden: int = 128
    depth: int = 4
    heads: int = 4
    bottleneck: int = 64
    in_context_len: int = 4
    in_context_start: int = 1
    grid: int = 8
    latent_channels: int = 4
    num_classes: int = 10
    prediction: str = "x"  # 'x' (JiT) or 'v' (SiT)
    p_mean: float = -0.8
    p_std: float = 0.8
    class_dropout: float = 0.1
    t_eps: float = 0.05  # clamps 1 - t in the x -> v conversion


@dataclass(frozen=True)
class FlowSamplerConfig:
    steps: int = 50
    method: str = "heun"  # 'euler' or 'heun'
    cfg: float = 1.0
    cfg_interval: tuple[float, float] = (0.0, 1.0)  # the official rule: grn.sampling.in_cfg_interval


class FlowModel(nn.Module):
    kind = "flow"

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        if cfg.prediction not in ("x", "v"):
            raise ValueError("prediction must be 'x' or 'v'")
        self.cfg = cfg
        d = cfg.latent_channels
        self.net = Backbone(BackboneConfig(grid=cfg.grid, in_channels=d, out_channels=d, hidden=cfg.hidden,
                                           depth=cfg.depth, heads=cfg.heads, bottleneck=cfg.bottleneck,
                                           num_classes=cfg.num_classes, in_context_len=cfg.in_context_len,
                                           in_context_start=cfg.in_context_start))

    @property
    def latent_shape(self):
        return (self.cfg.latent_channels, self.cfg.grid, self.cfg.grid)

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The velocity field v(x_t, t, y)."""
        b, d, h, w = x_t.shape
        out = self.net(x_t, t, y).transpose(1, 2).reshape(b, d, h, w)
        if self.cfg.prediction == "v":
            return out
        return (out - x_t) / (1 - t).clamp(min=self.cfg.t_eps).view(-1, 1, 1, 1)

    def loss(self, x: torch.Tensor, y: torch.Tensor, generator=None, forward=None) -> torch.Tensor:
        b = x.shape[0]
        t = torch.sigmoid(torch.randn(b, generator=generator, device=x.device) * self.cfg.p_std + self.cfg.p_mean)
        eps = torch.randn(x.shape, generator=generator, device=x.device)
        x_t = t.view(-1, 1, 1, 1) * x + (1 - t.view(-1, 1, 1, 1)) * eps
        drop = torch.rand(b, generator=generator, device=x.device) < self.cfg.class_dropout
        y = torch.where(drop, torch.full_like(y, self.null_class), y)
        v = (forward or self)(x_t, t, y)
        return ((v - (x - eps)) ** 2).mean()

    @torch.no_grad()
    def sample(self, y: torch.Tensor, cfg: FlowSamplerConfig, generators: list[torch.Generator]):
        eps = torch.stack([torch.randn(self.latent_shape, generator=g, device=g.device) for g in generators])
        return integrate(lambda x, t: guided_velocity(self, x, t, y, cfg), eps.to(y.device), cfg.steps, cfg.method)


def guided_velocity(model: FlowModel, x, t, y, cfg: FlowSamplerConfig):
    tt = torch.full((len(x),), float(t), device=x.device)
    if cfg.cfg == 1.0 or not bool(in_cfg_interval(torch.tensor(float(t)), cfg.cfg_interval)):
        return model(x, tt, y)
    both = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, torch.full_like(y, model.null_class)]))
    vc, vu = both.chunk(2)
    return vu + cfg.cfg * (vc - vu)


def integrate(velocity, x0: torch.Tensor, steps: int, method: str = "heun", last_step_euler: bool = True):
    """Integrate dx/dt = velocity(x, t) from t = 0 to 1. Returns (x(1), trace with NFE per step).
    `last_step_euler`: the x-prediction velocity is singular at t = 1, so Heun's last step is Euler."""
    if method not in ("euler", "heun"):
        raise ValueError(f"unknown method '{method}'; allowed: 'euler', 'heun'")
    ts = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    x = x0
    nfe = []
    for i in range(steps):
        t, t_next = float(ts[i]), float(ts[i + 1])
        dt = t_next - t
        v = velocity(x, t)
        if method == "heun" and (i < steps - 1 or not last_step_euler):
            x_pred = x + dt * v
            x = x + dt * 0.5 * (v + velocity(x_pred, t_next))
            nfe.append(2)
        else:
            x = x + dt * v
            nfe.append(1)
    return x, {"nfe": nfe, "active": [len(x0)] * steps, "steps_used": [steps] * len(x0)}


def build_flow(**overrides) -> FlowModel:
    return FlowModel(replace(FlowConfig(), **overrides))

"""The cost model of a sampling step: the matrix products of one backbone evaluation, from its config.

FLOPs count 2 per multiply-add of the matrix products (linear layers, 1x1 convolutions, attention
scores and values), the work that dominates; norms, activations, RoPE and softmax are left out. Per
sample and per network evaluation; a guided step evaluates the network twice (conditional and
unconditional stream), which `step_flops` applies. The same list of products drives the benchmark's
bare-matmul anchor (benchmarks/bench_sampler_flops.py), so "how close to the limit" compares like with
like. tests/test_flops.py checks the total against torch's FLOP counter on the real module.
"""

from __future__ import annotations

from typing import NamedTuple

from grn.backbone import BackboneConfig


class Matmul(NamedTuple):
    """`count` products [m, k] @ [k, n] per sample (count > 1: one per attention head)."""

    part: str
    count: int
    m: int
    k: int
    n: int

    @property
    def flops(self) -> int:
        return 2 * self.count * self.m * self.k * self.n


def matmuls(cfg: BackboneConfig) -> list[Matmul]:
    """The products of one forward for one sample, in order (grn/backbone.py)."""
    h, tokens = cfg.hidden, cfg.grid * cfg.grid
    mlp = int(int(h * cfg.mlp_ratio) * 2 / 3)  # SwiGLU hidden width (grn/backbone.py SwiGLU)
    hd = h // cfg.heads
    out = [Matmul("condition", 1, 1, cfg.freq_dim, h), Matmul("condition", 1, 1, h, h),  # t embedder MLP
           Matmul("embed", 1, tokens, cfg.in_channels, cfg.bottleneck), Matmul("embed", 1, tokens, cfg.bottleneck, h)]
    for i in range(cfg.depth):
        n = tokens + (cfg.in_context_len if cfg.in_context_len > 0 and i >= cfg.in_context_start else 0)
        out += [Matmul("modulation", 1, 1, h, 6 * h),
                Matmul("attention_projections", 1, n, h, 3 * h),
                Matmul("attention_scores_values", cfg.heads, n, hd, n),  # q k^T
                Matmul("attention_scores_values", cfg.heads, n, n, hd),  # p v
                Matmul("attention_projections", 1, n, h, h),
                Matmul("mlp", 1, n, h, 2 * mlp), Matmul("mlp", 1, n, mlp, h)]
    return out + [Matmul("modulation", 1, 1, h, 2 * h), Matmul("output", 1, tokens, h, cfg.out_channels)]


def backbone_flops(cfg: BackboneConfig) -> dict[str, int]:
    """FLOPs of one forward for one sample, by part."""
    parts: dict[str, int] = {}
    for mm in matmuls(cfg):
        parts[mm.part] = parts.get(mm.part, 0) + mm.flops
    return parts


def step_flops(cfg: BackboneConfig, guided: bool) -> int:
    """FLOPs of one sampling step for one sample: one evaluation, two under classifier-free guidance."""
    return sum(backbone_flops(cfg).values()) * (2 if guided else 1)

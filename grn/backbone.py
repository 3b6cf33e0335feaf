"""The JiT-style transformer shared by GRN and the token baselines.

Per token grid position (patch size 1): a bottleneck embedding of the input features
(1x1 conv to a narrow width, no bias, then 1x1 conv to the hidden width), a fixed 2D sin-cos
position embedding, and `depth` blocks of

    RMSNorm -> adaLN modulate -> attention (qk RMSNorm, 2D RoPE, softmax in fp32) -> gate
    RMSNorm -> adaLN modulate -> SwiGLU MLP (hidden int(4H * 2/3))              -> gate

conditioned on c = t_embed(t) + class_embed(y). From block `in_context_start` on, `in_context_len`
copies of the class embedding (plus learned position embeddings) are prepended to the sequence;
they have RoPE slots of their own (identity rotation) and are dropped before the final layer.
Modulation and output layers start at zero. Nothing here assumes a device.

Causal mode and a KV cache serve the autoregressive baseline (grn/baselines/ar.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BackboneConfig:
    grid: int  # token grid side (h = w)
    in_channels: int  # input features per token
    out_channels: int  # outputs per token
    hidden: int
    depth: int
    heads: int
    bottleneck: int
    num_classes: int  # the null (unconditional) class is index num_classes
    in_context_len: int = 32
    in_context_start: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0  # attention / projection dropout in the middle half of the blocks
    freq_dim: int = 256
    rows: int | None = None  # token rows (None: grid); a video baseline stacks its T' latent frames: T' * grid rows


# ---------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------


def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim: int, grid: int, rows: int | None = None) -> torch.Tensor:
    """[rows*grid, dim] (rows defaults to grid): first half encodes the column (w), second half the row (h), as in
    MAE/DiT."""
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(rows or grid, dtype=np.float32))
    emb = np.concatenate([sincos_1d(dim // 2, gw), sincos_1d(dim // 2, gh)], axis=1)
    return torch.from_numpy(emb).float()


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of t (the clean fraction in [0, 1], not scaled by 1000) -> MLP."""

    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.freq_dim = freq_dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes: int, hidden: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden)  # + the null class

    def forward(self, y):
        return self.embedding_table(y)


class BottleneckEmbed(nn.Module):
    def __init__(self, in_channels: int, bottleneck: int, hidden: int):
        super().__init__()
        self.proj1 = nn.Conv2d(in_channels, bottleneck, 1, bias=False)
        self.proj2 = nn.Conv2d(bottleneck, hidden, 1)

    def forward(self, x):  # [B, C, h, w] -> [B, h*w, hidden]
        return self.proj2(self.proj1(x)).flatten(2).transpose(1, 2)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps))).to(x.dtype)


# ---------------------------------------------------------------------------------------
# 2D rotary position embedding
# ---------------------------------------------------------------------------------------


def rope_2d_tables(head_dim: int, grid: int, num_prefix: int = 0, rows: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [num_prefix + rows*grid, head_dim] (rows defaults to grid). The first half of each head
    rotates with the row index, the second half with the column index; rotations act on interleaved pairs.
    Prefix (in-context) tokens get the identity rotation."""
    dim = head_dim // 2
    rows = rows or grid
    freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    f = torch.einsum("i,f->if", torch.arange(max(rows, grid)).float(), freqs).repeat_interleave(2, dim=-1)
    f2d = torch.cat([f[:rows, None, :].expand(rows, grid, dim), f[None, :grid, :].expand(rows, grid, dim)], dim=-1)
    f2d = f2d.reshape(rows * grid, head_dim)
    cos, sin = f2d.cos(), f2d.sin()
    if num_prefix:
        cos = torch.cat([torch.ones(num_prefix, head_dim), cos])
        sin = torch.cat([torch.zeros(num_prefix, head_dim), sin])
    return cos, sin


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    x = x.unflatten(-1, (-1, 2))
    return torch.stack((-x[..., 1], x[..., 0]), dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos.to(x.dtype) + rotate_pairs(x) * sin.to(x.dtype)


# ---------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class KVCache:
    """Keys and values of the tokens seen so far, per block (autoregressive decoding)."""

    def __init__(self, depth: int):
        self.k: list[torch.Tensor | None] = [None] * depth
        self.v: list[torch.Tensor | None] = [None] * depth

    def extend(self, i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k[i] = k if self.k[i] is None else torch.cat([self.k[i], k], dim=2)
        self.v[i] = v if self.v[i] is None else torch.cat([self.v[i], v], dim=2)
        return self.k[i], self.v[i]

    @property
    def length(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[2]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.q_norm, self.k_norm = RMSNorm(head_dim), RMSNorm(head_dim)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x, rope, causal=False, cache: KVCache | None = None, block: int = 0,
                attn_mask: torch.Tensor | None = None):
        """`attn_mask` (bool, True = may attend, broadcast to [B, heads, n, n]) restricts a bidirectional pass."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(self.q_norm(q), *rope), apply_rope(self.k_norm(k), *rope)
        if cache is not None:
            k, v = cache.extend(block, k, v)
        # softmax in fp32 whatever the autocast dtype
        is_causal = causal and q.shape[2] > 1
        mask = attn_mask
        if is_causal and k.shape[2] != q.shape[2]:  # queries are the last n positions of the keys
            offset = k.shape[2] - q.shape[2]
            mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=x.device).tril(offset)
            is_causal = False
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, is_causal=is_causal,
                                             dropout_p=self.dropout if self.training else 0.0).to(x.dtype)
        out = F.dropout(self.proj(out.transpose(1, 2).reshape(b, n, c)), self.dropout, self.training)
        return out


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        hidden = int(hidden * 2 / 3)
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)
        self.dropout = dropout

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.dropout(F.silu(x1) * x2, self.dropout, self.training))


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = RMSNorm(hidden)
        self.attn = Attention(hidden, heads, dropout)
        self.norm2 = RMSNorm(hidden)
        self.mlp = SwiGLU(hidden, int(hidden * mlp_ratio), dropout)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c, rope, causal=False, cache=None, block=0):
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1), rope, causal, cache, block)
        return x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))


class PlainBlock(nn.Module):
    """A pre-norm block without adaLN (GRN-2B's text/video blocks, `use_ada_layer_norm=0`): conditioning
    enters as tokens of the sequence instead. Used by the text-conditioned GRN and its text encoder."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = RMSNorm(hidden)
        self.attn = Attention(hidden, heads)
        self.norm2 = RMSNorm(hidden)
        self.mlp = SwiGLU(hidden, int(hidden * mlp_ratio))

    def forward(self, x, rope, attn_mask=None):
        x = x + self.attn(self.norm1(x), rope, attn_mask=attn_mask)
        return x + self.mlp(self.norm2(x))


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, out_channels: int):
        super().__init__()
        self.norm_final = RMSNorm(hidden)
        self.linear = nn.Linear(hidden, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# ---------------------------------------------------------------------------------------
# The transformer
# ---------------------------------------------------------------------------------------


class Backbone(nn.Module):
    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        self.cfg = cfg
        self.t_embedder = TimestepEmbedder(cfg.hidden, cfg.freq_dim)
        self.y_embedder = LabelEmbedder(cfg.num_classes, cfg.hidden)
        self.x_embedder = BottleneckEmbed(cfg.in_channels, cfg.bottleneck, cfg.hidden)
        self.register_buffer("pos_embed", sincos_2d(cfg.hidden, cfg.grid, cfg.rows)[None], persistent=True)
        if cfg.in_context_len > 0:
            self.in_context_posemb = nn.Parameter(torch.zeros(1, cfg.in_context_len, cfg.hidden))
        head_dim = cfg.hidden // cfg.heads
        for name, prefix in (("rope", 0), ("rope_in_context", cfg.in_context_len)):
            cos, sin = rope_2d_tables(head_dim, cfg.grid, prefix, cfg.rows)
            self.register_buffer(f"{name}_cos", cos, persistent=False)
            self.register_buffer(f"{name}_sin", sin, persistent=False)
        lo, hi = cfg.depth // 4, cfg.depth // 4 * 3
        self.blocks = nn.ModuleList([Block(cfg.hidden, cfg.heads, cfg.mlp_ratio, cfg.dropout if lo <= i < hi else 0.0)
                                     for i in range(cfg.depth)])
        self.final_layer = FinalLayer(cfg.hidden, cfg.out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        def basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

        self.apply(basic)
        for conv in (self.x_embedder.proj1, self.x_embedder.proj2):  # like a Linear, not a Conv2d
            nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj2.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        if self.cfg.in_context_len > 0:
            nn.init.normal_(self.in_context_posemb, std=0.02)
        # zero-init: every block starts as the identity and the output as uniform logits
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def condition(self, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y_emb = self.y_embedder(y)
        return self.t_embedder(t) + y_emb, y_emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x [B, in_channels, grid, grid] -> [B, grid*grid, out_channels] (bidirectional)."""
        c, y_emb = self.condition(t, y)
        h = self.x_embedder(x) + self.pos_embed  # [B, L, H]
        n_ctx = self.cfg.in_context_len
        for i, block in enumerate(self.blocks):
            if n_ctx > 0 and i == self.cfg.in_context_start:
                ctx = y_emb.unsqueeze(1).expand(-1, n_ctx, -1) + self.in_context_posemb
                h = torch.cat([ctx, h], dim=1)
            with_ctx = n_ctx > 0 and i >= self.cfg.in_context_start
            rope = (self.rope_in_context_cos, self.rope_in_context_sin) if with_ctx else (self.rope_cos, self.rope_sin)
            h = block(h, c, rope)
        if n_ctx > 0 and self.cfg.in_context_start < self.cfg.depth:
            h = h[:, n_ctx:]
        with torch.autocast(h.device.type, enabled=False):  # the output layer runs in fp32
            return self.final_layer(h.float(), c.float())

    def forward_causal(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, start: int = 0,
                       cache: KVCache | None = None) -> torch.Tensor:
        """Causal pass over raster positions [start, start + n): x [B, in_channels, n] -> [B, n, out_channels].

        The in-context class tokens (in_context_start must be 0) form the prefix and enter with the
        first call; with a `cache`, later calls feed only new positions (autoregressive decoding)."""
        if self.cfg.in_context_start != 0:
            raise ValueError("causal mode needs in_context_start = 0 (the class prefix enters at the first block)")
        b, _, n = x.shape
        c, y_emb = self.condition(t, y)
        h = self.x_embedder(x.unsqueeze(2)) + self.pos_embed[:, start : start + n]  # a 1 x n "image"
        n_ctx = self.cfg.in_context_len
        first = start == 0
        if first and n_ctx > 0:
            h = torch.cat([y_emb.unsqueeze(1).expand(-1, n_ctx, -1) + self.in_context_posemb, h], dim=1)
        lo = 0 if first else n_ctx + start
        rope = (self.rope_in_context_cos[lo : n_ctx + start + n], self.rope_in_context_sin[lo : n_ctx + start + n])
        for i, block in enumerate(self.blocks):
            h = block(h, c, rope, causal=True, cache=cache, block=i)
        if first and n_ctx > 0:
            h = h[:, n_ctx:]
        with torch.autocast(h.device.type, enabled=False):
            return self.final_layer(h.float(), c.float())

"""Hierarchical Binary Quantization (HBQ).

Each element z of a tanh-bounded latent (z in [-1, 1]) is quantized by M rounds of binary
successive approximation, most significant bit first:

    q_0 = 0;  round m (step 2^-(m+1)):  b_m = [z > q_m] (strict),  q_{m+1} = q_m + step * (2 b_m - 1)

so |z - q_M| <= 2^-M. The result is a uniform mid-rise quantizer with 2^M levels
(2k + 1) / 2^M - 1, written as M bits. There is no codebook and no learned scale.

Two generator layouts:
  * `ind`: one 2^M-way label per latent channel, shape [B, d, h, w];
  * `bit`: M binary labels per channel, round-major as in the official code:
    bits [B, d, h, w, M] -> [B, M, d, h, w] -> [B, M*d, h, w].
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class HBQCodes(NamedTuple):
    values: torch.Tensor  # quantized values in (-1, 1), same shape as z
    labels: torch.Tensor  # int64 in [0, 2^M), same shape as z
    bits: torch.Tensor  # int64 in {0, 1}, shape z.shape + (M,), most significant first


def hbq_quantize(z: torch.Tensor, rounds: int) -> HBQCodes:
    """Quantize `z` (expected in [-1, 1]) with `rounds` rounds of binary successive approximation."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    q = torch.zeros_like(z)
    labels = torch.zeros(z.shape, dtype=torch.int64, device=z.device)
    bits = []
    for m in range(rounds):
        step = 0.5 ** (m + 1)
        b = z > q  # strict '>' as in the official quantizer
        bits.append(b.long())
        labels = labels * 2 + b.long()
        q = q + torch.where(b, step, -step)
    return HBQCodes(q, labels, torch.stack(bits, dim=-1))


def labels_to_values(labels: torch.Tensor, rounds: int) -> torch.Tensor:
    """(2 * label + 1) / 2^M - 1."""
    return (2 * labels + 1).float() / 2**rounds - 1


def bits_to_values(bits: torch.Tensor) -> torch.Tensor:
    """sum_m 2^-(m+1) * (2 b_m - 1) over the trailing (round) dimension."""
    rounds = bits.shape[-1]
    weights = 0.5 ** torch.arange(1, rounds + 1, device=bits.device, dtype=torch.float32)
    return ((2 * bits.float() - 1) * weights).sum(-1)


def labels_to_bits(labels: torch.Tensor, rounds: int) -> torch.Tensor:
    """Labels -> bits with a trailing dimension of size M, most significant first."""
    shifts = torch.arange(rounds - 1, -1, -1, device=labels.device)
    return (labels.unsqueeze(-1) >> shifts) & 1


def bits_to_labels(bits: torch.Tensor) -> torch.Tensor:
    rounds = bits.shape[-1]
    weights = 2 ** torch.arange(rounds - 1, -1, -1, device=bits.device)
    return (bits.long() * weights).sum(-1)


# ---------------------------------------------------------------------------------------
# Generator layouts
# ---------------------------------------------------------------------------------------


def bits_to_bit_layout(bits: torch.Tensor) -> torch.Tensor:
    """[B, d, *grid, M] -> [B, M*d, *grid], round-major (all channels' first bits, then second, ...); the grid is
    (h, w) for images, (T', h, w) for videos."""
    b, d, *grid, m = bits.shape
    return bits.movedim(-1, 1).reshape(b, m * d, *grid)


def bit_layout_to_bits(x: torch.Tensor, rounds: int) -> torch.Tensor:
    """[B, M*d, *grid] -> [B, d, *grid, M]."""
    b, md, *grid = x.shape
    return x.reshape(b, rounds, md // rounds, *grid).movedim(1, -1)


def labels_to_layout(labels: torch.Tensor, rounds: int, layout: str) -> torch.Tensor:
    """Channel labels [B, d, h, w] -> the generator's targets in `layout` ('ind' or 'bit')."""
    if layout == "ind":
        return labels
    if layout == "bit":
        return bits_to_bit_layout(labels_to_bits(labels, rounds))
    raise ValueError(f"unknown layout '{layout}'; allowed: 'ind', 'bit'")


def layout_to_labels(tokens: torch.Tensor, rounds: int, layout: str) -> torch.Tensor:
    """The generator's targets in `layout` -> channel labels [B, d, h, w]."""
    if layout == "ind":
        return tokens
    if layout == "bit":
        return bits_to_labels(bit_layout_to_bits(tokens, rounds))
    raise ValueError(f"unknown layout '{layout}'; allowed: 'ind', 'bit'")


def token_classes(rounds: int, layout: str) -> int:
    """Classes per generator element (K, the vocabulary; `num_classes` elsewhere counts image classes, the
    conditions): 2^M for 'ind', 2 for 'bit'."""
    return 2**rounds if layout == "ind" else 2


# ---------------------------------------------------------------------------------------
# Training-time module
# ---------------------------------------------------------------------------------------


def quantize_ste(z: torch.Tensor, rounds: int | None) -> torch.Tensor:
    """Quantized values with a straight-through gradient; `rounds=None` is continuous (identity)."""
    if rounds is None:
        return z
    q = hbq_quantize(z, rounds).values
    return z + (q - z).detach()


class HBQ(nn.Module):
    """A thin module around the functions above (no parameters)."""

    def __init__(self, rounds: int | None):
        super().__init__()
        self.rounds = rounds

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return quantize_ste(z, self.rounds)

    def codes(self, z: torch.Tensor) -> HBQCodes:
        if self.rounds is None:
            raise ValueError("a continuous (rounds=None) HBQ has no discrete codes")
        return hbq_quantize(z, self.rounds)

    def extra_repr(self) -> str:
        return f"rounds={self.rounds}"

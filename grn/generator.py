"""GRN: the generator network, its corruption process and training loss, and the size registry.

Tokens are HBQ codes in one of two layouts (see grn/hbq.py):
  * `ind`: D = d elements per position, each a K = 2^M-way class;
  * `bit`: D = M*d elements per position, each binary (K = 2).
The network sees the one-hot of every element ([B, K*D, h, w], class-major as in the official
code) and predicts logits for every element: [B, K, D, h, w].

Training (the official C2I objective): t ~ sigmoid(N(P_mean, P_std)) is the clean fraction;
every element is independently replaced by a uniform random label with probability 1 - t;
the loss is the cross-entropy over all elements (corrupted or not); the class is dropped to
the null class with probability 0.1 for classifier-free guidance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from grn import hbq
from grn.backbone import Backbone, BackboneConfig
from grn.sampling import drop_condition


class TokenLayout:
    """The token geometry every GRN config derives from (grid, latent_channels, rounds, layout)."""

    @property
    def token_classes(self) -> int:  # K
        return hbq.token_classes(self.rounds, self.layout)

    @property
    def token_channels(self) -> int:  # D
        return self.latent_channels * (self.rounds if self.layout == "bit" else 1)

    @property
    def token_shape(self) -> tuple[int, ...]:
        """(D, h, w); (D, T', h, w) for a config with `frames` > 1 (a video baseline)."""
        frames = getattr(self, "frames", 1)
        return (self.token_channels, self.grid, self.grid) if frames == 1 else \
            (self.token_channels, frames, self.grid, self.grid)


@dataclass(frozen=True)
class GRNConfig(TokenLayout):
    hidden: int
    depth: int
    heads: int
    bottleneck: int
    in_context_len: int = 32
    in_context_start: int = 4
    grid: int = 16  # token grid side (256 / 16 for ImageNet 256)
    latent_channels: int = 16  # d of the tokenizer
    rounds: int = 4  # M of the tokenizer
    layout: str = "ind"  # 'ind' or 'bit'
    num_classes: int = 1000
    p_mean: float = -0.8
    p_std: float = 0.8
    class_dropout: float = 0.1
    dropout: float = 0.0



def onehot_input(tokens: torch.Tensor, k: int, dtype) -> torch.Tensor:
    """[B, D, ...] labels -> [B, K*D, ...], class-major (all channels' class 0, then class 1, ...): the
    network input of every token model (GRN, T2I, MaskGIT with K + 1 classes, AR over raster positions)."""
    b, d, *rest = tokens.shape
    x = F.one_hot(tokens.long(), k).movedim(-1, 1)  # [B, K, D, ...]
    return x.reshape(b, k * d, *rest).to(dtype)


def corrupt_labels(tokens: torch.Tensor, t: torch.Tensor, classes: int, generator: torch.Generator | None = None):
    """The GRN corruption: each element replaced by a uniform random label of `classes` with probability 1 - t
    (t [B]: each sample's clean fraction); any number of trailing dimensions. Shared by every GRN (class- and
    text-conditioned, GRN_bit)."""
    rand = torch.randint(0, classes, tokens.shape, generator=generator, device=tokens.device)
    keep = torch.rand(tokens.shape, generator=generator, device=tokens.device) < t.view(-1, *[1] * (tokens.dim() - 1))
    return torch.where(keep, tokens, rand)


def sample_clean_fraction(n: int, p_mean: float, p_std: float, generator=None, device=None) -> torch.Tensor:
    """t ~ sigmoid(N(p_mean, p_std)) for n samples: the GRN training distribution of the clean fraction."""
    return torch.sigmoid(torch.randn(n, generator=generator, device=device) * p_std + p_mean)


class TokenGeometry:
    """What a token model shows its sampler, read from `self.cfg` (a TokenLayout)."""

    @property
    def token_shape(self):
        return self.cfg.token_shape

    @property
    def token_classes(self) -> int:
        return self.cfg.token_classes


class RefinementTokens(TokenGeometry):
    """What every GRN (class- or text-conditioned) shares, read from `self.cfg`: the token layout the
    sampler sees, the corruption process and the distribution of t."""

    @property
    def bit_rounds(self) -> int | None:
        """M for the `bit` layout (round-major channels: the sampler traces each bit plane), else None."""
        return self.cfg.rounds if self.cfg.layout == "bit" else None

    def corrupt(self, tokens: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None):
        """Replace each element by a uniform random label with probability 1 - t (per sample t)."""
        return corrupt_labels(tokens, t, self.cfg.token_classes, generator)

    def sample_t(self, n: int, generator=None, device=None) -> torch.Tensor:
        return sample_clean_fraction(n, self.cfg.p_mean, self.cfg.p_std, generator, device)


class GRN(RefinementTokens, nn.Module):
    kind = "grn"

    def __init__(self, cfg: GRNConfig):
        super().__init__()
        if cfg.layout not in ("ind", "bit"):
            raise ValueError(f"unknown layout '{cfg.layout}'; allowed: 'ind', 'bit'")
        self.cfg = cfg
        width = cfg.token_classes * cfg.token_channels
        self.net = Backbone(BackboneConfig(
            grid=cfg.grid, in_channels=width, out_channels=width, hidden=cfg.hidden, depth=cfg.depth,
            heads=cfg.heads, bottleneck=cfg.bottleneck, num_classes=cfg.num_classes,
            in_context_len=cfg.in_context_len, in_context_start=cfg.in_context_start, dropout=cfg.dropout))

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    def onehot(self, tokens: torch.Tensor) -> torch.Tensor:
        return onehot_input(tokens, self.cfg.token_classes, self.net.pos_embed.dtype)

    def forward(self, tokens: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """tokens [B, D, h, w], t [B] clean fraction, y [B] class (num_classes = null) -> logits [B, K, D, h, w]."""
        b, d, h, w = tokens.shape
        out = self.net(self.onehot(tokens), t, y)  # [B, h*w, K*D]
        return out.reshape(b, h, w, self.cfg.token_classes, d).permute(0, 3, 4, 1, 2)

    # -- training -------------------------------------------------------------------------

    def loss(self, tokens: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
             forward=None) -> torch.Tensor:
        """Cross-entropy over every element of the corrupted input. `forward` replaces `self` for the
        network call (a DistributedDataParallel wrapper, so that gradients are all-reduced)."""
        b = tokens.shape[0]
        t = self.sample_t(b, generator, tokens.device)
        z = self.corrupt(tokens, t, generator)
        y = drop_condition(self, y, self.cfg.class_dropout, generator)
        logits = (forward or self)(z, t, y)
        return F.cross_entropy(logits.float(), tokens.long())


# ---------------------------------------------------------------------------------------
# Registry (official shapes for ImageNet 256 by default; small sizes for embedded data)
# ---------------------------------------------------------------------------------------


def _size(hidden, depth, heads, bottleneck, in_context_len, in_context_start, **defaults):
    shape = dict(hidden=hidden, depth=depth, heads=heads, bottleneck=bottleneck, in_context_len=in_context_len,
                 in_context_start=in_context_start)

    def factory(**overrides) -> GRN:
        return GRN(GRNConfig(**{**shape, **defaults, **overrides}))
    return factory


MNIST = {"grid": 8, "latent_channels": 4, "rounds": 4, "num_classes": 10}

GENERATORS = {
    "GRN-B": _size(768, 12, 12, 128, 32, 4),
    "GRN-L": _size(1024, 24, 16, 128, 32, 8),
    "GRN-H": _size(1280, 32, 16, 256, 32, 10),
    "GRN-G": _size(1664, 40, 16, 256, 32, 10),
    "GRN-T": _size(128, 4, 4, 64, 4, 1, **MNIST),
    "GRN-S": _size(256, 6, 4, 64, 8, 2, **MNIST),
}


def build_generator(name: str, **overrides) -> GRN:
    if name not in GENERATORS:
        raise ValueError(f"unknown generator '{name}'; allowed: {sorted(GENERATORS)}")
    return GENERATORS[name](**overrides)


def config_from_dict(d: dict) -> GRNConfig:
    return replace(GRNConfig(hidden=0, depth=0, heads=1, bottleneck=0), **d)

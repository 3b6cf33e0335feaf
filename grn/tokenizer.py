"""HBQ autoencoder for images: encoder -> tanh -> HBQ -> decoder.

The 2D image form of the official tokenizer (a Wan2.2-style VAE): residual blocks of
RMS norm -> SiLU -> 3x3 conv, twice; parameter-free shortcuts around every down-sampling
(pixel-unshuffle + group mean) and up-sampling (channel repeat + pixel-shuffle); a middle block;
a 2x2 space-to-depth patchify at the input and its inverse at the output. The encoder's head
predicts (mu, logvar) as in the official checkpoint; only mu is used, bounded by tanh.

The official model is causal 3D; on a single frame its causal convolutions are 2D convolutions
with the last temporal kernel slice and its temporal down/up-sampling convolutions are skipped.
What a single frame still sees of the time axis is in the shortcuts (`temporal_downsample`); the
config fields after `dropout` describe those official details (grn/convert.py loads the weights).

Boundary convention: `encode`, `tokenize`, `reconstruct` take uint8 NHWC images (numpy or
tensor); inside everything is float NCHW in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grn.data import to_model_input, to_uint8_images
from grn.hbq import hbq_quantize, labels_to_layout, layout_to_labels
from grn.quantizers import build_quantizer


@dataclass(frozen=True)
class TokenizerConfig:
    latent_channels: int = 16  # d
    rounds: int | None = 4  # M of HBQ; None = continuous (ablation)
    quantizer: str = "hbq"  # a key of grn/quantizers.py QUANTIZERS; the others spend `bits` per token
    bits: int | None = None  # bits per token (latent position) of a quantizer other than HBQ
    enc_dim: int = 160
    dec_dim: int = 256
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2  # encoder; the decoder uses one more per level
    patch: int = 2  # space-to-depth at the input
    mid_attention: bool = False  # single-head attention in the middle blocks (else identity)
    dropout: float = 0.0
    # Official (Wan-style) layout; the defaults are this project's own layout and keep its checkpoints as they are.
    dec_dim_mult: tuple[int, ...] | None = None  # decoder widths / dec_dim from the middle block to the head
    #   (len(dim_mult) + 1 entries); None = (*reversed(dim_mult), dim_mult[0]). Official: (4, 4, 4, 2, 1).
    temporal_downsample: tuple[int, ...] = ()  # per re-sampling encoder level, 1 where the video model also
    #   halves time (the decoder mirrors it). For one frame only the parameter-free shortcuts change.
    last_level_shortcut: bool = False  # the official encoder also adds x around its last (non-down-sampling) level

    def __post_init__(self):
        # configs read back from checkpoints hold lists
        for name in ("dim_mult", "dec_dim_mult", "temporal_downsample"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.quantizer != "hbq" and self.rounds is not None:
            # `rounds` is HBQ's; the other quantizers are configured by `bits` (rounds stays None for them)
            object.__setattr__(self, "rounds", None)

    @property
    def continuous(self) -> bool:
        return self.quantizer == "none" or (self.quantizer == "hbq" and self.rounds is None)

    @property
    def token_bits(self) -> int | None:
        """Bits per token as configured (the quantizer's code space says the same; tests check it)."""
        if self.continuous:
            return None
        return self.latent_channels * self.rounds if self.quantizer == "hbq" else self.bits

    @property
    def stride(self) -> int:
        return self.patch * 2 ** (len(self.dim_mult) - 1)


# name -> config. `hbq-f16-d16` is the official image tokenizer (HBQ_image_tokenizer_16dim_M4: 256x256 -> 16x16
# x 16 ch x 4 bits) in its single-frame form. The middle attention runs, as in the official C2I code that encodes
# the generators' targets and decodes their samples (the official tokenizer-training copy skips it).
TOKENIZERS: dict[str, TokenizerConfig] = {
    "hbq-mnist": TokenizerConfig(latent_channels=4, rounds=4, enc_dim=32, dec_dim=32, dim_mult=(1, 2),
                                 num_res_blocks=1),
    "hbq-photo": TokenizerConfig(latent_channels=8, rounds=4, enc_dim=48, dec_dim=48, dim_mult=(1, 2),
                                 num_res_blocks=1),
    "hbq-f16-d16": TokenizerConfig(latent_channels=16, rounds=4, mid_attention=True, dec_dim_mult=(4, 4, 4, 2, 1),
                                   temporal_downsample=(0, 1, 1), last_level_shortcut=True),
}


def tokenizer_config(name: str, **overrides) -> TokenizerConfig:
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer '{name}'; allowed: {sorted(TOKENIZERS)}")
    return replace(TOKENIZERS[name], **overrides)


# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------


class RMSNorm2d(nn.Module):
    """Channel RMS norm as in the official VAE: normalize(x, dim=1) * sqrt(C) * gamma."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1))

    def forward(self, x):
        return F.normalize(x, dim=1) * self.scale * self.gamma


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm2d(in_dim), nn.SiLU(), nn.Conv2d(in_dim, out_dim, 3, padding=1),
            RMSNorm2d(out_dim), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = nn.Conv2d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x):
        return self.shortcut(x) + self.residual(x)


class AttentionBlock(nn.Module):
    """Single-head spatial self-attention with a zero-initialised output projection."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm2d(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.proj.weight)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # [b, hw, c]
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def avg_down(x: torch.Tensor, out_dim: int, temporal: bool = False, spatial: bool = True) -> torch.Tensor:
    """Parameter-free down-sampling shortcut: pixel-unshuffle by 2, then mean over channel groups.

    temporal: the official video shortcut also folds 2 frames into the channels (slot order: channel,
    frame, row, column). A single frame is causally padded with one zero frame in front, so the frame-0
    slots are zeros and still count in the mean."""
    if spatial:
        x = F.pixel_unshuffle(x, 2)
    b, c, h, w = x.shape
    if temporal:
        slots = 4 if spatial else 1
        x = x.view(b, c // slots, 1, slots, h, w)  # the frame slot goes between channel and spatial slots
        x = torch.cat([torch.zeros_like(x), x], dim=2).reshape(b, 2 * c, h, w)
        c *= 2
    return x.reshape(b, out_dim, c // out_dim, h, w).mean(2)


def dup_up(x: torch.Tensor, out_dim: int, temporal: bool = False) -> torch.Tensor:
    """Parameter-free up-sampling shortcut: repeat channels, then pixel-shuffle by 2.

    temporal: the official video shortcut also unfolds 2 frames from the channels; for the first
    (here: only) frame it keeps the second of them."""
    frames = 2 if temporal else 1
    repeats = out_dim * 4 * frames // x.shape[1]
    x = x.repeat_interleave(repeats, dim=1)
    if temporal:
        b, _, h, w = x.shape
        x = x.view(b, out_dim, frames, 4, h, w)[:, :, -1].reshape(b, out_dim * 4, h, w)
    return F.pixel_shuffle(x, 2)


class DownBlock(nn.Module):
    def __init__(self, in_dim, out_dim, num_res, downsample, dropout, temporal=False, shortcut_always=False):
        super().__init__()
        self.res = nn.Sequential(*[ResidualBlock(in_dim if i == 0 else out_dim, out_dim, dropout)
                                   for i in range(num_res)])
        self.down = nn.Conv2d(out_dim, out_dim, 3, stride=2) if downsample else None
        self.in_dim, self.out_dim = in_dim, out_dim
        self.temporal, self.shortcut_always = temporal, shortcut_always

    def forward(self, x):
        y = self.res(x)
        if self.down is None:
            # the official block keeps its shortcut without re-sampling: a channel-group mean (identity when
            # the widths agree, as in the official last level)
            return (y + avg_down(x, self.out_dim, spatial=False)) if self.shortcut_always else y
        # asymmetric zero padding (right/bottom) as in the official resample, then the parameter-free shortcut
        return self.down(F.pad(y, (0, 1, 0, 1))) + avg_down(x, self.out_dim, self.temporal)


class UpBlock(nn.Module):
    def __init__(self, in_dim, out_dim, num_res, upsample, dropout, temporal=False):
        super().__init__()
        self.res = nn.Sequential(*[ResidualBlock(in_dim if i == 0 else out_dim, out_dim, dropout)
                                   for i in range(num_res)])
        self.up = nn.Conv2d(out_dim, out_dim, 3, padding=1) if upsample else None
        self.out_dim, self.temporal = out_dim, temporal

    def forward(self, x):
        y = self.res(x)
        if self.up is None:
            return y
        # nearest: for an exact 2x scale the same pixels as the official "nearest-exact"
        return self.up(F.interpolate(y, scale_factor=2.0, mode="nearest")) + dup_up(x, self.out_dim, self.temporal)


def _temporal_flags(temporal_downsample, n: int) -> list[bool]:
    """Temporal flags of the n - 1 re-sampling levels (missing entries are False); the decoder
    takes them in reverse order, as the official model does."""
    flags = [bool(f) for f in temporal_downsample[: n - 1]]
    return flags + [False] * (n - 1 - len(flags))


def _mid(dim, attention, dropout):
    return nn.Sequential(ResidualBlock(dim, dim, dropout), AttentionBlock(dim) if attention else nn.Identity(),
                         ResidualBlock(dim, dim, dropout))


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        dims = [cfg.enc_dim * m for m in (1, *cfg.dim_mult)]
        self.conv_in = nn.Conv2d(3 * cfg.patch**2, dims[0], 3, padding=1)
        n = len(cfg.dim_mult)
        temporal = _temporal_flags(cfg.temporal_downsample, n) + [False]  # the last level does not re-sample
        self.down = nn.Sequential(*[DownBlock(dims[i], dims[i + 1], cfg.num_res_blocks, i < n - 1, cfg.dropout,
                                              temporal[i], cfg.last_level_shortcut)
                                    for i in range(n)])
        self.mid = _mid(dims[-1], cfg.mid_attention, cfg.dropout)
        self.head = nn.Sequential(RMSNorm2d(dims[-1]), nn.SiLU(),
                                  nn.Conv2d(dims[-1], 2 * cfg.latent_channels, 3, padding=1))
        self.conv1 = nn.Conv2d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
        self.patch = cfg.patch

    def forward(self, x):
        x = F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x
        x = self.head(self.mid(self.down(self.conv_in(x))))
        mu, _logvar = self.conv1(x).chunk(2, dim=1)
        return mu


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        n = len(cfg.dim_mult)
        mults = cfg.dec_dim_mult or (*reversed(cfg.dim_mult), cfg.dim_mult[0])
        if len(mults) != n + 1:
            raise ValueError(f"dec_dim_mult needs {n + 1} entries (middle block, then each level), got {mults}")
        dims = [cfg.dec_dim * m for m in mults]
        temporal = _temporal_flags(cfg.temporal_downsample, n)[::-1] + [False]  # mirrors the encoder
        self.conv2 = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1)
        self.conv_in = nn.Conv2d(cfg.latent_channels, dims[0], 3, padding=1)
        self.mid = _mid(dims[0], cfg.mid_attention, cfg.dropout)
        self.up = nn.Sequential(*[UpBlock(dims[i], dims[i + 1], cfg.num_res_blocks + 1, i < n - 1, cfg.dropout,
                                          temporal[i])
                                  for i in range(n)])
        self.head = nn.Sequential(RMSNorm2d(dims[-1]), nn.SiLU(), nn.Conv2d(dims[-1], 3 * cfg.patch**2, 3, padding=1))
        self.patch = cfg.patch

    def forward(self, z):
        x = self.head(self.up(self.mid(self.conv_in(self.conv2(z)))))
        return F.pixel_shuffle(x, self.patch) if self.patch > 1 else x


# ---------------------------------------------------------------------------------------
# The autoencoder
# ---------------------------------------------------------------------------------------


class HBQTokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TokenizerConfig()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantizer = build_quantizer("none" if cfg.continuous else cfg.quantizer, cfg.latent_channels,
                                         cfg.token_bits)
        self.hbq = cfg.quantizer == "hbq" and not cfg.continuous  # HBQ's bit layout and truncated rounds

    # -- float NCHW in [-1, 1] ------------------------------------------------------------------
    def encode_float(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the latent z the quantizer takes, [B, d, H/s, W/s]: tanh-bounded in (-1, 1) for HBQ and
        the continuous ceiling; the library quantizers bound it their own way (grn/quantizers.py)."""
        return self.quantizer.bound(self.encoder(x)).contiguous()

    def decode_float(self, z_q: torch.Tensor) -> torch.Tensor:
        # contiguous: convolution results depend (in the last bits) on the memory layout
        return self.decoder(z_q.contiguous())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: reconstruction (through the straight-through quantizer) and the quantizer's
        auxiliary loss (VQ commitment, LFQ entropy; zero for HBQ, FSQ and the continuous latent)."""
        z_q, aux = self.quantizer(self.encode_float(x))
        return self.decode_float(z_q), aux

    # -- uint8 NHWC boundary ------------------------------------------------------------------
    def _device(self):
        return next(self.parameters()).device

    def _input(self, images) -> torch.Tensor:
        if isinstance(images, torch.Tensor) and images.dtype != torch.uint8:
            raise TypeError("tokenizer inputs are uint8 NHWC images (use *_float methods for float tensors)")
        return to_model_input(images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images),
                              self._device())

    @torch.no_grad()
    def encode(self, images) -> torch.Tensor:
        """uint8 NHWC -> continuous latent z (before quantization)."""
        return self.encode_float(self._input(images))

    @torch.no_grad()
    def tokenize(self, images, layout: str = "ind") -> torch.Tensor:
        """uint8 NHWC -> generator tokens: the quantizer's codes [B, D, h, w] ('ind': for HBQ d labels of 2^M
        levels), or HBQ's bits [B, M*d, h, w] ('bit')."""
        if self.cfg.continuous:
            raise ValueError("a continuous tokenizer (rounds=None) has no tokens; use encode()")
        self._check_layout(layout)
        codes = self.quantizer.codes(self.encode(images))
        return labels_to_layout(codes, self.cfg.rounds, layout) if self.hbq else codes

    def _check_layout(self, layout: str) -> None:
        if layout != "ind" and not self.hbq:
            raise ValueError(f"layout '{layout}' is HBQ's; a {self.cfg.quantizer} tokenizer's tokens are its codes "
                             f"('ind')")

    @torch.no_grad()
    def decode_tokens(self, tokens: torch.Tensor, layout: str = "ind") -> np.ndarray:
        """Generator tokens -> uint8 NHWC images."""
        self._check_layout(layout)
        tokens = tokens.to(self._device())
        if self.hbq:
            tokens = layout_to_labels(tokens, self.cfg.rounds, layout)
        return to_uint8_images(self.decode_float(self.quantizer.values(tokens)))

    @torch.no_grad()
    def decode_latent(self, z: torch.Tensor) -> np.ndarray:
        """Continuous latent (continuous tokenizers, flow baselines) -> uint8 NHWC images."""
        return to_uint8_images(self.decode_float(z.to(self._device())))

    @torch.no_grad()
    def reconstruct(self, images, rounds: int | None = None) -> np.ndarray:
        """uint8 NHWC -> uint8 NHWC through encode -> quantize -> decode. `rounds` < the trained M keeps only
        the first rounds: HBQ's bits are most significant first, so that is exactly the M'-round quantization
        of the same latent (error <= 2^-M'), decoded by the decoder trained at M."""
        if rounds is not None and (not self.hbq or not 1 <= rounds <= self.cfg.rounds):
            kind = "continuous" if self.cfg.continuous else self.cfg.quantizer
            raise ValueError(f"rounds={rounds}: a tokenizer trained at M = {self.cfg.rounds} decodes at 1 ... M "
                             f"rounds" if self.hbq else f"a {kind} tokenizer has no rounds to keep")
        z = self.encode(images)
        z_q = hbq_quantize(z, rounds).values if rounds is not None else self.quantizer.quantize(z)
        return to_uint8_images(self.decode_float(z_q))

    def token_shape(self, image_size: int) -> tuple[int, int, int]:
        s = image_size // self.cfg.stride
        return (self.cfg.latent_channels, s, s)

    def bits_per_image(self, image_size: int) -> float:
        """Bits of one image's code (float32 per latent element for the continuous latent)."""
        s = image_size // self.cfg.stride
        bits = self.quantizer.bits if not self.cfg.continuous else 32 * self.cfg.latent_channels
        return s * s * bits


def build_tokenizer(name_or_cfg: str | TokenizerConfig, **overrides) -> HBQTokenizer:
    cfg = tokenizer_config(name_or_cfg, **overrides) if isinstance(name_or_cfg, str) \
        else replace(name_or_cfg, **overrides)
    return HBQTokenizer(cfg)

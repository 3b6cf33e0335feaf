"""HBQ autoencoder for images and videos: encoder -> tanh -> HBQ -> decoder.

The official tokenizer's design (a Wan2.2-style causal-3D VAE): residual blocks of RMS norm -> SiLU ->
3x3(x3) conv, twice; parameter-free shortcuts around every down-sampling (pixel-unshuffle + group mean)
and up-sampling (channel repeat + pixel-shuffle); a middle block with per-frame attention; a 2x2
space-to-depth patchify at the input and its inverse at the output. The encoder's head predicts
(mu, logvar) as in the official checkpoint; only mu is used, bounded by tanh.

One network for both: an image is a clip of T = 1 frame. Time enters only through the causal convs
(`temporal_kernel=3`: k_t - 1 zero frames in front, none behind), the temporal re-sampling convs of the
levels flagged in `temporal_downsample` (frame 0 passes alone, later frames are halved/doubled) and the
shortcuts of those levels. The official inference encodes frame 0 alone and then chunks of 4 frames with
a cache of the last 2 frames per conv, and decodes one latent frame at a time; that computes exactly what
the whole-clip pass here computes (tests/test_tokenizer_video.py checks it against a chunked reference),
so latent frame j depends on frames <= 4j only. On one frame a causal conv is a 2D conv with the last
temporal kernel slice and the temporal re-sampling convs are skipped, so images cost what a 2D network
costs. `temporal_kernel=1` is a 2D network applied frame by frame (this project's image tokenizers).

Boundary convention: `encode`, `tokenize`, `reconstruct` take uint8 NHWC images or NTHWC videos (numpy or
tensor); inside everything is float NC(T)HW in [-1, 1].
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
    temporal_kernel: int = 1  # 3: the official causal-3D convs (every 3x3 conv is 3x3x3, causal in time);
    #   1: 2D convs on every frame (this project's image tokenizers). Time is re-sampled only where
    #   `temporal_downsample` says so, so a video's latent has T' = 1 + (T - 1) / 2^(levels with a 1) frames.

    def __post_init__(self):
        # configs read back from checkpoints hold lists
        for name in ("dim_mult", "dec_dim_mult", "temporal_downsample"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.temporal_kernel not in (1, 3):
            raise ValueError(f"temporal_kernel is 1 (2D convs on every frame) or 3 (causal 3D), got "
                             f"{self.temporal_kernel}")
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

    @property
    def temporal_stride(self) -> int:
        """Frames per latent frame after the first: T' = 1 + (T - 1) / temporal_stride."""
        return 2 ** sum(_temporal_flags(self.temporal_downsample, len(self.dim_mult)))

    def latent_frames(self, frames: int) -> int:
        if (frames - 1) % self.temporal_stride:
            raise ValueError(f"this tokenizer encodes 1 + {self.temporal_stride}k frames, got {frames}")
        return 1 + (frames - 1) // self.temporal_stride


# name -> config. `hbq-f16-d16` is the official image tokenizer (HBQ_image_tokenizer_16dim_M4: 256x256 -> 16x16
# x 16 ch x 4 bits), causal 3D like the video one. The middle attention runs, as in the official C2I code that encodes
# the generators' targets and decodes their samples (the official tokenizer-training copy skips it).
TOKENIZERS: dict[str, TokenizerConfig] = {
    "hbq-mnist": TokenizerConfig(latent_channels=4, rounds=4, enc_dim=32, dec_dim=32, dim_mult=(1, 2),
                                 num_res_blocks=1),
    "hbq-photo": TokenizerConfig(latent_channels=8, rounds=4, enc_dim=48, dec_dim=48, dim_mult=(1, 2),
                                 num_res_blocks=1),
    # Moving-MNIST videos (17 x 32 x 32 -> 5 x 8 x 8 tokens x 4 channels x 4 bits): the official causal-3D design
    # at a small width, both re-sampling levels halving time (T' = 1 + (T - 1) / 4, as the official joint one).
    # No 2x2 patchify (patch 1): with it the two re-sampling levels leave 4 x 4 cells of 8 px, too coarse for a
    # 16 px digit (a first run reconstructed the motion but not the digit: PSNR 18.6 dB)
    "hbq-mmnist-video": TokenizerConfig(latent_channels=4, rounds=4, enc_dim=16, dec_dim=16, dim_mult=(1, 2, 4),
                                        num_res_blocks=1, patch=1, temporal_downsample=(1, 1), temporal_kernel=3),
    "hbq-f16-d16": TokenizerConfig(latent_channels=16, rounds=4, mid_attention=True, dec_dim_mult=(4, 4, 4, 2, 1),
                                   temporal_downsample=(0, 1, 1), last_level_shortcut=True, temporal_kernel=3),
    # HBQ_tokenizer_64dim_M4: the joint image/video tokenizer of the released text-to-image / text-to-video
    # models (705,693,036 parameters): the same network with 64 latent channels
    "hbq-f16-d64": TokenizerConfig(latent_channels=64, rounds=4, mid_attention=True, dec_dim_mult=(4, 4, 4, 2, 1),
                                   temporal_downsample=(0, 1, 1), last_level_shortcut=True, temporal_kernel=3),
}


def tokenizer_config(name: str, **overrides) -> TokenizerConfig:
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer '{name}'; allowed: {sorted(TOKENIZERS)}")
    return replace(TOKENIZERS[name], **overrides)


# ---------------------------------------------------------------------------------------
# Building blocks. Every tensor is [B, C, T, H, W]; an image is T = 1. Spatial work (the norms, the
# re-sampling convs, the attention) is done frame by frame; time is touched only by the causal convs,
# the temporal re-sampling convs (`time_conv`) and the shortcuts of temporal levels.
# ---------------------------------------------------------------------------------------


def check_frames(t: int) -> None:
    """The causal design encodes frame 0 alone, then chunks of 4 frames: a clip has 1 + 4k frames."""
    if t < 1 or (t - 1) % 4:
        raise ValueError(f"a video for the causal tokenizer has 1 + 4k frames (1, 5, 9, 13, 17, ...), got {t}")


def per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D op (NCHW -> NC'H'W') to every frame of [B, C, T, H, W]. For T = 1 the frames are
    views of the same memory, so an image meets exactly the 2D ops of a 2D network."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).reshape(b * t, *x.shape[1:2], *x.shape[3:]))
    return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class RMSNorm2d(nn.Module):
    """Channel RMS norm as in the official VAE: normalize(x, dim=1) * sqrt(C) * gamma (NCHW or NCTHW)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1))

    def forward(self, x):
        gamma = self.gamma if x.dim() == 4 else self.gamma.unsqueeze(-1)
        return F.normalize(x, dim=1) * self.scale * gamma


class CausalConv3d(nn.Conv3d):
    """k_t x k x k convolution, 'same' in space and causal in time: k_t - 1 zero frames in front of the clip
    and none behind, so output frame t sees input frames <= t only (the official CausalConv3d; its
    chunked inference with a cache of the last 2 frames computes the same numbers).

    k_t = 1 is a 2D convolution on every frame (this project's image tokenizers). On a single frame only the
    last temporal kernel slice meets data, so both run as a 2D convolution there. Created like a Conv2d of
    the same k (same initialisation, same random draws for k_t = 1); with k_t = 1 its state dict holds the
    Conv2d weight [out, in, k, k], so checkpoints of the 2D tokenizers keep their layout and content hash."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int, temporal_kernel: int = 1):
        super().__init__(in_dim, out_dim, (temporal_kernel, kernel, kernel))

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.kernel_size[0] == 1:
            destination[prefix + "weight"] = destination[prefix + "weight"].squeeze(2)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        w = state_dict.get(prefix + "weight")
        if w is not None and w.dim() == 4 and self.kernel_size[0] == 1:
            state_dict[prefix + "weight"] = w.unsqueeze(2)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        kt, k = self.kernel_size[0], self.kernel_size[1]
        if kt == 1 or x.shape[2] == 1:
            return per_frame(lambda f: F.conv2d(f, self.weight[:, :, -1], self.bias, padding=k // 2), x)
        return F.conv3d(F.pad(x, (k // 2, k // 2, k // 2, k // 2, kt - 1, 0)), self.weight, self.bias)


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0, kt: int = 1):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm2d(in_dim), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, kt),
            RMSNorm2d(out_dim), nn.SiLU(), nn.Dropout(dropout), CausalConv3d(out_dim, out_dim, 3, kt),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x):
        return self.shortcut(x) + self.residual(x)


class AttentionBlock(nn.Module):
    """Single-head spatial self-attention within each frame, with a zero-initialised output projection."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm2d(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.proj.weight)

    def _frame(self, x):
        b, c, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # [b, hw, c]
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))

    def forward(self, x):
        return per_frame(self._frame, x)


def avg_down(x: torch.Tensor, out_dim: int, temporal: bool = False, spatial: bool = True) -> torch.Tensor:
    """Parameter-free down-sampling shortcut of [B, C, T, H, W]: every 2 x 2 cell (and, temporal, every pair
    of frames) folded into the channels, then the mean over groups of consecutive channels.

    Slot order within a channel: (frame, row, column). Time is zero-padded in front to an even count, so
    frame 0 pairs with a zero frame (it still counts in the mean) and frames (1, 2), (3, 4), ... pair up."""
    if temporal:
        x = F.pad(x, (0, 0, 0, 0, x.shape[2] % 2, 0))
        b, c, t, h, w = x.shape
        x = x.view(b, c, t // 2, 2, h, w).transpose(2, 3)  # [b, c, frame slot, t/2, h, w]
        x = per_frame(lambda f: F.pixel_unshuffle(f, 2), x.reshape(b, 2 * c, t // 2, h, w)) if spatial \
            else x.reshape(b, 2 * c, t // 2, h, w)
    elif spatial:
        x = per_frame(lambda f: F.pixel_unshuffle(f, 2), x)
    b, c, t, h, w = x.shape
    return x.reshape(b, out_dim, c // out_dim, t, h, w).mean(2)


def dup_up(x: torch.Tensor, out_dim: int, temporal: bool = False) -> torch.Tensor:
    """Parameter-free up-sampling shortcut: repeat channels, then unfold them into 2 x 2 cells (and,
    temporal, 2 frames per input frame, of which frame 0 keeps only the second: the clip grows from
    1 + 2k to 1 + 4k frames, as the official first chunk drops its first frame)."""
    frames = 2 if temporal else 1
    x = x.repeat_interleave(out_dim * 4 * frames // x.shape[1], dim=1)
    if temporal:
        b, _, t, h, w = x.shape
        x = x.view(b, out_dim, 2, 4, t, h, w).permute(0, 1, 3, 4, 2, 5, 6).reshape(b, out_dim * 4, 2 * t, h, w)
        x = x[:, :, 1:]
    return per_frame(lambda f: F.pixel_shuffle(f, 2), x)


@torch.no_grad()
def _identity_tap(conv: nn.Conv3d, tap: int) -> None:
    """A (3, 1, 1) time conv that starts by copying frame `tap` of its window into every output group."""
    out, inp = conv.weight.shape[:2]
    conv.weight.zero_()
    conv.bias.zero_()
    for g in range(out // inp):
        conv.weight[g * inp:(g + 1) * inp, :, tap, 0, 0] = torch.eye(inp)


class DownBlock(nn.Module):
    def __init__(self, in_dim, out_dim, num_res, downsample, dropout, temporal=False, shortcut_always=False, kt=1):
        super().__init__()
        self.res = nn.Sequential(*[ResidualBlock(in_dim if i == 0 else out_dim, out_dim, dropout, kt)
                                   for i in range(num_res)])
        self.down = nn.Conv2d(out_dim, out_dim, 3, stride=2) if downsample else None
        # the official temporal down-sampling: frame 0 passes (it was only cached), then stride 2 in time
        # over [frame 0, 1, 2], [2, 3, 4], ...: 1 + 2k frames -> 1 + k
        self.time_conv = nn.Conv3d(out_dim, out_dim, (3, 1, 1), stride=(2, 1, 1)) if downsample and temporal \
            else None
        if self.time_conv is not None:  # start as "take the middle frame of the window" (as the official init)
            _identity_tap(self.time_conv, tap=1)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.temporal, self.shortcut_always = temporal, shortcut_always

    def forward(self, x):
        y = self.res(x)
        if self.down is None:
            # the official block keeps its shortcut without re-sampling: a channel-group mean (identity when
            # the widths agree, as in the official last level)
            return (y + avg_down(x, self.out_dim, spatial=False)) if self.shortcut_always else y
        # asymmetric zero padding (right/bottom) as in the official resample, then the parameter-free shortcut
        y = per_frame(lambda f: self.down(F.pad(f, (0, 1, 0, 1))), y)
        if self.time_conv is not None and y.shape[2] > 1:
            y = torch.cat([y[:, :, :1], self.time_conv(y)], dim=2)
        return y + avg_down(x, self.out_dim, self.temporal)


class UpBlock(nn.Module):
    def __init__(self, in_dim, out_dim, num_res, upsample, dropout, temporal=False, kt=1):
        super().__init__()
        self.res = nn.Sequential(*[ResidualBlock(in_dim if i == 0 else out_dim, out_dim, dropout, kt)
                                   for i in range(num_res)])
        self.up = nn.Conv2d(out_dim, out_dim, 3, padding=1) if upsample else None
        # the official temporal up-sampling: frame 0 passes, every later frame becomes 2 (C -> 2C channels,
        # causal in time over frames 1, 2, ... with zeros in front: frame 0 is not in its window)
        self.time_conv = nn.Conv3d(out_dim, 2 * out_dim, (3, 1, 1)) if upsample and temporal else None
        if self.time_conv is not None:  # start as "both new frames copy the current one" (as the official init)
            _identity_tap(self.time_conv, tap=2)
        self.out_dim, self.temporal = out_dim, temporal

    def _time_up(self, y):
        if self.time_conv is None or y.shape[2] == 1:
            return y
        later = self.time_conv(F.pad(y[:, :, 1:], (0, 0, 0, 0, 2, 0)))  # [b, 2c, t - 1, h, w]
        b, c2, t1, h, w = later.shape
        later = later.view(b, 2, c2 // 2, t1, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t1, h, w)
        return torch.cat([y[:, :, :1], later], dim=2)

    def forward(self, x):
        y = self.res(x)
        if self.up is None:
            return y
        # nearest: for an exact 2x scale the same pixels as the official "nearest-exact"
        y = per_frame(lambda f: self.up(F.interpolate(f, scale_factor=2.0, mode="nearest")), self._time_up(y))
        return y + dup_up(x, self.out_dim, self.temporal)


def _temporal_flags(temporal_downsample, n: int) -> list[bool]:
    """Temporal flags of the n - 1 re-sampling levels (missing entries are False); the decoder
    takes them in reverse order, as the official model does."""
    flags = [bool(f) for f in temporal_downsample[: n - 1]]
    return flags + [False] * (n - 1 - len(flags))


def _mid(dim, attention, dropout, kt):
    return nn.Sequential(ResidualBlock(dim, dim, dropout, kt), AttentionBlock(dim) if attention else nn.Identity(),
                         ResidualBlock(dim, dim, dropout, kt))


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        kt = cfg.temporal_kernel
        dims = [cfg.enc_dim * m for m in (1, *cfg.dim_mult)]
        self.conv_in = CausalConv3d(3 * cfg.patch**2, dims[0], 3, kt)
        n = len(cfg.dim_mult)
        temporal = _temporal_flags(cfg.temporal_downsample, n) + [False]  # the last level does not re-sample
        self.down = nn.Sequential(*[DownBlock(dims[i], dims[i + 1], cfg.num_res_blocks, i < n - 1, cfg.dropout,
                                              temporal[i], cfg.last_level_shortcut, kt)
                                    for i in range(n)])
        self.mid = _mid(dims[-1], cfg.mid_attention, cfg.dropout, kt)
        self.head = nn.Sequential(RMSNorm2d(dims[-1]), nn.SiLU(),
                                  CausalConv3d(dims[-1], 2 * cfg.latent_channels, 3, kt))
        self.conv1 = CausalConv3d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
        self.patch = cfg.patch

    def forward(self, x):  # [B, 3, T, H, W] -> [B, d, T', H/s, W/s]
        x = per_frame(lambda f: F.pixel_unshuffle(f, self.patch), x) if self.patch > 1 else x
        x = self.head(self.mid(self.down(self.conv_in(x))))
        mu, _logvar = self.conv1(x).chunk(2, dim=1)
        return mu


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        kt = cfg.temporal_kernel
        n = len(cfg.dim_mult)
        mults = cfg.dec_dim_mult or (*reversed(cfg.dim_mult), cfg.dim_mult[0])
        if len(mults) != n + 1:
            raise ValueError(f"dec_dim_mult needs {n + 1} entries (middle block, then each level), got {mults}")
        dims = [cfg.dec_dim * m for m in mults]
        temporal = _temporal_flags(cfg.temporal_downsample, n)[::-1] + [False]  # mirrors the encoder
        self.conv2 = CausalConv3d(cfg.latent_channels, cfg.latent_channels, 1)
        self.conv_in = CausalConv3d(cfg.latent_channels, dims[0], 3, kt)
        self.mid = _mid(dims[0], cfg.mid_attention, cfg.dropout, kt)
        self.up = nn.Sequential(*[UpBlock(dims[i], dims[i + 1], cfg.num_res_blocks + 1, i < n - 1, cfg.dropout,
                                          temporal[i], kt)
                                  for i in range(n)])
        self.head = nn.Sequential(RMSNorm2d(dims[-1]), nn.SiLU(), CausalConv3d(dims[-1], 3 * cfg.patch**2, 3, kt))
        self.patch = cfg.patch

    def forward(self, z):  # [B, d, T', h, w] -> [B, 3, T, H, W]
        x = self.head(self.up(self.mid(self.conv_in(self.conv2(z)))))
        return per_frame(lambda f: F.pixel_shuffle(f, self.patch), x) if self.patch > 1 else x


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
        """Images [B, 3, H, W] -> the latent z the quantizer takes, [B, d, H/s, W/s]; videos [B, 3, T, H, W] ->
        [B, d, T', H/s, W/s] (T = 1 + 4k for the official design; latent frame j sees frames <= 4j only). z is
        tanh-bounded in (-1, 1) for HBQ and the continuous ceiling; the library quantizers bound it their own
        way (grn/quantizers.py) and take images only."""
        video = x.dim() == 5
        if video:
            self.cfg.latent_frames(x.shape[2])
            if not (self.hbq or self.cfg.continuous):
                raise ValueError(f"a {self.cfg.quantizer} tokenizer quantizes images only; videos use HBQ")
        z = self.encoder(x if video else x.unsqueeze(2))
        return self.quantizer.bound(z if video else z[:, :, 0]).contiguous()

    def decode_float(self, z_q: torch.Tensor) -> torch.Tensor:
        """[B, d, h, w] -> images [B, 3, H, W]; [B, d, T', h, w] -> videos [B, 3, 1 + 4(T' - 1), H, W]."""
        video = z_q.dim() == 5
        # contiguous: convolution results depend (in the last bits) on the memory layout
        x = self.decoder((z_q if video else z_q.unsqueeze(2)).contiguous())
        return x.contiguous() if video else x[:, :, 0].contiguous()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: reconstruction (through the straight-through quantizer) and the quantizer's
        auxiliary loss (VQ commitment, LFQ entropy; zero for HBQ, FSQ and the continuous latent)."""
        z_q, aux = self.quantizer(self.encode_float(x))
        return self.decode_float(z_q), aux

    # -- uint8 boundary: images NHWC, videos NTHWC ------------------------------------------------
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

    def video_token_shape(self, frames: int, size: int) -> tuple[int, int, int, int]:
        s = size // self.cfg.stride
        return (self.cfg.latent_channels, self.cfg.latent_frames(frames), s, s)

    def bits_per_image(self, image_size: int) -> float:
        """Bits of one image's code (float32 per latent element for the continuous latent)."""
        s = image_size // self.cfg.stride
        bits = self.quantizer.bits if not self.cfg.continuous else 32 * self.cfg.latent_channels
        return s * s * bits


def build_tokenizer(name_or_cfg: str | TokenizerConfig, **overrides) -> HBQTokenizer:
    cfg = tokenizer_config(name_or_cfg, **overrides) if isinstance(name_or_cfg, str) \
        else replace(name_or_cfg, **overrides)
    return HBQTokenizer(cfg)

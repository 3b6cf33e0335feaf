"""FVD features: the Kinetics-400 I3D of TF-Hub (`deepmind/i3d-kinetics-400/1`) in torch, its preprocessing,
and the Fréchet distance of two feature sets.

Protocol (Unterthiner et al. 2018, the `frechet_video_distance.py` reference; StyleGAN-V and VideoGPT use
the same network and features):
  * clips of `frames` = 16 consecutive frames (the first 16 here; clip sampling is the caller's choice);
  * every frame resized to 224 x 224 (non-square frames are stretched, as in the reference: crop first for
    another convention), then values scaled to [-1, 1] as 2 x / 255 - 1;
  * features: the network's 400 logits before softmax, averaged over time (TF-Hub's output; the reference's
    `RGB/inception_i3d/Mean` tensor), in float64;
  * FVD: the Fréchet distance of the two sets' Gaussians (`grn_eval.metrics.fid`, float64).

Resize (`preprocess_videos(resize=...)`; both bilinear, neither antialiased, both the identity when the
frames already have the target size):
  * "tf1" (default): the reference's `tf.image.resize_bilinear`, TensorFlow 1 semantics (align_corners=False,
    half_pixel_centers=False): output pixel i samples the input at i * in / out, no antialiasing filter;
  * "half-pixel": `torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)`,
    samples at (i + 0.5) * in / out - 0.5: what torch FVD code does (VideoGPT's preprocessing; StyleGAN-V
    resizes inside its TorchScript detector, which by its own account matches the reference "up to the
    upsampling operation").
The two differ by a fraction of a pixel of shift; numbers are comparable only under one of them.

The network itself is `grn_eval.i3d_network.InceptionI3d` (input float [B, 3, T, 224, 224] in [-1, 1]); its
verified weights come from `grn_eval.weights.load_i3d()`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from grn.errors import UserError
from grn_eval.i3d_network import NUM_CLASSES, InceptionI3d  # noqa: F401  (InceptionI3d: the public name here)
from grn_eval.metrics.fid import frechet_distance, gaussian_stats

FRAMES = 16
SIZE = 224
RESIZE_MODES = ("tf1", "half-pixel")


def _tf1_taps(n: int, out: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TF1 `resize_bilinear` (no half-pixel centres) along one axis: output i samples the input at
    i * n / out, between cells lo and hi = min(lo + 1, n - 1) with weight t of hi."""
    src = torch.arange(out, dtype=torch.float64) * (n / out)
    lo = src.floor().to(torch.int64).clamp(max=n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    return lo.to(device), hi.to(device), (src - lo).to(torch.float32).to(device)


def _resize_nhwc(frames: torch.Tensor, size: int, resize: str) -> torch.Tensor:
    """uint8 frames [M, H, W, C] -> float32 [M, size, size, C] (any memory layout)."""
    if frames.shape[1:3] == (size, size):
        return frames.float()
    if resize == "half-pixel":
        x = frames.permute(0, 3, 1, 2).float()
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=False).permute(0, 2, 3, 1)
    # TF interpolates along x, then along y; the gathers of the first pass read uint8
    lo, hi, t = _tf1_taps(frames.shape[2], size, frames.device)
    x = torch.lerp(frames.index_select(2, lo).float(), frames.index_select(2, hi).float(), t.view(1, 1, -1, 1))
    lo, hi, t = _tf1_taps(frames.shape[1], size, frames.device)
    return torch.lerp(x.index_select(1, lo), x.index_select(1, hi), t.view(1, -1, 1, 1))


def preprocess_videos(videos, size: int = SIZE, resize: str = "tf1", device="cpu") -> torch.Tensor:
    """uint8 videos [N, T, H, W, C] (numpy or torch; C = 3, or 1 for grey, repeated) -> float32
    [N, 3, T, size, size] in [-1, 1], the I3D's input: each frame resized bilinearly (see the module
    docstring for `resize`), then 2 x / 255 - 1. The whole batch is resized at once, on `device`."""
    if resize not in RESIZE_MODES:
        raise UserError(f"unknown resize '{resize}'; allowed: {RESIZE_MODES}")
    v = torch.as_tensor(videos)
    if v.dtype != torch.uint8 or v.ndim != 5 or v.shape[-1] not in (1, 3):
        raise UserError(f"videos must be uint8 [N, T, H, W, 3] (or 1 channel), got {v.dtype} {tuple(v.shape)}")
    n, t, h, w, c = v.shape
    x = _resize_nhwc(v.to(device).reshape(n * t, h, w, c), size, resize)
    x = x.mul_(2).div_(255).sub_(1)  # the reference's 2 x / 255 - 1, in its order
    x = x.reshape(n, t, size, size, c).permute(0, 4, 1, 2, 3)
    return (x.expand(-1, 3, -1, -1, -1) if c == 1 else x).contiguous()


def i3d_features(model: torch.nn.Module, videos, batch_size: int = 8, device="cpu", frames: int = FRAMES,
                 resize: str = "tf1") -> np.ndarray:
    """FVD features of uint8 videos [N, T, H, W, 3]: the I3D logits [N, 400] in float64 of each video's
    first `frames` frames, preprocessed by `preprocess_videos`. Videos shorter than `frames` are refused."""
    v = torch.as_tensor(videos)
    if v.ndim != 5:
        raise UserError(f"videos must be uint8 [N, T, H, W, 3], got shape {tuple(v.shape)}")
    if v.shape[1] < frames:
        raise UserError(f"FVD features need {frames} frames per video; these videos have {v.shape[1]}. Fix: give "
                        f"clips of at least {frames} frames (or pass frames={v.shape[1]}, then FVD is not comparable "
                        f"with {frames}-frame numbers).")
    v = v[:, :frames]
    out = np.empty((len(v), NUM_CLASSES), dtype=np.float64)
    with torch.inference_mode():
        for s in range(0, len(v), batch_size):
            x = preprocess_videos(v[s : s + batch_size], resize=resize, device=device)
            out[s : s + len(x)] = model(x).double().cpu().numpy()
    return out


def fvd_from_features(feats_a, feats_b) -> float:
    """FVD: the Fréchet distance between the Gaussians of two [N, 400] feature sets (float64)."""
    return frechet_distance(*gaussian_stats(feats_a), *gaussian_stats(feats_b))

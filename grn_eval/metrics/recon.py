"""Reconstruction metrics on uint8 NHWC image pairs: PSNR, SSIM, LPIPS (alex / vgg).

PSNR and SSIM follow the official tokenizer evaluation: scikit-image on uint8 images
(data range 255, SSIM over RGB with `channel_axis=-1`), computed per image, then averaged.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from grn.data import to_model_input

VERSION = "1"


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.dtype != np.uint8 or b.dtype != np.uint8 or a.ndim != 4:
        raise ValueError(f"expected two uint8 NHWC arrays of one shape, got {a.dtype}{a.shape} and {b.dtype}{b.shape}")


def psnr_per_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _check(a, b)
    with np.errstate(divide="ignore"):
        return np.array([peak_signal_noise_ratio(x, y, data_range=255) for x, y in zip(a, b)])


def ssim_per_image(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _check(a, b)
    return np.array([structural_similarity(x, y, data_range=255, channel_axis=-1) for x, y in zip(a, b)])


@torch.no_grad()
def lpips_per_image(model, a: np.ndarray, b: np.ndarray, batch_size: int = 64, device="cpu") -> np.ndarray:
    _check(a, b)
    out = []
    for s in range(0, len(a), batch_size):
        d = model(to_model_input(a[s : s + batch_size], device), to_model_input(b[s : s + batch_size], device))
        out.append(d.reshape(-1).double().cpu().numpy())
    return np.concatenate(out)

"""Reconstruction metrics on uint8 NHWC image pairs: PSNR, SSIM, LPIPS (alex / vgg).

PSNR and SSIM follow the official tokenizer evaluation: scikit-image on uint8 images
(data range 255, SSIM over RGB with `channel_axis=-1`), computed per image, then averaged.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from grn.data import to_model_input
from grn_eval import weights as W
from grn_eval.metrics.registry import Row, register_metric
from grn_eval.options import Opt

VERSION = "1"
LPIPS_NETS = ("alex", "vgg")


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


# ---------------------------------------------------------------------------------------
# Registration: each model's reconstructions against the reference images they were made from
# ---------------------------------------------------------------------------------------


def _pairs(ctx, **more) -> dict:
    return {"reference": ctx.reference_provenance, "images": "uint8, per image then mean", **more}


def _psnr(ctx) -> list[dict]:
    value = float(psnr_per_image(ctx.reference_images, ctx.samples).mean())
    return [ctx.row("psnr", value, _pairs(ctx, data_range=255))]


def _ssim(ctx) -> list[dict]:
    value = float(ssim_per_image(ctx.reference_images, ctx.samples).mean())
    return [ctx.row("ssim", value, _pairs(ctx, data_range=255, channel_axis=-1))]


def _lpips(ctx) -> list[dict]:
    rows = []
    for net in ctx.options["nets"]:
        model, r = W.load_lpips(net, device=ctx.device)
        value = float(lpips_per_image(model, ctx.reference_images, ctx.samples, device=ctx.device).mean())
        rows.append(ctx.row(f"lpips_{net}", value, _pairs(ctx, weights=r.provenance())))
    return rows


register_metric(key="psnr", task="reconstruction", version=VERSION, compute=_psnr, order=10,
                rows=(Row("psnr", "higher", "PSNR", 2, floor=0.1),))
register_metric(key="ssim", task="reconstruction", version=VERSION, compute=_ssim, order=20,
                rows=(Row("ssim", "higher", "SSIM", 3, floor=0.005),))
register_metric(key="lpips", task="reconstruction", version=VERSION, compute=_lpips, order=30,
                options={"nets": Opt(list, list(LPIPS_NETS), min=1, unique=True, item=Opt(str, choices=LPIPS_NETS))},
                rows=tuple(Row(f"lpips_{net}", "lower", f"LPIPS-{net[0].upper()}", 3, floor=0.005)
                           for net in LPIPS_NETS))

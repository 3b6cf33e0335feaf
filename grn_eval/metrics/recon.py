"""Reconstruction metrics on uint8 NHWC image pairs: PSNR, SSIM, LPIPS (alex / vgg).

PSNR and SSIM follow the official tokenizer evaluation: scikit-image on uint8 images
(data range 255, SSIM over RGB with `channel_axis=-1`), computed per image, then averaged. Each row's
interval is the bootstrap percentile interval of that mean over the images (grn_eval/intervals.py).
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from grn.data import to_model_input
from grn_eval import intervals
from grn_eval import weights as W
from grn_eval.metrics.registry import BOOTSTRAP, Row, register_metric
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


def _mean_row(ctx, name: str, per_image: np.ndarray, protocol: dict) -> dict:
    ci = intervals.mean_interval(per_image, ctx.options["bootstrap"], ctx.seed, name)
    return ctx.row(name, float(per_image.mean()), protocol, ci=ci)


def _psnr(ctx) -> list[dict]:
    return [_mean_row(ctx, "psnr", psnr_per_image(ctx.reference_images, ctx.samples), _pairs(ctx, data_range=255))]


def _ssim(ctx) -> list[dict]:
    return [_mean_row(ctx, "ssim", ssim_per_image(ctx.reference_images, ctx.samples),
                      _pairs(ctx, data_range=255, channel_axis=-1))]


def _lpips(ctx) -> list[dict]:
    rows = []
    for net in ctx.options["nets"]:
        model, r = W.load_lpips(net, device=ctx.device)
        per_image = lpips_per_image(model, ctx.reference_images, ctx.samples, device=ctx.device)
        rows.append(_mean_row(ctx, f"lpips_{net}", per_image, _pairs(ctx, weights=r.provenance())))
    return rows


register_metric(key="psnr", task="reconstruction", version=VERSION, compute=_psnr, order=10,
                options={"bootstrap": BOOTSTRAP}, rows=(Row("psnr", "higher", "PSNR", 2, floor=0.1),))
register_metric(key="ssim", task="reconstruction", version=VERSION, compute=_ssim, order=20,
                options={"bootstrap": BOOTSTRAP}, rows=(Row("ssim", "higher", "SSIM", 3, floor=0.005),))
register_metric(key="lpips", task="reconstruction", version=VERSION, compute=_lpips, order=30,
                options={"nets": Opt(list, list(LPIPS_NETS), min=1, unique=True, item=Opt(str, choices=LPIPS_NETS)),
                         "bootstrap": BOOTSTRAP},
                rows=tuple(Row(f"lpips_{net}", "lower", f"LPIPS-{net[0].upper()}", 3, floor=0.005)
                           for net in LPIPS_NETS))

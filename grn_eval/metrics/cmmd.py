"""CMMD (Jayasumana et al. 2024, "Rethinking FID"): the maximum mean discrepancy between CLIP image
embeddings, with no Gaussian assumption and no bias that depends on N.

As the reference implementation: CLIP ViT-L/14 at 336 px (open_clip's `ViT-L-14-336` / `openai`, the
same OpenAI weights), unit-normalised image embeddings, the Gaussian RBF kernel with sigma = 10, the
V-statistic (means over all pairs, the diagonal included), scaled by 1000. Images go through open_clip's
preprocessing for the model (bicubic resize of the short side to 336 and a centre crop: for square images
the reference's plain resize). Weights only from a file or the Hugging Face cache (as clip_score);
without them the run stops before sampling, naming the file to provide. Never random weights.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from grn_eval import intervals
from grn_eval.metrics.clip_score import clip_for_run
from grn_eval.metrics.registry import BOOTSTRAP, Row, register_metric
from grn_eval.options import Opt

VERSION = "1"
SIGMA, SCALE = 10.0, 1000.0


def rbf_gram(x: np.ndarray, y: np.ndarray, sigma: float = SIGMA) -> np.ndarray:
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.exp(-np.clip(d2, 0, None) / (2 * sigma**2))


def cmmd_weighted(x: np.ndarray, y: np.ndarray, w=None, v=None, sigma: float = SIGMA) -> np.ndarray:
    """SCALE x the RBF MMD^2 V-statistic of each weighted copy (w [B, n1], v [B, n2]; None: the sets as
    they are), so a bootstrap replicate is a pair of weight rows."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    w = np.ones((1, len(x))) if w is None else np.asarray(w, np.float64)
    v = np.ones((len(w), len(y))) if v is None else np.asarray(v, np.float64)
    k_xx, k_yy, k_xy = rbf_gram(x, x, sigma), rbf_gram(y, y, sigma), rbf_gram(x, y, sigma)
    n1, n2 = w.sum(1), v.sum(1)
    return SCALE * (((w @ k_xx) * w).sum(1) / n1**2 + ((v @ k_yy) * v).sum(1) / n2**2
                    - 2 * ((w @ k_xy) * v).sum(1) / (n1 * n2))


@torch.no_grad()
def clip_embeddings(model, preprocess, images: np.ndarray, device="cpu", batch_size: int = 32) -> np.ndarray:
    """uint8 NHWC images -> [N, D] unit-norm float64 image embeddings."""
    out = []
    for s in range(0, len(images), batch_size):
        pix = torch.stack([preprocess(Image.fromarray(im).convert("RGB")) for im in images[s : s + batch_size]])
        e = model.encode_image(pix.to(device)).double()
        out.append(torch.nn.functional.normalize(e, dim=-1).cpu().numpy())
    return np.concatenate(out)


def _cmmd(ctx) -> list[dict]:
    model, preprocess, _, prov = clip_for_run(ctx.runner, ctx.options)
    protocol = {"features": "clip image embeddings, unit norm", "weights": prov, "kernel": f"rbf sigma {SIGMA}",
                "estimator": "V-statistic", "scale": SCALE, "reference": ctx.reference_provenance}
    if ctx.reference_images is None:
        return [ctx.row("cmmd", None, protocol, reason="not available: cmmd needs reference images, not "
                                                       "Inception statistics")]
    ref = ctx.runner.asset(("clip-reference", prov["sha256"], id(ctx.reference_images)),
                           lambda: clip_embeddings(model, preprocess, ctx.reference_images, ctx.device))
    emb = clip_embeddings(model, preprocess, ctx.samples, ctx.device)
    value = float(cmmd_weighted(emb, ref)[0])
    b, ci = ctx.options["bootstrap"], None
    if b:
        w = intervals.counts(len(emb), b, ctx.seed, "cmmd:samples")
        v = intervals.counts(len(ref), b, ctx.seed, "cmmd:reference")
        ci = intervals.interval(cmmd_weighted(emb, ref, w, v), value)
    return [ctx.row("cmmd", value, protocol, ci=ci)]


register_metric(key="cmmd", task="generation", version=VERSION, compute=_cmmd, order=16, prepare=clip_for_run,
                compares_reference=True,
                options={"model": Opt(str, "ViT-L-14-336"), "tag": Opt(str, "openai"), "weights_path": Opt(str),
                         "bootstrap": BOOTSTRAP},
                rows=(Row("cmmd", "lower", "CMMD", 3),))

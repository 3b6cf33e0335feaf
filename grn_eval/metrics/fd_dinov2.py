"""FD-DINOv2 (Stein et al. 2023, dgm-eval): the Fréchet distance in the feature space of DINOv2 ViT-L/14,
which ranks generators closer to human judgement than Inception does.

dgm-eval's protocol: images resized to 224 x 224 (bicubic), scaled to [0, 1] and normalised with the
ImageNet mean and std; the feature is the final-norm class token (1024 dimensions for ViT-L/14). The
network is timm's `vit_large_patch14_dinov2.lvd142m`, built at its native 518 px grid and run at 224 with
the position embeddings interpolated (bicubic), as the hub model dgm-eval loads does. Weights only from
a file (`weights_path` or GRN_DINOV2_WEIGHTS) or the Hugging Face cache, pinned by `sha256` when given;
without them the run stops before sampling, naming the file to provide. Never random weights.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image

from grn.errors import UserError
from grn_eval import weights as W
from grn_eval.metrics.fid import covariance_need, fid_interval, frechet_terms, gaussian_stats
from grn_eval.metrics.registry import BOOTSTRAP, Row, register_metric
from grn_eval.options import SHA256, Opt

VERSION = "1"
ARCH = "vit_large_patch14_dinov2.lvd142m"
SIZE = 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_dinov2(arch: str, weights_path=None, sha256=None, device="cpu"):
    """(model, provenance) with real weights; raises WeightsAbsent (no file) or UserError (pin mismatch)."""
    import timm

    label = f"fd_dinov2:{arch}"
    path, source, checks = W.find_hub_weights(
        label, weights_path or os.environ.get(W.DINOV2_ENV), f"timm/{arch}", ("model.safetensors",
                                                                            "pytorch_model.bin"),
        f"set {W.DINOV2_ENV}=/path/to/model.safetensors (timm's {arch}) or metrics.fd_dinov2.weights_path")
    digest = W.sha256_file(path)
    if sha256 and digest != sha256:
        raise UserError(f"{label}: '{path}' has sha256 {digest}, the suite pins {sha256} "
                        f"(metrics.fd_dinov2.sha256); give the pinned file or change the pin")
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(arch, pretrained=False, num_classes=0, dynamic_img_size=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UserError(f"{label}: '{path}' does not hold {arch} weights ({str(e).splitlines()[0]})") from None
    provenance = {"arch": arch, "file": path.name, "source": source, "checks": list(checks), "sha256": digest,
                  "resize": f"{SIZE} bicubic", "feature": "final-norm class token"}
    return model.eval().to(device), provenance


@torch.no_grad()
def dinov2_features(model, images: np.ndarray, device="cpu", batch_size: int = 32) -> np.ndarray:
    """uint8 NHWC images -> [N, D] float64 class-token features (dgm-eval's preprocessing)."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    out = []
    for s in range(0, len(images), batch_size):
        batch = [np.asarray(Image.fromarray(im).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC))
                 for im in images[s : s + batch_size]]
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255
        out.append(model(((x - mean) / std).to(device)).double().cpu().numpy())
    return np.concatenate(out)


def _load(runner, o: dict):
    return runner.asset(("dinov2", o["arch"], o["weights_path"], o["sha256"]),
                        lambda: load_dinov2(o["arch"], o["weights_path"], o["sha256"], runner.device))


def _fd_dinov2(ctx) -> list[dict]:
    model, prov = _load(ctx.runner, ctx.options)
    protocol = {"features": "dinov2", "weights": prov, "reference": ctx.reference_provenance}
    if ctx.reference_images is None:
        return [ctx.row("fd_dinov2", None, protocol, reason="not available: fd_dinov2 needs reference images, "
                                                            "not Inception statistics")]
    ref = ctx.runner.asset(("dinov2-reference", prov["sha256"], id(ctx.reference_images)),
                           lambda: dinov2_features(model, ctx.reference_images, ctx.device))
    feats = dinov2_features(model, ctx.samples, ctx.device)
    terms = frechet_terms(*gaussian_stats(feats), *gaussian_stats(ref))
    return [ctx.row("fd_dinov2", terms.total, {**protocol, "sqrt_trace": terms.method},
                    {"mean_term": terms.mean_term, "cov_term": terms.cov_term},
                    ci=fid_interval(ctx, terms.total, feats, ref, None, None))]


register_metric(key="fd_dinov2", task="generation", version=VERSION, compute=_fd_dinov2, order=15, prepare=_load,
                compares_reference=True,
                min_samples=covariance_need,
                options={"arch": Opt(str, ARCH), "weights_path": Opt(str), "bootstrap": BOOTSTRAP,
                         "sha256": SHA256},
                rows=(Row("fd_dinov2", "lower", "FD-DINOv2", 2, floor=1.0),))

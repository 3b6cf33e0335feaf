"""CLIP score with open_clip: per sample 100 * max(cos(image, text), 0), then the mean.

Weights come only from a local file or the Hugging Face hub cache (grn_eval.weights); without
them the metric is "not available" with the fix, never computed with random weights.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from grn_eval import weights as W
from grn_eval.metrics.registry import Row, register_metric
from grn_eval.options import Opt

VERSION = "1"


def load_clip(model_name: str, tag: str, weights_path=None, device="cpu"):
    """Returns (model, preprocess, tokenizer, provenance); raises WeightsAbsent offline."""
    import open_clip

    path, source, checks = W.find_clip_weights(model_name, tag, weights_path)
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(path), device=device)
    provenance = {"model": model_name, "tag": tag, "file": path.name, "source": source, "checks": list(checks),
                  "sha256": W.sha256_file(path)}
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name), provenance


@torch.no_grad()
def clip_scores(model, preprocess, tokenizer, images: np.ndarray, texts: list[str], device="cpu",
                batch_size: int = 32) -> np.ndarray:
    """Per-sample 100 * max(cos, 0) between image i and text i."""
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images for {len(texts)} texts")
    out = []
    for s in range(0, len(images), batch_size):
        pix = torch.stack([preprocess(Image.fromarray(im)) for im in images[s : s + batch_size]]).to(device)
        img = model.encode_image(pix).float()
        txt = model.encode_text(tokenizer(texts[s : s + batch_size]).to(device)).float()
        cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
        out.append((100 * cos.clamp(min=0)).double().cpu().numpy())
    return np.concatenate(out)


def clip_for_run(runner, o: dict):
    """The open_clip model of options `o` (model, tag, weights_path) with real weights, loaded once per run
    (before any sampling); clip_score and cmmd share it."""
    return runner.asset(("open_clip", o["model"], o["tag"], o["weights_path"]),
                        lambda: load_clip(o["model"], o["tag"], o["weights_path"], runner.device))


def _clip_score(ctx) -> list[dict]:
    model, preprocess, tokenizer, prov = clip_for_run(ctx.runner, ctx.options)
    prompts = ctx.options["prompts"]
    if prompts:  # scored against the suite's prompts (e.g. for samples from an .npz)
        texts = [prompts[int(i) % len(prompts)] for i in ctx.labels]
    elif ctx.adapter.has_prompts:
        texts = ctx.adapter.prompt_texts(ctx.labels)
    else:
        return [ctx.row("clip_score", None, {"weights": prov},
                        reason="not available: this model has no prompts; give metrics.clip_score.prompts")]
    scores = clip_scores(model, preprocess, tokenizer, ctx.samples, texts, ctx.device)
    return [ctx.row("clip_score", float(scores.mean()), {"weights": prov, "score": "100 * max(cos, 0), mean over "
                                                                                  "samples"},
                    {"std": float(scores.std()), "prompts": sorted(set(texts))})]


_MODEL, _TAG = W.load_manifest()["clip_defaults"][0].split("/")  # the manifest's first CLIP model
register_metric(key="clip_score", task="generation", version=VERSION, compute=_clip_score, order=60,
                prepare=clip_for_run,
                options={"model": Opt(str, _MODEL), "tag": Opt(str, _TAG), "weights_path": Opt(str),
                         "prompts": Opt(list, min=1, item=Opt(str))},
                rows=(Row("clip_score", "higher", "CLIP", 2),))

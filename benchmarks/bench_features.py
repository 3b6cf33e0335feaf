"""Feature extraction through the harness against the bare torch-fidelity extractor, same batches."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.common import best_of, write
from grn.data import load_mnist
from grn_eval.features import InceptionFeatures


def run(n: int = 64, batch: int = 8) -> None:
    images = load_mnist("reference").images[:n]
    harness = InceptionFeatures("tf-inception", batch_size=batch)
    model = harness.model

    def bare():
        with torch.no_grad():
            return [model(torch.from_numpy(images[s : s + batch]).permute(0, 3, 1, 2))[0]
                    for s in range(0, n, batch)]

    def ours():
        return harness(images)["pool"]

    bare()  # warm-up
    t_bare, feats_bare = best_of(bare)
    t_ours, feats_ours = best_of(ours)
    diff = float(np.abs(torch.cat(feats_bare).double().numpy() - feats_ours).max())
    write("features_overhead", {
        "project": {"method": "grn_eval.features.InceptionFeatures (uint8 NHWC in, float64 out)", "seconds": t_ours},
        "anchor": {"method": "torch-fidelity FeatureExtractorInceptionV3 called directly", "seconds": t_bare},
        "ratio": t_ours / t_bare, "unit": "time ratio harness / bare (1.0 = no overhead)",
        "target": "<= 1.05", "n_images": n, "batch_size": batch, "max_abs_feature_difference": diff,
    })


if __name__ == "__main__":
    run()

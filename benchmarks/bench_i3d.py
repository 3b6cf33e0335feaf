"""FVD features through the harness (`grn_eval.i3d.i3d_features`: uint8 256 x 256 videos in, the TF1 bilinear
resize to 224, scaling, the network, float64 out) against the bare converted network called on the same
batches already preprocessed: the cost of the preprocessing and plumbing relative to the network, the two
interleaved; with the largest feature difference (the same network on the same values: 0)."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from benchmarks.common import write
from benchmarks.i3d_parity import photo_videos
from grn_eval import weights as W
from grn_eval.i3d import i3d_features, preprocess_videos


def run(n: int = 4, batch: int = 2, repeats: int = 5) -> None:
    videos = photo_videos(n)  # [n, 16, 256, 256, 3] uint8
    model, _ = W.load_i3d()
    batches = [preprocess_videos(videos[s : s + batch]) for s in range(0, n, batch)]

    def bare():
        with torch.no_grad():
            return torch.cat([model(x) for x in batches]).double().numpy()

    def ours():
        return i3d_features(model, videos, batch_size=batch)

    with torch.no_grad():
        model(batches[0][:1, :, :9])  # warm-up (short clip)
    times = {"bare": [], "ours": []}
    for _ in range(repeats):
        for name, fn in (("bare", bare), ("ours", ours)):
            t0 = time.perf_counter()
            feats = fn()
            times[name].append(time.perf_counter() - t0)
            if name == "bare":
                f_bare = feats
            else:
                f_ours = feats
    t_bare, t_ours = statistics.median(times["bare"]), statistics.median(times["ours"])
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        preprocess_videos(videos[s : s + batch])
    t_pre = time.perf_counter() - t0
    write("i3d_features_overhead", {
        "project": {"method": "grn_eval.i3d.i3d_features (uint8 [N, 16, 256, 256, 3] in: TF1 bilinear resize to 224 "
                              "of the whole batch, 2x/255-1, InceptionI3d, float64 out)", "seconds": t_ours},
        "anchor": {"method": "the converted InceptionI3d called directly on the same batches, preprocessed beforehand",
                   "seconds": t_bare},
        "ratio": t_bare / t_ours, "unit": "throughput ratio harness / bare network",
        "target": ">= 0.95 (preprocessing and plumbing <= 5% of the network's time)",
        "overhead_fraction": t_ours / t_bare - 1, "preprocessing_seconds": t_pre,
        "videos_per_second_bare": n / t_bare, "videos_per_second_harness": n / t_ours,
        "n_videos": n, "frames": 16, "input_resolution": 256, "batch_size": batch, "repeats": repeats,
        "threads": torch.get_num_threads(), "max_abs_feature_difference": float(np.abs(f_ours - f_bare).max()),
    })


if __name__ == "__main__":
    run()

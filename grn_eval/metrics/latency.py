"""Sampling latency: warm-up excluded, device synchronised, per batch and per image."""

from __future__ import annotations

import resource
import time

import numpy as np
import torch

VERSION = "1"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(generate, batch_size: int, device: torch.device, warmup: int = 1, repeats: int = 3) -> dict:
    """`generate(start_index)` makes one batch and returns its trace. Reports seconds per batch and per
    image (mean, p50, p90), images/s, network evaluations per image (CFG counted twice), peak memory."""
    for i in range(warmup):
        generate(-(i + 1) * batch_size)  # seeds outside the measured range
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, nfes = [], []
    for r in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        trace = generate(10**8 + r * batch_size)
        _sync(device)
        times.append(time.perf_counter() - t0)
        if trace.get("nfe"):
            nfes.append(sum(n * a for n, a in zip(trace["nfe"], trace["active"])) / batch_size)
    t = np.asarray(times)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds_per_batch_mean": float(t.mean()), "seconds_per_batch_p50": float(np.percentile(t, 50)),
            "seconds_per_batch_p90": float(np.percentile(t, 90)),
            "seconds_per_image_mean": float(t.mean() / batch_size),
            "seconds_per_image_p50": float(np.percentile(t, 50) / batch_size),
            "seconds_per_image_p90": float(np.percentile(t, 90) / batch_size),
            "images_per_second": float(batch_size / t.mean()), "nfe_per_image": float(np.mean(nfes)) if nfes else None,
            "peak_memory_bytes": int(peak), "peak_memory_kind": "cuda allocated" if device.type == "cuda"
            else "process max RSS", "batch_size": batch_size, "warmup": warmup, "repeats": repeats}

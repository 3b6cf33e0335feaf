"""Sampling latency: warm-up excluded, device synchronised, per batch and per image."""

from __future__ import annotations

import resource
import time

import numpy as np
import torch

from grn_eval.metrics.registry import Row, register_metric
from grn_eval.options import Opt
from grn_eval.stages import suspended

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


def _latency(ctx) -> list[dict]:
    # only models that generate batch by batch, and timed by one process (not beside the others under torchrun)
    if ctx.adapter.task != "generation" or not ctx.adapter.from_seeds or ctx.rank != 0:
        return []
    from grn_eval.runner import _device_name, sample_seed  # the runner imports the metrics, not the other way

    adapter, seed, bs = ctx.adapter, ctx.seed, ctx.suite.batch_size

    def one_batch(start):
        idx = np.arange(start, start + bs)
        return adapter.generate(idx % adapter.num_classes, [sample_seed(seed, int(i)) for i in idx])[1]

    with suspended():  # its batches are this metric's time, not the run's sampling / decoding
        res = measure(one_batch, bs, ctx.device, ctx.options["warmup"], ctx.options["repeats"])
    return [ctx.row("seconds_per_image", res["seconds_per_image_mean"],
                    {"device": str(ctx.device), "device_name": _device_name(ctx.device),
                     "threads": torch.get_num_threads()}, res, n=bs)]


# "both": a reconstruction suite may time its generating models too; order: after every other metric
register_metric(key="latency", task="both", version=VERSION, compute=_latency, order=1000,
                options={"warmup": Opt(int, 1, min=0), "repeats": Opt(int, 3, min=1)},
                rows=(Row("seconds_per_image", "lower", "s/img", 4),))

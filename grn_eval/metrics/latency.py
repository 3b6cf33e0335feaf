"""Sampling latency: warm-up excluded, device synchronised, per batch and per image.

By default the timed batches are the run's own sampling shards (after the warm-up ones): the same calls,
batch size and device as fresh batches would be, without making every timed batch twice. A resumed run
whose shards were read from disk, a run under torchrun, or fewer shards than warm-up + repeats, times fresh
batches instead; the row says which (`timed`)."""

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


def summarize(times, nfes, batch_size: int, peak: int, peak_kind: str, **how) -> dict:
    """Seconds per batch and per image (mean, p50, p90), images/s, network evaluations per image, peak memory."""
    t = np.asarray(times)
    return {"seconds_per_batch_mean": float(t.mean()), "seconds_per_batch_p50": float(np.percentile(t, 50)),
            "seconds_per_batch_p90": float(np.percentile(t, 90)),
            "seconds_per_image_mean": float(t.mean() / batch_size),
            "seconds_per_image_p50": float(np.percentile(t, 50) / batch_size),
            "seconds_per_image_p90": float(np.percentile(t, 90) / batch_size),
            "images_per_second": float(batch_size / t.mean()), "nfe_per_image": float(np.mean(nfes)) if nfes else None,
            "peak_memory_bytes": int(peak), "peak_memory_kind": peak_kind, "batch_size": batch_size, **how}


def nfe_per_image(trace: dict, batch_size: int) -> float | None:
    """Network evaluations per image of one batch's trace: per network call, `nfe` (evaluations per active image:
    2 when CFG batches the conditional and unconditional inputs) times `active` (images); None when the trace
    does not say (an external generator's trace need not)."""
    nfe, active = trace.get("nfe"), trace.get("active")
    if not isinstance(nfe, list) or not isinstance(active, list) or len(nfe) != len(active) or not nfe:
        return None
    return sum(n * a for n, a in zip(nfe, active)) / batch_size


def measure(generate, batch_size: int, device: torch.device, warmup: int = 1, repeats: int = 3) -> dict:
    """`generate(start_index)` makes one batch and returns its trace; timed `repeats` times after `warmup`."""
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
        nfes.append(nfe_per_image(trace, batch_size))
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return summarize(times, [n for n in nfes if n is not None], batch_size, peak,
                     "cuda allocated" if device.type == "cuda" else "process max RSS", warmup=warmup, repeats=repeats,
                     timed="fresh batches")


def from_shards(timed: dict, batch_size: int, warmup: int, repeats: int, device: torch.device,
                stages) -> dict | None:
    """The latency of the run's own sampling shards ({shard: (seconds, images, trace)}, made in this process):
    the full-size ones after the first `warmup`, when at least `repeats` remain; else None. The same
    batches the metrics score, so no batch is made twice; the peak memory is that of the run's sampling and
    decoding stages so far (`stages`: the run's StageLog)."""
    ks = sorted(k for k, (_, size, _) in timed.items() if k >= warmup and size == batch_size)
    if len(ks) < repeats:
        return None
    nfes = [nfe_per_image(timed[k][2], batch_size) for k in ks]
    # the stage log resets the peaks at every stage boundary, so the peak is read from its records
    recs = [stages.records[k] for k in ("sampling", "decoding") if k in stages.records]
    cuda = device.type == "cuda"
    peak = max(((r.peak_cuda_bytes or 0) if cuda else r.peak_rss_bytes) for r in recs)
    kind = ("cuda allocated" if cuda else "resident set") + ", peak of the run's sampling and decoding stages so far"
    return summarize([timed[k][0] for k in ks], [n for n in nfes if n is not None], batch_size, peak, kind,
                     warmup=warmup, repeats=len(ks), timed=f"the run's sampling shards {ks[0]}-{ks[-1]}")


def _latency(ctx) -> list[dict]:
    # only models that generate batch by batch, and timed by one process (not beside the others under torchrun)
    if ctx.adapter.task != "generation" or not ctx.adapter.from_seeds or ctx.rank != 0:
        return []
    from grn_eval.runner import _device_name, sample_seed  # the runner imports the metrics, not the other way

    adapter, seed, bs, o = ctx.adapter, ctx.seed, ctx.suite.batch_size, ctx.options
    res = None
    if o["from_shards"] and ctx.runner.world == 1:
        res = from_shards(ctx.runner.shard_seconds.get((ctx.entry.name, seed), {}), bs, o["warmup"], o["repeats"],
                          ctx.device, ctx.runner.stages)
    if res is None:
        def one_batch(start):
            idx = np.arange(start, start + bs)
            return adapter.generate(idx % adapter.num_classes, [sample_seed(seed, int(i)) for i in idx])[1]

        with suspended():  # its batches are this metric's time, not the run's sampling / decoding
            res = measure(one_batch, bs, ctx.device, o["warmup"], o["repeats"])
    return [ctx.row("seconds_per_image", res["seconds_per_image_mean"],
                    {"device": str(ctx.device), "device_name": _device_name(ctx.device),
                     "threads": torch.get_num_threads()}, res, n=bs)]


# "both": a reconstruction suite may time its generating models too; order: after every other metric
register_metric(key="latency", task="both", version=VERSION, compute=_latency, order=1000,
                options={"warmup": Opt(int, 1, min=0), "repeats": Opt(int, 3, min=1),
                         "from_shards": Opt(bool, True, why="time the run's own sampling shards after the warm-up "
                                                            "ones when at least `repeats` were made in this run "
                                                            "(no batch made twice); false: fresh batches")},
                rows=(Row("seconds_per_image", "lower", "s/img", 4),))

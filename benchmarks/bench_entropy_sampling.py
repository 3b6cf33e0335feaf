"""Entropy-guided sampling against fixed 50 steps: wall time per image and mean steps, same run, at the same
batch size: fixed 50 steps in batches of `batch`; entropy-guided in batches of `batch` whose finished samples
leave (the batch shrinks); entropy-guided with continuous batching (`sampler.slots = batch` over all n
samples: a finished sample's slot goes to the next one, so the batch stays full). The target is the
continuous mode's time per image <= 1.05 x (mean steps / 50) x the fixed-50 time per image. On a CPU a
call's time is about proportional to its batch, so the shrinking batch already tracks the steps; continuous
batching pays where a call costs the same at any batch below the device's width (a GPU: gpu_check.py).

Uses the committed MNIST GRN when present (else a GRN-T with perturbed weights: cost per step
does not depend on what the weights learned). The entropy schedule is calibrated on a separate
batch of the same model, since the official constants only fit ImageNet GRN-B.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import write
from grn.generator import build_generator
from grn.sampling import SamplerConfig, calibrate_entropy_schedule, decision_entropies, refine, sample_generators

CHECKPOINT = Path(__file__).resolve().parents[1] / "grn" / "checkpoints" / "generator_mnist.pt"


def _model():
    if CHECKPOINT.exists():
        from grn.checkpoint import load_model

        return load_model(CHECKPOINT), CHECKPOINT.name
    torch.manual_seed(0)
    model = build_generator("GRN-T").eval()
    with torch.no_grad():
        model.net.final_layer.linear.weight.normal_(0, 0.3)
    return model, "GRN-T (perturbed init)"


def run(n: int = 80, batch: int = 20, repeats: int = 3) -> None:
    from dataclasses import replace

    torch.set_grad_enabled(False)
    model, name = _model()
    sampler = SamplerConfig(steps=50)
    y = torch.arange(n) % model.cfg.num_classes
    cal = decision_entropies(model, y, sampler, sample_generators(range(10**6, 10**6 + n)))
    entropy = calibrate_entropy_schedule(cal)
    results, tokens = {}, {}
    modes = (("fixed50", None, sampler, batch), ("entropy_shrinking", entropy, sampler, batch),
             ("entropy_continuous", entropy, replace(sampler, slots=batch), n))
    times = {mode: [] for mode, *_ in modes}
    for _ in range(repeats):  # the modes interleaved, the median of each: this machine's load drifts
        for mode, ent, cfg, chunk in modes:
            refine(model, y[:2], sampler, sample_generators([0, 1]), entropy=ent)  # warm-up
            t0, steps, out = time.perf_counter(), [], []
            for s in range(0, n, chunk):
                z, tr = refine(model, y[s : s + chunk], cfg, sample_generators(range(s, s + chunk)), entropy=ent)
                steps += tr.steps_used
                out.append(z)
            times[mode].append((time.perf_counter() - t0) / n)
            results[mode] = {"seconds_per_image": statistics.median(times[mode]), "mean_steps": sum(steps) / len(steps)}
            tokens[mode] = torch.cat(out)
    fixed = results["fixed50"]["seconds_per_image"]
    step_ratio = results["entropy_continuous"]["mean_steps"] / 50
    write("entropy_vs_fixed50", {
        "model": name, "n": n, "batch": batch,
        "project": {"method": f"entropy-guided, continuous batching ({batch} slots over {n} samples)",
                    **results["entropy_continuous"]},
        "anchor": {"method": f"fixed 50 steps, batches of {batch}", **results["fixed50"]},
        "shrinking": {"method": f"entropy-guided, batches of {batch}, finished samples leave",
                      **results["entropy_shrinking"],
                      "ratio": results["entropy_shrinking"]["seconds_per_image"] / fixed},
        "ratio": results["entropy_continuous"]["seconds_per_image"] / fixed,
        "unit": "time per image, entropy-guided (continuous) / fixed 50",
        "target": "<= 1.05 x mean steps / 50", "mean_steps_over_50": step_ratio,
        "target_bound": 1.05 * step_ratio,
        "same_tokens_continuous_vs_shrinking": bool(torch.equal(tokens["entropy_continuous"],
                                                                tokens["entropy_shrinking"])),
        "entropy_schedule": entropy.__dict__,
    })


if __name__ == "__main__":
    run()

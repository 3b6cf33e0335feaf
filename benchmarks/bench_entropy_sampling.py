"""Entropy-guided sampling against fixed 50 steps: wall time per image and mean steps, same run.

Uses the committed MNIST GRN when present (else a GRN-T with perturbed weights: cost per step
does not depend on what the weights learned). The entropy schedule is calibrated on a separate
batch of the same model, since the official constants only fit ImageNet GRN-B.
"""

from __future__ import annotations

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


def run(n: int = 40, batch: int = 20) -> None:
    torch.set_grad_enabled(False)
    model, name = _model()
    sampler = SamplerConfig(steps=50)
    y = torch.arange(n) % model.cfg.num_classes
    cal = decision_entropies(model, y, sampler, sample_generators(range(10**6, 10**6 + n)))
    entropy = calibrate_entropy_schedule(cal)
    results = {}
    for mode, ent in (("fixed50", None), ("entropy", entropy)):
        refine(model, y[:2], sampler, sample_generators([0, 1]), entropy=ent)  # warm-up
        t0, steps = time.perf_counter(), []
        for s in range(0, n, batch):
            _, tr = refine(model, y[s : s + batch], sampler, sample_generators(range(s, s + batch)), entropy=ent)
            steps += tr.steps_used
        results[mode] = {"seconds_per_image": (time.perf_counter() - t0) / n, "mean_steps": sum(steps) / len(steps)}
    time_ratio = results["entropy"]["seconds_per_image"] / results["fixed50"]["seconds_per_image"]
    step_ratio = results["entropy"]["mean_steps"] / 50
    write("entropy_vs_fixed50", {
        "model": name, "n": n, "batch": batch,
        "project": {"method": "entropy-guided (finished samples leave the batch)", **results["entropy"]},
        "anchor": {"method": "fixed 50 steps", **results["fixed50"]},
        "ratio": time_ratio, "unit": "time per image, entropy-guided / fixed 50",
        "target": "tracks mean steps / 50", "mean_steps_over_50": step_ratio,
        "entropy_schedule": entropy.__dict__,
    })


if __name__ == "__main__":
    run()

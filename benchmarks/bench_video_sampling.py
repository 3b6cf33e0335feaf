"""Entropy-guided video sampling against fixed 50 steps: the embedded text-to-video GRN_bit (GRN-bit-T2V-T,
grn/checkpoints/t2v_mnist.pt) at the official GRN-2B-t2v preset on its 5 x 8 x 8 space-time tokens, time per
video and mean steps, measured in the same run at the same batch (finished samples leave the batch). The
entropy schedule is calibrated on a separate batch of the same model (the official constants fit ImageNet GRN-B
only), as suites/t2v_mnist.yaml does. Decoding is left out: it costs the same for both. The target is time per
video <= 1.05 x (mean steps / 50) x the fixed-50 time (on a CPU a call's time follows its batch)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import write

CHECKPOINT = Path(__file__).resolve().parents[1] / "grn" / "checkpoints" / "t2v_mnist.pt"


def run(n: int = 20, batch: int = 20, repeats: int = 2) -> None:
    from grn.checkpoint import load_model
    from grn.registry import KINDS
    from grn.sampling import calibrate_entropy_schedule, decision_entropies, sample_generators
    from grn.video_captions import video_prompts

    torch.set_grad_enabled(False)
    model = load_model(CHECKPOINT)
    kind = KINDS[model.kind]
    sampler = kind.sampler_for(model, kind.presets["GRN-2B-t2v"], {})  # on the trained 5 x 8 x 8 grid
    prompts = video_prompts()
    ids = model.tokenize(prompts)
    y = ids[torch.arange(n) % len(prompts)]
    cal = decision_entropies(model, y, sampler,
                             sample_generators(range(10**6, 10**6 + n)), warmup=5, t_max=50, sample=kind.sample)
    entropy = calibrate_entropy_schedule(cal, 20, 50, 5)
    times, steps = {"fixed50": [], "entropy": []}, {}
    for _ in range(repeats):  # interleaved, the median of each: this machine's load drifts
        for mode, ent in (("fixed50", None), ("entropy", entropy)):
            kind.sample(model, y[:2], sampler, sample_generators([0, 1]), entropy=ent)  # warm-up
            t0, used = time.perf_counter(), []
            for s in range(0, n, batch):
                _, trace = kind.sample(model, y[s : s + batch], sampler, sample_generators(range(s, s + batch)),
                                       entropy=ent)
                used += trace.steps_used
            times[mode].append((time.perf_counter() - t0) / n)
            steps[mode] = sum(used) / len(used)
    fixed, guided = statistics.median(times["fixed50"]), statistics.median(times["entropy"])
    ratio_steps = steps["entropy"] / 50
    write("video_entropy_vs_fixed50", {
        "model": CHECKPOINT.name, "n": n, "batch": batch, "grid": list(sampler.grid),
        "project": {"method": f"entropy-guided ({entropy.t_min}-{entropy.t_max} steps, calibrated), batches of "
                              f"{batch}, finished samples leave", "seconds_per_video": guided,
                    "mean_steps": steps["entropy"]},
        "anchor": {"method": f"fixed 50 steps, batches of {batch}", "seconds_per_video": fixed, "mean_steps": 50},
        "ratio": guided / fixed, "unit": "time per video, entropy-guided / fixed 50",
        "mean_steps_over_50": ratio_steps, "target": "<= 1.05 x mean steps / 50", "target_bound": 1.05 * ratio_steps,
    })

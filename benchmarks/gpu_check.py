"""One prepared script (at most a few minutes) that exercises every CUDA path and records timings.

`nox -s gpu_check` on a machine with a GPU: bf16 training steps of GRN-B, global-refinement and
entropy-guided sampling, Inception features, the Fréchet distance on the GPU. Writes
results/bench/gpu_check.json. Without CUDA it says so and exits 2.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from benchmarks.common import write


def _timed(fn, repeats=3):
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def run() -> int:
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; run it where a GPU is available")
        return 2
    from grn.generator import build_generator
    from grn.sampling import PRESETS, EntropyConfig, refine, sample_generators
    from grn_eval.features import InceptionFeatures
    from grn_eval.metrics.fid import frechet_distance, frechet_distance_torch, gaussian_stats

    dev = torch.device("cuda")
    record = {"device_name": torch.cuda.get_device_name(0), "torch": torch.__version__}

    # bf16 training steps of GRN-B on ImageNet-shaped tokens
    model = build_generator("GRN-B").to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    tokens = torch.randint(0, 16, (64, 16, 16, 16), device=dev)
    y = torch.randint(0, 1000, (64,), device=dev)

    def train_step():
        with torch.autocast("cuda", torch.bfloat16):
            loss = model.loss(tokens, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        return loss.item()

    train_step()
    t, loss = _timed(train_step, 5)
    record["grn_b_train_step_bf16_batch64_s"] = t
    record["grn_b_train_loss_finite"] = bool(np.isfinite(loss))

    # sampling: the released preset (50 steps, CFG) and entropy-guided
    model.eval()
    yb = torch.arange(32, device=dev)
    with torch.autocast("cuda", torch.bfloat16):
        t, (_, tr) = _timed(lambda: refine(model, yb, PRESETS["GRN-B-imagenet"],
                                           sample_generators(range(32), device="cuda")), 1)
        record["grn_b_refine_50steps_cfg_batch32_s"] = t
        t, (_, tr2) = _timed(lambda: refine(model, yb, PRESETS["GRN-B-imagenet"],
                                            sample_generators(range(32), device="cuda"), entropy=EntropyConfig()), 1)
        # continuous batching: 128 samples through 32 slots against four batches of 32 whose samples leave
        from dataclasses import replace

        y128 = torch.arange(128, device=dev)
        t_cont, _ = _timed(lambda: refine(model, y128, replace(PRESETS["GRN-B-imagenet"], slots=32),
                                          sample_generators(range(128), device="cuda"), entropy=EntropyConfig()), 1)
    record["grn_b_entropy_guided_batch32_s"] = t
    record["entropy_guided_mean_steps_untrained"] = float(np.mean(tr2.steps_used))
    record["grn_b_entropy_continuous_128_in_32_slots_s"] = t_cont
    record["continuous_over_4x_shrinking"] = t_cont / (4 * t)

    # Inception features
    ex = InceptionFeatures(device=dev, batch_size=64)
    images = np.random.default_rng(0).integers(0, 256, (256, 256, 256, 3), dtype=np.uint8)
    ex(images[:64])
    t, feats = _timed(lambda: ex(images)["pool"], 1)
    record["inception_images_per_s"] = len(images) / t
    cpu = InceptionFeatures(device="cpu", batch_size=8)(images[:16])["pool"]
    record["inception_gpu_vs_cpu_max_abs_diff"] = float(np.abs(cpu - feats[:16]).max())

    # Fréchet distance at d=2048 on the GPU vs numpy
    a, b = gaussian_stats(feats), gaussian_stats(feats[::-1] * 1.01)
    t, v_gpu = _timed(lambda: frechet_distance_torch(*a, *b, device=dev))
    t_cpu = time.perf_counter()
    v_cpu = frechet_distance(*a, *b)
    record["frechet_gpu_s"] = t
    record["frechet_cpu_s"] = time.perf_counter() - t_cpu
    record["frechet_gpu_cpu_rel_diff"] = abs(v_gpu - v_cpu) / max(abs(v_cpu), 1e-12)
    write("gpu_check", {"project": record, "anchor": {"frechet_cpu_s": record["frechet_cpu_s"]},
                        "ratio": record["frechet_cpu_s"] / record["frechet_gpu_s"],
                        "unit": "Fréchet distance speed-up GPU / CPU", "target": "every CUDA path runs"})
    return 0


if __name__ == "__main__":
    sys.exit(run())

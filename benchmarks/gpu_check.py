"""One prepared script (under 8 minutes on one H200) that exercises every CUDA path and records timings.

`nox -s gpu_check` on a machine with a GPU: bf16 training steps of GRN-B; global-refinement and
entropy-guided sampling (and continuous batching); GRN-B sampling images/s and its FLOP/s as a fraction of
the bf16 roofline, the roofline being a bare bf16 matrix product measured in the same run (the vendor's
nominal figure beside it where the device is known); decoding with the ImageNet tokenizer's architecture;
Inception features; the Fréchet distance and FID bootstrap replicates at N = 50 000 on the GPU; and from
those rates a projected wall time for suites/imagenet_gen.yaml (2 models x 50 000 samples). Weights are
random: these are costs, never quality. Writes results/bench/gpu_check.json. Without CUDA it says so and
exits 2. `--dry-run` runs every path on the CPU at toy sizes and writes nothing (tests/test_bench.py), so
that the device time is never spent finding a typo.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from benchmarks.common import write

# nominal dense bf16 tensor FLOP/s, for context only (the fraction that counts is against the measured matmul)
NOMINAL_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


@dataclass(frozen=True)
class Sizes:
    model: str = "GRN-B"
    train_batch: int = 64
    batch: int = 32  # the sampling comparisons
    serving_batch: int = 256  # images/s and the roofline fraction
    decode_batch: int = 64
    inception_images: int = 256
    bootstrap_n: int = 50_000
    roofline_n: int = 8192
    steps: int | None = None  # None: the released preset's 50


DRY = Sizes(model="GRN-T", train_batch=2, batch=2, serving_batch=2, decode_batch=1, inception_images=4,
            bootstrap_n=2100, roofline_n=256, steps=2)


def _sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, dev, repeats=3):
    _sync(dev)
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def _matmul_roofline(dev, n: int) -> float:
    """bf16 FLOP/s of a bare n x n x n matrix product on this device (median of 5)."""
    a, b = torch.randn(n, n, device=dev, dtype=torch.bfloat16), torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    a @ b
    t, _ = _timed(lambda: a @ b, dev, 5)
    return 2 * n**3 / t


def measure(dev: torch.device, z: Sizes) -> dict:
    from grn.flops import step_flops
    from grn.generator import build_generator
    from grn.sampling import PRESETS, EntropyConfig, refine, sample_generators
    from grn.tokenizer import build_tokenizer
    from grn_eval import intervals
    from grn_eval.features import InceptionFeatures
    from grn_eval.metrics.fid import frechet_distance, frechet_distance_torch, frechet_weighted, gaussian_stats

    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    record = {"device_name": name, "torch": torch.__version__, "model": z.model}
    # bf16 on the GPU; float32 on the CPU of a dry run (bf16 convolutions there are emulated, minutes each)
    def autocast():
        return torch.autocast("cuda", torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()

    # bf16 training steps on ImageNet-shaped tokens
    model = build_generator(z.model).to(dev)
    cfg, mcfg = model.net.cfg, model.cfg
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    tokens = torch.randint(0, mcfg.token_classes, (z.train_batch, *mcfg.token_shape), device=dev)
    y = torch.randint(0, cfg.num_classes, (z.train_batch,), device=dev)

    def train_step():
        with autocast():
            loss = model.loss(tokens, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        return loss.item()

    train_step()
    t, loss = _timed(train_step, dev, 5)
    record["train_step_bf16_s"], record["train_batch"] = t, z.train_batch
    record["train_loss_finite"] = bool(np.isfinite(loss))

    # sampling: the released preset (50 steps, CFG), entropy-guided, continuous batching
    model.eval()
    preset = PRESETS["GRN-B-imagenet"] if z.steps is None else replace(PRESETS["GRN-B-imagenet"], steps=z.steps)
    entropy = EntropyConfig() if z.steps is None else EntropyConfig(warmup=1, t_min=1, t_max=z.steps)
    b = z.batch
    yb = torch.arange(b, device=dev) % cfg.num_classes
    with torch.no_grad(), autocast():
        t_fixed, _ = _timed(lambda: refine(model, yb, preset, sample_generators(range(b), device=dev)), dev, 1)
        t_ent, (_, tr_ent) = _timed(lambda: refine(model, yb, preset, sample_generators(range(b), device=dev),
                                                   entropy=entropy), dev, 1)
        y4 = torch.arange(4 * b, device=dev) % cfg.num_classes  # 4b samples through b slots vs 4 shrinking batches
        t_cont, _ = _timed(lambda: refine(model, y4, replace(preset, slots=b), sample_generators(range(4 * b),
                                                                                                 device=dev),
                                          entropy=entropy), dev, 1)
    record.update({"refine_fixed_batch_s": t_fixed, "refine_entropy_batch_s": t_ent, "sampling_batch": b,
                   "entropy_guided_mean_steps_untrained": float(np.mean(tr_ent.steps_used)),
                   "entropy_continuous_4x_in_slots_s": t_cont, "continuous_over_4x_shrinking": t_cont / (4 * t_ent)})

    # throughput at a serving batch, and its FLOP/s against the bf16 roofline
    sb = z.serving_batch
    ys = torch.arange(sb, device=dev) % cfg.num_classes
    with torch.no_grad(), autocast():
        refine(model, ys[:2], replace(preset, steps=2), sample_generators(range(2), device=dev))  # warm-up
        t_big, (_, tr) = _timed(lambda: refine(model, ys, preset, sample_generators(range(sb), device=dev)), dev, 1)
    nfe = sum(n * a for n, a in zip(tr.nfe, tr.active)) / sb  # network evaluations per image (CFG counted)
    achieved = step_flops(cfg, guided=False) * nfe * sb / t_big
    roof = _matmul_roofline(dev, z.roofline_n)
    nominal = next((v for k, v in NOMINAL_BF16.items() if k in name), None)
    record.update({"serving_batch": sb, "sampling_images_per_s": sb / t_big, "sampling_nfe_per_image": nfe,
                   "sampling_tflops_per_s": achieved / 1e12, "bf16_matmul_roofline_tflops_per_s": roof / 1e12,
                   "fraction_of_measured_roofline": achieved / roof,
                   "fraction_of_nominal_bf16": None if nominal is None else achieved / nominal})

    # decoding 16 x 16 x 16 latents to 256 x 256 pixels with the ImageNet tokenizer's architecture
    tok = build_tokenizer("hbq-f16-d16").to(dev).eval()
    latents = torch.rand(z.decode_batch, 16, 16, 16, device=dev) * 2 - 1
    with torch.no_grad(), autocast():
        tok.decode_latent(latents[:1])
        t_dec, _ = _timed(lambda: tok.decode_latent(latents), dev, 3)
    record["decode_images_per_s"] = len(latents) / t_dec

    # Inception features, and their agreement with the CPU
    ex = InceptionFeatures(device=dev, batch_size=64)
    images = np.random.default_rng(0).integers(0, 256, (z.inception_images, 256, 256, 3), dtype=np.uint8)
    ex(images[:2])
    t, feats = _timed(lambda: ex(images)["pool"], dev, 1)
    record["inception_images_per_s"] = len(images) / t
    cpu = InceptionFeatures(device="cpu", batch_size=8)(images[:4])["pool"]
    record["inception_device_vs_cpu_max_abs_diff"] = float(np.abs(cpu - feats[:4]).max())

    # the Fréchet distance at d = 2048 on the device vs numpy (statistics of shifted random features: full rank)
    rng = np.random.default_rng(1)
    big = np.abs(rng.standard_normal((z.bootstrap_n, 2048))) * 0.3
    s1, s2 = gaussian_stats(big[: len(big) // 2]), gaussian_stats(big[len(big) // 2 :] * 1.01 + 0.01)
    t, v_dev = _timed(lambda: frechet_distance_torch(*s1, *s2, device=dev), dev)
    t0 = time.perf_counter()
    v_cpu = frechet_distance(*s1, *s2)
    record.update({"frechet_device_s": t, "frechet_cpu_s": time.perf_counter() - t0,
                   "frechet_device_cpu_rel_diff": abs(v_dev - v_cpu) / max(abs(v_cpu), 1e-12)})

    # FID bootstrap replicates at N = 50 000 against file statistics (the feature-space form)
    w = intervals.counts(len(big), 2, 0, "gpu_check")
    t_rep, reps = _timed(lambda: frechet_weighted(big, None, w, mu2=s2[0], sigma2=s2[1], device=dev), dev, 1)
    record["fid_bootstrap_replicate_s"], record["fid_bootstrap_n"] = t_rep / len(w), len(big)
    record["fid_bootstrap_finite"] = bool(np.isfinite(reps).all())

    # projected wall time of suites/imagenet_gen.yaml: 2 models x 50 000 samples (the entropy-guided model
    # counted at the full 50 steps: an upper bound), features of every sample, FID and sFID with 200 replicates
    n, models = 50_000, 2
    stages = {"sampling": models * n / record["sampling_images_per_s"],
              "decoding": models * n / record["decode_images_per_s"],
              "features": models * n / record["inception_images_per_s"],
              "bootstrap": models * 2 * 200 * record["fid_bootstrap_replicate_s"]}
    record["imagenet_gen_projection_s"] = {**stages, "total": sum(stages.values())}
    return record


def run(argv: list[str] | None = None) -> int:
    dry = "--dry-run" in (argv or [])
    if not dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine; run it where a GPU is available")
        return 2
    record = measure(torch.device("cpu" if dry else "cuda"), DRY if dry else Sizes())
    if dry:
        print({k: v for k, v in record.items() if not isinstance(v, dict)})
        return 0
    write("gpu_check", {"project": record, "anchor": {"frechet_cpu_s": record["frechet_cpu_s"]},
                        "ratio": record["frechet_cpu_s"] / record["frechet_device_s"],
                        "unit": "Fréchet distance speed-up GPU / CPU", "target": "every CUDA path runs"})
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

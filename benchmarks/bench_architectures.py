"""Architecture timing: what the published ImageNet 256 generators cost per image on this machine.

Weights are random (the cost of a forward pass does not depend on what the weights learned), so these rows
carry no quality number: they are latency only, at each model's published size, steps and guidance, next to
the FID its paper reports (results/literature/imagenet256_generation.csv). The architectures:

  GRN-B        this project's GRN at the official GRN-B size; the released preset (50 steps, CFG 2.35 for t in
               (0.44, 1)); its NFE is read from the sampler's own trace on a small model with the same preset
  DiT-XL/2     diffusers' DiTTransformer2DModel at the published XL/2 config, 250 steps with CFG 1.5 (one batched
               call per step); plus the SD-VAE decoder (diffusers' AutoencoderKL at its f8 config) once per image
  LlamaGen-L   this project's AR backbone at LlamaGen-L's size (24 layers, width 1024, 16 heads; 16 x 16 tokens of a
               16384-entry codebook), 256 raster steps with a KV cache, CFG 2.0: the whole sampler, timed
  MaskGIT      this project's masked-token backbone at MaskGIT's size (24 layers, width 768, 16 heads; 16 x 16
               tokens of 1024 codes), 8 steps, no guidance: the whole sampler, timed

The token models use this project's backbone (its bottleneck input embedding differs from theirs; the cost is
in the transformer layers). GRN-B and DiT-XL/2 are too slow on a 2-core CPU to run every step, so one step is
timed (median of a few, after a warm-up) and multiplied by the published number of steps; the row says which.
Decoders of the token models (VQGAN) are not timed; the GRN row does not include its tokenizer's decoder either.
Anchor: GRN-B's seconds per image in the same run (ratio = architecture / GRN-B).
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks.common import OUT_DIR, write
from grn.fileio import atomic_write

LITERATURE = OUT_DIR.parent / "literature" / "imagenet256_generation.csv"
BATCH = 1  # images per batch: the tiny batch a 2-core CPU affords; CFG doubles the network's batch
REPEATS = 3


def _seconds(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _params(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def grn_b() -> dict:
    from grn.generator import build_generator
    from grn.sampling import PRESETS, SamplerConfig, refine, sample_generators

    preset = PRESETS["GRN-B-imagenet"]
    small = build_generator("GRN-T").eval()  # the preset's guided steps, from the sampler's own trace
    _, trace = refine(small, torch.zeros(1, dtype=torch.long), preset, sample_generators([0]))
    guided = sum(1 for n in trace.nfe if n == 2)
    model = build_generator("GRN-B").eval()
    y = torch.zeros(BATCH, dtype=torch.long)

    def step(guidance):
        cfg = SamplerConfig(steps=1, guidance=guidance, guidance_interval=(0.0, 1.0), temperature=preset.temperature)
        return lambda: refine(model, y, cfg, sample_generators(range(BATCH)))

    t_plain, t_guided = _seconds(step(1.0)), _seconds(step(preset.guidance))
    seconds = (t_plain * (preset.steps - guided) + t_guided * guided) / BATCH
    return {"architecture": "GRN-B", "literature": "GRN-B (GRN_ind)", "params_m": _params(model), "steps":
            preset.steps, "nfe_per_image": preset.steps + guided, "seconds_per_image": seconds,
            "timed": f"one refinement step unguided ({t_plain:.2f} s) and guided ({t_guided:.2f} s), times the "
                     f"preset's {preset.steps - guided} unguided and {guided} guided steps",
            "source": "this project's GRN at the official GRN-B size (grn/generator.py); preset GRN-B-imagenet"}


def dit_xl_2() -> dict:
    from diffusers import AutoencoderKL, DiTTransformer2DModel

    # DiT-XL/2 (Peebles & Xie 2023, Table 1): 28 layers, width 1152 (16 heads of 72), patch 2, on the 32 x 32 x 4
    # SD-VAE latent of a 256 x 256 image; learned sigma (8 output channels); 1000 classes + the null class
    net = DiTTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8,
                                num_layers=28, sample_size=32, patch_size=2, num_embeds_ada_norm=1000).eval()
    # the SD-VAE (f8, 4 channels): 128-256-512-512, two residual blocks per level
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4).eval()
    x = torch.randn(2 * BATCH, 4, 32, 32)  # CFG: conditional and null class in one call
    t = torch.full((2 * BATCH,), 500)
    y = torch.tensor([0] * BATCH + [1000] * BATCH)
    with torch.no_grad():
        t_call = _seconds(lambda: net(x, timestep=t, class_labels=y))
        t_decode = _seconds(lambda: vae.decode(torch.randn(BATCH, 4, 32, 32)), repeats=1)
    steps = 250
    return {"architecture": "DiT-XL/2", "literature": "DiT-XL/2", "params_m": _params(net), "steps": steps,
            "nfe_per_image": 2 * steps, "seconds_per_image": (steps * t_call + t_decode) / BATCH,
            "timed": f"one guided denoiser call ({t_call:.2f} s at batch {2 * BATCH}) times {steps} steps, plus the "
                     f"SD-VAE decoder ({t_decode:.2f} s)",
            "source": "diffusers DiTTransformer2DModel at the published XL/2 config; AutoencoderKL at the SD-VAE "
                      "config"}


def llamagen_l() -> dict:
    from grn.baselines.ar import ARSamplerConfig, build_ar, sample_ar
    from grn.sampling import sample_generators

    # LlamaGen-L (Sun et al. 2024): 24 layers, width 1024, 16 heads; 16 x 16 tokens, codebook 16384 = 2^14
    model = build_ar(hidden=1024, depth=24, heads=16, bottleneck=128, grid=16, latent_channels=1, rounds=14,
                     num_classes=1000, in_context_len=1).eval()
    y = torch.zeros(BATCH, dtype=torch.long)
    sampler = ARSamplerConfig(guidance=2.0)
    seconds = _seconds(lambda: sample_ar(model, y, sampler, sample_generators(range(BATCH))), repeats=1)
    return {"architecture": "LlamaGen-L", "literature": "LlamaGen-L", "params_m": _params(model), "steps": 256,
            "nfe_per_image": 512, "seconds_per_image": seconds / BATCH,
            "timed": "the whole sampler: 256 raster positions with the KV cache, CFG 2.0",
            "source": "this project's AR baseline (grn/baselines/ar.py) at LlamaGen-L's size"}


def maskgit() -> dict:
    from grn.baselines.maskgit import MaskGITSamplerConfig, build_maskgit, sample_maskgit
    from grn.sampling import sample_generators

    # MaskGIT (Chang et al. 2022): 24 layers, width 768, 16 heads; 16 x 16 tokens of a 1024-entry codebook; T = 8
    model = build_maskgit(hidden=768, depth=24, heads=16, bottleneck=128, grid=16, latent_channels=1, rounds=10,
                          num_classes=1000, in_context_len=1).eval()
    y = torch.zeros(BATCH, dtype=torch.long)
    sampler = MaskGITSamplerConfig(steps=8)
    seconds = _seconds(lambda: sample_maskgit(model, y, sampler, sample_generators(range(BATCH))), repeats=1)
    return {"architecture": "MaskGIT", "literature": "MaskGIT", "params_m": _params(model), "steps": 8,
            "nfe_per_image": 8, "seconds_per_image": seconds / BATCH,
            "timed": "the whole sampler: 8 steps, no guidance",
            "source": "this project's masked-token baseline (grn/baselines/maskgit.py) at MaskGIT's size"}


def _markdown(rows: list[dict]) -> str:
    import pandas as pd

    lit = pd.read_csv(LITERATURE).set_index("model")
    lines = ["**ImageNet 256 generators: architecture timing on this machine (random weights, batch 1, CPU; latency "
             "only) beside the FID their papers report**", "",
             "| architecture | params (M) | steps | NFE / image | s / image (measured here) | vs GRN-B | "
             "FID (reported) | how it was timed |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        fid = lit["fid"].get(r["literature"]) if r["literature"] in lit.index else None
        lines.append(f"| {r['architecture']} | {r['params_m']:.0f} | {r['steps']} | {r['nfe_per_image']} | "
                     f"{r['seconds_per_image']:.1f} | {r['ratio_vs_grn_b']:.2f}x | "
                     f"{'' if fid is None else f'{fid:.2f}'} | {r['timed']} |")
    return "\n".join(lines) + "\n"


def run() -> None:
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    rows = [f() for f in (grn_b, dit_xl_2, llamagen_l, maskgit)]
    anchor = rows[0]["seconds_per_image"]
    for r in rows:
        r["ratio_vs_grn_b"] = r["seconds_per_image"] / anchor
    write("architectures", {
        "project": {"method": "published ImageNet 256 architectures with random weights, latency only", "rows": rows,
                    "batch": BATCH, "threads": torch.get_num_threads()},
        "anchor": {"method": "GRN-B (official size, random weights, released preset) in the same run",
                   "seconds_per_image": anchor},
        "ratio": {r["architecture"]: r["ratio_vs_grn_b"] for r in rows},
        "unit": "seconds per image / GRN-B's seconds per image", "target": "a number per architecture",
        "device": "cpu"})
    atomic_write(OUT_DIR / "architectures.md", _markdown(rows))


if __name__ == "__main__":
    run()

"""How close sampling is to the limit: the FLOP/s a GRN refinement step achieves (FLOPs from the config,
grn/flops.py) as a fraction of a bare loop of the same matrix products on the same device, per model size.

The anchor runs exactly the products of `grn.flops.matmuls` (same shapes, same float32) with nothing
between them, so the fraction is what the rest of a step costs: norms, RoPE, softmax, the per-sample
sampling draws and keep masks. Weights are random for the sizes without a checkpoint here (the cost of a
step does not depend on what they learned); the embedded MNIST generator is the committed one.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from benchmarks.common import best_of, write
from grn.flops import backbone_flops, matmuls, step_flops
from grn.generator import build_generator
from grn.sampling import SamplerConfig, refine, sample_generators

CHECKPOINT = Path(__file__).resolve().parents[1] / "grn" / "checkpoints" / "generator_mnist.pt"


def _bare_seconds(cfg, batch: int, evaluations: int, device) -> float:
    """Wall time of the step's matrix products alone, `evaluations` times."""
    ops = []
    for mm in matmuls(cfg):
        if mm.count == 1:  # a linear layer: all tokens of the batch against one weight
            ops.append((torch.randn(batch * mm.m, mm.k, device=device), torch.randn(mm.k, mm.n, device=device)))
        else:  # attention: one product per sample and head
            ops.append((torch.randn(batch * mm.count, mm.m, mm.k, device=device),
                        torch.randn(batch * mm.count, mm.k, mm.n, device=device)))

    def loop():
        for _ in range(evaluations):
            for a, b in ops:
                torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
    loop()  # warm-up
    return best_of(loop)[0]


def _models():
    if CHECKPOINT.exists():
        from grn.checkpoint import load_model

        yield "generator_mnist.pt (GRN-T size)", load_model(CHECKPOINT)
    torch.manual_seed(0)
    yield "GRN-S (random weights)", build_generator("GRN-S").eval()
    yield "GRN-B (random weights, 16 x 16 tokens)", build_generator("GRN-B").eval()


def run(batch: int = 4, steps: int = 4, device: str = "cpu") -> None:
    torch.set_grad_enabled(False)
    dev = torch.device(device)
    rows = []
    for name, model in _models():
        model = model.to(dev)
        cfg = model.net.cfg
        sampler = SamplerConfig(steps=steps, guidance=2.0)  # guided at every step: 2 evaluations per step
        y = torch.arange(batch) % cfg.num_classes
        refine(model, y, SamplerConfig(steps=1), sample_generators(range(batch), dev))  # warm-up
        t0 = time.perf_counter()
        refine(model, y, sampler, sample_generators(range(batch), dev))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        flops = step_flops(cfg, guided=True) * batch * steps
        bare = _bare_seconds(cfg, batch, 2 * steps, dev)
        rows.append({"model": name, "batch": batch, "steps": steps, "gflop_per_step_per_sample":
                     step_flops(cfg, guided=True) / 1e9, "parts_gflop": {k: v / 1e9 for k, v in
                                                                        backbone_flops(cfg).items()},
                     "sampling_gflops_per_s": flops / seconds / 1e9, "bare_matmul_gflops_per_s": flops / bare / 1e9,
                     "fraction_of_bare": bare / seconds})
    write("sampler_flops", {
        "project": {"method": "GRN refinement steps (guided), FLOP/s from grn.flops", "rows": rows},
        "anchor": {"method": "the same matrix products in a bare loop, same device and dtype"},
        "ratio": min(r["fraction_of_bare"] for r in rows),
        "unit": "achieved FLOP/s / bare-matmul FLOP/s (the smallest over the sizes)",
        "target": "a number per model size (how close to the limit)", "device": str(dev),
    })


if __name__ == "__main__":
    run()

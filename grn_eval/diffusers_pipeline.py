"""The `diffusers` adapter: a `DiffusionPipeline` saved in a local folder, sampled like every other model.

    adapter: diffusers
    path: ${DIT_XL_2}            # a folder written by save_pretrained (model_index.json and the weights)
    scheduler: DDPMScheduler     # optional: a diffusers scheduler class, built from the pipeline's scheduler config
    steps: 250                   # num_inference_steps
    guidance: 1.5                # guidance_scale
    prompts: [...]               # text-to-image pipelines: label i is prompts[i]

Class-conditional pipelines (those whose __call__ takes `class_labels`, as DiTPipeline) get the labels;
text-to-image ones (`prompt`) the prompts. Every sample's initial noise comes from its own torch.Generator
seeded with the runner's per-sample seed. A stochastic scheduler (DDPM) draws its step noise from torch's
global generator (DiTPipeline passes no generator to `scheduler.step`); that is seeded with the batch's
first seed inside a forked RNG state, so a run is reproducible at a given batch size, and with a
deterministic scheduler (DDIM, DPM-Solver) a sample does not depend on its batch at all. Weights load
from the folder only (`local_files_only`); on CUDA in bfloat16, on the CPU in float32. The denoiser's forward calls are
counted with their batch (the trace's `nfe` and `active` per call, as the project's samplers write them:
CFG's doubled batch counts two evaluations per image), so latency rows say what a sample costs. A randomly
initialised pipeline (tests) only exercises this plumbing.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import numpy as np
import torch

from grn.errors import UserError
from grn_eval.model_check import resolve

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")


class DiffusersPipeline:
    task = "generation"
    from_seeds = True
    check_seeds = True  # code from outside the project: its first shard is sampled twice (runner)

    def __init__(self, entry, base: Path, device, checked=None):
        from grn.extras import need

        diffusers = need("diffusers", "diffusers", f"model '{entry.name}': adapter: diffusers")
        o = entry.options
        self.where, self.device = f"model '{entry.name}'", device
        self.root = resolve(o["path"], base)
        if not (self.root / "model_index.json").is_file():
            raise UserError(f"{self.where}: path: '{self.root}' has no model_index.json; give a folder written by "
                            f"DiffusionPipeline.save_pretrained (e.g. a local copy of facebook/DiT-XL-2-256)")
        self.dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        try:
            self.pipe = diffusers.DiffusionPipeline.from_pretrained(self.root, dtype=self.dtype,
                                                                    local_files_only=True)
        except Exception as e:  # a damaged or partial folder: one message, no traceback
            raise UserError(f"{self.where}: path: cannot load the pipeline in '{self.root}' "
                            f"({type(e).__name__}: {e})") from None
        if o.get("scheduler"):
            cls = getattr(diffusers, o["scheduler"], None)
            if cls is None or not hasattr(cls, "from_config"):
                raise UserError(f"{self.where}: scheduler: diffusers has no scheduler '{o['scheduler']}'")
            self.pipe.scheduler = cls.from_config(self.pipe.scheduler.config)
        self.pipe = self.pipe.to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.steps, self.guidance = int(o.get("steps") or 50), float(o.get("guidance", 1.0))
        params = inspect.signature(self.pipe.__call__).parameters
        self.conditioning = "class" if "class_labels" in params else "text" if "prompt" in params else None
        if self.conditioning is None:
            raise UserError(f"{self.where}: {type(self.pipe).__name__} takes neither class_labels nor a prompt")
        self.prompts = list(o.get("prompts") or [])
        if self.conditioning == "text" and not self.prompts:
            raise UserError(f"{self.where}: prompts: a text-to-image pipeline ({type(self.pipe).__name__}) needs "
                            f"the prompts to sample")
        self.has_prompts = False  # prompt accuracy needs the asked digit, which free prompts do not say
        self.num_classes = len(self.prompts) if self.conditioning == "text" else self._classes()
        self.denoiser = getattr(self.pipe, "transformer", None) or getattr(self.pipe, "unet", None)
        self._inputs: list[int] = []  # the batch of every denoiser call
        if self.denoiser is not None:
            self.denoiser.register_forward_pre_hook(self._count, with_kwargs=True)

    def _classes(self) -> int:
        cfg = self.pipe.transformer.config
        return int(getattr(cfg, "num_embeds_ada_norm", None) or getattr(cfg, "num_classes", None) or 1000)

    def _count(self, _module, args, kwargs):
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
        self._inputs.append(int(x.shape[0]) if isinstance(x, torch.Tensor) else 0)

    def prepare(self, n_calibration: int = 0) -> None:
        pass

    @torch.no_grad()
    def generate(self, labels: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, dict]:
        gen_device = self.device if self.device.type == "cuda" else "cpu"
        generators = [torch.Generator(gen_device).manual_seed(int(s)) for s in seeds]
        kwargs = {"num_inference_steps": self.steps, "guidance_scale": self.guidance, "generator": generators,
                  "output_type": "np"}
        if self.conditioning == "class":
            kwargs["class_labels"] = [int(c) for c in labels]
        else:
            kwargs["prompt"] = [self.prompts[int(i)] for i in labels]
        self._inputs = []
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the process's own RNG state is left as it was
            torch.manual_seed(int(seeds[0]))  # the step noise of a stochastic scheduler (see the docstring)
            images = self.pipe(**kwargs).images  # float in [0, 1], NHWC
        images = np.asarray(images, np.float32)
        if not np.isfinite(images).all():
            raise UserError(f"{self.where}: the pipeline returned non-finite pixels")
        out = np.clip(np.round(images * 255), 0, 255).astype(np.uint8)
        b = len(labels)  # per call: evaluations per image (2 when CFG doubles the batch) and the images
        return out, {"nfe": [n / b for n in self._inputs], "active": [b] * len(self._inputs), "steps": self.steps}

    def provenance(self) -> dict:
        files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        h = hashlib.sha256()
        for p in files:
            h.update(f"{p.relative_to(self.root)} {hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
        import diffusers

        return {"path": self.root.name, "pipeline": type(self.pipe).__name__, "files_sha256": h.hexdigest(),
                "scheduler": type(self.pipe.scheduler).__name__, "steps": self.steps, "guidance": self.guidance,
                "seeding": "initial noise: one generator per sample; scheduler step noise: the global generator "
                           "seeded with the batch's first sample seed",
                "dtype": str(self.dtype).replace("torch.", ""), "diffusers": diffusers.__version__,
                **({"prompts": self.prompts} if self.prompts else {})}

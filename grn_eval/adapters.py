"""The one place where the harness reaches model code: adapters from suite entries to models.

A generation adapter turns (labels, per-sample seeds) into uint8 NHWC images plus a sampler
trace; a reconstruction adapter turns uint8 NHWC images into their reconstructions. Any other
generator (samples in an ADM .npz, another repository's model) plugs in the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from grn_eval.suite import ModelEntry


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:  # in chunks: official checkpoints run to gigabytes
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.exists() else base / p


def _sampler_class(kind: str):
    from grn.baselines.ar import ARSamplerConfig
    from grn.baselines.flow import FlowSamplerConfig
    from grn.baselines.maskgit import MaskGITSamplerConfig
    from grn.sampling import SamplerConfig

    return {"grn": SamplerConfig, "grn-t2i": SamplerConfig, "ar": ARSamplerConfig, "maskgit": MaskGITSamplerConfig,
            "flow": FlowSamplerConfig}[kind]


class GeneratorAdapter:
    """A trained generator checkpoint (GRN or a baseline) + its tokenizer -> images and a trace."""

    kind = "generation"

    def __init__(self, entry: ModelEntry, base: Path, device: torch.device):
        from grn.convert import load_any_tokenizer as load_tokenizer  # also official files
        from grn.sampling import PRESETS, EntropyConfig

        o = entry.options
        if not o.get("checkpoint") or not o.get("tokenizer"):
            raise ValueError(f"model '{entry.name}': the {entry.adapter} adapter needs 'checkpoint' and 'tokenizer'")
        self.ckpt, self.tok_path = _resolve(o["checkpoint"], base), _resolve(o["tokenizer"], base)
        self.model = self._load(device)
        if self.model.kind != entry.adapter:
            raise ValueError(f"model '{entry.name}': checkpoint {self.ckpt.name} holds a '{self.model.kind}' model, "
                             f"the suite says adapter '{entry.adapter}'")
        self.tokenizer = load_tokenizer(self.tok_path, device)
        self.device = device
        s = dict(o.get("sampler") or {})
        cls = _sampler_class(self.model.kind)
        allowed = {f.name for f in fields(cls)} | ({"preset"} if self.model.kind in ("grn", "grn-t2i") else set())
        unknown = sorted(set(s) - allowed)
        if unknown:
            raise ValueError(f"model '{entry.name}': sampler settings {unknown} do not apply to a "
                             f"{self.model.kind} model; allowed: {sorted(allowed)}")
        base_cfg = PRESETS[s.pop("preset")] if "preset" in s else cls()
        if "cfg_interval" in s:
            s["cfg_interval"] = tuple(s["cfg_interval"])
        self.sampler = replace(base_cfg, **s)
        e = dict(o["entropy"]) if o.get("entropy") is not None else None
        self.calibrate = bool(e and e.pop("calibrate", False))
        self.entropy = EntropyConfig(**e) if e is not None else None
        self.num_classes = getattr(self.model.cfg, "num_classes", 1)  # a text-conditioned model: its prompts

    def _load(self, device):
        from grn.train import load_generator  # also official files (grn.registry.load_model)

        return load_generator(self.ckpt, device)

    def conditions(self, labels) -> torch.Tensor:
        """What the sampler conditions on for these labels (class indices here)."""
        return torch.as_tensor(labels, dtype=torch.long, device=self.device)

    def decode(self, tokens: torch.Tensor) -> np.ndarray:
        return self.tokenizer.decode_tokens(tokens, getattr(self.model.cfg, "layout", "ind"))

    def prepare(self, n_calibration: int = 100) -> None:
        """Fit the entropy schedule to this model when asked (official constants fit ImageNet GRN-B only)."""
        if not self.calibrate:
            return
        from grn.sampling import calibrate_entropy_schedule, decision_entropies, sample_generators

        y = self.conditions(np.arange(n_calibration) % self.num_classes)
        e = decision_entropies(self.model, y, self.sampler, sample_generators(range(10**9, 10**9 + n_calibration)),
                               warmup=self.entropy.warmup, t_max=self.entropy.t_max)
        self.entropy = calibrate_entropy_schedule(e, self.entropy.t_min, self.entropy.t_max, self.entropy.warmup)
        self.calibrate = False

    @torch.no_grad()
    def generate(self, labels: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, dict]:
        from grn.sampling import refine, sample_generators

        y = self.conditions(labels)
        gens = sample_generators(seeds)
        if self.model.kind == "grn":
            tokens, trace = refine(self.model, y, self.sampler, gens, entropy=self.entropy)
            return self.decode(tokens), trace.as_dict()
        out, trace = self.model.sample(y, self.sampler, gens)
        if self.model.kind == "flow":
            return self.tokenizer.decode_latent(out), trace
        return self.tokenizer.decode_tokens(out), trace

    def provenance(self) -> dict:
        sampler = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.sampler.__dict__.items()}
        return {"kind": self.model.kind, "checkpoint": self.ckpt.name, "checkpoint_sha256": _sha256(self.ckpt),
                "tokenizer": self.tok_path.name, "tokenizer_sha256": _sha256(self.tok_path), "sampler": sampler,
                "entropy": None if self.entropy is None else self.entropy.__dict__,
                "parameters": sum(p.numel() for p in self.model.parameters())}


class T2IAdapter(GeneratorAdapter):
    """A text-conditioned GRN: sample i uses prompt `prompts[i % len(prompts)]` (default: the MNIST
    digit prompts of grn/captions.py), with CFG against the empty prompt or `negative_prompt`."""

    def __init__(self, entry: ModelEntry, base: Path, device: torch.device):
        from grn.captions import asked_digit, digit_prompts

        self.clip_weights = None
        super().__init__(entry, base, device)
        o = entry.options
        self.prompts = list(o.get("prompts") or digit_prompts())
        self.negative = o.get("negative_prompt")
        for p in self.prompts + ([self.negative] if self.negative else []):
            unknown = self.model.text.unknown_words(p)
            if unknown:
                raise ValueError(f"model '{entry.name}': prompt {p!r} has words outside the text encoder's vocabulary "
                                 f"{unknown}; allowed words: {' '.join(self.model.text.cfg.vocab)}")
        self.num_classes = len(self.prompts)
        self.ids = self.model.tokenize(self.prompts).to(device)
        self.asked = [asked_digit(p) for p in self.prompts]

    def _load(self, device):
        from grn.registry import load_model

        ck = torch.load(self.ckpt, map_location="cpu", weights_only=False)
        text = ck.get("config", {}).get("text", {}) if isinstance(ck, dict) else {}
        if text.get("kind") != "open_clip":
            return load_model(self.ckpt, device)
        # a frozen open_clip tower: its real weights through the harness's finder (hub cache, hash check);
        # without them this raises WeightsAbsent naming the file to provide
        from grn_eval import weights as W

        self.clip_weights = W.find_clip_weights(text["clip_model"], text["clip_tag"])[0]
        return load_model(self.ckpt, device, clip_weights=self.clip_weights)

    def conditions(self, labels) -> torch.Tensor:
        return self.ids[torch.as_tensor(labels, dtype=torch.long, device=self.device)]

    def prompt_texts(self, labels) -> list[str]:
        return [self.prompts[int(i)] for i in labels]

    def asked_digits(self, labels) -> np.ndarray:
        """The digit each sample's prompt asks for (-1: none)."""
        return np.array([-1 if self.asked[int(i)] is None else self.asked[int(i)] for i in labels], dtype=np.int64)

    @torch.no_grad()
    def generate(self, labels: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, dict]:
        from grn.sampling import refine, sample_generators

        y = self.conditions(labels)
        uncond = None if not self.negative else self.model.tokenize([self.negative]).to(self.device).expand_as(y)
        tokens, trace = refine(self.model, y, self.sampler, sample_generators(seeds), entropy=self.entropy,
                               uncond=uncond)
        return self.decode(tokens), trace.as_dict()

    def provenance(self) -> dict:
        text = self.model.cfg.text
        return {**super().provenance(), "prompts": self.prompts, "negative_prompt": self.negative,
                "text_encoder": {"kind": text.kind, **({"model": text.clip_model, "tag": text.clip_tag,
                                                         "weights": Path(self.clip_weights).name}
                                                        if text.kind == "open_clip" else
                                                        {"vocabulary": len(text.vocab), "max_len": text.max_len})}}


class NpzAdapter:
    """Pre-generated samples in an ADM batch (arr_0 images, optional arr_1 labels), used in file order."""

    kind = "generation"

    def __init__(self, entry: ModelEntry, base: Path, device):
        from grn.data import load_npz

        self.path = _resolve(entry.options["path"], base)
        self.data = load_npz(self.path)
        self.num_classes = self.data.num_classes or 1
        self._next = 0

    def prepare(self, n_calibration: int = 0) -> None:
        pass

    def generate_range(self, start: int, stop: int) -> tuple[np.ndarray, dict]:
        if stop > len(self.data):
            raise ValueError(f"{self.path} holds {len(self.data)} samples, the suite asks for {stop}")
        return self.data.batch(start, stop)[0], {}

    def provenance(self) -> dict:
        return {"path": self.path.name, "sha256": _sha256(self.path), "n": len(self.data)}


class TokenizerAdapter:
    kind = "reconstruction"

    def __init__(self, entry: ModelEntry, base: Path, device):
        from grn.convert import load_any_tokenizer as load_tokenizer  # also official files

        self.ckpt = _resolve(entry.options["checkpoint"], base)
        self.model = load_tokenizer(self.ckpt, device)

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return self.model.reconstruct(images)

    def provenance(self) -> dict:
        return {"checkpoint": self.ckpt.name, "checkpoint_sha256": _sha256(self.ckpt),
                "rounds": self.model.cfg.rounds, "latent_channels": self.model.cfg.latent_channels,
                "stride": self.model.cfg.stride}


class IdentityAdapter:
    """Reconstruction = the input. For harness tests only (never a reported model)."""

    kind = "reconstruction"

    def __init__(self, entry, base, device):
        pass

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return np.array(images, copy=True)

    def provenance(self) -> dict:
        return {"note": "identity reconstruction (test adapter)"}


ADAPTERS = {"grn": GeneratorAdapter, "grn-t2i": T2IAdapter,
            "ar": GeneratorAdapter, "maskgit": GeneratorAdapter, "flow": GeneratorAdapter,
            "npz": NpzAdapter, "tokenizer": TokenizerAdapter, "identity": IdentityAdapter}


def build_adapter(entry: ModelEntry, base: Path, device: torch.device):
    return ADAPTERS[entry.adapter](entry, base, device)

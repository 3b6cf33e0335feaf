"""The one place where the harness reaches model code: adapters from suite entries to models.

A generation adapter turns (labels, per-sample seeds) into uint8 NHWC images plus a sampler
trace; a reconstruction adapter turns uint8 NHWC images into their reconstructions. Any other
generator (samples in an ADM .npz, another repository's model) plugs in the same way: it implements
one of the protocols below and says which through its capability flags. Every trainable generator kind
is driven by one adapter through its record (grn/registry.py `KINDS`): the record's sampler samples,
its decoder decodes; only how labels become conditions (classes or prompts) picks the adapter class.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from grn.errors import UserError, check_finite
from grn_eval import external
from grn_eval.diffusers_pipeline import DiffusersPipeline
from grn_eval.model_check import CheckedFiles, check_entry, integrity
from grn_eval.suite import ModelEntry

# ---------------------------------------------------------------------------------------
# What the runner may call: capabilities are flags, so nothing is probed with hasattr
# ---------------------------------------------------------------------------------------


class ModelAdapter(Protocol):
    task: str  # 'generation' (a GenerationAdapter) or 'reconstruction' (a ReconstructionAdapter)

    def provenance(self) -> dict: ...


class GenerationAdapter(ModelAdapter, Protocol):
    """A generator. Its flags say which of the optional protocols below it also implements."""

    num_classes: int  # labels are 0 .. num_classes - 1 (classes, or the indices of its prompts)
    from_seeds: bool  # True: a SeedSampler (samples afresh from per-sample seeds, so it can be timed);
    #                   False: a StoredSamples (serves samples made elsewhere, by index)
    has_prompts: bool  # True: also Prompted (each label is a prompt; prompt_texts and asked_digits)

    def prepare(self, n_calibration: int = 100) -> None: ...


class SeedSampler(GenerationAdapter, Protocol):
    def generate(self, labels: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, dict]: ...


class StoredSamples(GenerationAdapter, Protocol):
    # (images, their stored labels or None, trace): stored labels are the samples' classes (a per-class folder,
    # an ADM batch's arr_1); None means unlabelled, and then sample i counts as class i % num_classes
    def generate_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None, dict]: ...


class Prompted(SeedSampler, Protocol):
    def prompt_texts(self, labels) -> list[str]: ...

    def asked_digits(self, labels) -> np.ndarray: ...  # the digit each sample's prompt asks for (-1: none)


class ReconstructionAdapter(ModelAdapter, Protocol):
    def reconstruct(self, images: np.ndarray) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------
# The adapters
# ---------------------------------------------------------------------------------------


class GeneratorAdapter(SeedSampler):
    """A trained generator checkpoint of any kind + its tokenizer -> images and a trace (class labels)."""

    task = "generation"
    from_seeds = True
    has_prompts = False

    def __init__(self, entry: ModelEntry, base: Path, device: torch.device, checked: CheckedFiles | None = None):
        from grn.registry import KINDS
        from grn.sampling import EntropyConfig

        o = entry.options
        self.files = checked or check_entry(entry, base)
        self.ckpt, self.tok_path = self.files.checkpoint, self.files.tokenizer
        self.name = entry.name
        self.model = self._load(device)
        self.model_kind = KINDS[self.model.kind]  # its sampler, decoder and sampler settings
        self.tokenizer = _tokenizer(self.files, device)
        self.device = device
        s = dict(o.get("sampler") or {})
        base = self.model_kind.presets[s.pop("preset")] if "preset" in s else self.model_kind.default_sampler
        if "guidance_interval" in s:
            s["guidance_interval"] = tuple(s["guidance_interval"])
        self.sampler = self.model_kind.sampler_for(self.model, replace(base, **s), s)
        e = dict(o["entropy"]) if o.get("entropy") is not None else None
        self.calibrate = bool(e and e.pop("calibrate", False))
        self.entropy = EntropyConfig(**e) if e is not None else None
        self.num_classes = getattr(self.model.cfg, "num_classes", 1)  # a text-conditioned model: its prompts

    def _load(self, device):
        from grn.checkpoint import load_model  # also official files

        return load_model(self.ckpt, device, record=self.files.record)

    def conditions(self, labels) -> torch.Tensor:
        """What the sampler conditions on for these labels (class indices here)."""
        return torch.as_tensor(labels, dtype=torch.long, device=self.device)

    def uncond(self, cond: torch.Tensor) -> torch.Tensor | None:
        """The unconditional CFG stream's conditioning, when not the model's null one."""
        return None

    def _decode_checked(self, out: torch.Tensor) -> np.ndarray:
        """Decoded uint8 images; a NaN/Inf latent or decoder output stops the run naming the model."""
        from grn_eval.stages import stage

        with stage("decoding"):
            check_finite([(self.model_kind.output, out.float())], f"model '{self.name}'")
            return self.model_kind.decode(self.tokenizer, self.model, out)

    def prepare(self, n_calibration: int = 100) -> None:
        """Fit the entropy schedule to this model when asked (official constants fit ImageNet GRN-B only)."""
        if not self.calibrate:
            return
        from grn.sampling import calibrate_entropy_schedule, decision_entropies, sample_generators

        y = self.conditions(np.arange(n_calibration) % self.num_classes)
        e = decision_entropies(self.model, y, self.sampler, sample_generators(range(10**9, 10**9 + n_calibration)),
                               warmup=self.entropy.warmup, t_max=self.entropy.t_max, sample=self.model_kind.sample)
        self.entropy = calibrate_entropy_schedule(e, self.entropy.t_min, self.entropy.t_max, self.entropy.warmup)
        self.calibrate = False

    @torch.no_grad()
    def generate(self, labels: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, dict]:
        from grn.sampling import sample_generators

        y = self.conditions(labels)
        out, trace = self.model_kind.sample(self.model, y, self.sampler, sample_generators(seeds),
                                            entropy=self.entropy, uncond=self.uncond(y))
        return self._decode_checked(out), trace.as_dict()

    def provenance(self) -> dict:
        sampler = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.sampler.__dict__.items()}
        return {"kind": self.model.kind, "checkpoint": self.ckpt.name,
                "checkpoint_sha256": self.files.checkpoint_sha256,
                "checkpoint_integrity": integrity(getattr(self.model, "integrity", None),
                                                  "checkpoint" in self.files.pinned),
                "tokenizer": self.tok_path.name, "tokenizer_sha256": self.files.tokenizer_sha256,
                "tokenizer_integrity": integrity(getattr(self.tokenizer, "integrity", None),
                                                 "tokenizer" in self.files.pinned),
                "tokenizer_match": self.files.tokenizer_note, "sampler": sampler,
                "entropy": None if self.entropy is None else self.entropy.__dict__,
                "parameters": sum(p.numel() for p in self.model.parameters()),
                **self._class_prompts()}

    def _class_prompts(self) -> dict:
        """A class-conditional video model with the Moving-MNIST motion classes records the prompt each class
        stands for (what video_prompt_accuracy asks of it, and what its published frame strips are labelled)."""
        from grn.video_captions import class_model_prompts

        if self.has_prompts:  # a text model records its own prompts
            return {}
        video = (getattr(self.model.cfg, "frames", None) or 1) > 1  # None: an image model (GRN_bit's config)
        prompts = class_model_prompts(self.num_classes) if video else None
        return {"prompts": prompts} if prompts else {}


class T2IAdapter(GeneratorAdapter, Prompted):
    """A text-conditioned generator: sample i uses prompt `prompts[i % len(prompts)]` (default: the MNIST
    digit prompts of grn/captions.py; for a video model the Moving-MNIST prompts of grn/video_captions.py),
    with CFG against the empty prompt or `negative_prompt`."""

    has_prompts = True

    def __init__(self, entry: ModelEntry, base: Path, device: torch.device, checked: CheckedFiles | None = None):
        from grn.captions import asked_digit, digit_prompts
        from grn.video_captions import video_prompts

        self.clip_weights = None
        super().__init__(entry, base, device, checked)
        o = entry.options
        # default prompts: a video model's the Moving-MNIST ones (digit x direction), an image model's the digits
        default = video_prompts if getattr(self.model.cfg, "frames", None) else digit_prompts
        self.prompts = list(o.get("prompts") or default())  # a `prompts_file` is read into them by the suite
        self.prompts_file = Path(o["prompts_file"]).name if o.get("prompts_file") else None
        self.negative = o.get("negative_prompt")
        self.num_classes = len(self.prompts)
        self.asked = [asked_digit(p) for p in self.prompts]
        self.umt5 = None
        if self.model.text is None:  # a released GRN_bit: every prompt's UMT5-XXL states, encoded once
            self._encode_with_umt5(entry, base, device)
            return
        for p in self.prompts + ([self.negative] if self.negative else []):
            unknown = self.model.text.unknown_words(p)
            if unknown:
                raise UserError(f"model '{entry.name}': prompt {p!r} has words outside the text encoder's vocabulary "
                                 f"{unknown}; allowed words: {' '.join(self.model.text.cfg.vocab)}")
        self.ids = self.model.tokenize(self.prompts).to(device)

    def _encode_with_umt5(self, entry: ModelEntry, base: Path, device) -> None:
        """The released models read UMT5-XXL states (grn/text.py UMT5TextEncoder, the suite's `text_encoder`
        folder): the prompts' and the negative prompt's (the official T2I one is the empty prompt, which is
        always encoded: infer.py:79), then the encoder is let go."""
        from grn.text import UMT5TextEncoder, encode_prompts
        from grn_eval.model_check import resolve

        encoder = UMT5TextEncoder(resolve(entry.options["text_encoder"], base), device)
        self.umt5 = encoder.provenance
        with torch.no_grad():
            self.states, self.lens = encode_prompts(encoder, self.prompts)
            self.neg_states, self.neg_lens = encode_prompts(encoder, [self.negative or ""])
        self.states, self.neg_states = self.states.to(device), self.neg_states.to(device)
        del encoder

    def _load(self, device):
        from grn.checkpoint import load_model

        ck = self.files.record
        text = (ck.get("config") or {}).get("text") or {} if isinstance(ck, dict) else {}
        if text.get("encoder") != "open_clip":
            return load_model(self.ckpt, device, record=ck)
        # a frozen open_clip tower: its real weights through the harness's finder (hub cache, hash check);
        # without them this raises WeightsAbsent naming the file to provide
        from grn_eval import weights as W

        self.clip_weights = W.find_clip_weights(text["clip_model"], text["clip_tag"])[0]
        return load_model(self.ckpt, device, record=ck, clip_weights=self.clip_weights)

    def conditions(self, labels):
        """The prompts' text ids, or for a released GRN_bit their UMT5 (states, lengths)."""
        idx = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        if self.umt5 is not None:
            return self.states[idx], self.lens[idx.cpu()]
        return self.ids[idx]

    def prompt_texts(self, labels) -> list[str]:
        return [self.prompts[int(i)] for i in labels]

    def asked_digits(self, labels) -> np.ndarray:
        """The digit each sample's prompt asks for (-1: none)."""
        return np.array([-1 if self.asked[int(i)] is None else self.asked[int(i)] for i in labels], dtype=np.int64)

    def uncond(self, cond):
        if self.umt5 is not None:  # CFG against the (empty or given) negative prompt, one for every sample
            return self.neg_states, self.neg_lens
        return None if not self.negative else self.model.tokenize([self.negative]).to(self.device).expand_as(cond)

    def provenance(self) -> dict:
        text = self.model.cfg.text
        if self.umt5 is not None:
            return {**super().provenance(), "prompts": self.prompts, "negative_prompt": self.negative or "",
                    **({"prompts_file": self.prompts_file} if self.prompts_file else {}),
                    "text_encoder": {"encoder": "umt5", **self.umt5}}
        return {**super().provenance(), "prompts": self.prompts, "negative_prompt": self.negative,
                **({"prompts_file": self.prompts_file} if self.prompts_file else {}),
                "text_encoder": {"encoder": text.encoder, **({"model": text.clip_model, "tag": text.clip_tag,
                                                         "weights": Path(self.clip_weights).name}
                                                        if text.encoder == "open_clip" else
                                                        {"vocabulary": len(text.vocab), "max_len": text.max_len})}}


class NpzAdapter(StoredSamples):
    """Pre-generated samples in an ADM batch (arr_0 images, optional arr_1 labels), used in file order."""

    task = "generation"
    from_seeds = False
    has_prompts = False

    def __init__(self, entry: ModelEntry, base: Path, device, checked: CheckedFiles | None = None):
        from grn.data import load_npz

        self.files = checked or check_entry(entry, base)
        self.path = self.files.checkpoint
        self.data = load_npz(self.path)
        self.num_classes = self.data.num_classes or 1
        self._next = 0

    def prepare(self, n_calibration: int = 0) -> None:
        pass

    def generate_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None, dict]:
        if stop > len(self.data):
            raise UserError(f"{self.path} holds {len(self.data)} samples, the suite asks for {stop}")
        images, labels = self.data.batch(start, stop)
        return images, labels, {}

    def provenance(self) -> dict:
        return {"path": self.path.name, "sha256": self.files.checkpoint_sha256, "n": len(self.data)}


class TokenizerAdapter(ReconstructionAdapter):
    task = "reconstruction"

    def __init__(self, entry: ModelEntry, base: Path, device, checked: CheckedFiles | None = None):
        self.files = checked or check_entry(entry, base)
        self.ckpt = self.files.tokenizer
        self.model = _tokenizer(self.files, device)
        trained = self.model.cfg.rounds
        self.rounds = entry.options.get("rounds")  # None: all the rounds it was trained with
        if self.rounds is not None and (not self.model.hbq or self.rounds > trained):
            raise UserError(f"model '{entry.name}': rounds: {self.rounds} - '{self.ckpt.name}' "
                            + (f"was trained at M = {trained}; allowed: 1 ... {trained}" if self.model.hbq else
                               f"quantizes with {self.model.cfg.quantizer}, which has no rounds; remove `rounds`"))

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return self.model.reconstruct(images, self.rounds)

    def provenance(self) -> dict:
        return {"checkpoint": self.ckpt.name, "checkpoint_sha256": self.files.tokenizer_sha256,
                "checkpoint_integrity": integrity(getattr(self.model, "integrity", None),
                                                  "checkpoint" in self.files.pinned),
                "quantizer": self.model.cfg.quantizer if not self.model.cfg.continuous else "none",
                # from the code space the quantizer writes (HBQ decoded at fewer rounds: d x those rounds)
                "bits_per_token": (self.model.cfg.latent_channels * self.rounds if self.rounds else
                                   None if self.model.cfg.continuous else round(self.model.quantizer.bits)),
                "rounds": self.rounds or self.model.cfg.rounds, "trained_rounds": self.model.cfg.rounds,
                "latent_channels": self.model.cfg.latent_channels, "stride": self.model.cfg.stride}


# A model kind's adapter follows from its record's conditioning; the other adapters are not model kinds.
BY_CONDITIONING = {"class": GeneratorAdapter, "text": T2IAdapter}
OTHER_ADAPTERS = {"npz": NpzAdapter, "tokenizer": TokenizerAdapter, "python": external.PythonGenerator,
                  "imagefolder": external.ImageFolderSamples, "diffusers": DiffusersPipeline}


def register_adapter(name: str, cls: type, options: dict, family: str) -> None:
    """Add an adapter that is not a model kind: `cls(entry, base, device, checked)` implementing one of the
    protocols above, the suite keys it takes beyond name / adapter / family / label (`Opt`s), and its
    table family. Its suite settings are checked like those of the built-in adapters."""
    from grn_eval import suite

    if name in OTHER_ADAPTERS or name in suite.adapter_options():
        raise ValueError(f"adapter {name!r} is already registered")
    if getattr(cls, "task", None) not in ("generation", "reconstruction"):
        raise ValueError(f"adapter {name!r}: the class says no task ('generation' or 'reconstruction')")
    OTHER_ADAPTERS[name] = cls
    suite.OTHER_ADAPTERS[name], suite.OTHER_FAMILY[name] = dict(options), family


def unregister_adapter(name: str) -> None:
    from grn_eval import suite

    for table in (OTHER_ADAPTERS, suite.OTHER_ADAPTERS, suite.OTHER_FAMILY):
        table.pop(name, None)


def adapter_class(name: str) -> type:
    """The adapter class of a suite's `adapter:` (a model kind of grn/registry.py, or one of OTHER_ADAPTERS)."""
    from grn.registry import KINDS

    return BY_CONDITIONING[KINDS[name].conditioning] if name in KINDS else OTHER_ADAPTERS[name]


def _tokenizer(files: CheckedFiles, device):
    """The tokenizer from its already-read record (official files converted; ours verified)."""
    from grn.checkpoint import tokenizer_from_record

    return tokenizer_from_record(files.tokenizer_record, files.tokenizer).to(device)


def build_adapter(entry: ModelEntry, base: Path, device: torch.device,
                  checked: CheckedFiles | None = None) -> GenerationAdapter | ReconstructionAdapter:
    return adapter_class(entry.adapter)(entry, base, device, checked)

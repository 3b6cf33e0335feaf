"""Every trainable generator by name: GRN sizes and the equal-budget baselines.

The "-T" baselines share GRN-T's backbone shape (hidden 128, depth 4, 4 heads, bottleneck 64,
4 in-context tokens) and its tokenizer, data and training budget; only the paradigm differs.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from grn.baselines.ar import ARConfig, ARModel, build_ar
from grn.baselines.flow import FlowConfig, FlowModel, build_flow
from grn.baselines.maskgit import MaskGITConfig, MaskGITModel, build_maskgit
from grn.checkpoint import TOKENIZER_KIND, load_state, read, seal, verify
from grn.errors import CheckpointError, check_finite
from grn.generator import GENERATORS, GRN, config_from_dict
from grn.t2i import T2I_GENERATORS, T2IGRN, t2i_config_from_dict

MODELS = {
    **GENERATORS,
    **T2I_GENERATORS,
    "AR-T": build_ar,
    "MaskGIT-T": build_maskgit,
    "Flow-T": build_flow,
}

KINDS = {"grn": (GRN, config_from_dict), "grn-t2i": (T2IGRN, t2i_config_from_dict),
         "ar": (ARModel, lambda d: ARConfig(**d)), "maskgit": (MaskGITModel, lambda d: MaskGITConfig(**d)),
         "flow": (FlowModel, lambda d: FlowConfig(**d))}


def build_model(name: str, **overrides):
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; allowed: {sorted(MODELS)}")
    return MODELS[name](**overrides)


def checkpoint_record(model, name: str, state_dict: dict, **extra) -> dict:
    """What an exported generator checkpoint holds (weights in bf16 keep committed files small), sealed
    with the content hash of its tensors (grn/checkpoint.py)."""
    state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state_dict.items()}
    return seal({"kind": model.kind, "name": name, "config": asdict(model.cfg), "state_dict": state, **extra})


def read_generator_record(path: str | Path):
    """The raw checkpoint of a generator file (this project's record or an official C2I file), kind-checked."""
    from grn.convert import is_official_generator

    ck = read(path, "generator checkpoint")
    if is_official_generator(ck):
        return ck
    kind = ck.get("kind") if isinstance(ck, dict) else None
    if kind == TOKENIZER_KIND:
        raise CheckpointError(f"'{path}' is an HBQ tokenizer checkpoint, not a generator: give it as the model's "
                              f"`tokenizer:` and a generator file as its `checkpoint:`")
    if kind not in KINDS:
        raise CheckpointError(f"'{path}' is not a generator checkpoint written by this project (kind {kind!r}; "
                              f"generator kinds: {sorted(KINDS)})")
    return ck


def load_model(path: str | Path, device="cpu", record=None, **build):
    """Load any generator checkpoint written by this project (GRN or a baseline), verified (content hash,
    finite weights). `build` goes to the model's constructor (a text-to-image GRN with an open_clip text
    tower takes `clip_weights`); `record` is the already-read file, if the caller has it."""
    path = Path(path)
    ck = read_generator_record(path) if record is None else record
    from grn.convert import is_official_generator, load_official_generator

    if is_official_generator(ck):  # an official GRN C2I file: its EMA 0.9999 weights, size read off them
        model = load_official_generator(ck, name=None, which="ema1" if "model_ema1" in ck else "raw")
        check_finite(model.state_dict().items(), f"'{path}'")
        model.integrity = "official file: finite weights checked"
        return model.to(device)
    cls, make_cfg = KINDS[ck["kind"]]
    integrity = verify(ck, path)
    try:
        cfg = make_cfg(ck["config"])
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"'{path}': its config cannot build a {ck['kind']} model ({e}); the file is damaged "
                              f"or from an incompatible version") from e
    model = load_state(cls(cfg, **build), ck["state_dict"], path)
    model.integrity = integrity
    return model.eval().to(device)

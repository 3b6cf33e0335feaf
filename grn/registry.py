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
    """What an exported generator checkpoint holds (weights in bf16 keep committed files small)."""
    state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state_dict.items()}
    return {"kind": model.kind, "name": name, "config": asdict(model.cfg), "state_dict": state, **extra}


def load_model(path: str | Path, device="cpu", **build):
    """Load any generator checkpoint written by this project (GRN or a baseline). `build` goes to the
    model's constructor (a text-to-image GRN with an open_clip text tower takes `clip_weights`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"generator checkpoint '{path}' does not exist")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    from grn.convert import is_official_generator, load_official_generator

    if is_official_generator(ck):  # an official GRN C2I file: its EMA 0.9999 weights, size read off them
        return load_official_generator(ck, name=None, which="ema1" if "model_ema1" in ck else "raw").to(device)
    kind = ck.get("kind") if isinstance(ck, dict) else None
    if kind not in KINDS:
        raise ValueError(f"'{path}' is not a generator checkpoint written by this project (kind {kind!r})")
    cls, make_cfg = KINDS[kind]
    model = cls(make_cfg(ck["config"]), **build)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()})
    return model.eval().to(device)

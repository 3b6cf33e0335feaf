"""Official checkpoint key mapping (the released GRN class-to-image generators).

Official C2I checkpoints hold the network under the prefix `net.` inside `model`, `model_ema1`
(EMA 0.9999, used for evaluation) and `model_ema2` (EMA 0.9996). This project's GRN keeps the same
module tree under `net.`, so the mapping is the identity on keys; what is checked is that every
key is present with its shape and nothing is left over. (The official causal-3D tokenizer is not
converted here.)
"""

from __future__ import annotations

from pathlib import Path

import torch

from grn.generator import GRN, build_generator

EMA_KEYS = {"ema1": "model_ema1", "ema2": "model_ema2", "raw": "model"}


class CheckpointError(ValueError):
    """A checkpoint does not have the expected layout; the message names the key."""


def _load(path_or_state):
    if isinstance(path_or_state, (str, Path)):
        path = Path(path_or_state)
        if not path.is_file():
            raise CheckpointError(f"checkpoint '{path}' does not exist")
        return torch.load(path, map_location="cpu", weights_only=False)
    return path_or_state


def official_generator_state(ckpt: dict, which: str = "ema1") -> dict:
    """The `net.`-prefixed generator weights out of an official checkpoint dict."""
    if which not in EMA_KEYS:
        raise CheckpointError(f"unknown weights '{which}'; allowed: {sorted(EMA_KEYS)}")
    if EMA_KEYS[which] in ckpt:
        state = ckpt[EMA_KEYS[which]]
    elif all(isinstance(k, str) for k in ckpt) and any(k.startswith("net.") for k in ckpt):
        state = ckpt  # already a bare state dict
    else:
        raise CheckpointError(f"no '{EMA_KEYS[which]}' entry in the checkpoint (found {sorted(ckpt)[:6]})")
    return {k: v for k, v in state.items() if k.startswith("net.")}


def load_official_generator(path_or_state_dict, name: str = "GRN-B", which: str = "ema1", **overrides) -> GRN:
    """An official GRN_ind C2I generator as this project's GRN (strict: every key, every shape)."""
    state = official_generator_state(_load(path_or_state_dict), which)
    model = build_generator(name, **overrides)
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    if missing or unexpected:
        raise CheckpointError(f"{name}: the checkpoint does not match the official layout: "
                              f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                              f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    for k, v in want.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{name}: key '{k}' has shape {tuple(state[k].shape)}, expected {tuple(v.shape)} "
                                  f"(is this the right model size?)")
    model.load_state_dict({k: state[k].float() for k in want})
    return model.eval()


def convert_official_generator(src, name: str, out: str | Path, which: str = "ema1") -> Path:
    """Write an official generator checkpoint in this project's format (what suites load)."""
    from grn.registry import checkpoint_record
    from grn.train import save_atomic

    model = load_official_generator(src, name, which)
    out = Path(out)
    save_atomic(checkpoint_record(model, name, model.state_dict(), source=f"official {which}",
                                  source_file=Path(src).name if isinstance(src, (str, Path)) else None), out)
    return out

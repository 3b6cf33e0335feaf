"""Official checkpoint key mapping (the released GRN class-to-image generators and HBQ tokenizer).

Generators: official C2I checkpoints hold the network under the prefix `net.` inside `model`,
`model_ema1` (EMA 0.9999, used for evaluation) and `model_ema2` (EMA 0.9996). This project's GRN
keeps the same module tree under `net.`, so the mapping is the identity on keys; what is checked is
that every key is present with its shape and nothing is left over.

Tokenizer: the official HBQ tokenizers (the C2I image one and the joint image/video one) are
causal-3D (Wan2.2-style) VAEs; their checkpoints hold the weights in `ema` (preferred) or `vae`. This
project's tokenizer is the same causal-3D network (grn/tokenizer.py, `temporal_kernel=3`): every
official key is consumed, the temporal re-sampling convs (`time_conv`) included, and an image is its
T = 1 case. Two renamings: the module tree (see `_official_key`), and the official patchify orders
the 2x2 patch as (column, row) where pixel_unshuffle uses (row, column): the input conv's input
channels and the head's output channels are permuted. RMS-norm gains are stored (C, 1, 1) here.

GRN_bit (the text-to-image / text-to-video GRN_T2I_2B / GRN_T2V_2B, grn/grn_bit.py): this project's
module tree has the official key names, so the mapping is the identity. The released files are a flat
state dict (infer.py:177, 235); training checkpoints hold it in `['trainer']['gpt_ema_fsdp']` (EMA) and
`['trainer']['gpt_fsdp']` (save_and_load.py:53-61, sft_trainer.py:297-304); every other entry of a
training checkpoint is listed in OFFICIAL_GRN_BIT_UNUSED with the reason, anything else is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from grn.errors import (
    CheckpointError,  # noqa: F401  (raised here; imported from here by callers)
    )
from grn.fileio import read
from grn.generator import GRN, build_generator
from grn.grn_bit import GRN_BIT_SIZES, GRNBit, build_grn_bit
from grn.tokenizer import HBQTokenizer, build_tokenizer

EMA_KEYS = {"ema1": "model_ema1", "ema2": "model_ema2", "raw": "model"}
OFFICIAL_SIZES = ("GRN-B", "GRN-L", "GRN-H", "GRN-G")
TOKENIZER_ENTRIES = ("ema", "vae")  # where official tokenizer checkpoints keep the weights, preferred first

# Official tokenizer keys that have no counterpart here (regex on the key -> why): none since the video path.
OFFICIAL_TOKENIZER_UNUSED: dict[str, str] = {}


def _load(path_or_state):
    if isinstance(path_or_state, (str, Path)):
        return read(path_or_state)
    return path_or_state


def _check_layout(what: str, state: dict, want: dict) -> None:
    """Strict layout check: every key of `want` (key -> shape) present with its shape, nothing else."""
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    if missing or unexpected:
        raise CheckpointError(f"{what}: the checkpoint does not match the official layout: "
                              f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                              f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    for k, shape in want.items():
        if tuple(state[k].shape) != tuple(shape):
            raise CheckpointError(f"{what}: key '{k}' has shape {tuple(state[k].shape)}, expected {tuple(shape)} "
                                  f"(is this the right model size?)")


# ---------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------


def is_official_generator(ckpt) -> bool:
    return isinstance(ckpt, dict) and "kind" not in ckpt and any(k in ckpt for k in EMA_KEYS.values())


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


def official_generator_name(state: dict) -> str:
    """Which released size (GRN-B/L/H/G) a `net.` state dict has: the one whose layout it matches."""
    have = {k: tuple(v.shape) for k, v in state.items()}
    for name in OFFICIAL_SIZES:
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in build_generator(name).state_dict().items()}
        if want == have:
            return name
    raise CheckpointError(f"the generator weights match none of the official sizes {list(OFFICIAL_SIZES)}")


def load_official_generator(path_or_state_dict, name: str | None = "GRN-B", which: str = "ema1",
                            **overrides) -> GRN:
    """An official GRN_ind C2I generator as this project's GRN (strict: every key, every shape).
    name=None: the size is read off the weights."""
    state = official_generator_state(_load(path_or_state_dict), which)
    name = name or official_generator_name(state)
    model = build_generator(name, **overrides)
    want = model.state_dict()
    _check_layout(name, state, {k: v.shape for k, v in want.items()})
    model.load_state_dict({k: state[k].float() for k in want})
    return model.eval()


# ---------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------


def is_official_tokenizer(ckpt) -> bool:
    return isinstance(ckpt, dict) and "kind" not in ckpt and any(k in ckpt for k in TOKENIZER_ENTRIES)


def official_tokenizer_state(ckpt: dict) -> dict:
    """The tokenizer weights out of an official checkpoint dict: `ema` if present, else `vae`."""
    for entry in TOKENIZER_ENTRIES:
        if entry in ckpt:
            return ckpt[entry]
    if all(isinstance(k, str) for k in ckpt) and "encoder.conv1.weight" in ckpt:
        return ckpt  # already a bare state dict
    raise CheckpointError(f"no 'ema' or 'vae' entry in the tokenizer checkpoint (found {sorted(ckpt)[:6]})")


def _official_key(key: str, num_res_blocks: int) -> str:
    """This project's tokenizer key -> the official key (the official module tree, renamed)."""
    n = num_res_blocks
    rules = (
        (r"^encoder\.conv_in\.", "encoder.conv1."),
        (r"^encoder\.down\.(\d+)\.res\.(\d+)\.", r"encoder.downsamples.\1.downsamples.\2."),
        (r"^encoder\.down\.(\d+)\.down\.", rf"encoder.downsamples.\1.downsamples.{n}.resample.1."),
        (r"^encoder\.down\.(\d+)\.time_conv\.", rf"encoder.downsamples.\1.downsamples.{n}.time_conv."),
        (r"^encoder\.mid\.", "encoder.middle."),
        (r"^encoder\.conv1\.", "conv1."),  # the (mu, logvar) 1x1 conv sits at the top level
        (r"^decoder\.conv2\.", "conv2."),
        (r"^decoder\.conv_in\.", "decoder.conv1."),
        (r"^decoder\.mid\.", "decoder.middle."),
        (r"^decoder\.up\.(\d+)\.res\.(\d+)\.", r"decoder.upsamples.\1.upsamples.\2."),
        (r"^decoder\.up\.(\d+)\.up\.", rf"decoder.upsamples.\1.upsamples.{n + 1}.resample.1."),
        (r"^decoder\.up\.(\d+)\.time_conv\.", rf"decoder.upsamples.\1.upsamples.{n + 1}.time_conv."),
    )
    for pattern, replacement in rules:
        new, hits = re.subn(pattern, replacement, key)
        if hits:
            return new
    return key  # encoder.head.*, decoder.head.*


def _official_shape(official_key: str, shape: tuple) -> tuple:
    """The official shape of a tensor: the RMS norms of the causal-3D blocks have one more trailing axis and
    the 1x1 convs (k_t = 1, stored 2D here) a temporal kernel of 1; the spatial re-sampling convs and the
    per-frame attention are 2D in both."""
    if ".resample." in official_key or ".middle.1." in official_key:
        return shape
    if official_key.endswith(".gamma"):
        return (*shape, 1)
    if len(shape) == 4:
        return (*shape[:2], 1, *shape[2:])
    return shape


def official_tokenizer_layout(model: HBQTokenizer) -> dict[str, tuple[str | None, tuple]]:
    """official key -> (this project's key, or None for an unused official key; official shape)."""
    cfg = model.cfg
    if not (cfg.mid_attention and cfg.patch == 2 and cfg.temporal_kernel == 3):
        raise ValueError("the official layout has the middle attention, a 2x2 patchify and causal 3x3x3 convs")
    layout = {}
    for key, v in model.state_dict().items():
        official = _official_key(key, cfg.num_res_blocks)
        layout[official] = (key, _official_shape(official, tuple(v.shape)))
    for key, (ours, _) in layout.items():
        if ours is None and not any(re.fullmatch(p, key) for p in OFFICIAL_TOKENIZER_UNUSED):
            raise AssertionError(f"official key '{key}' is neither used nor listed as unused")
    return layout


def _patch_order(patch: int) -> torch.Tensor:
    """Index map ours -> official for the 3 x patch x patch patchified channels: pixel_unshuffle orders
    them (channel, row, column), the official patchify (channel, column, row)."""
    return torch.arange(3 * patch * patch).view(3, patch, patch).transpose(1, 2).reshape(-1)


# latent channels of a released tokenizer -> this project's config name
OFFICIAL_TOKENIZERS = {16: "hbq-f16-d16", 64: "hbq-f16-d64"}


def official_tokenizer_name(state: dict) -> str:
    """Which released tokenizer a state dict is, read off its latent width (`conv2`, the decoder's first
    1x1x1 conv): HBQ_image_tokenizer_16dim_M4 (C2I) or HBQ_tokenizer_64dim_M4 (the text/video models)."""
    w = state.get("conv2.weight")
    d = int(w.shape[0]) if w is not None else None
    if d not in OFFICIAL_TOKENIZERS:
        raise CheckpointError(f"tokenizer: 'conv2.weight' gives {d} latent channels; the released tokenizers have "
                              f"{sorted(OFFICIAL_TOKENIZERS)} (HBQ_image_tokenizer_16dim_M4, HBQ_tokenizer_64dim_M4)")
    return OFFICIAL_TOKENIZERS[d]


def load_official_tokenizer(path_or_state_dict, name: str | None = None, **overrides) -> HBQTokenizer:
    """An official HBQ tokenizer as this project's HBQTokenizer, for images and videos (strict: every
    official key consumed, every shape checked). `name`: hbq-f16-d16 (HBQ_image_tokenizer_16dim_M4, C2I),
    hbq-f16-d64 (HBQ_tokenizer_64dim_M4, the joint image/video tokenizer of the text models), or None to
    read it off the weights."""
    state = official_tokenizer_state(_load(path_or_state_dict))
    name = name or official_tokenizer_name(state)
    model = build_tokenizer(name, **overrides)
    layout = official_tokenizer_layout(model)
    _check_layout(f"tokenizer {name}", state, {k: shape for k, (_, shape) in layout.items()})
    want = model.state_dict()
    converted = {}
    for key, (ours, _) in layout.items():
        if ours is None:
            continue
        converted[ours] = state[key].float().reshape(want[ours].shape)  # RMS norm gammas: (C, 1, 1, 1) -> (C, 1, 1)
    order = _patch_order(model.cfg.patch).to(converted["encoder.conv_in.weight"].device)
    converted["encoder.conv_in.weight"] = converted["encoder.conv_in.weight"][:, order]
    converted["decoder.head.2.weight"] = converted["decoder.head.2.weight"][order]
    converted["decoder.head.2.bias"] = converted["decoder.head.2.bias"][order]
    model.load_state_dict(converted)
    return model.eval()


# ---------------------------------------------------------------------------------------
# GRN_bit (text-to-image / text-to-video)
# ---------------------------------------------------------------------------------------

GRN_BIT_ENTRIES = {"ema": "gpt_ema_fsdp", "raw": "gpt_fsdp"}  # --weights -> the training checkpoint's entry
# Entries of an official training checkpoint (global_step_*.pth, save_and_load.py:53-61) that hold no
# model weights to load (name -> why); the weights entry not chosen by `which` is unused as well.
OFFICIAL_GRN_BIT_UNUSED = {
    "args": "the training arguments",
    "gpt_training": "the training recipe's name",
    "arch": "the constructor's name (GRN2b); the size is read off the weights",
    "epoch": "training progress",
    "iter": "training progress",
    "g_it": "training progress",
    "trainer.config": "the trainer's config (empty)",
    "trainer.gpt_fsdp_opt": "optimizer state (None for FSDP full state dicts)",
}


def _is_flat_state(ckpt) -> bool:
    return isinstance(ckpt, dict) and bool(ckpt) and all(isinstance(k, str) for k in ckpt) and \
        all(isinstance(v, torch.Tensor) for v in ckpt.values())


def is_official_grn_bit(ckpt) -> bool:
    """A released GRN_bit file (flat, with the text/pt embeddings only GRN_bit has) or a training checkpoint."""
    if not isinstance(ckpt, dict) or "kind" in ckpt:
        return False
    if isinstance(ckpt.get("trainer"), dict) and any(e in ckpt["trainer"] for e in GRN_BIT_ENTRIES.values()):
        return True
    return _is_flat_state(ckpt) and "pt_embedder.mlp.0.weight" in ckpt and "text_proj.weight" in ckpt


def official_grn_bit_state(ckpt, which: str = "ema") -> tuple[dict, str]:
    """(state dict, where it came from) out of an official GRN_bit file: a training checkpoint's
    `trainer.gpt_ema_fsdp` (which='ema') or `trainer.gpt_fsdp` (which='raw'); a flat file as it is."""
    if which not in GRN_BIT_ENTRIES:
        raise CheckpointError(f"unknown GRN_bit weights '{which}'; allowed: {sorted(GRN_BIT_ENTRIES)}")
    if not isinstance(ckpt, dict) or "kind" in ckpt:
        raise CheckpointError("not an official GRN_bit checkpoint (a flat state dict, or a training checkpoint "
                              "with trainer.gpt_fsdp)")
    if "trainer" not in ckpt:
        if not _is_flat_state(ckpt):
            bad = next((k for k, v in ckpt.items() if not isinstance(v, torch.Tensor)), None)
            raise CheckpointError(f"not a GRN_bit state dict: entry '{bad}' is not a tensor (a flat state dict, or "
                                  f"a training checkpoint with trainer.gpt_fsdp)")
        return ckpt, "flat state dict"
    trainer = ckpt["trainer"]
    if not isinstance(trainer, dict):
        raise CheckpointError(f"entry 'trainer' is a {type(trainer).__name__}, not the trainer's state dict")
    entry = GRN_BIT_ENTRIES[which]
    names = [k for k in ckpt if k != "trainer"] + [f"trainer.{k}" for k in trainer]
    known = set(OFFICIAL_GRN_BIT_UNUSED) | {f"trainer.{e}" for e in GRN_BIT_ENTRIES.values()}
    unknown = [k for k in names if k not in known]
    if unknown:
        raise CheckpointError(f"training checkpoint entry '{unknown[0]}' is neither weights nor a known unused "
                              f"entry ({sorted(known)}): not an official GRN_bit training checkpoint")
    if not isinstance(trainer.get(entry), dict):
        have = [f"trainer.{e}" for e in GRN_BIT_ENTRIES.values() if isinstance(trainer.get(e), dict)]
        alt = [w for w, e in GRN_BIT_ENTRIES.items() if isinstance(trainer.get(e), dict)]
        raise CheckpointError(f"no 'trainer.{entry}' ({which} weights) in the training checkpoint (it holds "
                              f"{have}); choose --weights {alt[0] if alt else 'raw'}")
    return trainer[entry], f"trainer.{entry}"


_GRN_BIT_LAYOUTS: dict[str, dict[str, tuple]] = {}


def grn_bit_layout(name: str) -> dict[str, tuple]:
    """key -> shape of a registered GRN_bit size (built once on the meta device)."""
    if name not in _GRN_BIT_LAYOUTS:
        with torch.device("meta"):
            _GRN_BIT_LAYOUTS[name] = {k: tuple(v.shape) for k, v in build_grn_bit(name).state_dict().items()}
    return _GRN_BIT_LAYOUTS[name]


def official_grn_bit_name(state: dict) -> str:
    """The GRN_bit size whose layout a state dict has; if none matches exactly, the one sharing the most
    keys with their shapes (so that the strict check then names the missing, extra or mis-shaped key)."""
    have = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    score = {}
    for name in GRN_BIT_SIZES:
        want = grn_bit_layout(name)
        if want == have:
            return name
        score[name] = sum(have.get(k) == s for k, s in want.items())
    best = max(score, key=score.get)
    if score[best] == 0:
        raise CheckpointError(f"the GRN_bit weights match none of the sizes {list(GRN_BIT_SIZES)}")
    return best


def check_grn_bit_layout(what: str, state: dict, model: GRNBit) -> None:
    """Strict: every key of the model present with its shape, nothing else, every value a floating tensor."""
    _check_layout(what, state, {k: v.shape for k, v in model.state_dict().items()})
    for k, v in state.items():
        if not v.is_floating_point():
            raise CheckpointError(f"{what}: key '{k}' holds {v.dtype}, expected floating-point weights")


def load_official_grn_bit(path_or_state_dict, name: str | None = None, which: str = "ema",
                          dtype: torch.dtype = torch.float32, **overrides) -> GRNBit:
    """An official GRN_bit model (strict: every key, every shape). name=None: the size is read off the
    weights. The model is built on the meta device and takes the file's tensors (cast to `dtype`; the
    official model holds float32 parameters, infer.py:224-226), so no second copy is made."""
    state, source = official_grn_bit_state(_load(path_or_state_dict), which)
    name = name or official_grn_bit_name(state)
    with torch.device("meta"):
        model = build_grn_bit(name, **overrides)
    check_grn_bit_layout(f"GRN_bit {name} ({source})", state, model)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    model.source = source
    return model.eval()


def official_grn_bit_record(src, which: str = "ema") -> dict:
    """An official GRN_bit file as this project's generator record (kind 'grn-bit', name, config, state_dict,
    source), the tensors as they are in the file (their own dtype), after the strict layout and finite
    checks. Not sealed here (grn.checkpoint imports this module): the writer adds the content hash."""
    from dataclasses import asdict

    from grn.errors import check_finite

    state, source = official_grn_bit_state(_load(src), which)
    name = official_grn_bit_name(state)
    with torch.device("meta"):
        model = build_grn_bit(name)
    check_grn_bit_layout(f"GRN_bit {name} ({source})", state, model)
    check_finite(state.items(), f"GRN_bit {name} ({source})")
    return {"kind": GRNBit.kind, "name": name, "config": asdict(model.cfg), "state_dict": dict(state),
            "source": f"official {source}", "source_file": Path(src).name if isinstance(src, (str, Path)) else None}

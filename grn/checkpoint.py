"""Checkpoint records of this project: written (sealed) and read back (verified) in one place.

- `seal` writes a content hash of the tensors into a record at save time (`content_sha256`: dtype,
  shape and bytes of every tensor, keys sorted), so any later change of a tensor byte is found at load,
  whatever the file's container bytes are; `verify` checks it and that no weight is NaN/Inf.
- `load_state` loads a state dict strictly and names the first key that is missing, unexpected or of
  another shape, instead of torch's multi-page message.
- Generators: `checkpoint_record` (bf16, sealed) and `load_model` (this project's records of every
  kind in grn.registry.KINDS, and official C2I files); tokenizers: `export_tokenizer`,
  `load_tokenizer` (also official files); `convert_official_*` write official files in this format.
File reading and atomic writing are grn/fileio.py; official key layouts are grn/convert.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from grn.convert import is_official_generator, is_official_tokenizer, load_official_generator, load_official_tokenizer
from grn.errors import CheckpointError, check_finite
from grn.fileio import COMMITTED_DIR, is_committed, read, save_torch
from grn.registry import KINDS
from grn.tokenizer import HBQTokenizer, TokenizerConfig

TOKENIZER_KIND = "hbq-tokenizer"  # the `kind` of a tokenizer record (generators: grn.registry.KINDS)


def content_sha256(state_dict: dict) -> str:
    """sha256 over (key, dtype, shape, bytes) of every tensor, keys sorted: independent of the container."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def seal(record: dict) -> dict:
    """The record with `content_sha256` of its `state_dict` (written at save time, verified by `verify`)."""
    return {**record, "content_sha256": content_sha256(record["state_dict"])}


def verify(record: dict, path: str | Path) -> str:
    """Check a record written by this project: its content hash (when sealed) and finite weights.
    Returns how it was verified, for provenance."""
    state = record.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}': no state_dict in the checkpoint; it was not written by this project")
    want = record.get("content_sha256")
    if want is not None:
        got = content_sha256(state)
        if got != want:
            raise CheckpointError(
                f"'{path}': the tensors do not match the content hash written when the file was saved "
                f"({got[:16]}... vs {want[:16]}...): the file is damaged; copy or export it again")
    check_finite(state.items(), f"'{path}'")
    if want is not None:
        return "content_sha256 verified"
    if is_committed(path):
        return "file sha256 verified against grn/checkpoints/SHA256SUMS"
    if Path(path).resolve().parent == COMMITTED_DIR:  # a file of the project's own must never be unverifiable
        raise CheckpointError(f"'{path}' is in grn/checkpoints/ but has neither a content hash nor a line in "
                              f"grn/checkpoints/SHA256SUMS, so it cannot be verified; re-export it (sealed), or list "
                              f"it with `python -c \"from grn.fileio import record_committed; "
                              f"record_committed('{Path('grn/checkpoints') / Path(path).name}')\"`")
    return "unverified: no content hash recorded (written by an older version; re-export to seal it)"


def load_state(model: nn.Module, state: dict, path: str | Path) -> nn.Module:
    """Strict load_state_dict naming the first mismatching key (float weights cast to the model's dtype)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        first = f"missing key '{missing[0]}'" if missing else f"unexpected key '{unexpected[0]}'"
        raise CheckpointError(f"'{path}': {first} ({len(missing)} missing, {len(unexpected)} unexpected): the file's "
                              f"weights are not those of the model its config describes")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"'{path}': key '{k}' has shape {tuple(state[k].shape)} in the file, the config "
                                  f"builds {tuple(v.shape)}: the weights and the config do not belong together")
    model.load_state_dict({k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()})
    return model


# ---------------------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------------------


def checkpoint_record(model, name: str, state_dict: dict, **extra) -> dict:
    """What an exported generator checkpoint holds (weights in bf16 keep committed files small), sealed."""
    state = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state_dict.items()}
    return seal({"kind": model.kind, "name": name, "config": asdict(model.cfg), "state_dict": state, **extra})


def read_generator_record(path: str | Path):
    """The raw checkpoint of a generator file (this project's record or an official C2I file), kind-checked."""
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
    """Load any generator checkpoint (GRN or a baseline; official C2I files too), verified (content hash,
    finite weights). `build` goes to the model's constructor (a text-to-image GRN with an open_clip text
    tower takes `clip_weights`); `record` is the already-read file, if the caller has it."""
    path = Path(path)
    ck = read_generator_record(path) if record is None else record
    if is_official_generator(ck):  # an official GRN C2I file: its EMA 0.9999 weights, size read off them
        model = load_official_generator(ck, name=None, which="ema1" if "model_ema1" in ck else "raw")
        check_finite(model.state_dict().items(), f"'{path}'")
        model.integrity = "official file: finite weights checked"
        return model.to(device)
    kind = KINDS[ck["kind"]]
    integrity = verify(ck, path)
    try:
        cfg = kind.config_from_dict(ck["config"])
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"'{path}': its config cannot build a {ck['kind']} model ({e}); the file is damaged "
                              f"or from an incompatible version") from e
    model = load_state(kind.model(cfg, **build), ck["state_dict"], path)
    model.integrity = integrity
    return model.eval().to(device)


def convert_official_generator(src, name: str, out: str | Path, which: str = "ema1") -> Path:
    """Write an official generator checkpoint in this project's format (what suites load)."""
    model = load_official_generator(src, name, which)
    save_torch(checkpoint_record(model, name, model.state_dict(), source=f"official {which}",
                                 source_file=Path(src).name if isinstance(src, (str, Path)) else None), out)
    return Path(out)


# ---------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------


def export_tokenizer(model: HBQTokenizer, path: Path, dtype=torch.bfloat16, extra: dict | None = None) -> None:
    """Write the (EMA) weights and config, in bf16 by default (small enough to commit), sealed."""
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_torch(seal({"kind": TOKENIZER_KIND, "config": asdict(model.cfg), "state_dict": state, **(extra or {})}),
               path)


def tokenizer_from_record(ck, path: str | Path) -> HBQTokenizer:
    """A verified tokenizer from a read file: this project's record (content hash, finite weights, strict
    keys) or an official checkpoint (converted; finite weights checked)."""
    if is_official_tokenizer(ck):
        model = load_official_tokenizer(ck)
        check_finite(model.state_dict().items(), f"'{path}'")
        model.integrity = "official file: finite weights checked"
        return model
    kind = ck.get("kind") if isinstance(ck, dict) else None
    if kind != TOKENIZER_KIND:
        if kind in KINDS:
            raise CheckpointError(f"'{path}' is a {kind} generator checkpoint, not a tokenizer: give it as the "
                                  f"model's `checkpoint:` and an HBQ tokenizer file as its `tokenizer:`")
        raise CheckpointError(f"'{path}' is not an HBQ tokenizer checkpoint written by this project (kind {kind!r})")
    integrity = verify(ck, path)
    try:
        cfg_dict = dict(ck["config"])
        cfg_dict["dim_mult"] = tuple(cfg_dict["dim_mult"])
        cfg = TokenizerConfig(**cfg_dict)
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"'{path}': its config cannot build a tokenizer ({e}); the file is damaged or from an "
                              f"incompatible version") from e
    model = load_state(HBQTokenizer(cfg), ck["state_dict"], path)
    model.integrity = integrity
    return model.eval()


def load_tokenizer(path: str | Path, device="cpu") -> HBQTokenizer:
    """A tokenizer file in this project's format, or an official one (told apart by its `ema`/`vae` entries)."""
    return tokenizer_from_record(read(path, "tokenizer checkpoint"), path).to(device)


def convert_official_tokenizer(src, out: str | Path) -> Path:
    """Write the official tokenizer in this project's format, in float32 (the released weights' precision)."""
    model = load_official_tokenizer(src)
    export_tokenizer(model, Path(out), dtype=torch.float32,
                     extra={"source": "official", "source_file": Path(src).name if isinstance(src, (str, Path))
                            else None})
    return Path(out)

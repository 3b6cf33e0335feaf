"""Reading and sealing checkpoint files: every check a weights file passes before it produces a number.

- `read` opens a file and turns every way it can fail (missing, empty, truncated, garbled, not a
  PyTorch file) into one `CheckpointError` naming the file and the fix.
- `seal` writes a content hash of the tensors into a checkpoint record at save time (`content_sha256`:
  dtype, shape and bytes of every tensor, keys sorted), so any later change of a tensor byte is found
  at load, whatever the file's container bytes are; `verify` checks it and that no weight is NaN/Inf.
- The files committed in `grn/checkpoints/` are listed with their sha256 in `grn/checkpoints/SHA256SUMS`
  and checked whenever one of them is read.
- `load_state` loads a state dict strictly and names the first key that is missing, unexpected or of
  another shape, instead of torch's multi-page message.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from grn.errors import CheckpointError, check_finite

COMMITTED_DIR = Path(__file__).resolve().parent / "checkpoints"
MANIFEST = COMMITTED_DIR / "SHA256SUMS"
TOKENIZER_KIND = "hbq-tokenizer"  # the `kind` of a tokenizer record (generators: grn.registry.KINDS)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (official checkpoints run to gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


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


def committed_sha256() -> dict[str, str]:
    """File name -> sha256 of the checkpoints committed in grn/checkpoints/ (SHA256SUMS, `sha256sum` format)."""
    if not MANIFEST.is_file():
        return {}
    out = {}
    for line in MANIFEST.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[name.strip().lstrip("*")] = digest
    return out


def _check_committed(path: Path) -> None:
    if path.resolve().parent != COMMITTED_DIR:
        return
    want = committed_sha256().get(path.name)
    if want is None:
        return
    got = sha256_file(path)
    if got != want:
        raise CheckpointError(
            f"'{path}': sha256 {got[:16]}... differs from the committed {want[:16]}... (grn/checkpoints/SHA256SUMS): "
            f"the file was changed or damaged. Fix: `git checkout -- {Path('grn/checkpoints') / path.name}`, or "
            f"re-train it with `nox -s train_embedded`")


def read(path: str | Path, what: str = "checkpoint"):
    """torch.load with every failure as one CheckpointError (and the committed files' sha256 checked)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} '{path}' does not exist; check the path (relative paths are taken from the "
                              f"suite's folder or the working directory)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} '{path}' is empty (0 bytes): an interrupted copy or download; copy it again")
    _check_committed(path)
    try:
        try:  # memory-mapped: validating a multi-GB official file does not read its tensors into memory
            return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=False)  # the legacy (non-zip) format
    except Exception as e:  # zipfile, pickle, EOF and torch's own errors all mean: not a readable checkpoint
        raise CheckpointError(
            f"{what} '{path}' cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}): "
            f"the file is truncated, damaged or not a PyTorch checkpoint; copy or export it again") from e


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
    if Path(path).resolve().parent == COMMITTED_DIR and Path(path).name in committed_sha256():
        return "file sha256 verified against grn/checkpoints/SHA256SUMS"
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

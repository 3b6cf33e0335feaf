"""Files, written and read one way everywhere: atomic writes, sha256 of a file, reading a checkpoint file.

- `atomic_path` / `atomic_write`: write next to the target and rename over it only when the write
  succeeded, so a reader (or a resumed run) never sees half a file.
- `save_torch`: torch.save through a buffer: torch names the archive after the file it writes, so
  saving in memory first makes the bytes (and the sha256) depend only on the object.
- `read`: torch.load with every way a file can fail (missing, empty, truncated, garbled, not a
  PyTorch file) as one `CheckpointError` naming the file and the fix; the files committed in
  `grn/checkpoints/` are checked against their sha256 in `grn/checkpoints/SHA256SUMS` first;
  `record_committed` writes a re-trained one's sha256 there.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path

import torch

from grn.errors import CheckpointError, UserError

COMMITTED_DIR = Path(__file__).resolve().parent / "checkpoints"
MANIFEST = COMMITTED_DIR / "SHA256SUMS"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (official checkpoints run to gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def sha256_tree(folder: str | Path) -> str:
    """Hex sha256 of a folder's contents: every file below it (hidden ones too), as its relative path and sha256,
    in sorted order. A file added, removed, renamed or changed changes it; the folder's own name and the files'
    times do not."""
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(folder).as_posix()} {sha256_file(path)}\n".encode())
    return h.hexdigest()


def safe_name(name: str) -> str:
    """A model's name as one folder name (run folders: <run>/samples/<name>/): characters other than letters,
    digits and -_.=, become _."""
    return "".join(c if c.isalnum() or c in "-_.=," else "_" for c in name)


NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.=")
NAME_MAX = 100  # room for the suffixes appended to it (`_quality_vs_latency.png`) under the 255-byte limit


def check_output_name(name: str, where: str) -> str:
    """`name` (a suite's `name`, an --out prefix's last part) as the one file-name part that outputs are made from
    by appending suffixes (`<name>.csv`, `<name>_summary.csv`); raises UserError naming `where` unless it is one.
    Refused: a path separator or '..' (it would write outside its folder, or half into a new one), a leading dot
    (a hidden file; `Path.with_suffix` reads `.v2` as a suffix), and any character but ASCII letters, digits and
    -_.= (no shell quoting, and the same name on every file system and in HTML links)."""
    if not isinstance(name, str):
        raise UserError(f"{where}: the name must be text, got {type(name).__name__} ({name!r})")
    if not name:
        problem = "it is empty"
    elif "/" in name or "\\" in name:
        problem = "it holds a path separator"
    elif ".." in name:
        problem = "it holds '..'"
    elif name.startswith("."):
        problem = "it starts with a dot"
    elif set(name) - NAME_CHARS:
        problem = f"it holds {', '.join(repr(c) for c in sorted(set(name) - NAME_CHARS))}"
    elif len(name) > NAME_MAX:
        problem = f"it is {len(name)} characters long (at most {NAME_MAX})"
    else:
        return name
    hint = "".join(c if c in NAME_CHARS else "_" for c in name.replace("..", "_")).lstrip("._")[:NAME_MAX]
    raise UserError(f"{where}: '{name}' cannot name output files: {problem}; use one name of letters, digits and "
                    f"- _ . = (no folders)" + (f", e.g. '{hint}'" if hint and hint != name else ""))


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write bytes or text to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def save_torch(obj, path: str | Path) -> None:
    """torch.save, atomically, with bytes that depend only on `obj` (the same object: the same sha256)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


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


def record_committed(path: str | Path) -> str:
    """Write the sha256 of `path`, a file in grn/checkpoints/, into SHA256SUMS (atomically; the other lines kept,
    names sorted) and return it: what re-training a committed checkpoint does, so that the files trained after
    it (a generator on a re-trained tokenizer) load it."""
    path = Path(path)
    if path.resolve().parent != COMMITTED_DIR:
        raise ValueError(f"{path} is not in {COMMITTED_DIR.name}/")
    listed = {**committed_sha256(), path.name: sha256_file(path)}
    atomic_write(MANIFEST, "".join(f"{listed[name]}  {name}\n" for name in sorted(listed)))
    return listed[path.name]


def is_committed(path: str | Path) -> bool:
    return Path(path).resolve().parent == COMMITTED_DIR and Path(path).name in committed_sha256()


def _check_committed(path: Path) -> None:
    if not is_committed(path):
        return
    want, got = committed_sha256()[path.name], sha256_file(path)
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
        first = str(e).splitlines()[0][:160] if str(e) else ""
        raise CheckpointError(f"{what} '{path}' cannot be read ({type(e).__name__}: {first}): the file is "
                              f"truncated, damaged or not a PyTorch checkpoint; copy or export it again") from e

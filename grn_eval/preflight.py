"""What a run checks before it claims its run folder, for `grn-eval validate` and the start of every run alike.

`check_suite` opens every model entry (grn_eval/model_check.py `check_entry`) and what the adapters from outside
the project point at (stored samples' count and layout, an entry point's import), and the reference file;
`entry_inputs` digests every input a model's samples depend on, for the run fingerprint. Above model_check and
the adapters of grn_eval/external.py, which it calls.
"""

from __future__ import annotations

from pathlib import Path

from grn.extras import need
from grn.fileio import sha256_file, sha256_tree
from grn.quantizers import check_installed
from grn_eval.external import (
    ImageFolderSamples,
    entry_folder,
    entry_point_source_sha256,
    importable_from,
    load_entry_point,
)
from grn_eval.model_check import CheckedFiles, ModelError, check_entry, resolve
from grn_eval.suite import check_reference_files

# the keys whose file or folder a model's samples depend on (a folder: every file in it, as grn.fileio.sha256_tree)
INPUT_KEYS = ("checkpoint", "tokenizer", "path", "prompts_file", "text_encoder")


def entry_inputs(entry, base: Path) -> dict[str, str]:
    """key -> sha256 of every input a model entry's samples depend on: its files (by content), its folders (every
    file's content: an image folder, a diffusers pipeline, a text encoder) and, for a `python` entry point, the
    source of the package (or module) it imports. What the run fingerprint hashes, so that a changed input never
    brings back the samples of the old one. A path that does not exist is hashed as its text (the checks that run
    before sampling name it)."""
    out = {}
    for key in INPUT_KEYS:
        value = entry.options.get(key)
        if not value or not isinstance(value, str):
            continue
        p = resolve(value, base)
        out[key] = sha256_file(p) if p.is_file() else sha256_tree(p) if p.is_dir() else f"absent:{value}"
    if entry.adapter == "python":
        folder = resolve(entry.options["path"], base) if entry.options.get("path") else None
        out["entry_source"] = entry_point_source_sha256(entry.options["entry"], folder)
    return out


def _placeholder(value) -> bool:
    """A value still holding an unset ${VAR} (validate lists those as needs and checks the rest)."""
    import json

    return "${" in json.dumps(value, default=str)


def check_suite(suite) -> dict[str, CheckedFiles]:
    """Everything a run checks before it claims its folder that needs no sampling, for `grn-eval validate` and for
    the start of every run alike (model label -> its checked files): check_entry for every model; samples served
    from files (an ADM batch, an image folder: layout and count) are enough for n_samples; an entry point imports
    and names a callable; the reference file exists and matches its pin. Entries and references that still hold an
    unset ${VAR} (validate only) are left to the run."""
    base, out = suite.path.parent, {}
    for entry in suite.models:
        if _placeholder(entry.options):
            continue
        where = f"{suite.path}: model '{entry.name}'"
        out[entry.name] = check_entry(entry, base, suite.path)
        stored = _stored_count(entry, out[entry.name], base)
        if stored is not None and stored < suite.n_samples:
            raise ModelError(f"{where}: path: '{entry.options['path']}' holds {stored} samples, the suite asks for "
                             f"n_samples {suite.n_samples}; lower n_samples or add samples")
        if entry.adapter == "python":
            _check_entry_point(entry, base, where)
        if entry.adapter == "diffusers":  # an optional part of the install: the extra is named before anything runs
            need("diffusers", "diffusers", f"{where}: adapter: diffusers")
        tok = out[entry.name].tokenizer_record
        config = tok.get("config") if isinstance(tok, dict) else None
        if isinstance(config, dict) and not config.get("continuous"):
            check_installed(str(config.get("quantizer", "hbq")), f"{where}: tokenizer")
        if entry.options.get("text_encoder"):
            need("transformers", "umt5", f"{where}: text_encoder (UMT5-XXL)")
    _check_reference_file(suite)
    check_reference_files(suite)  # its contents: statistics a valid covariance, an ADM batch's members and size
    return out


def _stored_count(entry, files: CheckedFiles, base: Path) -> int | None:
    """How many samples an adapter that serves stored samples holds (None: it samples from seeds)."""
    if entry.adapter == "npz":
        from grn.data import load_npz

        return len(load_npz(files.checkpoint))
    if entry.adapter == "imagefolder":
        return len(ImageFolderSamples(entry, base, None).files)  # its layout is checked on the way
    return None


def _check_entry_point(entry, base: Path, where: str) -> None:
    """The entry point's module imports and its attribute is callable (the factory itself is called by the run)."""
    with importable_from(entry_folder(entry, base, where)):
        load_entry_point(entry.options["entry"], f"model '{entry.name}'")


def _check_reference_file(suite) -> None:
    """A reference statistics file or ADM batch exists and matches its pin (read again by the run)."""
    ref = suite.reference
    key = "stats" if "stats" in ref else "npz" if "npz" in ref else None
    if key is None or _placeholder(ref[key]):
        return
    path = resolve(ref[key], suite.path.parent)
    if not path.is_file():
        raise ModelError(f"{suite.path}: reference.{key}: '{ref[key]}' not found; give the path of the "
                         f"{'statistics (.npz with mu, sigma)' if key == 'stats' else 'ADM batch'} file (relative to "
                         f"the working directory or the suite's folder)")
    digest = sha256_file(path) if ref.get("sha256") else None
    if digest is not None and digest != ref["sha256"].lower():
        raise ModelError(f"{suite.path}: reference.sha256: '{path}' has sha256 {digest}, the suite expects "
                         f"{ref['sha256']}; point the suite at the right file or update the pin")

"""Checkpoints that record no content hash: allowed, but never silently (grn/checkpoint.py verify,
grn_eval/model_check.py integrity). A file of the project's own in grn/checkpoints/ must be verifiable;
a suite's sha256 pin verifies a file that carries no hash of its own."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import grn.checkpoint as C
from grn.checkpoint import load_model
from grn.errors import CheckpointError
from grn.fileio import save_torch, sha256_file
from grn_eval.adapters import build_adapter
from grn_eval.suite import load_suite

CKPT = Path(__file__).resolve().parents[1] / "grn" / "checkpoints"


def _unsealed(folder: Path) -> Path:
    """The committed MNIST generator without its content hash (as an older version wrote it)."""
    record = torch.load(CKPT / "generator_mnist.pt", map_location="cpu", weights_only=False)
    record.pop("content_sha256")
    out = folder / "generator_unsealed.pt"
    save_torch(record, out)
    return out


def test_an_unsealed_file_is_unverified_unless_pinned(tmp_path):
    path = _unsealed(tmp_path)
    assert load_model(path).integrity.startswith("unverified")
    entry = f"{{name: g, adapter: grn, checkpoint: '{path}', tokenizer: '{CKPT / 'tokenizer_mnist.pt'}'"
    for pin, want in (("", "unverified"), (f", checkpoint_sha256: {sha256_file(path)}", "file sha256 verified")):
        suite = tmp_path / "s.yaml"
        suite.write_text("name: t\ndatasets: {ref: {name: mnist, split: reference}}\nmodels:\n"
                         f"  - {entry}{pin}}}\nmetrics: {{prompt_accuracy: {{}}}}\nreference: {{dataset: ref}}\n")
        s = load_suite(suite, check_assets=False)
        prov = build_adapter(s.models[0], tmp_path, torch.device("cpu")).provenance()
        assert prov["checkpoint_integrity"].startswith(want)
        assert "verified" in prov["tokenizer_integrity"] and not prov["tokenizer_integrity"].startswith("unverified")


def test_a_file_of_the_project_must_be_verifiable(tmp_path, monkeypatch):
    path = _unsealed(tmp_path)
    monkeypatch.setattr(C, "COMMITTED_DIR", tmp_path)  # as if it had been put into grn/checkpoints/ unlisted
    with pytest.raises(CheckpointError, match="in grn/checkpoints/ but has neither a content hash nor a line in"):
        load_model(path)

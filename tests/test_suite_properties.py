"""Property test of the suite schema (hypothesis): a suite built from random keys, types and values either
validates or is refused with one `error:`/`invalid` line naming the file; it never reaches the internal-error
path (exit 70) and never prints a traceback.

Each example starts from a valid suite (one of a few, covering the model kinds, the stored-sample adapters and
the three kinds of reference) and applies a few random edits: a key set to a random value (numbers, NaN,
strings, paths, lists, mappings, null), a key deleted, an unknown key added. `validate` runs the suite loader and
the checks a run makes before it claims its folder (grn_eval/preflight.py), so the committed checkpoints are
opened too. `nox -s tests` runs a few hundred examples; `tests_slow` runs thousands."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grn_eval.cli import main

CKPT = (Path(__file__).resolve().parents[1] / "grn" / "checkpoints").as_posix()
GRN = {"name": "GRN", "adapter": "grn", "checkpoint": f"{CKPT}/generator_mnist.pt",
       "tokenizer": f"{CKPT}/tokenizer_mnist.pt", "sampler": {"steps": 4, "guidance": 3.0, "temperature": 0.8}}
BASES = [
    {"name": "prop", "datasets": {"ref": {"name": "mnist", "split": "reference"}}, "models": [GRN],
     "metrics": {"fid": {}, "kid": {"subsets": 10, "subset_size": 20}, "prc": {"k": 3}},
     "reference": {"dataset": "ref"}, "n_samples": 40, "batch_size": 20, "seeds": [0, 1]},
    {"name": "prop_recon", "datasets": {"ref": {"name": "photos", "split": "val", "crop_size": 32}},
     "models": [{"name": "tok", "adapter": "tokenizer", "checkpoint": f"{CKPT}/tokenizer_photo_M4.pt", "rounds": 2}],
     "metrics": {"psnr": {}, "ssim": {}, "rfid": {}}, "reference": {"dataset": "ref"}, "n_samples": 16},
    {"name": "prop_entropy", "datasets": {"ref": {"name": "mnist", "split": "reference"}},
     "models": [{**GRN, "entropy": {"warmup": 2, "t_min": 4, "t_max": 8}}, {**GRN, "name": "AR", "adapter": "ar",
                                                                            "checkpoint": f"{CKPT}/ar_mnist.pt",
                                                                            "sampler": {"temperature": 1.0}}],
     "metrics": {"entropy": {}, "prompt_accuracy": {}}, "reference": {"dataset": "ref"}, "export": ["npz"]},
]
# the adapters that read files: their bases are written per example (samples.npz, a folder of images)
STORED = {"name": "prop_stored", "datasets": {"ref": {"name": "mnist", "split": "reference"}},
          "models": [{"name": "z", "adapter": "npz", "path": "samples.npz"},
                     {"name": "f", "adapter": "imagefolder", "path": "png"}],
          "metrics": {"fid": {}}, "reference": {"stats": "stats.npz"}, "n_samples": 4, "batch_size": 2}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["cpu", "cuda", "auto", "mnist", "../x", "a/b", "${NOPE}",
                                                           "grn", "npz", "fid", "samples.npz", "png", "0" * 64]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _paths(node, prefix=()):
    """Every key path of a nested suite (mappings and list elements)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield (*prefix, k)
        yield from _paths(v, (*prefix, k))


@st.composite
def edited_suites(draw):
    suite = copy.deepcopy(draw(st.sampled_from([*BASES, STORED])))
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(suite))
        path = draw(st.sampled_from(paths)) if paths else ()
        *parent_path, key = path or ("name",)
        parent = suite
        for p in parent_path:
            parent = parent[p]
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "set":
            parent[key] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            parent.pop(key, None)
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
    return suite


def _stored_files(folder: Path) -> None:
    from PIL import Image

    np.savez(folder / "samples.npz", arr_0=np.full((6, 32, 32, 3), 90, np.uint8))
    (folder / "png").mkdir(exist_ok=True)
    for i in range(5):
        Image.fromarray(np.full((32, 32, 3), 60 + i, np.uint8)).save(folder / "png" / f"{i}.png")
    np.savez(folder / "stats.npz", mu=np.zeros(2048), sigma=np.eye(2048))


def _check(tmp_path: Path, suite, capsys) -> None:
    path = tmp_path / "suite.yaml"
    try:
        path.write_text(yaml.safe_dump(suite, allow_unicode=True))
    except yaml.YAMLError:
        return  # not representable as YAML: no user could write it
    code = main(["validate", str(path)])
    out = capsys.readouterr()
    said = out.out + out.err
    assert code in (0, 1), said
    assert "internal error" not in said and "Traceback" not in said, said
    if code == 1:
        assert said.startswith("invalid  ") and str(path) in said, said


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    f = tmp_path_factory.mktemp("suites")
    _stored_files(f)
    return f


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(suite=edited_suites())
def test_random_suites_validate_or_are_refused_in_one_line(folder, capsys, suite):
    _check(folder, suite, capsys)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(suite=edited_suites())
def test_random_suites_many(folder, capsys, suite):
    _check(folder, suite, capsys)


def test_the_bases_are_valid(folder, capsys):
    for base in [*BASES, STORED]:
        path = folder / "suite.yaml"
        path.write_text(yaml.safe_dump(base))
        assert main(["validate", str(path)]) == 0, capsys.readouterr().out

"""`grn-eval validate` refuses every suite that `grn-eval run` refuses before sampling, with the same message,
and `run` refuses it before its run folder is claimed (no run.json, no shard): both call
grn_eval/preflight.py `check_suite` after the suite loads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grn_eval.cli import main

CKPT = Path(__file__).resolve().parents[1] / "grn" / "checkpoints"


def _write(tmp_path: Path, model: str, extra: str = "", name: str = "parity",
           reference: str = "{dataset: ref}", metrics: str = "prompt_accuracy: {}") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        datasets:
          ref: {{name: mnist, split: reference}}
        models:
          - {model}
        metrics:
          {metrics}
        reference: {reference}
        n_samples: 20
        batch_size: 10
        """) + extra)
    return path


def _cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (suite file, a part of the one message both commands must print)."""
    np.savez(tmp_path / "few.npz", arr_0=np.full((5, 32, 32, 3), 100, np.uint8))
    few = tmp_path / "few_png"
    few.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 60 + i, np.uint8)).save(few / f"{i}.png")
    mixed = tmp_path / "mixed"
    (mixed / "a").mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 60, np.uint8)).save(mixed / "top.png")
    Image.fromarray(np.full((32, 32, 3), 70, np.uint8)).save(mixed / "a" / "x.png")
    (tmp_path / "noattr_gen.py").write_text("X = 1\n")
    np.savez(tmp_path / "batch.npz", arr_0=np.full((30, 32, 32, 3), 100, np.uint8))
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    grn = f"checkpoint: '{CKPT / 'generator_mnist.pt'}', tokenizer: '{CKPT / 'tokenizer_mnist.pt'}'"
    sub = {}

    def case(key, message, model, **kw):
        folder = tmp_path / key
        folder.mkdir()
        sub[key] = (_write(folder, model, **kw), message)

    case("npz_short", "holds 5 samples, the suite asks for n_samples 20",
         f"{{name: m, adapter: npz, path: '{tmp_path / 'few.npz'}'}}")
    case("folder_short", "holds 3 samples, the suite asks for n_samples 20",
         f"{{name: m, adapter: imagefolder, path: '{few}'}}")
    case("folder_mixed", "images at its top level", f"{{name: m, adapter: imagefolder, path: '{mixed}'}}")
    case("folder_absent", "is not a folder of images",
         f"{{name: m, adapter: imagefolder, path: '{tmp_path / 'nowhere'}'}}")
    case("entry_import", "cannot import 'no_such_module_here'",
         "{name: m, adapter: python, entry: 'no_such_module_here:make'}")
    case("entry_attr", "'noattr_gen' has no 'make'", f"{{name: m, adapter: python, entry: 'noattr_gen:make', "
                                                      f"path: '{tmp_path}'}}")
    case("entry_path", "is not a folder", f"{{name: m, adapter: python, entry: 'x:make', "
                                          f"path: '{tmp_path / 'nowhere'}'}}")
    case("stats_absent", "reference.stats: 'absent.npz' not found", f"{{name: m, adapter: grn, {grn}}}",
         reference="{stats: absent.npz}")
    case("npz_pin", "reference.sha256", f"{{name: m, adapter: grn, {grn}}}",
         reference=f"{{npz: '{tmp_path / 'batch.npz'}', sha256: {'0' * 64}}}")
    case("name_dots", "'../escape' cannot name output files", f"{{name: m, adapter: grn, {grn}}}",
         name="'../escape'")
    case("name_slash", "cannot name output files: it holds a path separator", f"{{name: m, adapter: grn, {grn}}}",
         name="tiny/v2")
    case("kind", "holds a 'grn' model, the suite says adapter 'ar'", f"{{name: m, adapter: ar, {grn}}}")
    sub["binary"] = (tmp_path / "binary.yaml", "not a text file")
    return sub


def test_validate_refuses_what_run_refuses_before_sampling(tmp_path, capsys):
    cases = _cases(tmp_path)
    for key, (suite, message) in cases.items():
        assert main(["validate", str(suite)]) == 1, key
        said = capsys.readouterr().out
        assert message in said, (key, said)
        run_dir = tmp_path / f"run_{key}"
        assert main(["run", str(suite), "--run-dir", str(run_dir), "--quiet"]) == 1, key
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "internal error" not in err, (key, err)
        assert not (run_dir / "run.json").exists() and not list(run_dir.rglob("*.npz")), key


@pytest.mark.parametrize("content", [b"", b"[1, 2]", b'{"fingerprint": ', b'{"suite": "x"}'])
def test_a_damaged_run_record_is_one_message(tmp_path, capsys, content):
    suite = _write(tmp_path, f"{{name: m, adapter: grn, checkpoint: '{CKPT / 'generator_mnist.pt'}', tokenizer: "
                             f"'{CKPT / 'tokenizer_mnist.pt'}'}}")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_bytes(content)
    assert main(["run", str(suite), "--run-dir", str(tmp_path / "r"), "--quiet"]) == 1
    assert "is damaged (not a run record with a fingerprint)" in capsys.readouterr().err
    assert (tmp_path / "r" / "run.json").read_bytes() == content  # left as it was


def test_a_file_where_a_folder_must_be_is_one_message(tmp_path, capsys, monkeypatch):
    suite = _write(tmp_path, f"{{name: m, adapter: grn, checkpoint: '{CKPT / 'generator_mnist.pt'}', tokenizer: "
                             f"'{CKPT / 'tokenizer_mnist.pt'}'}}")
    (tmp_path / "afile").write_text("x")
    assert main(["run", str(suite), "--run-dir", str(tmp_path / "afile"), "--quiet"]) == 1
    assert "is a file; pass a folder as --run-dir" in capsys.readouterr().err
    monkeypatch.setenv("GRN_CACHE", str(tmp_path / "afile"))  # FID's network is converted into the cache
    suite = _write(tmp_path, f"{{name: m, adapter: grn, checkpoint: '{CKPT / 'generator_mnist.pt'}', tokenizer: "
                             f"'{CKPT / 'tokenizer_mnist.pt'}'}}", metrics="fid: {}")
    assert main(["run", str(suite), "--run-dir", str(tmp_path / "r"), "--quiet"]) == 1
    assert "is a file; set GRN_CACHE to a writable folder" in capsys.readouterr().err

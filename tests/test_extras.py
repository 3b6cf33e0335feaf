"""The optional parts of the install (grn/extras.py): without its package, a feature stops with one message
that names the extra to install, before anything runs (validate included)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from grn.errors import UserError
from grn.extras import EXTRAS, need
from grn_eval.cli import main


@pytest.mark.parametrize("extra,module", [(e, m) for e, ms in EXTRAS.items() for m in ms])
def test_a_missing_package_names_its_extra(monkeypatch, extra, module):
    assert need(module, extra, "x") is sys.modules[module]  # installed here (nox installs every extra)
    monkeypatch.setitem(sys.modules, module, None)  # what `import` sees when the package is not installed
    with pytest.raises(UserError, match=rf"the feature needs the optional package '{module}'.*grn-eval\[{extra}\]"):
        need(module, extra, "the feature")


def test_the_quantizer_study_and_the_diffusers_adapter_name_their_extra(monkeypatch, tmp_path, capsys):
    from grn.quantizers import build_quantizer

    monkeypatch.setitem(sys.modules, "vector_quantize_pytorch", None)
    with pytest.raises(UserError, match=r"the FSQ quantizer needs .*grn-eval\[quantizers\]"):
        build_quantizer("fsq", 4, 16)
    assert build_quantizer("hbq", 4, 16) is not None  # HBQ is the project's own: no extra
    root = Path(__file__).resolve().parents[1]
    assert main(["validate", str(root / "suites" / "quant_study.yaml")]) == 1  # its FSQ / LFQ / VQ tokenizers
    assert "tokenizer: the FSQ quantizer needs the optional package" in capsys.readouterr().out
    assert main(["validate", str(root / "suites" / "mnist_recon.yaml")]) == 0  # HBQ only
    monkeypatch.setitem(sys.modules, "diffusers", None)
    (tmp_path / "pipe").mkdir()
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent(f"""\
        name: extras
        datasets: {{ref: {{name: mnist, split: reference}}}}
        models: [{{name: dit, adapter: diffusers, path: '{tmp_path / "pipe"}'}}]
        metrics: {{fid: {{}}}}
        reference: {{dataset: ref}}
        """))
    assert main(["validate", str(suite)]) == 1
    assert "adapter: diffusers needs the optional package 'diffusers'" in capsys.readouterr().out
    assert main(["run", str(suite), "--run-dir", str(tmp_path / "r"), "--quiet"]) == 1
    assert 'pip install "grn-eval[diffusers]"' in capsys.readouterr().err
    assert not (tmp_path / "r").exists()

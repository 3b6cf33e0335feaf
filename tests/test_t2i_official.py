"""suites/t2i_official.yaml (the released GRN_T2I_2B, UMT5, CLIP score on prompts from a file) and the text
adapters' `prompts_file:` option: the suite validates and names its variables, a run without them stops in one
line, a run with them stops at the grn-bit refusal (prompts are not yet encoded with UMT5 by the adapter) before
anything is written, and a prompts file is read, stripped and checked with errors naming the key."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from grn_eval.cli import main
from grn_eval.suite import SuiteError, load_suite

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "t2i_official.yaml"
VARS = ("GRN_T2I_2B", "GRN_UMT5", "GRN_T2IV_TOKENIZER")
CKPT = ROOT / "grn" / "checkpoints"


@pytest.fixture
def no_vars(monkeypatch):
    for var in VARS:
        monkeypatch.delenv(var, raising=False)


def test_the_suite_validates_and_says_which_variables_to_set(no_vars, capsys):
    assert main(["validate", str(SUITE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok") and "to run it set GRN_T2IV_TOKENIZER, GRN_T2I_2B, GRN_UMT5" in out
    suite = load_suite(SUITE, check_assets=False)
    assert suite.needs == tuple(sorted(VARS)) and set(suite.metrics) == {"clip_score"}
    (model,) = suite.models
    assert model.adapter == "grn-bit" and model.options["sampler"] == {"preset": "GRN-2B-t2i"}
    assert model.options["text_encoder"] == "${GRN_UMT5}" and model.options["tokenizer"] == "${GRN_T2IV_TOKENIZER}"
    prompts = model.options["prompts"]  # read from suites/prompts/t2i_official.txt
    assert len(prompts) == 20 and len(set(prompts)) == 20
    assert all(p == p.strip() and p and not p.startswith("#") for p in prompts)


def test_a_run_without_the_variables_stops_at_once_in_one_line(no_vars, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where the default output folder (results/runs) would be made
    start = time.perf_counter()
    code = main(["run", str(SUITE), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and time.perf_counter() - start < 30
    assert "needs the environment variables" in err[0] and all(v in err[0] for v in VARS)
    assert "Traceback" not in err[0] and list(tmp_path.iterdir()) == []  # nothing written


def _released_files(tmp_path, text_channels: int = 16):
    """A released-style GRN_bit record (no text encoder of its own, conditioned on UMT5 states of
    `text_channels`) and an HBQ tokenizer of its 4 channels x 4 rounds, at test size."""
    from grn import registry
    from grn.checkpoint import checkpoint_record, export_tokenizer
    from grn.fileio import save_torch
    from grn.tokenizer import build_tokenizer

    torch.manual_seed(0)
    official = registry.build_model("GRN-bit-T", latent_channels=4, text_channels=text_channels)
    save_torch(checkpoint_record(official, "GRN-bit-T", official.state_dict()), tmp_path / "grn_bit.pt")
    export_tokenizer(build_tokenizer("hbq-mnist", enc_dim=8, dec_dim=8), tmp_path / "tokenizer.pt")


def test_a_run_with_the_variables_stops_at_the_clip_weights_before_writing(tmp_path, monkeypatch, capsys):
    """With the model, tokenizer and UMT5 paths set, the next missing asset (the real CLIP weights of the clip
    score, absent offline) stops the run in one line, before anything is sampled or written."""
    from tests.test_text_encoders import _write_tiny_umt5

    _released_files(tmp_path)
    monkeypatch.setenv("GRN_T2I_2B", str(tmp_path / "grn_bit.pt"))
    monkeypatch.setenv("GRN_T2IV_TOKENIZER", str(tmp_path / "tokenizer.pt"))
    monkeypatch.setenv("GRN_UMT5", str(_write_tiny_umt5(tmp_path / "umt5")))
    monkeypatch.delenv("GRN_CLIP_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hub"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # the prompts file still resolves against the suite's folder
    capsys.readouterr()  # what writing the tiny UMT5 printed
    code = main(["run", str(SUITE), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "Traceback" not in err[0]
    assert "clip" in err[0].lower() and "GRN_CLIP_WEIGHTS" in err[0]
    assert list(work.iterdir()) == []  # no run folder, not even a half-written one


def test_a_released_model_without_text_encoder_is_refused_naming_the_key(tmp_path):
    from types import SimpleNamespace

    from grn_eval.model_check import ModelError, check_entry

    _released_files(tmp_path)
    entry = SimpleNamespace(name="GRN-2B", adapter="grn-bit",
                            options={"checkpoint": "grn_bit.pt", "tokenizer": "tokenizer.pt"})
    with pytest.raises(ModelError, match="model 'GRN-2B': text_encoder: 'grn_bit.pt' is a released GRN_bit model, "
                                         "conditioned on UMT5-XXL states; give `text_encoder:`"):
        check_entry(entry, tmp_path)


def test_a_released_model_samples_in_a_suite_through_umt5_states(tmp_path):
    """The adapter encodes each prompt and the empty negative prompt with UMT5 once, and samples the released
    model with CFG against it (a tiny random UMT5 and GRN_bit: plumbing only, no number is a result)."""
    import yaml

    from grn_eval.adapters import build_adapter
    from grn_eval.runner import run_suite
    from grn_eval.suite import load_suite
    from tests.test_text_encoders import _write_tiny_umt5

    _released_files(tmp_path)
    _write_tiny_umt5(tmp_path / "umt5")
    entry = {"name": "GRN-2B", "adapter": "grn-bit", "checkpoint": "grn_bit.pt", "tokenizer": "tokenizer.pt",
             "text_encoder": "umt5", "prompts": ["a red cat", "the dog in the garden"],
             "sampler": {"preset": "GRN-2B-t2i", "steps": 3, "height": 4, "width": 4}}
    data = {"name": "tiny_released", "datasets": {"ref": {"name": "mnist", "split": "reference"}}, "models": [entry],
            "metrics": {"entropy": {}}, "reference": {"dataset": "ref"}, "n_samples": 4, "batch_size": 4}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    suite = load_suite(path)
    adapter = build_adapter(suite.models[0], tmp_path, torch.device("cpu"))
    assert adapter.states.shape[:2] == (2, 6) and adapter.lens.tolist() == [4, 6]  # words + </s>
    assert adapter.neg_lens.tolist() == [1]  # the empty prompt is `</s>` alone
    images, trace = adapter.generate(np.array([0, 1, 1]), [5, 6, 7])
    assert images.shape == (3, 16, 16, 3) and trace["nfe"] == [2, 2, 2]  # CFG against the empty prompt
    again, _ = adapter.generate(np.array([0, 1, 1]), [5, 6, 7])
    assert np.array_equal(images, again)
    prov = adapter.provenance()
    assert prov["text_encoder"]["encoder"] == "umt5" and prov["negative_prompt"] == ""
    assert prov["text_encoder"]["weights_sha256"]
    res = run_suite(suite, run_dir=tmp_path / "run", progress=False)
    assert next(r for r in res["rows"] if r["metric"] == "mean_steps")["value"] == 3


# ---------------------------------------------------------------------------------------
# prompts_file
# ---------------------------------------------------------------------------------------


def _suite(folder: Path, **model) -> Path:
    entry = {"name": "t2i", "adapter": "grn-t2i", "checkpoint": str(CKPT / "t2i_mnist.pt"),
             "tokenizer": str(CKPT / "tokenizer_mnist.pt"), **model}
    data = {"name": "pf", "datasets": {"ref": {"name": "mnist", "split": "reference"}}, "models": [entry],
            "metrics": {"entropy": {}}, "reference": {"dataset": "ref"}, "n_samples": 4, "batch_size": 4}
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_prompts_file_is_read_stripped_relative_to_the_suite(tmp_path, monkeypatch):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "prompts.txt").write_text("# digits\n\n  a handwritten seven  \n\t\nthe digit 3\r\n   \n")
    path = _suite(tmp_path, prompts_file="p/prompts.txt")
    monkeypatch.chdir(ROOT)  # another working directory: the path is the suite's
    (model,) = load_suite(path).models
    assert model.options["prompts"] == ["a handwritten seven", "the digit 3"]
    assert model.options["prompts_file"] == "p/prompts.txt"


def test_prompts_file_errors_name_the_key_and_the_fix(tmp_path):
    key = r"models\[0\]\.prompts_file"
    with pytest.raises(SuiteError, match=key + r": file 'nope.txt' not found.*one prompt per line"):
        load_suite(_suite(tmp_path, prompts_file="nope.txt"))
    (tmp_path / "empty.txt").write_text("\n  \n# only a comment\n")
    with pytest.raises(SuiteError, match=key + r": 'empty.txt' holds no prompts.*one prompt per line"):
        load_suite(_suite(tmp_path, prompts_file="empty.txt"))
    (tmp_path / "ok.txt").write_text("the digit 1\n")
    with pytest.raises(SuiteError, match=key + r": the prompts are given twice"):
        load_suite(_suite(tmp_path, prompts_file="ok.txt", prompts=["the digit 2"]))
    (tmp_path / "folder").mkdir()
    with pytest.raises(SuiteError, match=key + r": file 'folder' not found \(it is a folder\)"):
        load_suite(_suite(tmp_path, prompts_file="folder"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(SuiteError, match=key + r": 'bin.txt' cannot be read as text"):
        load_suite(_suite(tmp_path, prompts_file="bin.txt"))
    with pytest.raises(SuiteError, match=r"models\[0\]\.prompts_file: unknown key"):  # only the prompted adapters
        load_suite(_suite(tmp_path, adapter="grn", checkpoint=str(CKPT / "generator_mnist.pt"), prompts_file="ok.txt"))


def test_the_text_adapter_samples_the_file_prompts_and_records_the_file(tmp_path):
    from grn_eval.adapters import build_adapter
    from grn_eval.runner import Runner

    (tmp_path / "prompts.txt").write_text("a handwritten seven\nthe digit 3\nthe digit 8\n")
    suite = load_suite(_suite(tmp_path, prompts_file="prompts.txt"))
    adapter = build_adapter(suite.models[0], suite.path.parent, torch.device("cpu"))
    assert adapter.prompts == ["a handwritten seven", "the digit 3", "the digit 8"] and adapter.num_classes == 3
    assert adapter.asked_digits([0, 1, 2]).tolist() == [7, 3, 8]
    prov = adapter.provenance()
    assert prov["prompts_file"] == "prompts.txt" and prov["prompts"] == adapter.prompts
    # the run folder follows the file's content (as it follows a checkpoint's)
    before = Runner(suite, run_dir=tmp_path / "run").fingerprint()
    (tmp_path / "prompts.txt").write_text("a handwritten seven\nthe digit 3\nthe digit 9\n")
    assert Runner(load_suite(suite.path), run_dir=tmp_path / "run").fingerprint() != before


def test_text_encoder_is_a_folder_of_the_released_models_only(tmp_path):
    from grn_eval.model_check import ModelError
    from grn_eval.preflight import check_suite

    bit = {"adapter": "grn-bit", "checkpoint": str(CKPT / "t2i_mnist_bit.pt")}
    with pytest.raises(SuiteError, match=r"models\[0\]\.text_encoder: folder 'umt5' not found"):
        load_suite(_suite(tmp_path, text_encoder="umt5", **bit))
    with pytest.raises(SuiteError, match=r"models\[0\]\.text_encoder: unknown key"):  # grn-t2i has its own encoder
        load_suite(_suite(tmp_path, text_encoder="umt5"))
    (tmp_path / "umt5").mkdir()
    with pytest.raises(ModelError, match=r"text_encoder: 't2i_mnist_bit.pt' was trained with its own text encoder"):
        check_suite(load_suite(_suite(tmp_path, text_encoder="umt5", **bit)))


def test_the_readme_lists_the_suite():
    row = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `t2i_official`"))
    assert all(f"`{v}`" in row for v in VARS) and "HBQ_tokenizer_64dim_M4" in row


def test_a_diffusers_pipeline_takes_a_prompts_file_too(tmp_path):
    (tmp_path / "prompts.txt").write_text("a red bicycle\n\na blue door\n")
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({
        "name": "d", "datasets": {"ref": {"name": "mnist", "split": "reference"}}, "metrics": {"entropy": {}},
        "reference": {"dataset": "ref"},
        "models": [{"name": "pipe", "adapter": "diffusers", "path": "pipe", "prompts_file": "prompts.txt"}]}))
    assert load_suite(path).models[0].options["prompts"] == ["a red bicycle", "a blue door"]

"""grn_eval/video_budget.py, the prepared GPU study of prompt accuracy against training budget: its dry run on
the CPU (every path: scaled configs, milestone training with resume, EMA export, the suite's adapters, the
pixel recovery, the committed-form generator files) and its known answers. Toy runs measure nothing; the
checks are on the record's structure and on what must hold whatever the weights are."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from grn import datasets
from grn.checkpoint import load_model, read_generator_record
from grn.fileio import sha256_file
from grn.video_data import VideoArray, load_moving_mnist
from grn_eval import video_budget as vb


def test_milestones_are_evenly_spaced_and_end_at_the_last_step():
    assert vb.milestones(1000, 4) == [250, 500, 750, 1000]
    assert vb.milestones(4000, 1) == [4000]
    assert vb.milestones(3, 2) == [2, 3]
    assert vb.milestones(2, 4) == [1, 2]  # never a step twice, never step 0


def test_scaled_configs_multiply_batch_and_steps_alike_for_every_model():
    for name in vb.MODELS:
        base, scaled = vb.scaled_config(name, 1, 1), vb.scaled_config(name, 8, 4)
        assert (scaled["batch_size"], scaled["steps"]) == (8 * base["batch_size"], 4 * base["steps"])
        assert {k: v for k, v in scaled.items() if k not in ("batch_size", "steps")} == \
            {k: v for k, v in base.items() if k not in ("batch_size", "steps")}  # lr, seed, data, EMA unchanged
    # equal terms: the three committed configs share the budget the multipliers scale
    assert len({(vb.scaled_config(n, 1, 1)["batch_size"], vb.scaled_config(n, 1, 1)["steps"]) for n in vb.MODELS}) == 1


def _prefix(n):
    @functools.wraps(load_moving_mnist)  # the suite checks dataset keys against its signature
    def load(**kw):
        full = load_moving_mnist(**kw)
        return VideoArray(full.videos[:n], full.labels[:n], full.name, full.captions[:n],
                          {k: v[:n] for k, v in full.meta.items()})
    return load


def test_dry_run_trains_samples_scores_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(datasets.DATASETS, "moving_mnist", _prefix(12))  # the training data: 12 videos
    out, work = tmp_path / "study", tmp_path / "runs"
    argv = ["--out", str(out), "--work", str(work), "--dry-run"]
    assert vb.main(argv) == 0
    # the output folder holds what is worth keeping (a device call brings back a few files only)
    assert sorted(p.name for p in out.iterdir()) == ["ar_mmnist_video.pt", "flow_mmnist_video.pt", "t2v_mnist.pt",
                                                     "video_budget.json"]
    record = json.loads((out / "video_budget.json").read_text())
    assert record["protocol"]["dry_run"] and record["protocol"]["prompts"] == 4
    # the data design and the tokenizer are part of what defines the study
    assert record["protocol"]["data"] == {"frames": 17, "size": 32, "digit_size": 24, "speeds": [0.25, 0.5]}
    assert record["protocol"]["tokenizer_sha256"] == sha256_file(vb.ROOT / "grn/checkpoints/tokenizer_mmnist_video.pt")
    assert record["recovery_on_real"]["n"] == 8 and 0 <= record["recovery_on_real"]["accuracy"]["digit"] <= 1
    assert set(record["models"]) == set(vb.MODELS)
    for name, rec in record["models"].items():
        assert [p["step"] for p in rec["points"]] == [1, 2]
        for p in rec["points"]:
            assert p["videos_seen"] == 2 * p["step"] and p["budget_x"] == pytest.approx(p["videos_seen"] / 24000)
            for aspect in ("digit", "direction", "speed", "all"):
                acc, (lo, hi) = p[aspect]["accuracy"], p[aspect]["interval"]
                assert acc in (0, 0.25, 0.5, 0.75, 1) and 0 <= lo <= acc <= hi <= 1  # 4 videos
            assert p["all"]["accuracy"] <= min(p[a]["accuracy"] for a in ("digit", "direction", "speed"))
        # the final generator in the committed form: loads, names the tokenizer by its repository path
        final = out / f"{name}.pt"
        assert rec["checkpoint_sha256"] == sha256_file(final)
        r = read_generator_record(final)
        assert r["steps"] == 2 and r["train_config"]["tokenizer"] == "grn/checkpoints/tokenizer_mmnist_video.pt"
        assert r["train_config"]["batch_size"] == 2 and load_model(final) is not None
        # the milestone export is the run's EMA at that step, exactly (bf16 as every exported record)
        ema = torch.load(work / name / "checkpoint.pt", map_location="cpu", weights_only=False)["emas"][0]
        last = read_generator_record(work / name / "ema_step2.pt")["state_dict"]
        assert all(torch.equal(last[k], v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in ema.items())
    # a second call resumes: nothing retrained or re-measured
    before = (out / "video_budget.json").read_text()
    capsys.readouterr()
    assert vb.main(argv) == 0
    assert "step" not in capsys.readouterr().out
    assert json.loads(before)["models"] == json.loads((out / "video_budget.json").read_text())["models"]
    # resuming under other settings would mix two studies in one record: refused in one line, record untouched
    assert vb.main([*argv, "--batch-scale", "4"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a study with other settings" in err
    assert (out / "video_budget.json").read_text() == before


@pytest.mark.parametrize("argv, says", [(["--models", "t2v_mnist,vq"], "--models t2v_mnist,vq: unknown ['vq']"),
                                         (["--batch-scale", "0"], "--batch-scale 0")])
def test_bad_arguments_end_in_one_message(tmp_path, capsys, argv, says):
    assert vb.main(["--out", str(tmp_path / "o"), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "video_budget.json").exists()


def test_every_study_model_is_a_suite_model():
    from grn_eval.embedded import CHECKPOINTS
    from grn_eval.suite import load_suite

    names = {e.name for e in load_suite(vb.SUITE, check_assets=False).models}
    assert set(vb.MODELS.values()) <= names and set(vb.MODELS) <= set(CHECKPOINTS)

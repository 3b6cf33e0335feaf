"""The gate compares like with like: same suite, seeds among the baseline's, every baseline
model x metric present; damaged files end in one message, not a traceback. Synthetic results."""

import json

import numpy as np
import pytest
from scipy import stats

from grn.errors import UserError
from grn_eval import cli, gate, report

FID = {"fid": 10.0, "kid": 0.01}


def _results(path, suite="s", suite_hash="a" * 64, seeds=(0, 1, 2), models=("A", "B"), metrics=FID, provenance=None):
    """A results.json like the runner's, with values that vary a little from seed to seed (`provenance`: its
    `models` record, e.g. the samples' sha256 per seed)."""
    rows = [{"model": m, "base_model": m, "family": "grn", "setting": {}, "metric": k, "value": v * (1 + 0.01 * s),
             "seed": s, "n": 100, "available": True, "reason": None, "version": "1", "protocol": {"p": k},
             "extra": {}} for m in models for k, v in metrics.items() for s in seeds]
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps({
        "suite": suite, "suite_hash": suite_hash, "git_commit": "0" * 40, "device": {"type": "cpu", "name": "x"},
        "models": provenance or {}, "rows": rows}))
    return path


@pytest.fixture
def base(tmp_path):
    """A baseline file made by the CLI from a 3-seed run of suite 's' (models A, B x fid, kid)."""
    run = _results(tmp_path / "base")
    assert cli.main(["gate", str(run), "--baseline", str(tmp_path / "b.json"), "--update"]) == 0
    return tmp_path / "b.json"


def _gate(run, baseline, capsys):
    code = cli.main(["gate", str(run), "--baseline", str(baseline)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_baseline_records_suite_hash_and_seeds(base, tmp_path, capsys):
    b = json.loads(base.read_text())
    assert b["suite"] == ["s"] and b["suite_hash"] == ["a" * 12] and b["seeds"] == [0, 1, 2]
    code, out, _ = _gate(_results(tmp_path / "same"), base, capsys)
    assert code == 0 and "gate passed" in out and "note:" not in out


def test_another_suite_fails_naming_both(base, tmp_path, capsys):
    code, out, err = _gate(_results(tmp_path / "other", suite="other"), base, capsys)
    assert code != 0 and "'other'" in err and "'s'" in err and "gate passed" not in out
    with pytest.raises(UserError, match="suite 'other'.*suite 's'"):
        gate.compare(report.load_results([tmp_path / "other"]), gate.read_baseline(base))


def test_other_seeds_fail_naming_them(base, tmp_path, capsys):
    code, out, err = _gate(_results(tmp_path / "seeds", seeds=(0, 7)), base, capsys)
    assert code != 0 and "seed(s) 7" in err and "0,1,2" in err and "gate passed" not in out
    # a subset of the baseline's seeds is like for like
    assert _gate(_results(tmp_path / "subset", seeds=(1,)), base, capsys)[0] == 0


def test_missing_model_is_a_failing_row(base, tmp_path, capsys):
    df = report.load_results([_results(tmp_path / "onlyA", models=("A",))])
    verdict = gate.compare(df, gate.read_baseline(base))
    missing = verdict[verdict["status"] == gate.MISSING]
    assert sorted(zip(missing["model"], missing["metric"])) == [("B", "fid"), ("B", "kid")]
    assert (verdict[verdict["model"] == "A"]["status"] == "ok").all() and gate.failed(verdict)
    code, out, _ = _gate(tmp_path / "onlyA", base, capsys)
    assert code == 1 and "FAIL (missing from the run)" in out and "GATE FAILED" in out


def test_missing_or_unavailable_metric_is_a_failing_row(base, tmp_path, capsys):
    run = _results(tmp_path / "nokid")
    res = json.loads((run / "results.json").read_text())
    for r in res["rows"]:  # kid unavailable for model A, absent for model B
        if r["metric"] == "kid" and r["model"] == "A":
            r.update(value=None, available=False, reason="not available: no reference features")
    res["rows"] = [r for r in res["rows"] if not (r["metric"] == "kid" and r["model"] == "B")]
    (run / "results.json").write_text(json.dumps(res))
    verdict = gate.compare(report.load_results([run]), gate.read_baseline(base))
    missing = verdict[verdict["status"] == gate.MISSING]
    assert sorted(zip(missing["model"], missing["metric"])) == [("A", "kid"), ("B", "kid")]
    assert (verdict[verdict["metric"] == "fid"]["status"] == "ok").all()
    assert _gate(run, base, capsys)[0] == 1


def test_latency_on_another_device_stays_skipped(tmp_path):
    run = _results(tmp_path / "lat", metrics={"seconds_per_image": 0.1})
    df = report.load_results([run])
    baseline = gate.make_baseline(df, "lat")
    df["device_name"] = "another-cpu"
    verdict = gate.compare(df, baseline)
    assert verdict["status"].str.startswith("skipped").all() and not gate.failed(verdict)


def test_suite_hash_differs_is_a_note_only(base, tmp_path, capsys):
    code, out, _ = _gate(_results(tmp_path / "edited", suite_hash="b" * 64), base, capsys)
    assert code == 0 and "gate passed" in out
    assert "note: the suite hash differs" in out and "bbbbbbbbbbbb" in out and "aaaaaaaaaaaa" in out


def test_old_baseline_without_new_fields(base, tmp_path, capsys):
    b = json.loads(base.read_text())
    del b["suite_hash"], b["seeds"]
    base.write_text(json.dumps(b))
    # seeds unknown: not checked, but said so
    code, out, _ = _gate(_results(tmp_path / "run", seeds=(0, 3)), base, capsys)
    assert code == 0 and "gate passed" in out
    assert "records no suite_hash or seeds" in out and "--update" in out
    # the other checks still apply to an old baseline
    assert _gate(_results(tmp_path / "onlyA", models=("A",)), base, capsys)[0] == 1


def test_truncated_baseline_json(base, tmp_path, capsys):
    base.write_text(base.read_text()[:40])
    code, out, err = _gate(_results(tmp_path / "run"), base, capsys)
    assert code == 1 and str(base) in err and "--update" in err and "Traceback" not in err
    with pytest.raises(UserError, match="not valid JSON"):
        gate.read_baseline(base)


def test_baseline_missing_required_keys(base, tmp_path, capsys):
    b = json.loads(base.read_text())
    del b["device_class"], b["metrics"]["A|fid"]["mean"]
    base.write_text(json.dumps(b))
    code, _, err = _gate(_results(tmp_path / "run"), base, capsys)
    assert code == 1 and "device_class" in err and "A|fid" in err and "--update" in err


def test_truncated_results_json(base, tmp_path, capsys):
    run = _results(tmp_path / "cut")
    text = (run / "results.json").read_text()
    (run / "results.json").write_text(text[: len(text) // 2])
    code, _, err = _gate(run, base, capsys)
    assert code == 1 and str(run / "results.json") in err and "interrupted" in err and "re-run" in err
    (run / "results.json").write_text(json.dumps({"suite": "s"}))  # valid JSON, but not a results.json
    code, _, err = _gate(run, base, capsys)
    assert code == 1 and "not a complete results.json" in err


def test_the_gate_says_what_it_can_detect(base, tmp_path, capsys):
    """The smallest flagged move per metric: the same three seeds are compared paired, their differences are 0,
    so the floor decides (FID's 0.5 over a mean of 10.1 is 4.95%, shown 5.0%); with intervals in the run, one
    seed's half-width is shown beside it."""
    run = _results(tmp_path / "same")
    res = json.loads((run / "results.json").read_text())
    for r in res["rows"]:
        if r["metric"] == "fid":
            r["ci_low"], r["ci_high"] = r["value"] - 2.0, r["value"] + 2.0
    (run / "results.json").write_text(json.dumps(res))
    code, out, _ = _gate(run, base, capsys)
    assert code == 0
    assert "  fid: 0.5 (5.0% of the baseline), MDE 0.5; one seed's own 95% interval is +-2" in out
    assert "  kid: 0.002 (19.8% of the baseline), MDE 0.002\n" in out
    d = gate.detectable(gate.compare(report.load_results([run]), json.loads(base.read_text())))
    assert d.set_index("metric").loc["fid", "one_seed_half_width"] == pytest.approx(2.0)


def _spread(path, values, seeds, shift=0.0, half=None):
    """Model A's fid per seed (values[i] + shift at seeds[i]), with a bootstrap half-width when given."""
    run = _results(path, seeds=seeds, models=("A",), metrics={"fid": 1.0})
    res = json.loads((run / "results.json").read_text())
    for r, v in zip(res["rows"], values):
        r["value"] = v + shift
        if half is not None:
            r["ci_low"], r["ci_high"] = r["value"] - half, r["value"] + half
    (run / "results.json").write_text(json.dumps(res))
    return report.load_results([run])


def test_the_same_seeds_are_compared_paired():
    """Seeds spread 10, 12, 14 (std 2): a shift of 1 on every seed hides in the unpaired tolerance (3 x 2 x
    sqrt(2/3) = 4.9) but not in the paired one (the differences are all 1: se 0, the floor 0.5 decides)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        baseline = gate.make_baseline(_spread(d / "b", [10, 12, 14], (0, 1, 2)), "b")
        assert baseline["metrics"]["A|fid"]["values"] == {"0": 10.0, "1": 12.0, "2": 14.0}
        paired = gate.compare(_spread(d / "p", [10, 12, 14], (0, 1, 2), shift=1.0), baseline).iloc[0]
        assert paired["test"] == "paired" and paired["delta"] == pytest.approx(1.0) and paired["se"] == 0
        assert paired["tolerance"] == 0.5 and paired["status"] == "REGRESSION"
        one = gate.compare(_spread(d / "u", [12], (1,), shift=1.0), baseline).iloc[0]  # one seed: unpaired
        assert one["test"] == "unpaired" and one["delta"] == pytest.approx(1.0)
        assert one["tolerance"] == pytest.approx(3 * 2 * (1 + 1 / 3) ** 0.5) and one["status"] == "ok"
        # noisy paired differences (1 +- 1) are judged against Student's t with 2 degrees of freedom
        noisy = gate.compare(_spread(d / "n", [11, 11, 16], (0, 1, 2)), baseline).iloc[0]
        sd = float(np.std([1, -1, 2], ddof=1))
        assert noisy["se"] == pytest.approx(sd / 3**0.5) and noisy["status"] == "ok"
        assert noisy["tolerance"] == pytest.approx(stats.t.isf(gate.ALPHA, 2) * sd / 3**0.5)


def test_unpaired_noise_is_the_seed_std_or_for_one_seed_its_interval(tmp_path):
    """Three baseline seeds (std 0.1) with bootstrap half-widths of 2: the seed std is the noise (the reference
    is fixed between seeds, the bootstrap resamples it too), so a move of 1 regresses. A baseline of one seed
    has no spread: its half-width / 1.96 is sigma, and the same move passes."""
    baseline = gate.make_baseline(_spread(tmp_path / "b", [10.0, 10.1, 10.2], (0, 1, 2), half=2.0), "b")
    assert baseline["metrics"]["A|fid"]["ci_half"] == pytest.approx(2.0)
    r = gate.compare(_spread(tmp_path / "r", [10.1], (1,), shift=1.0, half=2.0), baseline).iloc[0]
    assert r["se"] == pytest.approx(0.1 * (1 + 1 / 3) ** 0.5) and r["tolerance"] == 0.5 and r["status"] == "REGRESSION"
    assert r["mde"] == pytest.approx(r["tolerance"] + gate.POWER_Z * r["se"])
    single = gate.make_baseline(_spread(tmp_path / "b1", [10.0], (0,), half=2.0), "b1")
    r1 = gate.compare(_spread(tmp_path / "r1", [10.0], (0,), shift=1.0, half=2.0), single).iloc[0]
    assert r1["tolerance"] == pytest.approx(3 * 2 / stats.norm.isf(0.025) * 2**0.5) and r1["status"] == "ok"


def _edit_rows(run, edit):
    """Apply `edit(row)` to every row of the run's results.json."""
    res = json.loads((run / "results.json").read_text())
    for r in res["rows"]:
        edit(r)
    (run / "results.json").write_text(json.dumps(res))
    return run


def _worse(r, factor=1.5):
    r["value"] *= factor  # +50% on FID and KID: a regression far above every tolerance


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("where, edit_baseline, edit_row, status", [
    # NaN compares False with everything: each of these passed a +50% regression as "ok"
    ("unpaired", lambda m: m.update(std=NAN), None, "baseline std is nan"),
    ("unpaired", lambda m: m.update(mean=NAN), None, "baseline mean is nan"),
    ("paired", lambda m: m["values"].update({"1": NAN}), None, "baseline seed 1 is nan"),
    ("paired", None, lambda r: r.update(value=INF) if r["seed"] == 2 else None, "run seed 2 is inf"),
    # a NaN or missing (null) value of one seed was dropped: the seed left the comparison unnamed
    ("paired", None, lambda r: r.update(value=None) if r["seed"] == 1 else None, "run seed 1 is nan"),
])
def test_a_non_finite_value_fails_its_row_by_name(base, tmp_path, capsys, where, edit_baseline, edit_row, status):
    b = json.loads(base.read_text())
    if edit_baseline:
        for m in b["metrics"].values():
            edit_baseline(m)
        base.write_text(json.dumps(b))  # json writes NaN as NaN and reads it back
    run = _results(tmp_path / "worse", seeds=(1,) if where == "unpaired" else (0, 1, 2))
    _edit_rows(run, lambda r: (_worse(r), edit_row and edit_row(r)))
    verdict = gate.compare(report.load_results([run]), gate.read_baseline(base))
    assert list(verdict["status"]) == [f"FAIL (non-finite value: {status})"] * 4 and gate.failed(verdict)
    code, out, _ = _gate(run, base, capsys)
    assert code == 1 and f"FAIL (non-finite value: {status})" in out and "GATE FAILED" in out


def test_a_seed_without_value_fails_only_its_model_and_metric(base, tmp_path):
    """One seed's FID of model A is null: that row fails naming the seed, the other rows are compared as before."""
    run = _edit_rows(_results(tmp_path / "run"), lambda r: r.update(value=None) if (r["model"], r["metric"], r["seed"])
                     == ("A", "fid", 0) else None)
    verdict = gate.compare(report.load_results([run]), gate.read_baseline(base)).set_index(["model", "metric"])
    assert verdict.loc[("A", "fid"), "status"] == "FAIL (non-finite value: run seed 0 is nan)"
    assert verdict.loc[("A", "fid"), "seeds"] == 3
    assert (verdict.drop(("A", "fid"))["status"] == "ok").all()


def test_update_refuses_non_finite_values_and_writes_nothing(tmp_path, capsys):
    run = _edit_rows(_results(tmp_path / "run"), lambda r: r.update(value=NAN) if r["seed"] == 1 else None)
    code = cli.main(["gate", str(run), "--baseline", str(tmp_path / "b.json"), "--update"])
    err = capsys.readouterr().err
    assert code == 1 and "A|fid seed 1 is nan" in err and "nothing was written" in err
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("key, value, named", [
    ("mean", "10.1", "metrics['A|fid'].mean is '10.1', expected a number"),
    ("std", None, "metrics['A|fid'].std is None, expected a number"),
    ("values", {"0": "x"}, "metrics['A|fid'].values is {'0': 'x'}, expected an object of seed -> number"),
    ("n", True, "metrics['A|fid'].n is True, expected an integer"),
])
def test_baseline_values_that_are_not_numbers(base, tmp_path, capsys, key, value, named):
    b = json.loads(base.read_text())
    b["metrics"]["A|fid"][key] = value
    base.write_text(json.dumps(b))
    with pytest.raises(UserError, match="expected"):
        gate.read_baseline(base)
    code, _, err = _gate(_results(tmp_path / "run"), base, capsys)
    assert code == 1 and named in err and str(base) in err and "--update" in err


def test_a_run_row_that_is_not_a_number(base, tmp_path, capsys):
    run = _edit_rows(_results(tmp_path / "run"), lambda r: r.update(value="10.1") if r["seed"] == 0 else None)
    code, _, err = _gate(run, base, capsys)
    assert code == 1 and "rows[0] (A, fid) has value '10.1', expected a number or null" in err
    assert str(run / "results.json") in err


@pytest.mark.parametrize("text, holds", [("[1, 2]", "a list"), ("5", "a number"), ("null", "null"),
                                         ('"rows"', "a string")])
def test_results_json_that_is_not_an_object(base, tmp_path, capsys, text, holds):
    run = _results(tmp_path / "run")
    (run / "results.json").write_text(text)
    code, _, err = _gate(run, base, capsys)
    assert code == 1 and f"is not a results.json (a JSON object): it holds {holds}" in err
    assert cli.main(["report", str(run), "--out", str(tmp_path / "rep")]) == 1
    assert not list(tmp_path.glob("rep*"))


def test_baseline_that_is_a_folder(base, tmp_path, capsys):
    folder = tmp_path / "baselines"
    folder.mkdir()
    run = _results(tmp_path / "run")
    assert cli.main(["gate", str(run), "--baseline", str(folder), "--update"]) == 1  # was exit 70 (IsADirectoryError)
    assert f"--baseline '{folder}' is a folder" in capsys.readouterr().err and not list(folder.iterdir())
    code, _, err = _gate(run, folder, capsys)
    assert code == 1 and f"baseline '{folder}' is a folder" in err and "NAME.json" in err
    (tmp_path / "bin.json").write_bytes(bytes(range(256)))
    code, _, err = _gate(run, tmp_path / "bin.json", capsys)
    assert code == 1 and "is not valid JSON" in err


def test_two_runs_of_one_suite_are_refused_naming_them(base, tmp_path, capsys):
    """A folder holding an old run (unchanged) and a new one (+50%): read together, the older's values overwrote
    the newer's and the gate passed. Now the gate names both, newest first; the run's own folder chooses it."""
    import os

    old = _results(tmp_path / "runs" / "old")
    new = _edit_rows(_results(tmp_path / "runs" / "new"), _worse)
    os.utime(old / "results.json", (1_000_000, 1_000_000))  # the older file; the order is not the names'
    code, out, err = _gate(tmp_path / "runs", base, capsys)
    assert code == 1 and "gate passed" not in out
    assert (f"found 2 runs of suite 's' (newest first: '{new / 'results.json'}', '{old / 'results.json'}')" in err
            and f"e.g. '{new}'" in err)
    with pytest.raises(UserError, match="2 runs of suite 's'"):
        report.load_results([tmp_path / "runs"])
    code, out, _ = _gate(new, base, capsys)
    assert code == 1 and "REGRESSION" in out and "GATE FAILED" in out
    assert _gate(old / "results.json", base, capsys)[0] == 0
    # the same run named twice is one run; runs of other suites beside it are read too
    assert len(report.load_results([new, new / "results.json"])) == 12
    _results(tmp_path / "runs" / "t", suite="t")
    assert set(report.load_results([new, tmp_path / "runs" / "t"])["suite"]) == {"s", "t"}


def _digests(tag, seeds=(0, 1, 2), models=("A", "B")):
    return {m: {"samples_sha256": {str(s): f"{tag}{m}{s}" for s in seeds}} for m in models}


def test_sample_digests_are_kept_and_compared(tmp_path, capsys):
    """The runner's per-seed sha256 of the samples: `--update` keeps them, the gate says per model whether the
    run's samples are the baseline's bit for bit; information only, the verdict does not change."""
    baseline = tmp_path / "b.json"
    assert cli.main(["gate", str(_results(tmp_path / "base", provenance=_digests("x"))), "--baseline",
                     str(baseline), "--update"]) == 0
    capsys.readouterr()
    kept = json.loads(baseline.read_text())["samples_sha256"]
    assert kept == {"A": {"0": "xA0", "1": "xA1", "2": "xA2"}, "B": {"0": "xB0", "1": "xB1", "2": "xB2"}}
    same = _results(tmp_path / "same", provenance=_digests("x"))
    code, out, _ = _gate(same, baseline, capsys)
    assert code == 0 and "  A: identical (seed(s) 0, 1, 2)\n  B: identical (seed(s) 0, 1, 2)\n" in out
    changed = _digests("x", models=("A",))  # B's seed 1 changed, A's samples are the same
    changed["B"] = {"samples_sha256": {"0": "xB0", "1": "other", "2": "xB2"}}
    code, out, _ = _gate(_results(tmp_path / "changed", provenance=changed), baseline, capsys)
    assert code == 0 and "  A: identical" in out and "  B: changed (seed(s) 1 differ" in out
    code, out, _ = _gate(_results(tmp_path / "old", provenance=_digests("x", models=("A",))), baseline, capsys)
    assert code == 0 and "  B: unknown (the run records no sample digests)" in out
    b = json.loads(baseline.read_text())
    del b["samples_sha256"]  # a baseline made before the digests
    baseline.write_text(json.dumps(b))
    code, out, _ = _gate(same, baseline, capsys)
    assert code == 0 and "  A: unknown (the baseline records no sample digests" in out
    regressed = _edit_rows(_results(tmp_path / "worse", provenance=_digests("x")), _worse)
    df = report.load_results([regressed])
    verdict = gate.compare(df, gate.make_baseline(report.load_results([same]), "b"))
    assert gate.failed(verdict)  # identical digests beside a moved number: the statistics still decide
    assert gate.samples_identity(df, gate.make_baseline(report.load_results([same]), "b"))["A"][0] == "identical"


def test_unverified_weights_and_unseeded_models_are_shown_by_the_gate_and_the_table(base, tmp_path, capsys):
    from grn_eval import tables

    prov = {"A": {"checkpoint_integrity": "unverified: no content hash recorded (written by an older version; ...)",
                  "tokenizer_integrity": "content_sha256 verified"},
            "B": {"checkpoint_integrity": "content_sha256 verified", "determinism": "not checked (deterministic: "
                                                                                     "false)"}}
    run = _results(tmp_path / "marked", provenance=prov)
    code, out, _ = _gate(run, base, capsys)
    assert code == 0  # shown, not failed: an unverified file is allowed
    assert "note: model 'A': its checkpoint or tokenizer is unverified" in out
    assert "note: model 'B' says `deterministic: false`" in out
    verdict = gate.compare(report.load_results([run]), gate.read_baseline(base))
    assert set(verdict.loc[verdict["model"] == "B", "test"]) == {"unpaired"}  # B's seeds are not paired
    assert set(verdict.loc[verdict["model"] == "A", "test"]) == {"paired"}
    table = tables.to_markdown(tables.build_table(report.load_results([run]), ["fid"]))
    assert "| A | measured (unverified weights) |" in table and "| B | measured (not seeded) |" in table
    assert "unverified weights: the checkpoint or tokenizer records no content hash" in table
    assert "**" not in table.split("| B |")[1].split("\n")[0]  # a marked row is never the bold best


def test_a_model_name_with_a_bar_is_named_whole_when_missing(tmp_path, capsys):
    run = _results(tmp_path / "base", models=("ours|v2", "B"))
    assert cli.main(["gate", str(run), "--baseline", str(tmp_path / "b.json"), "--update"]) == 0
    verdict = gate.compare(report.load_results([_results(tmp_path / "run", models=("B",))]),
                           gate.read_baseline(tmp_path / "b.json"))
    missing = verdict[verdict["status"] == gate.MISSING]
    assert set(zip(missing["model"], missing["metric"])) == {("ours|v2", m) for m in FID}

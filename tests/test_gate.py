"""The gate compares like with like: same suite, seeds among the baseline's, every baseline
model x metric present; damaged files end in one message, not a traceback. Synthetic results."""

import json

import numpy as np
import pytest
from scipy import stats

from grn.errors import UserError
from grn_eval import cli, gate, report

FID = {"fid": 10.0, "kid": 0.01}


def _results(path, suite="s", suite_hash="a" * 64, seeds=(0, 1, 2), models=("A", "B"), metrics=FID):
    """A results.json like the runner's, with values that vary a little from seed to seed."""
    rows = [{"model": m, "base_model": m, "family": "grn", "setting": {}, "metric": k, "value": v * (1 + 0.01 * s),
             "seed": s, "n": 100, "available": True, "reason": None, "version": "1", "protocol": {"p": k},
             "extra": {}} for m in models for k, v in metrics.items() for s in seeds]
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps({
        "suite": suite, "suite_hash": suite_hash, "git_commit": "0" * 40, "device": {"type": "cpu", "name": "x"},
        "models": {}, "rows": rows}))
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

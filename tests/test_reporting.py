import json

import numpy as np
import pytest

from grn_eval import gate, plots, report, tables
from grn_eval.runner import run_suite
from grn_eval.suite import load_suite

from .test_runner import _tiny_grn_checkpoints

SUITE = """name: tiny
datasets: {ref: {name: mnist, split: reference}}
models:
  - {name: fixed, adapter: grn, checkpoint: gen.pt, tokenizer: tok.pt, sampler: {steps: [4, 8]}}
  - {name: guided, adapter: grn, checkpoint: gen.pt, tokenizer: tok.pt, sampler: {steps: 12},
     entropy: {warmup: 2, t_min: 4, t_max: 12, calibrate: true}}
metrics: {entropy: {}, latency: {warmup: 1, repeats: 2}}
reference: {dataset: ref}
seeds: [0, 1, 2]
n_samples: 12
batch_size: 6
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    _tiny_grn_checkpoints(d)
    (d / "s.yaml").write_text(SUITE)
    run_suite(load_suite(d / "s.yaml"), run_dir=d / "run", progress=False)
    return d


def test_report_is_tidy_and_summarises_seeds(tiny_run, tmp_path):
    df = report.load_results([tiny_run / "run"])
    assert set(df["seed"]) == {0, 1, 2} and set(df["metric"]) == {"mean_steps", "seconds_per_image"}
    assert len(df) == 3 * 3 * 2  # models x seeds x metrics
    s = report.summarize(df)
    guided = s[(s["model"] == "guided") & (s["metric"] == "mean_steps")].iloc[0]
    assert guided["seeds"] == 3
    assert guided["mean"] == pytest.approx(df[(df["model"] == "guided") & (df["metric"] == "mean_steps")]
                                           ["value"].mean())
    paths = report.export(df, tmp_path / "r")
    assert all(p.exists() for p in paths)


def test_tables_markdown_and_latex(tiny_run, tmp_path):
    df = report.load_results([tiny_run / "run"])
    md, tex = tables.write_tables(df, ["mean_steps", "seconds_per_image"], tmp_path / "t", "tiny")
    text = md.read_text()
    assert "steps ↓" in text and "s/img ↓" in text and "*GRN*" in text and "measured" in text
    assert "**4.0 ± 0.0**" in text  # best (fewest steps) in bold, mean ± std over 3 seeds
    assert "N = 12" in text or "N = 6" in text
    latex = tex.read_text()
    assert r"\toprule" in latex and r"\bottomrule" in latex and r"\textbf{" in latex and r"$\pm$" in latex


def test_literature_rows_are_marked_reported(tiny_run):
    import pandas as pd

    df = report.load_results([tiny_run / "run"])
    lit = pd.DataFrame([{"model": "MaskGIT", "family": "masked", "mean_steps": 8.0, "source_id": "chang2022"}])
    md = tables.to_markdown(tables.build_table(df, ["mean_steps"], lit))
    assert "| MaskGIT | reported |" in md and "*masked*" in md


def test_plots_are_written(tiny_run, tmp_path):
    df = report.load_results([tiny_run / "run"])
    for fn in (lambda p: plots.entropy_vs_step(df, p), lambda p: plots.entropy_guided_steps(df, p),
               lambda p: plots.quality_vs_latency(df, "mean_steps", p)):
        png, pdf = fn(tmp_path / "plot")
        assert png.stat().st_size > 5000 and pdf.exists()


def test_sample_grids_one_per_setting(tiny_run, tmp_path):
    from grn_eval.publish import sample_grids

    written = sample_grids(tiny_run / "run", tmp_path / "grid", per_class=2)
    pngs = sorted(p.name for p in written if p.suffix == ".png")
    assert len(pngs) == 3 and all(p.startswith("grid_") for p in pngs)  # fixed[4], fixed[8], guided
    assert len(set(pngs)) == 3  # one file per setting, even when the labels differ only after a dot


def test_pareto_front():
    pts = np.array([[1.0, 5.0], [2.0, 3.0], [3.0, 4.0], [4.0, 1.0]])
    assert plots.pareto_front(pts).tolist() == [0, 1, 3]


def test_protocol_id_names_the_protocol_not_what_a_check_measured():
    # Two loads of the same I3D on machines with different thread counts: the fingerprint's measured error
    # differs in the `checks` text, the network (sha256) and the protocol do not, so the id must not either;
    # a different network or a different protocol value must change it.
    def fvd(err, sha="be99", frames=16):
        return {"frames": frames, "weights": {"asset": "i3d-kinetics-400", "sha256": sha, "checks": [
            "sha256 matches the record written at conversion",
            f"feature fingerprint reproduced (max rel. error {err} <= 0.0001)"]}}

    assert report.protocol_id(fvd("2.0e-09")) == report.protocol_id(fvd("8.1e-06"))
    assert report.protocol_id(fvd("2.0e-09")) != report.protocol_id(fvd("2.0e-09", sha="0000"))
    assert report.protocol_id(fvd("2.0e-09")) != report.protocol_id(fvd("2.0e-09", frames=8))
    recorded = fvd("1")
    report.protocol_id(recorded)
    assert "checks" in recorded["weights"]  # the protocol itself keeps them (provenance); only the id drops them


def test_gate_passes_unchanged_and_flags_moves(tiny_run, tmp_path):
    df = report.load_results([tiny_run / "run"])
    base = gate.make_baseline(df, "tiny")
    assert gate.compare(df, base)["status"].isin(["ok", "improved"]).all()
    worse = df.copy()
    worse.loc[worse["metric"] == "mean_steps", "value"] += 5  # more steps for the same output is a regression
    verdict = gate.compare(worse, base)
    assert gate.failed(verdict) and (verdict[verdict["metric"] == "mean_steps"]["status"] == "REGRESSION").all()
    other_device = df.copy()
    other_device["device_name"] = "another-cpu"
    v = gate.compare(other_device, base)
    assert v[v["metric"] == "seconds_per_image"]["status"].str.startswith("skipped").all()
    gate.write_baseline(base, tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text())["metrics"]


def test_cli_gate_exit_codes(tiny_run, tmp_path, capsys):
    from grn_eval import cli

    run = str(tiny_run / "run")
    assert cli.main(["gate", run, "--baseline", str(tmp_path / "b.json"), "--update"]) == 0
    digests = json.loads((tmp_path / "b.json").read_text())["samples_sha256"]  # the runner's, per model and seed
    assert sorted(digests) == ["fixed[sampler.steps=4]", "fixed[sampler.steps=8]", "guided"]
    assert all(sorted(d) == ["0", "1", "2"] and all(len(h) == 64 for h in d.values()) for d in digests.values())
    assert cli.main(["gate", run, "--baseline", str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "gate passed" in out and out.count(": identical (seed(s) 0, 1, 2)") == 3  # the same run: the same samples


def test_readme_main_table_is_the_generated_one():
    from pathlib import Path

    from grn_eval.publish import README_END, README_START

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    generated = [p.read_text().strip() for p in (root / "results" / "tables").glob("*.md")]
    assert section and section in generated  # copied by `grn-eval publish --readme`, never typed


def test_literature_files_have_sources_and_protocols():
    from pathlib import Path

    import pandas as pd

    for path in (Path(__file__).resolve().parents[1] / "results" / "literature").glob("*.csv"):
        lit = pd.read_csv(path)
        assert {"model", "family", "source", "protocol", "confidence"} <= set(lit.columns)
        assert lit["source"].notna().all() and lit["protocol"].notna().all(), path

"""Report, table and publish outputs: one safe-name rule for every file made from a suite name or an --out
prefix (a '.v2' is no suffix, no name writes outside its folder), and damaged inputs (a cut-off report, a
README without its markers, an empty literature file) end in one error naming the file, with nothing written."""

import json
import shutil
from pathlib import Path

import pytest

from grn.errors import UserError
from grn.fileio import check_output_name
from grn_eval import cli
from grn_eval.html_report import plots_of

from .test_gate import _results

ROOT = Path(__file__).resolve().parents[1]
SUITE = """name: NAME
description: a published suite of hand-made results
datasets: {photos_val: {name: photos, split: val, crop_size: 32}}
models:
  - {name: identity, adapter: identity}
metrics: {psnr: {}}
reference: {dataset: photos_val}
n_samples: 40
batch_size: 16
table: {metrics: [fid, kid], title: hand-made}
"""


@pytest.mark.parametrize("name", ["tiny", "tiny.v2", "mnist_gen", "a-b=c", "x" * 100])
def test_safe_names_are_kept(name):
    assert check_output_name(name, "suite 's.yaml': name") == name


@pytest.mark.parametrize("name, problem", [
    ("", "it is empty"), ("a/b", "it holds a path separator"), ("../x", "it holds a path separator"),
    ("a\\b", "it holds a path separator"), ("..", "it holds '..'"), ("a..b", "it holds '..'"),
    (".v2", "it starts with a dot"), ("my run", "it holds ' '"), ("flüsse", "it holds 'ü'"),
    ("x" * 101, "it is 101 characters long (at most 100)"),
])
def test_unsafe_names_are_refused_naming_where(name, problem):
    with pytest.raises(UserError) as e:
        check_output_name(name, "suite 's.yaml': name")
    assert str(e.value).startswith(f"suite 's.yaml': name: '{name}' cannot name output files: {problem}; ")


def _published(tmp_path, name, stem=None, suite=None):
    """A suite file `stem`.yaml named `name` and one hand-made run of it under results/runs/."""
    stem = stem or name
    (tmp_path / "suites").mkdir(exist_ok=True)
    (tmp_path / "suites" / f"{stem}.yaml").write_text(SUITE.replace("NAME", name))
    if suite is not False:
        _results(tmp_path / "results" / "runs" / (suite or name) / "0123abcd", suite=suite or name)
    return ["--suites-dir", str(tmp_path / "suites"), "--results", str(tmp_path / "results")]


def _written(tmp_path):
    """The files below tmp_path but the suites and runs made by `_published` (a run of '../evil' is results/evil/)."""
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if p.is_file() and "0123abcd" not in p.parts and "suites" not in p.parts)


def test_publish_of_a_dotted_name_keeps_the_other_suites_files(tmp_path):
    """'tiny.v2' published after 'tiny' overwrote tiny.csv, tiny.md and tiny.tex (with_suffix took '.v2')."""
    args = _published(tmp_path, "tiny")
    _published(tmp_path, "tiny.v2", stem="tinyv2")
    assert cli.main(["publish", "tiny", *args]) == 0
    tiny = {p: (tmp_path / p).read_bytes() for p in _written(tmp_path)}
    assert cli.main(["publish", "tinyv2", *args]) == 0
    assert {p: (tmp_path / p).read_bytes() for p in tiny} == tiny  # tiny's files untouched
    reports = tmp_path / "results" / "reports"
    assert sorted(p.name for p in reports.glob("tiny.v2*")) == ["tiny.v2.csv", "tiny.v2.parquet",
                                                                "tiny.v2_summary.csv"]
    assert "| A | measured |" in (tmp_path / "results" / "tables" / "tiny.v2.md").read_text()
    assert (reports / "tiny.v2.csv").read_text().splitlines()[1].startswith("tiny.v2,")


@pytest.mark.parametrize("name", ["../evil", "a/b"])
def test_publish_refuses_a_name_that_is_not_one_file_name(tmp_path, capsys, name):
    """'../evil' wrote results/evil.csv outside results/reports/; 'a/b' made folders reports/a/, tables/a/."""
    args = _published(tmp_path, name, stem="bad")
    assert cli.main(["publish", "bad", *args]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "suites" / "bad.yaml") in err and f"name: '{name}' cannot name output files" in err
    assert _written(tmp_path) == []


def test_publish_checks_every_suite_before_writing(tmp_path, capsys):
    """The second suite has no run: the first one's files are not written either."""
    args = _published(tmp_path, "tiny")
    _published(tmp_path, "other", suite=False)
    assert cli.main(["publish", "tiny", "other", *args]) == 1
    assert "no run of suite 'other'" in capsys.readouterr().err and _written(tmp_path) == []


def test_report_and_table_out_with_a_dot_append_their_suffixes(tmp_path, capsys, monkeypatch):
    run = _results(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    for old in ("rep.csv", "rep.parquet", "x.md", "x.tex"):  # another report's files: must stay as they are
        Path(old).write_text("another report\n")
    assert cli.main(["report", str(run), "--out", "rep.v2"]) == 0
    assert cli.main(["table", str(run), "--out", "x.v2"]) == 0
    out = capsys.readouterr().out
    assert all(Path(old).read_text() == "another report\n" for old in ("rep.csv", "rep.parquet", "x.md", "x.tex"))
    assert {"rep.v2.csv", "rep.v2_summary.csv", "x.v2.md", "x.v2.tex"} <= {p.name for p in tmp_path.iterdir()}
    assert "| A | measured | **10.10 ± 0.10** |" in out  # the table printed is the one written
    assert Path("rep.v2.csv").read_text().count("\ns,") == 12  # suite s: 2 models x 2 metrics x 3 seeds


@pytest.mark.parametrize("out, problem", [(".", "'' cannot name output files: it is empty"),
                                          ("results/..", "'..' cannot name output files"),
                                          ("f/rep", "'f' is a file, not a folder")])
def test_report_out_that_cannot_be_a_prefix(tmp_path, capsys, monkeypatch, out, problem):
    """`--out .` was exit 70 (Path('.').with_suffix: empty name), a prefix below a file too."""
    run = _results(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    Path("f").write_text("a file\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    for command in ("report", "table"):
        assert cli.main([command, str(run), "--out", out]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out '{out}'") and problem in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _html_only(tmp_path, report_text=None):
    """results/reports/hbq_rounds.csv from the committed report (or `report_text`), for `publish --html-only`."""
    reports = tmp_path / "results" / "reports"
    reports.mkdir(parents=True)
    text = (ROOT / "results" / "reports" / "hbq_rounds.csv").read_text()
    (reports / "hbq_rounds.csv").write_text(text if report_text is None else report_text(text))
    return ["publish", "hbq_rounds", "--html-only", "--suites-dir", str(ROOT / "suites"), "--results",
            str(tmp_path / "results")]


@pytest.mark.parametrize("damage, problem", [
    (lambda t: "", "is empty"),
    (lambda t: t[: len(t) // 2], "is cut off"),  # a half that parsed, and was published as the whole
    (lambda t: t[:40], "is cut off"),
    (lambda t: "\n".join(line.split(",", 1)[1] for line in t.splitlines()) + "\n", "no column suite"),
    (lambda t: t.replace(",True,", ",,", 1), "has rows without available"),
])
def test_html_only_from_a_damaged_report(tmp_path, capsys, damage, problem):
    """Each was exit 70 (EmptyDataError, IndexError, KeyError) or a page of half the report."""
    args = _html_only(tmp_path, damage)
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    report = tmp_path / "results" / "reports" / "hbq_rounds.csv"
    assert err.startswith(f"error: '{report}' ") and problem in err and "grn-eval publish hbq_rounds" in err
    assert not (tmp_path / "results" / "html").exists()


def test_readme_without_its_markers_writes_nothing(tmp_path, capsys):
    """Was exit 70 (ValueError) after the HTML pages were written."""
    args = _html_only(tmp_path)
    readme = tmp_path / "README.md"
    for text in ("# no markers\n", "<!-- main-table:end -->\n<!-- main-table:start -->\n"):
        readme.write_text(text)
        assert cli.main([*args, "--html", "--readme", "hbq_rounds", "--readme-file", str(readme)]) == 1
        err = capsys.readouterr().err
        assert f"--readme-file '{readme}' does not hold the lines <!-- main-table:start -->" in err
        assert readme.read_text() == text and not (tmp_path / "results" / "html").exists()
    readme.write_text("# t\n<!-- main-table:start -->\nold\n<!-- main-table:end -->\nend\n")
    (tmp_path / "results" / "tables").mkdir()
    (tmp_path / "results" / "tables" / "hbq_rounds.md").write_text("| new |\n")
    assert cli.main([*args, "--readme", "hbq_rounds", "--readme-file", str(readme)]) == 0
    assert readme.read_text() == "# t\n<!-- main-table:start -->\n| new |\n<!-- main-table:end -->\nend\n"


def test_table_with_an_empty_literature_file(tmp_path, capsys):
    (tmp_path / "lit.csv").write_text("")
    assert cli.main(["table", str(_results(tmp_path / "run")), "--literature", str(tmp_path / "lit.csv"), "--out",
                     str(tmp_path / "t")]) == 1  # was exit 70 (EmptyDataError)
    assert f"'{tmp_path / 'lit.csv'}' is empty" in capsys.readouterr().err and not list(tmp_path.glob("t.*"))


def test_a_page_shows_its_own_suites_plots_only():
    """quant_study_* also matched quant_study_gen's sample grids, shown on quant_study's page."""
    root = ROOT / "results"
    names = [p.name for p in plots_of("quant_study", root, ["rate_distortion", "training_curves"])]
    assert names == ["quant_study_rate_distortion.png", "quant_study_training_curves.png"]
    grids = plots_of("quant_study_gen", root, ["sample_grids"])
    assert len(grids) == 5 and all(p.name.startswith("quant_study_gen_sample_grids_GRN_on_") for p in grids)


def test_report_keeps_the_samples_digest_per_row(tmp_path):
    from grn_eval import report

    digests = {"A": {"samples_sha256": {"0": "d0", "1": "d1", "2": "d2"}}}
    df = report.load_results([_results(tmp_path / "run", provenance=digests)])
    a = df[df["model"] == "A"]
    assert list(zip(a["seed"], a["samples_sha256"]))[:3] == [(0, "d0"), (1, "d1"), (2, "d2")]
    assert df.loc[df["model"] == "B", "samples_sha256"].isna().all()
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["models"] == digests  # read, not rewritten
    shutil.rmtree(tmp_path / "run")

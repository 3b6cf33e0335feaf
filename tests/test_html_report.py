"""The HTML pages (grn_eval/html_report.py) checked with a parser: the committed pages and one made here.
The browser check (headless Chromium: images decode, no script errors) is `nox -s report_check`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from grn_eval.html_check import static_problems
from grn_eval.html_report import index_page, suite_page
from grn_eval.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "results" / "html").glob("*.html"))


def test_there_are_committed_pages_and_an_index():
    assert {"index", "mnist_gen", "hbq_rounds"} <= {p.stem for p in PAGES}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_committed_pages_resolve_every_image_and_link(page):
    assert static_problems(page) == []


def test_a_page_has_the_table_cells_of_the_markdown_table_and_sorts(tmp_path):
    root = tmp_path / "results"
    for sub in ("reports", "plots"):
        (root / sub).mkdir(parents=True)
    shutil.copy(ROOT / "results" / "reports" / "hbq_rounds.csv", root / "reports")
    for png in (ROOT / "results" / "plots").glob("hbq_rounds_*.png"):
        shutil.copy(png, root / "plots")
    suite = load_suite(ROOT / "suites" / "hbq_rounds.yaml")
    page = suite_page(suite, root)
    text = page.read_text()
    markdown = (ROOT / "results" / "tables" / "hbq_rounds.md").read_text()
    first_cell = markdown.splitlines()[5].split("|")[3].strip().strip("*")  # the first model's PSNR as published
    assert first_cell and first_cell in text
    assert "onclick=\"sortBy(this)\"" in text and "<details>" in text and "hbq_rounds_rounds_vs_quality.png" in text
    assert static_problems(page) == ["hbq_rounds.html: link 'index.html' does not resolve"]  # not written yet
    index = index_page(root, ROOT / "suites")
    assert "hbq_rounds.html" in index.read_text() and static_problems(index) == [] == static_problems(page)
    (root / "plots" / "hbq_rounds_rounds_vs_quality.png").unlink()
    assert static_problems(page) == ["hbq_rounds.html: image '../plots/hbq_rounds_rounds_vs_quality.png' does not "
                                     "resolve"]

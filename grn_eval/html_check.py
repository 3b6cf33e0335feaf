"""Checks of the HTML pages (grn_eval/html_report.py): statically with a parser, and in a real browser.

`static_problems(page)`: every image and link of the page resolves to a file (relative to the page), and
the page has its results table. `browser_problems(page)`: headless Chromium loads the page from disk and
the page's own script reports how many images decoded and how many script errors occurred
(`data-images`, `data-errors` on <body>, read from the DOM Chromium dumps). `python -m grn_eval.html_check
[--screenshot PNG] PAGE ...` runs both (what `nox -s report_check` calls) and exits non-zero on a problem.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.tables, self.headers = [], [], 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "table":
            self.tables += 1
        elif tag == "th":
            self.headers += 1


def static_problems(page: Path) -> list[str]:
    refs = _Refs()
    refs.feed(page.read_text())
    problems = []
    for kind, targets in (("image", refs.images), ("link", refs.links)):
        for target in targets:
            url = urlparse(target)
            if url.scheme in ("http", "https"):
                problems.append(f"{page.name}: {kind} '{target}' points outside the folder (pages must open offline)")
                continue
            if url.scheme or target.startswith("#"):
                continue
            if not (page.parent / unquote(url.path)).exists():
                problems.append(f"{page.name}: {kind} '{target}' does not resolve")
    if page.name != "index.html" and (refs.tables < 1 or refs.headers < 3):
        problems.append(f"{page.name}: no results table")
    return problems


def chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def _run_chromium(*args: str) -> str:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium on PATH: install Debian's `chromium` package (apt-get install chromium)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


def browser_problems(page: Path, screenshot: Path | None = None) -> list[str]:
    dom = _run_chromium("--dump-dom", page.resolve().as_uri())
    body = re.search(r"<body([^>]*)>", dom)
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', body.group(1))) if body else {}
    problems = []
    if "images" not in attrs:
        problems.append(f"{page.name}: the page's script did not run in Chromium (no data-images on <body>)")
    else:
        ok, total = (int(x) for x in attrs["images"].split("/"))
        if ok != total:
            problems.append(f"{page.name}: {total - ok} of {total} images did not load in Chromium")
    if attrs.get("errors", "0") != "0":
        problems.append(f"{page.name}: {attrs['errors']} script errors in Chromium")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        _run_chromium(f"--screenshot={screenshot.resolve()}", "--window-size=1400,2600", page.resolve().as_uri())
        if not screenshot.exists():
            problems.append(f"{page.name}: Chromium wrote no screenshot")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grn_eval.html_check")
    p.add_argument("pages", nargs="+")
    p.add_argument("--screenshot", help="PAGE=PNG: a screenshot of that page")
    a = p.parse_args(argv)
    shot_page, _, shot = (a.screenshot or "").partition("=")
    problems = []
    for name in a.pages:
        page = Path(name)
        found = static_problems(page) + browser_problems(page, Path(shot) if shot and page.name == shot_page
                                                                else None)
        print(f"{'ok ' if not found else 'BAD'} {page}")
        problems += found
    for line in problems:
        print(f"  {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

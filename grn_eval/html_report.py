"""Browsable HTML: one page per published suite and an index, opened straight from the folder (no server).

A page is made from what `grn-eval publish` wrote: the suite's report (results/reports/<suite>.csv: every
row with its protocol and extra), the same table cells as the Markdown table (grn_eval/tables.py), the
suite's plots and sample grids (results/plots/<suite>_*.png, linked relatively) and, when asked, the
literature rows. The table sorts by any column (a click on its header); each model's rows open with their
protocol and provenance. Styles and the sorting script are inline: nothing is fetched from anywhere.

The page checks itself in a browser: once loaded it writes on <body> how many of its images decoded
(`data-images`, "ok/total") and how many script errors happened (`data-errors`), which `nox -s report_check`
reads back from headless Chromium.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import pandas as pd

from grn.errors import UserError
from grn.fileio import atomic_write, check_output_name
from grn_eval import report as reports
from grn_eval import tables
from grn_eval.report import better

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em}th,td{padding:.3em .6em;border-bottom:1px solid #ddd}
th{background:#f4f4f4;cursor:pointer;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.family td{background:#fafafa;font-style:italic}td.best{font-weight:bold}tr.reported td{color:#666}
figure{display:inline-block;margin:.5em;vertical-align:top}figure img{max-width:640px;border:1px solid #eee}
figcaption{font-size:.8em;color:#555}details{margin:.3em 0}pre{background:#f7f7f7;padding:.5em;overflow:auto;
font-size:.75em}.meta{color:#555;font-size:.85em}ol.notes{font-size:.8em;color:#444}
"""

# Sorting by a header click (numbers by the cell's data-value, else text); family rows stay out of it.
SCRIPT = """
window.addEventListener('error', function(){document.body.dataset.errors=(+document.body.dataset.errors||0)+1});
function sortBy(th){const table=th.closest('table'),body=table.tBodies[0],i=th.cellIndex;
 const dir=th.dataset.dir==='asc'?'desc':'asc';th.dataset.dir=dir;
 const rows=[...body.rows].filter(r=>!r.classList.contains('family'));
 rows.sort((a,b)=>{const x=a.cells[i].dataset.value,y=b.cells[i].dataset.value;
  const p=x===undefined||x===''?NaN:+x,q=y===undefined||y===''?NaN:+y;
  if(isNaN(p)&&isNaN(q))return a.cells[i].textContent.localeCompare(b.cells[i].textContent)*(dir==='asc'?1:-1);
  if(isNaN(p))return 1;if(isNaN(q))return -1;return (p-q)*(dir==='asc'?1:-1)});
 body.querySelectorAll('tr.family').forEach(r=>r.remove());rows.forEach(r=>body.appendChild(r))}
window.addEventListener('load',function(){const imgs=[...document.images];
 const ok=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;
 document.body.dataset.images=ok+'/'+imgs.length;
 if(document.body.dataset.errors===undefined)document.body.dataset.errors='0'});
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{STYLE}</style><script>{SCRIPT}</script></head>\n<body>\n{body}\n</body></html>\n")


def _table_html(table: dict) -> str:
    cols = table["columns"]
    head = "".join(f"<th onclick=\"sortBy(this)\">{_e(tables._header(m))}</th>" for m in cols)
    out = ["<table class=\"results\"><thead><tr><th onclick=\"sortBy(this)\">model</th>"
           f"<th onclick=\"sortBy(this)\">source</th>{head}</tr></thead><tbody>"]
    for fam, members in table["groups"]:
        out.append(f"<tr class=\"family\"><td colspan=\"{len(cols) + 2}\">{_e(fam)}</td></tr>")
        for r in members:
            cells = []
            for m in cols:
                if m not in r["cells"]:
                    cells.append("<td class=\"num\" data-value=\"\">–</td>")
                    continue
                mean, std, seeds, lo, hi = r["cells"][m]
                text = tables._fmt(mean, std, seeds, tables._digits(m), lo, hi)
                best = r["source"] == "measured" and table["best"].get(m) == mean
                value = "" if tables._missing(mean) else repr(float(mean))
                cells.append(f"<td class=\"num{' best' if best else ''}\" data-value=\"{value}\">{_e(text)}</td>")
            out.append(f"<tr class=\"{_e(r['source'])}\"><td>{_e(r['model'])}</td><td>{_e(r['source'])}</td>"
                       + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    out.append("<ol class=\"notes\">" + "".join(f"<li>{_e(n)}</li>" for n in table["footnotes"]) + "</ol>")
    return "\n".join(out)


def _provenance_html(df: pd.DataFrame) -> str:
    """Per model: every row's value, protocol and extra, and the model columns the report keeps."""
    out = []
    model_cols = [c for c in df.columns if c.startswith("model.")]
    for model, g in df.groupby("model", sort=False):
        first = g.iloc[0]
        info = {c[6:]: first[c] for c in model_cols if pd.notna(first[c])}
        rows = []
        for _, r in g.iterrows():
            rec = {"metric": r["metric"], "value": None if pd.isna(r["value"]) else r["value"], "seed": r["seed"],
                   "n": r["n"], "protocol": _json(r.get("protocol")), "extra": _json(r.get("extra"))}
            if "reason" in r and isinstance(r["reason"], str):
                rec["reason"] = r["reason"]
            rows.append(rec)
        run = {k: first[k] for k in ("run", "git_commit", "device", "device_name", "batch_size") if k in first
               and pd.notna(first[k])}
        text = json.dumps({"model": info, "run": run, "rows": rows}, indent=1, default=str)
        out.append(f"<details><summary>{_e(model)} ({len(g)} rows)</summary><pre>{_e(text)}</pre></details>")
    return "\n".join(out)


def _json(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def plots_of(suite_name: str, results_root: Path, plot_names=None) -> list[Path]:
    """The suite's published figures (PNG), plots first, then its sample grids. With `plot_names` (the suite's
    `table.plots`) only the files of those plots: a bare `<suite>_*` also matches another suite's files
    (quant_study_* holds quant_study_gen_sample_grids_*)."""
    found = sorted([*(results_root / "plots").glob(f"{suite_name}_*.png"),
                    *(results_root / "plots").glob(f"{suite_name}_*.gif")])  # sample videos are animated GIFs
    if plot_names is not None:
        own = tuple(f"{suite_name}_{name}" for name in plot_names)
        found = [p for p in found if p.stem in own or p.stem.startswith(tuple(f"{o}_" for o in own))]
    return sorted(found, key=lambda p: ("sample_" in p.name, p.name))


# The report's columns a page is made from; a row without one of the keys is a damaged file.
REPORT_COLUMNS = ("suite", "family", "base_model", "model", "setting", "metric", "protocol_id", "n", "value",
                  "seed", "available")
REPORT_KEYS = ("suite", "model", "metric", "protocol_id", "n", "available")


def read_report(suite, results_root: Path) -> pd.DataFrame:
    """The suite's published report (results/reports/<suite>.csv), checked: a UserError naming it and the fix if it
    is missing, empty, cut off or lacks what a page shows."""
    check_output_name(suite.name, f"suite '{suite.path}': name")
    path = results_root / "reports" / f"{suite.name}.csv"
    fix = f"publish it again with `grn-eval publish {suite.name}` (needs a run of the suite)"
    if not path.exists():
        raise UserError(f"no published report of suite '{suite.name}' ({path}); run `grn-eval publish {suite.name}` "
                        f"first")
    df = reports.read_csv(path, fix)
    missing = [c for c in REPORT_COLUMNS if c not in df]
    if missing or df.empty:
        what = f"no column {', '.join(missing)}" if missing else "no rows"
        raise UserError(f"'{path}' is not a report of grn-eval ({what}); {fix}")
    holes = [c for c in REPORT_KEYS if df[c].isna().any()]
    if holes or df["available"].dtype != bool:
        raise UserError(f"'{path}' has rows without {', '.join(holes) or 'a true/false available'}: the file was "
                        f"edited or damaged; {fix}")
    return df


def suite_page(suite, results_root: Path, literature: pd.DataFrame | None = None,
               df: pd.DataFrame | None = None) -> Path:
    """Write results/html/<suite>.html from the suite's published report (`df`: as `read_report` read it); returns
    its path."""
    df = read_report(suite, results_root) if df is None else df
    report = results_root / "reports" / f"{suite.name}.csv"
    spec = suite.table
    metrics = [m for m in (spec.get("metrics") or sorted(set(df["metric"]))) if better(m) or m in set(df["metric"])]
    table = tables.build_table(df, metrics, literature)
    out_dir = results_root / "html"
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / f"{suite.name}.html"
    meta = df.iloc[0]
    figures = "\n".join(f"<figure><img src=\"{_e(os.path.relpath(p, out_dir))}\" alt=\"{_e(p.stem)}\">"
                        f"<figcaption>{_e(p.stem[len(suite.name) + 1:])}</figcaption></figure>"
                        for p in plots_of(suite.name, results_root, spec.get("plots", [])))
    body = "\n".join([
        "<p><a href=\"index.html\">all suites</a></p>",
        f"<h1>{_e(spec.get('title', suite.name))}</h1>",
        f"<p>{_e(suite.description)}</p>",
        f"<p class=\"meta\">suite <code>{_e(suite.name)}</code> · run {_e(meta.get('run', ''))} · commit "
        f"{_e(meta.get('git_commit', ''))} · device {_e(meta.get('device', ''))} "
        f"({_e(meta.get('device_name', ''))}) · report <a href=\"{_e(os.path.relpath(report, out_dir))}\">"
        f"{_e(report.name)}</a></p>",
        "<h2>Results</h2>", _table_html(table),
        "<h2>Figures</h2>" if figures else "", figures,
        "<h2>Protocol and provenance per model</h2>", _provenance_html(df),
    ])
    atomic_write(page, _page(spec.get("title", suite.name), body))
    return page


def index_page(results_root: Path, suites_dir: Path) -> Path:
    """results/html/index.html: every suite page in the folder, with the description its suite file gives."""
    import yaml

    out_dir = results_root / "html"
    items = []
    for page in sorted(out_dir.glob("*.html")):
        if page.name == "index.html":
            continue
        source = suites_dir / f"{page.stem}.yaml"
        about = (yaml.safe_load(source.read_text()) or {}).get("description", "") if source.exists() else ""
        items.append(f"<li><a href=\"{_e(page.name)}\">{_e(page.stem)}</a> — {_e(about)}</li>")
    body = "<h1>GRN-Eval results</h1>\n<p>One page per published suite.</p>\n<ul>" + "".join(items) + "</ul>"
    path = out_dir / "index.html"
    atomic_write(path, _page("GRN-Eval results", body))
    return path

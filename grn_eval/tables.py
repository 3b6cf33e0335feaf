"""Paper-style tables (Markdown and LaTeX booktabs) from results and literature numbers.

Rows are grouped by family (diffusion / AR / masked / GRN / tokenizer ...); each column header
carries the better direction (an arrow); the best value per column is bold; several seeds show
mean ± std; a row's bootstrap interval follows in brackets; N and the protocol go to footnotes.
Literature rows (results/literature/*.csv) are marked "reported", measured rows "measured".
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from grn.fileio import atomic_write
from grn_eval.metrics import registry
from grn_eval.report import better, output_prefix, read_csv, summarize, unseeded_models, unverified_models, with_suffix

FAMILY_ORDER = ["diffusion", "flow", "AR", "masked", "GRN", "tokenizer", "external"]


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fmt(mean: float, std: float, seeds: int, digits: int, ci_low=None, ci_high=None) -> str:
    """`mean` (`± std` over several seeds) and `[low, high]`, the bootstrap interval, when the row has one."""
    if _missing(mean):
        return "–"
    s = f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if seeds > 1 else "")
    return s + ("" if _missing(ci_low) or _missing(ci_high) else f" [{ci_low:.{digits}f}, {ci_high:.{digits}f}]")


# Labels and digits: declared per row by each metric (grn_eval/metrics/); any other column (e.g. a
# literature-only number) is headed by its name and shown with 2 decimals.
def _label(metric: str, default: str | None = None) -> str:
    row = registry.row(metric)
    return row.label if row else (metric if default is None else default)


def _digits(metric: str) -> int:
    row = registry.row(metric)
    return row.digits if row else 2


def build_table(df: pd.DataFrame, metrics: list[str], literature: pd.DataFrame | None = None) -> dict:
    """A table as data: {'columns', 'groups': [(family, [row dicts])], 'footnotes'}."""
    s = summarize(df)
    s = s[s["metric"].isin(metrics)]
    # measured, but not to be read like the rest: weights that could not be verified, samples that ignore seeds
    marks = {m: "unverified weights" for m in unverified_models(df)}
    for m in unseeded_models(df):
        marks[m] = ", ".join(filter(None, [marks.get(m), "not seeded"]))
    rows = {}
    for _, r in s.iterrows():
        source = "measured" + (f" ({marks[r['model']]})" if r["model"] in marks else "")
        row = rows.setdefault(r["model"], {"model": r["model"], "family": r["family"], "source": source,
                                           "cells": {}})
        row["cells"][r["metric"]] = (r["mean"], r["std"], int(r["seeds"]), r.get("ci_low"), r.get("ci_high"))
    if literature is not None:
        for _, r in literature.iterrows():
            row = rows.setdefault(f"{r['model']} [{r['source_id'] if 'source_id' in r else 'lit'}]",
                                  {"model": r["model"], "family": r["family"], "source": "reported", "cells": {}})
            for m in metrics:
                if m in r and pd.notna(r[m]):
                    row["cells"][m] = (float(r[m]), 0.0, 1, None, None)
    best = {}
    for m in metrics:
        vals = [row["cells"][m][0] for row in rows.values() if m in row["cells"] and row["source"] == "measured"]
        # (a marked row is never the bold best: its number is not one to rank)
        direction = better(m)
        if vals and direction:
            best[m] = min(vals) if direction == "lower" else max(vals)
    groups = []
    for fam in FAMILY_ORDER + sorted({r["family"] for r in rows.values()} - set(FAMILY_ORDER)):
        members = [r for r in rows.values() if r["family"] == fam]
        if members:
            groups.append((fam, members))
    notes = []
    for m in metrics:
        sub = s[s["metric"] == m]
        if len(sub):
            notes.append(f"{_label(m)}: N = {', '.join(map(str, sorted(set(sub['n']))))}; protocol "
                         f"{', '.join(sorted(set(sub['protocol_id'])))}; seeds {int(sub['seeds'].max())}")
    if any("unverified" in v for v in marks.values()):
        notes.append("unverified weights: the checkpoint or tokenizer records no content hash and the suite pins no "
                     "sha256, so damaged weights would not be noticed")
    if any("not seeded" in v for v in marks.values()):
        notes.append("not seeded: the model says `deterministic: false` (its samples do not follow the seeds)")
    if "ci_low" in s and s["ci_low"].notna().any():
        notes.append("[low, high]: the 95% interval of one seed's number, its bounds averaged over seeds: the "
                     "bootstrap percentile interval centred on the estimate (grn_eval/intervals.py); for FID∞ "
                     "+-1.96 standard errors of its fit in 1/N")
    return {"columns": metrics, "groups": groups, "best": best, "footnotes": notes}


def _header(m: str) -> str:
    arrow = {"lower": "↓", "higher": "↑"}.get(better(m) or "", "")
    return f"{_label(m)} {arrow}".strip()


def to_markdown(table: dict, title: str = "") -> str:
    cols = table["columns"]
    lines = [f"**{title}**", ""] if title else []
    lines += ["| model | | " + " | ".join(_header(m) for m in cols) + " |",
              "|---|---|" + "---:|" * len(cols)]
    for fam, members in table["groups"]:
        lines.append(f"| *{fam}* | |" + " |" * len(cols))
        for r in members:
            cells = []
            for m in cols:
                if m not in r["cells"]:
                    cells.append("–")
                    continue
                mean, std, seeds, lo, hi = r["cells"][m]
                text = _fmt(mean, std, seeds, _digits(m), lo, hi)
                cells.append(f"**{text}**" if r["source"] == "measured" and table["best"].get(m) == mean else text)
            lines.append(f"| {r['model']} | {r['source']} | " + " | ".join(cells) + " |")
    lines += [""] + [f"{i + 1}. {n}" for i, n in enumerate(table["footnotes"])]
    return "\n".join(lines) + "\n"


def to_latex(table: dict, title: str = "") -> str:
    cols = table["columns"]

    def esc(t: str) -> str:
        return t.replace("_", r"\_").replace("%", r"\%").replace("#", r"\#")

    arrows = {"lower": r"$\downarrow$", "higher": r"$\uparrow$"}
    head = " & ".join(f"{_label(m, esc(m))} {arrows.get(better(m) or '', '')}".strip() for m in cols)
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{ll" + "r" * len(cols) + "}", r"\toprule",
             f"Model & & {head} \\\\", r"\midrule"]
    for gi, (fam, members) in enumerate(table["groups"]):
        if gi:
            lines.append(r"\midrule")
        lines.append(rf"\multicolumn{{{len(cols) + 2}}}{{l}}{{\textit{{{esc(fam)}}}}} \\")
        for r in members:
            cells = []
            for m in cols:
                if m not in r["cells"]:
                    cells.append("--")
                    continue
                mean, std, seeds, lo, hi = r["cells"][m]
                text = _fmt(mean, std, seeds, _digits(m), lo, hi).replace("±", r"$\pm$")
                cells.append(rf"\textbf{{{text}}}" if r["source"] == "measured" and table["best"].get(m) == mean
                             else text)
            lines.append(f"{esc(r['model'])} & {r['source']} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if title:
        lines.append(rf"\caption{{{esc(title)}}}")
    lines.append(r"\end{table}")
    lines += ["% " + n for n in table["footnotes"]]
    return "\n".join(lines) + "\n"


def read_literature(paths) -> pd.DataFrame | None:
    """The literature files (results/literature/*.csv) as one frame, None for none; a damaged one is a UserError."""
    fix = "fix the file or leave it out (columns: model, family, source, protocol and one per metric)"
    frames = [read_csv(p, fix, written=False) for p in paths]  # typed by hand: the last newline may be missing
    return pd.concat(frames) if frames else None


def write_tables(df: pd.DataFrame, metrics: list[str], prefix: str | Path, title: str = "",
                 literature: pd.DataFrame | None = None) -> list[Path]:
    prefix = output_prefix(prefix)
    table = build_table(df, metrics, literature)
    md, tex = with_suffix(prefix, ".md"), with_suffix(prefix, ".tex")
    atomic_write(md, to_markdown(table, title))
    atomic_write(tex, to_latex(table, title))
    return [md, tex]

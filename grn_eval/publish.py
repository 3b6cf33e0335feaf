"""One command from runs to the project's current numbers: reports, tables and plots per suite.

`grn-eval publish [SUITE ...]` takes the newest run of each suite under results/runs/ and writes
results/reports/<suite>.csv (+ _summary, parquet), results/tables/<suite>.md/.tex and
results/plots/<suite>_<plot>.png/.pdf, as the suite's `table:` section asks.
"""

from __future__ import annotations

from pathlib import Path

from grn_eval import plots, report, tables

PLOTS = {
    "quality_vs_steps": lambda df, q, p: plots.quality_vs_steps(df, q, p),
    "quality_vs_latency": lambda df, q, p: plots.quality_vs_latency(df, q, p),
    "entropy_vs_step": lambda df, q, p: plots.entropy_vs_step(df, p),
    "entropy_guided_steps": lambda df, q, p: plots.entropy_guided_steps(df, p),
    "rounds_vs_quality": lambda df, q, p: plots.rounds_vs_quality(df, p),
}


def newest_run(runs_root: Path, suite: str) -> Path:
    runs = sorted((runs_root / suite).glob("*/results.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"no run of suite '{suite}' under {runs_root}; run `nox -s {suite}` first")
    return runs[-1]


def publish(suite, results_root: Path, literature=None) -> list[Path]:
    run = newest_run(results_root / "runs", suite.name)
    df = report.load_results([run])
    written = report.export(df, results_root / "reports" / suite.name)
    spec = suite.table
    metrics = spec.get("metrics") or sorted(set(df["metric"]))
    written += tables.write_tables(df, metrics, results_root / "tables" / suite.name,
                                   spec.get("title", suite.description), literature)
    quality = spec.get("quality_metric", metrics[0])
    for name in spec.get("plots", []):
        written += PLOTS[name](df, quality, results_root / "plots" / f"{suite.name}_{name}")
    return written


README_START, README_END = "<!-- main-table:start -->", "<!-- main-table:end -->"


def update_readme(readme: Path, table: Path) -> None:
    """Put the generated main table between the README's markers (so the README cannot drift)."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} markers")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{table.read_text().strip()}\n{README_END}{tail}")

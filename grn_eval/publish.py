"""One command from runs to the project's current numbers: reports, tables and plots per suite.

`grn-eval publish [SUITE ...]` takes the newest run of each suite under results/runs/ and writes
results/reports/<suite>.csv (+ _summary, parquet), results/tables/<suite>.md/.tex and
results/plots/<suite>_<plot>.png/.pdf, as the suite's `table:` section asks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grn.errors import UserError
from grn.fileio import atomic_write, check_output_name, safe_name
from grn_eval import plots, report, tables

PLOTS = {
    "quality_vs_steps": lambda df, q, p: plots.quality_vs_steps(df, q, p),
    "quality_vs_latency": lambda df, q, p: plots.quality_vs_latency(df, q, p),
    "entropy_vs_step": lambda df, q, p: plots.entropy_vs_step(df, p),
    "entropy_guided_steps": lambda df, q, p: plots.entropy_guided_steps(df, p),
    "rounds_vs_quality": lambda df, q, p: plots.rounds_vs_quality(df, p),
    "rate_distortion": lambda df, q, p: plots.rate_distortion(df, p),
}
PLOT_NAMES = sorted([*PLOTS, "sample_grids", "sample_videos", "training_curves"])


def _first_seed_samples(run_dir: Path):
    """(setting folder, seed folder name, samples, labels) of every generated setting of a run, from its first
    seed's sample shards, in name order."""
    for setting in sorted(p for p in (run_dir / "samples").glob("*") if p.is_dir()):
        seeds = sorted(setting.glob("seed*"), key=lambda p: int(p.name[4:]))
        shards = sorted(seeds[0].glob("shard_*.npz")) if seeds else []
        if not shards:
            continue
        samples, labels = [], []
        for path in shards:
            with np.load(path) as f:
                samples.append(f["arr_0"])
                labels.append(f["arr_1"])
        yield setting, seeds[0].name, np.concatenate(samples), np.concatenate(labels)


def _stem(setting: Path) -> str:  # no dots: they would read as a suffix
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in setting.name).strip("_")


def sample_grids(run_dir: Path, prefix: Path, per_class: int = 8) -> list[Path]:
    """One grid per generated image setting (rows = classes) from the run's first seed's sample shards."""
    written = []
    for setting, seed, images, labels in _first_seed_samples(run_dir):
        if images.ndim == 4:
            title = f"{setting.name} ({seed}, first {per_class} samples per class)"
            written += plots.sample_grid(images, labels, per_class, Path(f"{prefix}_{_stem(setting)}"), title)
    return written


def sample_video_files(run_dir: Path, prefix: Path) -> list[Path]:
    """Per generated video setting: an animated GIF of one sample per prompt and frame strips (grn_eval/plots.py
    `sample_videos`), from the run's first seed's shards; the prompts are read from the run's provenance."""
    import json

    results = json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").exists() else {}
    prompts = {safe_name(name): prov.get("prompts") for name, prov in (results.get("models") or {}).items()
               if isinstance(prov, dict)}
    written = []
    for setting, seed, videos, labels in _first_seed_samples(run_dir):
        if videos.ndim == 5:
            written += plots.sample_videos(videos, labels, prompts.get(setting.name),
                                           Path(f"{prefix}_{_stem(setting)}"),
                                           f"{setting.name} ({seed}): frames of one sample per prompt")
    return written


def newest_run(runs_root: Path, suite: str) -> Path:
    runs = sorted((runs_root / suite).glob("*/results.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise UserError(f"no run of suite '{suite}' under {runs_root}; run `nox -s {suite}` first")
    return runs[-1]


def newest_results(suite, results_root: Path):
    """(the suite's newest run, its rows): everything `publish` checks before it writes; a UserError if the suite's
    name cannot name its output files (grn/fileio.py `check_output_name`), it has no run or the run is damaged."""
    check_output_name(suite.name, f"suite '{suite.path}': name")
    run = newest_run(results_root / "runs", suite.name)
    return run, report.load_results([run])


def publish(suite, results_root: Path, literature=None, loaded=None) -> list[Path]:
    """Write the suite's report, tables and plots from its newest run (`loaded`: what `newest_results` returned)."""
    run, df = loaded or newest_results(suite, results_root)
    written = report.export(df, results_root / "reports" / suite.name)
    spec = suite.table
    metrics = spec.get("metrics") or sorted(set(df["metric"]))
    written += tables.write_tables(df, metrics, results_root / "tables" / suite.name,
                                   spec.get("title", suite.description), literature)
    quality = spec.get("quality_metric", metrics[0])
    for name in spec.get("plots", []):
        prefix = results_root / "plots" / f"{suite.name}_{name}"
        written += training_curves(suite, prefix) if name == "training_curves" else \
            write_plot(name, df, run.parent, quality, prefix)
    return written


def write_plot(name: str, df, run_dir: Path, quality: str, prefix: Path) -> list[Path]:
    """A plot named in a suite's `table.plots`; sample grids read the run's shards, the rest the results."""
    if name == "sample_grids":
        return sample_grids(run_dir, prefix)
    if name == "sample_videos":
        return sample_video_files(run_dir, prefix)
    return PLOTS[name](df, quality, prefix)


def training_curves(suite, prefix: Path) -> list[Path]:
    """The training logs of the suite's tokenizer checkpoints (logs/<stem>.jsonl beside each file, written by
    `python -m grn_eval.embedded`), one line per model, else the log of its config re-run (labelled so); a model
    without either is left out and named."""
    from grn.train import read_log
    from grn_eval.embedded import log_path
    from grn_eval.model_check import resolve

    histories, missing = {}, []
    for entry in suite.models:
        path = entry.options.get("checkpoint") if entry.adapter == "tokenizer" else None
        if not path or entry.options.get("rounds"):  # a truncated decode shares its tokenizer's training
            continue
        checkpoint = resolve(path, suite.path.parent)
        if log_path(checkpoint).exists():
            histories[entry.name] = read_log(log_path(checkpoint))
        elif log_path(checkpoint, rerun=True).exists():
            histories[f"{entry.name} (re-run of its config)"] = read_log(log_path(checkpoint, rerun=True))
        else:
            missing.append(entry.name)
    written = plots.training_curves(histories, prefix)
    if missing:
        print(f"training_curves: no training log beside the checkpoints of {', '.join(missing)}")
    return written


README_START, README_END = "<!-- main-table:start -->", "<!-- main-table:end -->"


def check_readme(readme: Path) -> str:
    """The README's text, if it holds the main-table markers once each and in order (checked before anything
    is written); else a UserError naming it and the fix."""
    try:
        text = readme.read_text()
    except (OSError, ValueError) as e:  # missing, a folder, not text
        raise UserError(f"--readme-file '{readme}' cannot be read as text ({getattr(e, 'strerror', None) or e}); "
                        f"give the README whose main table to update") from None
    if text.count(README_START) != 1 or text.count(README_END) != 1 or \
            text.index(README_START) > text.index(README_END):
        raise UserError(f"--readme-file '{readme}' does not hold the lines {README_START} and {README_END} once "
                        f"each, in that order; put them where the main table goes (nothing was written)")
    return text


def update_readme(readme: Path, table: Path) -> None:
    """Put the generated main table between the README's markers (so the README cannot drift)."""
    text = check_readme(readme)
    if not table.is_file():
        raise UserError(f"no table '{table}' to copy into the README; publish its suite first")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    atomic_write(readme, f"{head}{README_START}\n{table.read_text().strip()}\n{README_END}{tail}")

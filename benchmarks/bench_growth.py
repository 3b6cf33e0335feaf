"""Cost as the work grows: the whole suite path (Runner.run) at N samples per side, seconds and peak memory
per stage, and the growth exponent of each stage (the slope of log seconds against log N).

The suite: the committed MNIST GRN (10 refinement steps, CFG 3, temperature 0.8: the step count only
scales sampling, and 10 keeps the benchmark to about 20 minutes here) against the first N digits of MNIST
`train` (class-balanced prefixes, up to 4000; the 1000-digit reference split is too small for N = 2000, and
which digits they are does not change the cost),
with the metrics of suites/mnist_gen.yaml: the ADM evaluator (FID, sFID, IS, precision / recall), FID-inf,
KID, density / coverage and entropy, each with its default 200-replicate bootstrap. Every N runs in its own
process with an empty feature cache, so features are computed and the memory peaks are that N's own.
Stages are those of grn_eval/stages.py; "metrics" is every `metric:<key>` stage together.

Sizes: GRN_BENCH_GROWTH_N (default 250,500,1000,2000). Writes results/bench/growth.{json,md,png}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import OUT_DIR, write

ROOT = Path(__file__).resolve().parents[1]
SIZES = tuple(int(n) for n in os.environ.get("GRN_BENCH_GROWTH_N", "250,500,1000,2000").split(","))
STAGES = ("sampling", "decoding", "features", "statistics", "metrics", "other")
SUITE = """name: growth
datasets:
  digits: {{name: mnist, split: train}}
models:
  - name: GRN
    adapter: grn
    checkpoint: {root}/grn/checkpoints/generator_mnist.pt
    tokenizer: {root}/grn/checkpoints/tokenizer_mnist.pt
    sampler: {{steps: 10, guidance: 3.0, temperature: 0.8}}
evaluator: adm
metrics:
  fid_inf: {{}}
  kid: {{}}
  density_coverage: {{k: 5}}
  entropy: {{}}
reference: {{dataset: digits, limit: {n}}}
n_samples: {n}
batch_size: 50
"""


def _rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def one(n: int, out: Path) -> None:
    """Run the suite at N in this process, with a private cache; write what its stages measured."""
    from grn_eval.cache import FeatureCache
    from grn_eval.runner import Runner
    from grn_eval.suite import load_suite

    with tempfile.TemporaryDirectory(prefix="grn-growth-") as tmp:
        tmp = Path(tmp)
        (tmp / "growth.yaml").write_text(SUITE.format(root=ROOT, n=n))
        suite = load_suite(tmp / "growth.yaml")
        before = _rss()
        res = Runner(suite, run_dir=tmp / "run", progress=False, cache=FeatureCache(tmp / "cache")).run()
    per = res["stages"]["per_stage"]
    grouped = {s: {"seconds": 0.0, "cpu_seconds": 0.0, "peak_rss_bytes": 0} for s in STAGES}
    for name, r in per.items():
        key = "metrics" if name.startswith("metric:") else name if name in STAGES else "other"
        grouped[key]["seconds"] += r["seconds"]
        grouped[key]["cpu_seconds"] += r["cpu_seconds"]
        grouped[key]["peak_rss_bytes"] = max(grouped[key]["peak_rss_bytes"], r["peak_rss_bytes"])
    out.write_text(json.dumps({"n": n, "rss_before_run_bytes": before, "total_seconds": res["timings"]["total"],
                               "total_cpu_seconds": sum(r["cpu_seconds"] for r in per.values()),
                               "stages": grouped, "per_stage": per, "memory": res["stages"]["memory"],
                               "rows": {r["metric"]: r["value"] for r in res["rows"] if r["value"] is not None}}))


def exponent(ns, seconds) -> float | None:
    """Least-squares slope of log(seconds) on log(N); None when a stage took no measurable time."""
    s = np.asarray(seconds, np.float64)
    if len(ns) < 2 or (s <= 0).any():
        return None
    return float(np.polyfit(np.log(ns), np.log(s), 1)[0])


def _seconds(p: dict, stage: str, kind: str) -> float:
    """A point's wall ("seconds") or CPU ("cpu_seconds") time of a stage, or of the whole run ("total")."""
    if stage == "total":
        return p["total_seconds"] if kind == "seconds" else p["total_cpu_seconds"]
    return p["stages"][stage][kind]


def _table(points, exps) -> str:
    head = "| stage | " + " | ".join(f"N = {p['n']}" for p in points) + " | exponent (wall / CPU) |"
    lines = [head, "|" + "---|" * (len(points) + 2)]
    for s in STAGES + ("total",):
        cells = [f"{_seconds(p, s, 'seconds'):.1f} / {_seconds(p, s, 'cpu_seconds'):.1f}" for p in points]
        e = [exps[kind][s] for kind in ("seconds", "cpu_seconds")]
        lines.append(f"| {s} | " + " | ".join(cells) + " | " + " / ".join("-" if v is None else f"{v:.2f}" for v in e)
                     + " |")
    peak = [max(v["peak_rss_bytes"] for v in p["stages"].values()) for p in points]
    lines.append("| peak RSS | " + " | ".join(f"{m / 2**20:.0f} MiB" for m in peak) + " | |")
    lines.append("| peak RSS above the start of the run | " + " | ".join(
        f"{(m - p['rss_before_run_bytes']) / 2**20:.0f} MiB" for m, p in zip(peak, points)) + " | |")
    return "\n".join(lines)


def _plot(points, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [p["n"] for p in points]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in STAGES + ("total",):
        sec = [_seconds(p, s, "cpu_seconds") for p in points]
        if all(v > 0 for v in sec):
            a.loglog(ns, sec, "o-", label=s, lw=2.5 if s == "total" else 1.5)
    first = _seconds(points[0], "total", "cpu_seconds")
    a.loglog(ns, [first * n / ns[0] for n in ns], "k:", label="linear from the first total")
    a.set(xlabel="N samples (and N reference images)", ylabel="CPU seconds (all threads)", title="Time per stage")
    a.legend(fontsize=8, loc="upper left", ncol=2)
    for s in ("sampling", "features", "metrics"):
        b.plot(ns, [(p["stages"][s]["peak_rss_bytes"] - p["rss_before_run_bytes"]) / 2**20 for p in points], "o-",
               label=s)
    b.set(xlabel="N", ylabel="MiB above the run's start", title="Peak resident memory per stage")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run() -> None:
    points = []
    with tempfile.TemporaryDirectory(prefix="grn-growth-out-") as tmp:
        for n in SIZES:
            out = Path(tmp) / f"{n}.json"
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            subprocess.run([sys.executable, "-m", "benchmarks.bench_growth", str(n), str(out)], check=True, env=env,
                           cwd=ROOT)
            points.append(json.loads(out.read_text()))
            print(f"N = {n}: {points[-1]['total_seconds']:.0f} s", flush=True)
    ns = [p["n"] for p in points]
    exps = {kind: {s: exponent(ns, [_seconds(p, s, kind) for p in points]) for s in STAGES + ("total",)}
            for kind in ("seconds", "cpu_seconds")}
    table = _table(points, exps)
    (OUT_DIR / "growth.md").write_text(
        "Cost of the whole suite path against N (benchmarks/bench_growth.py): wall / CPU seconds per stage "
        "(exclusive of the stages inside it; CPU: all threads), exponent = slope of log seconds on log N\n\n"
        + table + "\n")
    _plot(points, OUT_DIR / "growth.png")
    print(table)
    write("growth", {"sizes": ns, "points": points, "exponents": exps,
                     "project": exps["cpu_seconds"], "anchor": "exponent 1 (linear in N)",
                     "ratio": exps["cpu_seconds"]["total"], "unit": "growth exponent of the total CPU time",
                     "target": "per-stage exponents reported (no target)"})


if __name__ == "__main__":
    if len(sys.argv) == 3:
        one(int(sys.argv[1]), Path(sys.argv[2]))
    else:
        run()

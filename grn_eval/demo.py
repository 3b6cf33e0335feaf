"""The embedded demo, end to end on CPU: verified weights -> the committed (or freshly trained)
MNIST tokenizer and generators -> suites/mnist_gen.yaml -> a table and plots.

`nox -s demo` (or `python -m grn_eval.demo`). Checkpoints missing from grn/checkpoints/ are
trained first with the configs in grn/configs/ (minutes each on CPU).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from grn.errors import run_command
from grn_eval import embedded
from grn_eval import weights as W
from grn_eval.publish import write_plot
from grn_eval.report import load_results
from grn_eval.runner import Runner
from grn_eval.suite import load_suite
from grn_eval.tables import build_table, to_markdown

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grn_eval.demo")
    p.add_argument("--n-samples", type=int, help="override the suite's samples per model")
    p.add_argument("--out", default=str(ROOT / "results" / "runs" / "demo"))
    p.add_argument("--debug", action="store_true", help="show the traceback of any error")
    args = p.parse_args(argv)
    return run_command(demo, args, "demo", args.debug)


def demo(args) -> int:
    t0 = time.perf_counter()

    print("== weights ==")
    statuses = W.verify(["inception-fid", "lpips-alex", "lpips-vgg"])
    for s in statuses:
        print(f"{s.state:9s} {s.name}: {s.detail[:150]}")
    if W.exit_code(statuses):
        return 1

    print("\n== checkpoints ==")
    embedded.ensure(embedded.DEMO)
    print("all present in grn/checkpoints/")

    print("\n== suites/mnist_gen.yaml ==")
    overrides = {"n_samples": args.n_samples} if args.n_samples else {}
    suite = load_suite(ROOT / "suites" / "mnist_gen.yaml", overrides)
    out = Path(args.out)
    runner = Runner(suite, run_dir=out / "run")
    runner.run_dir = runner.run_dir / runner.fingerprint()[:12]  # a fresh folder when the code or files change
    runner.run()
    df = load_results([runner.run_dir])
    table = to_markdown(build_table(df, suite.table["metrics"]), suite.table["title"])
    (out / "table.md").write_text(table)
    plots = []
    for name in suite.table.get("plots", []):
        plots += write_plot(name, df, runner.run_dir, suite.table.get("quality_metric", "fid"),
                            out / f"mnist_gen_{name}")
    print("\n" + table)
    print(f"results: {runner.run_dir / 'results.json'}")
    print("plots:   " + ", ".join(str(p) for p in plots if p.suffix == ".png"))
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

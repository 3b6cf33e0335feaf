"""A cached re-run of a suite against a cold run (same results, less time)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import write
from grn_eval.cache import FeatureCache
from grn_eval.runner import Runner
from grn_eval.suite import load_suite

SUITE = Path(__file__).resolve().parents[1] / "tests" / "suites" / "recon_identity.yaml"


def run() -> None:
    suite = load_suite(SUITE)
    with tempfile.TemporaryDirectory() as d:
        times, values = [], []
        for i in range(2):
            t0 = time.perf_counter()
            res = Runner(suite, run_dir=Path(d) / f"run{i}", progress=False, cache=FeatureCache(Path(d) / "c")).run()
            times.append(time.perf_counter() - t0)
            values.append({r["metric"]: r["value"] for r in res["rows"]})
    write("cached_rerun", {
        "project": {"method": "re-run with a warm feature cache", "seconds": times[1]},
        "anchor": {"method": "cold run", "seconds": times[0]},
        "ratio": times[0] / times[1], "unit": "speed-up (cold seconds / cached seconds)",
        "target": "> 1 with identical values", "identical_values": values[0] == values[1], "suite": suite.name,
    })


if __name__ == "__main__":
    run()

"""Shared helpers: timing with repeats and atomic JSON output under results/bench/."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from grn.fileio import atomic_write

OUT_DIR = Path(__file__).resolve().parents[1] / "results" / "bench"


def best_of(fn, repeats: int = 3) -> tuple[float, object]:
    """Median wall time of `repeats` calls (these machines are noisy) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def write(name: str, record: dict) -> Path:
    record = {"name": name, **record, "machine": {
        "platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}
    path = OUT_DIR / f"{name}.json"
    atomic_write(path, json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("name", "project", "anchor", "ratio", "target", "unit")}))
    return path

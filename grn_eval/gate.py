"""A noise-aware regression gate: compare a run with a stored baseline.

A baseline stores, per model x metric, the mean and the seed-to-seed std of several runs.
A metric regresses when it moves in the bad direction by more than
    tolerance = max(k * std, abs_floor[metric], rel_floor * |mean|)
Latency is compared only with a baseline measured on the same device class. `--update`
writes a new baseline (for review in the pull request) instead of comparing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from grn_eval.report import better, summarize

K_STD = 3.0
REL_FLOOR = 0.02
ABS_FLOOR = {"fid": 0.5, "rfid": 0.5, "kid": 0.002, "precision": 0.02, "recall": 0.02, "psnr": 0.1, "ssim": 0.005,
             "lpips_alex": 0.005, "lpips_vgg": 0.005, "isc": 0.2, "mean_steps": 0.5}
LATENCY_METRICS = {"seconds_per_image"}
LATENCY_REL_FLOOR = 0.5  # timing noise on shared machines is large


def device_class(df: pd.DataFrame) -> str:
    kinds = sorted({f"{t}:{n}" for t, n in zip(df["device"], df["device_name"])})
    return ",".join(kinds)


def make_baseline(df: pd.DataFrame, name: str) -> dict:
    s = summarize(df)
    metrics = {}
    for _, r in s.iterrows():
        if better(r["metric"]) is None:
            continue
        metrics[f"{r['model']}|{r['metric']}"] = {"mean": r["mean"], "std": r["std"], "seeds": int(r["seeds"]),
                                                  "n": int(r["n"]), "protocol_id": r["protocol_id"]}
    return {"name": name, "suite": sorted(set(df["suite"])), "device_class": device_class(df), "k_std": K_STD,
            "rel_floor": REL_FLOOR, "abs_floor": ABS_FLOOR, "metrics": metrics}


def tolerance(metric: str, mean: float, std: float) -> float:
    rel = LATENCY_REL_FLOOR if metric in LATENCY_METRICS else REL_FLOOR
    return max(K_STD * std, ABS_FLOOR.get(metric, 0.0), rel * abs(mean))


def compare(df: pd.DataFrame, baseline: dict) -> pd.DataFrame:
    """One row per (model, metric, seed) of the run that the baseline covers, with its verdict."""
    same_device = device_class(df) == baseline["device_class"]
    out = []
    for _, r in df[df["available"] & df["value"].notna()].iterrows():
        key = f"{r['model']}|{r['metric']}"
        if key not in baseline["metrics"]:
            continue
        b = baseline["metrics"][key]
        direction = better(r["metric"])
        tol = tolerance(r["metric"], b["mean"], b["std"])
        delta = r["value"] - b["mean"]
        worse = delta if direction == "lower" else -delta
        if r["metric"] in LATENCY_METRICS and not same_device:
            status = "skipped (baseline from another device class)"
        elif r["protocol_id"] != b["protocol_id"] or int(r["n"]) != b["n"]:
            status = "FAIL (protocol or N differs from the baseline)"
        else:
            status = "REGRESSION" if worse > tol else ("improved" if worse < -tol else "ok")
        out.append({"model": r["model"], "metric": r["metric"], "seed": r["seed"], "baseline": b["mean"],
                    "tolerance": tol, "value": r["value"], "delta": delta, "status": status})
    return pd.DataFrame(out)


def failed(report: pd.DataFrame) -> bool:
    return bool(len(report)) and report["status"].str.startswith(("REGRESSION", "FAIL")).any()


def write_baseline(baseline: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(baseline, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def read_baseline(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"baseline '{path}' not found; create one with `grn-eval gate RUN --baseline {path} "
                                f"--update`")
    return json.loads(path.read_text())

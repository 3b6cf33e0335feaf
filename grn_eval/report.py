"""Results files -> one tidy pandas DataFrame (a row per model x setting x metric x seed).

`grn-eval report RUNS... --out PREFIX` writes PREFIX.csv, PREFIX.parquet and PREFIX_summary.csv
(mean, std, n over seeds). RUNS are results.json files or folders that hold them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from grn.errors import UserError
from grn_eval.metrics import registry

# Which direction is better, for tables, plots and the gate: declared per row by each metric
# (grn_eval/metrics/); live sets, so a metric registered later is in them too.
LOWER_IS_BETTER = registry.RowsWhere("lower")
HIGHER_IS_BETTER = registry.RowsWhere("higher")


# Model provenance fields copied into the table (the rest stays in results.json).
MODEL_COLUMNS = ("quantizer", "bits_per_token", "rounds", "trained_rounds", "latent_channels", "checkpoint",
                 "checkpoint_sha256")


def better(metric: str) -> str | None:
    """"lower" or "higher" for a row name a metric declares; None for any other (e.g. literature-only)."""
    row = registry.row(metric)
    return row.better if row else None


def find_results(paths) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.rglob("results.json"))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"'{p}' is neither a results.json file nor a folder holding some")
    return out


# Keys whose values record that an input was verified, not how a number was computed: a weights record's
# `checks` state the fingerprint's measured error, which moves with the thread count and the machine while
# the network (named by the sha256 beside it) stays the same. The protocol keeps them; its id leaves them out.
VERIFICATION_KEYS = frozenset({"checks"})


def _defining(value):
    """`value` without the VERIFICATION_KEYS of any dict inside it."""
    if isinstance(value, dict):
        return {k: _defining(v) for k, v in value.items() if k not in VERIFICATION_KEYS}
    if isinstance(value, (list, tuple)):
        return [_defining(v) for v in value]
    return value


def protocol_id(protocol: dict) -> str:
    """A short, stable id of everything that defines how a number was computed (the same on every machine
    for the same protocol: what a load-time check measured is left out)."""
    return hashlib.sha256(json.dumps(_defining(protocol), sort_keys=True, default=str).encode()).hexdigest()[:10]


def load_results(paths) -> pd.DataFrame:
    rows = []
    for path in find_results(paths):
        rows += _rows(path)
    if not rows:
        raise UserError(f"no result rows found in {list(map(str, paths))}")
    return pd.DataFrame(rows)


def _rows(path: Path) -> list[dict]:
    """The table rows of one results.json; a damaged file is a UserError naming it, not a traceback."""
    rerun = "the run may have been interrupted: re-run it (`grn-eval run SUITE` resumes)"
    try:
        res = json.loads(path.read_text())
    except ValueError as e:  # JSONDecodeError or UnicodeDecodeError
        raise UserError(f"'{path}' is not valid JSON ({e}); {rerun}") from None
    rows = []
    try:
        for r in res["rows"]:
            prov = res.get("models", {}).get(r["model"], {})
            rows.append({
                "suite": res["suite"], "run": path.parent.name, "suite_hash": res["suite_hash"][:12],
                "config_hash": (res.get("config_hash") or "")[:12] or None,
                "git_commit": (res.get("git_commit") or "")[:12], "device": res["device"]["type"],
                "device_name": res["device"].get("name"), "model": r["model"], "base_model": r["base_model"],
                "batch_size": res.get("numerics", {}).get("batch_size"),
                "deterministic": res.get("numerics", {}).get("deterministic_algorithms"),
                "family": r["family"], "setting": json.dumps(r["setting"], sort_keys=True),
                **{f"setting.{k}": v for k, v in r["setting"].items()},
                "metric": r["metric"], "value": r["value"], "seed": r["seed"], "n": r["n"],
                "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"),  # absent in runs made before intervals
                "available": r["available"], "reason": r["reason"], "version": r["version"],
                "protocol_id": protocol_id(r["protocol"]), "protocol": json.dumps(r["protocol"], sort_keys=True,
                                                                                 default=str),
                "extra": json.dumps(r.get("extra", {}), default=str),
                **{f"model.{k}": v for k, v in prov.items() if k in MODEL_COLUMNS},
            })
    except (KeyError, TypeError, AttributeError) as e:  # valid JSON, but not (all of) a results.json
        detail = f"no key {e}" if isinstance(e, KeyError) else str(e)
        raise UserError(f"'{path}' is not a complete results.json ({detail}); {rerun}") from None
    return rows


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (over seeds; 0 for one seed), the number of seeds and the mean bootstrap interval bounds
    (ci_low, ci_high; NaN for rows without one) per suite x model x metric."""
    keys = ["suite", "family", "base_model", "model", "setting", "metric", "protocol_id", "n"]
    ok = df[df["available"] & df["value"].notna()]
    g = ok.groupby(keys, dropna=False, sort=False)["value"]
    out = g.agg(mean="mean", std="std", seeds="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    if "ci_low" in ok:  # the bootstrap interval of one seed's number, its bounds averaged over the seeds
        ci = ok[keys].assign(ci_low=ok["ci_low"].astype(float), ci_high=ok["ci_high"].astype(float))
        bounds = ci.groupby(keys, dropna=False, sort=False)[["ci_low", "ci_high"]].mean().reset_index()
        out = out.merge(bounds, on=keys, how="left")
    return out


def export(df: pd.DataFrame, prefix: str | Path) -> list[Path]:
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [prefix.with_suffix(".csv"), prefix.with_name(prefix.name + "_summary.csv")]
    df.to_csv(paths[0], index=False)
    summarize(df).to_csv(paths[1], index=False)
    try:
        df.to_parquet(prefix.with_suffix(".parquet"), index=False)
        paths.append(prefix.with_suffix(".parquet"))
    except ImportError:  # pyarrow is a dev extra
        pass
    return paths

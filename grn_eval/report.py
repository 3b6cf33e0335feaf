"""Results files -> one tidy pandas DataFrame (a row per model x setting x metric x seed).

`grn-eval report RUNS... --out PREFIX` writes PREFIX.csv, PREFIX.parquet and PREFIX_summary.csv
(mean, std, n over seeds). RUNS are results.json files or folders that hold them, at most one run per
suite: the summary, the tables and the gate take a suite x model x metric's rows as the seeds of one run.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pandas as pd

from grn.errors import UserError
from grn.fileio import atomic_path, check_output_name
from grn_eval.metrics import registry

# Which direction is better, for tables, plots and the gate: declared per row by each metric
# (grn_eval/metrics/); live sets, so a metric registered later is in them too.
LOWER_IS_BETTER = registry.RowsWhere("lower")
HIGHER_IS_BETTER = registry.RowsWhere("higher")


# Model provenance fields copied into the table (the rest stays in results.json).
MODEL_COLUMNS = ("quantizer", "bits_per_token", "rounds", "trained_rounds", "latent_channels", "checkpoint",
                 "checkpoint_sha256", "checkpoint_integrity", "tokenizer_integrity", "determinism")


def unverified_models(df: pd.DataFrame) -> list[str]:
    """The models of these rows whose checkpoint or tokenizer could not be verified (no content hash, no pin):
    allowed, but every table and gate says so (grn_eval/model_check.py `integrity`)."""
    cols = [c for c in ("model.checkpoint_integrity", "model.tokenizer_integrity") if c in df]
    bad = pd.Series(False, index=df.index)
    for c in cols:
        bad |= df[c].astype(str).str.startswith("unverified")
    return sorted(set(df.loc[bad, "model"]))


def unseeded_models(df: pd.DataFrame) -> list[str]:
    """The models whose samples do not follow their seeds (`deterministic: false`): their seeds are not paired."""
    if "model.determinism" not in df:
        return []
    return sorted(set(df.loc[df["model.determinism"].astype(str).str.startswith("not checked"), "model"]))


def better(metric: str) -> str | None:
    """"lower" or "higher" for a row name a metric declares; None for any other (e.g. literature-only)."""
    row = registry.row(metric)
    return row.better if row else None


def find_results(paths) -> list[Path]:
    """The results.json files named or found below the folders named, each once (in the order given)."""
    out = {}
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("results.json") if f.is_file())
        elif p.is_file():
            found = [p]
        else:
            raise UserError(f"'{p}' is neither a results.json file nor a folder holding some; check the path")
        for f in found:  # a run named twice (its folder and its file) is one run
            out.setdefault(f.resolve(), f)
    return list(out.values())


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
    """Every row of the runs found in `paths`; a UserError for a damaged file or for several runs of one suite."""
    rows, runs = [], {}
    for path in find_results(paths):
        new = _rows(path)
        rows += new
        if new:
            runs.setdefault(new[0]["suite"], []).append(path)
    several = {suite: found for suite, found in runs.items() if len(found) > 1}
    if several:
        raise UserError(_several_runs(several))
    if not rows:
        raise UserError(f"no result rows found in {list(map(str, paths))}")
    return pd.DataFrame(rows)


def _several_runs(several: dict[str, list[Path]]) -> str:
    """Two runs of one suite cannot be read together: each seed would count twice in the summary and the
    tables, and in the gate one run's numbers would overwrite the other's. Name them, newest first."""
    parts, newest = [], None
    for suite, found in several.items():
        found = sorted(found, key=lambda f: f.stat().st_mtime, reverse=True)
        newest = newest or found[0].parent
        listed = ", ".join(f"'{f}'" for f in found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
        parts.append(f"{len(found)} runs of suite '{suite}' (newest first: {listed})")
    return (f"found {'; '.join(parts)}; one run per suite is read at a time: pass the folder or results.json of "
            f"the run you mean, e.g. '{newest}', or move the other runs away")


RERUN = "the run may have been interrupted: re-run it (`grn-eval run SUITE` resumes)"
DAMAGED = "the file was edited or damaged: re-run the suite (`grn-eval run SUITE` resumes)"


def _read(path: Path) -> dict:
    try:
        res = json.loads(path.read_text())
    except ValueError as e:  # JSONDecodeError or UnicodeDecodeError
        raise UserError(f"'{path}' is not valid JSON ({e}); {RERUN}") from None
    except OSError as e:  # a folder or an unreadable file named results.json
        raise UserError(f"'{path}' cannot be read ({e.strerror}); pass a run's results.json or its folder") from None
    if not isinstance(res, dict):
        kind = {list: "a list", str: "a string", bool: "true or false", type(None): "null"}.get(type(res), "a number")
        raise UserError(f"'{path}' is not a results.json (a JSON object): it holds {kind}; pass the results.json "
                        f"a run wrote")
    return res


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # JSON true is no count


# The keys of a row that the summary, the tables and the gate compute with: (accepts, what it should be).
ROW_TYPES = {"value": (lambda v: v is None or _is_int(v) or isinstance(v, float), "a number or null"),
             "seed": (_is_int, "an integer"), "n": (_is_int, "an integer"),
             "available": (lambda v: isinstance(v, bool), "true or false")}


def _check_row(path: Path, i: int, r: dict) -> None:
    for key, (ok, kind) in ROW_TYPES.items():
        if key in r and not ok(r[key]):
            raise UserError(f"'{path}': rows[{i}] ({r.get('model')}, {r.get('metric')}) has {key} {r[key]!r}, "
                            f"expected {kind}: {DAMAGED}")


def _digest(prov: dict, seed) -> str | None:
    """The sha256 of the samples one seed's numbers were computed from (recorded by the runner; absent in older
    runs and for reconstructions): information for the gate, so anything but a text digest reads as absent."""
    digests = prov.get("samples_sha256") if isinstance(prov, dict) else None
    digest = digests.get(str(seed)) if isinstance(digests, dict) else None
    return digest if isinstance(digest, str) else None


def _rows(path: Path) -> list[dict]:
    """The table rows of one results.json; a damaged file is a UserError naming it, not a traceback."""
    res = _read(path)
    rows = []
    try:
        if not isinstance(res["suite"], str):
            raise TypeError(f"suite {res['suite']!r} is not a name")
        for i, r in enumerate(res["rows"]):
            _check_row(path, i, r)
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
                "samples_sha256": _digest(prov, r["seed"]),
            })
    except (KeyError, TypeError, AttributeError) as e:  # valid JSON, but not (all of) a results.json
        detail = f"no key {e}" if isinstance(e, KeyError) else str(e)
        raise UserError(f"'{path}' is not a complete results.json ({detail}); {RERUN}") from None
    return rows


def read_csv(path: str | Path, fix: str, written: bool = True) -> pd.DataFrame:
    """A CSV table (a published report, a literature file) with every way it can be damaged as one UserError
    naming it and `fix`: missing, empty, not text or not a table, and, for a file this project `written`,
    cut off: pandas ends every file it writes with a newline, and a cut one would parse as fewer rows."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:  # missing, a folder, unreadable
        raise UserError(f"'{path}' cannot be read ({e.strerror}); {fix}") from None
    if not raw.strip():
        raise UserError(f"'{path}' is empty; {fix}")
    if written and not raw.endswith(b"\n"):
        raise UserError(f"'{path}' is cut off (its last line is unfinished): an interrupted write or copy; {fix}")
    try:
        return pd.read_csv(io.BytesIO(raw))
    except ValueError as e:  # pandas' ParserError and UnicodeDecodeError are ValueErrors
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UserError(f"'{path}' is not a readable CSV table ({first}); {fix}") from None


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


def output_prefix(prefix: str | Path, where: str = "--out") -> Path:
    """An output prefix checked before anything is written: its last part one safe file name
    (grn/fileio.py `check_output_name`) and no file where a folder of it must be."""
    prefix = Path(prefix)
    check_output_name(prefix.name, f"{where} '{prefix}'")
    for parent in prefix.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{where} '{prefix}': '{parent}' is a file, not a folder; choose another prefix")
    return prefix


def with_suffix(prefix: Path, suffix: str) -> Path:
    """`prefix` + `suffix`, appended: Path.with_suffix would replace the '.v2' of a prefix 'rep.v2'."""
    return prefix.with_name(prefix.name + suffix)


def export(df: pd.DataFrame, prefix: str | Path) -> list[Path]:
    prefix = output_prefix(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [with_suffix(prefix, ".csv"), with_suffix(prefix, "_summary.csv")]
    with atomic_path(paths[0]) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(paths[1]) as tmp:
        summarize(df).to_csv(tmp, index=False)
    try:
        with atomic_path(with_suffix(prefix, ".parquet")) as tmp:
            df.to_parquet(tmp, index=False)
        paths.append(with_suffix(prefix, ".parquet"))
    except ImportError:  # pyarrow is a dev extra
        pass
    return paths

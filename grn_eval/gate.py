"""A noise-aware regression gate: compare a run with a stored baseline.

A baseline stores, per model x metric, the mean, the seed-to-seed std, every seed's value and one seed's
bootstrap half-width (the median over its seeds). Per model x metric the run's seeds give a move
`delta` (in the bad direction when positive) and its standard error `se`:
  * paired, when the run has at least PAIRED_MIN seeds and the baseline has each of their values: the
    mean of the per-seed differences, se = their std / sqrt(n), against Student's t with n - 1 degrees
    of freedom (the same seeds draw the same noise, so what the seeds share cancels);
  * unpaired otherwise: the run's mean minus the baseline's, se = sigma sqrt(1/n_run + 1/n_baseline),
    with sigma the baseline's seed-to-seed std, or, for a baseline of one seed, that seed's bootstrap
    half-width / 1.96. The seed std is the noise that matters here: between seeds the reference set is
    fixed, while the bootstrap also resamples it (and is conservative where N < d): on the smoke suite
    (N = 100) one seed's FID interval is +-7.9 where five seeds spread with a std of 1.6.
It regresses when delta exceeds
    tolerance = max(crit * se, abs_floor[metric], rel_floor * |mean|)
with crit the one-sided 3-sigma level (K_STD for the normal, its t quantile when paired). The minimum
detectable effect printed beside it is the move flagged with 80% probability: tolerance + 0.84 se.
Latency is compared only with a baseline measured on the same device class. `--update`
writes a new baseline (for review in the pull request) instead of comparing.

Only like is compared with like: the run must be of the baseline's suite and use only the
baseline's seeds (else a UserError, nothing is compared), and every model x metric of the
baseline must be in the run (else a failing row). A changed suite hash is only a note. A value
that is not a finite number, in the run or in the baseline, fails its row by name: NaN compares
False with everything, so a NaN move would otherwise read as "ok".

Beside the verdict, `samples_identity` says per model whether the run's samples are bit for bit the
baseline's for the same seeds (the sha256 the runner records per seed, kept by `--update`):
information only, identical samples explain identical numbers, changed ones leave it to the statistics.

`detectable` says what the comparison can and cannot see: per metric the smallest move it flags and the
minimum detectable effect at the suite's N and seeds, next to one seed's bootstrap half-width.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from scipy import stats

from grn.errors import UserError
from grn.fileio import atomic_write
from grn_eval.metrics import registry
from grn_eval.report import better, summarize, unseeded_models, unverified_models

K_STD = 3.0
ALPHA = float(stats.norm.sf(K_STD))  # the one-sided level K_STD sigmas stand for (0.00135)
POWER_Z = float(stats.norm.ppf(0.8))  # the minimum detectable effect: flagged with 80% probability
PAIRED_MIN = 3  # seeds in common with the baseline for a paired comparison (its std needs >= 2 degrees of freedom)
REL_FLOOR = 0.02
# abs_floor: each metric row's `floor`, declared with the metric (grn_eval/metrics/registry.py `Row`)
LATENCY_METRICS = {"seconds_per_image"}
LATENCY_REL_FLOOR = 0.5  # timing noise on shared machines is large
REQUIRED_KEYS = ("suite", "device_class", "metrics")
REQUIRED_METRIC_KEYS = ("mean", "std", "n", "protocol_id")
MISSING = "FAIL (missing from the run)"
NON_FINITE = "FAIL (non-finite value"


def device_class(df: pd.DataFrame) -> str:
    kinds = sorted({f"{t}:{n}" for t, n in zip(df["device"], df["device_name"])})
    return ",".join(kinds)


def _seeds(df: pd.DataFrame) -> list[int]:
    return sorted({int(s) for s in df["seed"].dropna()})


def _half_width(rows: pd.DataFrame) -> float | None:
    if "ci_low" not in rows:
        return None
    half = ((rows["ci_high"].astype(float) - rows["ci_low"].astype(float)) / 2).dropna()
    return float(half.median()) if len(half) else None


def _value(v) -> float:
    return float("nan") if v is None else float(v)  # a column of nothing but nulls holds None, not NaN


def _check_finite_run(df: pd.DataFrame) -> None:
    """A baseline is made from finite values only: one NaN would fail every later gate of its row."""
    rows = df[df["available"]]
    bad = [f"{m}|{k} seed {int(s)} is {_value(v)}"
           for m, k, s, v in zip(rows["model"], rows["metric"], rows["seed"], rows["value"])
           if not math.isfinite(_value(v))]
    if bad:
        raise UserError(f"cannot make a baseline from values that are not finite numbers: {', '.join(bad[:5])}"
                        f"{' and more' if len(bad) > 5 else ''}; fix the run (a diverged model or a broken metric) "
                        f"and run `--update` again; nothing was written")


def sample_digests(df: pd.DataFrame) -> dict[str, dict[str, str]]:
    """model -> {seed: sha256 of that seed's samples}, as the run recorded them (empty for older runs)."""
    out: dict[str, dict[str, str]] = {}
    if "samples_sha256" in df:
        for model, seed, digest in zip(df["model"], df["seed"], df["samples_sha256"]):
            if isinstance(digest, str):
                out.setdefault(model, {})[str(int(seed))] = digest
    return out


def make_baseline(df: pd.DataFrame, name: str) -> dict:
    _check_finite_run(df)
    s = summarize(df)
    ok = df[df["available"] & df["value"].notna()]
    metrics = {}
    for _, r in s.iterrows():
        if better(r["metric"]) is None:
            continue
        rows = ok[(ok["model"] == r["model"]) & (ok["metric"] == r["metric"])]
        metrics[f"{r['model']}|{r['metric']}"] = {
            "mean": r["mean"], "std": r["std"], "seeds": int(r["seeds"]), "n": int(r["n"]),
            "protocol_id": r["protocol_id"], "ci_half": _half_width(rows),
            "values": {str(int(k)): float(v) for k, v in zip(rows["seed"], rows["value"])}}
    # suite, suite_hash and seeds let `compare` refuse a run that is not like for like.
    return {"name": name, "suite": sorted(set(df["suite"])), "suite_hash": sorted(set(df["suite_hash"])),
            "config_hash": sorted(set(df["config_hash"].dropna())) if "config_hash" in df else [],
            "seeds": _seeds(df), "device_class": device_class(df), "k_std": K_STD, "rel_floor": REL_FLOOR,
            "abs_floor": registry.floors(), "metrics": metrics, "samples_sha256": sample_digests(df)}


def floor_of(metric: str, mean: float) -> float:
    """The smallest move that ever counts: the metric's absolute floor or a fraction of its value."""
    rel = LATENCY_REL_FLOOR if metric in LATENCY_METRICS else REL_FLOOR
    return max(registry.floors().get(metric, 0.0), rel * abs(mean))


def tolerance(metric: str, mean: float, std: float) -> float:
    """One seed against a baseline of many whose std is all that is known (an old baseline): 3 std or the floor."""
    return max(K_STD * std, floor_of(metric, mean))


def move(values: dict[int, float], base: dict, run_half: float | None = None, paired: bool = True) -> dict:
    """The move of one model x metric (run seed -> value) from its baseline entry: {'test', 'delta' (run minus
    baseline), 'se', 'crit'} as the module docstring says. `paired=False`: never paired (a model whose samples
    do not follow its seeds: the same seed draws other noise, so per-seed differences share nothing)."""
    seeds = sorted(values)
    per_seed = base.get("values") or {}
    if paired and len(seeds) >= PAIRED_MIN and all(str(s) in per_seed for s in seeds):
        d = [values[s] - per_seed[str(s)] for s in seeds]
        n = len(d)
        mean = sum(d) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
        return {"test": "paired", "delta": mean, "se": sd / math.sqrt(n), "crit": float(stats.t.isf(ALPHA, n - 1))}
    n_base = base.get("seeds") or len(per_seed) or 1
    sigma = base["std"]
    if n_base < 2:  # no seed-to-seed spread measured: one seed's own interval is the only noise estimate
        halves = [h for h in (base.get("ci_half"), run_half) if h is not None and math.isfinite(h)]
        sigma = max(halves) / stats.norm.isf(0.025) if halves else 0.0
    se = sigma * math.sqrt(1 / len(seeds) + 1 / n_base)
    return {"test": "unpaired", "delta": sum(values.values()) / len(values) - base["mean"], "se": se, "crit": K_STD}


def _names(values) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


def check_comparable(df: pd.DataFrame, baseline: dict) -> None:
    """Raise a UserError when the run's numbers cannot be set against the baseline's at all."""
    base_suites = baseline["suite"]
    base_suites = {base_suites} if isinstance(base_suites, str) else set(base_suites)
    run_suites = set(df["suite"])
    if run_suites != base_suites:
        raise UserError(f"the run is of suite {_names(run_suites)} but the baseline is of suite "
                        f"{_names(base_suites)}; gate against that suite's baseline, or make one for this suite "
                        f"with `--update`")
    if baseline.get("seeds") is not None:  # None: an old baseline, see notes()
        other = sorted(set(_seeds(df)) - set(baseline["seeds"]))
        if other:
            base = ",".join(map(str, baseline["seeds"]))
            raise UserError(f"the run used seed(s) {', '.join(map(str, other))}, which the baseline was not "
                            f"measured with (baseline seeds: {base}); re-run with `--seeds {base}`, or re-make "
                            f"the baseline with `--update`")


def notes(df: pd.DataFrame, baseline: dict) -> list[str]:
    """What the user should know about the comparison that does not fail it on its own."""
    out = []
    old = [k for k in ("suite_hash", "seeds") if baseline.get(k) is None]
    if old:
        out.append(f"the baseline records no {' or '.join(old)} (made by an older grn-eval), so "
                   f"{'they were' if len(old) > 1 else 'it was'} not checked; re-make it with `--update`")
    run_config = set(df["config_hash"].dropna()) if "config_hash" in df else set()
    if baseline.get("config_hash") and run_config:  # the suite without its seeds (seeds are checked apart)
        if run_config != set(baseline["config_hash"]):
            out.append(f"the suite configuration differs from the baseline's (config hash run: "
                       f"{', '.join(sorted(run_config))}; baseline: {', '.join(baseline['config_hash'])}): the suite "
                       f"file changed since the baseline was made. The numbers may still be comparable (protocol and "
                       f"N are checked per metric); re-make the baseline with `--update` if the change is intended")
    elif baseline.get("suite_hash") is not None and set(df["suite_hash"]) != set(baseline["suite_hash"]):
        out.append(f"the suite hash differs from the baseline's (run: {', '.join(sorted(set(df['suite_hash'])))}; "
                   f"baseline: {', '.join(baseline['suite_hash'])}): the suite file changed since the baseline was "
                   f"made. The numbers may still be comparable (protocol and N are checked per metric); re-make "
                   f"the baseline with `--update` if the change is intended")
    for model in unverified_models(df):
        out.append(f"model '{model}': its checkpoint or tokenizer is unverified (no content hash and no sha256 pin), "
                   f"so damaged weights would not be noticed; pin it with `checkpoint_sha256:` / `tokenizer_sha256:` "
                   f"in the suite or re-export it")
    for model in unseeded_models(df):
        out.append(f"model '{model}' says `deterministic: false`: its seeds are compared unpaired")
    return out


def _non_finite(values: dict[int, float], base: dict) -> str:
    """What is not a finite number among a model x metric's run values and its baseline entry ('' if nothing)."""
    bad = [f"run seed {s} is {v}" for s, v in sorted(values.items()) if not math.isfinite(v)]
    bad += [f"baseline {k} is {base[k]}" for k in ("mean", "std") if not math.isfinite(base[k])]
    bad += [f"baseline seed {s} is {v}" for s, v in sorted((base.get("values") or {}).items()) if not math.isfinite(v)]
    return "; ".join(bad)


def compare(df: pd.DataFrame, baseline: dict) -> pd.DataFrame:
    """One row per model x metric of the baseline: the run's seeds, the test, the move and its tolerance, the
    minimum detectable effect and the verdict; a baseline model x metric the run lacks, and one with a value
    that is not a finite number, is a failing row. Raises UserError if not like for like."""
    check_comparable(df, baseline)
    same_device = device_class(df) == baseline["device_class"]
    # An unavailable row is missing; an available one without a finite value fails, it is not dropped.
    ok = df[df["available"]]
    unseeded = set(unseeded_models(df))
    out, seen = [], set()
    for (model, metric), rows in ok.groupby(["model", "metric"], sort=False):
        key = f"{model}|{metric}"
        if key not in baseline["metrics"]:
            continue
        seen.add(key)
        b = baseline["metrics"][key]
        values = {int(s): _value(v) for s, v in zip(rows["seed"], rows["value"])}
        run_half = _half_width(rows)
        bad = _non_finite(values, b)
        if bad:
            out.append({"model": model, "metric": metric, "seeds": len(values), "test": "", "baseline": b["mean"],
                        "value": sum(values.values()) / len(values), "delta": float("nan"), "se": float("nan"),
                        "tolerance": float("nan"), "mde": float("nan"),
                        "ci_half": float("nan") if run_half is None else run_half, "status": f"{NON_FINITE}: {bad})"})
            continue
        t = move(values, b, run_half, paired=model not in unseeded)
        tol = max(t["crit"] * t["se"], floor_of(metric, b["mean"]))
        worse = t["delta"] if better(metric) == "lower" else -t["delta"]
        if metric in LATENCY_METRICS and not same_device:
            status = "skipped (baseline from another device class)"
        elif set(rows["protocol_id"]) != {b["protocol_id"]} or set(rows["n"].astype(int)) != {b["n"]}:
            status = "FAIL (protocol or N differs from the baseline)"
        else:
            status = "REGRESSION" if worse > tol else ("improved" if worse < -tol else "ok")
        out.append({"model": model, "metric": metric, "seeds": len(values), "test": t["test"],
                    "baseline": b["mean"], "value": sum(values.values()) / len(values), "delta": t["delta"],
                    "se": t["se"], "tolerance": tol, "mde": tol + POWER_Z * t["se"],
                    "ci_half": float("nan") if run_half is None else run_half, "status": status})
    # A model or metric that silently dropped out of the run must not let the gate pass.
    for key in sorted(set(baseline["metrics"]) - seen):
        model, _, metric = key.rpartition("|")  # a model name may hold "|", a metric name never
        b = baseline["metrics"][key]
        out.append({"model": model, "metric": metric, "seeds": 0, "test": "", "baseline": b["mean"],
                    "value": float("nan"), "delta": float("nan"), "se": float("nan"),
                    "tolerance": tolerance(metric, b["mean"], b["std"]), "mde": float("nan"),
                    "ci_half": float("nan"), "status": MISSING})
    return pd.DataFrame(out)


def detectable(report: pd.DataFrame) -> pd.DataFrame:
    """Per metric, what the gate can see (medians over the models): the smallest move it flags (the
    tolerance), that move relative to the baseline, the minimum detectable effect (flagged with 80%
    probability) and one seed's own uncertainty (the half-width of its bootstrap interval; NaN where the
    metric has none). A regression smaller than `smallest_flagged` passes."""
    r = report[~report["status"].str.startswith((MISSING, NON_FINITE))].copy()
    if r.empty:
        return pd.DataFrame(columns=["metric", "smallest_flagged", "relative", "mde", "one_seed_half_width"])
    r["relative"] = r["tolerance"] / r["baseline"].abs().where(r["baseline"] != 0)
    g = r.groupby("metric", sort=False)
    return pd.DataFrame({"smallest_flagged": g["tolerance"].median(), "relative": g["relative"].median(),
                         "mde": g["mde"].median(), "one_seed_half_width": g["ci_half"].median()}).reset_index()


def samples_identity(df: pd.DataFrame, baseline: dict) -> dict[str, tuple[str, str]]:
    """Per model of the run: ('identical' | 'changed' | 'unknown', detail): whether its samples are bit for bit
    the baseline's for the run's seeds. Information only, it does not change pass or fail."""
    run, base = sample_digests(df), baseline.get("samples_sha256")
    base = base if isinstance(base, dict) else {}
    out = {}
    for model in dict.fromkeys(df["model"]):
        seeds = sorted({str(int(s)) for s in df.loc[df["model"] == model, "seed"]}, key=int)
        mine, theirs = run.get(model, {}), base.get(model) if isinstance(base.get(model), dict) else {}
        differ = [s for s in seeds if s in mine and s in theirs and mine[s] != theirs[s]]
        lack = [s for s in seeds if s not in mine or s not in theirs]
        if differ:
            out[model] = ("changed", f"seed(s) {', '.join(differ)} differ; the statistical verdict decides")
        elif not mine:
            out[model] = ("unknown", "the run records no sample digests")
        elif not theirs:
            out[model] = ("unknown", "the baseline records no sample digests; `--update` keeps them")
        elif lack:
            out[model] = ("unknown", f"seed(s) {', '.join(lack)} lack a digest in the run or the baseline")
        else:
            out[model] = ("identical", f"seed(s) {', '.join(seeds)}")
    return out


def failed(report: pd.DataFrame) -> bool:
    return bool(len(report)) and report["status"].str.startswith(("REGRESSION", "FAIL")).any()


def check_baseline_path(path: str | Path) -> Path:
    """Where `--update` writes: a file name, not a folder, below folders (checked before anything is written)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--baseline '{path}' is a folder; give the baseline's file, e.g. '{path / 'NAME.json'}'")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"--baseline '{path}': '{parent}' is a file, not a folder; choose another path")
    return path


def write_baseline(baseline: dict, path: str | Path) -> None:
    atomic_write(check_baseline_path(path), json.dumps(baseline, indent=1, sort_keys=True) + "\n")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)  # NaN is a number here: compare fails its row


# The types of a baseline entry's values that compare computes with: (accepts, what it should be).
METRIC_TYPES = {"mean": (_number, "a number"), "std": (_number, "a number"),
                "n": (lambda v: _number(v) and float(v).is_integer(), "an integer"),
                "seeds": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
                "ci_half": (lambda v: v is None or _number(v), "a number or null"),
                "values": (lambda v: isinstance(v, dict) and all(map(_number, v.values())),
                           "an object of seed -> number")}


def _wrong_types(baseline: dict) -> list[str]:
    bad = [f"metrics['{key}'].{k} is {m[k]!r}, expected {kind}" for key, m in baseline["metrics"].items()
           for k, (ok, kind) in METRIC_TYPES.items() if k in m and not ok(m[k])]
    suite, seeds = baseline["suite"], baseline.get("seeds")
    if not (isinstance(suite, str) or isinstance(suite, list) and all(isinstance(x, str) for x in suite)):
        bad.append(f"suite is {suite!r}, expected a suite name or a list of them")
    if seeds is not None and not (isinstance(seeds, list) and all(isinstance(x, int) for x in seeds)):
        bad.append(f"seeds is {seeds!r}, expected a list of integers")
    return bad


def read_baseline(path: str | Path) -> dict:
    path = Path(path)
    remake = f"re-create it with `grn-eval gate RUNS --baseline {path} --update`"
    if path.is_dir():
        raise UserError(f"baseline '{path}' is a folder; give the baseline's file, e.g. '{path / 'NAME.json'}'")
    if not path.is_file():
        raise UserError(f"baseline '{path}' not found; create one with `grn-eval gate RUN --baseline {path} "
                        f"--update`")
    try:
        baseline = json.loads(path.read_text())
    except ValueError as e:  # JSONDecodeError or UnicodeDecodeError: truncated or not a baseline
        raise UserError(f"baseline '{path}' is not valid JSON ({e}); it may be truncated: {remake}") from None
    except OSError as e:
        raise UserError(f"baseline '{path}' cannot be read ({e.strerror}); check its permissions") from None
    if not isinstance(baseline, dict):
        raise UserError(f"baseline '{path}' is not a baseline (a JSON object); {remake}")
    missing = [k for k in REQUIRED_KEYS if k not in baseline]
    metrics = baseline.get("metrics", {})
    if not isinstance(metrics, dict):
        missing.append("metrics (as an object)")
    else:
        missing += [f"metrics['{key}'].{k}" for key, m in metrics.items() for k in REQUIRED_METRIC_KEYS
                    if not isinstance(m, dict) or k not in m]
    if missing:
        raise UserError(f"baseline '{path}' lacks the key(s) {', '.join(missing[:5])}"
                        f"{' and more' if len(missing) > 5 else ''}; {remake}")
    wrong = _wrong_types(baseline)
    if wrong:
        raise UserError(f"baseline '{path}': {'; '.join(wrong[:5])}{' and more' if len(wrong) > 5 else ''}; the file "
                        f"was edited or damaged: {remake}")
    return baseline

"""Suite YAML -> validated, frozen dataclasses.

A suite names its models (with sampler settings; list values expand to a grid), the metrics
with their options, the reference set, seeds, sample counts, device and output folder.
`include:` merges other files first (paths relative to the including file; mappings merge
key by key, everything else is replaced). Any error names the file, the key path and what
is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class SuiteError(ValueError):
    """A suite file is malformed; the message names the file and the key path."""


# ---------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------

TOP_KEYS = {"name", "description", "include", "defaults", "datasets", "models", "metrics", "reference", "seeds",
            "n_samples", "batch_size", "device", "output_dir", "table", "gate", "export"}
EXPORTS = ("npz", "png")
PRESENTATION_KEYS = {"table", "description", "gate"}

ADAPTER_KEYS = {
    "grn": {"checkpoint", "tokenizer", "sampler", "entropy"},
    "grn-t2i": {"checkpoint", "tokenizer", "sampler", "entropy", "prompts", "negative_prompt"},
    "ar": {"checkpoint", "tokenizer", "sampler"},
    "maskgit": {"checkpoint", "tokenizer", "sampler"},
    "flow": {"checkpoint", "tokenizer", "sampler"},
    "tokenizer": {"checkpoint"},
    "npz": {"path"},
    "identity": set(),
}
MODEL_COMMON = {"name", "adapter", "family", "label"}
DEFAULT_FAMILY = {"grn": "GRN", "grn-t2i": "GRN", "ar": "AR", "maskgit": "masked", "flow": "diffusion",
                  "tokenizer": "tokenizer", "npz": "external", "identity": "external"}

# The union over samplers; each adapter accepts its own subset (grn/sampling.py, grn/baselines/*).
SAMPLER_KEYS = {"steps": int, "schedule": str, "temperature": float, "cfg": float, "cfg_interval": list,
                "monotone": bool, "realised_t": bool, "preset": str, "top_k": int, "choice_temperature": float,
                "method": str}
ENTROPY_KEYS = {"warmup": int, "k": float, "b": float, "t_min": int, "t_max": int, "calibrate": bool}

METRIC_OPTIONS = {
    "fid": {"protocol": str},
    "rfid": {"protocol": str},
    "kid": {"subsets": int, "subset_size": int, "protocol": str},
    "prc": {"k": int, "protocol": str},
    "isc": {"splits": int},
    "psnr": {},
    "ssim": {},
    "lpips": {"nets": list},
    "clip_score": {"model": str, "tag": str, "weights_path": str, "prompts": list},
    "latency": {"warmup": int, "repeats": int},
    "prompt_accuracy": {"classifier": str},
    "entropy": {},
}
GENERATION_METRICS = {"fid", "kid", "prc", "isc", "clip_score", "prompt_accuracy", "latency", "entropy"}
RECON_METRICS = {"rfid", "psnr", "ssim", "lpips"}

DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class ModelEntry:
    name: str  # unique label incl. the grid point, e.g. "grn[steps=20]"
    base_name: str
    adapter: str
    family: str
    options: dict  # adapter options with one grid point's values
    grid: dict  # the settings that vary across the grid for this entry


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    models: tuple[ModelEntry, ...]
    metrics: dict
    reference: dict
    datasets: dict
    seeds: tuple[int, ...]
    n_samples: int
    batch_size: int
    device: str
    output_dir: str
    table: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)
    export: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()  # unset ${VAR} placeholders (only when loaded without check_assets)
    resolved: dict = field(default_factory=dict)  # the merged YAML, for provenance

    @property
    def hash(self) -> str:
        """What defines the numbers (presentation keys such as `table` and `description` excluded)."""
        defining = {k: v for k, v in self.resolved.items() if k not in PRESENTATION_KEYS}
        return hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def kind(self) -> str:
        return "reconstruction" if set(self.metrics) & RECON_METRICS else "generation"


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def _err(path: Path, key: str, msg: str) -> SuiteError:
    return SuiteError(f"{path}: {key}: {msg}")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value, needs: set):
    """Replace ${VAR} in strings by the environment's value; remember the unset ones in `needs`."""
    if isinstance(value, dict):
        return {k: _expand_env(v, needs) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, needs) for v in value]
    if isinstance(value, str):
        def sub(m):
            if m.group(1) in os.environ:
                return os.environ[m.group(1)]
            needs.add(m.group(1))
            return m.group(0)
        return _PLACEHOLDER.sub(sub, value)
    return value


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if not path.is_file():
        raise SuiteError(f"{path}: file not found")
    if path.resolve() in seen:
        raise SuiteError(f"{path}: include cycle through {[str(p) for p in seen]}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise _err(path, "<top>", f"a suite is a mapping, got {type(data).__name__}")
    includes = data.pop("include", [])
    includes = [includes] if isinstance(includes, str) else includes
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise _err(path, "include", "a path or a list of paths")
    merged: dict = {}
    for inc in includes:
        merged = _merge(merged, _read_yaml(path.parent / inc, (*seen, path.resolve())))
    return _merge(merged, data)


def _check_keys(path, where: str, given: dict, allowed) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise _err(path, f"{where}.{unknown[0]}" if where else unknown[0],
                   f"unknown key; allowed: {sorted(allowed)}")


def _check_type(path, where, value, typ):
    if value is None:
        return
    ok = isinstance(value, typ) and not (typ in (int, float) and isinstance(value, bool))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise _err(path, where, f"expected {typ.__name__}, got {type(value).__name__} ({value!r})")


def _expand(path, where: str, settings: dict, types: dict) -> list[tuple[dict, dict]]:
    """Expand list-valued settings into a grid. Returns [(settings, varying)]."""
    _check_keys(path, where, settings, types)
    axes = {}
    for k, v in settings.items():
        typ = types[k]
        is_grid = isinstance(v, list) and (typ is not list or (v and all(isinstance(x, list) for x in v)))
        values = v if is_grid else [v]
        for i, x in enumerate(values):
            _check_type(path, f"{where}.{k}" + (f"[{i}]" if is_grid else ""), x, typ)
        axes[k] = (values, is_grid)
    out = []
    keys = list(axes)
    for combo in itertools.product(*[axes[k][0] for k in keys]):
        point = dict(zip(keys, combo))
        varying = {k: point[k] for k in keys if axes[k][1]}
        out.append((point, varying))
    return out


def _model_entries(path, i: int, raw, defaults: dict) -> list[ModelEntry]:
    where = f"models[{i}]"
    if not isinstance(raw, dict):
        raise _err(path, where, "each model is a mapping")
    raw = _merge(defaults, raw)
    adapter = raw.get("adapter")
    if adapter not in ADAPTER_KEYS:
        raise _err(path, f"{where}.adapter", f"unknown adapter {adapter!r}; allowed: {sorted(ADAPTER_KEYS)}")
    _check_keys(path, where, raw, MODEL_COMMON | ADAPTER_KEYS[adapter])
    name = raw.get("name") or adapter
    _check_type(path, f"{where}.name", name, str)
    grids: list[list[tuple[dict, dict]]] = []
    for key, types in (("sampler", SAMPLER_KEYS), ("entropy", ENTROPY_KEYS)):
        val = raw.get(key)
        if val is None:
            grids.append([(None, {})])
            continue
        if not isinstance(val, dict):
            raise _err(path, f"{where}.{key}", "a mapping of settings")
        grids.append([(s, {f"{key}.{k}": v for k, v in var.items()}) for s, var in
                      _expand(path, f"{where}.{key}", val, types)])
    ckpts = raw.get("checkpoint")
    ckpt_grid = [(c, {"checkpoint": Path(c).name} if isinstance(ckpts, list) else {})
                 for c in (ckpts if isinstance(ckpts, list) else [ckpts])]
    for j, (c, _) in enumerate(ckpt_grid):
        if c is not None and not _PLACEHOLDER.search(str(c)):
            _check_type(path, f"{where}.checkpoint" + (f"[{j}]" if isinstance(ckpts, list) else ""), c, str)
            if not (path.parent / c).exists() and not Path(c).exists():
                raise _err(path, f"{where}.checkpoint", f"file '{c}' not found (relative to the suite or the "
                                                         f"working directory)")
    for key in ("tokenizer", "path", "negative_prompt"):
        if raw.get(key) is not None:
            _check_type(path, f"{where}.{key}", raw[key], str)
    prompts = raw.get("prompts")
    if prompts is not None and (not isinstance(prompts, list) or not prompts
                                or not all(isinstance(p, str) for p in prompts)):
        raise _err(path, f"{where}.prompts", "a non-empty list of prompt strings")
    entries = []
    for (ck, v0), (sampler, v1), (entropy, v2) in itertools.product(ckpt_grid, *grids):
        varying = {**v0, **v1, **v2}
        label = name + ("[" + ",".join(f"{k}={v}" for k, v in varying.items()) + "]" if varying else "")
        opts = {k: v for k, v in raw.items() if k not in ("name", "family", "label")}
        opts.update(checkpoint=ck, sampler=sampler, entropy=entropy)
        family = raw.get("family", DEFAULT_FAMILY.get(adapter, adapter))
        entries.append(ModelEntry(label, name, adapter, family, opts, varying))
    return entries


def load_suite(path: str | Path, overrides: dict | None = None, check_assets: bool = True) -> Suite:
    """Read, merge includes, validate. `overrides` (e.g. from the command line) win over the file.

    Paths may use ${VAR} placeholders (ImageNet folders, reference statistics, official checkpoints).
    With `check_assets` an unset variable or a missing file is an error before anything is built;
    without it (`grn-eval validate`) the suite is checked for structure and its needs are listed."""
    path = Path(path)
    needs: set = set()
    data = _expand_env(_merge(_read_yaml(path), overrides or {}), needs)
    if needs and check_assets:
        raise SuiteError(f"{path}: needs the environment variables {sorted(needs)} (paths of data, reference "
                         f"statistics or checkpoints that are not part of this repository); set them and run again")
    _check_keys(path, "", data, TOP_KEYS)
    for key in ("name",):
        if key not in data:
            raise _err(path, key, "required")
    _check_type(path, "name", data["name"], str)
    for key, typ in (("description", str), ("n_samples", int), ("batch_size", int), ("device", str),
                     ("output_dir", str)):
        _check_type(path, key, data.get(key), typ)
    if data.get("device", "cpu") not in DEVICES:
        raise _err(path, "device", f"unknown device {data['device']!r}; allowed: {DEVICES}")

    from grn.data import DATASETS

    datasets = data.get("datasets") or {}
    if not isinstance(datasets, dict):
        raise _err(path, "datasets", "a mapping alias -> {name: <registry>, ...}")
    for alias, spec in datasets.items():
        if not isinstance(spec, dict) or spec.get("name") not in DATASETS:
            raise _err(path, f"datasets.{alias}.name", f"unknown dataset {spec.get('name') if isinstance(spec, dict) else spec!r}; allowed: {sorted(DATASETS)}")  # noqa: E501

    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict) or not metrics:
        raise _err(path, "metrics", f"a non-empty mapping; allowed metrics: {sorted(METRIC_OPTIONS)}")
    for m, opts in metrics.items():
        if m not in METRIC_OPTIONS:
            raise _err(path, f"metrics.{m}", f"unknown metric; allowed: {sorted(METRIC_OPTIONS)}")
        opts = opts or {}
        if not isinstance(opts, dict):
            raise _err(path, f"metrics.{m}", "a mapping of options (or empty)")
        _check_keys(path, f"metrics.{m}", opts, METRIC_OPTIONS[m])
        for k, v in opts.items():
            _check_type(path, f"metrics.{m}.{k}", v, METRIC_OPTIONS[m][k])
        metrics[m] = opts
    if set(metrics) & RECON_METRICS and set(metrics) & (GENERATION_METRICS - {"latency"}):
        raise _err(path, "metrics", "mixes reconstruction metrics (rfid, psnr, ssim, lpips) with generation "
                                    "metrics; use two suites")

    reference = data.get("reference") or {}
    if not isinstance(reference, dict) or len(set(reference) & {"dataset", "stats", "npz"}) != 1:
        raise _err(path, "reference", "exactly one of {dataset: <alias>}, {stats: <file.npz>, sha256: ...}, "
                                      "{npz: <ADM batch>, sha256: ...}")
    _check_keys(path, "reference", reference, {"dataset", "stats", "npz", "sha256", "limit"})
    if "dataset" in reference and reference["dataset"] not in datasets:
        raise _err(path, "reference.dataset", f"unknown alias {reference['dataset']!r}; defined: {sorted(datasets)}")

    defaults = data.get("defaults") or {}
    models_raw = data.get("models") or []
    if not isinstance(models_raw, list) or not models_raw:
        raise _err(path, "models", "a non-empty list")
    models = [e for i, m in enumerate(models_raw) for e in _model_entries(path, i, m, defaults)]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise _err(path, "models", f"duplicate model labels {sorted({n for n in names if names.count(n) > 1})}")

    table = data.get("table") or {}
    if not isinstance(table, dict):
        raise _err(path, "table", "a mapping {metrics: [...], title: ..., plots: [...]}")
    _check_keys(path, "table", table, {"metrics", "title", "plots", "quality_metric"})
    from grn_eval.publish import PLOT_NAMES

    for k, p in enumerate(table.get("plots", [])):
        if p not in PLOT_NAMES:
            raise _err(path, f"table.plots[{k}]", f"unknown plot {p!r}; allowed: {PLOT_NAMES}")
    export = data.get("export", [])
    if not isinstance(export, list) or any(e not in EXPORTS for e in export):
        raise _err(path, "export", f"a list drawn from {list(EXPORTS)}")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise _err(path, "seeds", "a list of integers")
    return Suite(path=path, name=data["name"], description=data.get("description", ""), models=tuple(models),
                 metrics=metrics, reference=reference, datasets=datasets, seeds=tuple(seeds),
                 n_samples=data.get("n_samples", 1000), batch_size=data.get("batch_size", 50),
                 device=data.get("device", "cpu"), output_dir=data.get("output_dir", "results/runs"),
                 table=data.get("table") or {}, gate=data.get("gate") or {}, export=tuple(export), resolved=data,
                 needs=tuple(sorted(needs)))

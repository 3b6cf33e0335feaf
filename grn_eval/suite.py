"""Suite YAML -> validated, frozen dataclasses.

A suite names its models (with sampler settings; list values expand to a grid), the metrics
with their options, the reference set, seeds, sample counts, device and output folder.
`include:` merges other files first (paths relative to the including file; mappings merge
key by key, everything else is replaced). Every option is declared once as an `Opt` (type and
range): below, or with its metric (grn_eval/metrics/, `MetricSpec.options`); `_check` is the one
checker, so validation refuses a value before anything runs. Any error names the file, the key path,
what is wrong and what is allowed.
"""

# Over 400 lines on purpose: every declaration and the one checker that reads them stay in one file
# (metric options already live with their metrics, grn_eval/metrics/).

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import itertools
import json
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from grn.errors import UserError
from grn.fileio import check_output_name
from grn.registry import KINDS
from grn.sampling import PRESETS
from grn_eval import evaluators
from grn_eval.evaluators import EVALUATORS
from grn_eval.metrics import registry as metric_registry
from grn_eval.model_check import resolve
from grn_eval.options import SHA256, Opt


class SuiteError(UserError):
    """A suite file is malformed; the message names the file and the key path."""


# ---------------------------------------------------------------------------------------
# Declarations: one Opt per option (grn_eval/options.py); metrics declare theirs in grn_eval/metrics/
# ---------------------------------------------------------------------------------------


_STR, _BOOL, _STRINGS = Opt(str), Opt(bool, False), Opt(list, min=1, item=Opt(str))
EXPORTS = ("npz", "png")
DEVICES = ("cpu", "cuda", "auto")

TOP = {
    "name": Opt(str, required=True), "description": Opt(str, ""), "include": Opt(object),
    "defaults": Opt(dict), "datasets": Opt(dict), "models": Opt(list), "metrics": Opt(dict), "reference": Opt(dict),
    "seeds": Opt(list, [0], min=1, unique=True, item=Opt(int, min=0)),
    "n_samples": Opt(int, 1000, min=1), "batch_size": Opt(int, 50, min=1),
    "device": Opt(str, "cpu", choices=DEVICES), "output_dir": Opt(str, "results/runs"),
    "table": Opt(dict), "gate": Opt(dict), "export": Opt(list, [], unique=True, item=Opt(str, choices=EXPORTS)),
    # accept uint8 images whose values never exceed 1 (otherwise taken for images saved in [0, 1] by mistake)
    "allow_low_range": Opt(bool, False),
    # score samples of another size than the reference (each resized by the feature network); refused otherwise
    "allow_size_mismatch": Opt(bool, False),
    # score samples some of which are exact copies of reference images (the count goes into the provenance)
    "allow_reference_overlap": Opt(bool, False),
    # a named protocol papers report (grn_eval/evaluators.py): its metrics with their options fixed
    "evaluator": Opt(str, choices=tuple(EVALUATORS)),
    # video suites: the image metrics (FID, PSNR, ...) score every frame_stride-th frame of every video (frames
    # 0, s, 2s, ...; the rows record it); FVD and video prompt accuracy always see whole clips
    "frame_stride": Opt(int, 1, min=1, why="image metrics on every k-th frame of a video"),
}
PRESENTATION_KEYS = {"table", "description", "gate"}
REFERENCE = {"dataset": _STR, "stats": _STR, "npz": _STR, "sha256": SHA256,
             "limit": Opt(int, min=1, why="the number of reference images; default n_samples")}

# grn.sampling.EntropyConfig; t_max >= t_min > warmup >= 1 (so t_max >= 2): the sampler runs warmup
# steps on the fixed schedule, then between t_min - warmup and t_max - warmup more
ENTROPY = {"warmup": Opt(int, 5, min=1), "k": Opt(float, 700.0), "b": Opt(float, -620.0),
           "t_min": Opt(int, 20, min="warmup", min_exclusive=True), "t_max": Opt(int, 50, min="t_min"),
           "calibrate": _BOOL}

# Every model kind's adapter keys: these, `entropy` where its sampler takes it, and those its record adds.
_GENERATOR = {"checkpoint": _STR, "tokenizer": _STR, "sampler": Opt(dict), "checkpoint_sha256": SHA256,
              "tokenizer_sha256": SHA256, "allow_other_tokenizer": _BOOL}  # the tokenizer differs on purpose
# The adapters that are not a model kind, with their keys and family (more: grn_eval.adapters.register_adapter).
OTHER_ADAPTERS = {
    "tokenizer": {"checkpoint": Opt(str, required=True), "checkpoint_sha256": SHA256,
                  # decode with the first `rounds` of an HBQ tokenizer's M (HBQ's bits are most significant first)
                  "rounds": Opt(int, min=1, why="HBQ rounds kept when decoding, 1 ... the trained M")},
    "npz": {"path": Opt(str, required=True), "sha256": SHA256},
    # any generator: an entry point `package.module:factory` (grn_eval/external.py), its keyword arguments, and
    # a folder put on sys.path for the import
    "python": {"entry": Opt(str, required=True, pattern=r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*",
                            why="package.module:factory"), "kwargs": Opt(dict), "path": _STR,
               # false: its samples do not follow the seeds (checked otherwise: the first shard is made twice)
               "deterministic": Opt(bool, True)},
    # samples as PNG / JPEG files, flat or one folder per class
    "imagefolder": {"path": Opt(str, required=True)},
    # a diffusers DiffusionPipeline saved in a local folder (grn_eval/diffusers_pipeline.py)
    "diffusers": {"path": Opt(str, required=True), "scheduler": _STR, "steps": Opt(int, 50, min=1),
                  "guidance": Opt(float, 1.0, min=0), "prompts": Opt(list, min=1, item=Opt(str)),
                  "prompts_file": Opt(str, why="a UTF-8 text file, one prompt per line, relative to the suite"),
                  "deterministic": Opt(bool, True)},
}
OTHER_FAMILY = {"tokenizer": "tokenizer", "npz": "external", "python": "external", "imagefolder": "external",
                "diffusers": "diffusion"}
MODEL_COMMON = {"name": _STR, "adapter": _STR, "family": _STR, "label": _STR}


# Model kinds: their sampler settings, adapter keys and family are read from their records (grn/registry.py),
# at each lookup, so a kind registered later is a suite adapter at once.
def _kind_opt(spec: dict, hint=None, default=None) -> Opt:
    """An Opt from a record's declaration (Opt keywords as plain data): the type, when not named, from the
    sampler config's annotation `hint` (a tuple is a list of its element type), the default from the config."""
    spec, item_hint = dict(spec), None
    typ = spec.pop("type", None)
    if typ is None:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        typ, item_hint = (list, args[0]) if typing.get_origin(hint) is tuple else (args[0] if args else hint, None)
    if "item" in spec:
        spec["item"] = _kind_opt(spec["item"], item_hint)
    return Opt(typ, list(default) if isinstance(default, tuple) else default, **spec)


def sampler_options(adapter: str) -> dict[str, Opt]:
    """The sampler settings of a model kind (none for the other adapters)."""
    kind = KINDS.get(adapter)
    if kind is None:
        return {}
    hints = typing.get_type_hints(kind.sampler_config)
    opts = {k: _kind_opt(spec, hints[k], getattr(kind.default_sampler, k)) for k, spec in kind.sampler_options.items()}
    return {**opts, **({"preset": Opt(str, choices=tuple(kind.presets))} if kind.presets else {})}


def adapter_options() -> dict[str, dict[str, Opt]]:
    """Every adapter a suite may name -> its keys (beside MODEL_COMMON)."""
    kinds = {name: {**_GENERATOR, **({"entropy": Opt(dict)} if k.entropy else {}),
                    **{key: _kind_opt(spec) for key, spec in k.adapter_options.items()}} for name, k in KINDS.items()}
    return {**kinds, **OTHER_ADAPTERS}


def default_family(adapter: str) -> str:
    return KINDS[adapter].family if adapter in KINDS else OTHER_FAMILY.get(adapter, adapter)


@functools.cache
def dataset_options(name: str) -> dict[str, Opt]:
    """What a dataset of grn/data.py's registry accepts, read from its loader there: the loader's
    parameters, typed by their annotations (every integer one is a size or a count, so >= 1; one
    without a default is required), and for `split` the names in grn.datasets.SPLITS."""
    from grn.datasets import DATASETS as loaders
    from grn.datasets import SPLITS as splits

    types = {"str": str, "Path": str, "int": int, "float": float, "bool": bool}
    out = {}
    for p in inspect.signature(loaders[name]).parameters.values():
        typ = next((types[t.strip()] for t in str(p.annotation).split("|") if t.strip() in types), object)
        out[p.name] = Opt(typ, None if p.default is p.empty else p.default, min=1 if typ is int else None,
                          required=p.default is p.empty,
                          choices=splits.get(name) if p.name == "split" else None)
    return out


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
    allow_low_range: bool = False  # accept uint8 images whose values never exceed 1
    allow_size_mismatch: bool = False  # samples of another size than the reference images (sample_checks.py)
    allow_reference_overlap: bool = False  # samples that copy reference images (sample_checks.py)
    frame_stride: int = 1  # video suites: image metrics on frames 0, s, 2s, ... of each video
    evaluator: str | None = None  # grn_eval/evaluators.py; its metrics are in `metrics` with their options fixed
    needs: tuple[str, ...] = ()  # unset ${VAR} placeholders (only when loaded without check_assets)
    resolved: dict = field(default_factory=dict)  # the merged YAML, for provenance

    @property
    def hash(self) -> str:
        """What defines the numbers (presentation keys such as `table` and `description` excluded)."""
        defining = {k: v for k, v in self.resolved.items() if k not in PRESENTATION_KEYS}
        return hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def config_hash(self) -> str:
        """`hash` without the seeds: what a gate baseline and a run must share (their seeds are compared
        on their own, since a baseline is measured over more seeds than the run it gates)."""
        defining = {k: v for k, v in self.resolved.items() if k not in PRESENTATION_KEYS | {"seeds"}}
        return hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def task(self) -> str:
        return "reconstruction" if "reconstruction" in metric_registry.tasks_of(self.metrics) else "generation"


# ---------------------------------------------------------------------------------------
# Checking and loading
# ---------------------------------------------------------------------------------------


def _err(path: Path, key: str, msg: str) -> SuiteError:
    return SuiteError(f"{path}: {key}: {msg}")


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _is_type(value, typ) -> bool:
    if isinstance(value, bool):
        return typ in (bool, object)
    return isinstance(value, typ) or (typ is float and isinstance(value, int))


def _check(path, where: str, value, opt: Opt, ctx: dict) -> None:
    """Refuse `value` unless `opt` allows it; `ctx` resolves bounds that name other options.
    None means not given (the consumer's default applies)."""
    def bad(what):
        return _err(path, where, f"{what}; allowed: {opt.allowed(ctx)}")

    if value is None:
        return
    if not _is_type(value, opt.type):
        raise bad(f"expected {opt.type.__name__}, got {type(value).__name__} ({value!r})")
    if isinstance(value, str) and _PLACEHOLDER.search(value):
        return  # an unset ${VAR} (validate without assets): its value is not known yet
    if opt.choices is not None and value not in opt.choices:
        raise bad(f"unknown {where.rsplit('.', 1)[-1].split('[')[0]} {value!r}")
    if opt.pattern is not None and not re.fullmatch(opt.pattern, value):
        raise bad(f"{value!r} does not match")
    size = len(value) if isinstance(value, list) else value  # bounds of a list: its length
    lo, hi = opt.bound("min", ctx), opt.bound("max", ctx)
    if isinstance(size, (int, float)) and (size != size  # NaN
                                           or (lo is not None and (size < lo or (opt.min_exclusive and size == lo)))
                                           or (hi is not None and (size > hi or (opt.max_exclusive and size == hi)))):
        raise bad(f"{len(value)} element(s)" if isinstance(value, list) else f"{value!r} is out of range")
    if isinstance(value, list):
        for i, x in enumerate(value):
            if opt.item is not None:
                _check(path, f"{where}[{i}]", x, opt.item, ctx)
        if opt.unique and len({json.dumps(x, default=str) for x in value}) < len(value):
            raise bad(f"duplicates in {value!r}")
        if opt.increasing and any(a >= b for a, b in zip(value, value[1:])):
            raise bad(f"{value!r} is not strictly increasing")


# Keys an older grn-eval accepted, and what they are called now (named in the unknown-key message).
RENAMED_KEYS = {"cfg": "guidance", "cfg_interval": "guidance_interval"}


def _check_keys(path, where: str, given: dict, allowed) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        now = RENAMED_KEYS.get(unknown[0])
        hint = f" (renamed '{now}')" if now in allowed else ""
        raise _err(path, f"{where}.{unknown[0]}" if where else unknown[0],
                   f"unknown key{hint}; allowed: {sorted(allowed)}")


def _check_all(path, where: str, given: dict, opts: dict[str, Opt], ctx: dict) -> None:
    """Keys, required keys and every value of one mapping; bounds see the given values, else defaults."""
    _check_keys(path, where, given, opts)
    prefix = f"{where}." if where else ""
    for k, o in opts.items():
        if o.required and given.get(k) is None:
            raise _err(path, prefix + k, f"required; allowed: {o.allowed(ctx)}")
    ctx = {**ctx, **{k: o.default for k, o in opts.items()}, **given}
    for k, v in given.items():
        _check(path, prefix + k, v, opts[k], ctx)


def _sampler_rule(point: dict) -> tuple[str, str] | None:
    """The one sampler rule across settings: the t2i-cosine schedule needs 2 steps (grn/sampling.py)."""
    preset = PRESETS.get(point.get("preset"))
    schedule = point.get("schedule") or (preset.schedule if preset else "linear")
    if schedule == "t2i-cosine" and isinstance(point.get("steps"), int) and point["steps"] < 2:
        return "steps", f"{point['steps']} steps with the t2i-cosine schedule; allowed: int >= 2"
    return None


def _expand(path, where: str, settings: dict, opts: dict[str, Opt], rule=None) -> list[tuple[dict, dict]]:
    """Expand list-valued settings into a grid and check every grid point (key paths name the
    element). Returns [(settings, varying)]."""
    _check_keys(path, where, settings, opts)
    axes = {}
    for k, v in settings.items():
        is_grid = isinstance(v, list) and (opts[k].type is not list or (v and all(isinstance(x, list) for x in v)))
        if is_grid and not v:  # the product would be empty: the model would silently disappear
            raise _err(path, f"{where}.{k}", f"an empty list makes an empty grid; allowed: a value or a non-empty "
                                             f"list of values, each {opts[k].allowed({})}")
        axes[k] = ([(f"{where}.{k}[{i}]", x) for i, x in enumerate(v)] if is_grid else [(f"{where}.{k}", v)], is_grid)
    out = []
    for combo in itertools.product(*[values for values, _ in axes.values()]):
        point = {k: x for k, (_, x) in zip(axes, combo)}
        ctx = {**{k: o.default for k, o in opts.items()}, **point}
        for k, (key, x) in zip(axes, combo):
            _check(path, key, x, opts[k], ctx)
        broken = rule(point) if rule else None
        if broken:
            raise _err(path, dict(zip(axes, combo))[broken[0]][0], broken[1])
        out.append((point, {k: point[k] for k in axes if axes[k][1]}))
    return out


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


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
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:  # a binary file (a checkpoint, an .npz) given as the suite
        raise SuiteError(f"{path}: not a text file (byte {e.start} is not UTF-8); give the suite's .yaml file") \
            from None
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


def read_prompts_file(file: Path) -> list[str]:
    """The prompts of a text file: one per line, surrounding whitespace stripped; blank lines and lines starting
    with '#' (comments) skipped. Raises OSError / UnicodeDecodeError as reading does."""
    lines = (line.strip() for line in file.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _prompts_from_file(path: Path, key: str, value: str, inline) -> list[str] | None:
    """A model's `prompts_file` read (relative to the working directory when it exists there, else to the suite's
    folder, as checkpoints); None while it is an unset ${VAR} (validate without assets)."""
    if inline is not None:
        raise _err(path, key, "the prompts are given twice; allowed: `prompts:` (a list) or `prompts_file:` (a text "
                              "file, one prompt per line), not both")
    if _PLACEHOLDER.search(value):
        return None
    file = resolve(value, path.parent)
    fix = "give a UTF-8 text file with one prompt per line (relative to the suite or the working directory)"
    if not file.is_file():
        raise _err(path, key, f"file '{value}' not found{' (it is a folder)' if file.exists() else ''}; {fix}")
    try:
        prompts = read_prompts_file(file)
    except (OSError, UnicodeDecodeError) as e:
        raise _err(path, key, f"'{value}' cannot be read as text ({type(e).__name__}: {e}); {fix}") from e
    if not prompts:
        raise _err(path, key, f"'{value}' holds no prompts (only blank lines or # comments); {fix}")
    return prompts


def _model_entries(path, i: int, raw, defaults: dict) -> list[ModelEntry]:
    where = f"models[{i}]"
    if not isinstance(raw, dict):
        raise _err(path, where, "each model is a mapping")
    raw = _merge(defaults, raw)
    adapter = raw.get("adapter")
    adapters = adapter_options()
    if not isinstance(adapter, str) or adapter not in adapters:
        raise _err(path, f"{where}.adapter", f"unknown adapter {adapter!r}; allowed: {sorted(adapters)}")
    opts = {**MODEL_COMMON, **adapters[adapter]}
    _check_keys(path, where, raw, opts)
    for k, o in opts.items():
        if o.required and raw.get(k) is None:
            raise _err(path, f"{where}.{k}", f"required by the {adapter} adapter; allowed: {o.allowed({})}")
    for k, v in raw.items():  # sampler / entropy: below, per grid point; checkpoint: a path or a grid of paths
        if k not in ("sampler", "entropy", "checkpoint"):
            _check(path, f"{where}.{k}", v, opts[k], {})
    from_file = _prompts_from_file(path, f"{where}.prompts_file", raw["prompts_file"], raw.get("prompts")) \
        if raw.get("prompts_file") is not None else None
    folder = raw.get("text_encoder")  # UMT5's folder: checked like a checkpoint file
    if folder is not None and not _PLACEHOLDER.search(folder) and not resolve(folder, path.parent).is_dir():
        raise _err(path, f"{where}.text_encoder", f"folder '{folder}' not found (relative to the suite or the "
                                                  f"working directory); give the local google/umt5-xxl folder")
    name = raw.get("name") or adapter
    grids: list[list[tuple[dict, dict]]] = []
    for key, table in (("sampler", sampler_options(adapter)), ("entropy", ENTROPY)):
        val = raw.get(key)
        if val is None:
            grids.append([(None, {})])
            continue
        if not isinstance(val, dict):
            raise _err(path, f"{where}.{key}", "a mapping of settings")
        grids.append([(s, {f"{key}.{k}": v for k, v in var.items()}) for s, var in
                      _expand(path, f"{where}.{key}", val, table, _sampler_rule if key == "sampler" else None)])
    ckpts = raw.get("checkpoint")
    is_grid = isinstance(ckpts, list)
    if is_grid and not ckpts:
        raise _err(path, f"{where}.checkpoint", "an empty list makes an empty grid; allowed: a path or a non-empty "
                                                "list of paths")
    if is_grid and raw.get("checkpoint_sha256") is not None:
        raise _err(path, f"{where}.checkpoint_sha256", f"one hash for a grid of {len(ckpts)} checkpoints is "
                   "ambiguous; allowed: checkpoint_sha256 with a single checkpoint (one model entry per file)")
    for j, c in enumerate(ckpts if is_grid else [ckpts]):  # each a path, before a grid is made of them
        _check(path, f"{where}.checkpoint" + (f"[{j}]" if is_grid else ""), c, _STR, {})
    ckpt_grid = [(c, {"checkpoint": Path(c).name} if is_grid else {}) for c in (ckpts if is_grid else [ckpts])]
    for j, (c, _) in enumerate(ckpt_grid):
        key = f"{where}.checkpoint" + (f"[{j}]" if is_grid else "")
        if c is not None and not _PLACEHOLDER.search(c) and not (path.parent / c).exists() and not Path(c).exists():
            raise _err(path, key, f"file '{c}' not found (relative to the suite or the working directory)")
    entries = []
    for (ck, v0), (sampler, v1), (entropy, v2) in itertools.product(ckpt_grid, *grids):
        varying = {**v0, **v1, **v2}
        label = name + ("[" + ",".join(f"{k}={v}" for k, v in varying.items()) + "]" if varying else "")
        options = {k: v for k, v in raw.items() if k not in ("name", "family", "label")}
        options.update(checkpoint=ck, sampler=sampler, entropy=entropy)
        if from_file is not None:  # the adapters read `prompts`; `prompts_file` stays for provenance
            options["prompts"] = list(from_file)
        family = raw.get("family", default_family(adapter))
        entries.append(ModelEntry(label, name, adapter, family, options, varying))
    return entries


def _get(data: dict, key: str, table: dict = TOP):
    return data[key] if data.get(key) is not None else copy.deepcopy(table[key].default)


# ---------------------------------------------------------------------------------------
# Does the reference fit the metrics and models? Images against videos, clip lengths, too few samples
# ---------------------------------------------------------------------------------------

CLIP_CHUNK = 4  # the causal 3D video tokenizer encodes frame 0 alone, then chunks of 4 frames: 1 + 4k frames a clip
IMAGE_ADAPTERS = ("npz", "imagefolder", "diffusers")  # adapters whose samples are always images
VIDEO_DATASETS_HINT = "a video dataset (moving_mnist, video_npz, video_folder)"


def _reference_form(reference: dict, datasets: dict) -> tuple[str, int | None]:
    """(what a suite's reference holds: "images", "videos" or "statistics"; its frames per clip when the suite
    fixes them, else None), read from the suite alone."""
    from grn.video_data import VIDEO_DATASETS

    if "stats" in reference:
        return "statistics", None
    if "npz" in reference:  # an ADM batch: images (grn/data.py load_npz)
        return "images", None
    spec = datasets[reference["dataset"]]
    if spec["name"] not in VIDEO_DATASETS:
        return "images", None
    frames = spec.get("frames", dataset_options(spec["name"])["frames"].default) if spec["name"] == "moving_mnist" \
        else None
    return "videos", frames if isinstance(frames, int) else None


def _check_reference_fit(path, metrics: dict, reference: dict, form: str, frames: int | None, n_samples: int | None,
                         n_reference: int | None, reference_key: str, clips_key: str, adapters=()) -> None:
    """Refuse a reference the suite's metrics cannot compare with, before anything runs: a video metric (FVD)
    against images or statistics; reference clips of a length the causal video tokenizer cannot encode (when a
    `tokenizer` model of `adapters` reconstructs them) or shorter than FVD's frames; fewer samples or reference
    images than a metric needs (`MetricSpec.needs`). `n_samples` / `n_reference`: the counts, None where not known
    (yet); `reference_key` / `clips_key`: the suite keys that set the reference's size and its clips' length, which
    the messages name."""
    ref = "{" + ", ".join(f"{k}: {v}" for k, v in reference.items() if k != "sha256") + "}"
    recon = "reconstruction" in metric_registry.tasks_of(metrics)
    for m, opts in metrics.items():
        spec = metric_registry.get(m)
        if spec.video_reference and form != "videos":
            raise _err(path, f"metrics.{m}", f"{m} compares clips with reference clips, but the reference {ref} holds "
                                             f"{form}; give {VIDEO_DATASETS_HINT} as the reference, or drop {m}")
        if spec.video_reference and frames is not None and spec.merged(opts).get("frames", 0) > frames:
            raise _err(path, f"metrics.{m}.frames", f"{spec.merged(opts)['frames']} frames per clip for the I3D, the "
                                                    f"reference clips have {frames}; allowed: at most {frames}")
        need, why = spec.needs(opts)
        # an image metric of a video suite scores frames (videos x frames): its counts are not the suite's
        per_frame = form == "videos" and not spec.video
        for key, n, what in (("n_samples", None if recon else n_samples, "samples"),
                             (reference_key, n_reference, "reference images")):
            if n is not None and not per_frame and n < need:
                raise _err(path, key, f"{n} is too few {what} for metrics.{m}, which needs at least {need} ({why}); "
                                      f"allowed: >= {need}")
    if "tokenizer" in adapters and form == "videos" and frames is not None and (frames - 1) % CLIP_CHUNK:
        raise _err(path, clips_key, f"clips of {frames} frames: the causal 3D video tokenizer encodes frame 0 alone, "
                                    f"then chunks of {CLIP_CHUNK}, so a clip has 1 + {CLIP_CHUNK}k frames (1, 5, 9, "
                                    f"13, 17, ...); give clips of such a length")


def check_reference_data(suite: Suite, images) -> None:
    """The load-time reference rules (`_check_reference_fit`) on the reference as a run loaded it (uint8 images
    [N, H, W, C], videos [N, T, H, W, C], or None for a statistics file): what the suite alone cannot say (the
    frames and number of clips of a video_npz / video_folder dataset, the size of a dataset) is checked here,
    before the run folder is claimed."""
    if images is None:
        form, frames, n = "statistics", None, None
    else:
        form, n = ("videos" if images.ndim == 5 else "images"), len(images)
        frames = images.shape[1] if images.ndim == 5 else None
    key = f"datasets.{suite.reference['dataset']}" if "dataset" in suite.reference else "reference"
    _check_reference_fit(suite.path, suite.metrics, suite.reference, form, frames, None, n, key, key,
                         {m.adapter for m in suite.models})


def check_reference_files(suite: Suite) -> None:
    """Open the reference file of a suite (reference.stats, reference.npz) and check it as a run reads it: a
    readable .npz whose statistics are a mean and a symmetric positive semi-definite covariance of their layer's
    dimension (metrics/fid.py read_statistics), a statistics file with at least one such pair, an ADM batch whose
    members are uint8 images and integer labels (grn/data.py load_npz, headers only) and holds as many images as
    the metrics need. What `grn-eval validate` calls; a run reads the same file in Runner._file_statistics. A
    path that is still an unset ${VAR} is skipped (validate without assets)."""
    from grn_eval.metrics.fid import read_statistics

    ref = suite.reference
    key = "stats" if "stats" in ref else "npz" if "npz" in ref else None
    if key is None or _PLACEHOLDER.search(ref[key]):
        return
    path = resolve(ref[key], suite.path.parent)
    where = f"{suite.path}: reference.{key}: '{path}'"
    if not path.is_file():
        raise SuiteError(f"{where}: file not found (relative to the suite or the working directory); give the "
                         f"{'statistics .npz (mu, sigma)' if key == 'stats' else 'ADM reference batch (arr_0)'}")
    found = read_statistics(path, where)
    if key == "stats" and not found.stats:
        raise SuiteError(f"{where}: holds no statistics (members {sorted(found.members)}); expected mu / sigma (and "
                         f"mu_s / sigma_s for sFID) of the reference's features")
    if key == "npz":
        from grn.data import load_npz

        data = load_npz(path)
        n = min(len(data), ref.get("limit", suite.n_samples))
        _check_reference_fit(suite.path, suite.metrics, ref, "images", None, None, n, "reference.npz", "reference.npz")


def load_suite(path: str | Path, overrides: dict | None = None, check_assets: bool = True) -> Suite:
    """Read, merge includes, validate. `overrides` (e.g. from the command line) win over the file and
    are checked like it.

    Paths may use ${VAR} placeholders (ImageNet folders, reference statistics, official checkpoints).
    With `check_assets` an unset variable or a missing file is an error before anything is built;
    without it (`grn-eval validate`) the suite is checked for structure and its needs are listed."""
    path = Path(path)
    needs: set = set()
    data = _expand_env(_merge(_read_yaml(path), overrides or {}), needs)
    if needs and check_assets:
        raise SuiteError(f"{path}: needs the environment variables {sorted(needs)} (paths of data, reference "
                         f"statistics or checkpoints that are not part of this repository); set them and run again")
    _check_all(path, "", data, TOP, {})
    ctx = {"n_samples": _get(data, "n_samples")}  # what metric options are bounded by

    from grn.datasets import DATASETS as loaders

    datasets = data.get("datasets") or {}
    for alias, spec in datasets.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or spec["name"] not in loaders:
            raise _err(path, f"datasets.{alias}.name", f"unknown dataset {spec.get('name') if isinstance(spec, dict) else spec!r}; allowed: {sorted(loaders)}")  # noqa: E501
        _check_all(path, f"datasets.{alias}", spec, {"name": _STR, **dataset_options(spec["name"])}, {})

    metrics = data.get("metrics") or {}
    evaluator = data.get("evaluator")
    if not metrics and not evaluator:
        raise _err(path, "metrics", f"a non-empty mapping; allowed metrics: {sorted(metric_registry.names())}")
    for m, opts in metrics.items():
        if metric_registry.get(m) is None:
            raise _err(path, f"metrics.{m}", f"unknown metric; allowed: {sorted(metric_registry.names())}")
        if not isinstance(opts or {}, dict):
            raise _err(path, f"metrics.{m}", "a mapping of options (or empty)")
    if evaluator:
        metrics, problems = evaluators.expand(metrics, evaluator)
        if problems:
            raise _err(path, *problems[0])
    for m, opts in metrics.items():
        spec = metric_registry.get(m)
        opts = opts or {}
        _check_all(path, f"metrics.{m}", opts, spec.options, ctx)
        problem = spec.check(opts) if spec.check else None
        if problem:
            raise _err(path, f"metrics.{m}", problem)
        metrics[m] = opts
    if {"reconstruction", "generation"} <= metric_registry.tasks_of(metrics):  # "both" (latency) goes with either
        recon = ", ".join(s.key for s in metric_registry.specs() if s.task == "reconstruction")
        raise _err(path, "metrics", f"mixes reconstruction metrics ({recon}) with generation metrics; use two suites")

    reference = data.get("reference") or {}
    if not isinstance(reference, dict) or \
            len({k for k, v in reference.items() if v is not None} & {"dataset", "stats", "npz"}) != 1:
        raise _err(path, "reference", "exactly one of {dataset: <alias>}, {stats: <file.npz>, sha256: ...}, "
                                      "{npz: <ADM batch>, sha256: ...}")
    _check_all(path, "reference", reference, REFERENCE, ctx)
    if evaluator and not set(reference) & set(EVALUATORS[evaluator].references):
        forms = {"dataset": "{dataset: <alias>}", "npz": "{npz: <ADM batch>}", "stats": "{stats: <file.npz>}"}
        raise _err(path, "reference", f"evaluator '{evaluator}' compares against "
                                      f"{' or '.join(forms[f] for f in EVALUATORS[evaluator].references)}")
    if "dataset" in reference and reference["dataset"] not in datasets:
        raise _err(path, "reference.dataset", f"unknown alias {reference['dataset']!r}; defined: {sorted(datasets)}")

    defaults = data.get("defaults") or {}
    models_raw = data.get("models") or []
    if not models_raw:
        raise _err(path, "models", "a non-empty list")
    models = [e for i, m in enumerate(models_raw) for e in _model_entries(path, i, m, defaults)]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise _err(path, "models", f"duplicate model labels {sorted({n for n in names if names.count(n) > 1})}")
    form, frames = _reference_form(reference, datasets)
    if form == "videos":  # a model that can only make images cannot be compared with reference clips
        for i, m in enumerate(models_raw):
            adapter = _merge(defaults, m).get("adapter") if isinstance(m, dict) else None
            if adapter in IMAGE_ADAPTERS:
                raise _err(path, f"models[{i}].adapter", f"'{adapter}' serves images, the reference "
                                                         f"{{dataset: {reference['dataset']}}} holds videos; give an "
                                                         f"image reference dataset, or a model that makes videos")
    _check_reference_fit(path, metrics, reference, form, frames, ctx["n_samples"],
                         None if form == "statistics" else reference.get("limit", ctx["n_samples"]),
                         "reference.limit" if "limit" in reference else "n_samples",
                         f"datasets.{reference.get('dataset')}.frames", {m.adapter for m in models})

    from grn_eval.publish import PLOT_NAMES

    table = data.get("table") or {}
    _check_all(path, "table", table, {"metrics": Opt(list), "title": _STR, "quality_metric": _STR,
                                      "plots": Opt(list, item=Opt(str, choices=tuple(PLOT_NAMES)))}, {})
    check_output_name(data["name"], f"{path}: name")  # run folders, reports, tables and plots are named after it
    return Suite(path=path, name=data["name"], description=_get(data, "description"), models=tuple(models),
                 metrics=metrics, reference=reference, datasets=datasets, seeds=tuple(_get(data, "seeds")),
                 n_samples=ctx["n_samples"], batch_size=_get(data, "batch_size"), device=_get(data, "device"),
                 output_dir=_get(data, "output_dir"), table=table, gate=data.get("gate") or {},
                 export=tuple(_get(data, "export")), allow_low_range=_get(data, "allow_low_range"),
                 allow_size_mismatch=_get(data, "allow_size_mismatch"),
                 allow_reference_overlap=_get(data, "allow_reference_overlap"),
                 frame_stride=_get(data, "frame_stride"),
                 evaluator=evaluator, resolved=data,
                 needs=tuple(sorted(needs)))

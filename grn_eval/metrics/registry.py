"""The metric registry: one `MetricSpec` per metric holds everything about it.

A metric module (grn_eval/metrics/<name>.py) declares its suite key, its options (`Opt`: type, range,
default), the task it measures (generation or reconstruction), the rows it writes (per row name: the
better direction, the table label and digits, the gate's noise floor), its version and its compute
function, and registers them with `register_metric`. Importing `grn_eval.metrics` imports every module
of the package, so a new metric is one new file. Everything else reads from here: the suite loader
validates options, the runner calls `compute` with a `MetricContext`, report / gate / tables take
directions, floors, labels, digits.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from grn.errors import UserError
from grn_eval import evaluators, intervals
from grn_eval.features import LAYERS, PROTOCOLS
from grn_eval.options import Opt

# The task a metric measures, which is also a suite's task. "both": allowed in a suite of either task and run
# on every model (its compute skips models it cannot measure, as latency skips models that do not generate)
TASKS = ("generation", "reconstruction", "both")
DIRECTIONS = ("lower", "higher")
PROTOCOL = Opt(str, "tf-inception", choices=PROTOCOLS)  # the Inception feature protocol of fid, rfid, kid, prc
# bootstrap replicates behind the 95% interval of a distribution metric's row (grn_eval/intervals.py); 0: none
BOOTSTRAP = Opt(int, 200, min=0, why="bootstrap replicates for the 95% interval; 0 for none")


class NotAvailable(Exception):
    """A number cannot be computed honestly here; the message ("not available: ...") says what it needs. Raised
    anywhere inside a compute function (the runner's reference statistics, a feature network's missing logits), it
    becomes the row that gives that reason (`_rows_or_reason`), never a crash."""


def _rows_or_reason(compute: Callable) -> Callable:
    """`compute` with a NotAvailable from anywhere inside it turned into one row under the metric's key saying why:
    what sfid and isc did on their own, in the one place every compute function passes (each spec's `compute`),
    so that a metric that forgets to catch it still writes a row instead of ending the run as a bug."""
    if getattr(compute, "rows_or_reason", False):
        return compute

    @functools.wraps(compute)
    def guarded(ctx):
        try:
            return compute(ctx)
        except NotAvailable as e:
            reason = str(e) if str(e).startswith("not available") else f"not available: {e}"
            return [ctx.row(ctx.spec.key, None, {}, reason=reason)]

    guarded.rows_or_reason = True
    return guarded


@dataclass(frozen=True)
class Row:
    """One metric name a spec writes into results.json, and how tables and the gate read it."""

    name: str
    better: str  # "lower" or "higher"
    label: str  # table column header
    digits: int  # decimals in tables
    floor: float | None = None  # gate: a move smaller than this never counts as a regression; None: no floor


@dataclass(frozen=True)
class MetricSpec:
    key: str  # metrics.<key> in a suite
    task: str  # one of TASKS
    rows: tuple[Row, ...]
    version: str  # written into every row; bump it when the numbers change meaning
    compute: Callable[[MetricContext], list[dict]]  # rows made with MetricContext.row; [] when nothing applies
    options: Mapping[str, Opt] = field(default_factory=dict)
    order: int = 100  # one model's rows follow this (then registration order); built-ins 10 ... 80, latency last
    # prepare(runner, options), called before any sampling: loads what the metric needs once (runner.asset)
    # and raises when a real asset is missing, so that a run never samples for a number it cannot compute
    prepare: Callable | None = None
    # check(given) -> a problem with a combination of the options as the suite gives them, or None; the suite
    # loader refuses the suite with it (each option's own range is its Opt's)
    check: Callable[[Mapping], str | None] | None = None
    # video: it takes a video suite's uint8 NTHWC videos (FVD, video prompt accuracy); every other metric sees
    # their frames as images (N videos x T frames, video-major: per-frame FID, PSNR, ...), its rows say so
    video: bool = False
    # video_reference: it compares whole clips with reference clips (FVD): the suite loader refuses a suite whose
    # reference holds images or statistics
    video_reference: bool = False
    # compares_reference: it scores the samples' distribution against the reference images' (FID, KID, P/R, ...):
    # the runner then refuses samples of another size than the reference, or copies of reference images
    compares_reference: bool = False
    # min_samples(options) -> (n, why): the fewest samples, and reference images, its number needs (a covariance 2,
    # k-NN radii k + 1); the suite loader refuses a smaller n_samples / reference.limit, a metric a smaller set
    min_samples: Callable[[Mapping], tuple[int, str]] | None = None

    def __post_init__(self):  # read-only, so that a spec cannot be changed behind the registry's back
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        if callable(self.compute):
            object.__setattr__(self, "compute", _rows_or_reason(self.compute))

    def needs(self, options: Mapping | None = None) -> tuple[int, str]:
        """(the fewest samples and reference images, why) under `options` as a suite gives them."""
        return self.min_samples(self.merged(options)) if self.min_samples else (1, "")

    @property
    def row_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rows)

    def merged(self, given: Mapping | None) -> dict:
        """The suite's options over the spec's defaults (None in a suite means "not given", as in `Opt`)."""
        out = {k: copy.deepcopy(o.default) for k, o in self.options.items()}
        out.update({k: v for k, v in (given or {}).items() if v is not None})
        return out

    def runs_on(self, stage: str) -> bool:
        """Whether the runner computes it on models of this task ("generation" or "reconstruction")."""
        return self.task in (stage, "both")


_SPECS: dict[str, MetricSpec] = {}
_ROWS: dict[str, Row] = {}


def _problems(spec: MetricSpec) -> list[str]:
    out = []
    if not isinstance(spec.key, str) or not spec.key:
        out.append("the key is a non-empty string")
    elif spec.key in _SPECS:
        out.append("already registered (unregister_metric it first)")
    if spec.task not in TASKS:
        out.append(f"task {spec.task!r} is not one of {list(TASKS)}")
    if not isinstance(spec.version, str) or not spec.version:
        out.append("the version is a non-empty string")
    if not callable(spec.compute):
        out.append("compute is not callable")
    if not spec.rows:
        out.append("it declares no rows")
    out += [f"option {k!r} is not an Opt" for k, o in spec.options.items() if not isinstance(o, Opt)]
    names = [getattr(r, "name", None) for r in spec.rows]
    for r in spec.rows:
        if not isinstance(r, Row):
            out.append(f"{r!r} is not a Row")
            continue
        if r.better not in DIRECTIONS:
            out.append(f"row {r.name!r}: better {r.better!r} is not one of {list(DIRECTIONS)}")
        if not isinstance(r.label, str) or not r.label:
            out.append(f"row {r.name!r}: the label is a non-empty string")
        if not isinstance(r.digits, int) or isinstance(r.digits, bool) or r.digits < 0:
            out.append(f"row {r.name!r}: digits is an int >= 0")
        if r.floor is not None and not (isinstance(r.floor, (int, float)) and r.floor >= 0):
            out.append(f"row {r.name!r}: the floor is None or a number >= 0")
        if names.count(r.name) > 1 or r.name in _ROWS:  # one row name, one meaning (one direction, one floor)
            out.append(f"row {r.name!r} is declared twice")
    return out


def register_metric(spec: MetricSpec | None = None, **fields):
    """Register a metric: `register_metric(MetricSpec(...))`, `register_metric(key=..., compute=..., ...)`,
    or, without `compute`, as a decorator of the compute function. Refuses an incomplete declaration, a key
    already registered and a row name another metric already writes. Returns the spec (the decorator: the
    function)."""
    if spec is None and "compute" not in fields:
        def decorate(fn):
            register_metric(compute=fn, **fields)
            return fn

        return decorate
    spec = spec if spec is not None else MetricSpec(**fields)
    problems = _problems(spec)
    if problems:
        raise ValueError(f"metric {spec.key!r}: " + "; ".join(problems))
    _SPECS[spec.key] = spec
    _ROWS.update((r.name, r) for r in spec.rows)
    return spec


def unregister_metric(key: str) -> MetricSpec:
    spec = _SPECS.pop(key)
    for name in spec.row_names:
        _ROWS.pop(name, None)
    return spec


def get(key) -> MetricSpec | None:
    return _SPECS.get(key) if isinstance(key, str) else None


def names() -> list[str]:
    return list(_SPECS)


def specs() -> tuple[MetricSpec, ...]:
    """Every registered spec, in registration order."""
    return tuple(_SPECS.values())


def row(name) -> Row | None:
    return _ROWS.get(name) if isinstance(name, str) else None


def tasks_of(keys) -> set[str]:
    return {_SPECS[k].task for k in keys if k in _SPECS}


def for_suite(metrics: Mapping, stage: str) -> list[MetricSpec]:
    """The specs of a suite's metrics that run on models of `stage`, in row order."""
    index = {k: i for i, k in enumerate(_SPECS)}
    chosen = [_SPECS[k] for k in metrics if k in _SPECS and _SPECS[k].runs_on(stage)]
    return sorted(chosen, key=lambda s: (s.order, index[s.key]))


def floors() -> dict[str, float]:
    """The gate's absolute noise floor per row name (rows without one are left out)."""
    return {r.name: r.floor for s in _SPECS.values() for r in s.rows if r.floor is not None}


class RowsWhere(Set):
    """The row names whose better direction is `better`: a live set, so a metric registered later is in it."""

    def __init__(self, better: str):
        self.better = better

    def __contains__(self, name) -> bool:
        r = row(name)
        return r is not None and r.better == self.better

    def __iter__(self) -> Iterator[str]:
        return iter([n for n, r in _ROWS.items() if r.better == self.better])

    def __len__(self) -> int:
        return sum(r.better == self.better for r in _ROWS.values())

    def __repr__(self) -> str:
        return f"RowsWhere({self.better!r}: {sorted(self)})"


class ReferenceStats(NamedTuple):
    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray | None  # the reference features they were computed from; None: from a file, or not kept
    source: str  # where they come from, as a row records it
    from_file: bool  # a reference file's own statistics (an ADM batch's mu / sigma, a statistics file)


class InceptionStats(NamedTuple):
    mu_samples: np.ndarray  # the samples' statistics of the layer asked for
    sigma_samples: np.ndarray
    mu: np.ndarray  # the reference's
    sigma: np.ndarray
    protocol: dict  # as Inception.protocol


class Inception(NamedTuple):
    features: np.ndarray  # the samples' features of the layer asked for ("pool" or "spatial")
    mu: np.ndarray  # reference statistics of that layer
    sigma: np.ndarray
    stats_features: np.ndarray | None  # the reference features mu / sigma were computed from; None: from a file
    reference: np.ndarray | None  # reference features (k-NN, KID); None when the reference is a statistics file
    protocol: dict  # the extractor's protocol and the reference's provenance, as rows carry them


@dataclass
class MetricContext:
    """What a compute function gets: one model's samples (its generated images with their labels and
    sampler traces, or its reconstructions of the reference images), the reference, the runner's feature
    extractors, feature cache and models (`runner`), and the suite's options merged with the spec's defaults
    (`options`; `given`: as the suite wrote them)."""

    spec: MetricSpec
    runner: object  # grn_eval.runner.Runner
    entry: object  # grn_eval.suite.ModelEntry
    adapter: object
    seed: int  # the sampling seed; 0 for reconstructions
    samples: np.ndarray
    labels: np.ndarray | None
    traces: list[dict]
    reference_images: np.ndarray | None
    reference_provenance: dict
    options: dict = field(init=False)
    given: dict = field(init=False)

    def __post_init__(self):
        self.given = dict(self.suite.metrics.get(self.spec.key) or {})
        self.options = self.spec.merged(self.given)
        self._check_inputs()

    def _check_inputs(self) -> None:
        """Refuse, before the metric sees them, samples and reference it cannot compare: images against videos, or
        fewer than the metric needs (a covariance of 1 vector, k-NN radii of k points), as one UserError naming the
        metric; the suite loader refuses what it can see before anything runs (grn_eval/suite.py)."""
        where = f"{getattr(self.suite, 'path', 'suite')}: metrics.{self.spec.key}"
        ref, model = self.reference_images, getattr(self.entry, "name", "?")
        if ref is not None and ref.ndim != self.samples.ndim:
            def kind(a):
                return {4: "images", 5: "videos"}.get(a.ndim, f"{a.ndim}-D arrays")
            raise UserError(f"{where}: model '{model}' made {kind(self.samples)} {tuple(self.samples.shape)}, the "
                            f"reference {dict(getattr(self.suite, 'reference', {}))} holds {kind(ref)} "
                            f"{tuple(ref.shape)}; compare images with a reference of images and videos with one of "
                            f"videos (a video dataset: moving_mnist, video_npz, video_folder)")
        need, why = self.spec.needs(self.given)
        for what, arr in (("samples", self.samples), ("reference images", ref)):
            if arr is not None and len(arr) < need:
                raise UserError(f"{where}: model '{model}': {len(arr)} {what}; {self.spec.key} needs at least {need} "
                                f"({why}); raise n_samples / reference.limit, or give a larger reference")

    @property
    def suite(self):
        return self.runner.suite

    @property
    def device(self):
        return self.runner.device

    @property
    def rank(self) -> int:
        return self.runner.rank

    @property
    def cache(self):
        return self.runner.cache

    def extractor(self, protocol: str):
        return self.runner.extractor(protocol)

    def features(self, images: np.ndarray, protocol: str) -> dict[str, np.ndarray]:
        """Features through the runner's cache (and, under torchrun, shared between the processes)."""
        return self.runner.features(images, protocol)

    def reference_stats(self, protocol: str, layer: str = "pool") -> ReferenceStats:
        return self.runner.reference_stats(protocol, self.reference_images, layer)

    def _protocol(self, protocol: str, layer: str, ref: ReferenceStats) -> dict:
        prov = {**self.extractor(protocol).protocol, "reference": self.reference_provenance}
        if ref.from_file:  # rows from computed statistics keep the protocol they always had
            prov["reference_statistics"] = ref.source
        if layer != "pool":
            prov["features"] = LAYERS[layer]
        return prov

    def inception(self, protocol: str, layer: str = "pool") -> Inception:
        """The samples' features of `layer` under `protocol`, with the reference's statistics and features."""
        features = self.features(self.samples, protocol)[layer]
        ref = self.reference_stats(protocol, layer)
        reference = ref.features
        if reference is None and self.reference_images is not None:
            reference = self.features(self.reference_images, protocol)[layer]
        return Inception(features, ref.mu, ref.sigma, ref.features, reference, self._protocol(protocol, layer, ref))

    def inception_statistics(self, protocol: str, layer: str = "pool") -> InceptionStats:
        """The samples' and the reference's statistics of `layer`, for a metric that needs no features: they are
        accumulated block by block (Runner.statistics), so memory does not grow with N; equal to the
        statistics of `inception`'s features bit for bit."""
        ref = self.runner.reference_stats(protocol, self.reference_images, layer, keep_features=False)
        mu, sigma = self.runner.statistics(self.samples, protocol, layer)
        return InceptionStats(mu, sigma, ref.mu, ref.sigma, self._protocol(protocol, layer, ref))

    def row(self, name: str, value, protocol: dict, extra: dict | None = None, reason: str | None = None,
            n: int | None = None, ci: tuple[float, float] | None = None) -> dict:
        """A results row of this model and seed with the spec's version; `n` defaults to the number of samples.
        `name` is one of the spec's rows, or its key for a row that says why it is not available. `ci`: the
        row's bootstrap interval (grn_eval/intervals.py), recorded with how it was made."""
        if name not in self.spec.row_names and not (name == self.spec.key and reason):
            raise ValueError(f"metric {self.spec.key!r} made a row {name!r}; it declares {list(self.spec.row_names)}")
        if ci is not None:
            extra = {**(extra or {}), **intervals.provenance(self.options.get("bootstrap", 0))}
        evaluator = evaluators.of_metric(self.suite.evaluator, self.spec.key)
        if evaluator:  # the row names the protocol it was computed under
            protocol = {**protocol, "evaluator": evaluator}
        return self.runner._row(self.entry, name, value, self.seed, len(self.samples) if n is None else n, protocol,
                                self.spec.version, extra, reason, ci)

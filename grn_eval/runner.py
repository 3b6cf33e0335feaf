"""Suite execution: sample -> features -> statistics -> metrics -> results.json with provenance.

Samples are made in shards of `batch_size`; shard k of seed s holds samples [k*B, (k+1)*B), and
sample i uses the seed `s * 1_000_003 + i` and class `i % num_classes`, so results do not depend
on how the work is split (or resumed). Each shard is written atomically; a re-run skips the
finished shards. Features go through the content-addressed cache.
"""

# Over 400 lines on purpose: sharded sampling, features, provenance and the run share one Runner's
# state (rank, cache, run folder); the metrics themselves live in grn_eval/metrics/ (one file each).

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from grn.data import load_npz
from grn.datasets import load_dataset
from grn.errors import NonFiniteError, UserError
from grn.fileio import atomic_path, atomic_write, safe_name
from grn_eval import weights as W
from grn_eval.adapters import build_adapter
from grn_eval.cache import FeatureCache, content_key
from grn_eval.features import INCEPTION_NUMERICS, LAYERS, STATS_KEYS, InceptionFeatures, use_file_statistics
from grn_eval.metrics import fid, registry
from grn_eval.preflight import check_suite, entry_inputs
from grn_eval.sample_checks import ReferenceGuard, check_pixels, compare_regenerated
from grn_eval.stages import StageLog, memory_kind, stage
from grn_eval.suite import Suite, check_reference_data

SEED_STRIDE = 1_000_003


def sample_seed(seed: int, index: int) -> int:
    return seed * SEED_STRIDE + index


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for (suite key `device` or --device) but no CUDA device is "
                        "available to this torch build; use --device cpu (or `device: auto`)")
    return torch.device(name)


def shard_checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over (name, dtype, shape, bytes) of a shard's arrays: a damaged shard is found, named, recomputed."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype}|{a.shape}|".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def write_shard(path: Path, **arrays) -> None:
    _atomic_npz(path, **arrays, checksum=np.frombuffer(shard_checksum(arrays).encode(), np.uint8))


def read_shard(path: Path) -> dict[str, np.ndarray] | None:
    """A shard's arrays, or None when it is absent or damaged (unreadable, or its checksum does not match:
    then it is reported by name and removed, and the caller makes it again)."""
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        want = arrays.pop("checksum").tobytes().decode()
        ok = shard_checksum(arrays) == want
        reason = "checksum mismatch"
    except Exception as e:  # zip, pickle, EOF, a missing checksum: all mean the file cannot be trusted
        ok, reason = False, f"{type(e).__name__}: {e}"
    if ok:
        return arrays
    tqdm.write(f"warning: sample shard '{path}' is damaged ({reason}); recomputing it")
    path.unlink(missing_ok=True)
    return None


def samples_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of one seed's samples and their labels: equal digests, bit-identical samples (what the gate prints)."""
    return shard_checksum({"arr_0": images, "arr_1": np.asarray(labels, np.int64)})


def _stored_labels(labels, n: int, num_classes: int, where: str) -> np.ndarray:
    """The labels stored with samples (a per-class folder, an ADM batch's arr_1), checked: one integer class in
    0 ... num_classes - 1 per sample."""
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or \
            (n and (labels.min() < 0 or labels.max() >= num_classes)):
        raise UserError(f"{where}: the stored labels are {labels.dtype} of shape {labels.shape}"
                        + (f", values {labels.min()} ... {labels.max()}" if labels.size and
                           np.issubdtype(labels.dtype, np.number) else "")
                        + f"; expected {n} integer classes in 0 ... {num_classes - 1}")
    return labels.astype(np.int64)


def _trace_json(trace, where: str) -> str:
    """A sampler trace as JSON (numbers, strings, lists, dicts; numpy scalars and arrays become their values)."""
    def plain(x):  # numpy arrays and scalars, torch tensors
        if hasattr(x, "tolist"):
            return x.tolist()
        raise TypeError(type(x).__name__)
    if not isinstance(trace, dict):
        raise UserError(f"{where}: generate() returned a trace of type {type(trace).__name__}; it must be a dict")
    try:
        return json.dumps(trace, default=plain, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise UserError(f"{where}: the sampler trace cannot be stored as JSON ({e}); return numbers, strings, "
                        f"lists and dicts in the trace") from None


def _atomic_json(path: Path, data) -> None:
    atomic_write(path, json.dumps(data, indent=1, default=str) + "\n")


def _atomic_npz(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def model_code_sha256() -> str:
    """sha256 over the source files of the `grn` package (models, samplers, tokenizers, data)."""
    import grn

    h = hashlib.sha256()
    root = Path(grn.__file__).parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"|" + path.read_bytes())
    return h.hexdigest()


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _versions() -> dict:
    out = {}
    for pkg in ("grn-eval", "torch", "torchvision", "torch-fidelity", "clean-fid", "lpips", "numpy", "scipy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


class Runner:
    def __init__(self, suite: Suite, run_dir: str | Path | None = None, progress: bool = True,
                 cache: FeatureCache | None = None):
        self.suite = suite
        self.device = resolve_device(suite.device)
        # by default one folder per fingerprint: a changed suite, checkpoint or sampler starts a fresh run
        self.run_dir = Path(run_dir) if run_dir else Path(suite.output_dir) / suite.name / self.fingerprint()[:12]
        self.progress = progress
        self.cache = cache or FeatureCache()
        self._extractors: dict[str, InceptionFeatures] = {}
        self._assets: dict = {}  # what metrics load once per run (CLIP, DINOv2 models, reference statistics)
        self.timings: dict[str, float] = {}
        self.shard_seconds: dict[tuple[str, int], dict[int, tuple]] = {}  # (model, seed) -> shard -> (s, n, trace)
        self.stages = StageLog()  # filled while run() is active
        # per model: each seed's samples digest and reference overlap count, and how its seeds were checked
        self.sample_record: dict[str, dict] = {}
        self.guard = ReferenceGuard(None, suite)  # the reference's size and image digests, once it is read
        # under torchrun: shards and feature blocks are split by index modulo the world size
        self.rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if self.world > 1 and not self.cache.enabled:
            raise ValueError("a distributed run exchanges features through the feature cache; enable it")

    def _mine(self, k: int) -> bool:
        return k % self.world == self.rank

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    # -- pieces -----------------------------------------------------------------------------
    def extractor(self, protocol: str) -> InceptionFeatures:
        if protocol not in self._extractors:
            self._extractors[protocol] = InceptionFeatures(protocol, self.device)
        return self._extractors[protocol]

    # fixed blocks: the same cache entries whatever the number of processes, and the blocks of the streamed
    # statistics, so that they equal those of the whole feature matrix bit for bit
    FEATURE_BLOCK = fid.MOMENT_BLOCK

    def _feature_blocks(self, images: np.ndarray, protocol: str):
        """The features of each block of FEATURE_BLOCK images, in order, through the cache."""
        ex = self.extractor(protocol)
        blocks = [images[s : s + self.FEATURE_BLOCK] for s in range(0, len(images), self.FEATURE_BLOCK)]
        if self.world > 1:  # each rank fills the cache for its blocks, then everyone reads all of them
            with stage("features"):
                for j, block in enumerate(blocks):
                    if self._mine(j):
                        self.cache.features(ex, block)
            self._barrier()
        # one bar per pass over a set (the reference's can take minutes on a CPU); on a terminal only
        with tqdm(total=len(images), desc=f"features {protocol}", unit="img", leave=False,
                  disable=None if self.progress else True) as bar:
            for block in blocks:
                with stage("features"):
                    feats = self.cache.features(ex, block)
                bar.update(len(block))
                yield feats

    def features(self, images: np.ndarray, protocol: str) -> dict[str, np.ndarray]:
        parts = list(self._feature_blocks(images, protocol))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    def statistics(self, images: np.ndarray, protocol: str, layer: str = "pool") -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of the `layer` features of `images`, accumulated block by block in float64: one block's
        features in memory at a time, whatever N, and the same numbers as `gaussian_stats` of all of them."""
        with stage("statistics"):
            if len(images) < 2:
                fid.check_covariance_size(len(images), 0)
            moments = fid.accumulate(f[layer] for f in self._feature_blocks(images, protocol))
            return moments.stats()

    def reference(self) -> tuple[np.ndarray | None, np.ndarray | None, dict]:
        """(images or None, labels or None, provenance) of the reference set."""
        ref = self.suite.reference
        limit = ref.get("limit", self.suite.n_samples)
        if "dataset" in ref:
            spec = dict(self.suite.datasets[ref["dataset"]])
            data = load_dataset(spec.pop("name"), **spec)
            images, labels = data.batch(0, min(limit, len(data)))
            check_pixels(images, f"reference dataset '{ref['dataset']}'", self.suite.allow_low_range)
            return images, labels, {"dataset": data.name, "n": len(images),
                                    "sha256": content_key(images)}
        key = "stats" if "stats" in ref else "npz"
        path = self._reference_file()
        if not path.is_file():
            raise FileNotFoundError(f"reference {key} file '{ref[key]}' not found; give the path of the "
                                    f"{'statistics (.npz with mu, sigma)' if key == 'stats' else 'ADM batch'} file")
        digest = W.sha256_file(path)
        if ref.get("sha256") and digest != ref["sha256"]:
            raise UserError(f"{self.suite.path}: reference.sha256: '{path}' has sha256 {digest}, the suite expects "
                            f"{ref['sha256']}; point the suite at the right file or update the pin")
        if key == "stats":
            return None, None, {"stats": path.name, "sha256": digest}
        data = load_npz(path)
        images, labels = data.batch(0, min(limit, len(data)))
        check_pixels(images, f"reference batch '{path}'", self.suite.allow_low_range)
        return images, labels, {"npz": path.name, "sha256": digest, "n": len(images)}

    def _reference_file(self) -> Path | None:
        ref = self.suite.reference
        key = "stats" if "stats" in ref else "npz" if "npz" in ref else None
        if key is None:
            return None
        path = Path(ref[key])
        return path if path.exists() else self.suite.path.parent / path

    def _file_statistics(self, path: Path) -> dict[str, np.ndarray]:
        """The statistics a reference file carries (mu / sigma, mu_s / sigma_s), in float64, read once per run and
        checked (fid.read_statistics: a readable .npz, each pair a mean and a symmetric PSD covariance of its
        layer's dimension); anything else is a UserError naming the file and the suite key."""
        key = "stats" if "stats" in self.suite.reference else "npz"
        where = f"{self.suite.path}: reference.{key}: '{path}'"
        return self.asset(("reference statistics", str(path)), lambda: fid.read_statistics(path, where).stats)

    def reference_stats(self, protocol: str, ref_images, layer: str = "pool",
                        keep_features: bool = True) -> registry.ReferenceStats:
        """The reference's mu and sigma of `layer`, the features they were computed from (None: from a file, or
        not kept), and where they come from. Without `keep_features` they are accumulated block by block.

        A statistics file gives them; so does an ADM reference batch that carries them (`mu`, `sigma` for pool3,
        `mu_s`, `sigma_s` for the spatial features, of the whole dataset as the ADM evaluator uses them) under
        the TF-Inception protocol they were computed with; otherwise they are computed from the reference
        images."""
        names = STATS_KEYS[layer]
        path = self._reference_file()
        if path is not None:
            stored = self._file_statistics(path)
            if use_file_statistics(stored, layer, protocol, ref_images is not None):
                return registry.ReferenceStats(stored[names[0]], stored[names[1]], None,
                                               f"{names[0]} / {names[1]} of {path.name}", True)
            if ref_images is None:
                raise registry.NotAvailable(f"not available: the reference statistics file '{path.name}' has no "
                                            f"{names[0]} / {names[1]} (the {LAYERS[layer]} statistics); give "
                                            f"reference images (reference.dataset or an ADM batch) or a file "
                                            f"that has them")
        source = f"computed from {len(ref_images)} reference images"
        if not keep_features:
            return registry.ReferenceStats(*self.statistics(ref_images, protocol, layer), None, source, False)
        feats = self.features(ref_images, protocol)[layer]
        return registry.ReferenceStats(*fid.gaussian_stats(feats), feats, source, False)

    # -- sampling in shards -----------------------------------------------------------------
    def _shard_dir(self, entry, seed: int) -> Path:
        return self.run_dir / "samples" / safe_name(entry.name) / f"seed{seed}"  # what `grn-eval publish` reads

    def generate(self, entry, adapter, seed: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        n, bs = self.suite.n_samples, self.suite.batch_size
        folder = self._shard_dir(entry, seed)
        n_shards = (n + bs - 1) // bs
        where = f"model '{entry.name}' seed {seed}"

        def sample(k: int):
            start, stop = k * bs, min(n, (k + 1) * bs)
            idx = np.arange(start, stop)
            labs = idx % adapter.num_classes
            if not adapter.from_seeds:  # StoredSamples: served by index, with the labels they were stored with
                imgs, stored, trace = adapter.generate_range(start, stop)
                labs = labs if stored is None else _stored_labels(stored, len(idx), adapter.num_classes,
                                                                  f"{where} shard {k}")
            else:
                imgs, trace = adapter.generate(labs, [sample_seed(seed, int(i)) for i in idx])
            return imgs, labs, trace

        def make(k: int) -> dict[str, np.ndarray]:
            start, stop = k * bs, min(n, (k + 1) * bs)
            try:
                with stage("sampling"):  # the model's calls; decoding, when the adapter marks it, is its own stage
                    t0 = time.perf_counter()
                    imgs, labs, trace = sample(k)
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    # the shard's time (the latency metric reads it), with its size and trace
                    self.shard_seconds.setdefault((entry.name, seed), {})[k] = (time.perf_counter() - t0,
                                                                                stop - start, trace)
            except NonFiniteError as e:
                raise NonFiniteError(f"model '{entry.name}', seed {seed}, shard {k} (samples {start}-{stop - 1}): "
                                     f"{e}") from None
            check_pixels(imgs, f"{where} shard {k}", self.suite.allow_low_range)
            self.guard.check(imgs, f"{where} shard {k}")  # before the shard is written
            arrays = {"arr_0": imgs, "arr_1": labs, "trace": np.frombuffer(_trace_json(trace, where).encode(),
                                                                           np.uint8)}
            write_shard(folder / f"shard_{k:05d}.npz", **arrays)
            return arrays

        for k in tqdm(range(n_shards), desc=f"{entry.name} seed {seed}", disable=not self.progress, unit="shard"):
            if self._mine(k) and read_shard(folder / f"shard_{k:05d}.npz") is None:
                make(k)
        self._barrier()
        shards = [read_shard(folder / f"shard_{k:05d}.npz") or make(k) for k in range(n_shards)]
        shapes = [sh["arr_0"].shape[1:] for sh in shards]
        if len(set(shapes)) > 1:
            k = next(k for k, shape in enumerate(shapes) if shape != shapes[0])
            raise UserError(f"{where}: shard {k} holds samples of shape {shapes[k]}, shard 0 of {shapes[0]}; a "
                            f"generator must return one image size for every batch")
        images = np.concatenate([sh["arr_0"] for sh in shards])
        labels = np.concatenate([sh["arr_1"] for sh in shards])
        traces = [json.loads(sh["trace"].tobytes().decode()) for sh in shards]
        record = self.sample_record.setdefault(entry.name, {"samples_sha256": {}})
        record["samples_sha256"][str(seed)] = samples_digest(images, labels)
        if self.guard.shape is not None:  # how many copy reference images: 0 unless allowed, for every shard of
            # this run's fingerprint was refused before it was written; only an allowed overlap needs counting
            record.setdefault("reference_overlap", {})[str(seed)] = \
                self.guard.check(images, where) if self.suite.allow_reference_overlap else 0
        if getattr(adapter, "check_seeds", False) and "determinism" not in record:
            record["determinism"] = self._determinism(entry, adapter, sample, shards[0]["arr_0"], where)
        if self.rank == 0:
            self.export(folder, images, labels)
            self.per_sample_log(folder, seed, labels, traces)
        return images, labels, traces

    def _determinism(self, entry, adapter, sample, first: np.ndarray, where: str) -> str:
        """A generator from outside the project samples its first shard again: the same seeds must give the
        same images (sample_checks.compare_regenerated), unless the model says `deterministic: false`."""
        if entry.options.get("deterministic") is False:
            return "not checked (deterministic: false)"
        with stage("sampling"):
            again = sample(0)[0]
        return compare_regenerated(first, np.asarray(again), f"{where} shard 0")

    def export(self, folder: Path, images: np.ndarray, labels: np.ndarray | None) -> None:
        """Optional exports: an ADM batch (arr_0 uint8 NHWC, arr_1 labels) and/or one PNG per sample."""
        if "npz" in self.suite.export:
            _atomic_npz(folder / "samples.npz", **{"arr_0": images, **({"arr_1": labels} if labels is not None
                                                                        else {})})
        if "png" in self.suite.export:
            from PIL import Image

            (folder / "png").mkdir(parents=True, exist_ok=True)
            for i, im in enumerate(images):
                Image.fromarray(im).save(folder / "png" / f"{i:06d}.png")

    def per_sample_log(self, folder: Path, seed: int, labels: np.ndarray, traces: list[dict]) -> None:
        """One line per sample: index, class, sampling seed, steps used (and decision entropy)."""
        steps = [s for t in traces for s in t.get("steps_used", [])]
        if not steps:
            return
        ent = [e for t in traces for e in (t.get("decision_entropy") or [None] * len(t.get("steps_used", [])))]
        lines = [json.dumps({"index": i, "label": int(labels[i]), "seed": sample_seed(seed, i), "steps": steps[i],
                             "decision_entropy": ent[i]}) for i in range(len(steps))]
        atomic_write(folder / "per_sample.jsonl", "\n".join(lines) + "\n")

    def reconstruct(self, entry, adapter, ref_images: np.ndarray) -> np.ndarray:
        bs = self.suite.batch_size
        folder = self._shard_dir(entry, 0)
        n_shards = (len(ref_images) + bs - 1) // bs

        def make(k: int) -> dict[str, np.ndarray]:
            try:
                with stage("reconstruction"):
                    recon = adapter.reconstruct(ref_images[k * bs : (k + 1) * bs])
            except NonFiniteError as e:
                raise NonFiniteError(f"model '{entry.name}', shard {k}: {e}") from None
            check_pixels(recon, f"model '{entry.name}' shard {k}", self.suite.allow_low_range)
            write_shard(folder / f"shard_{k:05d}.npz", arr_0=recon)
            return {"arr_0": recon}

        for k in tqdm(range(n_shards), desc=entry.name, disable=not self.progress, unit="shard"):
            if self._mine(k) and read_shard(folder / f"shard_{k:05d}.npz") is None:
                make(k)
        self._barrier()
        recons = np.concatenate([(read_shard(folder / f"shard_{k:05d}.npz") or make(k))["arr_0"]
                                 for k in range(n_shards)])
        if self.rank == 0:
            self.export(folder, recons, None)
        return recons

    # -- metrics ----------------------------------------------------------------------------
    def _row(self, entry, metric: str, value, seed, n, protocol: dict, version: str, extra=None, reason=None,
             ci=None):
        return {"suite": self.suite.name, "model": entry.name, "base_model": entry.base_name, "family": entry.family,
                "setting": entry.grid, "metric": metric, "value": value, "seed": seed, "n": n,
                "ci_low": None if ci is None else ci[0], "ci_high": None if ci is None else ci[1],
                "protocol": protocol, "version": version, "available": reason is None, "reason": reason,
                "extra": extra or {}}

    def generation_metrics(self, entry, adapter, seed, ref_images, ref_prov) -> list[dict]:
        t0 = time.perf_counter()
        images, labels, traces = self.generate(entry, adapter, seed)
        self.timings[f"sample:{entry.name}:{seed}"] = time.perf_counter() - t0
        return self._metric_rows("generation", entry, adapter, seed, images, labels, traces, ref_images, ref_prov)

    def _metric_rows(self, stage_name, entry, adapter, seed, samples, labels, traces, ref_images, ref_prov):
        rows, frames = [], None
        for spec in registry.for_suite(self.suite.metrics, stage_name):
            with stage(f"metric:{spec.key}"):
                if samples.ndim == 5 and not spec.video:  # an image metric on videos: their frames (made once)
                    frames = frames or self._frames(samples, labels, ref_images)
                    new = spec.compute(registry.MetricContext(spec, self, entry, adapter, seed, frames[0], frames[1],
                                                              traces, frames[2], ref_prov))
                    rows += [{**row, "extra": {**(row.get("extra") or {}), **frames[3]}} for row in new]
                    continue
                rows += spec.compute(registry.MetricContext(spec, self, entry, adapter, seed, samples, labels, traces,
                                                            ref_images, ref_prov))
        return rows

    def _frames(self, videos, labels, ref_videos):
        """What an image metric scores of videos: frames 0, s, 2s, ... (s the suite's `frame_stride`) of each video
        and of each reference video, N x T/s images in video-major order, each frame with its video's label; and
        the note its rows carry of which frames they scored."""
        s = self.suite.frame_stride

        def frames_of(v):
            return np.ascontiguousarray(v[:, ::s]).reshape(-1, *v.shape[2:])
        t = videos[:, ::s].shape[1]
        note = {"per_frame": {"videos": len(videos), "frames_per_video": t, "frame_stride": s,
                              "clip_frames": videos.shape[1],
                              "reference_videos": None if ref_videos is None else len(ref_videos)}}
        return (frames_of(videos), None if labels is None else np.repeat(labels, t),
                None if ref_videos is None else frames_of(ref_videos), note)

    def numerics(self) -> dict:
        """The settings that move numbers in the last digits, so a difference between two runs can be
        explained: batch size, threads, deterministic algorithms, TF32 and the dtypes."""
        cuda = self.device.type == "cuda"
        return {"batch_size": self.suite.batch_size, "threads": torch.get_num_threads(),
                "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
                "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else None,
                "networks": "float32", "statistics": "float64", "inception": INCEPTION_NUMERICS}

    def asset(self, key, load):
        """What `load()` returns, loaded once per run under `key` (a metric's feature network with real
        weights; its absence raises WeightsAbsent, which ends the run with the fix)."""
        if key not in self._assets:
            self._assets[key] = load()
        return self._assets[key]

    def reconstruction_metrics(self, entry, adapter, ref_images, ref_prov) -> list[dict]:
        recons = self.reconstruct(entry, adapter, ref_images)
        return self._metric_rows("reconstruction", entry, adapter, 0, recons, None, [], ref_images, ref_prov)

    # -- the whole suite --------------------------------------------------------------------
    @functools.cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256(self.suite.hash.encode())
        h.update(model_code_sha256().encode())
        for entry in self.suite.models:
            h.update(json.dumps(entry_inputs(entry, self.suite.path.parent), sort_keys=True).encode())
        return h.hexdigest()

    def fingerprint(self) -> str:
        """The suite, the content of every file and folder its models read (preflight.entry_inputs: image
        folders, pipelines, an entry point's source) and the model library's source (a changed
        sampler makes other samples from the same files): shards of another fingerprint are never mixed
        into this run. Computed once per Runner (it hashes every checkpoint, official ones run to GB)."""
        return self._fingerprint

    def _claim_run_dir(self) -> None:
        marker = self.run_dir / "run.json"
        fp = self.fingerprint()
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UserError(f"run folder '{self.run_dir}' is a file; pass a folder as --run-dir (or leave it out)")
        if marker.exists():
            try:
                claimed = json.loads(marker.read_text())["fingerprint"]
            except (ValueError, KeyError, TypeError):  # truncated, not JSON, a list, no fingerprint
                raise UserError(f"'{marker}' is damaged (not a run record with a fingerprint), so the samples in "
                                f"'{self.run_dir}' cannot be told apart from another run's; delete that folder or "
                                f"use another --run-dir") from None
            if claimed != fp:
                raise UserError(f"run folder '{self.run_dir}' holds a run of another suite configuration or other "
                                f"checkpoints; use another --run-dir (or delete that folder) to start afresh")
        elif self.rank == 0:
            _atomic_json(marker, {"fingerprint": fp, "suite": self.suite.name})
        self._barrier()

    def run(self) -> dict:
        self.stages = StageLog()
        with self.stages.active():
            return self._run()

    def _run(self) -> dict:
        t_start = time.perf_counter()
        # everything that can be checked is checked before anything is written to the run folder
        W.check_cache_root()
        checked = check_suite(self.suite)
        for spec in registry.specs():  # before any sampling: absent weights end the run here, saying which
            if spec.prepare is not None and spec.key in self.suite.metrics:
                spec.prepare(self, spec.merged(self.suite.metrics[spec.key]))
        with stage("data"):
            ref_images, _, ref_prov = self.reference()
            check_reference_data(self.suite, ref_images)  # clip lengths and counts the suite alone cannot say
            # only a metric that sets samples against the reference's distribution needs them alike and distinct
            compared = any(spec.compares_reference for spec in registry.for_suite(self.suite.metrics, "generation"))
            if self.suite.task == "generation" and compared:
                self.guard = ReferenceGuard(ref_images, self.suite)
        if self.suite.task == "reconstruction" and ref_images is None:
            raise UserError(f"{self.suite.path}: reference: a reconstruction suite needs reference images "
                            f"(dataset or npz), not statistics")
        self._claim_run_dir()
        rows, models = [], {}
        for entry in self.suite.models:
            adapter = build_adapter(entry, self.suite.path.parent, self.device, checked[entry.name])
            if adapter.task == "generation":
                with stage("calibration"):
                    adapter.prepare()
                for seed in self.suite.seeds:
                    rows += self.generation_metrics(entry, adapter, seed, ref_images, ref_prov)
            else:
                rows += self.reconstruction_metrics(entry, adapter, ref_images, ref_prov)
            models[entry.name] = {"adapter": entry.adapter, "setting": entry.grid, **adapter.provenance(),
                                  **self.sample_record.get(entry.name, {})}
        self.timings["total"] = time.perf_counter() - t_start
        weights_used = {p: ex.resolved.provenance() for p, ex in self._extractors.items()}
        result = {
            "suite": self.suite.name, "suite_file": self.suite.path.name, "suite_hash": self.suite.hash,
            "config_hash": self.suite.config_hash,
            "resolved_config": self.suite.resolved, "git_commit": _git_commit(), "versions": _versions(),
            "device": {"type": self.device.type, "name": _device_name(self.device), "platform": platform.platform()},
            "weights": weights_used, "reference": ref_prov, "models": models, "timings": self.timings,
            # seconds (exclusive of the stages inside) and peak memory per stage: grn_eval/stages.py
            "stages": {"memory": memory_kind(), "per_stage": self.stages.summary()},
            "cache": {"hits": self.cache.hits, "misses": self.cache.misses}, "numerics": self.numerics(),
            "rows": rows,
        }
        result["world_size"] = self.world
        if self.rank == 0:
            _atomic_json(self.run_dir / "results.json", result)
        return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def run_suite(suite: Suite, **kwargs) -> dict:
    return Runner(suite, **kwargs).run()

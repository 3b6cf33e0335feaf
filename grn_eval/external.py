"""Generators from outside this project, as suite adapters: a Python entry point, a folder of images.

`python`: `entry: package.module:factory` (and `kwargs:` for it; `path:` puts a folder on sys.path first)
names a callable that returns the generator. The generator is any object with

    num_classes: int                                   # labels are 0 ... num_classes - 1 (default 1)
    generate(labels: np.ndarray, seeds: list[int])     # -> uint8 images [N, H, W, 3], or (images, trace dict)
    provenance() -> dict                               # optional: what it is (recorded with every row)
    prepare() -> None                                  # optional: called once before sampling

so the runner samples it like its own models: per-sample seeds, shards, resume, latency. The project's own
generators are such objects (`grn_eval.external:grn_generator`, an example that tests run).

`imagefolder`: samples already made, as PNG / JPEG files in a folder (flat, or one sub-folder per class:
labels are the sorted sub-folders' indices), served in sorted file order. Every file's sha256 is in the
provenance; files of another size or mode than the first stop the run naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from grn.data import read_rgb
from grn.errors import UserError
from grn_eval.model_check import resolve


class PythonGenerator:
    """The `python` adapter: samples from the object an entry point's factory returns."""

    task = "generation"
    from_seeds = True
    check_seeds = True  # code from outside the project: its first shard is sampled twice (runner)
    has_prompts = False

    def __init__(self, entry, base: Path, device, checked=None):
        o = entry.options
        self.where = f"model '{entry.name}'"
        self.entry_point, self.kwargs = o["entry"], dict(o.get("kwargs") or {})
        with importable_from(entry_folder(entry, base, self.where)):
            factory = load_entry_point(self.entry_point, self.where)
            self.module_file = inspect.getsourcefile(sys.modules[self.entry_point.split(":")[0]])
            try:
                self.generator = factory(**self._factory_kwargs(factory, device))
            except UserError:
                raise
            except Exception as e:  # the factory is user code: one message naming it, no traceback
                raise UserError(f"{self.where}: entry: {self.entry_point}(**kwargs) raised {type(e).__name__}: {e}") \
                    from None
        if not callable(getattr(self.generator, "generate", None)):
            raise UserError(f"{self.where}: entry: {self.entry_point} returned a {type(self.generator).__name__} "
                            f"without a generate(labels, seeds) method")
        classes = getattr(self.generator, "num_classes", 1)
        if isinstance(classes, bool) or not isinstance(classes, int | np.integer) or classes < 1:
            raise UserError(f"{self.where}: entry: the generator says num_classes {classes!r}; it must be an integer "
                            f">= 1 (labels are 0 ... num_classes - 1)")
        self.num_classes = int(classes)

    def _factory_kwargs(self, factory, device) -> dict:
        """The suite's kwargs, plus `device` when the factory takes it and the suite does not set it."""
        params = inspect.signature(factory).parameters
        if "device" in params and "device" not in self.kwargs:
            return {**self.kwargs, "device": device}
        return self.kwargs

    def prepare(self, n_calibration: int = 0) -> None:
        if callable(getattr(self.generator, "prepare", None)):
            self.generator.prepare()

    def generate(self, labels: np.ndarray, seeds: list[int]) -> tuple[np.ndarray, dict]:
        try:
            out = self.generator.generate(np.asarray(labels), list(seeds))
        except UserError:
            raise
        except Exception as e:  # the generator is user code: one message naming it, no traceback
            raise UserError(f"{self.where}: entry: {self.entry_point}'s generate() raised {type(e).__name__}: {e}") \
                from None
        images, trace = out if isinstance(out, tuple) and len(out) == 2 else (out, {})
        images = images.detach().cpu().numpy() if hasattr(images, "cpu") else images
        if not isinstance(trace, dict | type(None)):
            raise UserError(f"{self.where}: generate() returned a trace of type {type(trace).__name__}; return "
                            f"images, or (images, a dict)")
        if not isinstance(images, np.ndarray) or images.shape[:1] != (len(labels),):
            raise UserError(f"{self.where}: generate() returned {getattr(images, 'shape', type(images).__name__)} "
                            f"for {len(labels)} labels; it must return one uint8 image [H, W, 3] per label")
        return images, dict(trace or {})

    def provenance(self) -> dict:
        own = self.generator.provenance() if callable(getattr(self.generator, "provenance", None)) else {}
        return {"entry": self.entry_point, "kwargs": self.kwargs, "module_sha256": _sha256(self.module_file),
                "generator": own}


def entry_folder(entry, base: Path, where: str) -> Path | None:
    """A `python` entry's `path:` (the folder put first on sys.path for its import), checked to be a folder."""
    if not entry.options.get("path"):
        return None
    folder = resolve(entry.options["path"], base)
    if not folder.is_dir():
        raise UserError(f"{where}: path: '{folder}' is not a folder; give the folder that holds the entry point's "
                        f"package")
    return folder


@contextlib.contextmanager
def importable_from(folder: Path | None):
    """`folder` first on sys.path for the block (None: sys.path as it is), taken off again afterwards."""
    if folder is None:
        yield
        return
    path = str(Path(folder).resolve())
    sys.path.insert(0, path)
    try:
        yield
    finally:
        sys.path.remove(path)


def load_entry_point(spec: str, where: str):
    """`package.module:attribute` -> the attribute (one message when it cannot be imported or found)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"{where}: entry: '{spec}' is not 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise UserError(f"{where}: entry: cannot import '{module_name}' ({type(e).__name__}: {e}); install it, put it "
                        f"on PYTHONPATH, or give its folder as `path:`") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"{where}: entry: '{module_name}' has no '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserError(f"{where}: entry: '{spec}' is not callable")
    return obj


def entry_point_source_sha256(spec: str, folder: Path | None = None) -> str:
    """sha256 of the source an entry point `package.module:factory` runs: every .py file of its top-level package
    (a helper module beside the entry point changes the samples as much as the entry point does), or the one
    module file; found without importing it, with `folder` (the suite's `path:`) first on sys.path."""
    import importlib.util

    from grn.fileio import sha256_file

    top = spec.partition(":")[0].split(".")[0]
    with importable_from(folder):
        try:
            found = importlib.util.find_spec(top) if top else None
        except (ImportError, ValueError):
            found = None
    if found is None:
        return f"not found:{spec}"  # the import itself then says what is wrong, naming the entry point
    roots = list(found.submodule_search_locations or [])
    files = sorted(f for r in roots for f in Path(r).rglob("*.py")) if roots else \
        [Path(found.origin)] if found.origin and Path(found.origin).is_file() else []
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name} {sha256_file(f)}\n".encode())
    return h.hexdigest()


def _sha256(path) -> str | None:
    if not path:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class ImageFolderSamples:
    """The `imagefolder` adapter: samples as image files, flat or one sub-folder per class, in sorted order."""

    task = "generation"
    from_seeds = False
    has_prompts = False
    SUFFIXES = (".png", ".jpg", ".jpeg")

    def __init__(self, entry, base: Path, device, checked=None):
        self.where = f"model '{entry.name}'"
        self.root = resolve(entry.options["path"], base)
        if not self.root.is_dir():
            raise UserError(f"{self.where}: path: '{self.root}' is not a folder of images")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        # hidden folders (.ipynb_checkpoints, .cache) are never classes: left out, and the provenance says so
        self.skipped = [p.name for p in folders if p.name.startswith(".")]
        classes = [p for p in folders if not p.name.startswith(".")]
        top = self._images(self.root)
        if classes and top:
            raise UserError(f"{self.where}: path: '{self.root}' holds {len(top)} images at its top level (e.g. "
                            f"'{top[0].name}') and {len(classes)} sub-folders (e.g. '{classes[0].name}/'), which "
                            f"would be read as classes; keep the samples flat or all in per-class folders")
        self.files, labels = [], []
        for label, folder in enumerate(classes or [self.root]):
            files = self._images(folder)
            self.files += files
            labels += [label] * len(files)
        if not self.files:
            raise UserError(f"{self.where}: path: no PNG or JPEG files in '{self.root}' (flat, or one folder per "
                            f"class)")
        if self.skipped:
            print(f"note: {self.where}: hidden folder(s) {', '.join(self.skipped)} in '{self.root}' left out",
                  file=sys.stderr)
        folders = classes or [self.root]
        self.labels = np.asarray(labels, np.int64)
        self.num_classes = len(folders)
        self.classes = [p.name for p in classes]
        self._shape = None  # (size, mode) of the first file: every other must match it

    def _images(self, folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in self.SUFFIXES and
                      not p.name.startswith("."))

    def prepare(self, n_calibration: int = 0) -> None:
        pass

    def generate_range(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, dict]:
        from PIL import Image

        if stop > len(self.files):
            raise UserError(f"{self.where}: '{self.root}' holds {len(self.files)} images, the suite asks for {stop}; "
                            f"lower n_samples")
        images = []
        for path in self.files[start:stop]:
            try:
                with Image.open(path) as img:
                    shape = (img.size, img.mode)
                    if self._shape is None:
                        self._shape = shape
                    if shape != self._shape:
                        raise UserError(f"{self.where}: '{path}' is {shape[0][0]}x{shape[0][1]} {shape[1]}, the "
                                        f"folder's first image is {self._shape[0][0]}x{self._shape[0][1]} "
                                        f"{self._shape[1]}; every sample must have one size and mode")
                    images.append(read_rgb(img, path))
            except OSError as e:
                raise UserError(f"{self.where}: cannot read '{path}': {e}") from None
        return np.stack(images), self.labels[start:stop], {}

    def provenance(self) -> dict:
        digests = [[str(p.relative_to(self.root)), _sha256(p)] for p in self.files]
        listing = hashlib.sha256("".join(f"{name} {d}\n" for name, d in digests).encode()).hexdigest()
        return {"path": self.root.name, "n": len(self.files), "classes": self.classes, "files_sha256": listing,
                "files": digests, **({"skipped_hidden": self.skipped} if self.skipped else {})}


def grn_generator(checkpoint: str, tokenizer: str, steps: int = 20, guidance: float = 3.0, temperature: float = 0.8,
                  device="cpu"):
    """This project's GRN as an entry point (`grn_eval.external:grn_generator`): the example of the protocol."""
    import torch

    from grn.checkpoint import load_model, load_tokenizer
    from grn.sampling import SamplerConfig, refine, sample_generators

    class GRNGenerator:
        def __init__(self):
            self.model = load_model(checkpoint, device)
            self.tokenizer = load_tokenizer(tokenizer, device)
            self.num_classes = self.model.cfg.num_classes
            self.sampler = SamplerConfig(steps=steps, guidance=guidance, temperature=temperature)

        @torch.no_grad()
        def generate(self, labels, seeds):
            y = torch.as_tensor(labels, dtype=torch.long, device=device)
            tokens, _trace = refine(self.model, y, self.sampler, sample_generators(seeds))
            return self.tokenizer.decode_tokens(tokens, self.model.cfg.layout)

        def provenance(self):
            return {"checkpoint": Path(checkpoint).name, "sampler": asdict(self.sampler)}

    return GRNGenerator()

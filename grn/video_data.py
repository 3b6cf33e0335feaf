"""Video datasets: embedded Moving-MNIST, user videos as .npz files or frame folders.

Every video dataset yields **uint8 NTHWC** videos (videos, frames, height, width, channels), the
video counterpart of grn/data.py's uint8 NHWC images; models convert to float themselves.

Moving-MNIST follows the construction of Srivastava et al. 2015 (one digit moving with constant
velocity inside the frame, reflecting off the walls), built from the embedded MNIST-5k splits of
grn/data.py so nothing is downloaded: the `train` digits make the training videos and the
`reference` digits the reference videos, one video per digit in the split's order, so a prefix
is class-balanced like the image split it comes from.

The defaults are small on purpose: 17 frames of 32x32 with a 24 px digit. 17 = 1 + 4 * 4 because
the causal video tokenizer encodes the first frame alone and then chunks of 4 (a clip must have
1 + 4k frames), and 16 frames after the first are what FVD compares. 32x32 is what a 2-core CPU
can train a tokenizer and a generator on in minutes. The digit is 24 px, leaving 8 px of free
range, because what a small text-to-video budget learns depends on how far the digit can be:
with a 16 px digit roaming a 16 px range (or 24 px in 40x40 frames) the embedded GRN-T2V drew
the asked digit in about 0.2 of its videos, with the 8 px range in about 0.6 (chance 0.1), at
the same budget; the recovery reads the digit of real clips either way (0.98).

Motion is one of 8 compass directions at one of 2 speeds, drawn from a fixed seed per split, and
the start is placed so that at the default settings the digit never bounces off a wall: the
caption ("moves quickly up and to the left") is then true of every frame. Longer clips reflect off
the walls as in the original construction. See `moving_mnist_parameters` and `reflect`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from grn.data import IMAGE_SUFFIXES, DatasetError, load_mnist
from grn.fileio import atomic_path
from grn.motion import DIRECTION_NAMES, DIRECTION_STEPS, SPEEDS
from grn.video_captions import motion_class, moving_mnist_captions

# ---------------------------------------------------------------------------------------
# Container
# ---------------------------------------------------------------------------------------

VIDEO_LAYOUT = "uint8 [videos, frames, height, width, channels] with 1 or 3 channels (NTHWC)"


@dataclass(frozen=True, eq=False)
class VideoArray:
    """An in-memory video set: uint8 NTHWC videos, optional int64 labels and captions, and the
    per-video generating parameters (numpy arrays of length N) of a synthetic set in `meta`."""

    videos: np.ndarray
    labels: np.ndarray | None
    name: str
    captions: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        v = self.videos
        if not isinstance(v, np.ndarray) or v.dtype != np.uint8 or v.ndim != 5 or v.shape[-1] not in (1, 3):
            shape = getattr(v, "shape", None)
            raise DatasetError(
                f"{self.name}: videos must be {VIDEO_LAYOUT}, got dtype {getattr(v, 'dtype', type(v).__name__)} "
                f"shape {shape}; fix: stack the frames as [N, T, H, W, C] and convert with "
                f"np.clip(x, 0, 255).astype(np.uint8)"
            )
        n = len(v)
        if self.labels is not None and len(self.labels) != n:
            raise DatasetError(f"{self.name}: {len(self.labels)} labels for {n} videos; fix: one label per video")
        if self.captions is not None and len(self.captions) != n:
            raise DatasetError(f"{self.name}: {len(self.captions)} captions for {n} videos; fix: one caption per video")
        for key, value in self.meta.items():
            if isinstance(value, np.ndarray) and value.ndim and len(value) != n:
                raise DatasetError(f"{self.name}: meta '{key}' has {len(value)} entries for {n} videos")

    def __len__(self) -> int:
        return len(self.videos)

    def batch(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        labels = None if self.labels is None else np.asarray(self.labels[start:stop], dtype=np.int64)
        return np.ascontiguousarray(self.videos[start:stop]), labels

    def frames(self) -> np.ndarray:
        """All frames as uint8 NHWC (N * T images, video-major: video 0's frames first), for image metrics."""
        n, t, h, w, c = self.videos.shape
        return self.videos.reshape(n * t, h, w, c)


# ---------------------------------------------------------------------------------------
# Moving-MNIST: motion
# ---------------------------------------------------------------------------------------

MOVING_MNIST_SEED = 20260720
MOVING_MNIST_SPLITS = ("train", "reference")
MOVING_MNIST_LABELS = ("digit", "motion")  # what a video's label is: its digit, or its motion class
DEFAULT_FRAMES = 17  # 1 + 4 * 4: the causal tokenizer's first frame plus four chunks of 4
DEFAULT_SIZE = 32
DEFAULT_DIGIT_SIZE = 24  # 8 px free range in a 32 px frame: see the module docstring
MNIST_DIGIT_SIZE = 28  # the side of a raw MNIST digit (grn.data.load_mnist pads it by 2 to 32)

# the motion table (directions, speeds) is grn/motion.py's, shared with the captions


def reflect(position: np.ndarray, free: float) -> np.ndarray:
    """Fold an unbounded straight path into [0, free]: an elastic bounce off each wall.

    `position` is the top-left corner along one axis and `free` = frame size - digit size is how
    far it can go. The path is a triangle wave of period 2 * free: it runs forward, meets the wall
    at `free`, comes back as its mirror image, meets the wall at 0, and so on (the velocity flips
    sign at every wall, its magnitude is kept)."""
    if free <= 0:
        return np.zeros_like(position)
    m = np.mod(position, 2 * free)
    return np.where(m <= free, m, 2 * free - m)


def moving_mnist_parameters(n: int, frames: int, size: int, digit_size: int, rng: np.random.Generator,
                            speeds=SPEEDS) -> dict:
    """Draw direction, speed and start of n videos; returns `meta` arrays (positions are top-left corners).

    Direction (uniform over the 8) and speed (uniform over the 2) come first, then the start:
    along each axis the digit travels `speed * (frames - 1)` pixels if it moves on that axis. When
    that fits in the free range `size - digit_size`, the start is uniform over the positions from
    which the whole path stays off the far wall (at the defaults a quick digit travels 8 px of an
    8 px free range, so it starts against the wall behind it): no bounce, the caption holds for
    every frame. When it does not fit (longer clips, bigger digits), the start is uniform over the
    free range and the path reflects off the walls (`reflect`); `bounces` marks those videos, whose
    caption describes the first frames only.
    """
    direction = rng.integers(len(DIRECTION_NAMES), size=n)
    speed = rng.integers(len(speeds), size=n)
    u = rng.random((n, 2))  # (column, row) start, as a fraction of the allowed range
    free = float(size - digit_size)
    velocity = DIRECTION_STEPS[direction] * np.asarray(speeds, np.float64)[speed, None]  # [n, 2] (dx, dy) px/frame
    travel = np.abs(velocity) * (frames - 1)
    fits = travel <= free
    lo = np.where(fits & (velocity < 0), travel, 0.0)
    hi = np.where(fits, np.where(velocity > 0, free - travel, free), free)
    start = lo + u * (hi - lo)
    t = np.arange(frames, dtype=np.float64)
    path = reflect(start[:, None, :] + velocity[:, None, :] * t[None, :, None], free)  # [n, T, 2] (x, y)
    return {
        "direction": direction.astype(np.int64), "speed": speed.astype(np.int64),
        "dx": velocity[:, 0], "dy": velocity[:, 1], "x0": start[:, 0], "y0": start[:, 1],
        "x": path[..., 0], "y": path[..., 1], "bounces": ~fits.all(1),
    }


# ---------------------------------------------------------------------------------------
# Moving-MNIST: rendering
# ---------------------------------------------------------------------------------------


def resize_digits(digits: np.ndarray, digit_size: int) -> np.ndarray:
    """uint8 [N, 28, 28] -> uint8 [N, d, d] with PIL's bilinear filter, which widens its support
    when shrinking (an antialiased triangle filter), so thin strokes fade rather than vanish."""
    if digits.shape[1:] == (digit_size, digit_size):
        return digits
    return np.stack([np.asarray(Image.fromarray(d).resize((digit_size, digit_size), Image.BILINEAR)) for d in digits])


def render_moving_digits(digits: np.ndarray, x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Paste digit n at (x[n, t], y[n, t]) (top-left corner, float px) of frame t: uint8 [N, T, size, size].

    Positions are rounded half up to whole pixels, which keeps the strokes crisp (no resampling
    blur; a slow digit steps one pixel every other frame). Pasting is max-compositing onto black,
    the rule for overlapping digits in Moving-MNIST; with one digit per frame it is a plain copy."""
    n, d, _ = digits.shape
    t = x.shape[1]
    if n == 0:
        return np.zeros((0, t, size, size), np.uint8)
    col = np.floor(np.asarray(x) + 0.5).astype(np.int64)
    row = np.floor(np.asarray(y) + 0.5).astype(np.int64)
    if col.min() < 0 or row.min() < 0 or max(col.max(), row.max()) + d > size:
        raise ValueError(f"a digit of {d} px placed outside the {size} px frame")
    offset = np.arange(d)
    rows = row[:, :, None, None] + offset[None, None, :, None]  # [N, T, d, 1]
    cols = col[:, :, None, None] + offset[None, None, None, :]  # [N, T, 1, d]
    vid = np.arange(n)[:, None, None, None]
    frame = np.arange(t)[None, :, None, None]
    canvas = np.zeros((n, t, size, size), np.uint8)
    canvas[vid, frame, rows, cols] = np.maximum(canvas[vid, frame, rows, cols], digits[:, None])
    return canvas


def load_moving_mnist(split: str = "train", frames: int = DEFAULT_FRAMES, size: int = DEFAULT_SIZE,
                      digit_size: int = DEFAULT_DIGIT_SIZE, seed: int = MOVING_MNIST_SEED,
                      labels: str = "digit", speeds=SPEEDS) -> VideoArray:
    """Moving-MNIST from the MNIST-5k `train` (4000 videos) or `reference` (1000 videos) digits.

    Video i shows digit i of the split, resized from 28 px to `digit_size` (`resize_digits`),
    moving as drawn by `moving_mnist_parameters` from a generator seeded with (seed, split), so
    the two splits move differently and every call returns the same bytes. RGB is replicated from
    gray like load_mnist. Labels are the digits, or with labels="motion" the motion class of
    (digit, direction, speed) (grn/video_captions.py `motion_classes`: what the class-conditional video
    baselines are trained on); `meta` holds every generating parameter. `speeds` (slow, quick) in px/frame
    replaces grn/motion.py's SPEEDS, for data made at other speeds (the video tokenizer's config).
    """
    if labels not in MOVING_MNIST_LABELS:
        raise DatasetError(f"moving_mnist: unknown labels '{labels}'; allowed: {list(MOVING_MNIST_LABELS)}")
    if split not in MOVING_MNIST_SPLITS:
        raise DatasetError(f"moving_mnist: unknown split '{split}'; allowed: {list(MOVING_MNIST_SPLITS)}")
    if frames < 1 or digit_size < 1 or size < digit_size:
        raise DatasetError(f"moving_mnist: need frames >= 1 and 1 <= digit_size <= size, got frames={frames} "
                           f"size={size} digit_size={digit_size}")
    speeds = tuple(speeds) if isinstance(speeds, (list, tuple)) else (speeds,)  # a bare number: one message below
    if len(speeds) != len(SPEEDS) or not all(isinstance(v, (int, float)) and 0 < v for v in speeds) or \
            list(speeds) != sorted(speeds):
        raise DatasetError(f"moving_mnist: speeds must be {len(SPEEDS)} positive px/frame values, slow first "
                           f"(one per speed word), got {list(speeds)}")
    mnist = load_mnist(split)
    pad = (mnist.images.shape[1] - MNIST_DIGIT_SIZE) // 2
    digits = resize_digits(np.ascontiguousarray(mnist.images[:, pad:-pad, pad:-pad, 0]), digit_size)
    rng = np.random.default_rng((seed, MOVING_MNIST_SPLITS.index(split)))
    meta = moving_mnist_parameters(len(digits), frames, size, digit_size, rng, speeds)
    meta["digit"] = mnist.labels.copy()
    gray = render_moving_digits(digits, meta["x"], meta["y"], size)
    videos = np.repeat(gray[..., None], 3, axis=-1)
    y = mnist.labels.copy() if labels == "digit" else motion_class(meta["digit"], meta["direction"], meta["speed"])
    return VideoArray(videos, y, f"moving_mnist/{split}", moving_mnist_captions(meta), meta)


# ---------------------------------------------------------------------------------------
# User videos: .npz files and frame folders
# ---------------------------------------------------------------------------------------

NPZ_LAYOUT = f"an .npz with key 'videos' (or one array only): {VIDEO_LAYOUT}, optional 'labels' (integers)"
FOLDER_LAYOUT = "root/<video>/<frame>.png, one sub-folder per video, frames sorted by file name, same size and count"


def _check_videos(videos: np.ndarray, where: str) -> None:
    """One message per problem of a user's video array, naming where it came from."""
    if videos.dtype != np.uint8:
        raise DatasetError(f"{where}: videos have dtype {videos.dtype}, expected uint8 (0..255); fix: convert "
                           f"with np.clip(x, 0, 255).astype(np.uint8); expected {NPZ_LAYOUT}")
    if videos.ndim != 5 or videos.shape[-1] not in (1, 3):
        raise DatasetError(f"{where}: videos have shape {videos.shape} ({videos.ndim} dims), expected "
                           f"{VIDEO_LAYOUT}; fix: a single video needs a leading axis (x[None]), gray frames a "
                           f"trailing one (x[..., None])")
    if videos.size == 0:
        raise DatasetError(f"{where}: videos are empty (shape {videos.shape}); expected at least one frame of "
                           f"one video")


def load_video_npz(path: str | Path) -> VideoArray:
    """Videos from an .npz: key `videos` (or the archive's only array), optional integer `labels`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"video_npz: '{path}' does not exist; expected {NPZ_LAYOUT}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except Exception as e:  # zipfile, pickle and format errors all mean: not a readable .npz
        raise DatasetError(f"video_npz: '{path}' is not a readable .npz ({type(e).__name__}: {e}); "
                           f"expected {NPZ_LAYOUT}") from e
    if "videos" in arrays:
        key = "videos"
    elif len(arrays) == 1:
        key = next(iter(arrays))
    else:
        raise DatasetError(f"video_npz: '{path}' has no key 'videos' and {len(arrays)} arrays {sorted(arrays)}; "
                           f"expected {NPZ_LAYOUT}")
    videos = arrays[key]
    _check_videos(videos, f"video_npz: '{path}' key '{key}'")
    labels = arrays.get("labels") if key != "labels" else None
    if labels is not None:
        if labels.ndim != 1 or len(labels) != len(videos) or not np.issubdtype(labels.dtype, np.integer):
            raise DatasetError(f"video_npz: '{path}' key 'labels' has dtype {labels.dtype} shape {labels.shape}; "
                               f"expected one integer per video ({len(videos)})")
        labels = labels.astype(np.int64)
    return VideoArray(videos, labels, f"video_npz:{path.name}")


def _read_frame(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except OSError as e:
        raise DatasetError(f"video_folder: cannot read frame '{path}': {e}") from e


def _read_video_dir(folder: Path) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"video_folder: '{folder}' holds no frame images ({sorted(IMAGE_SUFFIXES)}); "
                           f"expected layout: {FOLDER_LAYOUT}")
    frames = [_read_frame(p) for p in files]
    for p, f in zip(files, frames):
        if f.shape != frames[0].shape:
            raise DatasetError(f"video_folder: '{folder}': frame '{p.name}' is {f.shape[1]}x{f.shape[0]}, "
                               f"'{files[0].name}' is {frames[0].shape[1]}x{frames[0].shape[0]}; "
                               f"every frame must have the same size")
    return np.stack(frames)


def load_video_folder(path: str | Path) -> VideoArray:
    """Videos from `root/<video>/<frame>` folders (sorted by name), or from an .npz file (`load_video_npz`)."""
    root = Path(path).expanduser()
    if root.is_file() and root.suffix.lower() == ".npz":
        return load_video_npz(root)
    if not root.is_dir():
        raise DatasetError(f"video_folder: '{root}' is not a directory; expected layout: {FOLDER_LAYOUT}")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DatasetError(f"video_folder: no video sub-folders under '{root}'; expected layout: {FOLDER_LAYOUT}")
    videos = [_read_video_dir(f) for f in folders]
    for f, v in zip(folders, videos):
        if v.shape != videos[0].shape:
            raise DatasetError(f"video_folder: '{f}' holds {len(v)} frames of {v.shape[2]}x{v.shape[1]}, "
                               f"'{folders[0]}' holds {len(videos[0])} of {videos[0].shape[2]}x{videos[0].shape[1]}; "
                               f"every video must have the same frame count and size")
    return VideoArray(np.stack(videos), None, f"video_folder:{root.name}")


def save_video_npz(path: str | Path, videos: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Write videos (uint8 NTHWC) and optional labels to an .npz atomically (`load_video_npz` reads it)."""
    videos = np.asarray(videos)
    _check_videos(videos, f"save_video_npz: '{path}'")
    arrays = {"videos": videos}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, np.int64)
        if arrays["labels"].shape != (len(videos),):
            raise DatasetError(f"save_video_npz: '{path}': labels have shape {arrays['labels'].shape}, "
                               f"expected one per video ({len(videos)})")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------

# served by grn.datasets.load_dataset with the image datasets (one registry of names)
VIDEO_DATASETS = {
    "moving_mnist": load_moving_mnist,
    "video_npz": load_video_npz,
    "video_folder": load_video_folder,
}

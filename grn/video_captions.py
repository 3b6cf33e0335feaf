"""Captions for Moving-MNIST videos, their vocabulary, and reading digit and motion back from a prompt.

A caption is written from the parameters that generated the video (grn/video_data.py's `meta`),
not measured from its pixels, so it is true by construction: "the digit 3 moves quickly up and
to the left", "a handwritten seven moving slowly to the right". Every template names the digit,
the direction and the speed, so a text-to-video model is told all three in every caption, and a
prompt read back with `asked_digit` / `asked_motion` gives the parameters it was written from.

The direction phrase is built from the direction's step (a vertical word "up" / "down" and a
horizontal "to the left" / "to the right", joined by "and"), so the eight phrases and their
parsing both follow grn/motion.py's DIRECTION_STEPS, the one table of directions. The digit
words and the tokenizer are grn/captions.py's.
"""

from __future__ import annotations

import numpy as np

from grn.captions import DIGIT_WORDS, asked_digit, words
from grn.motion import DIRECTION_STEPS

__all__ = ["asked_digit", "asked_motion", "direction_phrase", "moving_mnist_captions", "video_prompts",
           "video_vocabulary"]

SPEED_WORDS = ("slowly", "quickly")  # one per speed of grn/video_data.py's SPEEDS, in its order

# (word, column step) and (word, row step): rows grow downward, so "up" is a negative row step
HORIZONTAL_WORDS = {"right": 1, "left": -1}
VERTICAL_WORDS = {"up": -1, "down": 1}

# {word}: "seven"; {d}: "7"; {speed}: slowly | quickly; {direction}: e.g. "up and to the left"
TEMPLATES = (
    "the digit {d} moves {speed} {direction}",
    "a handwritten {word} moving {speed} {direction}",
    "{word} drifting {speed} {direction}",
    "the number {d} travels {direction}, {speed}",
)
PROMPT_TEMPLATE = TEMPLATES[1]
VIDEO_CAPTION_SEED = 20260721


def direction_phrase(direction: int) -> str:
    """"to the right", "up and to the right", "up", ... for direction index 0..7."""
    dx, dy = (int(s) for s in DIRECTION_STEPS[direction])
    vertical = next((w for w, s in VERTICAL_WORDS.items() if s == dy), None) if dy else None
    horizontal = next((f"to the {w}" for w, s in HORIZONTAL_WORDS.items() if s == dx), None) if dx else None
    return " and ".join(p for p in (vertical, horizontal) if p)


def render(template: str, digit: int, direction: int, speed: int) -> str:
    return template.format(word=DIGIT_WORDS[digit], d=digit, speed=SPEED_WORDS[speed],
                           direction=direction_phrase(direction))


def moving_mnist_captions(meta: dict, seed: int = VIDEO_CAPTION_SEED) -> list[str]:
    """One caption per video from its generating parameters (`digit`, `direction`, `speed`); the template
    of each video is drawn from a fixed seed, independent of the digits and motions."""
    digit, direction, speed = (np.asarray(meta[k]) for k in ("digit", "direction", "speed"))
    choice = np.random.default_rng(seed).integers(len(TEMPLATES), size=len(digit))
    return [render(TEMPLATES[j], int(d), int(r), int(s)) for d, r, s, j in zip(digit, direction, speed, choice)]


def asked_motion(prompt: str) -> tuple[int | None, int | None]:
    """(direction index, speed index) a prompt asks for; each is None when the prompt names none or
    contradicts itself ("up ... down", "slowly ... quickly"). Only the caption words count."""
    toks = set(words(prompt))
    dxs = {s for w, s in HORIZONTAL_WORDS.items() if w in toks}
    dys = {s for w, s in VERTICAL_WORDS.items() if w in toks}
    direction = None
    if len(dxs) <= 1 and len(dys) <= 1 and (dxs or dys):
        step = (dxs.pop() if dxs else 0, dys.pop() if dys else 0)
        direction = int(np.flatnonzero((DIRECTION_STEPS == step).all(1))[0])
    speeds = {SPEED_WORDS.index(w) for w in toks if w in SPEED_WORDS}
    return direction, (speeds.pop() if len(speeds) == 1 else None)


def motion_classes() -> list[tuple[int, int, int]]:
    """Every (digit, direction, speed) once: 10 x 8 x 2 = 160, the classes of the class-conditional video
    baselines. The first 80 are the default prompts' (direction-major, digit-minor, the speed alternating as
    (digit + direction) % 2), the last 80 the same with the other speed, so that any multiple of 80 samples of
    a class-conditional model asks what the first prompts of `video_prompts` ask."""
    first = [(digit, direction, (digit + direction) % len(SPEED_WORDS))
             for direction in range(len(DIRECTION_STEPS)) for digit in range(len(DIGIT_WORDS))]
    return first + [(d, r, len(SPEED_WORDS) - 1 - s) for d, r, s in first]


def motion_class(digit, direction, speed) -> np.ndarray:
    """The class index (into `motion_classes`) of each (digit, direction, speed)."""
    index = {c: i for i, c in enumerate(motion_classes())}
    return np.array([index[(int(d), int(r), int(s))] for d, r, s in zip(np.atleast_1d(digit),
                                                                          np.atleast_1d(direction),
                                                                          np.atleast_1d(speed))], np.int64)


def class_prompts() -> list[str]:
    """The prompt of each motion class, in class order (what a class-conditional video model is asked)."""
    return [render(PROMPT_TEMPLATE, d, r, s) for d, r, s in motion_classes()]


def class_model_prompts(num_classes: int) -> list[str] | None:
    """What the labels of a class-conditional video model ask for: the motion classes' prompts when it has
    exactly that many classes (grn/configs/{ar,flow}_mmnist_video.yaml), else None (its classes are not
    Moving-MNIST motions, and no prompt may be read into them)."""
    prompts = class_prompts()
    return prompts if num_classes == len(prompts) else None


def video_prompts() -> list[str]:
    """The default evaluation prompts: 10 digits x 8 directions = 80, digit-minor (every 10 consecutive
    prompts hold each digit once; any multiple of 80 samples is balanced over digits x directions).
    The speed alternates as (digit + direction) % 2, so each digit gets each speed in 4 directions and
    each direction gets each speed for 5 digits. They are the first 80 motion classes' prompts."""
    return class_prompts()[: len(DIRECTION_STEPS) * len(DIGIT_WORDS)]


def video_vocabulary() -> tuple[str, ...]:
    """Every word a video caption can contain (sorted): the word-level text encoder's vocabulary."""
    out = set()
    for t in TEMPLATES:
        for slot in ("{word}", "{d}", "{speed}", "{direction}"):
            t = t.replace(slot, "")
        out.update(words(t))
    out.update(DIGIT_WORDS)
    out.update(str(d) for d in range(len(DIGIT_WORDS)))
    out.update(SPEED_WORDS)
    for k in range(len(DIRECTION_STEPS)):
        out.update(words(direction_phrase(k)))
    return tuple(sorted(out))

"""What a Moving-MNIST video shows, read from its pixels only: which digit, which way, how fast.

This is the judge of a text-to-video model's prompt accuracy ("a handwritten seven moving quickly
to the left": is it a seven, does it go left, is it quick?), so it must not look at anything but
the frames. It has three parts:

  * `track_centroids`: the intensity-weighted centre of the ink in every frame;
  * `recover_motion`: a least-squares straight line through that track; its slope is the velocity,
    mapped to the nearest of the 8 compass directions and to the nearer of the 2 speeds of
    grn/video_data.py;
  * `recover_digit`: the project's digit classifier (grn_eval/digit_classifier.py) on every frame,
    re-centred on the centroid and scaled back to MNIST size, then a vote over the frames.

A judge is only as good as its accuracy on videos whose answer is known, so
`recovery_accuracy_on_real` runs the same recovery on real Moving-MNIST videos of the reference
split against their generating parameters; that number belongs next to every prompt-accuracy
number (`python -m grn_eval.video_recovery` prints it).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from grn.errors import UserError
from grn.motion import DIRECTION_STEPS, SPEEDS
from grn.video_captions import asked_digit, asked_motion
from grn.video_data import DEFAULT_DIGIT_SIZE, MNIST_DIGIT_SIZE, load_moving_mnist
from grn_eval import digit_classifier

# Gray levels at or below this count as background (weight 0): a generator's faint haze would
# otherwise pull every centroid towards the frame centre and shrink the measured motion.
INK_FLOOR = 32
# A video moves if its fitted displacement over the clip is at least this fraction of what the
# slower speed covers (0.5 * 0.25 px/frame * 16 frames = 2 px at the defaults); below it the
# direction and speed are -1 ("not moving"), which never matches a prompt.
MIN_TRAVEL_FRACTION = 0.5
# Midway between the two speeds, in px/frame along each moving axis (grn/video_data.py's unit).
SPEED_THRESHOLD = (SPEEDS[0] + SPEEDS[1]) / 2
CLASSIFIER_SIZE = 32  # DigitCNN's input: a 28x28 MNIST digit padded to 32x32
NOT_MOVING = -1


def _gray(videos: np.ndarray) -> np.ndarray:
    """uint8 NTHWC -> float32 NTHW (channel mean, 0..255)."""
    return np.asarray(videos).mean(-1, dtype=np.float32)


def track_centroids(videos: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Intensity-weighted centroid (row, col) of the ink in every frame: float64 [N, T, 2]; NaN where a
    frame has no ink (no pixel above INK_FLOOR). Computed `chunk` videos at a time to bound memory."""
    videos = np.asarray(videos)
    if videos.ndim != 5:
        raise UserError(f"videos must be uint8 [N, T, H, W, C], got shape {videos.shape}")
    out = np.full((*videos.shape[:2], 2), np.nan)
    rows = np.arange(videos.shape[2], dtype=np.float64)
    cols = np.arange(videos.shape[3], dtype=np.float64)
    for s in range(0, len(videos), chunk):
        g = _gray(videos[s : s + chunk])
        w = np.where(g > INK_FLOOR, g, 0.0).astype(np.float64)
        total = w.sum((2, 3))
        ink = total > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.einsum("nthw,h->nt", w, rows) / total
            c = np.einsum("nthw,w->nt", w, cols) / total
        out[s : s + chunk] = np.where(ink[..., None], np.stack([r, c], -1), np.nan)
    return out


def fit_velocity(track: np.ndarray) -> np.ndarray:
    """Least-squares slope of row and column against the frame index over the frames with ink:
    [N, T, 2] -> [N, 2] (drow, dcol) px/frame; NaN where fewer than 2 frames have ink. A frame
    without ink (NaN) is left out of the fit rather than spoiling it."""
    t = np.arange(track.shape[1], dtype=np.float64)[None, :]
    ok = np.isfinite(track).all(-1)
    n = ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = np.where(ok, t, 0).sum(1) / n
        dt = np.where(ok, t - t_mean[:, None], 0.0)
        y = np.where(ok[..., None], track, 0.0)
        y_mean = y.sum(1) / n[:, None]
        dy = np.where(ok[..., None], y - y_mean[:, None], 0.0)
        slope = (dt[..., None] * dy).sum(1) / (dt**2).sum(1)[:, None]
    slope[n < 2] = np.nan
    return slope


def recover_motion(videos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(direction index [N], speed index [N]) of the motion seen in the pixels; -1 for a video that does not
    move (fitted travel below MIN_TRAVEL_FRACTION of the slow speed's) or has fewer than 2 frames with ink.

    Direction: the nearest of the 8 compass angles (k * 45 degrees) to atan2(-drow, dcol) ("up" is
    towards row 0). Speed: the velocity's component along the recovered direction's step, i.e. px/frame
    along each moving axis as the speeds are defined, thresholded midway between the two speeds."""
    videos = np.asarray(videos)
    frames = videos.shape[1]
    v = fit_velocity(track_centroids(videos))  # (drow, dcol)
    drow, dcol = v[:, 0], v[:, 1]
    n_dir = len(DIRECTION_STEPS)
    angle = np.arctan2(-drow, dcol)
    direction = np.mod(np.round(np.nan_to_num(angle) / (2 * np.pi / n_dir)), n_dir).astype(np.int64)
    step = DIRECTION_STEPS[direction]  # (dx, dy) = (col step, row step)
    along = (dcol * step[:, 0] + drow * step[:, 1]) / (step**2).sum(1)
    speed = (along > SPEED_THRESHOLD).astype(np.int64)
    travel = np.hypot(drow, dcol) * max(frames - 1, 0)
    min_travel = MIN_TRAVEL_FRACTION * SPEEDS[0] * max(frames - 1, 1)
    still = ~np.isfinite(travel) | (travel < min_travel)
    direction[still] = NOT_MOVING
    speed[still] = NOT_MOVING
    return direction, speed


def recentre(videos: np.ndarray, centroids: np.ndarray, digit_size: int = DEFAULT_DIGIT_SIZE) -> np.ndarray:
    """Every frame as the classifier saw MNIST: uint8 [N*T, 32, 32, 1], centred on its ink centroid and
    scaled by 28 / digit_size (bilinear), so a digit_size digit fills the 28x28 MNIST field of the 32x32
    canvas as a padded MNIST digit does. MNIST digits are centred by their centre of mass, so centring
    on the centroid is the same rule. Each crop is then stretched so its brightest pixel is 255, as
    MNIST strokes are. Frames without ink stay black."""
    g = torch.from_numpy(_gray(videos))
    n, t, h, w = g.shape
    x = g.reshape(n * t, 1, h, w)
    c = torch.from_numpy(np.nan_to_num(centroids.reshape(n * t, 2), nan=-1e4))
    scale = digit_size / MNIST_DIGIT_SIZE  # source px per classifier px
    k = torch.arange(CLASSIFIER_SIZE, dtype=torch.float64) - (CLASSIFIER_SIZE - 1) / 2
    src_r = c[:, 0, None] + k[None] * scale  # [N*T, 32] source row of each output row
    src_c = c[:, 1, None] + k[None] * scale
    # grid_sample's normalised coordinates (align_corners=False): pixel i spans (2i + 1) / size - 1
    gy = ((2 * src_r + 1) / h - 1)[:, :, None].expand(-1, -1, CLASSIFIER_SIZE)
    gx = ((2 * src_c + 1) / w - 1)[:, None, :].expand(-1, CLASSIFIER_SIZE, -1)
    grid = torch.stack([gx, gy], -1).float()
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # MNIST strokes saturate at 255; shrunk to digit_size they come out dimmer, which costs the
    # classifier about 2 points (digit recovery 0.957 -> 0.976 on the 1000 reference videos of 16 px digits)
    peak = out.amax((1, 2, 3), keepdim=True).clamp(min=1.0)
    out = out * (255.0 / peak)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def recover_digit(videos: np.ndarray, classifier, digit_size: int = DEFAULT_DIGIT_SIZE,
                  batch_size: int = 128) -> np.ndarray:
    """The digit of each video [N]: the classifier on every re-centred frame (`recentre`), then a majority
    vote over the frames with ink; a tie goes to the class with the highest summed softmax. -1 for a video
    with no ink in any frame."""
    videos = np.asarray(videos)
    n, t = videos.shape[:2]
    classifier = classifier.eval()
    device = next(classifier.parameters()).device
    per_chunk = max(1, batch_size // max(t, 1))  # videos per classifier batch
    probs = np.zeros((n, t, 10))
    ink = np.zeros((n, t), bool)
    for s in range(0, n, per_chunk):
        chunk = videos[s : s + per_chunk]
        centroids = track_centroids(chunk)
        logits = classifier(digit_classifier.to_input(recentre(chunk, centroids, digit_size), device))
        probs[s : s + len(chunk)] = logits.softmax(1).double().cpu().numpy().reshape(len(chunk), t, -1)
        ink[s : s + len(chunk)] = np.isfinite(centroids).all(-1)
    probs[~ink] = 0.0
    votes = np.zeros((n, 10))
    np.add.at(votes, (np.repeat(np.arange(n), t), probs.argmax(-1).reshape(-1)), ink.reshape(-1))
    # summed softmax is below t + 1, so it only ever decides between equal vote counts
    digit = np.argmax(votes * (t + 1) + probs.sum(1), 1).astype(np.int64)
    digit[~ink.any(1)] = -1
    return digit


def _load_classifier(classifier):
    return digit_classifier.load(digit_classifier.DEFAULT_PATH)[0] if classifier is None else classifier


def video_prompt_accuracy(videos: np.ndarray, prompts: list[str], classifier=None,
                          digit_size: int = DEFAULT_DIGIT_SIZE) -> dict:
    """Does video i show what prompts[i] asks for? Per-video correctness of digit, direction, speed and
    "all" (every aspect the prompt names), with their means.

    An aspect a prompt does not name counts as correct for that video and is left out of that aspect's
    mean (`asked` says over how many videos each mean is); a prompt naming none of the three is an error."""
    videos = np.asarray(videos)
    if len(prompts) != len(videos):
        raise UserError(f"video_prompt_accuracy: {len(prompts)} prompts for {len(videos)} videos; "
                        f"give the prompt of every video")
    asked = {"digit": [], "direction": [], "speed": []}
    for i, p in enumerate(prompts):
        direction, speed = asked_motion(p)
        digit = asked_digit(p)
        if digit is None and direction is None and speed is None:
            raise UserError(f"video_prompt_accuracy: prompt {i} '{p}' names no digit, direction or speed")
        for key, value in (("digit", digit), ("direction", direction), ("speed", speed)):
            asked[key].append(-2 if value is None else value)  # -2: not asked (-1 is "not seen")
    direction, speed = recover_motion(videos)
    seen = {"digit": recover_digit(videos, _load_classifier(classifier), digit_size),
            "direction": direction, "speed": speed}
    correct, accuracy, n_asked = {}, {}, {}
    for key in asked:
        want = np.asarray(asked[key], np.int64)
        ask = want != -2
        correct[key] = ~ask | (seen[key] == want)
        n_asked[key] = int(ask.sum())
        accuracy[key] = float(correct[key][ask].mean()) if ask.any() else float("nan")
    correct["all"] = correct["digit"] & correct["direction"] & correct["speed"]
    accuracy["all"] = float(correct["all"].mean()) if len(videos) else float("nan")
    return {"n": len(videos), "correct": correct, "accuracy": accuracy, "asked": n_asked, "recovered": seen}


def recovery_accuracy_on_real(split: str = "reference", n: int | None = None, classifier=None) -> dict:
    """The recovery's accuracy on real Moving-MNIST videos (the first n of `split`, all by default)
    against their generating digit, direction and speed: how far the judge itself can be trusted."""
    data = load_moving_mnist(split)
    n = len(data) if n is None else min(n, len(data))
    videos, meta = data.videos[:n], {k: v[:n] for k, v in data.meta.items()}
    direction, speed = recover_motion(videos)
    digit = recover_digit(videos, _load_classifier(classifier))
    correct = {"digit": digit == meta["digit"], "direction": direction == meta["direction"],
               "speed": speed == meta["speed"]}
    correct["all"] = correct["digit"] & correct["direction"] & correct["speed"]
    return {"split": data.name, "n": n, "accuracy": {k: float(v.mean()) for k, v in correct.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grn_eval.video_recovery", description=__doc__.split("\n")[0])
    p.add_argument("--split", default="reference")
    p.add_argument("--n", type=int, default=None, help="first N videos (default: the whole split)")
    a = p.parse_args(argv)
    r = recovery_accuracy_on_real(a.split, a.n)
    acc = r["accuracy"]
    print(f"recovery on {r['n']} real {r['split']} videos: digit {acc['digit']:.4f}, direction "
          f"{acc['direction']:.4f}, speed {acc['speed']:.4f}, all {acc['all']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

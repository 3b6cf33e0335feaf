import hashlib

import numpy as np
import pytest
from PIL import Image

from grn.captions import DIGIT_WORDS, asked_digit, words
from grn.data import DatasetError, load_mnist
from grn.datasets import load_dataset
from grn.motion import DIRECTION_NAMES, DIRECTION_STEPS, SPEEDS
from grn.video_captions import (
    SPEED_WORDS,
    asked_motion,
    direction_phrase,
    moving_mnist_captions,
    video_prompts,
    video_vocabulary,
)
from grn.video_data import (
    DEFAULT_DIGIT_SIZE,
    VideoArray,
    load_moving_mnist,
    load_video_folder,
    load_video_npz,
    moving_mnist_parameters,
    reflect,
    render_moving_digits,
    resize_digits,
    save_video_npz,
)
from grn_eval import digit_classifier
from grn_eval.video_recovery import (
    fit_velocity,
    recover_digit,
    recover_motion,
    recovery_accuracy_on_real,
    track_centroids,
    video_prompt_accuracy,
)

# sha256 of the bytes of the first 8 reference videos at the default settings (17 x 32 x 32 x 3 each)
REFERENCE_8_SHA256 = "c2c01bdef37631318480ba8c6fd49519c0188d4b5d399900af23cb67c146df2c"


@pytest.fixture(scope="module")
def reference():
    return load_moving_mnist("reference")


@pytest.fixture(scope="module")
def train():
    return load_moving_mnist("train")


@pytest.fixture(scope="module")
def classifier():
    return digit_classifier.load(digit_classifier.DEFAULT_PATH)[0]


def _square_video(path_rc, size=32, side=4, frames=17):
    """A white side x side square whose top-left corner is at path_rc[t] (row, col) in frame t."""
    v = np.zeros((1, frames, size, size, 3), np.uint8)
    for t, (r, c) in enumerate(path_rc):
        v[0, t, r : r + side, c : c + side] = 255
    return v


# ---------------------------------------------------------------------------------------
# Moving-MNIST
# ---------------------------------------------------------------------------------------


def test_shapes_dtype_labels_and_balanced_prefix(train, reference):
    assert train.videos.shape == (4000, 17, 32, 32, 3) and reference.videos.shape == (1000, 17, 32, 32, 3)
    assert train.videos.dtype == np.uint8 and train.labels.dtype == np.int64
    assert np.bincount(train.labels).tolist() == [400] * 10 and np.bincount(reference.labels).tolist() == [100] * 10
    assert reference.labels[:10].tolist() == list(range(10))  # one video per digit, in the split's order
    assert np.array_equal(reference.labels, load_mnist("reference").labels)
    assert (reference.videos[..., 0] == reference.videos[..., 2]).all()  # RGB replicated from gray
    assert len(reference.captions) == 1000 and reference.name == "moving_mnist/reference"
    frames = reference.frames()
    assert frames.shape == (17000, 32, 32, 3) and np.array_equal(frames[17], reference.videos[1, 0])
    videos, labels = reference.batch(3, 5)
    assert videos.shape == (2, 17, 32, 32, 3) and labels.tolist() == [3, 4]


def test_deterministic_bytes_and_splits_move_differently(reference):
    again = load_moving_mnist("reference")
    assert np.array_equal(again.videos, reference.videos) and again.captions == reference.captions
    assert hashlib.sha256(reference.videos[:8].tobytes()).hexdigest() == REFERENCE_8_SHA256
    other = load_moving_mnist("reference", seed=1)
    assert not np.array_equal(other.meta["direction"], reference.meta["direction"])
    train = load_moving_mnist("train")
    assert not np.array_equal(train.meta["direction"][:1000], reference.meta["direction"])


def test_the_earlier_design_is_reproduced_by_its_settings():
    # the 16 px digits at 0.5 / 1 px per frame that the video tokenizer was trained on
    # (grn/configs/tokenizer_mmnist_video.yaml): the same bytes as when they were the defaults
    old = load_moving_mnist("reference", digit_size=16, speeds=[0.5, 1.0])
    assert hashlib.sha256(old.videos[:8].tobytes()).hexdigest() == \
        "8dda7e0e422444474f29b45f12a391a0cae8324fd4135a0956f3474fd10bb84a"
    assert not old.meta["bounces"].any() and np.abs(old.meta["dx"]).max() == 1.0
    for bad in ([0.5], [1.0, 0.5], [0.0, 1.0], ["slow", 1.0], 0.5):
        with pytest.raises(DatasetError, match="speeds must be 2 positive"):
            load_moving_mnist("reference", speeds=bad)


def test_every_direction_and_speed_is_drawn(train):
    assert np.bincount(train.meta["direction"], minlength=8).min() > 400  # 500 expected each
    assert np.bincount(train.meta["speed"], minlength=2).min() > 1900


def test_digit_is_the_resized_mnist_digit(reference):
    mnist = load_mnist("reference").images[:5, 2:-2, 2:-2, 0]
    d = DEFAULT_DIGIT_SIZE
    digits = resize_digits(mnist, d)
    m = reference.meta
    for i in range(5):
        r, c = int(round(m["y"][i, 0])), int(round(m["x"][i, 0]))
        frame = reference.videos[i, 0, :, :, 0]
        assert np.array_equal(frame[r : r + d, c : c + d], digits[i])
        assert frame.sum() == digits[i].astype(np.int64).sum()  # nothing else in the frame


def test_default_path_stays_inside_and_never_bounces(train):
    m = train.meta
    free = 32 - DEFAULT_DIGIT_SIZE
    assert free == 8 and not m["bounces"].any()
    for key in ("x", "y"):
        assert m[key].min() >= 0 and m[key].max() <= free
    t = np.arange(17)
    # no reflection: the path is exactly the straight line from the start
    assert np.allclose(m["x"], m["x0"][:, None] + m["dx"][:, None] * t)
    assert np.allclose(m["y"], m["y0"][:, None] + m["dy"][:, None] * t)
    # the velocity is the direction's step times the speed, in px/frame along each moving axis
    want = DIRECTION_STEPS[m["direction"]] * np.asarray(SPEEDS)[m["speed"], None]
    assert np.array_equal(np.stack([m["dx"], m["dy"]], 1), want)


def test_reflection_for_longer_clips():
    assert reflect(np.array([0.0, 5.0, 16.0, 17.0, 20.0, 32.0, 35.0, -3.0]), 16.0).tolist() == \
        [0.0, 5.0, 16.0, 15.0, 12.0, 0.0, 3.0, 3.0]
    rng = np.random.default_rng(0)
    m = moving_mnist_parameters(500, 65, 32, 16, rng)
    assert m["bounces"][m["speed"] == 1].all()  # 32 px of travel (0.5 px/frame x 64) in a 16 px range
    assert m["x"].min() >= 0 and m["x"].max() <= 16 and m["y"].min() >= 0 and m["y"].max() <= 16
    # the speed is kept through every bounce: each step is the speed, shorter only across a wall
    steps, speed = np.abs(np.diff(m["x"], axis=1)), np.abs(m["dx"])[:, None]
    assert (steps <= speed + 1e-9).all() and np.isclose(steps, speed).mean() > 0.9
    # ... and the direction flips at a wall: a digit moving right at 1 px/frame from 3 is back at 3 after 32 frames
    x = reflect(3.0 + np.arange(65.0), 16.0)
    assert x[13] == 16.0 and x[14] == 15.0 and x[29] == 0.0 and x[32] == 3.0
    long = load_moving_mnist("reference", frames=65)
    assert long.videos.shape == (1000, 65, 32, 32, 3) and long.meta["bounces"].any()


def test_other_sizes_and_bad_settings():
    small = load_moving_mnist("reference", frames=5, size=24, digit_size=12)
    assert small.videos.shape == (1000, 5, 24, 24, 3)
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        load_moving_mnist("val")
    with pytest.raises(DatasetError, match="digit_size"):
        load_moving_mnist("reference", size=16, digit_size=20)


def test_measured_centroid_displacement_matches_velocity_on_a_hand_made_video():
    digit = resize_digits(load_mnist("reference").images[7:8, 2:-2, 2:-2, 0], 16)  # a seven
    t = np.arange(17, dtype=np.float64)
    x, y = (2.0 + 0.5 * t)[None], (14.0 - 0.75 * t)[None]  # right at 0.5 px/frame, up at 0.75
    gray = render_moving_digits(digit, x, y, 32)
    video = np.repeat(gray[..., None], 3, -1)
    track = track_centroids(video)[0]
    # the centroid moves with the paste (pixel-rounded positions), and the fit recovers the velocity
    assert np.allclose(track - track[0], np.stack([np.floor(y[0] + 0.5) - 14, np.floor(x[0] + 0.5) - 2], 1))
    assert np.allclose(fit_velocity(track[None])[0], [-0.75, 0.5], atol=0.02)


def test_generating_velocity_matches_measured_on_real_videos(reference):
    v = fit_velocity(track_centroids(reference.videos[:200]))
    m = reference.meta
    # pasting at whole pixels turns a 0.25 or 0.5 px/frame path into a staircase, whose least-squares
    # slope is off by at most 1/204 px/frame (measured on these 200), far inside the 0.125 px/frame
    # between either speed and the recovery's threshold; over half of the components fit exactly
    err = np.abs(v - np.stack([m["dy"][:200], m["dx"][:200]], 1))
    assert err.max() <= 1 / 204 + 1e-9 and np.median(err) < 1e-9


# ---------------------------------------------------------------------------------------
# Captions and prompts
# ---------------------------------------------------------------------------------------


def test_direction_phrases_and_vocabulary(train):
    assert [direction_phrase(k) for k in range(8)] == [
        "to the right", "up and to the right", "up", "up and to the left",
        "to the left", "down and to the left", "down", "down and to the right"]
    assert len(DIRECTION_NAMES) == len(DIRECTION_STEPS) and len(SPEED_WORDS) == len(SPEEDS)
    vocab = set(video_vocabulary())
    assert {"slowly", "quickly", "up", "down", "left", "right", "seven", "7"} <= vocab
    assert all(set(words(c)) <= vocab for c in train.captions)


@pytest.mark.parametrize("split", ["train", "reference"])
def test_captions_parse_back_to_the_generating_parameters(split, train, reference):
    data = {"train": train, "reference": reference}[split]
    m = data.meta
    parsed = [(asked_digit(c), *asked_motion(c)) for c in data.captions]
    assert parsed == list(zip(m["digit"].tolist(), m["direction"].tolist(), m["speed"].tolist()))
    assert moving_mnist_captions(m) == data.captions  # from the parameters alone


def test_asked_motion_known_answers():
    assert asked_motion("the digit 3 moves quickly up and to the left") == (3, 1)
    assert asked_motion("a handwritten seven moving slowly to the right") == (0, 0)
    assert asked_motion("nine drifting slowly down") == (6, 0)
    assert asked_motion("a handwritten seven") == (None, None)
    assert asked_motion("up and down, slowly and quickly") == (None, None)


def test_video_prompts_are_balanced():
    prompts = video_prompts()
    parsed = [(asked_digit(p), *asked_motion(p)) for p in prompts]
    assert len(prompts) == 80 and len(set(prompts)) == 80
    assert sorted((d, r) for d, r, _ in parsed) == [(d, r) for d in range(10) for r in range(8)]
    assert [d for d, _, _ in parsed[:10]] == list(range(10))  # every 10 consecutive prompts: each digit once
    speed = np.array([s for _, _, s in parsed])
    digit, direction = np.array([d for d, _, _ in parsed]), np.array([r for _, r, _ in parsed])
    assert all(speed[digit == d].sum() == 4 for d in range(10))
    assert all(speed[direction == r].sum() == 5 for r in range(8))
    assert all(DIGIT_WORDS[d] in p for p, (d, _, _) in zip(prompts, parsed))


# ---------------------------------------------------------------------------------------
# Recovery from pixels
# ---------------------------------------------------------------------------------------


def test_recover_motion_on_hand_built_videos():
    # the speeds are 0.25 and 0.5 px/frame: the square steps a pixel every 2nd (quick) or 4th (slow) frame
    right_quick = _square_video([(10, 4 + t // 2) for t in range(17)])
    up_left_slow = _square_video([(20 - t // 4, 20 - t // 4) for t in range(17)])
    down_quick = _square_video([(4 + t // 2, 14) for t in range(17)])
    assert SPEEDS == (0.25, 0.5)
    static = _square_video([(10, 10)] * 17)
    blank = np.zeros_like(static)
    gap = right_quick.copy()
    gap[0, 8] = 0  # one frame without ink
    direction, speed = recover_motion(np.concatenate([right_quick, up_left_slow, down_quick, static, blank, gap]))
    assert direction.tolist() == [0, 3, 6, -1, -1, 0]
    assert speed.tolist() == [1, 0, 1, -1, -1, 1]
    track = track_centroids(gap)[0]
    assert np.isnan(track[8]).all() and np.allclose(track[0], [11.5, 5.5])


def test_recovery_on_real_reference_videos(reference, classifier):
    # measured: digit 0.980, direction 1.0, speed 1.0, all 0.980 on the first 200 (0.984 digit on all 1000)
    r = recovery_accuracy_on_real("reference", n=200, classifier=classifier)
    acc = r["accuracy"]
    assert r["n"] == 200 and acc["direction"] == 1.0 and acc["speed"] == 1.0
    assert acc["digit"] >= 0.94 and acc["all"] >= 0.94
    digit = recover_digit(reference.videos[:200], classifier)
    assert np.mean(digit == reference.labels[:200]) == acc["digit"]


def test_video_prompt_accuracy_against_true_and_wrong_prompts(reference, classifier):
    videos, captions = reference.videos[:40], reference.captions[:40]
    right = video_prompt_accuracy(videos, captions, classifier)
    assert right["n"] == 40 and right["accuracy"]["direction"] == 1.0 and right["accuracy"]["speed"] == 1.0
    assert right["accuracy"]["digit"] >= 0.9 and right["asked"] == {"digit": 40, "direction": 40, "speed": 40}
    assert np.array_equal(right["correct"]["all"], right["correct"]["digit"])
    m = reference.meta
    wrong = [f"the digit {(d + 1) % 10} moves {SPEED_WORDS[1 - s]} {direction_phrase((r + 4) % 8)}"
             for d, r, s in zip(m["digit"][:40], m["direction"][:40], m["speed"][:40])]
    bad = video_prompt_accuracy(videos, wrong, classifier)
    assert bad["accuracy"]["direction"] == 0.0 and bad["accuracy"]["speed"] == 0.0 and bad["accuracy"]["all"] == 0.0
    partial = video_prompt_accuracy(videos[:2], ["a handwritten zero", "one"], classifier)
    assert partial["asked"] == {"digit": 2, "direction": 0, "speed": 0} and np.isnan(partial["accuracy"]["speed"])
    with pytest.raises(ValueError, match="prompts for"):
        video_prompt_accuracy(videos, captions[:3], classifier)


# ---------------------------------------------------------------------------------------
# User videos
# ---------------------------------------------------------------------------------------


def test_video_array_validation():
    with pytest.raises(DatasetError, match="mine: videos must be uint8"):
        VideoArray(np.zeros((2, 3, 8, 8, 3), np.float32), None, "mine")
    with pytest.raises(DatasetError, match="mine: 1 labels for 2 videos"):
        VideoArray(np.zeros((2, 3, 8, 8, 3), np.uint8), np.zeros(1, np.int64), "mine")


def test_npz_round_trip_and_errors(tmp_path, reference):
    path = tmp_path / "clips.npz"
    save_video_npz(path, reference.videos[:4], reference.labels[:4])
    back = load_video_npz(path)
    assert np.array_equal(back.videos, reference.videos[:4]) and back.labels.tolist() == [0, 1, 2, 3]
    assert load_dataset("video_npz", path=path).name == "video_npz:clips.npz"
    assert load_video_folder(path).videos.shape == (4, 17, 32, 32, 3)
    only = tmp_path / "only.npz"
    np.savez(only, arr_0=reference.videos[:2])  # the only array, under any key
    assert load_video_npz(only).videos.shape == (2, 17, 32, 32, 3) and load_video_npz(only).labels is None

    cases = {
        "float.npz": (dict(videos=np.zeros((2, 3, 8, 8, 3), np.float32)), "dtype float32"),
        "ndim.npz": (dict(videos=np.zeros((3, 8, 8, 3), np.uint8)), "4 dims"),
        "empty.npz": (dict(videos=np.zeros((0, 3, 8, 8, 3), np.uint8)), "empty"),
        "keys.npz": (dict(a=np.zeros(3), b=np.zeros(3)), "no key 'videos'"),
        "labels.npz": (dict(videos=np.zeros((2, 3, 8, 8, 3), np.uint8), labels=np.zeros(3, np.int64)), "'labels'"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(DatasetError, match=message) as e:
            load_video_npz(tmp_path / name)
        assert name in str(e.value)
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DatasetError, match="junk.npz.*not a readable"):
        load_video_npz(tmp_path / "junk.npz")
    with pytest.raises(DatasetError, match="missing.npz.*does not exist"):
        load_video_npz(tmp_path / "missing.npz")
    with pytest.raises(DatasetError, match="out.npz"):
        save_video_npz(tmp_path / "out.npz", np.zeros((2, 8, 8, 3), np.uint8))
    assert not (tmp_path / "out.npz").exists()


def _write_frames(folder, frames):
    folder.mkdir(parents=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{t:03d}.png")


def test_folder_round_trip_and_errors(tmp_path, reference):
    root = tmp_path / "videos"
    for i in range(3):
        _write_frames(root / f"clip{i}", reference.videos[i])
    data = load_dataset("video_folder", path=root)
    assert np.array_equal(data.videos, reference.videos[:3]) and data.labels is None

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no video sub-folders under '.*empty'"):
        load_video_folder(empty)
    (empty / "clip0").mkdir()
    with pytest.raises(DatasetError, match="clip0' holds no frame images"):
        load_video_folder(empty)
    mixed = tmp_path / "mixed"
    _write_frames(mixed / "clip0", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)])
    with pytest.raises(DatasetError, match="clip0': frame '001.png' is 9x8.*same size"):
        load_video_folder(mixed)
    counts = tmp_path / "counts"
    _write_frames(counts / "a", [np.zeros((8, 8, 3), np.uint8)] * 2)
    _write_frames(counts / "b", [np.zeros((8, 8, 3), np.uint8)] * 3)
    with pytest.raises(DatasetError, match="counts/b' holds 3 frames.*same frame count"):
        load_video_folder(counts)
    with pytest.raises(DatasetError, match="nowhere' is not a directory"):
        load_video_folder(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="unknown dataset 'mp4'"):
        load_dataset("mp4")

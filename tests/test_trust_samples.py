"""The checks between a model's samples and the numbers scored from them (grn_eval/sample_checks.py, the
runner's fingerprint and labels): each case here used to give a plausible wrong number with exit 0.

The suites score `prompt_accuracy` (the committed digit classifier, about a second), so every case runs the
real run path: real MNIST digits of the train split as "samples" against the reference split."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grn.data import load_mnist, read_rgb
from grn.errors import UserError
from grn_eval.cli import main
from grn_eval.runner import Runner, run_suite
from grn_eval.sample_checks import ReferenceGuard, check_pixels, compare_regenerated
from grn_eval.suite import load_suite


def _suite(tmp_path: Path, model: str, n: int = 40, extra: str = "", metrics: str = "prompt_accuracy: {bootstrap: 0}"
           ) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: trust_samples
        datasets:
          ref: {{name: mnist, split: reference}}
        models:
          - {model}
        metrics:
          {metrics}
        reference: {{dataset: ref}}
        n_samples: {n}
        batch_size: 20
        output_dir: '{tmp_path / "runs"}'
        """) + extra)
    return path


def _accuracy(result) -> float:
    return next(r["value"] for r in result["rows"] if r["metric"] == "prompt_accuracy")


def _class_folders(root: Path, images, labels) -> Path:
    for i, (im, c) in enumerate(zip(images, labels)):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(root / str(c) / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def digits():
    data = load_mnist("train")
    order = np.concatenate([np.flatnonzero(data.labels == c)[:4] for c in range(10)])  # by class: not i % 10
    return data.images[order], data.labels[order]


def test_stored_labels_are_the_labels(tmp_path, digits):
    """Per-class folders and an ADM batch's arr_1 keep their classes (before: sample i was class i % 10, and the
    digit accuracy of real digits read 0.1-ish)."""
    images, labels = digits
    assert (labels != np.arange(40) % 10).mean() > 0.8  # the labels are not the index pattern
    folder = _class_folders(tmp_path / "png", images, labels)
    acc = _accuracy(run_suite(load_suite(_suite(tmp_path, f"{{name: f, adapter: imagefolder, path: '{folder}'}}")),
                              progress=False))
    np.savez(tmp_path / "s.npz", arr_0=images, arr_1=labels)
    acc_npz = _accuracy(run_suite(load_suite(_suite(tmp_path, f"{{name: z, adapter: npz, path: '{tmp_path}/s.npz'}}")),
                                  progress=False))
    assert acc >= 0.95 and acc_npz == acc  # the classifier reads real digits at about 0.98


def test_changed_folder_contents_and_entry_point_source_start_a_new_run(tmp_path, digits):
    images, labels = digits
    folder = _class_folders(tmp_path / "png", images, labels)
    suite = load_suite(_suite(tmp_path, f"{{name: f, adapter: imagefolder, path: '{folder}'}}"))
    first, before = run_suite(suite, progress=False), Runner(suite).fingerprint()
    for p in (folder / "3").glob("*.png"):  # every three becomes an eight
        Image.fromarray(images[list(labels).index(8)]).save(p)
    assert Runner(suite).fingerprint() != before
    again = run_suite(suite, progress=False)  # before: the same run folder, the old shards, the old number
    assert _accuracy(again) == pytest.approx(_accuracy(first) - (labels == 3).mean(), abs=0.03)

    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "helper.py").write_text("SHIFT = 0\n")
    (tmp_path / "gen" / "__init__.py").write_text("")
    (tmp_path / "gen" / "entry.py").write_text(textwrap.dedent("""\
        import numpy as np
        from gen.helper import SHIFT
        def make():
            class G:
                num_classes = 10
                def generate(self, labels, seeds):
                    return np.stack([np.full((32, 32, 3), (7 * s + SHIFT) % 200 + 20, np.uint8) for s in seeds])
            return G()
        """))
    entry = f"{{name: e, adapter: python, entry: 'gen.entry:make', path: '{tmp_path}'}}"
    s = load_suite(_suite(tmp_path, entry))
    before = Runner(s).fingerprint()
    (tmp_path / "gen" / "helper.py").write_text("SHIFT = 1\n")  # a module the entry point imports
    assert Runner(s).fingerprint() != before


def test_samples_that_copy_the_reference_are_refused_unless_intended(tmp_path):
    ref = load_mnist("reference")
    half = np.concatenate([ref.images[:20], load_mnist("train").images[:20]])
    np.savez(tmp_path / "s.npz", arr_0=half)
    model = f"{{name: z, adapter: npz, path: '{tmp_path}/s.npz'}}"
    fid = "fid: {bootstrap: 0}"  # a metric that sets the samples against the reference (refused before features)
    code = main(["run", str(_suite(tmp_path, model, metrics=fid)), "--run-dir", str(tmp_path / "r"), "--quiet"])
    assert code == 1 and not (tmp_path / "r" / "results.json").exists()
    with pytest.raises(UserError, match="20 of 20 samples are exact copies of reference images"):
        run_suite(load_suite(_suite(tmp_path, model, metrics=fid)), run_dir=tmp_path / "r", progress=False)
    res = run_suite(load_suite(_suite(tmp_path, model, extra="allow_reference_overlap: true\n", metrics=fid)),
                    progress=False)
    assert res["models"]["z"]["reference_overlap"] == {"0": 20}  # the count is in the provenance
    # a suite whose metrics never compare with the reference (prompt accuracy) has nothing to refuse
    assert "reference_overlap" not in run_suite(load_suite(_suite(tmp_path, model)), progress=False)["models"]["z"]


def test_samples_of_another_size_than_the_reference_are_refused_unless_named(tmp_path, digits):
    big = np.repeat(np.repeat(digits[0], 2, axis=1), 2, axis=2)  # the same digits at 64 px
    np.savez(tmp_path / "s.npz", arr_0=big, arr_1=digits[1])
    model = f"{{name: z, adapter: npz, path: '{tmp_path}/s.npz'}}"
    with pytest.raises(UserError, match=r"samples of shape 64x64x3, the reference images are 32x32x3"):
        run_suite(load_suite(_suite(tmp_path, model, metrics="kid: {subsets: 2, subset_size: 10}")),
                  run_dir=tmp_path / "r", progress=False)
    assert not list((tmp_path / "r").rglob("shard_*.npz"))  # refused before the shard was written
    with pytest.raises(UserError, match="the digit classifier reads 32x32 digits"):  # allowed, but not by this metric
        run_suite(load_suite(_suite(tmp_path, model, extra="allow_size_mismatch: true\n")), progress=False)


def test_the_usual_wrong_casts_to_uint8_are_refused():
    x = np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 3))
    x[0, 0, 0] = [1.0, -1.0, 1.0]  # the extremes a [-1, 1] image reaches
    wrapped = x.astype(np.float32).astype(np.uint8)  # negatives wrap: -1 -> 255, (-1, 1) -> 0
    assert set(np.unique(wrapped).tolist()) == {0, 1, 255}
    with pytest.raises(UserError, match=r"images in \[-1, 1\] cast straight to uint8"):
        check_pixels(wrapped, "samples")
    with pytest.raises(UserError, match=r"images in \[0, 1\] cast to uint8"):
        check_pixels((x.clip(0, 1)).astype(np.uint8), "samples")
    binary = np.where(x > 0, 255, 0).astype(np.uint8)  # a real black-and-white image passes
    assert check_pixels(binary, "samples") is binary
    assert check_pixels(wrapped, "samples", allow_low_range=True) is wrapped


def test_sixteen_bit_pngs_are_read_at_their_depth(tmp_path):
    values = np.array([[0, 257, 32896], [65535, 1000, 50000]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode.startswith("I")
        rgb = read_rgb(img, "g16.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[..., 0].tolist() == [[0, 1, 128], [255, 4, 195]]  # round(v / 257); before: clipped to 0 / 255


def test_image_folder_layouts(tmp_path, digits, capsys):
    from grn_eval.adapters import build_adapter

    images, labels = digits
    folder = _class_folders(tmp_path / "png", images[:10], labels[:10])
    Image.fromarray(images[10]).save(folder / "top.png")  # a top-level image beside class folders
    model = f"{{name: f, adapter: imagefolder, path: '{folder}'}}"
    with pytest.raises(UserError, match=r"1 images at its top level .*'top.png'.* sub-folders"):
        build_adapter(load_suite(_suite(tmp_path, model), check_assets=False).models[0], tmp_path, "cpu")
    (folder / "top.png").unlink()
    (folder / ".ipynb_checkpoints").mkdir()
    Image.fromarray(images[11]).save(folder / ".ipynb_checkpoints" / "x.png")
    adapter = build_adapter(load_suite(_suite(tmp_path, model), check_assets=False).models[0], tmp_path, "cpu")
    assert adapter.classes == sorted({str(c) for c in labels[:10]}) and len(adapter.files) == 10
    assert adapter.provenance()["skipped_hidden"] == [".ipynb_checkpoints"]
    assert ".ipynb_checkpoints" in capsys.readouterr().err


def _entry_module(tmp_path: Path, name: str, body: str) -> None:
    """A generator module of its own name (imported modules stay in sys.modules for the whole test session)."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))


def test_a_generator_that_ignores_its_seeds_is_refused_unless_it_says_so(tmp_path):
    _entry_module(tmp_path, "trust_seeds_gen", """\
        import numpy as np
        def unseeded():
            class G:
                num_classes = 10
                def generate(self, labels, seeds):
                    return np.random.randint(20, 230, (len(seeds), 32, 32, 3)).astype(np.uint8)
            return G()
        def seeded():
            class G:
                num_classes = 10
                def generate(self, labels, seeds):
                    imgs = [np.random.default_rng(s).integers(20, 230, (32, 32, 3)) for s in seeds]
                    return np.stack(imgs).astype(np.uint8), {"steps": np.arange(3), "scale": np.float32(2.5)}
            return G()
        """)
    model = "{{name: g, adapter: python, entry: 'trust_seeds_gen:{}', path: '{}'{}}}"
    with pytest.raises(UserError, match="the same seeds gave other samples .*deterministic: false"):
        run_suite(load_suite(_suite(tmp_path, model.format("unseeded", tmp_path, ""))), progress=False)
    res = run_suite(load_suite(_suite(tmp_path, model.format("unseeded", tmp_path, ", deterministic: false"))),
                    progress=False)
    assert res["models"]["g"]["determinism"] == "not checked (deterministic: false)"
    res = run_suite(load_suite(_suite(tmp_path, model.format("seeded", tmp_path, ""))), run_dir=tmp_path / "seeded",
                    progress=False)
    assert res["models"]["g"]["determinism"] == "bit-identical"  # numpy values in the trace are stored too
    shard = np.load(next((tmp_path / "seeded").rglob("shard_00000.npz")))
    assert json.loads(shard["trace"].tobytes().decode()) == {"steps": [0, 1, 2], "scale": 2.5}


def test_entry_point_mistakes_are_one_message(tmp_path):
    _entry_module(tmp_path, "trust_mistakes_gen", """\
        import numpy as np
        def text_classes():
            class G:
                num_classes = "ten"
                def generate(self, labels, seeds):
                    return np.zeros((len(seeds), 32, 32, 3), np.uint8)
            return G()
        def raises():
            class G:
                num_classes = 10
                def generate(self, labels, seeds):
                    raise RuntimeError("out of memory")
            return G()
        def growing():
            class G:
                num_classes = 10
                calls = 0
                def generate(self, labels, seeds):
                    G.calls += 1
                    size = 32 if G.calls == 1 else 28
                    return np.stack([np.full((size, size, 3), s % 200 + 20, np.uint8) for s in seeds])
            return G()
        """)
    cases = {"text_classes": "num_classes 'ten'; it must be an integer", "raises": "generate\\(\\) raised "
             "RuntimeError: out of memory", "growing": "shard 1 holds samples of shape \\(28, 28, 3\\), shard 0 of "
             "\\(32, 32, 3\\)"}
    for name, message in cases.items():
        path = _suite(tmp_path, f"{{name: g, adapter: python, entry: 'trust_mistakes_gen:{name}', path: '{tmp_path}'}}")
        with pytest.raises(UserError, match=message):
            run_suite(load_suite(path), run_dir=tmp_path / name, progress=False)
        assert main(["run", str(path), "--run-dir", str(tmp_path / f"{name}_cli"), "--quiet"]) == 1


def test_guard_and_regeneration_known_answers():
    ref = np.zeros((3, 4, 4, 3), np.uint8)
    ref[1] = 9

    class S:
        path, allow_size_mismatch, allow_reference_overlap = "s.yaml", False, True
    guard = ReferenceGuard(ref, S)
    samples = np.stack([ref[1], ref[1] + 1, ref[0]])
    assert guard.check(samples, "m") == 2  # two exact copies (of images 1 and 0)
    assert ReferenceGuard(None, S).check(samples[:, :2], "m") == 0  # a statistics file: nothing to compare
    a = np.full((2, 4, 4, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = 101
    assert compare_regenerated(a, a.copy(), "m") == "bit-identical"
    assert compare_regenerated(a, b, "m").startswith("within rounding (max |diff| 1")
    with pytest.raises(UserError, match="other samples"):
        compare_regenerated(a, a + 30, "m")

import textwrap

import pytest

from grn_eval.suite import SuiteError, load_suite


def _write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


BASE = """
name: t
datasets:
  ref: {name: mnist, split: reference}
models:
  - {name: ident, adapter: identity}
metrics:
  psnr: {}
reference: {dataset: ref}
"""


def test_minimal_suite_loads_with_defaults(tmp_path):
    s = load_suite(_write(tmp_path, BASE))
    assert s.name == "t" and s.task == "reconstruction" and s.seeds == (0,) and len(s.models) == 1
    assert len(s.hash) == 64


@pytest.mark.parametrize("patch,where", [
    ("bogus: 1\n", "bogus: unknown key"),
    ("n_samples: many\n", "n_samples: expected int"),
    ("device: tpu\n", "device: unknown device"),
])
def test_top_level_errors_name_file_and_key(tmp_path, patch, where):
    p = _write(tmp_path, BASE + patch)
    with pytest.raises(SuiteError) as e:
        load_suite(p)
    assert str(p) in str(e.value) and where in str(e.value)


def test_unknown_metric_adapter_dataset_and_missing_file(tmp_path):
    with pytest.raises(SuiteError, match=r"metrics.fidd: unknown metric; allowed"):
        load_suite(_write(tmp_path, BASE.replace("psnr: {}", "fidd: {}")))
    with pytest.raises(SuiteError, match=r"models\[0\].adapter: unknown adapter 'gan'"):
        load_suite(_write(tmp_path, BASE.replace("adapter: identity", "adapter: gan")))
    with pytest.raises(SuiteError, match=r"datasets.ref.name: unknown dataset 'cifar'"):
        load_suite(_write(tmp_path, BASE.replace("name: mnist", "name: cifar")))
    bad = BASE.replace("{name: ident, adapter: identity}", "{name: g, adapter: tokenizer, checkpoint: nope.pt}")
    with pytest.raises(SuiteError, match=r"models\[0\].checkpoint: file 'nope.pt' not found"):
        load_suite(_write(tmp_path, bad))
    with pytest.raises(SuiteError, match="not valid YAML"):
        load_suite(_write(tmp_path, "name: [unclosed"))


def test_grid_expansion_and_pairs_stay_whole(tmp_path):
    ck = tmp_path / "g.pt"
    ck.write_bytes(b"x")
    text = BASE.replace("psnr: {}", "fid: {}").replace(
        "{name: ident, adapter: identity}",
        "{name: grn, adapter: grn, checkpoint: g.pt, tokenizer: g.pt, "
        "sampler: {steps: [10, 20], monotone: [false, true], guidance_interval: [0.44, 1.0]}}")
    s = load_suite(_write(tmp_path, text))
    assert [m.name for m in s.models] == ["grn[sampler.steps=10,sampler.monotone=False]",
                                          "grn[sampler.steps=10,sampler.monotone=True]",
                                          "grn[sampler.steps=20,sampler.monotone=False]",
                                          "grn[sampler.steps=20,sampler.monotone=True]"]
    assert all(m.options["sampler"]["guidance_interval"] == [0.44, 1.0] for m in s.models)
    with pytest.raises(SuiteError, match=r"sampler.steps\[1\]: expected int"):
        load_suite(_write(tmp_path, text.replace("[10, 20]", "[10, x]")))


def test_include_merges_and_overrides(tmp_path):
    _write(tmp_path, BASE + "n_samples: 10\nbatch_size: 5\n", "base.yaml")
    s = load_suite(_write(tmp_path, "include: base.yaml\nname: child\nn_samples: 20\n"))
    assert (s.name, s.n_samples, s.batch_size) == ("child", 20, 5)
    _write(tmp_path, "include: loop.yaml\n", "loop.yaml")
    with pytest.raises(SuiteError, match="include cycle"):
        load_suite(tmp_path / "loop.yaml")


def test_mixing_recon_and_generation_metrics_is_refused(tmp_path):
    with pytest.raises(SuiteError, match="use two suites"):
        load_suite(_write(tmp_path, BASE.replace("psnr: {}", "psnr: {}\n  fid: {}")))


def test_committed_suites_validate():
    from pathlib import Path

    suites = sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml"))
    assert {"mnist_gen", "smoke", "hbq_rounds", "imagenet_gen", "imagenet_recon"} <= {p.stem for p in suites}
    for p in suites:
        load_suite(p, check_assets=False)


def test_missing_imagenet_assets_fail_fast_with_one_message(monkeypatch):
    from pathlib import Path

    for var in ("GRN_IMAGENET_VAL", "GRN_IMAGENET_REF", "GRN_B_CHECKPOINT", "GRN_IMAGENET_TOKENIZER"):
        monkeypatch.delenv(var, raising=False)
    root = Path(__file__).resolve().parents[1] / "suites"
    for name in ("imagenet_gen", "imagenet_recon"):
        with pytest.raises(SuiteError, match=r"needs the environment variables \[.*GRN_IMAGENET"):
            load_suite(root / f"{name}.yaml")

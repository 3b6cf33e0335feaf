"""Every suite option has a type and a range (grn_eval/suite.py `Opt`); `load_suite` refuses a value
outside it before anything runs, naming the file, the key path and what is allowed."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from grn_eval import suite as S
from grn_eval.suite import SuiteError, load_suite

ROOT = Path(__file__).resolve().parents[1]
HEX = "0123456789abcdef" * 4

GEN = {"name": "t", "datasets": {"ref": {"name": "mnist", "split": "reference"}}, "metrics": {"fid": {}},
       "reference": {"dataset": "ref"}, "n_samples": 100,
       "models": [{"name": "g", "adapter": "grn", "checkpoint": "g.pt", "tokenizer": "g.pt", "sampler": {"steps": 10}}]}
RECON = {**GEN, "metrics": {"psnr": {}}, "models": [{"name": "i", "adapter": "identity"}]}


def model(**kw) -> dict:
    """The generation suite with its one model changed (a value None drops the key)."""
    m = {**GEN["models"][0], **kw}
    return {"models": [{k: v for k, v in m.items() if v is not None}]}


def _load(tmp_path, patch: dict, base: dict = GEN, overrides=None):
    (tmp_path / "g.pt").write_bytes(b"x")
    (tmp_path / "h.pt").write_bytes(b"y")
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump({**copy.deepcopy(base), **patch}))
    return p, lambda: load_suite(p, overrides)


REFUSED = [
    # sampler
    ("steps-0", model(sampler={"steps": 0}), "models[0].sampler.steps"),
    ("steps-empty-grid", model(sampler={"steps": []}), "models[0].sampler.steps"),
    ("temperature-empty-grid", model(sampler={"steps": 10, "temperature": []}), "models[0].sampler.temperature"),
    ("steps-grid-element", model(sampler={"steps": [10, 0]}), "models[0].sampler.steps[1]"),
    ("checkpoint-empty-grid", model(checkpoint=[]), "models[0].checkpoint"),
    ("guidance-negative", model(sampler={"guidance": -0.5}), "models[0].sampler.guidance"),
    ("guidance-grid-element", model(sampler={"guidance": [1.0, -1.0]}), "models[0].sampler.guidance[1]"),
    ("temperature-0", model(sampler={"temperature": 0}), "models[0].sampler.temperature"),
    ("top_k-0", model(adapter="ar", sampler={"top_k": 0}), "models[0].sampler.top_k"),
    ("choice_temperature-negative", model(adapter="maskgit", sampler={"choice_temperature": -1}),
     "models[0].sampler.choice_temperature"),
    ("interval-one-number", model(sampler={"guidance_interval": [0.5]}), "models[0].sampler.guidance_interval"),
    ("interval-three-numbers", model(sampler={"guidance_interval": [0.1, 0.5, 1.0]}),
     "models[0].sampler.guidance_interval"),
    ("interval-empty", model(sampler={"guidance_interval": []}), "models[0].sampler.guidance_interval"),
    ("interval-lo-above-hi", model(sampler={"guidance_interval": [0.8, 0.4]}), "models[0].sampler.guidance_interval"),
    ("interval-lo-equals-hi", model(sampler={"guidance_interval": [0.5, 0.5]}), "models[0].sampler.guidance_interval"),
    ("interval-not-a-number", model(sampler={"guidance_interval": ["a", 1.0]}),
     "models[0].sampler.guidance_interval[0]"),
    ("interval-grid-element", model(sampler={"guidance_interval": [[0.0, 1.0], [1.0, 0.0]]}),
     "models[0].sampler.guidance_interval[1]"),
    ("flow-interval-negative-lo", model(adapter="flow", sampler={"guidance_interval": [-0.5, 1.0]}),
     "models[0].sampler.guidance_interval[0]"),
    ("schedule-misspelt", model(sampler={"schedule": "cosin"}), "models[0].sampler.schedule"),
    ("t2i-cosine-1-step", model(sampler={"schedule": "t2i-cosine", "steps": 1}), "models[0].sampler.steps"),
    ("t2i-preset-1-step", model(sampler={"preset": "GRN-2B-t2i", "steps": [4, 1]}), "models[0].sampler.steps[1]"),
    ("flow-method", model(adapter="flow", sampler={"method": "rk4"}), "models[0].sampler.method"),
    ("preset-unknown", model(sampler={"preset": "GRN-XL-imagenet"}), "models[0].sampler.preset"),
    ("sampler-key-of-another-adapter", model(adapter="ar", sampler={"steps": 10}), "models[0].sampler.steps"),
    # entropy
    ("entropy-warmup-0", model(entropy={"warmup": 0}), "models[0].entropy.warmup"),
    ("entropy-t_min-above-t_max", model(entropy={"t_min": 30, "t_max": 20}), "models[0].entropy.t_max"),
    ("entropy-t_min-not-above-warmup", model(entropy={"warmup": 5, "t_min": 5}), "models[0].entropy.t_min"),
    ("entropy-t_min-below-default-warmup", model(entropy={"t_min": 4}), "models[0].entropy.t_min"),
    ("entropy-t_max-1", model(entropy={"warmup": 1, "t_min": 2, "t_max": 1}), "models[0].entropy.t_max"),
    ("entropy-grid-element", model(entropy={"warmup": 5, "t_min": [10, 3]}), "models[0].entropy.t_min[1]"),
    # top level (n_samples, batch_size, seeds)
    ("n_samples-0", {"n_samples": 0}, "n_samples"),
    ("n_samples-negative", {"n_samples": -5}, "n_samples"),
    ("batch_size-0", {"batch_size": 0}, "batch_size"),
    ("seeds-empty", {"seeds": []}, "seeds"),
    ("seeds-duplicate", {"seeds": [0, 1, 1]}, "seeds"),
    ("seeds-negative", {"seeds": [0, -1]}, "seeds[1]"),
    ("seeds-not-int", {"seeds": [0.5]}, "seeds[0]"),
    ("allow_low_range-not-bool", {"allow_low_range": "yes"}, "allow_low_range"),
    # metrics
    ("kid-subsets-0", {"metrics": {"kid": {"subsets": 0}}}, "metrics.kid.subsets"),
    ("kid-subset_size-1", {"metrics": {"kid": {"subset_size": 1}}}, "metrics.kid.subset_size"),
    ("kid-subset_size-above-n", {"metrics": {"kid": {"subset_size": 101}}}, "metrics.kid.subset_size"),
    ("prc-k-0", {"metrics": {"prc": {"k": 0}}}, "metrics.prc.k"),
    ("prc-k-equals-n", {"metrics": {"prc": {"k": 100}}}, "metrics.prc.k"),
    ("isc-splits-0", {"metrics": {"isc": {"splits": 0}}}, "metrics.isc.splits"),
    ("isc-splits-above-n", {"metrics": {"isc": {"splits": 101}}}, "metrics.isc.splits"),
    ("latency-repeats-0", {"metrics": {"latency": {"repeats": 0}}}, "metrics.latency.repeats"),
    ("latency-warmup-negative", {"metrics": {"latency": {"warmup": -1}}}, "metrics.latency.warmup"),
    ("fid-protocol", {"metrics": {"fid": {"protocol": "inception"}}}, "metrics.fid.protocol"),
    ("kid-protocol", {"metrics": {"kid": {"protocol": "cleanfid"}}}, "metrics.kid.protocol"),
    ("prc-protocol", {"metrics": {"prc": {"protocol": "tf"}}}, "metrics.prc.protocol"),
    # reference and datasets
    ("reference-limit-negative", {"reference": {"dataset": "ref", "limit": -1}}, "reference.limit"),
    ("reference-limit-0", {"reference": {"dataset": "ref", "limit": 0}}, "reference.limit"),
    ("reference-limit-not-int", {"reference": {"dataset": "ref", "limit": 1.5}}, "reference.limit"),
    ("mnist-split-misspelt", {"datasets": {"ref": {"name": "mnist", "split": "refrence"}}}, "datasets.ref.split"),
    ("dataset-unknown-option", {"datasets": {"ref": {"name": "mnist", "splt": "train"}}}, "datasets.ref.splt"),
    ("photos-crop_size-0", {"datasets": {"ref": {"name": "photos", "split": "val", "crop_size": 0}}},
     "datasets.ref.crop_size"),
    ("imagefolder-needs-root", {"datasets": {"ref": {"name": "imagefolder"}}}, "datasets.ref.root"),
    # hashes and the tokenizer switch
    ("checkpoint_sha256-short", model(checkpoint_sha256="abc123"), "models[0].checkpoint_sha256"),
    ("checkpoint_sha256-uppercase", model(checkpoint_sha256=HEX.upper()), "models[0].checkpoint_sha256"),
    ("tokenizer_sha256-not-hex", model(tokenizer_sha256="z" * 64), "models[0].tokenizer_sha256"),
    ("checkpoint_sha256-with-checkpoint-grid", model(checkpoint=["g.pt", "h.pt"], checkpoint_sha256=HEX),
     "models[0].checkpoint_sha256"),
    ("allow_other_tokenizer-not-bool", model(allow_other_tokenizer="yes"), "models[0].allow_other_tokenizer"),
    ("tokenizer-adapter-checkpoint_sha256", model(adapter="tokenizer", tokenizer=None, sampler=None,
                                                  checkpoint_sha256="0" * 63), "models[0].checkpoint_sha256"),
    ("npz-sha256", {"models": [{"name": "n", "adapter": "npz", "path": "s.npz", "sha256": 64}]}, "models[0].sha256"),
]

REFUSED_RECON = [
    ("lpips-nets-empty", {"metrics": {"lpips": {"nets": []}}}, "metrics.lpips.nets"),
    ("lpips-nets-unknown", {"metrics": {"lpips": {"nets": ["alex", "squeeze"]}}}, "metrics.lpips.nets[1]"),
    ("lpips-nets-duplicate", {"metrics": {"lpips": {"nets": ["vgg", "vgg"]}}}, "metrics.lpips.nets"),
    ("lpips-nets-not-a-list", {"metrics": {"lpips": {"nets": "alex"}}}, "metrics.lpips.nets"),
    ("rfid-protocol", {"metrics": {"rfid": {"protocol": "clean"}}}, "metrics.rfid.protocol"),
    ("photos-split-misspelt", {"datasets": {"ref": {"name": "photos", "split": "test"}}}, "datasets.ref.split"),
]


def _assert_refused(p, load, key):
    with pytest.raises(SuiteError) as e:
        load()
    msg = str(e.value)
    assert msg.startswith(f"{p}: {key}: ") and "; allowed: " in msg, msg


@pytest.mark.parametrize("patch,key", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_out_of_range_generation_options_are_refused(tmp_path, patch, key):
    _assert_refused(*_load(tmp_path, patch), key)


@pytest.mark.parametrize("patch,key", [c[1:] for c in REFUSED_RECON], ids=[c[0] for c in REFUSED_RECON])
def test_out_of_range_reconstruction_options_are_refused(tmp_path, patch, key):
    _assert_refused(*_load(tmp_path, patch, RECON), key)


@pytest.mark.parametrize("overrides,key", [({"n_samples": 0}, "n_samples"), ({"batch_size": 0}, "batch_size"),
                                           ({"seeds": [3, 3]}, "seeds"), ({"n_samples": 50,
                                            "metrics": {"kid": {"subset_size": 60}}}, "metrics.kid.subset_size")])
def test_command_line_overrides_are_checked_too(tmp_path, overrides, key):
    _assert_refused(*_load(tmp_path, {}, overrides=overrides), key)


def test_a_renamed_key_is_refused_with_its_new_name(tmp_path):
    p, load = _load(tmp_path, model(sampler={"steps": 10, "cfg": 3.0}))
    with pytest.raises(SuiteError, match=r"models\[0\]\.sampler\.cfg: unknown key \(renamed 'guidance'\); allowed"):
        load()


def test_bounds_named_in_the_message(tmp_path):
    with pytest.raises(SuiteError, match=re.escape("subset_size: 101 is out of range; allowed: int >= 2 and <= "
                                                   "n_samples (= 100)")):
        _load(tmp_path, {"metrics": {"kid": {"subset_size": 101}}})[1]()
    with pytest.raises(SuiteError, match=r"split: unknown split 'refrence'; allowed: one of \['train', 'reference'"):
        _load(tmp_path, {"datasets": {"ref": {"name": "mnist", "split": "refrence"}}})[1]()


def test_values_at_the_edges_and_new_keys_are_accepted(tmp_path):
    gen = model(checkpoint_sha256=HEX, tokenizer_sha256=HEX, allow_other_tokenizer=True,
                sampler={"steps": [1, 2], "guidance": 0, "temperature": 0.01, "guidance_interval": [-1.0, 1.0]},
                entropy={"warmup": 1, "t_min": 2, "t_max": 2})
    s = load_suite(_load(tmp_path, {**gen, "seeds": [0, 7], "allow_low_range": True, "metrics": {
        "kid": {"subsets": 1, "subset_size": 100}, "prc": {"k": 99}, "isc": {"splits": 100},
        "latency": {"warmup": 0, "repeats": 1}, "fid": {"protocol": "clean-fid"}},
        "reference": {"dataset": "ref", "limit": 100}})[0])  # the edge of these metrics: prc's k + 1
    assert s.allow_low_range is True and s.seeds == (0, 7) and len(s.models) == 2
    assert s.models[0].options["checkpoint_sha256"] == HEX and s.models[0].options["allow_other_tokenizer"] is True
    assert load_suite(_load(tmp_path, model(sampler={"preset": "GRN-2B-t2i", "steps": 2}))[0]).allow_low_range is False
    flow = model(adapter="flow", sampler={"method": "euler", "guidance_interval": [0.0, 1.0]})
    assert load_suite(_load(tmp_path, flow)[0]).models[0].options["sampler"]["method"] == "euler"
    tok = model(adapter="tokenizer", tokenizer=None, sampler=None, checkpoint_sha256=HEX)
    npz = {"models": [{"name": "n", "adapter": "npz", "path": "s.npz", "sha256": HEX}]}
    for patch, base in ((tok, RECON), (npz, GEN)):
        load_suite(_load(tmp_path, patch, base)[0])


def test_dataset_splits_are_read_from_grn_data():
    """The allowed splits come from grn/data.py's loaders; if a refactor hides them this fails loudly
    instead of silently checking nothing."""
    assert set(S.dataset_options("mnist")["split"].choices) == {"train", "reference", "all"}
    assert set(S.dataset_options("photos")["split"].choices) == {"train", "val"}
    assert S.dataset_options("imagefolder")["root"].required and "split" not in S.dataset_options("npz")


@pytest.mark.parametrize("path", sorted((ROOT / "suites").glob("*.yaml")), ids=lambda p: p.stem)
def test_committed_suites_validate_and_hash_only_what_the_file_says(path, monkeypatch):
    """The hash is of `resolved`; it must stay the merged YAML (no defaults written in), so committed
    suites keep their hashes whatever the checks learn."""
    text = path.read_text()
    for var in set(S._PLACEHOLDER.findall(text)):
        monkeypatch.delenv(var, raising=False)
    s = load_suite(path, check_assets=False)
    expected = yaml.safe_load(text)
    assert "include" not in expected  # (an included file would have to be merged here too)
    expected["metrics"] = {m: o or {} for m, o in expected["metrics"].items()}
    assert s.resolved == expected

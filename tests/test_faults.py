"""Faults a careful user or a real machine produces: each ends in a correct result or in one message
naming the file / key / shard and the fix, with a non-zero exit, no traceback and nothing half-written.

One test per case, named by what it breaks. The gate's cases are in test_gate.py, the option ranges
case by case in test_suite_ranges.py, the official CFG rules in test_sampling.py.
"""

from __future__ import annotations

import errno
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from grn import fileio as F
from grn.checkpoint import load_model, load_tokenizer, seal
from grn.data import load_mnist, save_npz, to_uint8_images
from grn.errors import CheckpointError, NonFiniteError, UserError, run_command
from grn.fileio import save_torch
from grn.sampling import SamplerConfig, refine, sample_generators
from grn_eval import cli
from grn_eval.cache import FeatureCache
from grn_eval.model_check import ModelError, check_entry
from grn_eval.runner import read_shard, write_shard
from grn_eval.sample_checks import check_pixels
from grn_eval.suite import SuiteError, load_suite

CKPT = Path(__file__).resolve().parents[1] / "grn" / "checkpoints"
GEN, TOK = CKPT / "generator_mnist.pt", CKPT / "tokenizer_mnist.pt"


def _suite(tmp_path, models, **top) -> Path:
    """A small generation suite file over the embedded MNIST models (absolute paths)."""
    data = {"name": "faults", "datasets": {"ref": {"name": "mnist", "split": "reference"}},
            "models": models, "metrics": {"entropy": {}}, "reference": {"dataset": "ref"},
            "n_samples": 4, "batch_size": 2, **top}
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _grn(**kw) -> dict:
    return {"name": "GRN", "adapter": "grn", "checkpoint": str(GEN), "tokenizer": str(TOK),
            "sampler": {"steps": 2}, **kw}


def _cli(capsys, *argv) -> tuple[int, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out + captured.err


def _record(path=GEN) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


# -- integrity of what produces a number -------------------------------------------------------------


def test_committed_checkpoints_match_their_listed_sha256():
    listed = F.committed_sha256()
    assert sorted(listed) == sorted(p.name for p in CKPT.glob("*.pt"))
    for name, digest in listed.items():
        assert F.sha256_file(CKPT / name) == digest, name


def test_flipped_bytes_in_a_committed_checkpoint_are_refused(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(GEN, folder / GEN.name)
    (folder / "SHA256SUMS").write_text(f"{F.sha256_file(GEN)}  {GEN.name}\n")
    monkeypatch.setattr(F, "COMMITTED_DIR", folder.resolve())
    monkeypatch.setattr(F, "MANIFEST", folder / "SHA256SUMS")
    load_model(folder / GEN.name)  # intact: loads
    raw = bytearray((folder / GEN.name).read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 1024] = bytes(b ^ 0xFF for b in raw[len(raw) // 2 : len(raw) // 2 + 1024])
    (folder / GEN.name).write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="SHA256SUMS"):
        load_model(folder / GEN.name)


def test_a_retrained_committed_checkpoint_is_recorded_and_then_loads(tmp_path, monkeypatch):
    """Re-training a committed file (grn_eval.embedded) writes its new sha256 beside the others, so the
    generators trained next on it (a re-trained tokenizer) load it instead of being refused."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(GEN, folder / "b.pt")
    (folder / "SHA256SUMS").write_text(f"{'0' * 64}  b.pt\n{'1' * 64}  a.pt\n")
    monkeypatch.setattr(F, "COMMITTED_DIR", folder.resolve())
    monkeypatch.setattr(F, "MANIFEST", folder / "SHA256SUMS")
    with pytest.raises(CheckpointError, match="SHA256SUMS"):
        load_model(folder / "b.pt")
    digest = F.record_committed(folder / "b.pt")
    assert digest == F.sha256_file(GEN)
    assert (folder / "SHA256SUMS").read_text() == f"{'1' * 64}  a.pt\n{digest}  b.pt\n"  # others kept, sorted
    load_model(folder / "b.pt")
    with pytest.raises(ValueError, match="not in checkpoints/"):
        F.record_committed(GEN)


def test_flipped_tensor_bytes_in_a_sealed_checkpoint_are_refused(tmp_path):
    """Outside grn/checkpoints/: the content hash written at save time finds the change."""
    path = tmp_path / "gen.pt"
    shutil.copy(GEN, path)
    with zipfile.ZipFile(path) as zf:  # the largest tensor record, and where its bytes start in the file
        info = max(zf.infolist(), key=lambda i: i.file_size)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), "<u2")
    start = info.header_offset + 30 + int(name_len) + int(extra_len) + info.file_size // 2
    raw = bytearray(path.read_bytes())
    raw[start : start + 1024] = bytes(b ^ 0x5A for b in raw[start : start + 1024])
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="content hash|cannot be read"):
        load_model(path)


def test_a_changed_tensor_under_an_old_seal_is_refused(tmp_path):
    rec = _record()
    key = next(k for k, v in rec["state_dict"].items() if v.is_floating_point())
    rec["state_dict"][key] = rec["state_dict"][key] + 1e-2
    save_torch(rec, tmp_path / "gen.pt")
    with pytest.raises(CheckpointError, match="content hash"):
        load_model(tmp_path / "gen.pt")


def test_nan_weights_are_refused_naming_the_tensor(tmp_path):
    rec = _record()
    key = next(k for k, v in rec["state_dict"].items() if v.is_floating_point() and v.numel() > 4)
    rec["state_dict"][key] = rec["state_dict"][key].clone()
    rec["state_dict"][key].view(-1)[:3] = float("nan")
    save_torch(seal(rec), tmp_path / "gen.pt")  # a NaN that was there when the file was written
    with pytest.raises(NonFiniteError, match=key.replace(".", r"\.")):
        load_model(tmp_path / "gen.pt")


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbled"])
def test_unreadable_checkpoint_is_one_error_naming_the_file(tmp_path, damage):
    raw = GEN.read_bytes()
    path = tmp_path / "gen.pt"
    path.write_bytes({"empty": b"", "truncated": raw[: len(raw) // 3], "garbled": b"not a checkpoint" * 64}[damage])
    with pytest.raises(CheckpointError, match="gen.pt"):
        load_model(path)
    with pytest.raises(CheckpointError, match="gen.pt"):
        load_tokenizer(path)


def test_tokenizer_given_as_generator_and_the_reverse_are_named():
    with pytest.raises(CheckpointError, match="is an HBQ tokenizer checkpoint, not a generator"):
        load_model(TOK)
    with pytest.raises(CheckpointError, match="generator checkpoint, not a tokenizer"):
        load_tokenizer(GEN)


def test_weights_of_another_shape_than_the_config_name_the_key(tmp_path):
    rec = _record()
    rec["config"]["hidden"] = 96
    save_torch(rec, tmp_path / "gen.pt")
    with pytest.raises(CheckpointError, match="key '.*' has shape .* the config builds"):
        load_model(tmp_path / "gen.pt")


def test_pinned_sha256_must_match(tmp_path):
    s = load_suite(_suite(tmp_path, [_grn(checkpoint_sha256="0" * 64)]))
    with pytest.raises(ModelError, match="checkpoint_sha256.*pins"):
        check_entry(s.models[0], s.path.parent, s.path)
    s = load_suite(_suite(tmp_path, [_grn(checkpoint_sha256=F.sha256_file(GEN), tokenizer_sha256=F.sha256_file(TOK))]))
    assert check_entry(s.models[0], s.path.parent, s.path).checkpoint_sha256 == F.sha256_file(GEN)


def test_a_tokenizer_other_than_the_training_one_needs_an_explicit_flag(tmp_path):
    other = tmp_path / "tok.pt"
    save_torch({**_record(TOK), "note": "same weights, another file"}, other)
    s = load_suite(_suite(tmp_path, [_grn(tokenizer=str(other))]))
    with pytest.raises(ModelError, match="not the tokenizer the generator was trained with"):
        check_entry(s.models[0], s.path.parent, s.path)
    s = load_suite(_suite(tmp_path, [_grn(tokenizer=str(other), allow_other_tokenizer=True)]))
    assert "allow_other_tokenizer" in check_entry(s.models[0], s.path.parent, s.path).tokenizer_note


def test_incompatible_tokenizer_is_found_before_sampling(tmp_path):
    s = load_suite(_suite(tmp_path, [_grn(tokenizer=str(CKPT / "tokenizer_photo_M1.pt"))]))
    with pytest.raises(ModelError, match="8 latent channels and 1 rounds.*4 channels and 4 rounds"):
        check_entry(s.models[0], s.path.parent, s.path)


def test_adapter_that_does_not_match_the_checkpoint_kind(tmp_path, capsys):
    path = _suite(tmp_path, [_grn(adapter="ar", sampler={"temperature": 1.0})])
    code, err = _cli(capsys, "validate", str(path))
    assert code == 1
    code, err = _cli(capsys, "run", str(path), "--run-dir", str(tmp_path / "run"))
    assert code == 1 and "holds a 'grn' model, the suite says adapter 'ar'" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # nothing written before the suite is known to be runnable


def test_sampler_keys_of_another_kind_are_refused(tmp_path, capsys):
    code, out = _cli(capsys, "validate", str(_suite(tmp_path, [_grn(sampler={"method": "heun"})])))
    assert code == 1 and "sampler.method" in out


# -- options out of range (the listed cases; every option's range: test_suite_ranges.py) ---------


@pytest.mark.parametrize("change, key", [
    ({"models": [_grn(sampler={"steps": 0})]}, "steps"),
    ({"models": [_grn(sampler={"steps": []})]}, "steps"),
    ({"n_samples": 0}, "n_samples"),
    ({"batch_size": 0}, "batch_size"),
    ({"models": [_grn(sampler={"guidance": -1.0})]}, "guidance"),
    ({"models": [_grn(sampler={"temperature": 0.0})]}, "temperature"),
    ({"models": [_grn(sampler={"guidance_interval": [0.8, 0.2]})]}, "guidance_interval"),
    ({"models": [_grn(entropy={"t_min": 30, "t_max": 20})]}, "t_max"),
    ({"metrics": {"kid": {"subset_size": 50}}}, "subset_size"),
    ({"metrics": {"prc": {"k": 0}}}, "k"),
    ({"metrics": {"latency": {"repeats": 0}}}, "repeats"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"seeds": [-1]}, "seeds"),
    ({"reference": {"dataset": "ref", "limit": -1}}, "limit"),
    ({"models": [_grn(sampler={"schedule": "cosin"})]}, "schedule"),
    ({"datasets": {"ref": {"name": "mnist", "split": "referense"}}}, "split"),
])
def test_out_of_range_options_are_refused_by_validate(tmp_path, capsys, change, key):
    good = _suite(tmp_path, [_grn()])
    code, _ = _cli(capsys, "validate", str(good))
    assert code == 0
    path = tmp_path / "bad.yaml"
    base = yaml.safe_load(good.read_text())
    path.write_text(yaml.safe_dump({**base, **change}))
    with pytest.raises(SuiteError, match=key):
        load_suite(path)
    code, _ = _cli(capsys, "validate", str(path))
    assert code == 1


# -- failures during a run ----------------------------------------------------------------------------


def test_nonfinite_logits_stop_sampling_naming_the_step():
    class NaNModel(torch.nn.Module):
        token_shape, token_classes, null_class = (1, 2, 2), 4, 10

        def forward(self, z, t, y):
            return torch.full((len(z), 4, 1, 2, 2), float("nan"))

    with pytest.raises(NonFiniteError, match="refinement step 0.*logits"):
        refine(NaNModel(), torch.tensor([0]), SamplerConfig(steps=2), sample_generators([0]))


def test_nonfinite_decoded_images_are_refused():
    with pytest.raises(NonFiniteError, match="decoded images"):
        to_uint8_images(torch.tensor([float("nan")]).view(1, 1, 1, 1).expand(1, 3, 2, 2))


def test_nonfinite_values_in_a_run_name_model_seed_and_shard(tmp_path, capsys, monkeypatch):
    from grn.generator import GRN

    monkeypatch.setattr(GRN, "forward", lambda self, z, t, y: torch.full(
        (len(z), self.token_classes, *self.token_shape), float("nan")))
    code, err = _cli(capsys, "run", str(_suite(tmp_path, [_grn()])), "--run-dir", str(tmp_path / "run"), "--quiet")
    assert code == 1 and "model 'GRN', seed 0, shard 0" in err and "NaN" in err


def test_damaged_shard_is_named_and_recomputed(tmp_path, capsys):
    path = tmp_path / "shard_00000.npz"
    write_shard(path, arr_0=np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3))
    assert read_shard(path)["arr_0"].sum() == 66
    raw = bytearray(path.read_bytes())
    raw[-200] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert read_shard(path) is None and not path.exists()
    assert "shard_00000.npz' is damaged" in capsys.readouterr().out
    # in a run: the damaged shard is made again, and the result is the same as before
    suite = _suite(tmp_path, [_grn()])
    code, _ = _cli(capsys, "run", str(suite), "--run-dir", str(tmp_path / "run"), "--quiet")
    first = (tmp_path / "run" / "samples" / "GRN" / "seed0" / "shard_00001.npz")
    before = read_shard(first)["arr_0"]
    first.write_bytes(first.read_bytes()[:100])
    code, _ = _cli(capsys, "run", str(suite), "--run-dir", str(tmp_path / "run"), "--quiet")
    assert code == 0 and np.array_equal(read_shard(first)["arr_0"], before)


def test_images_in_zero_one_cast_to_uint8_are_refused_unless_allowed(tmp_path, capsys):
    dark = (load_mnist("train").images[:4] > 127).astype(np.uint8)  # a [0, 1] image cast to uint8
    with pytest.raises(UserError, match="multiply by 255"):
        check_pixels(dark, "samples")
    assert check_pixels(dark, "samples", allow_low_range=True) is dark
    save_npz(tmp_path / "dark.npz", dark)
    save_npz(tmp_path / "ref.npz", load_mnist("reference").images[:4])
    code, err = _cli(capsys, "fid", str(tmp_path / "dark.npz"), "--ref", str(tmp_path / "ref.npz"))
    assert code == 1 and "allow-low-range" in err


@pytest.mark.parametrize("n", [0, 1])
def test_fid_of_fewer_than_two_images_is_refused(tmp_path, capsys, n):
    save_npz(tmp_path / "few.npz", load_mnist("train").images[:n].reshape(n, 32, 32, 3))
    code, err = _cli(capsys, "fid", str(tmp_path / "few.npz"), "--ref", str(tmp_path / "few.npz"))
    assert code == 1 and "at least 2" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_without_a_gpu(tmp_path, capsys):
    code, err = _cli(capsys, "run", str(_suite(tmp_path, [_grn()])), "--device", "cuda", "--run-dir",
                     str(tmp_path / "run"))
    assert code == 1 and "no CUDA device" in err and not (tmp_path / "run").exists()
    save_npz(tmp_path / "s.npz", load_mnist("train").images[:4])
    code, err = _cli(capsys, "fid", str(tmp_path / "s.npz"), "--ref", str(tmp_path / "s.npz"), "--device", "cuda")
    assert code == 1 and "no CUDA device" in err


def test_unwritable_feature_cache_names_grn_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(UserError, match="GRN_CACHE"):
        FeatureCache(blocker / "features").put("ab" * 32, {"pool": np.zeros(3)})


def test_read_only_or_full_disk_is_one_message(capsys):
    def full(_):
        raise OSError(errno.ENOSPC, "No space left on device", "/some/cache/file")

    assert run_command(full, None, "grn-eval") == 1
    err = capsys.readouterr().err
    assert "GRN_CACHE" in err and "No space left" in err and err.count("\n") == 1


def test_a_bug_is_one_line_with_the_traceback_in_a_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRN_CACHE", str(tmp_path / "cache"))

    def bug(_):
        raise KeyError("internal")

    assert run_command(bug, None, "grn-eval") == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error KeyError" in err
    logs = list((tmp_path / "cache" / "logs").glob("grn-eval-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()
    with pytest.raises(KeyError):
        run_command(bug, None, "grn-eval", debug=True)


def test_truncated_results_json_is_one_message(tmp_path, capsys):
    (tmp_path / "results.json").write_text('{"suite": "smoke", "rows": [')
    code, err = _cli(capsys, "report", str(tmp_path / "results.json"), "--out", str(tmp_path / "r"))
    assert code == 1 and "results.json" in err
    code, err = _cli(capsys, "gate", str(tmp_path / "results.json"), "--baseline", "results/baselines/smoke.json")
    assert code == 1 and "results.json" in err
    assert json.loads(Path("results/baselines/smoke.json").read_text())  # the baseline was not touched


def test_more_rounds_than_trained_are_refused_naming_the_model(tmp_path):
    """A tokenizer entry's `rounds` keeps the first rounds of the trained M; more than M cannot be decoded."""
    from grn.checkpoint import export_tokenizer
    from grn.tokenizer import build_tokenizer
    from grn_eval.adapters import build_adapter

    export_tokenizer(build_tokenizer("hbq-mnist", enc_dim=8, dec_dim=8), tmp_path / "tok.pt")  # M = 4
    (tmp_path / "s.yaml").write_text(
        "name: t\ndatasets: {ref: {name: mnist, split: reference}}\n"
        "models:\n  - {name: short, adapter: tokenizer, checkpoint: tok.pt, rounds: 2}\n"
        "  - {name: long, adapter: tokenizer, checkpoint: tok.pt, rounds: 5}\n"
        "metrics: {psnr: {}}\nreference: {dataset: ref}\nn_samples: 4\nbatch_size: 4\n")
    suite = load_suite(tmp_path / "s.yaml")
    short, long = suite.models
    adapter = build_adapter(short, tmp_path, torch.device("cpu"))
    assert adapter.provenance()["rounds"] == 2 and adapter.provenance()["trained_rounds"] == 4
    with pytest.raises(UserError, match=r"model 'long': rounds: 5 .* allowed: 1 \.\.\. 4"):
        build_adapter(long, tmp_path, torch.device("cpu"))

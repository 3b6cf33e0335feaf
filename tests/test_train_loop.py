"""The one training loop (grn.train.Run) behind the tokenizer and every generator: an interrupted run
resumed is bit-identical to an uninterrupted one, each step is logged once, checkpoints and exported
records hold the documented keys."""

import json
from dataclasses import asdict

import pytest
import torch

from grn.checkpoint import TOKENIZER_KIND, export_tokenizer, load_model, load_tokenizer
from grn.fileio import sha256_file
from grn.tokenizer import build_tokenizer
from grn.train import GeneratorTrainConfig, TokenizerTrainConfig, train_generator, train_tokenizer

KINDS = ["tokenizer", "GRN-T", "AR-T", "MaskGIT-T", "Flow-T", "GRN-T2I-T", "GRN-bit-T2I-T"]
# tiny sizes; GRN_bit's MLP width is a multiple of 256, which hidden 32 rounds to 0
TINY = {"hidden": 32, "depth": 2, "heads": 2}
OVERRIDES = {"GRN-bit-T2I-T": {"hidden": 64, "depth": 2, "heads": 4}}
CKPT_KEYS = {"tokenizer": ["step", "train_config", "model", "ema", "disc", "opt_g", "opt_d"],
             "generator": ["step", "train_config", "model", "emas", "opt", "sched"]}
EXPORT_KEYS = {"tokenizer": ["kind", "config", "state_dict", "train_config", "steps", "content_sha256"],
               "generator": ["kind", "name", "config", "state_dict", "ema_decay", "steps", "train_config",
                             "tokenizer_sha256", "content_sha256"]}


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tok.pt"
    export_tokenizer(build_tokenizer("hbq-mnist", enc_dim=8, dec_dim=8), path)
    return path


def _setup(kind, tok_path):
    """(config, train function, role) of a tiny 6-step run that logs every step and checkpoints every 2."""
    if kind == "tokenizer":
        from grn_eval import weights as W

        _, lp = W.load_lpips("alex")
        cfg = TokenizerTrainConfig(tokenizer="hbq-mnist", tokenizer_overrides={"enc_dim": 8, "dec_dim": 8}, steps=6,
                                   batch_size=4, lpips_net="alex", lpips_weights=str(lp.path), gan_start=2, disc_ndf=8,
                                   checkpoint_every=2, log_every=1)
        return cfg, train_tokenizer, "tokenizer"
    cfg = GeneratorTrainConfig(generator=kind, generator_overrides=OVERRIDES.get(kind, TINY),
                               tokenizer=str(tok_path), dataset_kwargs={"split": "reference"}, steps=6, batch_size=8,
                               warmup_steps=2, ema_decays=(0.9, 0.5), checkpoint_every=2, log_every=1)
    return cfg, train_generator, "generator"


def _assert_same(a, b, where=""):
    """Nested dicts / lists / tensors equal exactly: same keys in the same order, torch.equal tensors."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _log(d):
    return [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", KINDS)
def test_six_steps_equal_three_resume_three(tmp_path, tok_path, kind):
    cfg, train, role = _setup(kind, tok_path)
    export = f"{role}.pt"
    full = train(cfg, tmp_path / "full", progress=False)
    part = train(cfg, tmp_path / "resumed", max_steps=3, progress=False)
    mid = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert mid["step"] == 3 and not (tmp_path / "resumed" / export).exists()  # an interrupted run exports nothing
    part += train(cfg, tmp_path / "resumed", progress=True)  # the progress bar path too

    # the same losses per step, each step logged exactly once
    assert [r["step"] for r in full] == [r["step"] for r in part] == list(range(1, 7))
    assert part == full
    assert _log(tmp_path / "full") == _log(tmp_path / "resumed") == full

    # the same final training state, under the documented checkpoint keys
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=False) for d in ("full", "resumed"))
    assert list(a) == CKPT_KEYS[role] and a["step"] == 6 and a["train_config"] == asdict(cfg)
    _assert_same(a, b)

    # the same exported record (byte for byte), sealed, loadable
    fa, fb = tmp_path / "full" / export, tmp_path / "resumed" / export
    assert sha256_file(fa) == sha256_file(fb)
    rec = torch.load(fa, weights_only=False)
    assert list(rec) == EXPORT_KEYS[role] and rec["steps"] == 6
    if role == "tokenizer":
        assert rec["kind"] == TOKENIZER_KIND and load_tokenizer(fa).integrity
        assert full[0]["d_loss"] == 0 and full[-1]["d_loss"] > 0  # the discriminator starts at step 2
    else:
        assert rec["name"] == kind and rec["tokenizer_sha256"] == sha256_file(tok_path)
        load_model(fa)
        _assert_same(rec["state_dict"], {k: v.to(torch.bfloat16) if v.is_floating_point() else v
                                         for k, v in a["emas"][0].items()})  # the first EMA is exported


def test_checkpoint_every_and_log_every(tmp_path, tok_path):
    cfg, train, _ = _setup("GRN-T", tok_path)
    cfg.steps, cfg.log_every, cfg.checkpoint_every = 5, 2, 4
    hist = train(cfg, tmp_path, max_steps=3, progress=False)
    assert [r["step"] for r in _log(tmp_path)] == [2, 3]  # every 2 steps, and the last step of the call
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["step"] == 3
    hist += train(cfg, tmp_path, progress=False)
    assert [r["step"] for r in _log(tmp_path)] == [2, 3, 4, 5] and [r["step"] for r in hist] == [1, 2, 3, 4, 5]
    assert train(cfg, tmp_path, progress=False) == []  # a finished run has nothing left to do


def test_resume_with_another_config_is_refused(tmp_path, tok_path):
    cfg, train, _ = _setup("GRN-T", tok_path)
    train(cfg, tmp_path, max_steps=1, progress=False)
    cfg.lr *= 2
    with pytest.raises(ValueError, match="another training config"):
        train(cfg, tmp_path, progress=False)


def test_clip_frames_needs_a_video_dataset_with_that_many_frames(tmp_path):
    from grn.errors import UserError

    cfg = TokenizerTrainConfig(tokenizer="hbq-mnist", tokenizer_overrides={"enc_dim": 8, "dec_dim": 8}, steps=1,
                               batch_size=2, lpips_weight=0.0, gan_weight=0.0, clip_frames=5)
    with pytest.raises(UserError, match="clip_frames: 5 .*dataset 'mnist' has images"):
        train_tokenizer(cfg, tmp_path / "a", progress=False)
    cfg = TokenizerTrainConfig(tokenizer="hbq-mmnist-video", tokenizer_overrides={"enc_dim": 4, "dec_dim": 4},
                               dataset="moving_mnist", steps=1, batch_size=2, lpips_weight=0.0, gan_weight=0.0,
                               clip_frames=21)
    with pytest.raises(UserError, match="clip_frames: 21 .* has 17 frames per video"):
        train_tokenizer(cfg, tmp_path / "b", progress=False)
    for i, bad in enumerate(("5", 5.0, 6, True)):  # a string, a float, not 1 + 4k, a bool: one message
        cfg = TokenizerTrainConfig(tokenizer="hbq-mmnist-video", tokenizer_overrides={"enc_dim": 4, "dec_dim": 4},
                                   dataset="moving_mnist", steps=1, batch_size=2, lpips_weight=0.0, gan_weight=0.0,
                                   clip_frames=bad)
        with pytest.raises(UserError, match=r"an integer 1 \+ 4k"):
            train_tokenizer(cfg, tmp_path / f"c{i}", progress=False)

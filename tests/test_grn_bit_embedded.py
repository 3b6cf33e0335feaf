"""The embedded text-to-image GRN_bit (grn/grn_bit.py with its own word-level text encoder, size GRN-bit-T2I-T,
grn/configs/t2i_mnist_bit.yaml): the GRN objective on bits learns, the one training loop trains and exports it,
load_model reads it back, and the harness's text adapter samples it with an embedded HBQ tokenizer. Tiny sizes:
plumbing and learning signal only, no quality number."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from grn import registry
from grn.grn_bit import EMBEDDED_SIZES, GRN_BIT_SIZES, GRNBit
from grn.grn_bit_sampling import PRESETS, trained_grid

ROOT = Path(__file__).resolve().parents[1]
# head_dim 16 (rotary pairs 2/2/4); hidden 64 is the least whose official MLP width (a multiple of 256) is not empty
TINY = {"hidden": 64, "depth": 2, "heads": 4, "text": {"width": 32, "depth": 1, "heads": 2}}


def _model(seed=0) -> GRNBit:
    torch.manual_seed(seed)
    return registry.build_model("GRN-bit-T2I-T", **TINY)


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory):
    from grn.checkpoint import export_tokenizer
    from grn.tokenizer import build_tokenizer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tok") / "tok.pt"
    export_tokenizer(build_tokenizer("hbq-mnist", enc_dim=8, dec_dim=8), path)
    return path


def test_the_embedded_size_is_grn_t2i_t_shaped_and_not_an_official_one():
    from grn.t2i import T2I_GENERATORS

    with torch.device("meta"):
        bit, t2i = registry.build_model("GRN-bit-T2I-T"), T2I_GENERATORS["GRN-T2I-T"]()
    c, t = bit.cfg, t2i.cfg
    assert (c.hidden, c.depth, c.heads) == (t.hidden, t.depth, t.heads) == (128, 4, 4)
    assert c.text == t.text and c.text_channels == t.text.width == 128  # the same word-level encoder
    assert (c.latent_channels, c.rounds, c.grid, c.bits) == (4, 4, 8, 16) and (c.p_mean, c.p_std) == (t.p_mean, t.p_std)
    assert c.text_dropout == t.text_dropout == 0.1
    assert "GRN-bit-T2I-T" not in GRN_BIT_SIZES and set(EMBEDDED_SIZES) <= set(registry.KINDS["grn-bit"].sizes)
    # the released sizes are untouched: no text encoder, no grid, the same state-dict keys
    with torch.device("meta"):
        tiny = registry.build_model("GRN-bit-T")
    assert tiny.cfg.text is None and tiny.cfg.grid is None and tiny.text is None
    assert not any(k.startswith("text.") for k in tiny.state_dict())
    with pytest.raises(ValueError, match="has no text encoder of its own"):
        tiny.tokenize(["the digit 3"])
    with pytest.raises(ValueError, match="must be text_channels"):
        registry.build_model("GRN-bit-T2I-T", text_channels=64)
    with pytest.raises(ValueError, match="empty MLP"):
        registry.build_model("GRN-bit-T2I-T", hidden=32, heads=2)


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch_and_train_the_text_encoder():
    m = _model().train()
    tokens = torch.randint(0, 2, (1, 16, 8, 8), generator=torch.Generator().manual_seed(1)).repeat(8, 1, 1, 1)
    ids = m.tokenize(["the digit 3"] * 8)

    def fixed_loss():
        with torch.no_grad():
            return m.loss(tokens, ids, torch.Generator().manual_seed(123)).item()

    before = fixed_loss()
    assert before == pytest.approx(np.log(2), abs=0.05)  # N(0, 0.02) init: near-uniform bits
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for step in range(60):
        loss = m.loss(tokens, ids, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        if step == 0:  # trained jointly: the gradient reaches the word embeddings through text_proj
            assert m.text.embed.weight.grad.abs().sum() > 0 and m.text_proj.weight.grad.abs().sum() > 0
        opt.step()
    assert fixed_loss() < 0.5 * before


def test_loss_draws_t_corruption_and_prompt_dropout_as_the_grn_objective():
    """pt = t ~ sigmoid(N(p_mean, p_std)); each bit kept with probability t, else a uniform bit; prompts dropped to
    the empty prompt with probability text_dropout: the draws of grn/t2i.py's loss, in its order."""
    from grn.generator import corrupt_labels, sample_clean_fraction
    from grn.sampling import drop_condition

    m = _model()
    seen = {}
    tokens = torch.randint(0, 2, (64, 16, 8, 8))
    ids = m.tokenize(["the digit 7"] * 64)

    def spy(z, t, ids):
        seen.update(z=z, t=t, ids=ids)
        return m(z, t, ids=ids)

    m.loss(tokens, ids, torch.Generator().manual_seed(5), forward=spy)
    g = torch.Generator().manual_seed(5)
    t = sample_clean_fraction(64, -0.8, 0.8, g)
    assert torch.equal(seen["t"], t)
    assert torch.equal(seen["z"], corrupt_labels(tokens, t, 2, g))
    assert torch.equal(seen["ids"], drop_condition(m, ids, 0.1, g))
    dropped = (seen["ids"] == m.null_condition(ids)).all(1)
    assert 0 < int(dropped.sum()) < 20  # about 10% of 64
    # kept fraction per sample follows t (flipped bits: half of the corrupted ones)
    flipped = (seen["z"] != tokens).float().mean((1, 2, 3))
    assert torch.allclose(flipped, (1 - t) / 2, atol=0.08)


def _train_tiny(tok_path, out, steps=3):
    from grn.train import GeneratorTrainConfig, train_generator

    cfg = GeneratorTrainConfig(generator="GRN-bit-T2I-T", generator_overrides=TINY, tokenizer=str(tok_path),
                               dataset_kwargs={"split": "reference"}, steps=steps, batch_size=8, warmup_steps=1,
                               ema_decays=(0.9,), checkpoint_every=steps, log_every=1)
    return train_generator(cfg, out, progress=False)


def test_the_generator_loop_trains_it_and_the_checkpoint_round_trips_through_load_model(tmp_path, tok_path):
    from grn.checkpoint import load_model
    from grn.fileio import sha256_file

    hist = _train_tiny(tok_path, tmp_path)
    assert [r["step"] for r in hist] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in hist)
    record = torch.load(tmp_path / "generator.pt", weights_only=False)
    assert (record["kind"], record["name"]) == ("grn-bit", "GRN-bit-T2I-T")
    assert record["tokenizer_sha256"] == sha256_file(tok_path) and record["config"]["text"]["encoder"] == "words"
    assert registry.KINDS["grn-bit"].suite_refusal(record) == ""  # trained here: suites may run it
    back = load_model(tmp_path / "generator.pt")
    assert isinstance(back, GRNBit) and back.integrity == "content_sha256 verified" and not back.training
    assert back.cfg.text.vocab == _model().cfg.text.vocab and back.cfg.grid == 8
    ema = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["emas"][0]
    assert all(torch.equal(back.state_dict()[k], v.to(torch.bfloat16).to(v.dtype)) for k, v in ema.items())
    z, t, ids = torch.randint(0, 2, (2, 16, 8, 8)), torch.tensor([0.3, 0.6]), back.tokenize(["seven", "the digit 1"])
    with torch.no_grad():
        assert back(z, t, ids=ids).shape == (2, 2, 16, 8, 8)


def _suite(tmp_path, tok_path, ckpt, **model) -> Path:
    entry = {"name": "bit", "adapter": "grn-bit", "checkpoint": str(ckpt), "tokenizer": str(tok_path),
             "prompts": ["the digit 3", "a handwritten five"], "sampler": {"preset": "GRN-2B-t2i", "steps": 4},
             **model}
    data = {"name": "tiny_bit", "datasets": {"ref": {"name": "mnist", "split": "reference"}}, "models": [entry],
            "metrics": {"entropy": {}}, "reference": {"dataset": "ref"}, "n_samples": 4, "batch_size": 4}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tok_path):
    out = tmp_path_factory.mktemp("bit")
    _train_tiny(tok_path, out, steps=2)
    return out / "generator.pt"


def test_the_text_adapter_samples_images_deterministically_per_seed(tmp_path, tok_path, trained):
    from grn_eval.adapters import T2IAdapter, build_adapter
    from grn_eval.preflight import check_suite
    from grn_eval.suite import load_suite

    suite = load_suite(_suite(tmp_path, tok_path, trained))
    checked = check_suite(suite)["bit"]
    adapter = build_adapter(suite.models[0], suite.path.parent, torch.device("cpu"), checked)
    assert isinstance(adapter, T2IAdapter) and adapter.num_classes == 2
    # the preset's sampling settings on the grid the model was trained on (not the released 64 x 64)
    assert adapter.sampler == dataclasses.replace(PRESETS["GRN-2B-t2i"], steps=4, height=8, width=8)
    labels, seeds = np.array([0, 1, 0, 1, 1]), [11, 12, 13, 14, 15]
    images, trace = adapter.generate(labels, seeds)
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    assert trace["nfe"] == [2] * 4 and len(trace["entropy_bits"][0]) == 4  # CFG against the empty prompt; M planes
    again, _ = adapter.generate(labels, seeds)
    assert np.array_equal(images, again)
    other, _ = adapter.generate(labels, [21, 22, 23, 24, 25])
    assert not np.array_equal(images, other)
    assert adapter.asked_digits(labels).tolist() == [3, 5, 3, 5, 5]
    prov = adapter.provenance()
    assert prov["kind"] == "grn-bit" and prov["sampler"]["height"] == 8 and prov["text_encoder"]["encoder"] == "words"
    # a grid the suite names is kept
    suite = load_suite(_suite(tmp_path, tok_path, trained, sampler={"steps": 2, "height": 4, "width": 4}))
    small = build_adapter(suite.models[0], suite.path.parent, torch.device("cpu"))
    assert small.generate(np.array([0]), [1])[0].shape == (1, 16, 16, 3)


def test_a_suite_runs_it_end_to_end(tmp_path, tok_path, trained):
    from grn_eval.adapters import build_adapter
    from grn_eval.runner import run_suite
    from grn_eval.suite import load_suite

    res = run_suite(load_suite(_suite(tmp_path, tok_path, trained)), run_dir=tmp_path / "run", progress=False)
    steps = next(r for r in res["rows"] if r["metric"] == "mean_steps")
    assert steps["value"] == 4 and res["models"]["bit"]["kind"] == "grn-bit"
    # entropy-guided steps, calibrated on the model through its own sampler
    suite = load_suite(_suite(tmp_path, tok_path, trained, entropy={"warmup": 1, "t_min": 2, "t_max": 4,
                                                                    "calibrate": True}))
    adapter = build_adapter(suite.models[0], suite.path.parent, torch.device("cpu"))
    adapter.prepare(n_calibration=6)
    assert not adapter.calibrate and adapter.entropy.t_max == 4
    _, trace = adapter.generate(np.array([0, 1]), [1, 2])
    assert all(2 <= n <= 4 for n in trace["steps_used"])


def test_released_records_need_the_umt5_folder_in_suites(tmp_path, tok_path):
    from grn.checkpoint import checkpoint_record
    from grn.fileio import save_torch
    from grn_eval.model_check import ModelError
    from grn_eval.preflight import check_suite
    from grn_eval.suite import load_suite

    torch.manual_seed(0)
    official = registry.build_model("GRN-bit-T", latent_channels=4)  # no text encoder, no tokenizer recorded
    save_torch(checkpoint_record(official, "GRN-bit-T", official.state_dict()), tmp_path / "official.pt")
    with pytest.raises(ModelError, match="model 'bit': text_encoder: 'official.pt' is a released GRN_bit model"):
        check_suite(load_suite(_suite(tmp_path, tok_path, tmp_path / "official.pt")))
    with pytest.raises(Exception, match="HBQ_tokenizer_64dim_M4"):  # and its bits decode with no HBQ of other d x M
        registry.KINDS["grn-bit"].decode(None, official, torch.zeros(1, 16, 8, 8, dtype=torch.long))


def test_trained_grid_only_fills_a_grid_the_suite_left_out():
    m = _model()
    base = PRESETS["GRN-2B-t2i"]
    assert trained_grid(m, base).grid == (1, 8, 8)
    assert trained_grid(m, base, {"height"}) == base
    with torch.device("meta"):
        assert trained_grid(registry.build_model("GRN-bit-T"), base) == base

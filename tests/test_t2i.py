"""Text-to-image: captions, the text-conditioned GRN, its sampler, prompt accuracy, the T2I suites."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from grn import captions as C
from grn.sampling import PRESETS, guided_logits, refine, sample_generators, schedule
from grn.t2i import T2IGRN, T2IConfig, attention_mask
from grn.text import TextConfig

ROOT = Path(__file__).resolve().parents[1]


def _model(seed=0, noisy=True) -> T2IGRN:
    """A small T2I model; `noisy`: random head weights for non-trivial logits (the head starts at zero)."""
    torch.manual_seed(seed)
    tc = TextConfig(vocab=C.vocabulary(), max_len=12, width=32, depth=1, heads=2)
    m = T2IGRN(T2IConfig(hidden=32, depth=2, heads=2, bottleneck=16, grid=8, latent_channels=4, text=tc)).eval()
    if noisy:
        with torch.no_grad():
            m.head.weight.normal_(0, 0.3)
    return m


# ---------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------


def _bar(width: int, shear: float = 0.0) -> np.ndarray:
    """A 20-pixel vertical bar `width` pixels wide in a 32x32 uint8 image; shear > 0 leans its top right."""
    img = np.zeros((32, 32, 3), np.uint8)
    for r in range(6, 26):
        c0 = int(round(16 - width / 2 + shear * (16 - r)))
        img[r, c0 : c0 + width] = 255
    return img


def test_measured_thickness_and_slant_of_synthetic_bars():
    thin, thick = C.measure(_bar(2), 1), C.measure(_bar(6), 1)
    assert thin.thickness == pytest.approx(2, abs=0.5) and thick.thickness == pytest.approx(6, abs=0.5)
    assert (thin.thickness_word, thick.thickness_word) == ("thin", "thick")
    right, left, upright = C.measure(_bar(3, 0.5), 1), C.measure(_bar(3, -0.5), 1), C.measure(_bar(3), 1)
    assert right.slant == pytest.approx(np.degrees(np.arctan(0.5)), abs=3) and right.slant_word == "slanted right"
    assert left.slant < 0 and left.slant_word == "slanted left"
    assert abs(upright.slant) < 1 and upright.slant_word == "upright"


def test_captions_are_deterministic_and_use_the_vocabulary():
    from grn.data import load_mnist

    d = load_mnist("reference")
    a, b = C.mnist_captions(d.images[:60], d.labels[:60]), C.mnist_captions(d.images[:60], d.labels[:60])
    assert a == b and len(set(a)) > 20
    vocab = set(C.vocabulary())
    for cap, label in zip(a, d.labels[:60]):
        assert set(C.words(cap)) <= vocab and C.asked_digit(cap) == label
    assert C.asked_digit("the digit 7, thick strokes") == 7 and C.asked_digit("a thin stroke") is None
    assert all(C.asked_digit(p) == i % 10 for i, p in enumerate(C.digit_prompts()))


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------


def test_attention_mask_text_sees_only_text():
    m = attention_mask(torch.tensor([[True, True, False]]), 2)[0, 0]  # 3 text slots (one padding), 2 others
    want = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 0, 1, 1], [1, 1, 0, 1, 1]])
    assert torch.equal(m, want.bool())


def test_text_states_do_not_depend_on_image_or_t():
    m = _model()
    ids = m.tokenize(["a handwritten seven", "the digit 3, thick strokes, slanted left"])
    z1, z2 = torch.randint(0, 2, (2, 16, 8, 8)), torch.randint(0, 2, (2, 16, 8, 8))
    with torch.no_grad():
        h1 = m.sequence(z1, torch.tensor([0.1, 0.5]), ids)
        h2 = m.sequence(z2, torch.tensor([0.9, 0.3]), ids)
        n = ids.shape[1]
        assert torch.equal(h1[:, :n], h2[:, :n])
        assert not torch.allclose(h1[:, n:], h2[:, n:])
        other = m(z1, torch.tensor([0.1, 0.5]), m.tokenize(["the digit 1", "zero"]))
        assert not torch.allclose(other, m(z1, torch.tensor([0.1, 0.5]), ids))  # and the image does read the text


def test_cfg_scale_one_equals_plain_conditional():
    m = _model(1)
    ids = m.tokenize(["a handwritten two", "the digit 5", "nine"])
    z, t = torch.randint(0, 2, (3, 16, 8, 8)), torch.tensor([0.2, 0.5, 0.8])
    with torch.no_grad():
        lc, guided = guided_logits(m, z, t, ids, 1.0, (0.0, 2.0))
        assert torch.equal(guided, m(z, t, ids))
    base = dataclasses.replace(PRESETS["GRN-2B-t2i"], steps=6)
    a, ta = refine(m, ids, dataclasses.replace(base, guidance=1.0), sample_generators([1, 2, 3]))
    b, tb = refine(m, ids, dataclasses.replace(base, guidance_interval=(2.0, 3.0)), sample_generators([1, 2, 3]))
    assert torch.equal(a, b) and ta.nfe == tb.nfe == [1] * 6
    c, tc = refine(m, ids, base, sample_generators([1, 2, 3]))
    assert tc.nfe == [2] * 6 and not torch.equal(a, c)
    # a negative prompt replaces the empty prompt in the unconditional stream
    neg = m.tokenize(["the digit 8"] * 3)
    d, _ = refine(m, ids, base, sample_generators([1, 2, 3]), uncond=neg)
    assert not torch.equal(c, d)


class TextOracle(torch.nn.Module):
    """Text ids -> all mass on a target bit code (sample j's prompt is 'the digit j'); uniform for the
    empty prompt."""

    def __init__(self, targets):
        super().__init__()
        self.targets, self.token_classes, self.bit_rounds = targets, 2, 4
        self.token_shape = tuple(targets.shape[1:])
        self.digit_id = 4  # <bos> the digit DIGIT ...: position 3 holds the digit's id

    def null_condition(self, ids):
        return torch.zeros_like(ids)

    def forward(self, z, t, ids):
        j = (ids[:, 3] - self.digit_id).clamp(min=0)
        onehot = torch.nn.functional.one_hot(self.targets[j], 2).permute(0, 4, 1, 2, 3).float()
        return onehot * 50.0 * (ids[:, :1] != 0).view(-1, 1, 1, 1, 1)


def test_t2i_sampler_oracle_returns_the_target_bits():
    from grn.text import WordTokenizer

    tok = WordTokenizer(C.vocabulary(), 12)
    ids = tok([f"the digit {d}" for d in range(4)])
    assert (ids[:, 3] - 4).tolist() == [0, 1, 2, 3]  # digits are the first vocabulary entries
    targets = torch.randint(0, 2, (4, 16, 8, 8))
    z, trace = refine(TextOracle(targets), ids, dataclasses.replace(PRESETS["GRN-2B-t2i"], steps=8),
                      sample_generators(range(4)))
    assert torch.equal(z, targets)
    assert len(trace.entropy_bits) == 8 and len(trace.entropy_bits[0]) == 4  # per step, per bit plane
    assert max(max(e) for e in trace.entropy_bits) < 1e-6  # the oracle is certain
    assert trace.t[-1] == pytest.approx(0.999, abs=0.01)  # realised kept fraction fed at the last step


def test_t2i_cosine_schedule_is_the_official_one():
    t = schedule(50, "t2i-cosine")
    i = torch.arange(49)
    want = 0.999 * (1 - torch.cos(torch.pi / 2 * ((i + 1) / 49).clamp(max=1.0)))
    assert torch.allclose(t[1:50], want.double()) and t[0] == 0 and t[-1] == 1 and t[-2] == pytest.approx(0.999)
    with pytest.raises(ValueError):
        schedule(1, "t2i-cosine")


def test_loss_learns_and_checkpoint_round_trip(tmp_path):
    from grn.checkpoint import checkpoint_record, load_model
    from grn.fileio import save_torch

    m = _model(2, noisy=False).train()
    tokens = torch.randint(0, 2, (1, 16, 8, 8)).repeat(8, 1, 1, 1)
    ids = m.tokenize(["the digit 3"] * 8)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for step in range(60):
        loss = m.loss(tokens, ids, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * np.log(2)
    save_torch(checkpoint_record(m, "GRN-T2I-T", m.state_dict()), tmp_path / "t2i.pt")
    back = load_model(tmp_path / "t2i.pt")
    assert back.kind == "grn-t2i" and back.cfg.text.vocab == m.cfg.text.vocab
    with torch.no_grad():
        z, t = torch.randint(0, 2, (2, 16, 8, 8)), torch.tensor([0.3, 0.6])
        assert torch.allclose(back(z, t, ids[:2]), m.eval()(z, t, ids[:2]), atol=0.05)  # bf16 weights


def test_open_clip_text_tower_is_frozen_and_outside_the_state_dict():
    import open_clip

    from grn.text import OpenCLIPTextEncoder

    torch.manual_seed(0)
    tiny = open_clip.CLIP(embed_dim=16, vision_cfg={"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                                                    "head_width": 16},
                          text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1})
    cfg = TextConfig(encoder="open_clip")
    enc = OpenCLIPTextEncoder(cfg, tower=tiny, tokenizer=lambda p: open_clip.get_tokenizer("ViT-B-32")(p))
    m = T2IGRN(T2IConfig(hidden=32, depth=1, heads=2, bottleneck=16, grid=8, latent_channels=4, text=cfg),
               text_encoder=enc)
    assert not any(k.startswith("text.") for k in m.state_dict())
    ids = m.tokenize(["a photo of the digit seven"])
    assert ids.shape == (1, 16) and m.null_condition(ids)[0, :2].tolist() == [49406, 49407]
    assert m(torch.randint(0, 2, (1, 16, 8, 8)), torch.tensor([0.5]), ids).shape == (1, 2, 16, 8, 8)


def test_open_clip_text_without_weights_names_the_file(tmp_path, monkeypatch):
    from grn.text import CLIP_ENV, find_open_clip_file

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv(CLIP_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="open_clip_pytorch_model.bin.*laion/CLIP-ViT-B-32"):
        find_open_clip_file("ViT-B-32", "laion2b_s34b_b79k")


# ---------------------------------------------------------------------------------------
# Prompt accuracy and the suites
# ---------------------------------------------------------------------------------------


def test_prompt_accuracy_known_answer():
    from grn_eval.metrics.prompt_accuracy import prompt_accuracy

    images = np.zeros((6, 32, 32, 3), np.uint8)
    images[:, 0, 0, 0] = [3, 3, 7, 1, 0, 9]  # the fake classifier reads its answer off one pixel
    res = prompt_accuracy(lambda im: im[:, 0, 0, 0].astype(np.int64), images, np.array([3, 4, 7, 1, -1, 2]))
    assert res["accuracy"] == pytest.approx(3 / 5) and res["n_scored"] == 5 and res["n_unscored"] == 1
    assert res["per_digit"] == {1: 1.0, 2: 0.0, 3: 1.0, 4: 0.0, 7: 1.0} and res["chance"] == 0.1


def test_t2i_adapter_suite_end_to_end(tmp_path):
    """A tiny T2I checkpoint through the harness: prompts, prompt accuracy (a tiny classifier), the trace."""
    from grn.checkpoint import checkpoint_record, export_tokenizer
    from grn.fileio import save_torch
    from grn.tokenizer import build_tokenizer
    from grn_eval import digit_classifier as dc
    from grn_eval.runner import run_suite
    from grn_eval.suite import load_suite

    export_tokenizer(build_tokenizer("hbq-mnist", enc_dim=8, dec_dim=8), tmp_path / "tok.pt")
    m = _model(3)
    save_torch(checkpoint_record(m, "GRN-T2I-T", m.state_dict()), tmp_path / "t2i.pt")
    dc.save({"kind": dc.KIND, "state_dict": dc.DigitCNN().state_dict(), "train_config": {"seed": 0},
             "train_split": "mnist/train", "train_n": 0,
             "heldout": {"split": "mnist/reference", "n": 1000, "accuracy": 0.5}}, tmp_path / "clf.pt")
    (tmp_path / "s.yaml").write_text(
        "name: tiny_t2i\ndatasets: {ref: {name: mnist, split: reference}}\n"
        "models:\n"
        "  - {name: t2i, adapter: grn-t2i, checkpoint: t2i.pt, tokenizer: tok.pt,\n"
        "     prompts: [the digit 3, a handwritten five], negative_prompt: the digit 8,\n"
        "     sampler: {preset: GRN-2B-t2i, steps: 4}}\n"
        "metrics: {prompt_accuracy: {classifier: clf.pt}, entropy: {}}\nreference: {dataset: ref}\n"
        "n_samples: 4\nbatch_size: 4\n")
    res = run_suite(load_suite(tmp_path / "s.yaml"), run_dir=tmp_path / "run", progress=False)
    acc = next(r for r in res["rows"] if r["metric"] == "prompt_accuracy")
    assert 0 <= acc["value"] <= 1 and acc["extra"]["n_scored"] == 4 and sorted(acc["extra"]["per_digit"]) == [3, 5]
    assert acc["extra"]["classifier_heldout_accuracy"] == 0.5 and len(acc["protocol"]["classifier"]["sha256"]) == 64
    assert res["models"]["t2i"]["prompts"] == ["the digit 3", "a handwritten five"]
    steps = next(r for r in res["rows"] if r["metric"] == "mean_steps")
    assert steps["value"] == 4 and len(steps["extra"]["per_step"]["entropy_bits"][0]) == 4


def test_prompts_outside_the_vocabulary_are_refused(tmp_path):
    from grn.checkpoint import checkpoint_record, export_tokenizer
    from grn.fileio import save_torch
    from grn.tokenizer import build_tokenizer
    from grn_eval.adapters import build_adapter
    from grn_eval.suite import load_suite

    export_tokenizer(build_tokenizer("hbq-mnist", enc_dim=8, dec_dim=8), tmp_path / "tok.pt")
    m = _model()
    save_torch(checkpoint_record(m, "GRN-T2I-T", m.state_dict()), tmp_path / "t2i.pt")
    (tmp_path / "s.yaml").write_text(
        "name: x\ndatasets: {ref: {name: mnist, split: reference}}\nmodels:\n"
        "  - {name: t2i, adapter: grn-t2i, checkpoint: t2i.pt, tokenizer: tok.pt, prompts: [a photo of a cat]}\n"
        "metrics: {entropy: {}}\nreference: {dataset: ref}\n")
    with pytest.raises(ValueError, match=r"outside the text encoder's vocabulary \['photo', 'of', 'cat'\]"):
        build_adapter(load_suite(tmp_path / "s.yaml").models[0], tmp_path, torch.device("cpu"))


def test_t2i_suites_validate():
    from grn_eval.suite import load_suite

    mnist = load_suite(ROOT / "suites" / "t2i_mnist.yaml", check_assets=False)
    assert {"fid", "prompt_accuracy", "latency", "entropy"} <= set(mnist.metrics)
    clip = load_suite(ROOT / "suites" / "t2i_clip.yaml", check_assets=False)
    assert set(clip.metrics) == {"clip_score"} and all(m.adapter == "grn-t2i" for m in clip.models)


def test_t2i_clip_without_weights_ends_with_one_clear_message(tmp_path, monkeypatch, capsys):
    from grn_eval import weights as W
    from grn_eval.cli import main

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv(W.CLIP_ENV, raising=False)
    try:
        W.find_clip_weights("ViT-B-32", "laion2b_s34b_b79k")
        pytest.skip("real CLIP weights are present on this machine")
    except W.WeightsAbsent:
        pass
    code = main(["run", str(ROOT / "suites" / "t2i_clip.yaml"), "--run-dir", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "clip:ViT-B-32/laion2b_s34b_b79k" in err[0] and "GRN_CLIP_WEIGHTS" in err[0]
    assert not (tmp_path / "run" / "samples").exists()  # it stopped before sampling anything

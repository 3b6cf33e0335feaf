import pytest
import torch

from grn.backbone import apply_rope, rope_2d_tables
from grn.generator import GENERATORS, build_generator

OFFICIAL_COUNTS = {"GRN-B": 130_664_448, "GRN-L": 458_287_328, "GRN-H": 951_727_424, "GRN-G": 2_006_146_448}


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_official_parameter_counts_on_meta(name):
    with torch.device("meta"):
        model = build_generator(name)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == OFFICIAL_COUNTS[name]


def test_official_key_layout_for_grn_b():
    from pathlib import Path

    tsv = Path(__file__).resolve().parent / "data" / "grn_official_layouts.tsv"  # keys and shapes, no values
    official = {r[1]: r[2] for r in (line.rstrip("\n").split("\t") for line in tsv.open()) if r[0] == "GRN_B"}
    with torch.device("meta"):
        mine = {k.removeprefix("net."): str(tuple(v.shape)) for k, v in build_generator("GRN-B").state_dict().items()}
    assert mine == official


@pytest.mark.parametrize("layout", ["ind", "bit"])
def test_forward_shapes_and_uniform_start(layout):
    model = build_generator("GRN-T", layout=layout)
    d, h, w = model.token_shape
    k = model.token_classes
    tokens = torch.randint(0, k, (3, d, h, w))
    logits = model(tokens, torch.rand(3), torch.tensor([0, 1, 10]))
    assert logits.shape == (3, k, d, h, w)
    assert torch.all(logits == 0)  # zero-initialised output layer: uniform logits
    assert model.loss(tokens, torch.tensor([1, 2, 3]), torch.Generator().manual_seed(0)).item() == \
        pytest.approx(torch.log(torch.tensor(float(k))).item(), rel=1e-6)


def test_onehot_is_class_major():
    model = build_generator("GRN-T")
    tokens = torch.zeros(1, 4, 8, 8, dtype=torch.long)
    tokens[0, 2, 0, 0] = 5  # channel 2 has class 5 at (0, 0)
    x = model.onehot(tokens)
    assert x.shape == (1, 16 * 4, 8, 8)
    assert x[0, 5 * 4 + 2, 0, 0] == 1 and x[0, 0 * 4 + 2, 0, 0] == 0 and x[0, 0 * 4 + 1, 0, 0] == 1


def test_corruption_rate_matches_one_minus_t():
    model = build_generator("GRN-T")
    tokens = torch.randint(0, 16, (4, 4, 8, 8)).repeat(50, 1, 1, 1)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0]).repeat(50)
    z = model.corrupt(tokens, t, torch.Generator().manual_seed(0))
    changed = (z != tokens).float().reshape(50, 4, -1).mean((0, 2))
    # P(changed) = (1 - t) (1 - 1/K)
    want = (1 - torch.tensor([0.0, 0.25, 0.5, 1.0])) * (1 - 1 / 16)
    assert torch.allclose(changed, want, atol=0.02)


def test_t_distribution_is_logit_normal():
    model = build_generator("GRN-T")
    t = model.sample_t(200_000, torch.Generator().manual_seed(0))
    logit = torch.log(t / (1 - t))
    assert logit.mean().item() == pytest.approx(-0.8, abs=0.01) and logit.std().item() == pytest.approx(0.8, abs=0.01)


def test_rope_prefix_is_identity_and_rotation_preserves_norm():
    cos, sin = rope_2d_tables(32, 4, num_prefix=3)
    x = torch.randn(2, 1, 3 + 16, 32)
    y = apply_rope(x, cos, sin)
    assert torch.allclose(y[:, :, :3], x[:, :, :3])
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)


def test_rope_relative_position():
    """q.k after RoPE depends only on the offset between the two positions (per axis)."""
    cos, sin = rope_2d_tables(16, 6)
    q, k = torch.randn(16), torch.randn(16)

    def score(i, j):
        return (apply_rope(q, cos[i], sin[i]) * apply_rope(k, cos[j], sin[j])).sum()

    # positions are row-major on a 6x6 grid: (r, c) -> 6r + c
    assert score(6 * 1 + 1, 6 * 2 + 3) == pytest.approx(score(6 * 3 + 2, 6 * 4 + 4).item(), abs=1e-5)


def test_registry_small_sizes_exist():
    assert {"GRN-T", "GRN-S"} <= set(GENERATORS)
    assert build_generator("GRN-S").cfg.num_classes == 10


def test_generator_training_resumes_exactly(tmp_path):
    from grn.checkpoint import export_tokenizer, load_model
    from grn.tokenizer import build_tokenizer
    from grn.train import GeneratorTrainConfig, train_generator

    tok_path = tmp_path / "tok.pt"
    export_tokenizer(build_tokenizer("hbq-mnist", enc_dim=8, dec_dim=8), tok_path)
    cfg = GeneratorTrainConfig(generator="GRN-T", generator_overrides={"hidden": 32, "depth": 2, "heads": 2},
                               tokenizer=str(tok_path), dataset_kwargs={"split": "reference"}, steps=6,
                               batch_size=8, warmup_steps=2, checkpoint_every=3, log_every=1)
    full = train_generator(cfg, tmp_path / "full", progress=False)
    part = train_generator(cfg, tmp_path / "resumed", max_steps=3, progress=False)
    part += train_generator(cfg, tmp_path / "resumed", progress=False)
    assert [r["loss"] for r in part] == [r["loss"] for r in full]
    a, b = load_model(tmp_path / "full" / "generator.pt"), load_model(tmp_path / "resumed" / "generator.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.cfg.hidden == 32 and a.token_shape == (4, 8, 8)


def test_training_step_learns_a_fixed_code():
    """A few steps on one repeated code drive the loss well below log K."""
    torch.manual_seed(0)
    model = build_generator("GRN-T", hidden=64, depth=2, heads=2)
    tokens = torch.randint(0, 16, (1, 4, 8, 8)).repeat(16, 1, 1, 1)
    y = torch.zeros(16, dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(60):
        loss = model.loss(tokens, y, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * torch.log(torch.tensor(16.0)).item()

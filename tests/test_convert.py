from pathlib import Path

import pytest
import torch

from grn.convert import CheckpointError, load_official_generator, official_generator_state

LAYOUT = Path(__file__).resolve().parents[2] / "shared" / "docs" / "reference" / "grn_official_layouts.tsv"


def _shape(text: str) -> tuple[int, ...]:
    """'(768, 256)' -> (768, 256)."""
    return tuple(int(x) for x in text.strip("()").split(",") if x.strip())


def _official_like_state(name: str) -> dict:
    """A random state dict with exactly the official keys and shapes (from the layout file when present)."""
    if LAYOUT.exists():
        tag = name.replace("-", "_")
        rows = [line.rstrip("\n").split("\t") for line in LAYOUT.open() if line.startswith(tag + "\t")]
        shapes = {r[1]: _shape(r[2]) for r in rows}
    else:
        from grn.generator import build_generator

        with torch.device("meta"):
            shapes = {k.removeprefix("net."): tuple(v.shape) for k, v in build_generator(name).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    return {f"net.{k}": torch.randn(s, generator=g) * 0.02 for k, s in shapes.items()}


def test_grn_b_official_layout_converts_strictly_and_runs(tmp_path):
    state = _official_like_state("GRN-B")
    ckpt = {"model": state, "model_ema1": state, "model_ema2": state, "epoch": 600}
    torch.save(ckpt, tmp_path / "official.pth")
    model = load_official_generator(tmp_path / "official.pth", "GRN-B")
    assert torch.equal(model.state_dict()["net.pos_embed"], state["net.pos_embed"])
    with torch.no_grad():
        logits = model(torch.randint(0, 16, (1, 16, 16, 16)), torch.tensor([0.5]), torch.tensor([3]))
    assert logits.shape == (1, 16, 16, 16, 16) and torch.isfinite(logits).all()


def test_wrong_shape_and_missing_key_name_the_key():
    state = _official_like_state("GRN-B")
    bad = dict(state)
    bad["net.blocks.3.attn.qkv.weight"] = torch.zeros(10, 10)
    with pytest.raises(CheckpointError, match=r"blocks\.3\.attn\.qkv\.weight.*shape"):
        load_official_generator({"model_ema1": bad}, "GRN-B")
    missing = {k: v for k, v in state.items() if k != "net.final_layer.linear.bias"}
    with pytest.raises(CheckpointError, match="final_layer.linear.bias"):
        load_official_generator({"model_ema1": missing}, "GRN-B")
    with pytest.raises(CheckpointError, match="model_ema2"):
        official_generator_state({"model": state}, "ema2")


@pytest.mark.parametrize("name", ["GRN-L", "GRN-H", "GRN-G"])
def test_large_official_layouts_match_on_meta(name):
    from grn.generator import build_generator

    with torch.device("meta"):
        mine = {k: tuple(v.shape) for k, v in build_generator(name).state_dict().items()}
    if not LAYOUT.exists():
        pytest.skip("official layout file not present beside the checkout")
    tag = name.replace("-", "_")
    rows = [line.rstrip("\n").split("\t") for line in LAYOUT.open() if line.startswith(tag + "\t")]
    assert {f"net.{r[1]}": _shape(r[2]) for r in rows} == mine

"""The sampling cost model against torch's FLOP counter on the real backbone."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from grn.flops import backbone_flops, step_flops
from grn.generator import build_generator


@pytest.mark.parametrize("kw", [{"hidden": 64, "depth": 3, "heads": 2}, {"hidden": 96, "depth": 2, "heads": 4}])
def test_flops_from_the_config_equal_torchs_count(kw):
    model = build_generator("GRN-T", **kw).eval()
    cfg = model.net.cfg
    b = 3
    x = torch.zeros(b, cfg.in_channels, cfg.grid, cfg.grid)
    # the math attention kernel is made of matrix products the counter sees (a fused CPU kernel is not counted)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.net(x, torch.full((b,), 0.5), torch.zeros(b, dtype=torch.long))
    parts = backbone_flops(cfg)
    assert counter.get_total_flops() == b * sum(parts.values())
    assert parts["attention_scores_values"] > 0 and parts["mlp"] > parts["modulation"] > 0
    assert step_flops(cfg, guided=True) == 2 * step_flops(cfg, guided=False)


def test_in_context_tokens_lengthen_the_later_blocks():
    model = build_generator("GRN-T", hidden=64, depth=4, heads=2).eval()
    cfg = model.net.cfg
    assert cfg.in_context_len > 0 and cfg.in_context_start < cfg.depth
    from dataclasses import replace

    without = backbone_flops(replace(cfg, in_context_len=0))
    assert backbone_flops(cfg)["mlp"] > without["mlp"]

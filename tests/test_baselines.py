import math

import pytest
import torch

from grn.backbone import KVCache
from grn.baselines.ar import ARSamplerConfig, build_ar, decode_raster, sample_ar
from grn.baselines.flow import FlowSamplerConfig, build_flow, integrate, sample_flow
from grn.baselines.maskgit import MaskGITSamplerConfig, build_maskgit, gamma, masked_count, sample_maskgit
from grn.sampling import sample_generators


def _perturb(model, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        model.net.final_layer.linear.weight.normal_(0, 0.3)
        for b in model.net.blocks:
            b.adaLN_modulation[-1].weight.normal_(0, 0.05)
            b.adaLN_modulation[-1].bias.normal_(0, 0.05)
    return model.eval()


def test_ar_kv_cache_logits_equal_full_forward():
    model = _perturb(build_ar(hidden=32, depth=2, heads=2))
    tokens = torch.randint(0, 16, (2, 4, 8, 8))
    y = torch.tensor([3, 7])
    full = model(tokens, y)  # [B, L, d, K] teacher forced
    seq = tokens.flatten(2).transpose(1, 2)
    cache = KVCache(model.cfg.depth)
    t = torch.ones(2)
    for i in range(seq.shape[1]):
        x = model._inputs(seq)[..., i : i + 1]
        step = model._logits(model.net.forward_causal(x, t, y, start=i, cache=cache))[:, -1]
        assert torch.allclose(step, full[:, i], atol=1e-5), i


def test_ar_causality():
    model = _perturb(build_ar(hidden=32, depth=2, heads=2))
    tokens = torch.randint(0, 16, (1, 4, 8, 8))
    y = torch.tensor([1])
    a = model(tokens, y)
    changed = tokens.clone()
    changed[0, :, 5, 3] = (changed[0, :, 5, 3] + 1) % 16  # raster position 43
    b = model(changed, y)
    assert torch.allclose(a[:, :44], b[:, :44], atol=1e-6) and not torch.allclose(a[:, 44:], b[:, 44:])


def test_ar_sampling_with_and_without_cache_agree():
    model = _perturb(build_ar(hidden=32, depth=2, heads=2))
    y = torch.tensor([1, 2])
    cfg = ARSamplerConfig(temperature=1.0, top_k=8, guidance=1.5)
    a, tr = sample_ar(model, y, cfg, sample_generators([1, 2]))
    b, _ = decode_raster(model, y, cfg, sample_generators([1, 2]), use_cache=False)
    assert torch.equal(a, b) and a.shape == (2, 4, 8, 8) and len(tr.nfe) == 64


def test_maskgit_schedule_is_followed_exactly():
    model = _perturb(build_maskgit(hidden=32, depth=2, heads=2))
    steps, n = 8, 4 * 8 * 8
    z, tr = sample_maskgit(model, torch.tensor([0, 5]), MaskGITSamplerConfig(steps=steps, guidance=2.0),
                           sample_generators([1, 2]))
    want = [math.floor(math.cos(math.pi / 2 * (s + 1) / steps) * n + 1e-9) for s in range(steps)]
    assert [m[0] for m in tr.masked] == want and [m[1] for m in tr.masked] == want
    assert want[-1] == 0 and (z != model.mask_id).all()
    assert masked_count(0, 1, n) == 0 and float(gamma(0.0)) == 1.0


def test_maskgit_never_changes_unmasked_elements():
    model = _perturb(build_maskgit(hidden=32, depth=2, heads=2))
    seen = []
    forward = model.forward

    def recording(tokens, t, y):
        seen.append(tokens.clone())
        return forward(tokens, t, y)

    model.forward = recording
    final, _ = sample_maskgit(model, torch.tensor([4]), MaskGITSamplerConfig(steps=6), sample_generators([3]))
    states = seen + [final]
    for before, after in zip(states, states[1:]):
        unmasked = before != model.mask_id
        assert torch.equal(after[unmasked], before[unmasked])  # once unmasked, fixed for good


def test_maskgit_loss_scores_only_masked_elements():
    model = build_maskgit(hidden=32, depth=2, heads=2)
    tokens = torch.randint(0, 16, (4, 4, 8, 8))
    loss = model.loss(tokens, torch.tensor([0, 1, 2, 3]), torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(math.log(16), rel=1e-5)  # zero-initialised output


@pytest.mark.parametrize("method,steps,last_euler,tol,nfe", [("euler", 1000, True, 3e-3, 1000),
                                                              ("heun", 200, False, 1e-4, 400),
                                                              ("heun", 200, True, 1e-3, 399)])
def test_flow_integrates_a_linear_field_to_its_closed_form(method, steps, last_euler, tol, nfe):
    a = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    x0 = torch.tensor([[1.0, 2.0, -0.5]], dtype=torch.float64)
    x1, tr = integrate(lambda x, t: a * x, x0, steps, method, last_step_euler=last_euler)
    assert torch.allclose(x1, x0 * torch.exp(a), rtol=tol)  # dx/dt = a x  ->  x(1) = x(0) e^a
    assert sum(tr.nfe) == nfe


def test_heun_is_second_order():
    a = torch.tensor([1.5], dtype=torch.float64)
    x0 = torch.ones(1, 1, dtype=torch.float64)

    def err(n):
        return (integrate(lambda x, t: a * x, x0, n, "heun", last_step_euler=False)[0] - torch.exp(a)).abs().item()

    assert 3.6 < err(20) / err(40) < 4.4


def test_flow_constant_field_is_exact_and_sampling_runs():
    x1, _ = integrate(lambda x, t: torch.ones_like(x), torch.zeros(1, 2), 7, "euler")
    assert torch.allclose(x1, torch.ones(1, 2))
    model = _perturb(build_flow(hidden=32, depth=2, heads=2))
    guided = FlowSamplerConfig(steps=5, guidance=2.0)
    z, tr = sample_flow(model, torch.tensor([1, 2]), guided, sample_generators([1, 2]))
    assert z.shape == (2, 4, 8, 8) and torch.isfinite(z).all()
    again, _ = sample_flow(model, torch.tensor([1, 2]), guided, sample_generators([1, 2]))
    assert torch.equal(z, again)
    loss = model.loss(torch.rand(2, 4, 8, 8) * 2 - 1, torch.tensor([1, 2]), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", ["AR-T", "MaskGIT-T", "Flow-T"])
def test_baselines_train_resume_and_load(tmp_path, name):
    """Each baseline trains through the shared loop (exact resume) and reloads from its checkpoint."""
    from grn.checkpoint import export_tokenizer, load_model
    from grn.tokenizer import build_tokenizer
    from grn.train import GeneratorTrainConfig, train_generator

    export_tokenizer(build_tokenizer("hbq-mnist", enc_dim=8, dec_dim=8), tmp_path / "tok.pt")
    cfg = GeneratorTrainConfig(generator=name, generator_overrides={"hidden": 32, "depth": 2, "heads": 2},
                               tokenizer=str(tmp_path / "tok.pt"), dataset_kwargs={"split": "reference"}, steps=4,
                               batch_size=8, warmup_steps=1, checkpoint_every=2, log_every=1)
    full = train_generator(cfg, tmp_path / "a", progress=False)
    part = train_generator(cfg, tmp_path / "b", max_steps=2, progress=False)
    part += train_generator(cfg, tmp_path / "b", progress=False)
    assert [r["loss"] for r in part] == [r["loss"] for r in full]
    model = load_model(tmp_path / "a" / "generator.pt")
    assert model.kind == {"AR-T": "ar", "MaskGIT-T": "maskgit", "Flow-T": "flow"}[name]


def test_entropy_metric_aggregates_baseline_traces():
    """AR and MaskGIT traces carry only the conditional entropy: the entropy-vs-steps metric keeps that
    series, weights it by the active samples and drops the GRN-only series."""
    from grn_eval.metrics import entropy

    gens = sample_generators(range(3))
    y = torch.tensor([0, 1, 2])
    tiny = dict(hidden=32, depth=2, heads=2)
    for model, cfg, sample in ((_perturb(build_maskgit(**tiny)), MaskGITSamplerConfig(steps=4), sample_maskgit),
                               (_perturb(build_ar(**tiny)), ARSamplerConfig(), sample_ar)):
        _, trace = sample(model, y, cfg, gens)
        trace = trace.as_dict()
        agg = entropy.aggregate([trace, trace])
        assert set(agg["per_step"]) == {"entropy_cond", "active"}
        assert agg["per_step"]["entropy_cond"] == pytest.approx(trace["entropy_cond"])
        assert agg["per_step"]["active"] == [6] * len(trace["entropy_cond"])
        assert agg["mean_steps"] == trace["steps_used"][0]
    _, trace = integrate(lambda x, t: torch.zeros_like(x), torch.zeros(2, 3), steps=5)
    agg = entropy.aggregate([trace.as_dict()])
    assert set(agg["per_step"]) == {"active"} and agg["mean_steps"] == 5

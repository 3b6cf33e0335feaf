import math

import pytest
import torch

from grn.generator import build_generator
from grn.sampling import (
    PRESETS,
    EntropyConfig,
    SamplerConfig,
    calibrate_entropy_schedule,
    entropy_steps,
    refine,
    sample_generators,
    schedule,
)


class Oracle(torch.nn.Module):
    """Puts all probability on a target code (and can be made uncertain per class)."""

    def __init__(self, target, k, spread=None):
        super().__init__()
        self.target, self.token_classes = target, k
        self.token_shape = tuple(target.shape[1:])
        self.null_class = 10
        self.spread = spread  # per-class logit scale: lower = higher entropy

    def forward(self, z, t, y):
        scale = 50.0 if self.spread is None else self.spread[y.clamp(max=9)].view(-1, 1, 1, 1, 1)
        onehot = torch.nn.functional.one_hot(self.target[y.clamp(max=9)], self.token_classes).permute(0, 4, 1, 2, 3)
        return onehot.float() * scale


def _noisy_model(seed=0, **kw):
    torch.manual_seed(seed)
    model = build_generator("GRN-T", **{"hidden": 64, "depth": 2, "heads": 2, **kw}).eval()
    with torch.no_grad():  # non-trivial logits for sampler tests
        model.net.final_layer.linear.weight.normal_(0, 0.3)
        for b in model.net.blocks:
            b.adaLN_modulation[-1].weight.normal_(0, 0.02)
    return model


def test_schedules():
    assert schedule(4).tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    c = schedule(50, "cosine")
    assert c[0] == 0 and c[-1] == 1 and (c.diff() > 0).all()


def test_presets_are_the_released_settings():
    b = PRESETS["GRN-B-imagenet"]
    assert (b.steps, b.temperature, b.guidance, b.guidance_interval) == (50, 1.31, 2.35, (0.44, 1.0))
    assert PRESETS["GRN-L-imagenet"].guidance_interval[0] == 0.42


@pytest.mark.parametrize("monotone", [False, True])
def test_oracle_returns_the_target_code(monotone):
    target = torch.randint(0, 16, (10, 4, 8, 8))
    model = Oracle(target, 16)
    y = torch.arange(10)
    z, trace = refine(model, y, SamplerConfig(steps=10, monotone=monotone), sample_generators(range(10)))
    assert torch.equal(z, target)
    assert trace.steps_used == [10] * 10


def test_cfg_scale_one_equals_plain_conditional():
    model = _noisy_model()
    y = torch.tensor([1, 2, 3])
    a, _ = refine(model, y, SamplerConfig(steps=6, guidance=1.0, temperature=1.1), sample_generators([5, 6, 7]))
    # guidance outside its interval is plain conditional sampling too
    b, tb = refine(model, y, SamplerConfig(steps=6, guidance=3.0, guidance_interval=(2.0, 3.0), temperature=1.1),
                   sample_generators([5, 6, 7]))
    assert torch.equal(a, b) and tb.nfe == [1] * 6
    # guidance active at some steps is counted twice and changes the result
    c, tc = refine(model, y, SamplerConfig(steps=6, guidance=3.0, guidance_interval=(0.4, 0.6), temperature=1.1),
                   sample_generators([5, 6, 7]))
    assert tc.nfe == [1, 1, 1, 2, 1, 1]  # only t = 0.5 lies inside (0.4, 0.6)
    assert not torch.equal(a, c)


def test_guidance_formula_with_scale_one_is_the_conditional():
    from grn.sampling import guided_logits

    model = _noisy_model()
    z = torch.randint(0, 16, (2, 4, 8, 8))
    t, y = torch.tensor([0.5, 0.7]), torch.tensor([1, 2])
    lc, guided = guided_logits(model, z, t, y, 3.0, (0.0, 0.6))  # sample 0 guided, sample 1 not
    lu = model(z, t, torch.tensor([10, 10]))
    assert torch.allclose(guided[0], lu[0] + 3.0 * (lc[0] - lu[0]), atol=1e-5)
    assert torch.allclose(guided[1], lc[1], atol=1e-6)


def test_deterministic_and_batch_independent():
    model = _noisy_model(1)
    cfg = SamplerConfig(steps=8, guidance=2.0, guidance_interval=(0.3, 1.0), temperature=1.2)
    y = torch.tensor([3, 1, 4, 1])
    a, _ = refine(model, y, cfg, sample_generators([11, 12, 13, 14]))
    b, _ = refine(model, y, cfg, sample_generators([11, 12, 13, 14]))
    assert torch.equal(a, b)
    alone, _ = refine(model, y[2:3], cfg, sample_generators([13]))
    assert torch.equal(alone[0], a[2])
    other, _ = refine(model, torch.tensor([9, 4]), cfg, sample_generators([99, 13]))
    assert torch.equal(other[1], a[2])


def test_trace_shows_refinement():
    model = _noisy_model(2)
    _, tr = refine(model, torch.tensor([0, 1]), SamplerConfig(steps=10), sample_generators([1, 2]))
    assert len(tr.entropy_cond) == 10 and all(0 <= e <= 1 for e in tr.entropy_cond)
    assert sum(tr.rewritten) > 0 and sum(tr.erased) > 0
    for f, k, r, e in zip(tr.filled, tr.kept, tr.rewritten, tr.erased):
        assert 0 <= f + k + r <= 1 and 0 <= e <= 1
    assert tr.filled[-1] + tr.kept[-1] + tr.rewritten[-1] == pytest.approx(1.0)  # the last step keeps all


def test_monotone_never_erases_or_rewrites():
    model = _noisy_model(3)
    _, tr = refine(model, torch.tensor([0, 1]), SamplerConfig(steps=10, monotone=True), sample_generators([1, 2]))
    assert sum(tr.erased) == 0 and sum(tr.rewritten) == 0


def test_entropy_steps_are_clipped_and_monotone():
    cfg = EntropyConfig()
    e = torch.linspace(0, 1, 1001, dtype=torch.float64)
    n = entropy_steps(e, cfg)
    assert n.min() == cfg.t_min - cfg.warmup and n.max() == cfg.t_max - cfg.warmup
    assert (n.diff() >= 0).all()
    assert entropy_steps(torch.tensor([0.93], dtype=torch.float64), cfg).item() == round(700 * 0.93 - 620)


def test_entropy_guided_sampling_counts_and_order():
    """Samples with higher-entropy predictions never get fewer steps; all counts lie in [Tmin, Tmax]."""
    target = torch.randint(0, 16, (10, 4, 8, 8))
    spread = torch.linspace(0.05, 6.0, 10)  # class 0 nearly uniform (high entropy) ... class 9 confident
    model = Oracle(target, 16, spread)
    cal = EntropyConfig(warmup=2, k=60, b=-20, t_min=6, t_max=20)
    y = torch.arange(10)
    z, tr = refine(model, y, SamplerConfig(), sample_generators(range(10)), entropy=cal)
    steps = torch.tensor(tr.steps_used)
    ent = torch.tensor(tr.decision_entropy)
    assert steps.min() >= cal.t_min and steps.max() <= cal.t_max
    order = torch.argsort(ent)
    assert (steps[order].diff() >= 0).all()
    assert steps.max() > steps.min()
    assert tr.active[-1] < 10  # finished samples left the batch


def test_calibration_spreads_steps():
    e = torch.rand(500, generator=torch.Generator().manual_seed(0)) * 0.1 + 0.5
    cfg = calibrate_entropy_schedule(e)
    n = entropy_steps(e.double(), cfg) + cfg.warmup
    assert n.min() == 20 and n.max() == 50 and 25 < n.float().mean() < 45
    assert math.isfinite(cfg.k)


def test_decision_entropies_match_the_full_run():
    from grn.sampling import decision_entropies

    model = _noisy_model(4)
    y = torch.tensor([0, 5])
    probe = decision_entropies(model, y, SamplerConfig(), sample_generators([3, 4]), warmup=3, t_max=12)
    _, tr = refine(model, y, SamplerConfig(), sample_generators([3, 4]),
                   entropy=EntropyConfig(warmup=3, k=1.0, b=0.0, t_min=4, t_max=12))
    assert probe.tolist() == tr.decision_entropy


class TwoLogits(torch.nn.Module):
    """Conditional logits 2 and unconditional logits 1 everywhere: guided logits can be worked by hand."""

    null_class = 10

    def forward(self, z, t, y):
        return (1.0 + (y != self.null_class).float()).view(-1, 1, 1, 1, 1).expand(len(y), 2, *z.shape[1:])


def _guided(t, scale, interval):
    from grn.sampling import guided_logits

    z = torch.zeros(len(t), 1, 1, 1, dtype=torch.long)
    return guided_logits(TwoLogits(), z, torch.tensor(t), torch.zeros(len(t), dtype=torch.long), scale,
                         interval)[1][:, 0, 0, 0, 0].tolist()


def test_cfg_interval_with_lower_bound_zero_guides_at_t_zero():
    # official: (t < hi) & ((lo == 0) | (t > lo)); guided = lu + w (lc - lu) = 1 + w
    assert _guided([0.0, 0.3, 0.5, 0.7], 3.0, (0.0, 0.5)) == [4.0, 4.0, 2.0, 2.0]
    # any other lower bound is exclusive: t = 0 and t = lo are not guided
    assert _guided([0.0, 0.2, 0.3], 3.0, (0.2, 0.5)) == [2.0, 2.0, 4.0]


def test_negative_lower_bound_is_power_cos_guidance():
    # lc + scale * (1 - cos(pi t^(-lo))) / 2 * (lc - lu) = 2 + scale * ramp; the upper bound is unused
    assert _guided([0.0, 0.5, 1.0], 2.0, (-1.0, 0.1)) == pytest.approx([2.0, 3.0, 4.0], abs=1e-6)
    ramp = (1 - math.cos(math.pi * 0.25)) / 2  # lo = -2: t^2 = 0.25 at t = 0.5
    assert _guided([0.5], 2.0, (-2.0, 1.0)) == pytest.approx([2.0 + 2.0 * ramp], abs=1e-6)


def test_power_cos_sampling_runs_with_one_pass_at_t_zero():
    model = _noisy_model(4)
    _, tr = refine(model, torch.tensor([1, 2]), SamplerConfig(steps=4, guidance=2.0, guidance_interval=(-1.0, 1.0)),
                   sample_generators([1, 2]))
    assert tr.nfe == [1, 2, 2, 2]  # the ramp is 0 at t = 0: the guided logits are the conditional ones


def test_entropy_step_count_is_rounded_in_float32_as_the_official_code():
    cfg = EntropyConfig()  # k 700, b -620: float32(0.945) * 700 is exactly 661.5 in float32
    e = torch.tensor([0.945, 0.915], dtype=torch.float32)
    assert (700 * e.double() - 620).tolist() == pytest.approx([41.499995, 20.500015], abs=1e-6)  # float64 would
    assert entropy_steps(e, cfg).tolist() == [42, 20]  # float32: 41.5 and 20.5, rounded half to even
    assert entropy_steps(e.double(), cfg).tolist() == [42, 20]


@pytest.mark.parametrize("guidance_interval", [(0.0, 1.0), (0.3, 1.0)])
def test_continuous_batching_gives_every_sample_the_same_result(guidance_interval):
    """slots < B: a finished sample's slot goes to the next waiting one. Every sample owns its generator and
    its step counter, so its tokens, step count and decision entropy are those of the plain run; the trace's
    entry k still averages the samples at their k-th step (same counts, same network evaluations)."""
    from dataclasses import replace

    model = _noisy_model(5)
    y = torch.arange(12) % 10
    cfg = SamplerConfig(steps=12, guidance=2.0, guidance_interval=guidance_interval, temperature=1.1)
    from grn.sampling import decision_entropies

    ent = calibrate_entropy_schedule(decision_entropies(model, y, cfg, sample_generators(range(100, 112)), 2, 12),
                                     t_min=6, t_max=12, warmup=2)
    plain, tp = refine(model, y, cfg, sample_generators(range(12)), entropy=ent)
    assert len(set(tp.steps_used)) > 1  # samples finish at different steps
    seen = []
    cont, tc = refine(model, y, replace(cfg, slots=4), sample_generators(range(12)), entropy=ent,
                      callback=lambda s: seen.append(s["active"].numel()))
    assert torch.equal(plain, cont) and tp.steps_used == tc.steps_used
    assert tp.decision_entropy == pytest.approx(tc.decision_entropy, abs=1e-6)
    assert max(seen) == 4 and seen.count(4) > len(seen) // 2  # the batch stays full while samples wait
    assert tc.active == tp.active  # per step: how many samples took their k-th step
    nfe_plain, nfe_cont = (sum(n * a for n, a in zip(tr.nfe, tr.active)) for tr in (tp, tc))
    # a call guides all its samples or none; mixing steps inside and outside a guidance interval in one call
    # costs the unguided ones their second stream too
    assert nfe_cont == nfe_plain if guidance_interval == (0.0, 1.0) else nfe_cont >= nfe_plain
    assert tc.entropy_cond == pytest.approx(tp.entropy_cond, abs=1e-6)
    fixed, _ = refine(model, y, replace(cfg, slots=5), sample_generators(range(12)))  # fixed steps, ragged slots
    assert torch.equal(fixed, refine(model, y, cfg, sample_generators(range(12)))[0])

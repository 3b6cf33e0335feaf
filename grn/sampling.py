"""Global-refinement sampling, the entropy-guided step schedule, and the per-step trace.

The loop of the official C2I sampler ("the artist repaints the whole canvas every step"):

    Z  = one fixed random code for the whole run (uniform labels)
    z  = Z
    for each step (t -> t_next):
        logits = model(z, t, y)              # predict every element
        logits = CFG(logits) / temperature   # guidance only while t is inside the CFG interval
        pred   ~ softmax(logits)             # sample every element
        keep   = U(0, 1) < t_next            # a FRESH mask each step
        z      = where(keep, pred, Z)        # elsewhere: back to the same random code Z

Because the mask is redrawn every step, an element kept before may be erased (back to Z)
or kept with a different value (rewritten): global refinement. The last step (t_next = 1)
keeps everything. `monotone=True` is the ablation: once kept, always kept with its value
(MaskGIT-style), everything else equal.

Conditioning `y` is whatever the model takes: class indices [B] (grn/generator.py) or text ids
[B, L] (grn/t2i.py). The unconditional CFG stream uses the null class, the model's empty prompt
(`model.null_condition`) or an explicit `uncond` batch (a negative prompt).

The official T2I/T2V sampler differs in three settings, all available here (preset
"GRN-2B-t2i"): the `t2i-cosine` keep schedule, guidance at every step, and `realised_t`
(the next step is told the fraction of elements actually kept, not the scheduled one).

Randomness is per sample: each sample owns a `torch.Generator`, so a sample's result does not
depend on what else is in its batch (beyond floating-point reduction order in the network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from grn.errors import check_finite

# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplerConfig:
    steps: int = 50
    schedule: str = "linear"  # 'linear': t_i = i/S; 'cosine': t_i = 1 - cos(pi/2 * i/S); 't2i-cosine': below
    temperature: float = 1.0
    cfg: float = 1.0
    # guidance where lo < t < hi, from t = 0 when lo == 0 (official rule); lo < 0: power-cos guidance
    cfg_interval: tuple[float, float] = (0.0, 1.0)
    monotone: bool = False  # ablation: MaskGIT-style monotone keeping
    realised_t: bool = False  # feed the realised kept fraction as the next t (official T2I sampler)


@dataclass(frozen=True)
class EntropyConfig:
    """Entropy-guided step counts (official ImageNet GRN-B constants by default)."""

    warmup: int = 5  # wp: steps on the fixed schedule before the decision
    k: float = 700.0
    b: float = -620.0
    t_min: int = 20  # total steps, including the warm-up
    t_max: int = 50


# The released ImageNet 256 evaluation settings.
PRESETS: dict[str, SamplerConfig] = {
    "GRN-B-imagenet": SamplerConfig(steps=50, temperature=1.31, cfg=2.35, cfg_interval=(0.44, 1.0)),
    "GRN-L-imagenet": SamplerConfig(steps=50, temperature=1.3, cfg=2.0, cfg_interval=(0.42, 1.0)),
    # GRN-2B text-to-image (t2i_infer.py / grn.py@2a3353d): 50 steps, CFG 3.0 at every step (the code
    # guides where t >= 0: a lower bound of 0 includes t = 0, and t never reaches 2), temperature 1.1
    "GRN-2B-t2i": SamplerConfig(steps=50, schedule="t2i-cosine", temperature=1.1, cfg=3.0, cfg_interval=(0.0, 2.0),
                                realised_t=True),
}
T2I_MAX_KEEP = 0.999  # the official T2I schedule never keeps more than this fraction before the last step


def schedule(steps: int, kind: str = "linear") -> torch.Tensor:
    """Clean fractions t_0 = 0 < ... < t_S = 1 (float64)."""
    u = torch.arange(steps + 1, dtype=torch.float64) / steps
    if kind == "linear":
        return u
    if kind == "cosine":
        t = 1 - torch.cos(math.pi / 2 * u)
        t[-1] = 1.0  # exactly: the last step keeps everything
        return t
    if kind == "t2i-cosine":
        # official T2I: after step i keep 0.999 (1 - cos(pi/2 min(1, (i+1)/(S-1)))), so the second-to-last
        # step already reaches 0.999; the last step's sampled predictions are the output (t_S = 1 here)
        if steps < 2:
            raise ValueError("the t2i-cosine schedule needs at least 2 steps")
        v = (torch.arange(steps + 1, dtype=torch.float64) / (steps - 1)).clamp(max=1.0)
        t = T2I_MAX_KEEP * (1 - torch.cos(math.pi / 2 * v))
        t[-1] = 1.0
        return t
    raise ValueError(f"unknown schedule '{kind}'; allowed: 'linear', 'cosine', 't2i-cosine'")


def sample_generators(seeds, device="cpu") -> list[torch.Generator]:
    """One generator per sample from integer seeds (e.g. derived from (suite seed, sample index))."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


# ---------------------------------------------------------------------------------------
# Trace
# ---------------------------------------------------------------------------------------


@dataclass
class Trace:
    """Per step (means over the active samples' elements) and per sample."""

    t: list[float] = field(default_factory=list)  # mean input clean fraction
    entropy_cond: list[float] = field(default_factory=list)  # normalised entropy of the conditional p
    entropy_guided: list[float] = field(default_factory=list)  # ... of the sampled (guided, tempered) p
    filled: list[float] = field(default_factory=list)  # random before, prediction now
    kept: list[float] = field(default_factory=list)  # prediction before and now, same value
    rewritten: list[float] = field(default_factory=list)  # prediction before and now, new value
    erased: list[float] = field(default_factory=list)  # prediction before, random again now
    active: list[int] = field(default_factory=list)  # samples still refining
    nfe: list[int] = field(default_factory=list)  # network evaluations (per sample, CFG counts 2)
    steps_used: list[int] = field(default_factory=list)  # per sample
    decision_entropy: list[float] = field(default_factory=list)  # per sample (entropy-guided only)
    # `bit` layout only, per step and per bit plane (MSB first): conditional entropy, and the fraction
    # of elements whose value changed from the step's input to its output
    entropy_bits: list[list[float]] = field(default_factory=list)
    changed_bits: list[list[float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def element_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) / log K per element. logits [B, K, ...] -> [B, ...]."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1) / math.log(logits.shape[1])


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over elements of H(softmax(logits)) / log K, per sample. logits [B, K, ...] -> [B]."""
    return element_entropy(logits).flatten(1).mean(1)


def per_bit_plane(x: torch.Tensor, rounds: int) -> list[float]:
    """Mean of a [B, M*d, h, w] per-element quantity for each bit plane (round-major `bit` layout)."""
    b, md, h, w = x.shape
    return x.float().reshape(b, rounds, md // rounds, h, w).mean(dim=(0, 2, 3, 4)).tolist()


# ---------------------------------------------------------------------------------------
# One refinement step's pieces
# ---------------------------------------------------------------------------------------


def _uniform(gens, shape, device) -> torch.Tensor:
    return torch.stack([torch.rand(shape, generator=g, device=g.device) for g in gens]).to(device)


def _categorical(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling along dim 1 with given uniforms: probs [B, K, ...], u [B, ...]."""
    cdf = probs.cumsum(1)
    idx = (u.unsqueeze(1) > cdf).sum(1)
    return idx.clamp_(max=probs.shape[1] - 1)


def null_condition(model, y: torch.Tensor) -> torch.Tensor:
    """The unconditional stream's conditioning: the model's empty prompt, else its null class."""
    if hasattr(model, "null_condition"):
        return model.null_condition(y)
    return torch.full_like(y, model.null_class)


def in_cfg_interval(t: torch.Tensor, interval) -> torch.Tensor:
    """Where guidance applies (bool per sample), the official rule `(t < hi) & ((lo == 0) | (t > lo))`:
    a lower bound of exactly 0 includes t = 0 (the first step), any other bound is exclusive.
    (MGenAI/GRN `grn/utils_c2i/denoiser.py`, `Denoiser.generate`; JiT's flow sampler uses the same.)"""
    lo, hi = interval
    return (t < hi) & ((t > lo) | (lo == 0))


def power_cos_weight(t: torch.Tensor, lo: float) -> torch.Tensor:
    """The official "power-cos" guidance ramp selected by a negative lower bound: (1 - cos(pi t^(-lo))) / 2,
    0 at t = 0 rising to 1 at t = 1; applied as `lc + scale * w * (lc - lu)` (the upper bound is unused)."""
    return (1 - torch.cos((t ** (-lo)) * math.pi)) / 2


def guided_logits(model, z, t, y, scale, interval, uncond=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditional logits, guided logits) with the official CFG rules (per sample, t = clean fraction):
    lo >= 0: `lu + w (lc - lu)` with w = scale inside the interval (`in_cfg_interval`), else the
    conditional logits alone; lo < 0: power-cos, `lc + scale * power_cos_weight(t, lo) * (lc - lu)`.
    `uncond` (same shape as y) replaces the null condition, e.g. a negative prompt."""
    lo, _ = interval
    if lo < 0:
        ramp = power_cos_weight(t, lo)
        guided = (ramp != 0) & (scale != 0)
    else:
        guided = in_cfg_interval(t, interval) & (scale != 1.0)
    if not bool(guided.any()):
        lc = model(z, t, y)
        return lc, lc
    null = null_condition(model, y) if uncond is None else uncond
    both = model(torch.cat([z, z]), torch.cat([t, t]), torch.cat([y, null]))
    lc, lu = both.chunk(2)
    shape = (-1, *[1] * (lc.dim() - 1))
    if lo < 0:
        return lc, lc + (scale * ramp).view(shape).to(lc.dtype) * (lc - lu)
    w = torch.where(guided, torch.full_like(t, scale), torch.ones_like(t))
    return lc, lu + w.view(shape).to(lc.dtype) * (lc - lu)


# ---------------------------------------------------------------------------------------
# The samplers
# ---------------------------------------------------------------------------------------


@torch.no_grad()
def refine(model, y: torch.Tensor, cfg: SamplerConfig, generators: list[torch.Generator],
           entropy: EntropyConfig | None = None, uncond: torch.Tensor | None = None) -> tuple[torch.Tensor, Trace]:
    """Sample tokens [B, D, h, w] for conditions y (classes [B] or text ids [B, L]). With `entropy`,
    each sample picks its own number of steps after the warm-up (and finished samples leave the
    batch). `uncond` is the unconditional CFG stream's conditioning (default: the null one)."""
    device = y.device
    b = y.shape[0]
    if len(generators) != b:
        raise ValueError(f"need one generator per sample: {len(generators)} for {b} samples")
    shape = tuple(model.token_shape)
    k = model.token_classes
    noise = torch.stack([torch.randint(0, k, shape, generator=g, device=g.device) for g in generators]).to(device)
    z = noise.clone()
    kept_prev = torch.zeros_like(z, dtype=torch.bool)

    # per-sample schedule state
    total = cfg.steps if entropy is None else entropy.t_max
    base = schedule(total, cfg.schedule)
    t = torch.zeros(b, dtype=torch.float64, device=device)  # scheduled clean fraction (drives the loop)
    t_in = t.clone()  # what the network is told: t, or the realised kept fraction (cfg.realised_t)
    rounds = getattr(model, "bit_rounds", None)
    n_steps = torch.full((b,), total, dtype=torch.long, device=device)  # remaining steps after the decision
    temp = torch.full((b,), cfg.temperature, dtype=torch.float64, device=device)
    steps_used = torch.zeros(b, dtype=torch.long, device=device)
    decision_e = torch.full((b,), float("nan"), dtype=torch.float64)
    trace = Trace()

    for i in range(total):
        active = (t < 1.0 - 1e-9).nonzero().squeeze(1)  # finished samples leave the batch
        if active.numel() == 0:
            break
        za, ta, ya = z[active], t[active], y[active]
        ua = None if uncond is None else uncond[active]
        lc, logits = guided_logits(model, za, t_in[active].float(), ya, cfg.cfg, cfg.cfg_interval, ua)
        check_finite([("logits", logits)], f"refinement step {i}")

        if entropy is not None and i == entropy.warmup:
            e = normalized_entropy(lc).double()  # conditional, no guidance, no temperature
            decision_e[active.cpu()] = e.cpu()
            n = entropy_steps(e, entropy)
            n_steps[active] = n
            temp[active] = cfg.temperature * ((n.double() - 10) / 40 + 0.5).clamp(0.5, 1.0)
        if entropy is not None and i >= entropy.warmup:
            wp = entropy.warmup
            t_next = wp / total + (1 - wp / total) * (i + 1 - wp) / n_steps[active].double()
            t_next = t_next.clamp(max=1.0)
        else:
            t_next = base[i + 1].to(device).expand(active.numel())

        ta_ = temp[active].view(-1, *[1] * (logits.dim() - 1)).float()
        probs = torch.softmax(logits.float() / ta_, dim=1)
        gens = [generators[j] for j in active.tolist()]
        pred = _categorical(probs, _uniform(gens, shape, device))
        u_keep = _uniform(gens, shape, device)
        t_b = t_next.view(-1, 1, 1, 1)
        prev_kept, prev_z = kept_prev[active], za
        if cfg.monotone:
            # keep what was kept (with its value) and add new elements to reach t_next in expectation
            add = u_keep < ((t_b - ta.view(-1, 1, 1, 1)) / (1 - ta.view(-1, 1, 1, 1))).clamp(0, 1)
            keep = prev_kept | add
            new_z = torch.where(prev_kept, prev_z, torch.where(keep, pred, noise[active]))
        else:
            keep = u_keep < t_b
            new_z = torch.where(keep, pred, noise[active])
        finished = t_next >= 1.0 - 1e-9
        keep[finished] = True
        new_z[finished] = torch.where(prev_kept[finished], prev_z[finished], pred[finished]) if cfg.monotone \
            else pred[finished]

        n_el = keep.numel()
        trace.t.append(float(t_in[active].mean()))
        trace.entropy_cond.append(float(normalized_entropy(lc).mean()))
        trace.entropy_guided.append(float(normalized_entropy(torch.log(probs.clamp_min(1e-30))).mean()))
        trace.filled.append(float((keep & ~prev_kept).sum()) / n_el)
        trace.kept.append(float((keep & prev_kept & (new_z == prev_z)).sum()) / n_el)
        trace.rewritten.append(float((keep & prev_kept & (new_z != prev_z)).sum()) / n_el)
        trace.erased.append(float((~keep & prev_kept).sum()) / n_el)
        trace.active.append(int(active.numel()))
        trace.nfe.append(2 if logits is not lc else 1)
        if rounds:
            trace.entropy_bits.append(per_bit_plane(element_entropy(lc), rounds))
            trace.changed_bits.append(per_bit_plane(new_z != prev_z, rounds))

        z[active] = new_z
        kept_prev[active] = keep
        t[active] = t_next.to(t.dtype)
        t_in[active] = keep.flatten(1).double().mean(1) if cfg.realised_t else t_next.to(t.dtype)
        steps_used[active] += 1

    trace.steps_used = steps_used.tolist()
    if entropy is not None:
        trace.decision_entropy = decision_e.tolist()
    return z, trace


def entropy_steps(e: torch.Tensor, cfg: EntropyConfig) -> torch.Tensor:
    """Remaining steps after the warm-up: round(clip(k*E + b, Tmin - wp, Tmax - wp)), in the official
    order and in float32 as the official code computes it (float64 moves decisions that fall within
    float32 rounding of a .5 point; torch.round rounds half to even in both)."""
    n = (cfg.k * e.float() + cfg.b).clamp(cfg.t_min - cfg.warmup, cfg.t_max - cfg.warmup)
    return n.round().long()


def calibrate_entropy_schedule(entropies, t_min: int = 20, t_max: int = 50, warmup: int = 5,
                               low_q: float = 0.1, high_q: float = 0.9) -> EntropyConfig:
    """Fit k and b for a new model from a calibration batch's decision entropies.

    The official constants map ImageNet GRN-B's entropy range onto [Tmin, Tmax]; another model
    or dataset has another range. The fit sends the `low_q` quantile of the entropies to Tmin and
    the `high_q` quantile to Tmax (linearly in between, clipped outside), so the step budget
    spreads over the samples instead of saturating at one end.
    """
    e = torch.as_tensor(entropies, dtype=torch.float64).flatten()
    lo, hi = torch.quantile(e, low_q).item(), torch.quantile(e, high_q).item()
    if not hi > lo:
        raise ValueError("calibration entropies have no spread; cannot fit a schedule")
    k = (t_max - t_min) / (hi - lo)
    b = (t_min - warmup) - k * lo
    return EntropyConfig(warmup=warmup, k=k, b=b, t_min=t_min, t_max=t_max)


def decision_entropies(model, y, cfg: SamplerConfig, generators, warmup: int = 5, t_max: int = 50) -> torch.Tensor:
    """The per-sample entropies the entropy-guided sampler decides on (step `warmup` of a `t_max`
    schedule), for calibration. Runs the warm-up plus one closing step only."""
    probe = EntropyConfig(warmup=warmup, k=0.0, b=1.0, t_min=warmup + 1, t_max=t_max)  # N = 1 remaining step
    _, trace = refine(model, y, cfg, generators, entropy=probe)
    return torch.tensor(trace.decision_entropy, dtype=torch.float64)

"""Global-refinement sampling, the entropy-guided step schedule, the per-step trace, and the sampling
primitives every model kind shares (grn/baselines/*.py use them too).

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

Conditioning `y` is whatever the model takes: class indices [B] (grn/generator.py), text ids
[B, L] (grn/t2i.py), or indices into a cache of encoded prompts (GRN_bit, grn/grn_bit_sampling.py).
The unconditional CFG stream uses the null class, the model's empty prompt (`model.null_condition`)
or an explicit `uncond` batch (a negative prompt).

The official T2I/T2V sampler differs in three settings, all available here (preset
"GRN-2B-t2i"): the `t2i-cosine` keep schedule, guidance at every step, and `realised_t`
(the next step is told the fraction of elements actually kept, not the scheduled one).

Every kind's sampler has one signature (as k-diffusion's samplers do), `refine` here and those of
grn/baselines/*.py alike:

    sample(model, cond, sampler, generators, *, entropy=None, uncond=None, callback=None) -> (out, Trace)

`callback(info)` sees each step's info dict ("i", "x": the state after the step, "active": the
samples in the step, "nfe", and what else the kind has); the Trace is filled by the same kind of
callback (a recorder), so observing a run and tracing it are one mechanism.

Randomness is per sample: each sample owns a `torch.Generator`, so a sample's result does not
depend on what else is in its batch (beyond floating-point reduction order in the network).

(Over 400 lines on purpose: besides the GRN sampler this module is the home of the one Trace and of the
primitives every kind samples with; they are to move to a module of their own once this change may add
files to `grn/`, leaving the GRN sampler here.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from grn.errors import check_finite

# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------

SCHEDULES = ("linear", "cosine", "t2i-cosine")  # the keep schedules of `schedule`


@dataclass(frozen=True)
class SamplerConfig:
    steps: int = 50
    schedule: str = "linear"  # 'linear': t_i = i/S; 'cosine': t_i = 1 - cos(pi/2 * i/S); 't2i-cosine': below
    temperature: float = 1.0
    guidance: float = 1.0  # the classifier-free guidance scale (1: no guidance)
    # guidance where lo < t < hi, from t = 0 when lo == 0 (official rule); lo < 0: power-cos guidance
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    monotone: bool = False  # ablation: MaskGIT-style monotone keeping
    realised_t: bool = False  # feed the realised kept fraction as the next t (official T2I sampler)
    # samples in the network at once (None: the whole batch). With entropy-guided steps a finished sample's
    # slot goes to the next waiting one (continuous batching), so the batch stays full; results are the same
    slots: int | None = None


# The ranges a suite may give each SamplerConfig field (Opt keywords of grn_eval/options.py, kept as plain
# data so that grn does not import grn_eval; the type and default come from SamplerConfig itself). The
# baselines' samplers use the same three common ranges.
STEPS, TEMPERATURE, GUIDANCE = {"min": 1}, {"min": 0, "min_exclusive": True}, {"min": 0}
SAMPLER_OPTIONS = {
    "steps": STEPS, "schedule": {"choices": SCHEDULES}, "temperature": TEMPERATURE, "guidance": GUIDANCE,
    # guidance where lo < t < hi; a negative lo selects the official power-cos guidance
    "guidance_interval": {"min": 2, "max": 2, "increasing": True, "item": {}, "why": "[lo, hi]"},
    "monotone": {}, "realised_t": {}, "slots": {"min": 1, "why": "samples in the network at once"},
}


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
    "GRN-B-imagenet": SamplerConfig(steps=50, temperature=1.31, guidance=2.35, guidance_interval=(0.44, 1.0)),
    "GRN-L-imagenet": SamplerConfig(steps=50, temperature=1.3, guidance=2.0, guidance_interval=(0.42, 1.0)),
    # GRN-2B text-to-image (t2i_infer.py / grn.py@2a3353d): 50 steps, CFG 3.0 at every step (the code
    # guides where t >= 0: a lower bound of 0 includes t = 0, and t never reaches 2), temperature 1.1
    "GRN-2B-t2i": SamplerConfig(steps=50, schedule="t2i-cosine", temperature=1.1, guidance=3.0,
                                guidance_interval=(0.0, 2.0), realised_t=True),
}
T2I_MAX_KEEP = 0.999  # the official T2I schedule never keeps more than this fraction before the last step


def schedule(steps: int, name: str = "linear") -> torch.Tensor:
    """Clean fractions t_0 = 0 < ... < t_S = 1 (float64)."""
    u = torch.arange(steps + 1, dtype=torch.float64) / steps
    if name == "linear":
        return u
    if name == "cosine":
        t = 1 - torch.cos(math.pi / 2 * u)
        t[-1] = 1.0  # exactly: the last step keeps everything
        return t
    if name == "t2i-cosine":
        # official T2I: after step i keep 0.999 (1 - cos(pi/2 min(1, (i+1)/(S-1)))), so the second-to-last
        # step already reaches 0.999; the last step's sampled predictions are the output (t_S = 1 here)
        if steps < 2:
            raise ValueError("the t2i-cosine schedule needs at least 2 steps")
        v = (torch.arange(steps + 1, dtype=torch.float64) / (steps - 1)).clamp(max=1.0)
        t = T2I_MAX_KEEP * (1 - torch.cos(math.pi / 2 * v))
        t[-1] = 1.0
        return t
    raise ValueError(f"unknown schedule '{name}'; allowed: {', '.join(repr(s) for s in SCHEDULES)}")


def sample_generators(seeds, device="cpu") -> list[torch.Generator]:
    """One generator per sample from integer seeds (e.g. derived from (suite seed, sample index))."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


# ---------------------------------------------------------------------------------------
# Trace: the one record of a sampling run, whatever the kind
# ---------------------------------------------------------------------------------------


@dataclass
class Trace:
    """Per step (means over the active samples' elements) and per sample. A kind fills the series it
    has (AR and MaskGIT: conditional entropy; flow: NFE only); the others stay empty."""

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
    # videos ([B, D, T', h, w] tokens) only, per step and per latent frame: the same two quantities
    entropy_frames: list[list[float]] = field(default_factory=list)
    changed_frames: list[list[float]] = field(default_factory=list)
    masked: list[list[int]] = field(default_factory=list)  # MaskGIT: per step, per sample, elements still masked

    def as_dict(self) -> dict:
        """The series as a dict; one that a kind does not produce is left out, since the readers
        (grn_eval/metrics/entropy.py: a series missing from any trace is dropped) take a key's
        presence to mean the sampler produces it. The per-step counts are always there."""
        return {k: v for k, v in self.__dict__.items() if v or k in ("active", "nfe", "steps_used")}


def notifier(*callbacks):
    """One step callback calling the given ones in order (None skipped): the recorder, then the caller's."""
    hooks = [c for c in callbacks if c is not None]

    def notify(info: dict) -> None:
        for hook in hooks:
            hook(info)
    return notify


def refuse(kind: str, **given) -> None:
    """Stop a sampler handed settings it does not implement (silently ignoring them would mislabel results)."""
    named = [k for k, v in given.items() if v is not None]
    if named:
        raise ValueError(f"the {kind} sampler does not take {' or '.join(named)}: entropy-guided steps and an "
                         f"explicit unconditional stream are GRN sampler settings")


# ---------------------------------------------------------------------------------------
# Primitives (written once; GRN, AR, MaskGIT and flow sample through them)
# ---------------------------------------------------------------------------------------


def per_sample(draw, generators, device) -> torch.Tensor:
    """Stack one draw per sample, each from its own generator (on that generator's device)."""
    return torch.stack([draw(g) for g in generators]).to(device)


def uniform(generators, shape, device) -> torch.Tensor:
    return per_sample(lambda g: torch.rand(shape, generator=g, device=g.device), generators, device)


def categorical(probs: torch.Tensor, u: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Inverse-CDF sampling along `dim` with given uniforms: probs [..., K (at dim), ...], u without that dim."""
    return (u.unsqueeze(dim) > probs.cumsum(dim)).sum(dim).clamp(max=probs.shape[dim] - 1)


def element_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) / log K per element. logits [B, K, ...] -> [B, ...]."""
    logp = torch.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1) / math.log(logits.shape[1])


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over elements of H(softmax(logits)) / log K, per sample. logits [B, K, ...] -> [B]."""
    return element_entropy(logits).flatten(1).mean(1)


def probs_entropy(p: torch.Tensor, dim: int) -> torch.Tensor:
    """H(p) in nats along `dim` from probabilities (zeros clamped), as the baselines' traces report it."""
    return -(p * p.clamp_min(1e-30).log()).sum(dim)


def per_bit_plane(x: torch.Tensor, rounds: int) -> torch.Tensor:
    """[B, M]: the mean of a [B, M*d, h, w] (or [B, M*d, T, h, w]) per-element quantity per sample and bit plane
    (round-major `bit` layout)."""
    b, md, *rest = x.shape
    return x.float().reshape(b, rounds, md // rounds, *rest).mean(dim=tuple(range(2, x.dim() + 1)))


def per_latent_frame(x: torch.Tensor) -> torch.Tensor:
    """[B, T']: the mean of a [B, D, T', h, w] per-element quantity per sample and latent frame."""
    return x.float().mean(dim=(1, 3, 4))


def null_condition(model, y: torch.Tensor) -> torch.Tensor:
    """The unconditional stream's conditioning: the model's empty prompt, else its null class."""
    if hasattr(model, "null_condition"):
        return model.null_condition(y)
    return torch.full_like(y, model.null_class)


def drop_condition(model, cond: torch.Tensor, p: float, generator=None) -> torch.Tensor:
    """Training for classifier-free guidance: each sample's condition becomes the null one with probability p."""
    drop = torch.rand(len(cond), generator=generator, device=cond.device) < p
    return torch.where(drop.view(-1, *[1] * (cond.dim() - 1)), null_condition(model, cond), cond)


def in_guidance_interval(t: torch.Tensor, interval) -> torch.Tensor:
    """Where guidance applies (bool per sample), the official rule `(t < hi) & ((lo == 0) | (t > lo))`:
    a lower bound of exactly 0 includes t = 0 (the first step), any other bound is exclusive.
    (MGenAI/GRN `grn/utils_c2i/denoiser.py`, `Denoiser.generate`; JiT's flow sampler uses the same.)"""
    lo, hi = interval
    return (t < hi) & ((t > lo) | (lo == 0))


def power_cos_weight(t: torch.Tensor, lo: float) -> torch.Tensor:
    """The official "power-cos" guidance ramp selected by a negative lower bound: (1 - cos(pi t^(-lo))) / 2,
    0 at t = 0 rising to 1 at t = 1; applied as `lc + scale * w * (lc - lu)` (the upper bound is unused)."""
    return (1 - torch.cos((t ** (-lo)) * math.pi)) / 2


def cfg_mix(lc: torch.Tensor, lu: torch.Tensor, w) -> torch.Tensor:
    """Classifier-free guidance `lu + w (lc - lu)` (w a number or a broadcastable tensor)."""
    return lu + w * (lc - lu)


def both_streams(forward, x, t, cond, null) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditional, unconditional) outputs of one network call on the doubled batch."""
    return forward(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null])).chunk(2)


def guide(forward, x, t, cond, null, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditional, guided) outputs with one guidance scale for the whole batch; scale 1 is one plain
    conditional call (the same tensor twice, so `guided is not cond` tells that the step cost 2 NFE)."""
    if scale == 1.0:
        out = forward(x, t, cond)
        return out, out
    lc, lu = both_streams(forward, x, t, cond, null)
    return lc, cfg_mix(lc, lu, scale)


def guided_logits(model, z, t, y, scale, interval, uncond=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditional logits, guided logits) with the official CFG rules (per sample, t = clean fraction):
    lo >= 0: `lu + w (lc - lu)` with w = scale inside the interval (`in_guidance_interval`), else the
    conditional logits alone; lo < 0: power-cos, `lc + scale * power_cos_weight(t, lo) * (lc - lu)`.
    `uncond` (same shape as y) replaces the null condition, e.g. a negative prompt."""
    lo, _ = interval
    if lo < 0:
        ramp = power_cos_weight(t, lo)
        guided = (ramp != 0) & (scale != 0)
    else:
        guided = in_guidance_interval(t, interval) & (scale != 1.0)
    if not bool(guided.any()):
        lc = model(z, t, y)
        return lc, lc
    lc, lu = both_streams(model, z, t, y, null_condition(model, y) if uncond is None else uncond)
    shape = (-1, *[1] * (lc.dim() - 1))
    if lo < 0:
        return lc, lc + (scale * ramp).view(shape).to(lc.dtype) * (lc - lu)
    w = torch.where(guided, torch.full_like(t, scale), torch.ones_like(t))
    return lc, cfg_mix(lc, lu, w.view(shape).to(lc.dtype))


# ---------------------------------------------------------------------------------------
# The GRN sampler in pieces: state, entropy decision, next-t plan, keep step, recorder
# ---------------------------------------------------------------------------------------


@dataclass
class RefineState:
    """The loop's tensors, one row per sample of the batch."""

    noise: torch.Tensor  # Z: the fixed random code an element returns to when it is not kept
    z: torch.Tensor  # the current code
    kept: torch.Tensor  # bool: the element holds a prediction
    t: torch.Tensor  # scheduled clean fraction (float64); drives the loop, 1 = finished
    t_in: torch.Tensor  # what the network is told: t, or the realised kept fraction (sampler.realised_t)
    n_steps: torch.Tensor  # steps after the entropy decision
    temp: torch.Tensor  # temperature (the entropy decision lowers it per sample)
    steps_used: torch.Tensor
    decision_e: torch.Tensor  # the entropy decided on (CPU; NaN until decided)

    @classmethod
    def start(cls, model, generators, device, temperature: float, total: int) -> RefineState:
        shape, k, b = tuple(model.token_shape), model.token_classes, len(generators)
        noise = per_sample(lambda g: torch.randint(0, k, shape, generator=g, device=g.device), generators, device)
        t = torch.zeros(b, dtype=torch.float64, device=device)
        return cls(noise=noise, z=noise.clone(), kept=torch.zeros_like(noise, dtype=torch.bool), t=t, t_in=t.clone(),
                   n_steps=torch.full((b,), total, dtype=torch.long, device=device),
                   temp=torch.full((b,), temperature, dtype=torch.float64, device=device),
                   steps_used=torch.zeros(b, dtype=torch.long, device=device),
                   decision_e=torch.full((b,), float("nan"), dtype=torch.float64))

    def advance(self, active, z, keep, t_next, realised_t: bool) -> None:
        self.z[active] = z
        self.kept[active] = keep
        self.t[active] = t_next.to(self.t.dtype)
        self.t_in[active] = keep.flatten(1).double().mean(1) if realised_t else t_next.to(self.t.dtype)
        self.steps_used[active] += 1


def entropy_temperature(tau: float, n: torch.Tensor) -> torch.Tensor:
    """The temperature of a sample given n remaining steps: tau * clip((n - 10) / 40 + 0.5, 0.5, 1), so
    samples decided to be simple (few steps) sample colder. Copied from the official entropy-guided
    ("complexity_aware") sampler, bytedance/GRN `grn/utils_c2i/denoiser.py`, `Denoiser.generate` (`tau_factor`)."""
    return tau * ((n.double() - 10) / 40 + 0.5).clamp(0.5, 1.0)


def _decide(state: RefineState, active, lc, tau: float, entropy: EntropyConfig) -> None:
    """The entropy decision after the warm-up: steps and temperature per sample."""
    e = normalized_entropy(lc).double()  # conditional, no guidance, no temperature
    state.decision_e[active.cpu()] = e.cpu()
    n = entropy_steps(e, entropy)
    state.n_steps[active] = n
    state.temp[active] = entropy_temperature(tau, n)


def next_t(i: torch.Tensor, state: RefineState, active, base, total: int,
           entropy: EntropyConfig | None) -> torch.Tensor:
    """The clean fraction each active sample reaches at its step i (a tensor: samples may be at different
    steps): the fixed schedule, or after the entropy decision a straight line from the warm-up's end to 1 in
    the sample's own number of steps (official formula and order)."""
    fixed = base.to(state.t.device)[i + 1]
    if entropy is None:
        return fixed
    wp = entropy.warmup
    line = (wp / total + (1 - wp / total) * (i + 1 - wp).double() / state.n_steps[active].double()).clamp(max=1.0)
    return torch.where(i >= wp, line, fixed)


def keep_step(pred, u_keep, t_next, t, kept, z, noise, monotone: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep mask, new code) of the active samples: a fresh mask keeping ~t_next of the predictions, the
    rest back to Z; monotone: what was kept stays with its value, new elements fill up to t_next. A
    sample reaching t_next = 1 keeps everything. Codes [B, D, h, w] or [B, D, T, h, w]."""
    per = (-1, *[1] * (pred.dim() - 1))
    t_b = t_next.view(per)
    if monotone:
        add = u_keep < ((t_b - t.view(per)) / (1 - t.view(per))).clamp(0, 1)
        keep = kept | add
        new_z = torch.where(kept, z, torch.where(keep, pred, noise))
    else:
        keep = u_keep < t_b
        new_z = torch.where(keep, pred, noise)
    finished = t_next >= 1.0 - 1e-9
    keep[finished] = True
    new_z[finished] = torch.where(kept[finished], z[finished], pred[finished]) if monotone else pred[finished]
    return keep, new_z


def _merge(series: list, k: int, value, count: int, before: int):
    """Put one group's mean `value` (of `count` samples) into entry k of a per-step series whose entry already
    averages `before` samples (a first group is stored as it is, so a run without slots is unchanged)."""
    if k == len(series):
        series.append(value)
    elif isinstance(value, list):
        series[k] = [(a * before + v * count) / (before + count) for a, v in zip(series[k], value)]
    else:
        series[k] = (series[k] * before + value * count) / (before + count)


def refinement_recorder(trace: Trace, rounds: int | None):
    """The callback that fills a Trace from each refinement call's info. Entry k of a series is the mean over
    the samples at their k-th step (with continuous batching one call holds samples at different steps):
    each statistic is computed per sample once per call, then averaged per step group."""
    def record(s: dict) -> None:
        keep, before, kept_before, z = s["keep"], s["x_before"], s["kept_before"], s["x"]
        def frac(m):
            return m.flatten(1).float().mean(1)
        per = {"t": s["t"].double(), "entropy_cond": normalized_entropy(s["logits_cond"]),
               "entropy_guided": normalized_entropy(torch.log(s["probs"].clamp_min(1e-30))),
               "filled": frac(keep & ~kept_before), "kept": frac(keep & kept_before & (z == before)),
               "rewritten": frac(keep & kept_before & (z != before)), "erased": frac(~keep & kept_before)}
        if rounds or z.dim() == 5:
            ent = element_entropy(s["logits_cond"])
        if rounds:
            per["entropy_bits"] = per_bit_plane(ent, rounds)
            per["changed_bits"] = per_bit_plane(z != before, rounds)
        if z.dim() == 5:  # a video: per latent frame too
            per["entropy_frames"] = per_latent_frame(ent)
            per["changed_frames"] = per_latent_frame(z != before)
        steps = s["step"]
        groups = sorted(set(steps.tolist()))
        for k in groups:
            rows = slice(None) if len(groups) == 1 else steps == k
            count = int(steps.numel()) if len(groups) == 1 else int(rows.sum())
            seen = trace.active[k] if k < len(trace.active) else 0
            for name, values in per.items():
                mean = values[rows].double().mean(0)
                _merge(getattr(trace, name), k, mean.tolist() if mean.dim() else float(mean), count, seen)
            _merge(trace.nfe, k, s["nfe"], count, seen)
            if k == len(trace.active):
                trace.active.append(count)
            else:
                trace.active[k] += count
    return record


@torch.no_grad()
def refine(model, cond: torch.Tensor, sampler: SamplerConfig, generators: list[torch.Generator], *,
           entropy: EntropyConfig | None = None, uncond: torch.Tensor | None = None,
           callback=None) -> tuple[torch.Tensor, Trace]:
    """Sample tokens [B, D, h, w] for conditions `cond` (classes [B] or text ids [B, L]). With `entropy`,
    each sample picks its own number of steps after the warm-up and finished samples leave the batch; with
    `sampler.slots` < B at most that many samples are in the network at once, and a finished sample's slot
    goes to the next waiting one, in order (continuous batching: every sample owns its generator and its
    step counter, so its result does not depend on when it entered). `uncond` is the unconditional CFG
    stream's conditioning (default: the null one). `callback` gets each call's info: i (the call), step (each
    active sample's own step), active, t (input), logits_cond, probs, x_before, kept_before, keep, x, nfe."""
    device, b = cond.device, cond.shape[0]
    if len(generators) != b:
        raise ValueError(f"need one generator per sample: {len(generators)} for {b} samples")
    shape = tuple(model.token_shape)
    total = sampler.steps if entropy is None else entropy.t_max
    state = RefineState.start(model, generators, device, sampler.temperature, total)
    base = schedule(total, sampler.schedule)
    trace = Trace()
    notify = notifier(refinement_recorder(trace, getattr(model, "bit_rounds", None)), callback)
    slots = b if sampler.slots is None else min(sampler.slots, b)
    admitted = torch.zeros(b, dtype=torch.bool, device=device)
    admitted[:slots] = True

    # every call advances at least one unfinished sample by one step, and each takes at most `total` steps
    for call in range(total * b):
        running = admitted & (state.t < 1.0 - 1e-9)  # finished samples leave the batch
        free = slots - int(running.sum())
        if free > 0:  # their slots go to the next waiting samples
            waiting = (~admitted).nonzero().squeeze(1)[:free]
            admitted[waiting] = True
            running[waiting] = True
        active = running.nonzero().squeeze(1)
        if active.numel() == 0:
            break
        i = state.steps_used[active]  # each sample's own step
        za, ta = state.z[active], state.t[active]
        ua = None if uncond is None else uncond[active]
        lc, logits = guided_logits(model, za, state.t_in[active].float(), cond[active], sampler.guidance,
                                   sampler.guidance_interval, ua)
        lo_i, hi_i = int(i.min()), int(i.max())
        check_finite([("logits", logits)], f"refinement step {lo_i}" + (f" to {hi_i}" if hi_i > lo_i else ""))
        if entropy is not None:
            deciding = i == entropy.warmup
            if bool(deciding.any()):
                _decide(state, active[deciding], lc[deciding], sampler.temperature, entropy)
        t_next = next_t(i, state, active, base, total, entropy)

        temp = state.temp[active].view(-1, *[1] * (logits.dim() - 1)).float()
        probs = torch.softmax(logits.float() / temp, dim=1)
        gens = [generators[j] for j in active.tolist()]
        pred = categorical(probs, uniform(gens, shape, device))
        kept = state.kept[active]
        keep, new_z = keep_step(pred, uniform(gens, shape, device), t_next, ta, kept, za, state.noise[active],
                                sampler.monotone)
        notify({"i": call, "step": i, "active": active, "t": state.t_in[active], "logits_cond": lc,
                "probs": probs, "x_before": za, "kept_before": kept, "keep": keep, "x": new_z,
                "nfe": 2 if logits is not lc else 1})
        state.advance(active, new_z, keep, t_next, sampler.realised_t)

    trace.steps_used = state.steps_used.tolist()
    if entropy is not None:
        trace.decision_entropy = state.decision_e.tolist()
    return state.z, trace


def entropy_steps(e: torch.Tensor, entropy: EntropyConfig) -> torch.Tensor:
    """Remaining steps after the warm-up: round(clip(k*E + b, Tmin - wp, Tmax - wp)), in the official
    order and in float32 as the official code computes it (float64 moves decisions that fall within
    float32 rounding of a .5 point; torch.round rounds half to even in both)."""
    n = (entropy.k * e.float() + entropy.b).clamp(entropy.t_min - entropy.warmup, entropy.t_max - entropy.warmup)
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


def decision_entropies(model, y, sampler: SamplerConfig, generators, warmup: int = 5, t_max: int = 50,
                       sample=None) -> torch.Tensor:
    """The per-sample entropies the entropy-guided sampler decides on (step `warmup` of a `t_max`
    schedule), for calibration. Runs the warm-up plus one closing step only. `sample`: the model kind's
    sampler (default `refine`; GRN_bit's wraps it)."""
    probe = EntropyConfig(warmup=warmup, k=0.0, b=1.0, t_min=warmup + 1, t_max=t_max)  # N = 1 remaining step
    _, trace = (sample or refine)(model, y, sampler, generators, entropy=probe)
    return torch.tensor(trace.decision_entropy, dtype=torch.float64)

"""Sampling GRN_bit (grn/grn_bit.py, the official T2I / T2V GRN) with the one GRN sampler, `grn.sampling.refine`.

`refine` needs a model with `token_shape`, `token_classes` and `model(x, t, cond)`; GRN_bit takes the text as an
`encode_text` cache instead of ids, and its token grid is a sampling setting (the resolution, the video length),
not a model setting. `CachedTextGRNBit` is the small adapter between the two: it holds ONE cache with every
prompt of the run, the conditional ones first and then the unconditional (negative) ones, each encoded once
before the first step, and `refine` conditions on indices into it. Classifier-free guidance therefore doubles
the batch with the uncond indices and both streams read the cached text keys/values, as the official KV cache
't0' (grn.py:554-568); the visual and pt inputs of the two streams are the same (grn.py:610-618).

The official sampler (grn.py:516-710, MGenAI/GRN at 2a3353d; docs/reference/grn_t2iv_architecture.md §10-11),
and where `refine` does the same:

  * uniform random bits drawn once (grn.py:588)                          -> `RefineState.noise`
  * 50 steps (`max_infer_steps`), step s keeps a fresh mask `rand < p_{s+1}` of the sampled bits, the rest back
    to the random bits, p_{s+1} = 0.999 (1 - cos(pi/2 min(1, (s+1)/49))) at snr_shift 1 (grn.py:631-634,
    693-698)                                                             -> schedule 't2i-cosine'
  * the pt of step 0 is 0, of every later step the realised fraction of the previous mask (grn.py:697)
                                                                         -> `realised_t=True`
  * CFG `l_u + cfg (l_c - l_u)` at every step (`cfg_interval_0.0`, grn.py:551-552, 603, 638-642), then / tau,
    softmax, one draw per bit (grn.py:643-648)                           -> guidance interval (0, 2)
  * the output is the last step's sampled bits at every position (grn.py:702-709) -> t_S = 1 keeps everything.

Two differences, both on purpose: every sample owns a seeded generator (the official path applies no seed,
grn.py:541, so it is not reproducible), and the realised fraction is measured per sample (the official batch
is one sample, so it is the same there).

Presets (`PRESETS`): T2I from t2i_infer.py:13-25 (cfg 3.0, tau 1.1, pn 1M, h/w 1 -> a 64 x 64 latent, one
frame) and T2V from t2v_infer.py:33-50 (cfg 4.0, tau 1.0, pn 0.41M, h/w 9/16, 2 s at 16 fps -> 9 latent frames
of 30 x 53). The negative prompt is '' for T2I (grn_pipeline.py:156) and, for T2V, the
quality / style / motion list of t2v_infer.py:3-22 (which also appends a short quality phrase to the prompt,
t2v_infer.py:34); neither text is copied here: the sampler takes the negative prompt encoded, as `uncond`, and
a suite gives its text.

The embedded model (a GRN_bit with a text encoder of its own, `cfg.text`) is conditioned on text ids, as
grn/t2i.py: `cond` / `uncond` may be ids [B, L], encoded once by its encoder, and without `uncond` the
unconditional stream is its empty prompt (its `null_condition`); its default grid is the one it was trained on
(`cfg.grid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from grn.grn_bit import ASPECT_TEMPLATES, GRNBit, TextCache, aspect_template
from grn.sampling import PRESETS as GRN_PRESETS
from grn.sampling import SAMPLER_OPTIONS, EntropyConfig, SamplerConfig, Trace, refine

# The aspect (h / w) templates before the official truncation to 3 decimals: the grid is computed from these
# (dynamic_resolution.py:27-59), the template is looked up truncated (grn_pipeline.py:193-194).
ASPECT_VALUES = (3 / 1, 5 / 2, 2 / 1, 16 / 9, 3 / 2, 4 / 3, 116 / 100, 1, 100 / 116, 3 / 4, 2 / 3, 9 / 16, 1 / 2,
                 2 / 5, 1 / 3)
assert tuple(int(r * 1000) / 1000 for r in ASPECT_VALUES) == ASPECT_TEMPLATES
# pn -> the side of the square of the same area, in stride-16 latent positions (dynamic_resolution.py:37-55)
AREA_SIDE = {"0.06M": 16, "0.25M": 32, "0.41M": 40, "0.92M": 60, "1M": 64, "2M": 90}
VIDEO_FPS, VIDEO_FRAMES, TEMPORAL_STRIDE = 16, 81, 4  # grn_pipeline.py:201-203 (`video_fps`, `video_frames`)


def official_grid(pn: str, h_div_w: float, duration: float | None = None) -> tuple[int, int, int]:
    """(latent frames T', rows, cols) of the official pipeline: the template nearest to h_div_w (first of
    equals), rows x cols of about the pn area with that aspect, rounded half to even; an image (duration None)
    is one frame, a video min(81, int(duration * 16 + 1)) frames, T' = (frames - 1) // 4 + 1."""
    if pn not in AREA_SIDE:
        raise ValueError(f"unknown pn '{pn}'; allowed: {list(AREA_SIDE)}")
    i = min(range(len(ASPECT_TEMPLATES)), key=lambda k: abs(ASPECT_TEMPLATES[k] - h_div_w))
    ratio = ASPECT_VALUES[i]
    cols = math.sqrt(AREA_SIDE[pn] ** 2 / ratio)
    frames = 1 if duration is None else min(VIDEO_FRAMES, int(duration * VIDEO_FPS + 1))
    return (frames - 1) // TEMPORAL_STRIDE + 1, round(cols * ratio), round(cols)


@dataclass(frozen=True)
class GRNBitSamplerConfig(SamplerConfig):
    """The GRN sampler's settings plus the token grid: `frames` latent frames of `height` x `width` positions
    (images: frames 1, and the sampler returns [B, M*d, h, w]; videos [B, M*d, T', h, w])."""

    frames: int = 1
    height: int = 64
    width: int = 64

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.frames, self.height, self.width


_T2I_GRID, _T2V_GRID = official_grid("1M", 1.0), official_grid("0.41M", 9 / 16, duration=2.0)
_OFFICIAL = GRN_PRESETS["GRN-2B-t2i"].__dict__  # 50 steps, t2i-cosine, CFG at every step, realised pt
PRESETS: dict[str, GRNBitSamplerConfig] = {
    "GRN-2B-t2i": GRNBitSamplerConfig(**{**_OFFICIAL, "guidance": 3.0, "temperature": 1.1},
                                      **dict(zip(("frames", "height", "width"), _T2I_GRID))),
    "GRN-2B-t2v": GRNBitSamplerConfig(**{**_OFFICIAL, "guidance": 4.0, "temperature": 1.0},
                                      **dict(zip(("frames", "height", "width"), _T2V_GRID))),
}
GRN_BIT_SAMPLER_OPTIONS = {**SAMPLER_OPTIONS, "frames": {"min": 1, "why": "latent frames: (frames - 1) // 4 + 1"},
                           "height": {"min": 1, "why": "latent rows"}, "width": {"min": 1, "why": "latent columns"}}


def grn_bit_output_shape(model: GRNBit, sampler=None) -> tuple[int, ...]:
    """One sample's bits: (M*d, h, w) for one frame, (M*d, T', h, w) for more (default grid without a
    GRNBitSamplerConfig)."""
    frames, h, w = sampler_grid(model, sampler)
    return (model.cfg.bits, h, w) if frames == 1 else (model.cfg.bits, frames, h, w)


def sampler_grid(model: GRNBit, sampler=None) -> tuple[int, int, int]:
    """(frames, rows, cols) a sampler samples: a GRNBitSamplerConfig's own; otherwise the grid the model was
    trained on (`cfg.grid`, an embedded model), else the default (64 x 64, one frame)."""
    if isinstance(sampler, GRNBitSamplerConfig):
        return sampler.grid
    return (model.cfg.frames or 1, model.cfg.grid, model.cfg.grid) if model.cfg.grid else GRNBitSamplerConfig().grid


def trained_grid(model: GRNBit, sampler: GRNBitSamplerConfig, given=frozenset()) -> GRNBitSamplerConfig:
    """The sampler on the grid an embedded model was trained on (`cfg.grid`, `cfg.frames` latent frames or one)
    where the suite set none of frames / height / width (a preset's grid is the released models'); otherwise
    unchanged."""
    if not model.cfg.grid or {"frames", "height", "width"} & set(given):
        return sampler
    return replace(sampler, frames=model.cfg.frames or 1, height=model.cfg.grid, width=model.cfg.grid)


class CachedTextGRNBit:
    """GRN_bit seen as `refine` sees a model: conditions are indices into one text cache (see the module
    docstring), tokens [B, M*d, h, w] (one frame) or [B, M*d, T', h, w], 2 classes per bit."""

    token_classes = 2

    def __init__(self, model: GRNBit, cache: TextCache, grid: tuple[int, int, int], aspect: float | None = None):
        frames, h, w = grid
        if frames > model.cfg.max_frames:
            raise ValueError(f"{frames} latent frames; GRN_bit's RoPE covers at most {model.cfg.max_frames}")
        self.model, self.cache = model, cache
        self.token_shape = (model.cfg.bits, h, w) if frames == 1 else (model.cfg.bits, frames, h, w)
        self.bit_rounds = model.cfg.rounds  # the trace's per-bit-plane series (round-major bits)
        self.aspect = aspect_template(h, w) if aspect is None else aspect

    def null_condition(self, idx: torch.Tensor) -> torch.Tensor:
        raise ValueError("GRN_bit has no null prompt of its own: give `uncond`, the encoded empty or negative "
                         "prompt (the official T2I uses '', T2V a negative prompt)")

    def __call__(self, bits: torch.Tensor, pt: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.model(bits, pt, cache=self.cache.index(idx), aspect=self.aspect)


def _text(model: GRNBit, text, what: str) -> TextCache:
    """A TextCache as it is, (states [B, L, C], lens [B]), or ids [B, L] of the model's own text encoder, encoded
    once."""
    if isinstance(text, TextCache):
        return text
    if isinstance(text, (tuple, list)) and len(text) == 2:
        return model.encode_text(*text)
    if isinstance(text, torch.Tensor) and text.dim() == 2 and not text.is_floating_point():
        return model.encode_ids(text)
    raise ValueError(f"{what}: give a TextCache (model.encode_text), (states [B, L, C], lens [B]) or the ids [B, L] "
                     f"of the model's own text encoder, got {type(text).__name__}")


@torch.no_grad()
def sample_grn_bit(model: GRNBit, cond, sampler: SamplerConfig, generators: list[torch.Generator], *,
                   entropy: EntropyConfig | None = None, uncond=None, callback=None) -> tuple[torch.Tensor, Trace]:
    """Bits [B, M*d, h, w] (or [B, M*d, T', h, w]) for the prompts `cond` through `refine`. `cond`, `uncond`: a
    TextCache, (UMT5 states, lens) or, for a model with its own text encoder, its ids [B, L]; uncond holds one
    prompt for every sample or one per sample (default for such a model: its empty prompt). A plain
    SamplerConfig samples the model's default grid (`sampler_grid`). The callback and the Trace are refine's."""
    grid = sampler_grid(model, sampler)
    if uncond is None and model.text is not None:
        uncond = model.null_condition(torch.zeros(1, 1, dtype=torch.long, device=model.text_proj.weight.device))
    caches = [_text(model, cond, "cond")]
    b = caches[0].batch
    if uncond is not None:
        caches.append(_text(model, uncond, "uncond"))
        if caches[1].batch not in (1, b):
            raise ValueError(f"uncond holds {caches[1].batch} prompts for {b} samples; give one, or one per sample")
    device = caches[0].valid.device
    idx = torch.arange(b, device=device)
    null = None if uncond is None else b + (idx if caches[1].batch == b else torch.zeros_like(idx))
    net = CachedTextGRNBit(model, TextCache.cat(caches) if uncond is not None else caches[0], grid)
    return refine(net, idx, sampler, generators, entropy=entropy, uncond=null, callback=callback)

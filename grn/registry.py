"""Every trainable generator: one record per model kind (`KINDS`), and the named sizes of every kind.

A kind is what a checkpoint's `kind` says and what a suite's `adapter:` names. Its record holds every
fact the project needs about it: how to rebuild the model from a checkpoint, how to sample it (the one
sampler signature of grn/sampling.py) and decode what the sampler returns, its sampler settings and
their ranges, the family it is tabulated under, the suite keys it takes, and its named sizes (as DiT's
size registry). Adding a kind is one `register(ModelKind(...))` here plus the file with its model and
sampler; grn_eval (validation, adapters, tables) reads everything from the record.

The "-T" baselines share GRN-T's backbone shape (hidden 128, depth 4, 4 heads, bottleneck 64,
4 in-context tokens) and its tokenizer, data and training budget; only the paradigm differs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass

from grn.baselines import ar, flow, maskgit
from grn.errors import UserError
from grn.generator import GENERATORS, GRN, config_from_dict
from grn.grn_bit import EMBEDDED_SIZES, GRN_BIT_SIZES, GRNBit, grn_bit_config_from_dict
from grn.grn_bit_sampling import (
    GRN_BIT_SAMPLER_OPTIONS,
    GRNBitSamplerConfig,
    grn_bit_output_shape,
    sample_grn_bit,
    trained_grid,
)
from grn.grn_bit_sampling import PRESETS as GRN_BIT_PRESETS
from grn.sampling import PRESETS, SAMPLER_OPTIONS, SamplerConfig, refine
from grn.t2i import T2I_GENERATORS, T2IGRN, t2i_config_from_dict


@dataclass(frozen=True)
class Output:
    """What a kind's sampler returns and how it meets images through the frozen tokenizer: token codes in
    the model's token layout (through HBQ), or the continuous tanh latents (no quantizer)."""

    encode: Callable  # (tokenizer, model, images) -> the training targets [N, *shape(model)]
    decode: Callable  # (tokenizer, model, out) -> uint8 NHWC images
    shape: Callable  # (model, sampler settings or None) -> the shape of one sample's output


def _bits_tokenizer(tokenizer, model, what: str):
    """The HBQ tokenizer whose d channels x M rounds are GRN_bit's bits (round-major, as HBQ's `bit` layout):
    an embedded one (grn/checkpoints/tokenizer_mnist.pt for GRN-bit-T2I-T, tokenizer_mmnist_video.pt for
    GRN-bit-T2V-T) or the released joint HBQ_tokenizer_64dim_M4 for the released models."""
    cfg = getattr(tokenizer, "cfg", None)
    if cfg is None or not getattr(tokenizer, "hbq", False) or \
            (cfg.latent_channels, cfg.rounds) != (model.cfg.latent_channels, model.cfg.rounds):
        have = f"{cfg.latent_channels} channels x {cfg.rounds} rounds" if cfg is not None else "no HBQ tokenizer"
        raise UserError(f"cannot {what} GRN_bit's bits with this tokenizer ({have}): the model's bits are "
                        f"{model.cfg.latent_channels} channels x {model.cfg.rounds} rounds; give the tokenizer it "
                        f"was trained with (the released models: HBQ_tokenizer_64dim_M4)")
    return tokenizer


def _decode_bits(tokenizer, model, out):
    """[B, M*d, h, w] -> uint8 NHWC images; [B, M*d, T', h, w] -> uint8 NTHWC videos."""
    return _bits_tokenizer(tokenizer, model, "decode").decode_tokens(out, "bit")


def _layout(model) -> str:
    return getattr(model.cfg, "layout", "ind")


OUTPUTS = {
    "tokens": Output(lambda tokenizer, model, images: tokenizer.tokenize(images, _layout(model)),
                     lambda tokenizer, model, out: tokenizer.decode_tokens(out, _layout(model)),
                     lambda model, sampler=None: tuple(model.token_shape)),
    "latent": Output(lambda tokenizer, model, images: tokenizer.encode(images),
                     lambda tokenizer, model, out: tokenizer.decode_latent(out),
                     lambda model, sampler=None: tuple(model.latent_shape)),
    # GRN_bit: M*d bits per position of a token grid that is a sampler setting (grn/grn_bit_sampling.py), images
    # or videos, encoded and decoded by the HBQ tokenizer of the model's d x M (`_bits_tokenizer`)
    "t2iv-bits": Output(lambda tokenizer, model, images: _bits_tokenizer(tokenizer, model, "encode images into")
                        .tokenize(images, "bit"),
                        _decode_bits,
                        lambda model, sampler=None: grn_bit_output_shape(model, sampler)),
}
CONDITIONINGS = ("class", "text")  # class labels, or prompts (grn_eval picks the adapter by this)
# The one sampler signature: (model, cond, sampler, generators, *, entropy=None, uncond=None, callback=None)
SAMPLER_PARAMETERS = (("model", "cond", "sampler", "generators"), ("entropy", "uncond", "callback"))


@dataclass(frozen=True)
class ModelKind:
    """Everything the project knows about one kind of generator (see `problems` for what makes one complete)."""

    name: str  # the checkpoint's `kind`, the model class's `kind`, the suite's `adapter:`
    model: type  # the nn.Module, built as model(config, **build)
    config_from_dict: Callable  # a checkpoint's `config` dict -> the model's config
    sampler_config: type  # the frozen dataclass of sampler settings
    default_sampler: object  # the settings used when a suite gives none (an instance of sampler_config)
    sample: Callable  # sample(model, cond, sampler, generators, *, entropy=None, uncond=None, callback=None)
    family: str  # the column group of tables: GRN / AR / masked / diffusion
    # the range of every sampler_config field a suite may set (Opt keywords of grn_eval/options.py as plain
    # data: grn does not import grn_eval; the type and the default come from the sampler config itself)
    sampler_options: Mapping[str, Mapping]
    output: str = "tokens"  # what `sample` returns: a key of OUTPUTS
    conditioning: str = "class"  # one of CONDITIONINGS
    entropy: bool = False  # the sampler takes entropy-guided step counts (the suite key `entropy:`)
    presets: Mapping[str, object] = field(default_factory=dict)  # named sampler settings (`sampler.preset`)
    adapter_options: Mapping[str, Mapping] = field(default_factory=dict)  # suite keys beyond the common ones
    sizes: Mapping[str, Callable] = field(default_factory=dict)  # name -> builder(**overrides)
    # why suites cannot run this kind yet (grn_eval's model check stops on it, naming it); "" when they can;
    # or a function of the checkpoint record (None: no record) giving that reason, "" for a record they can run
    not_in_suites: str | Callable[[dict | None], str] = ""
    # the sampler settings a checkpoint fixes where a suite sets none of them: (model, sampler, the keys the suite
    # set) -> sampler (GRN_bit: the token grid an embedded model was trained on); None: the suite's as they are
    checkpoint_sampler: Callable | None = None

    @property
    def sampler_keys(self) -> set[str]:
        """The sampler settings a suite may give this kind: its config's fields, and `preset` if it has presets."""
        return {f.name for f in fields(self.sampler_config)} | ({"preset"} if self.presets else set())

    def suite_refusal(self, record: dict | None = None) -> str:
        """Why a suite cannot run this kind's checkpoint `record` ("" when it can)."""
        return self.not_in_suites(record) if callable(self.not_in_suites) else self.not_in_suites

    def sampler_for(self, model, sampler, given=()) -> object:
        """The settings `model` samples with: the suite's `sampler` (its keys `given`), completed by the checkpoint."""
        return sampler if self.checkpoint_sampler is None else self.checkpoint_sampler(model, sampler, set(given))

    def decode(self, tokenizer, model, out) -> object:
        """uint8 NHWC images from the sampler's output."""
        return OUTPUTS[self.output].decode(tokenizer, model, out)

    def encode(self, tokenizer, model, images) -> object:
        """Images -> what the sampler outputs (the training targets)."""
        return OUTPUTS[self.output].encode(tokenizer, model, images)

    def output_shape(self, model, sampler=None) -> tuple[int, ...]:
        """One sample's output shape (for GRN_bit it depends on the sampler's token grid; None: the default)."""
        return OUTPUTS[self.output].shape(model, sampler)


def problems(kind: ModelKind) -> list[str]:
    """What keeps a record from being complete (empty when it is)."""
    out = []
    if not isinstance(kind.name, str) or not kind.name:
        out.append("name: a non-empty string")
    if not isinstance(kind.model, type) or getattr(kind.model, "kind", None) != kind.name:
        out.append(f"model: a class whose `kind` is {kind.name!r}")
    if not callable(kind.config_from_dict):
        out.append("config_from_dict: a function")
    if not (is_dataclass(kind.sampler_config) and isinstance(kind.default_sampler, kind.sampler_config)):
        out.append("sampler_config / default_sampler: a dataclass and an instance of it")
    else:
        declared, have = set(kind.sampler_options), {f.name for f in fields(kind.sampler_config)}
        if declared != have:
            out.append(f"sampler_options: one entry per sampler setting {sorted(have)}, got {sorted(declared)}")
        if any(not isinstance(p, kind.sampler_config) for p in kind.presets.values()):
            out.append("presets: instances of sampler_config")
    if not isinstance(kind.family, str) or not kind.family:
        out.append("family: a non-empty string")
    if kind.output not in OUTPUTS:
        out.append(f"output: one of {sorted(OUTPUTS)}")
    if kind.conditioning not in CONDITIONINGS:
        out.append(f"conditioning: one of {list(CONDITIONINGS)}")
    if not callable(kind.sample) or sampler_signature(kind.sample) != SAMPLER_PARAMETERS:
        out.append("sample: sample(model, cond, sampler, generators, *, entropy=None, uncond=None, callback=None)")
    return out


def sampler_signature(fn) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(positional parameters, keyword-only parameters defaulting to None) of a sampler; anything else
    (a default on a positional one, another kind of parameter) makes it differ from SAMPLER_PARAMETERS."""
    params = inspect.signature(fn).parameters.values()
    positional = tuple(p.name if p.default is p.empty else f"{p.name}=" for p in params
                       if p.kind is p.POSITIONAL_OR_KEYWORD)
    keyword = tuple(p.name if p.default is None else f"{p.name}?" for p in params if p.kind is p.KEYWORD_ONLY)
    others = tuple(f"*{p.name}" for p in params if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return positional + others, keyword


KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    """Add a kind (refused if its record is incomplete or its name or a size name is taken)."""
    bad = problems(kind)
    if kind.name in KINDS:
        bad.append(f"name: {kind.name!r} is already a kind")
    taken = set(kind.sizes) & set(model_sizes())
    if taken:
        bad.append(f"sizes: {sorted(taken)} are already sizes of another kind")
    if bad:
        raise ValueError(f"model kind {kind.name!r} is incomplete: " + "; ".join(bad))
    KINDS[kind.name] = kind
    return kind


def model_sizes() -> dict[str, Callable]:
    """Every named size of every kind (e.g. 'GRN-B', 'AR-T') -> its builder."""
    return {name: build for kind in KINDS.values() for name, build in kind.sizes.items()}


# The suite keys of the text kinds: the prompts inline, or from a text file of one prompt per line (grn_eval/suite.py
# reads it into `prompts`), and the negative prompt of the CFG stream
_TEXT_PROMPTS = {"prompts": {"type": list, "min": 1, "item": {"type": str}},
                 "prompts_file": {"type": str, "why": "a UTF-8 text file, one prompt per line (blank lines and lines "
                                                      "starting with # skipped), relative to the suite"},
                 "negative_prompt": {"type": str}}
# The released GRN_bit models read UMT5-XXL states: the local Hugging Face folder of its encoder (grn/text.py
# UMT5TextEncoder, e.g. ${GRN_UMT5}); a checkpoint trained here has its own text encoder and takes none
_UMT5_FOLDER = {"text_encoder": {"type": str, "why": "a local folder with google/umt5-xxl (UMT5TextEncoder)"}}

register(ModelKind("grn", GRN, config_from_dict, SamplerConfig, SamplerConfig(), refine, "GRN", SAMPLER_OPTIONS,
                   entropy=True, presets=PRESETS, sizes=GENERATORS))
register(ModelKind("grn-t2i", T2IGRN, t2i_config_from_dict, SamplerConfig, SamplerConfig(), refine, "GRN",
                   SAMPLER_OPTIONS, conditioning="text", entropy=True, presets=PRESETS, adapter_options=_TEXT_PROMPTS,
                   sizes=T2I_GENERATORS))
def _grn_bit_suite_refusal(record: dict | None) -> str:
    """Suites run a grn-bit checkpoint trained here (its own text encoder, `config.text`, and the tokenizer it was
    trained with, `tokenizer_sha256`) or a released one (no text encoder of its own: the suite gives UMT5's folder
    as `text_encoder`, grn_eval/model_check.py); a record with a text encoder but no tokenizer record is refused."""
    config = record.get("config") if isinstance(record, dict) else None
    if not isinstance(config, dict) or not config.get("text") or record.get("tokenizer_sha256"):
        return ""
    return ("this grn-bit checkpoint has its own text encoder but no record of the tokenizer it was trained with "
            "(`tokenizer_sha256`, written by grn/train.py); train it with `grn train generator` or "
            "`python -m grn_eval.embedded`")


# The official text-to-image / text-to-video GRN (GRN_T2I_2B / GRN_T2V_2B, `grn convert official --t2iv`):
# conditioned on UMT5 states (grn/text.py UMT5TextEncoder) through a text cache, sampled by `refine`; and the
# embedded GRN-bit-T2I-T / GRN-bit-T2V-T, with word-level text encoders of their own, on embedded tokenizers' bits
register(ModelKind("grn-bit", GRNBit, grn_bit_config_from_dict, GRNBitSamplerConfig, GRN_BIT_PRESETS["GRN-2B-t2i"],
                   sample_grn_bit, "GRN", GRN_BIT_SAMPLER_OPTIONS, output="t2iv-bits", conditioning="text",
                   entropy=True, presets=GRN_BIT_PRESETS, adapter_options={**_TEXT_PROMPTS, **_UMT5_FOLDER},
                   sizes={**GRN_BIT_SIZES, **EMBEDDED_SIZES}, not_in_suites=_grn_bit_suite_refusal,
                   checkpoint_sampler=trained_grid))
register(ModelKind("ar", ar.ARModel, lambda d: ar.ARConfig(**d), ar.ARSamplerConfig, ar.ARSamplerConfig(),
                   ar.sample_ar, "AR", ar.SAMPLER_OPTIONS, sizes={"AR-T": ar.build_ar}))
register(ModelKind("maskgit", maskgit.MaskGITModel, lambda d: maskgit.MaskGITConfig(**d), maskgit.MaskGITSamplerConfig,
                   maskgit.MaskGITSamplerConfig(), maskgit.sample_maskgit, "masked", maskgit.SAMPLER_OPTIONS,
                   sizes={"MaskGIT-T": maskgit.build_maskgit}))
register(ModelKind("flow", flow.FlowModel, lambda d: flow.FlowConfig(**d), flow.FlowSamplerConfig,
                   flow.FlowSamplerConfig(), flow.sample_flow, "diffusion", flow.SAMPLER_OPTIONS, output="latent",
                   sizes={"Flow-T": flow.build_flow}))


def build_model(name: str, **overrides):
    sizes = model_sizes()
    if name not in sizes:
        raise ValueError(f"unknown model '{name}'; allowed: {sorted(sizes)}")
    return sizes[name](**overrides)

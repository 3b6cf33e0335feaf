"""What a suite's model entry points at, opened and checked before anything is sampled or written.

`check_entry` is what `grn-eval validate` and the start of every run call for each model: the files
exist and match any pinned sha256; the generator checkpoint holds the kind the adapter names (a
tokenizer given as a generator, or the reverse, is named as such); the sampler settings are those of
that kind (its record in grn/registry.py); the tokenizer's latent channels and rounds are those the
generator was built for; and the tokenizer is the one the generator was trained with (its recorded
`tokenizer_sha256`), unless the suite says `allow_other_tokenizer: true`. The adapters then build the
models from the records read here, so every file is read once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grn.checkpoint import TOKENIZER_KIND
from grn.errors import UserError
from grn.fileio import read, sha256_file


class ModelError(UserError):
    """A model entry of a suite does not fit its files; the message names the suite, model and key."""


@dataclass
class CheckedFiles:
    """The files of one model entry, read and checked (records are the raw checkpoint dicts)."""

    checkpoint: Path | None = None
    checkpoint_sha256: str | None = None
    record: dict | None = None
    tokenizer: Path | None = None
    tokenizer_sha256: str | None = None
    tokenizer_record: dict | None = None
    tokenizer_note: str = ""
    pinned: tuple[str, ...] = ()  # the keys whose file sha256 the suite pins (checked): those files are verified


def integrity(model_integrity: str | None, pinned: bool) -> str | None:
    """How a loaded file was verified, for provenance: a file the suite pins by sha256 is verified by the pin even
    where the file itself records no content hash."""
    if pinned and (model_integrity or "unverified").startswith("unverified"):
        return "file sha256 verified against the suite's pin"
    return model_integrity


def resolve(path: str, base: Path) -> Path:
    """A suite path: as given when it exists (relative to the working directory), else from the suite's folder."""
    p = Path(path)
    return p if p.exists() else base / p


def _generator_geometry(record: dict) -> tuple[str, int, int | None]:
    """(kind, latent channels, rounds or None for a continuous latent) of a generator record."""
    from grn.convert import is_official_generator, official_generator_name, official_generator_state
    from grn.generator import GENERATORS
    from grn.registry import KINDS

    if is_official_generator(record):
        name = official_generator_name(official_generator_state(record, "ema1" if "model_ema1" in record else "raw"))
        import torch

        with torch.device("meta"):
            cfg = GENERATORS[name]().cfg
        return "grn", cfg.latent_channels, cfg.rounds
    kind = KINDS[record["kind"]]
    cfg = kind.config_from_dict(record["config"])
    # every output but a continuous latent is HBQ codes (tokens, or GRN_bit's bits) of `rounds` rounds
    return kind.name, cfg.latent_channels, getattr(cfg, "rounds", None) if kind.output != "latent" else None


def _tokenizer_geometry(record: dict) -> tuple[int, int | None]:
    """(labels per token D, log2 of their classes K; None for a continuous latent, whose D is its channels): what
    a generator of the tokenizer's tokens was built for (HBQ: d channels of 2^M levels)."""
    import math

    from grn.convert import is_official_tokenizer, official_tokenizer_name, official_tokenizer_state
    from grn.quantizers import build_quantizer
    from grn.tokenizer import TokenizerConfig, tokenizer_config

    cfg = tokenizer_config(official_tokenizer_name(official_tokenizer_state(record))) \
        if is_official_tokenizer(record) else TokenizerConfig(**record["config"])
    if cfg.continuous or cfg.quantizer == "hbq":
        return cfg.latent_channels, cfg.rounds
    channels, classes = build_quantizer(cfg.quantizer, cfg.latent_channels, cfg.token_bits).code_space
    return channels, int(math.log2(classes))


def _pin(where: str, path: Path, want: str | None, out: CheckedFiles | None = None, key: str = "") -> str:
    if not path.is_file():  # where names the pin's key: the message names the file's own key
        what = where.rsplit(": ", 1)[0] + (f": {key}" if key else ": path")
        raise ModelError(f"{what}: '{path}' " + ("is a folder, not a file" if path.is_dir() else "does not exist")
                         + "; check the path (relative paths are taken from the working directory, then the suite's "
                           "folder)")
    digest = sha256_file(path)
    if want is not None and out is not None:
        out.pinned += (key,)
    if want is not None and digest != want.lower():
        raise ModelError(f"{where}: '{path}' has sha256 {digest}, the suite pins {want}: it is another file than the "
                         f"one the suite was written for; point the suite at that file or update the pin")
    return digest


def check_entry(entry, base: Path, suite_file: str | Path = "suite") -> CheckedFiles:
    """Open and check one model entry's files (paths relative to `base`; see the module docstring).
    Raises ModelError naming `suite_file`, the model and the key."""
    o = entry.options
    where = f"{suite_file}: model '{entry.name}'"
    out = CheckedFiles()
    if entry.adapter == "tokenizer":
        out.tokenizer = resolve(o["checkpoint"], base)
        out.tokenizer_sha256 = _pin(f"{where}: checkpoint_sha256", out.tokenizer, o.get("checkpoint_sha256"), out,
                                    "checkpoint")
        out.tokenizer_record = _tokenizer_record(out.tokenizer, f"{where}: checkpoint")
        return out
    if entry.adapter == "npz":
        out.checkpoint = resolve(o["path"], base)
        out.checkpoint_sha256 = _pin(f"{where}: sha256", out.checkpoint, o.get("sha256"))
        return out
    from grn.checkpoint import read_generator_record
    from grn.registry import KINDS

    if entry.adapter not in KINDS:  # a registered adapter (grn_eval.adapters.register_adapter) checks its own
        return out
    refuse = KINDS[entry.adapter].not_in_suites
    if refuse and not callable(refuse):  # the whole kind (a rule of the record is checked once it is read)
        raise ModelError(f"{where}: adapter: {refuse}")
    for key in ("checkpoint", "tokenizer"):
        if not o.get(key):
            raise ModelError(f"{where}: the {entry.adapter} adapter needs '{key}'")
    out.checkpoint, out.tokenizer = resolve(o["checkpoint"], base), resolve(o["tokenizer"], base)
    out.checkpoint_sha256 = _pin(f"{where}: checkpoint_sha256", out.checkpoint, o.get("checkpoint_sha256"), out,
                                 "checkpoint")
    try:
        out.record = read_generator_record(out.checkpoint)
        kind, channels, rounds = _generator_geometry(out.record)
    except UserError as e:
        raise ModelError(f"{where}: checkpoint: {e}") from e
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{where}: checkpoint '{out.checkpoint}': its config cannot build a model ({e}); the file is "
                         f"damaged or from an incompatible version") from e
    if kind != entry.adapter:
        raise ModelError(f"{where}: adapter: checkpoint '{out.checkpoint.name}' holds a '{kind}' model, the suite says "
                         f"adapter '{entry.adapter}'; use `adapter: {kind}`")
    why = KINDS[kind].suite_refusal(out.record)
    if why:
        raise ModelError(f"{where}: adapter: {why}")
    own_text = bool((out.record.get("config") or {}).get("text"))
    if o.get("text_encoder") and own_text:
        raise ModelError(f"{where}: text_encoder: '{out.checkpoint.name}' was trained with its own text encoder "
                         f"(stored in it); remove `text_encoder:` (the UMT5 folder is for the released models)")
    if kind == "grn-bit" and not own_text and not o.get("text_encoder"):
        raise ModelError(f"{where}: text_encoder: '{out.checkpoint.name}' is a released GRN_bit model, conditioned on "
                         f"UMT5-XXL states; give `text_encoder:` a local folder with google/umt5-xxl (grn/text.py "
                         f"UMT5TextEncoder; e.g. text_encoder: ${{GRN_UMT5}})")
    out.tokenizer_sha256 = _pin(f"{where}: tokenizer_sha256", out.tokenizer, o.get("tokenizer_sha256"), out,
                                "tokenizer")
    allowed = KINDS[kind].sampler_keys
    unknown = sorted(set(o.get("sampler") or {}) - allowed)
    if unknown:
        raise ModelError(f"{where}: sampler.{unknown[0]}: does not apply to a {kind} model; allowed: "
                         f"{sorted(allowed)}")
    if o.get("entropy") is not None and not KINDS[kind].entropy:
        raise ModelError(f"{where}: entropy: entropy-guided steps are a GRN sampler setting, not one of a {kind} model")
    out.tokenizer_record = _tokenizer_record(out.tokenizer, f"{where}: tokenizer")
    t_channels, t_rounds = _tokenizer_geometry(out.tokenizer_record)
    if t_channels != channels or (rounds is not None and t_rounds != rounds):
        raise ModelError(f"{where}: tokenizer: '{out.tokenizer.name}' has {t_channels} latent channels and "
                         f"{t_rounds} rounds (token labels of 2^rounds classes), the generator "
                         f"'{out.checkpoint.name}' was built for {channels} channels"
                         + (f" and {rounds} rounds" if rounds is not None else "") + "; use the generator's tokenizer")
    trained_with = out.record.get("tokenizer_sha256")
    if trained_with and trained_with != out.tokenizer_sha256:
        if not o.get("allow_other_tokenizer"):
            raise ModelError(f"{where}: tokenizer: '{out.tokenizer.name}' (sha256 {out.tokenizer_sha256[:16]}...) is "
                             f"not the tokenizer the generator was trained with (sha256 {trained_with[:16]}...); use "
                             f"that one, or set `allow_other_tokenizer: true` on the model to measure it anyway")
        out.tokenizer_note = f"differs from the training tokenizer {trained_with[:16]}... (allow_other_tokenizer)"
    elif trained_with:
        out.tokenizer_note = "the tokenizer the generator was trained with (sha256 matches)"
    else:
        out.tokenizer_note = "not recorded in the generator checkpoint"
    return out


def _tokenizer_record(path: Path, where: str) -> dict:
    from grn.convert import is_official_tokenizer
    from grn.registry import KINDS

    try:
        record = read(path, "tokenizer checkpoint")
    except UserError as e:
        raise ModelError(f"{where}: {e}") from e
    kind = record.get("kind") if isinstance(record, dict) else None
    if kind in KINDS:
        raise ModelError(f"{where}: '{path}' is a {kind} generator checkpoint, not a tokenizer: give it as the "
                         f"model's `checkpoint:` and an HBQ tokenizer file as its `tokenizer:`")
    if kind != TOKENIZER_KIND and not is_official_tokenizer(record):
        raise ModelError(f"{where}: '{path}' is not an HBQ tokenizer checkpoint (kind {kind!r})")
    return record

"""Text encoders for the text-conditioned GRNs (grn/t2i.py, grn/grn_bit.py): one interface, three kinds.

An encoder turns prompts into token ids once (`tokenize`, [B, L] int64) and ids into per-token
states with a validity mask (`forward` -> ([B, L, width], [B, L] bool), the valid tokens first);
it has `width`, `max_len` and `unknown_words(prompt)`. The GRN projects the states into its own
attention sequence, as GRN-2B does with UMT5 states. `encode_prompts` gives any of them in the form
GRN_bit's `encode_text` takes: states cut to the longest prompt, and each prompt's valid length.

  * `words`: a word-level tokenizer over a fixed vocabulary (the MNIST caption words,
    grn/captions.py) and a small bidirectional transformer trained from scratch with the generator.
  * `open_clip`: a frozen open_clip text tower with real weights from a local file or the Hugging
    Face hub cache -- never downloaded. Third-party weights stay out of the GRN's state dict (its
    checkpoint records model and tag); without them the error names the file to provide.
  * `umt5`: GRN_bit's official encoder, UMT5-XXL's encoder stack (transformers' UMT5EncoderModel;
    vocabulary 256,384, width 4096, 24 layers), frozen, from a local folder only (see UMT5TextEncoder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from grn.backbone import PlainBlock, RMSNorm
from grn.captions import words
from grn.errors import UserError

CLIP_ENV = "GRN_CLIP_WEIGHTS"  # the same variable the harness reads (grn_eval/weights.py)


@dataclass(frozen=True)
class TextConfig:
    encoder: str = "words"  # 'words' (trained from scratch) or 'open_clip' (frozen tower)
    # words
    vocab: tuple[str, ...] = ()
    max_len: int = 16  # ids per prompt, including <bos> and <eos>
    width: int = 128
    depth: int = 2
    heads: int = 4
    # open_clip
    clip_model: str = "ViT-B-32"
    clip_tag: str = "laion2b_s34b_b79k"


def text_config_from_dict(d: dict) -> TextConfig:
    d = dict(d)
    if "vocab" in d:
        d["vocab"] = tuple(d["vocab"])
    return TextConfig(**d)


# ---------------------------------------------------------------------------------------
# Word-level tokenizer and encoder (trained from scratch)
# ---------------------------------------------------------------------------------------

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


class WordTokenizer:
    """Lower-case words (grn.captions.words) -> ids [<bos>, w1, ..., <eos>, <pad>...]; the empty
    prompt is [<bos>, <eos>], so even the null prompt has tokens to attend to."""

    def __init__(self, vocab: tuple[str, ...], max_len: int):
        if len(set(vocab)) != len(vocab) or set(vocab) & set(SPECIALS):
            raise ValueError("the vocabulary must hold distinct words and none of the special tokens")
        self.vocab, self.max_len = tuple(vocab), max_len
        self.index = {w: i + len(SPECIALS) for i, w in enumerate(vocab)}

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.vocab)

    def unknown(self, prompt: str) -> list[str]:
        return [w for w in words(prompt) if w not in self.index]

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        out = torch.full((len(prompts), self.max_len), PAD, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids = [BOS] + [self.index.get(w, UNK) for w in words(p)] + [EOS]
            if len(ids) > self.max_len:
                raise ValueError(f"prompt {p!r} has {len(ids) - 2} words; this encoder takes at most "
                                 f"{self.max_len - 2}")
            out[i, : len(ids)] = torch.tensor(ids)
        return out


def identity_rope(n: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of the identity rotation (positions come from learned embeddings instead)."""
    return torch.ones(n, head_dim), torch.zeros(n, head_dim)


class WordTextEncoder(nn.Module):
    """Embedding + learned positions + `depth` bidirectional pre-norm blocks over the valid tokens."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg, self.width, self.max_len = cfg, cfg.width, cfg.max_len
        self.tokenizer = WordTokenizer(cfg.vocab, cfg.max_len)
        self.embed = nn.Embedding(len(self.tokenizer), cfg.width)
        self.pos = nn.Parameter(torch.zeros(1, cfg.max_len, cfg.width))
        self.blocks = nn.ModuleList([PlainBlock(cfg.width, cfg.heads) for _ in range(cfg.depth)])
        self.norm = RMSNorm(cfg.width)
        cos, sin = identity_rope(cfg.max_len, cfg.width // cfg.heads)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return self.tokenizer(prompts)

    def unknown_words(self, prompt: str) -> list[str]:
        return self.tokenizer.unknown(prompt)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = ids != PAD  # [B, L]
        n = ids.shape[1]
        # keys: valid tokens only; every query also sees itself (no empty rows for padding)
        mask = (valid[:, None, :] | torch.eye(n, dtype=torch.bool, device=ids.device))[:, None]
        h = self.embed(ids) + self.pos[:, :n]
        for block in self.blocks:
            h = block(h, (self.rope_cos[:n], self.rope_sin[:n]), attn_mask=mask)
        return self.norm(h), valid


class OwnTextEncoder:
    """What a GRN with a text encoder of its own (`self.text`, this module's interface) shows the training loop
    and the samplers: prompts -> ids, the empty (null) prompt, the ids of a dataset's captions. grn/t2i.py and
    the embedded GRN_bit (grn/grn_bit.py with `cfg.text`) share it."""

    def _own_text(self) -> nn.Module:
        if getattr(self, "text", None) is None:
            raise ValueError(f"this {type(self).__name__} has no text encoder of its own: it takes text states "
                             f"from outside (e.g. UMT5, grn/text.py UMT5TextEncoder)")
        return self.text

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> text ids [B, L] (the conditioning the sampler and the loss take)."""
        return self._own_text().tokenize(list(prompts))

    def null_condition(self, ids: torch.Tensor) -> torch.Tensor:
        """The empty prompt for every sample of a batch of ids (the unconditional CFG stream)."""
        if getattr(self, "_null_ids", None) is None:
            self._null_ids = self._own_text().tokenize([""])  # [1, L]
        return self._null_ids.to(ids.device).expand(ids.shape[0], -1)

    def training_conditions(self, data) -> torch.Tensor:
        """Text ids of every image of a training dataset (its captions, grn/captions.py)."""
        from grn.captions import dataset_captions

        return self.tokenize(dataset_captions(data))


# ---------------------------------------------------------------------------------------
# open_clip text tower (frozen, real weights only)
# ---------------------------------------------------------------------------------------


def find_open_clip_file(model_name: str, tag: str, path=None) -> Path:
    """The open_clip weights file: `path`, else $GRN_CLIP_WEIGHTS, else the Hugging Face hub cache
    (looked up, never downloaded). Raises FileNotFoundError naming the file to provide. (The harness
    resolves through grn_eval.weights.find_clip_weights, which also checks hashes, and passes `path`.)"""
    explicit = path or os.environ.get(CLIP_ENV)
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"open_clip {model_name}/{tag} weights: '{p}' does not exist")
        return p
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    repo = (open_clip.get_pretrained_cfg(model_name, tag) or {}).get("hf_hub", "").strip("/")
    for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, filename) if repo else None
        if isinstance(hit, str):
            return Path(hit)
    where = f"'open_clip_pytorch_model.bin' of the Hugging Face repo '{repo}'" if repo else "its weights file"
    raise FileNotFoundError(
        f"open_clip text tower {model_name}/{tag}: no weights on this machine (nothing is downloaded at run "
        f"time). Provide {where}: set {CLIP_ENV}=/path/to/that file, or fill the Hugging Face cache with "
        f"'{repo}' on a machine with internet.")


class OpenCLIPTextEncoder(nn.Module):
    """Per-token states of a frozen open_clip text transformer (after ln_final, before pooling).

    The tower is held outside the module tree on purpose: its weights never enter this model's
    state dict, optimizer or EMA. It follows the device of the ids it is given."""

    def __init__(self, cfg: TextConfig, weights_path=None, tower: nn.Module | None = None, tokenizer=None):
        super().__init__()
        import open_clip

        self.cfg = cfg
        if tower is None:  # `tower` / `tokenizer` are for tests with a tiny random model
            path = find_open_clip_file(cfg.clip_model, cfg.clip_tag, weights_path)
            tower = open_clip.create_model(cfg.clip_model, pretrained=str(path))
        self._tower = (tower.eval().requires_grad_(False),)
        self._tokenizer = tokenizer or open_clip.get_tokenizer(cfg.clip_model)
        self.width = tower.transformer.width
        self.max_len = tower.context_length

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return self._tokenizer(prompts)[:, : self.max_len]

    def unknown_words(self, prompt: str) -> list[str]:
        return []  # byte-pair encoding covers any text

    @torch.no_grad()
    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tower = self._tower[0].to(ids.device)
        n = ids.shape[1]
        mask = None if tower.attn_mask is None else tower.attn_mask[:n, :n]  # causal in CLIP
        x = tower.token_embedding(ids) + tower.positional_embedding[:n]
        x = tower.ln_final(tower.transformer(x, attn_mask=mask))
        return x.float(), ids != 0  # open_clip pads with id 0 after <end_of_text>


def build_text_encoder(cfg: TextConfig, clip_weights=None) -> nn.Module:
    if cfg.encoder == "words":
        if not cfg.vocab:
            raise ValueError("a 'words' text encoder needs a vocabulary (e.g. grn.captions.vocabulary())")
        return WordTextEncoder(cfg)
    if cfg.encoder == "open_clip":
        return OpenCLIPTextEncoder(cfg, clip_weights)
    raise ValueError(f"unknown text encoder '{cfg.encoder}'; allowed: 'words', 'open_clip'")


# ---------------------------------------------------------------------------------------
# UMT5-XXL encoder (GRN_bit's official text encoder; frozen, local folder only)
# ---------------------------------------------------------------------------------------

UMT5_ENV = "GRN_UMT5"  # the folder a suite names as ${GRN_UMT5}
UMT5_MAX_LEN = 512  # the official tokenizer pads and truncates to 512 tokens (umt5_tokenizers.py:53-58)
UMT5_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")  # the weight files of a Hugging Face model folder
WAN_UMT5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"  # the released encoder, in Wan's key layout (infer.py:115-121)
# umt5_xxl (t5.py:456-469): vocab 256384, dim 4096 (= attention width), FFN 10240, 64 heads, 24 layers, 32 relative
# buckets over a max distance of 128 (t5.py T5RelativeEmbedding), one relative bias per layer (shared_pos=False),
# gated tanh-GELU FFN (t5.py GELU, T5FeedForward), as transformers' UMT5Config reads them
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False)


def _umt5_missing(folder, what: str) -> UserError:
    return UserError(
        f"UMT5-XXL text encoder: {what} '{folder}'. Give a local folder with the Hugging Face model google/umt5-xxl "
        f"(config.json, its weight files and the tokenizer files; or the released {WAN_UMT5_FILE} beside the "
        f"google/umt5-xxl tokenizer files), e.g. fetched on a machine with internet by "
        f"`huggingface-cli download google/umt5-xxl --local-dir FOLDER`, and set {UMT5_ENV}=FOLDER (or pass the "
        f"folder); nothing is downloaded at run time")


def umt5_weight_files(folder) -> list[Path]:
    """The weight files of a local UMT5 folder (safetensors preferred), sorted; UserError naming the folder."""
    if folder is None or not str(folder):
        raise _umt5_missing(f"${UMT5_ENV}", "no folder given:")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise _umt5_missing(root, "no such folder")
    if (root / WAN_UMT5_FILE).is_file():  # the released file (its config is UMT5_XXL unless config.json says other)
        return [root / WAN_UMT5_FILE]
    if not (root / "config.json").is_file():
        raise _umt5_missing(root, "no config.json in")
    for pattern in UMT5_WEIGHTS:
        files = sorted(root.glob(pattern))
        if files:
            return files
    raise _umt5_missing(root, f"no weight files ({' / '.join(UMT5_WEIGHTS)}) in")


def _check_sha256(files: list[Path], want) -> dict[str, str]:
    """{file name: sha256} of the weight files, checked against `want` (one hex digest for a single file, or
    {name: digest}); a mismatch is a UserError naming the file."""
    from grn.fileio import sha256_file

    got = {f.name: sha256_file(f) for f in files}
    if want is None:
        return got
    pins = {files[0].name: want} if isinstance(want, str) else dict(want)
    for name, digest in pins.items():
        if got.get(name) != str(digest).lower():
            raise UserError(f"UMT5-XXL text encoder: '{name}' has sha256 {got.get(name, 'absent')}, expected {digest}: "
                            f"another file than the one pinned; use that file or update the pin")
    return got


def clean_prompt(text: str) -> str:
    """The official prompt cleaning before UMT5's tokenizer (umt5_tokenizers.py `clean='whitespace'`, t5.py
    T5EncoderModel): ftfy's text fix, HTML entities unescaped twice, then every run of whitespace made one space
    and the ends stripped."""
    import html
    import re

    try:
        import ftfy
    except ImportError as e:  # a dependency of open_clip; the official cleaning needs it
        raise UserError("the UMT5 prompt cleaning needs ftfy: pip install ftfy") from e
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


class UMT5TextEncoder(nn.Module):
    """Per-token states of the frozen UMT5-XXL encoder: the official T2I/T2V text features.

    Official rule (docs/reference/grn_t2iv_architecture.md section 9): prompts tokenized with their special
    tokens (`</s>` at the end), truncated and padded to 512 (umt5_tokenizers.py:53-58); the states after the
    final layer norm (t5.py:303-312), only the valid tokens used (t5.py:512-514), in float32 (infer.py:36).
    The encoder is transformers' UMT5EncoderModel, from a Hugging Face folder (google/umt5-xxl) or from the
    released `models_t5_umt5-xxl-enc-bf16.pth` in Wan's own key layout (mapped key by key, `wan_umt5_state`)
    beside the tokenizer files.

    Weights come ONLY from a local folder (`local_files_only`, never the hub); the sha256 of every weight
    file is computed, checked against `sha256` when given, and kept in `provenance`. bf16 on CUDA (the
    official precision), float32 on the CPU. `model` / `tokenizer` are for tests with a tiny random model."""

    def __init__(self, folder=None, device=None, sha256=None, max_len: int = UMT5_MAX_LEN, model=None, tokenizer=None):
        super().__init__()
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        self.provenance: dict = {"encoder": "umt5", "max_len": max_len, "dtype": str(dtype).removeprefix("torch.")}
        if model is None:
            folder = folder or os.environ.get(UMT5_ENV)
            files = umt5_weight_files(folder)
            self.provenance.update(folder=Path(folder).name, weights_sha256=_check_sha256(files, sha256))
            model, tokenizer = _load_umt5(Path(folder).expanduser(), dtype)
        self.encoder = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self._tokenizer = tokenizer
        self.width, self.max_len = int(model.config.d_model), max_len
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.pad_token_id)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """The official tokenization: each prompt cleaned (`clean_prompt`), then tokenized with `</s>`, truncated
        and padded to max_len."""
        out = self._tokenizer([clean_prompt(p) for p in prompts], padding="max_length", max_length=self.max_len,
                              truncation=True, add_special_tokens=True, return_tensors="pt")
        return out["input_ids"].long()

    def unknown_words(self, prompt: str) -> list[str]:
        return []  # sentencepiece covers any text

    @torch.no_grad()
    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = ids.to(next(self.encoder.parameters()).device)
        valid = ids != self.pad_id
        states = self.encoder(input_ids=ids, attention_mask=valid.long()).last_hidden_state.float()
        return states * valid[..., None], valid  # padding states zeroed (never attended)


def _umt5_damaged(path: Path, what: str, e: Exception) -> UserError:
    """The one message for a file of a UMT5 folder that is there but cannot be loaded: which file, why, the fix."""
    first = (str(e).splitlines() or [""])[0][:160]
    return UserError(
        f"UMT5-XXL text encoder: {what} '{path}' cannot be loaded ({type(e).__name__}: {first}): a truncated or "
        f"damaged file, or not google/umt5-xxl's. Fix: fetch the folder again on a machine with internet "
        f"(`huggingface-cli download google/umt5-xxl --local-dir FOLDER`) and set {UMT5_ENV}=FOLDER (or pass the "
        f"folder); nothing is downloaded at run time")


def _check_safetensors(files: list[Path]) -> None:
    """Open the header of every .safetensors file (cheap: no tensor is read), so that a truncated or foreign one is
    named before transformers reports it without a file name. The library checks the header against the file size."""
    from safetensors import safe_open

    for f in files:
        if f.suffix == ".safetensors":
            try:
                with safe_open(str(f), framework="pt") as handle:
                    handle.keys()
            except Exception as e:  # SafetensorError, OSError: the file is not what its name says
                raise _umt5_damaged(f, "weight file", e) from None


def _load_umt5(folder: Path, dtype: torch.dtype):
    """(UMT5EncoderModel, tokenizer) from a local folder, nothing downloaded: a Hugging Face model folder, or the
    released Wan-layout file with the tokenizer files (`wan_umt5_state`). Each stage (config, weights, tokenizer)
    names the file it could not load: the loaders raise an open set of exception types on a damaged file, and a
    user's folder is input, so each becomes one UserError with the fix."""
    from grn.extras import need

    transformers = need("transformers", "umt5", "the UMT5-XXL text encoder (`text_encoder:` of a released GRN_bit)")
    AutoTokenizer, UMT5Config = transformers.AutoTokenizer, transformers.UMT5Config
    UMT5EncoderModel = transformers.UMT5EncoderModel

    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    wan = (folder / WAN_UMT5_FILE).is_file()
    config = UMT5Config(**UMT5_XXL)
    if (folder / "config.json").is_file():
        try:
            config = UMT5Config.from_pretrained(str(folder), local_files_only=True)
        except Exception as e:  # not JSON, not a mapping, a field of the wrong type
            raise _umt5_damaged(folder / "config.json", "the model config", e) from None
    if wan:
        try:
            state = torch.load(folder / WAN_UMT5_FILE, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated zip, a foreign pickle
            raise _umt5_damaged(folder / WAN_UMT5_FILE, "the released encoder file", e) from None
        if not isinstance(state, dict):
            raise UserError(f"UMT5-XXL text encoder: '{folder / WAN_UMT5_FILE}' holds a {type(state).__name__}, not a "
                            f"state dict of tensors: not the released Wan-layout umt5-xxl encoder file")
        with torch.device("meta"):
            model = UMT5EncoderModel(config)
        model.load_state_dict(wan_umt5_state(state, model.state_dict()), strict=True, assign=True)
        model = model.to(dtype)
    else:
        files = umt5_weight_files(folder)
        _check_safetensors(files)
        try:
            model = UMT5EncoderModel.from_pretrained(str(folder), local_files_only=True, **{key: dtype})
        except Exception as e:  # a truncated .bin, shapes of another model, a missing shard
            raise _umt5_damaged(files[0] if len(files) == 1 else folder, "the weights" if len(files) == 1 else
                                f"the weight files ({', '.join(f.name for f in files)}) in", e) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # no tokenizer files, or damaged ones
        raise _umt5_damaged(folder, "the tokenizer files (tokenizer.json / spiece.model, tokenizer_config.json) in",
                            e) from None
    return model, tokenizer


def _wan_umt5_key(key: str) -> str | None:
    """A Wan-layout UMT5 encoder key (t5.py T5Encoder: token_embedding, blocks.{i}.{norm1, attn.{q,k,v,o},
    pos_embedding.embedding, norm2, ffn.{gate.0, fc1, fc2}}, norm) -> transformers' UMT5EncoderModel key;
    None for a key the encoder has no place for. The FFN is fc2(fc1(x) * gelu(gate(x))) (t5.py T5FeedForward),
    transformers' wo(wi_1(x) * gelu(wi_0(x))): gate is wi_0, fc1 wi_1."""
    rules = (
        (r"^token_embedding\.weight$", "shared.weight"),
        (r"^blocks\.(\d+)\.norm1\.weight$", r"encoder.block.\1.layer.0.layer_norm.weight"),
        (r"^blocks\.(\d+)\.attn\.([qkvo])\.weight$", r"encoder.block.\1.layer.0.SelfAttention.\2.weight"),
        (r"^blocks\.(\d+)\.pos_embedding\.embedding\.weight$",
         r"encoder.block.\1.layer.0.SelfAttention.relative_attention_bias.weight"),
        (r"^blocks\.(\d+)\.norm2\.weight$", r"encoder.block.\1.layer.1.layer_norm.weight"),
        (r"^blocks\.(\d+)\.ffn\.gate\.0\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_0.weight"),
        (r"^blocks\.(\d+)\.ffn\.fc1\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_1.weight"),
        (r"^blocks\.(\d+)\.ffn\.fc2\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wo.weight"),
        (r"^norm\.weight$", "encoder.final_layer_norm.weight"),
    )
    import re

    for pattern, replacement in rules:
        new, hits = re.subn(pattern, replacement, key)
        if hits:
            return new
    return None


def wan_umt5_state(state: dict, want: dict) -> dict:
    """The released Wan-layout encoder state -> transformers' UMT5EncoderModel state `want` (its keys and shapes),
    strictly: every Wan key has a place with its shape, every place is filled (the token embedding also fills
    the tied `encoder.embed_tokens.weight`); a UserError names the first key that does not fit."""
    out = {}
    for key, value in state.items():
        hf = _wan_umt5_key(key)
        if hf is None or hf not in want:
            raise UserError(f"UMT5-XXL text encoder: key '{key}' of {WAN_UMT5_FILE} has no place in the UMT5 encoder "
                            f"(not the released Wan-layout umt5-xxl encoder file)")
        if tuple(value.shape) != tuple(want[hf].shape):
            raise UserError(f"UMT5-XXL text encoder: key '{key}' has shape {tuple(value.shape)}, the encoder's "
                            f"'{hf}' {tuple(want[hf].shape)} (another model size than the config's)")
        out[hf] = value
    if "shared.weight" in out and "encoder.embed_tokens.weight" in want:
        out["encoder.embed_tokens.weight"] = out["shared.weight"]
    missing = [k for k in want if k not in out]
    if missing:
        raise UserError(f"UMT5-XXL text encoder: {WAN_UMT5_FILE} has no weights for '{missing[0]}' "
                        f"({len(missing)} missing): not a complete umt5-xxl encoder file")
    return out


def encode_prompts(encoder: nn.Module, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(states [B, L, width] float32 cut to the longest prompt, valid lengths [B]) of any encoder of this module:
    what GRN_bit's `encode_text(states, lens)` takes (its padding is never attended)."""
    states, valid = encoder(encoder.tokenize(list(prompts)))
    lens = valid.sum(1)
    if not bool((valid == (torch.arange(valid.shape[1], device=valid.device) < lens[:, None])).all()):
        raise ValueError("the text encoder's valid tokens are not a prefix of each prompt")
    return states[:, : int(lens.max())].float(), lens.cpu()

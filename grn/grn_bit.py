"""GRN_bit: the official text-to-image / text-to-video GRN (GRN_T2I_2B, GRN_T2V_2B), key for key.

Facts and line references: docs/reference/grn_t2iv_architecture.md (official MGenAI/GRN at 2a3353d;
`grn.py`, `basic.py`, `rope.py` = grn/models/..., `global_refine.py` = grn/schedules/...). Parameter
names are those of the official module tree, so a released state dict loads without renaming
(grn/convert.py: `load_official_grn_bit`). T2I and T2V are the same network: only the token grid differs.

One attention sequence per sample, no adaLN (`use_ada_layer_norm=0`):

  * visual: the latent z [B, d, T', h, w] as M HBQ bits per channel, round-major (bit r*d + c), each
    bit one-hot over 2 classes at input index 2*bit + class -> `word_embed` Linear(2*M*d, H)
    (hbq_util_t2iv.py:22-50; grn.py:201-205, 264, 509-514); tokens in t, h, w order;
  * pt: the signal ratio pt in [0, 1] (raw, not x1000) -> sinusoid -> MLP (`pt_embedder`), ONE token
    right after its sample's visual tokens (grn.py:95-123, 416-419, 602-609);
  * text: UMT5 states -> `text_proj` Linear(4096, H), no norm before it (grn.py:235-236, 422-425, 505).

Blocks are Qwen3-style pre-norm (basic.py:83-95, 126-169, 243-297): x += o(attn(RMSNorm(x))),
x += down(silu(gate(y)) * up(y)) with y = RMSNorm(x); no biases in q/k/v/o or the MLP; per-head
q/k RMSNorm over head_dim before RoPE; plain multi-head attention, scale head_dim^-0.5. Every norm
is an RMSNorm computed in fp32 with eps 1e-6. The head (`FsqHead`) is RMSNorm + Linear to 2 logits
per bit, run in fp32 (grn.py:132-142). The 28 blocks are registered only as
`block_chunks.{0..6}.module.{0..3}` (grn.py:293-300), as here.

Attention rule (flex_attn_mask.py:22-28; global_refine.py:176-199; basic.py:170-221): visual and pt
queries see their own visual + pt tokens and their own sample's valid text; text queries see only
their own text. So the text keys/values never depend on the image or on pt: `encode_text` computes
them once per prompt (`TextCache`) and every sampling step reuses them, as the official KV cache 't0'
(grn.py:554-568). Classifier-free guidance is two samples of a batch that differ only in their text.

3D RoPE (rope.py:73-118, 172-193; global_refine.py:236-265): the head_dim / 2 rotary pairs, interleaved
(x[2i], x[2i+1]), are split [t | h | w] into n, n, head_dim/2 - 2n pairs (n = head_dim // 2 // 3) with
frequencies base^(-j/n) (base^(-j/n_w) for w). Positions (t, h, w): text token k -> (k, 0, 0); the pt
token -> (512, 0, 0); visual token (f, i, j) -> (600 + f, round(i*uph/ph), round(j*upw/pw)) where
(uph, upw) is the RoPE extent of the aspect template nearest to h/w (`rope_extent`).

The embedded text-to-image model (size `GRN-bit-T2I-T`, grn/configs/t2i_mnist_bit.yaml) is this network with
two additions, both off for the released models (their state dicts and outputs are unchanged): `cfg.text`, a
text encoder of its own (grn/text.py `words`, trained jointly) whose states feed `text_proj` (the conditioning
is then text ids, as grn/t2i.py's), and `cfg.grid`, the token grid of the embedded tokenizer it is trained on
(the sampler's default grid and the training targets' shape). `loss` is the GRN objective of grn/generator.py on
bits: each bit replaced by a uniform random bit with probability 1 - t, t ~ sigmoid(N(p_mean, p_std)), pt = t,
cross-entropy over all bits, the prompt dropped to the empty prompt with probability `text_dropout`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from grn.backbone import RMSNorm, TimestepEmbedder, rotate_pairs
from grn.generator import corrupt_labels, sample_clean_fraction
from grn.sampling import drop_condition
from grn.text import OwnTextEncoder, TextConfig, build_text_encoder, text_config_from_dict

# The 15 aspect (h / w) templates of the official `GRN_vae_stride16` schedule, truncated to 3 decimals
# as the official code keys them (dynamic_resolution.py:27, 33): 9/16 is 0.562, 16/9 is 1.777.
ASPECT_TEMPLATES = tuple(int(r * 1000) / 1000 for r in (3 / 1, 5 / 2, 2 / 1, 16 / 9, 3 / 2, 4 / 3, 116 / 100, 1,
                                                        100 / 116, 3 / 4, 2 / 3, 9 / 16, 1 / 2, 2 / 5, 1 / 3))
EXTREME_ASPECT = 3  # the tallest template: it spans the full `rope_side` rows (global_refine.py:244-250)


@dataclass(frozen=True)
class GRNBitConfig:
    hidden: int  # embed_dim
    depth: int
    heads: int  # = key/value heads: plain multi-head attention
    block_chunks: int  # depth // block_chunks blocks per `block_chunks.{i}.module` (the state-dict layout)
    mlp_ratio: float = 3.55  # MLP hidden = round(hidden * mlp_ratio / 256) * 256 (basic.py:255)
    latent_channels: int = 64  # d of the joint image/video tokenizer
    rounds: int = 4  # M of HBQ (`hbq_round`)
    text_channels: int = 4096  # UMT5-XXL states
    text_maxlen: int = 512  # the longest prompt (tokens) the text positions may take
    pt_position: int = 512  # the pt token's t position: the official `freqs_text[..., 512:513]`, a constant
    visual_t0: int = 600  # `preserve_1d_length`: visual frame f sits at t = 600 + f, after every text slot
    max_frames: int = 21  # latent frames the official RoPE table holds: int(81 / 4 + 1) (grn.py:256)
    rope_side: int = 225  # 1800 // 8: rows of the official h/w RoPE tables (grn.py:257)
    rope_base: float = 10000.0
    freq_dim: int = 256  # width of the pt sinusoid
    norm_eps: float = 1e-6
    # the embedded model only (None for the released ones): its own text encoder, trained with it, whose
    # states (width text_channels) feed text_proj; and the token grid of the tokenizer it is trained on
    text: TextConfig | None = None
    grid: int | None = None
    frames: int | None = None  # latent frames of the embedded video model's clips (None: images, one frame)
    # the GRN training objective (`loss`): t ~ sigmoid(N(p_mean, p_std)) (the official T2I recipe's
    # --log_norm_mean -1.3 --log_norm_sigma 1.3 by default), prompt dropout for classifier-free guidance
    p_mean: float = -1.3
    p_std: float = 1.3
    text_dropout: float = 0.1

    def __post_init__(self):
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ValueError(f"hidden {self.hidden} must split into {self.heads} heads of an even head_dim")
        if self.head_dim // 2 < 3:
            raise ValueError(f"head_dim {self.head_dim} is too small for the t/h/w RoPE split (at least 6)")
        if self.mlp_hidden < 1:
            raise ValueError(f"hidden {self.hidden} x mlp_ratio {self.mlp_ratio} rounds to an empty MLP (its width "
                             f"is a multiple of 256); use a larger hidden or mlp_ratio")
        if self.block_chunks < 1 or self.depth % self.block_chunks:
            raise ValueError(f"depth {self.depth} must be a multiple of block_chunks {self.block_chunks}")
        # text (0..text_maxlen-1), pt and frames must have distinct t positions
        if not self.text_maxlen <= self.pt_position < self.visual_t0:
            raise ValueError(f"need text_maxlen ({self.text_maxlen}) <= pt_position ({self.pt_position}) < "
                             f"visual_t0 ({self.visual_t0})")
        if self.text is not None:
            if self.text.encoder != "words":
                raise ValueError(f"GRN_bit's own text encoder is a 'words' one (trained with it), got "
                                 f"'{self.text.encoder}'; frozen encoders give their states from outside")
            if self.text.width != self.text_channels or self.text.max_len > self.text_maxlen:
                raise ValueError(f"the text encoder's width {self.text.width} must be text_channels "
                                 f"({self.text_channels}) and its max_len {self.text.max_len} at most text_maxlen "
                                 f"({self.text_maxlen})")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def mlp_hidden(self) -> int:
        return round(self.hidden * self.mlp_ratio / 256) * 256

    @property
    def bits(self) -> int:  # binary elements per visual token: M * d (256 for the released model)
        return self.rounds * self.latent_channels

    @property
    def rope_pairs(self) -> tuple[int, int, int]:
        """Rotary pairs per axis (t, h, w): head_dim 128 -> (21, 21, 22) (rope.py:91-94)."""
        n = self.head_dim // 2 // 3
        return n, n, self.head_dim // 2 - 2 * n


def grn_bit_config_from_dict(d: dict) -> GRNBitConfig:
    d = dict(d)
    if isinstance(d.get("text"), dict):
        d["text"] = text_config_from_dict(d["text"])
    return replace(GRNBitConfig(hidden=256, depth=1, heads=1, block_chunks=1), **d)  # (a valid placeholder)


# ---------------------------------------------------------------------------------------
# 3D RoPE positions and tables
# ---------------------------------------------------------------------------------------


def aspect_template(h: int, w: int) -> float:
    """The template nearest to h / w (the first of equals, as numpy's argmin in grn_pipeline.py:194 and
    global_refine.py:102): it sets the RoPE extent of a token grid."""
    ratio = h / w
    return ASPECT_TEMPLATES[min(range(len(ASPECT_TEMPLATES)), key=lambda i: abs(ASPECT_TEMPLATES[i] - ratio))]


def rope_extent(aspect: float, cfg: GRNBitConfig) -> tuple[int, int]:
    """(uph, upw): the rows and columns of the RoPE grid a template's token grid is spread over. Every
    template covers the same area, rope_side * rope_side / 3 (global_refine.py:242-250): 1:1 -> (129, 129)."""
    if not 0 < aspect <= EXTREME_ASPECT:
        raise ValueError(f"aspect template {aspect} is outside (0, {EXTREME_ASPECT}]")
    upw = math.sqrt(cfg.rope_side * (cfg.rope_side / EXTREME_ASPECT) / aspect)
    return int(aspect * upw), int(upw)


def text_positions(n: int, device=None) -> torch.Tensor:
    """[n, 3] (t, h, w) of text tokens 0..n-1: (k, 0, 0); cond and uncond prompts each start at 0."""
    pos = torch.zeros(n, 3, dtype=torch.long, device=device)
    pos[:, 0] = torch.arange(n, device=device)
    return pos


def pt_positions(cfg: GRNBitConfig, device=None) -> torch.Tensor:
    """[1, 3]: the pt token's (512, 0, 0), one slot past the longest text."""
    return torch.tensor([[cfg.pt_position, 0, 0]], dtype=torch.long, device=device)


def visual_positions(frames: int, h: int, w: int, cfg: GRNBitConfig, aspect: float | None = None,
                     device=None) -> torch.Tensor:
    """[frames*h*w, 3] (t, h, w) of the visual tokens in sequence (t, then h, then w) order.

    Rows and columns are spread over the template's RoPE extent, round(i * uph / h), computed in float32
    and rounded half to even as the official torch code (global_refine.py:255-256): the same image
    content has the same positions at every resolution of one template."""
    if frames > cfg.max_frames:
        raise ValueError(f"{frames} latent frames; the RoPE of this model covers at most {cfg.max_frames}")
    aspect = aspect_template(h, w) if aspect is None else aspect
    uph, upw = rope_extent(aspect, cfg)
    if h > uph or w > upw:
        raise ValueError(f"a {h} x {w} token grid exceeds the {uph} x {upw} RoPE extent of template {aspect}")
    rows = (torch.arange(h, device=device) * (uph / h)).round().long()  # [h]
    cols = (torch.arange(w, device=device) * (upw / w)).round().long()  # [w]
    t = cfg.visual_t0 + torch.arange(frames, device=device)  # [frames]
    grid = torch.stack(torch.meshgrid(t, rows, cols, indexing="ij"), dim=-1)  # [frames, h, w, 3]
    return grid.reshape(-1, 3)


def rope_tables(positions: torch.Tensor, cfg: GRNBitConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each [N, head_dim] in float32, for positions [N, 3]: pair j of the t part turns by
    t * base^(-j/n_t), likewise h, and w with its own n_w (rope.py:95-102); each angle is repeated for
    the two members of its pair, the axes laid out [t | h | w] (global_refine.py:257-261)."""
    parts = []
    for axis, n in enumerate(cfg.rope_pairs):
        inv = 1.0 / cfg.rope_base ** (torch.arange(n, dtype=torch.float32, device=positions.device) / n)  # [n]
        parts.append(positions[:, axis : axis + 1].float() * inv)  # [N, n]
    angles = torch.cat(parts, dim=-1).repeat_interleave(2, dim=-1)  # [N, head_dim]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(a, b) -> (a cos - b sin, a sin + b cos) on interleaved pairs, in float32 (the official rotation
    runs outside autocast, rope.py:177-184); x [B, heads, N, head_dim], cos/sin [N, head_dim]."""
    xf = x.float()
    return (xf * cos + rotate_pairs(xf) * sin).to(x.dtype)


# ---------------------------------------------------------------------------------------
# Attention rule
# ---------------------------------------------------------------------------------------


def attention_mask(n_visual: int, text_lens: torch.Tensor, text_len: int) -> torch.Tensor:
    """bool [B, 1, S, S] (True = query may attend key) of the one-pass sequence, in the official
    training order [visual (n_visual) | pt (1) | text (text_len slots, the first text_lens[b] valid)].

    Visual and pt queries: every visual and pt key and the valid text; text queries: the valid text
    only (flex_attn_mask.py:22-28, global_refine.py:186-199). A padding text query sees the valid text
    too, so that no row is empty (its output is never read)."""
    b = text_lens.shape[0]
    n_img = n_visual + 1
    s = n_img + text_len
    device = text_lens.device
    is_img = torch.arange(s, device=device) < n_img  # [S]
    text_ok = torch.arange(text_len, device=device)[None] < text_lens[:, None]  # [B, L]
    key_ok = torch.cat([text_ok.new_ones(b, n_img), text_ok], dim=1)  # [B, S]
    # image keys only for image queries; valid text keys for everyone
    allowed = key_ok[:, None, :] & (is_img[None, :, None] | ~is_img[None, None, :])  # [B, S, S]
    return allowed[:, None]


# ---------------------------------------------------------------------------------------
# Modules (names = the official keys)
# ---------------------------------------------------------------------------------------


class GRNBitAttention(nn.Module):
    def __init__(self, cfg: GRNBitConfig):
        super().__init__()
        h, self.heads, self.head_dim = cfg.hidden, cfg.heads, cfg.head_dim
        self.q_proj = nn.Linear(h, h, bias=False)
        self.k_proj = nn.Linear(h, h, bias=False)
        self.v_proj = nn.Linear(h, h, bias=False)
        self.o_proj = nn.Linear(h, h, bias=False)
        self.q_norm = RMSNorm(self.head_dim, cfg.norm_eps)
        self.k_norm = RMSNorm(self.head_dim, cfg.norm_eps)

    def qkv(self, x: torch.Tensor, rope) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, N, H] -> q, k, v [B, heads, N, head_dim]; q and k normed per head, then rotated."""
        b, n, _ = x.shape
        split = (b, n, self.heads, self.head_dim)
        q = self.q_norm(self.q_proj(x).view(split)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(split)).transpose(1, 2)
        v = self.v_proj(x).view(split).transpose(1, 2)
        return apply_rope(q, *rope), apply_rope(k, *rope), v

    def attend(self, q, k, v, mask) -> torch.Tensor:
        """q [B, heads, Nq, hd], k/v [B, heads, Nk, hd], mask bool broadcast to [B, heads, Nq, Nk] or None
        -> [B, Nq, H]. Runs in the activations' dtype (bf16 under autocast, as the official bf16
        flash-attention; fp32 otherwise), softmax scale head_dim^-0.5 (SDPA's default)."""
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).flatten(2))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), no biases (Qwen3MLP, basic.py:83-95)."""

    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class GRNBitBlock(nn.Module):
    def __init__(self, cfg: GRNBitConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.attn = GRNBitAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.hidden, cfg.mlp_hidden)

    def forward(self, x, rope, mask=None, prefix=None):
        """x [B, N, H] -> (x [B, N, H], (k, v) of x's own tokens [B, heads, N, hd]). `prefix`: keys and
        values seen before x's own (the cached text); `mask` covers prefix + own keys."""
        q, k, v = self.attn.qkv(self.input_layernorm(x), rope)
        keys, values = (k, v) if prefix is None else (torch.cat([prefix[0], k], 2), torch.cat([prefix[1], v], 2))
        x = x + self.attn.attend(q, keys, values, mask)
        return x + self.mlp(self.post_attention_layernorm(x)), (k, v)


class BlockChunk(nn.Module):
    """A group of consecutive blocks under `module` (the official MultipleLayers): only the key layout."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.module = nn.ModuleList(blocks)


class FsqHead(nn.Module):
    """RMSNorm + Linear to `classes` logits per bit, in fp32 whatever the autocast (grn.py:132-142)."""

    def __init__(self, hidden: int, outputs: int, eps: float):
        super().__init__()
        self.proj = nn.Linear(hidden, outputs)
        self.norm = RMSNorm(hidden, eps)

    def forward(self, x):
        # (the meta device has no autocast of its own: the 2B model is shape-checked there)
        with torch.autocast("cpu" if x.device.type == "meta" else x.device.type, enabled=False):
            return self.proj(self.norm(x.float()).to(self.proj.weight.dtype)).float()


@dataclass
class TextCache:
    """Each block's keys and values of a batch of prompts (after k_norm and RoPE): text attends only to
    text, so they hold for every visual input and every pt, and are computed once per prompt."""

    keys: tuple[torch.Tensor, ...]  # per block [B, heads, L, head_dim]
    values: tuple[torch.Tensor, ...]  # per block [B, heads, L, head_dim]
    valid: torch.Tensor  # [B, L] bool: the prompt's own tokens (False: padding to the longest prompt)
    padded: bool = True  # some prompt is shorter than L (then every pass needs a key mask); decided once


    @property
    def batch(self) -> int:
        return self.valid.shape[0]

    def index(self, idx) -> TextCache:
        """The samples `idx` (a LongTensor, a slice, ...): reuse prompts across images of a batch."""
        return TextCache(tuple(k[idx] for k in self.keys), tuple(v[idx] for v in self.values), self.valid[idx],
                         self.padded)

    @staticmethod
    def cat(caches: list[TextCache]) -> TextCache:
        """One batch of several caches (e.g. cond then uncond), padded to the longest prompt."""
        n = max(c.valid.shape[1] for c in caches)

        def pad(t):  # [B, heads, L, hd]: zeros after the prompt (never attended: `valid` is False there)
            return F.pad(t, (0, 0, 0, n - t.shape[2]))

        depth = len(caches[0].keys)
        keys = tuple(torch.cat([pad(c.keys[i]) for c in caches]) for i in range(depth))
        values = tuple(torch.cat([pad(c.values[i]) for c in caches]) for i in range(depth))
        valid = torch.cat([torch.cat([c.valid, c.valid.new_zeros(c.batch, n - c.valid.shape[1])], 1) for c in caches])
        padded = any(c.padded or c.valid.shape[1] < n for c in caches)
        return TextCache(keys, values, valid, padded)


class GRNBit(OwnTextEncoder, nn.Module):
    kind = "grn-bit"
    token_classes = 2  # every element is a bit

    def __init__(self, cfg: GRNBitConfig):
        super().__init__()
        self.cfg = cfg
        self.text_proj = nn.Linear(cfg.text_channels, cfg.hidden)
        self.word_embed = nn.Linear(2 * cfg.bits, cfg.hidden)
        self.head = FsqHead(cfg.hidden, 2 * cfg.bits, cfg.norm_eps)
        self.pt_embedder = TimestepEmbedder(cfg.hidden, cfg.freq_dim)
        per = cfg.depth // cfg.block_chunks
        blocks = [GRNBitBlock(cfg) for _ in range(cfg.depth)]
        self.block_chunks = nn.ModuleList([BlockChunk(blocks[i * per : (i + 1) * per])
                                           for i in range(cfg.block_chunks)])
        self._init_weights()
        # the embedded model's text encoder: built after the official init (which it keeps out of), so the
        # GRN_bit weights of a seed are those of the model without it
        self.text = build_text_encoder(cfg.text) if cfg.text is not None else None
        self._null_ids = self.text.tokenize([""]) if self.text is not None else None

    @property
    def blocks(self) -> list[GRNBitBlock]:
        """The blocks in order (not registered a second time: the state dict keeps the chunked keys)."""
        return [b for chunk in self.block_chunks for b in chunk.module]

    def _init_weights(self):
        # the official special_init: every Linear N(0, 0.02), biases zero; norms at 1 (grn.py:730-741)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # -- inputs ---------------------------------------------------------------------------
    def onehot(self, bits: torch.Tensor) -> torch.Tensor:
        """bits [B, M*d, T, h, w] in {0, 1}, round-major (channel r*d + c holds round r of latent channel c)
        -> [B, T*h*w, 2*M*d]: bit i's class k at index 2*i + k (hbq_util_t2iv.py:46-50), tokens in t, h, w
        order (grn.py:509-514)."""
        x = F.one_hot(bits.long(), 2)  # [B, D, T, h, w, 2]
        x = x.permute(0, 2, 3, 4, 1, 5)  # [B, T, h, w, D, 2]
        return x.flatten(4).flatten(1, 3).to(self.word_embed.weight.dtype)  # [B, T*h*w, 2*D]

    def _check_bits(self, bits: torch.Tensor) -> torch.Tensor:
        if bits.dim() == 4:  # an image: [B, D, h, w] is one latent frame
            bits = bits.unsqueeze(2)
        if bits.dim() != 5 or bits.shape[1] != self.cfg.bits:
            raise ValueError(f"bits must be [B, {self.cfg.bits}, T, h, w] (or [B, {self.cfg.bits}, h, w]), "
                             f"got {tuple(bits.shape)}")
        return bits

    def _text_valid(self, text_states: torch.Tensor, text_lens) -> tuple[torch.Tensor, bool]:
        """([B, L] valid text tokens, whether any prompt is padded); text_lens None: all L are valid."""
        b, n, c = text_states.shape
        if c != self.cfg.text_channels:
            raise ValueError(f"text states have {c} channels; this model takes {self.cfg.text_channels}")
        if n > self.cfg.text_maxlen:
            raise ValueError(f"{n} text tokens; this model takes at most {self.cfg.text_maxlen}")
        device = text_states.device
        if text_lens is None:  # no look at values: this also runs on the meta device
            return torch.ones(b, n, dtype=torch.bool, device=device), False
        lens = torch.as_tensor(text_lens, device="cpu").long()  # checked on the host, once per prompt batch
        if lens.shape != (b,) or bool((lens < 1).any()) or bool((lens > n).any()):
            raise ValueError(f"text_lens must be [B] = [{b}] lengths in 1..{n}, got {lens.tolist()}")
        return torch.arange(n, device=device)[None] < lens.to(device)[:, None], bool((lens < n).any())

    def _image_tokens(self, bits: torch.Tensor, pt: torch.Tensor) -> torch.Tensor:
        """[B, T*h*w + 1, H]: the visual tokens, then the pt token."""
        visual = self.word_embed(self.onehot(bits))  # [B, N, H]
        pt = torch.as_tensor(pt, device=bits.device).float().reshape(-1)  # [B] (one value: for every sample)
        pt_token = self.pt_embedder(pt.expand(bits.shape[0]) if pt.numel() == 1 else pt)  # [B, H]
        return torch.cat([visual, pt_token[:, None].to(visual.dtype)], dim=1)

    def _image_rope(self, bits: torch.Tensor, aspect):
        _, _, t, h, w = bits.shape
        pos = torch.cat([visual_positions(t, h, w, self.cfg, aspect, bits.device), pt_positions(self.cfg, bits.device)])
        return rope_tables(pos, self.cfg)  # [N + 1, head_dim] each

    def _logits(self, h: torch.Tensor, bits_shape) -> torch.Tensor:
        """Visual hidden states [B, T*h*w, H] -> logits [B, 2, D, T, h, w] (classes first, as F.cross_entropy
        takes them); the head's 2*D outputs are read as (bit, class) (grn.py:343, 625)."""
        b, d, t, hh, ww = bits_shape
        out = self.head(h)  # [B, N, 2*D] fp32
        return out.view(b, t, hh, ww, d, 2).permute(0, 5, 4, 1, 2, 3)

    # -- text -----------------------------------------------------------------------------
    def encode_text(self, text_states: torch.Tensor, text_lens=None) -> TextCache:
        """UMT5 states [B, L, text_channels] (padded; `text_lens` [B] valid lengths, None = all valid) ->
        every block's text keys/values. One pass over the text alone: text sees only its own valid text."""
        valid, padded = self._text_valid(text_states, text_lens)  # [B, L]
        x = self.text_proj(text_states.to(self.text_proj.weight.dtype))  # [B, L, H]
        rope = rope_tables(text_positions(x.shape[1], x.device), self.cfg)
        mask = valid[:, None, None, :] if padded else None  # keys only: padding is never seen
        keys, values = [], []
        for block in self.blocks:
            x, (k, v) = block(x, rope, mask)
            keys.append(k)
            values.append(v)
        return TextCache(tuple(keys), tuple(values), valid, padded)

    def encode_ids(self, ids: torch.Tensor) -> TextCache:
        """Text ids [B, L] of the model's own text encoder (`cfg.text`) -> `encode_text` of its states."""
        states, valid = self._own_text()(ids)  # [B, L, width], [B, L] (the valid tokens first)
        return self.encode_text(states, valid.sum(1))

    # -- network --------------------------------------------------------------------------
    def forward(self, bits: torch.Tensor, pt: torch.Tensor, text_states: torch.Tensor | None = None,
                text_lens=None, *, cache: TextCache | None = None, aspect: float | None = None,
                ids: torch.Tensor | None = None) -> torch.Tensor:
        """bits [B, M*d, T, h, w] (or [B, M*d, h, w]), pt [B] signal ratio, and the text (states [B, L, C] with
        `text_lens`, an `encode_text` cache, or `ids` [B, L] of the model's own text encoder) -> logits
        [B, 2, M*d, T, h, w] (or [B, 2, M*d, h, w]).

        The visual + pt tokens attend to [cached text keys/values | their own]: the official sampler's
        pass (grn.py:604-622). `aspect`: the RoPE template (default: the one nearest to h / w)."""
        image = bits.dim() == 4
        bits = self._check_bits(bits)
        if cache is None and ids is not None:
            cache = self.encode_ids(ids)
        if cache is None:
            if text_states is None:
                raise ValueError("give text_states (and text_lens) or a cache from encode_text")
            cache = self.encode_text(text_states, text_lens)
        if cache.batch != bits.shape[0]:
            raise ValueError(f"the text cache holds {cache.batch} prompts for {bits.shape[0]} inputs; "
                             f"use cache.index(...) to pair them")
        x = self._image_tokens(bits, pt)  # [B, N + 1, H]
        rope = self._image_rope(bits, aspect)
        n = x.shape[1]
        mask = None
        if cache.padded:
            mask = torch.cat([cache.valid, cache.valid.new_ones(cache.batch, n)], dim=1)[:, None, None, :]
        for block, k, v in zip(self.blocks, cache.keys, cache.values):
            x, _ = block(x, rope, mask, prefix=(k, v))
        logits = self._logits(x[:, : n - 1], bits.shape)
        return logits[:, :, :, 0] if image else logits

    # -- training -------------------------------------------------------------------------
    def loss(self, tokens: torch.Tensor, ids: torch.Tensor, generator: torch.Generator | None = None,
             forward=None) -> torch.Tensor:
        """The GRN objective on bits [B, M*d, h, w] (or [B, M*d, T, h, w]) for text ids [B, L] of the model's own
        encoder: each bit replaced by a uniform random bit with probability 1 - t, pt = t, cross-entropy over
        every bit; prompts dropped to the empty prompt with probability `text_dropout` (the draws in
        grn/t2i.py's order). `forward` replaces `self` for the call (a DDP wrapper, so that the text encoder's
        gradients are all-reduced too)."""
        cfg = self.cfg
        t = sample_clean_fraction(tokens.shape[0], cfg.p_mean, cfg.p_std, generator, tokens.device)
        z = corrupt_labels(tokens, t, self.token_classes, generator)
        ids = drop_condition(self, ids, cfg.text_dropout, generator)
        logits = (forward or self)(z, t, ids=ids)
        return F.cross_entropy(logits.float(), tokens.long())

    def forward_sequence(self, bits: torch.Tensor, pt: torch.Tensor, text_states: torch.Tensor, text_lens=None, *,
                         aspect: float | None = None) -> torch.Tensor:
        """The same logits from one pass over the whole sequence [visual | pt | text] under
        `attention_mask`, in the official training order (grn.py:407-481): the reference the cached
        path is tested against."""
        image = bits.dim() == 4
        bits = self._check_bits(bits)
        valid, _ = self._text_valid(text_states, text_lens)  # [B, L]
        img = self._image_tokens(bits, pt)  # [B, N + 1, H]
        text = self.text_proj(text_states.to(self.text_proj.weight.dtype))  # [B, L, H]
        x = torch.cat([img, text.to(img.dtype)], dim=1)  # [B, S, H]
        cos_i, sin_i = self._image_rope(bits, aspect)
        cos_t, sin_t = rope_tables(text_positions(text.shape[1], x.device), self.cfg)
        rope = (torch.cat([cos_i, cos_t]), torch.cat([sin_i, sin_t]))
        mask = attention_mask(img.shape[1] - 1, valid.sum(1), text.shape[1])
        for block in self.blocks:
            x, _ = block(x, rope, mask)
        logits = self._logits(x[:, : img.shape[1] - 1], bits.shape)
        return logits[:, :, :, 0] if image else logits


# ---------------------------------------------------------------------------------------
# Sizes (as DiT's models.py): the official constructors, and a tiny one for tests
# ---------------------------------------------------------------------------------------


def _size(hidden, depth, heads, block_chunks, **defaults):
    shape = dict(hidden=hidden, depth=depth, heads=heads, block_chunks=block_chunks)

    def factory(**overrides) -> GRNBit:
        return GRNBit(GRNBitConfig(**{**shape, **defaults, **overrides}))
    return factory


GRN_BIT_SIZES = {
    # GRN2b (grn.py:766-778): the released GRN_T2I_2B / GRN_T2V_2B, 2,197,832,448 parameters
    "GRN-2B": _size(2304, 28, 18, 7),
    # GRN0b (grn.py:751-764): the other registered official size (no released weights)
    "GRN-0B": _size(512, 4, 4, 2),
    # the official layout at test scale: 2 chunks of 1 block, head_dim 16 (rotary pairs 2/2/4), 4 x 4 bits
    "GRN-bit-T": _size(64, 2, 4, 2, latent_channels=4, text_channels=32),
}


def build_grn_bit(name: str, **overrides) -> GRNBit:
    if name not in GRN_BIT_SIZES:
        raise ValueError(f"unknown GRN_bit size '{name}'; allowed: {sorted(GRN_BIT_SIZES)}")
    return GRN_BIT_SIZES[name](**overrides)


def _mnist_words_text() -> TextConfig:
    """The embedded word-level text encoder over the MNIST caption words (as grn/t2i.py's GRN-T2I-T)."""
    from grn.captions import vocabulary

    return TextConfig(encoder="words", vocab=vocabulary(), max_len=12, width=128, depth=2, heads=4)


def _video_words_text() -> TextConfig:
    """The embedded word-level text encoder over the Moving-MNIST caption words (grn/video_captions.py)."""
    from grn.video_captions import video_vocabulary

    return TextConfig(encoder="words", vocab=video_vocabulary(), max_len=16, width=128, depth=2, heads=4)


def _embedded_size(hidden, depth, heads, block_chunks, text, **defaults):
    """A size with its own text encoder: `text` overrides (a partial dict, from a YAML config) merge into the
    size's encoder, and text_channels follows the encoder's width."""
    def factory(**overrides) -> GRNBit:
        over = dict(overrides)
        base_text = text()
        if isinstance(over.get("text"), dict):
            over["text"] = text_config_from_dict({**base_text.__dict__, **over["text"]})
        shape = dict(hidden=hidden, depth=depth, heads=heads, block_chunks=block_chunks, text=base_text)
        cfg = {**shape, **defaults, **over}
        return GRNBit(GRNBitConfig(**{"text_channels": cfg["text"].width, **cfg}))
    return factory


# Not official sizes (no released weights; `grn convert` matches files against GRN_BIT_SIZES only): the embedded
# text-to-image GRN_bit, trained here (grn/configs/t2i_mnist_bit.yaml) -- GRN-T2I-T's width / depth / heads, its
# word-level text encoder and t ~ sigmoid(N(-0.8, 0.8)), on the 8 x 8 tokens (4 channels x 4 rounds) of
# grn/checkpoints/tokenizer_mnist.pt; one chunk of blocks.
EMBEDDED_SIZES = {
    "GRN-bit-T2I-T": _embedded_size(128, 4, 4, 1, _mnist_words_text, latent_channels=4, rounds=4, grid=8,
                                    p_mean=-0.8, p_std=0.8),
    # the embedded text-to-video GRN_bit (grn/configs/t2v_mnist.yaml): the same width / depth / heads on the
    # 5 x 8 x 8 space-time tokens (4 channels x 4 rounds = 16 bits) of grn/checkpoints/tokenizer_mmnist_video.pt,
    # 3D RoPE over (t, h, w) as the released model, a word-level encoder over the Moving-MNIST caption words
    "GRN-bit-T2V-T": _embedded_size(128, 4, 4, 1, _video_words_text, latent_channels=4, rounds=4, grid=8, frames=5,
                                    p_mean=-0.8, p_std=0.8),
}

"""The text-conditioned GRN (GRN_bit, as the official T2I/T2V model, at any size).

One attention sequence per sample (official `grn/models/grn.py`, `flex_attn_mask.py`):

    [ text tokens (L) | visual tokens (h*w) | t token (1) ]

  * text: a text encoder's per-token states (grn/text.py) -> Linear `text_proj` -> width H;
  * visual: the one-hot of every element of the corrupted code (`bit` layout: M*d binary
    elements per position) -> bottleneck embedding + fixed 2D sin-cos position, 2D RoPE;
  * t: the clean fraction through the sinusoidal TimestepEmbedder, as one extra token
    (`add_scale_token=1`); there is no adaLN (`use_ada_layer_norm=0`).

Attention mask: visual and t tokens attend to the valid text tokens and to each other; text
attends to (valid) text only. So the text states never depend on the image or on t (the
official sampler computes them once and caches their keys/values; here they are recomputed).
Text and t tokens get the identity rotation (the official model gives them RoPE slots of their
own; text positions come from the text encoder). An RMSNorm + Linear head on the visual tokens
gives 2 logits per bit, zero-initialised (uniform logits at the start).

Training is the GRN objective of grn/generator.py: each bit is replaced by a uniform random bit
with probability 1 - t, cross-entropy over all bits; the prompt is dropped to the empty (null)
prompt with probability 0.1 for classifier-free guidance. The official T2I recipe draws
t ~ sigmoid(N(-1.3, 1.3)) (`--log_norm_mean -1.3 --log_norm_sigma 1.3`), the defaults here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from grn.backbone import BottleneckEmbed, PlainBlock, RMSNorm, TimestepEmbedder, rope_2d_tables, sincos_2d
from grn.generator import RefinementTokens, TokenLayout, onehot_input
from grn.sampling import drop_condition
from grn.text import OwnTextEncoder, TextConfig, build_text_encoder, text_config_from_dict


@dataclass(frozen=True)
class T2IConfig(TokenLayout):
    hidden: int
    depth: int
    heads: int
    bottleneck: int
    text: TextConfig = field(default_factory=TextConfig)
    grid: int = 16
    latent_channels: int = 16
    rounds: int = 4
    layout: str = "bit"
    mlp_ratio: float = 4.0
    p_mean: float = -1.3
    p_std: float = 1.3
    text_dropout: float = 0.1


def t2i_config_from_dict(d: dict) -> T2IConfig:
    d = dict(d)
    d["text"] = text_config_from_dict(d.get("text") or {})
    return replace(T2IConfig(hidden=0, depth=0, heads=1, bottleneck=0), **d)


def attention_mask(text_valid: torch.Tensor, n_rest: int) -> torch.Tensor:
    """[B, L] valid text tokens -> bool [B, 1, L + n_rest, L + n_rest] (True = query may attend key).

    Keys: valid text tokens and every non-text token. Text queries see text keys only. Every
    query sees itself, so a padding query never has an empty row (its output is never read)."""
    b, n_text = text_valid.shape
    n = n_text + n_rest
    is_text = torch.arange(n, device=text_valid.device) < n_text
    key_ok = torch.cat([text_valid, text_valid.new_ones(b, n_rest)], dim=1)  # [B, n]
    allowed = key_ok[:, None, :] & ~(is_text[:, None] & ~is_text[None, :])  # [B, n, n]
    return (allowed | torch.eye(n, dtype=torch.bool, device=text_valid.device))[:, None]


class T2IGRN(RefinementTokens, OwnTextEncoder, nn.Module):
    kind = "grn-t2i"

    def __init__(self, cfg: T2IConfig, clip_weights=None, text_encoder: nn.Module | None = None):
        super().__init__()
        if cfg.layout not in ("ind", "bit"):
            raise ValueError(f"unknown layout '{cfg.layout}'; allowed: 'ind', 'bit'")
        self.cfg = cfg
        self.text = text_encoder or build_text_encoder(cfg.text, clip_weights)
        width = cfg.token_classes * cfg.token_channels
        self.text_proj = nn.Linear(self.text.width, cfg.hidden)
        self.x_embedder = BottleneckEmbed(width, cfg.bottleneck, cfg.hidden)
        self.t_embedder = TimestepEmbedder(cfg.hidden)
        self.register_buffer("pos_embed", sincos_2d(cfg.hidden, cfg.grid)[None], persistent=True)
        # RoPE: identity for the text slots (prefix) and the t slot (appended), 2D on the grid
        cos, sin = rope_2d_tables(cfg.hidden // cfg.heads, cfg.grid, num_prefix=self.text.max_len)
        one = torch.ones(1, cos.shape[1])
        self.register_buffer("rope_cos", torch.cat([cos, one]), persistent=False)
        self.register_buffer("rope_sin", torch.cat([sin, 0 * one]), persistent=False)
        self.blocks = nn.ModuleList([PlainBlock(cfg.hidden, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.norm_final = RMSNorm(cfg.hidden)
        self.head = nn.Linear(cfg.hidden, width)
        self._init_weights()
        self._null_ids = self.text.tokenize([""])  # [1, L]

    def _init_weights(self):
        for m in (self.text_proj, self.t_embedder, self.blocks):
            for sub in m.modules():
                if isinstance(sub, nn.Linear):
                    nn.init.xavier_uniform_(sub.weight)
                    nn.init.zeros_(sub.bias)
        for conv in (self.x_embedder.proj1, self.x_embedder.proj2):
            nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj2.bias)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        nn.init.zeros_(self.head.weight)  # uniform logits at the start
        nn.init.zeros_(self.head.bias)

    # prompts: tokenize, null_condition, training_conditions (grn.text.OwnTextEncoder)

    # -- network --------------------------------------------------------------------------
    def sequence(self, tokens: torch.Tensor, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """All hidden states [B, L + h*w + 1, H] after the last block (text | visual | t)."""
        states, valid = self.text(ids)  # [B, L, E], [B, L]
        text = self.text_proj(states.to(self.text_proj.weight.dtype))
        x = onehot_input(tokens, self.cfg.token_classes, self.pos_embed.dtype)
        visual = self.x_embedder(x) + self.pos_embed  # [B, h*w, H]
        h = torch.cat([text, visual, self.t_embedder(t).unsqueeze(1)], dim=1)
        mask = attention_mask(valid, visual.shape[1] + 1)
        n_text = ids.shape[1]
        rope = (torch.cat([self.rope_cos[:n_text], self.rope_cos[self.text.max_len:]]),
                torch.cat([self.rope_sin[:n_text], self.rope_sin[self.text.max_len:]]))
        for block in self.blocks:
            h = block(h, rope, attn_mask=mask)
        return h

    def forward(self, tokens: torch.Tensor, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """tokens [B, D, h, w], t [B] clean fraction, ids [B, L] text -> logits [B, K, D, h, w]."""
        b, d, hh, ww = tokens.shape
        h = self.sequence(tokens, t, ids)[:, ids.shape[1] : ids.shape[1] + hh * ww]
        with torch.autocast(h.device.type, enabled=False):  # the head runs in fp32
            out = self.head(self.norm_final(h.float()))  # [B, h*w, K*D]
        return out.reshape(b, hh, ww, self.cfg.token_classes, d).permute(0, 3, 4, 1, 2)

    # -- training -------------------------------------------------------------------------
    def loss(self, tokens: torch.Tensor, ids: torch.Tensor, generator: torch.Generator | None = None,
             forward=None) -> torch.Tensor:
        """Cross-entropy over every bit of the corrupted input; prompts dropped to the null prompt
        with probability `text_dropout`. `forward` replaces `self` for the call (a DDP wrapper)."""
        b = tokens.shape[0]
        t = self.sample_t(b, generator, tokens.device)
        z = self.corrupt(tokens, t, generator)
        ids = drop_condition(self, ids, self.cfg.text_dropout, generator)
        logits = (forward or self)(z, t, ids)
        return F.cross_entropy(logits.float(), tokens.long())


# ---------------------------------------------------------------------------------------
# Sizes (official GRN-2B shape for reference; the small one for the embedded MNIST captions)
# ---------------------------------------------------------------------------------------


def _mnist_words_text() -> TextConfig:
    from grn.captions import vocabulary

    return TextConfig(encoder="words", vocab=vocabulary(), max_len=12, width=128, depth=2, heads=4)


def _size(hidden, depth, heads, bottleneck, text, **defaults):
    def factory(clip_weights=None, **overrides) -> T2IGRN:
        over = dict(overrides)
        base_text = text()
        if isinstance(over.get("text"), dict):  # partial text settings from a YAML config
            over["text"] = text_config_from_dict({**base_text.__dict__, **over["text"]})
        shape = dict(hidden=hidden, depth=depth, heads=heads, bottleneck=bottleneck, text=base_text)
        return T2IGRN(T2IConfig(**{**shape, **defaults, **over}), clip_weights=clip_weights)
    return factory


T2I_MNIST = {"grid": 8, "latent_channels": 4, "rounds": 4}
C2I_T = {"p_mean": -0.8, "p_std": 0.8}  # the C2I recipe's t ~ sigmoid(N(-0.8, 0.8)), as GRN-T

# (GRN-2B itself: width 2304, depth 28, 18 heads, MLP ratio 3.55, UMT5-XXL text states of width 4096.
# UMT5 is not implemented here, so it is not a registry entry.)
T2I_GENERATORS = {
    # the embedded text-to-image model: GRN-T's width/depth and t distribution (so that only the
    # conditioning differs from the class-conditional GRN-T), a word-level text encoder over the captions
    "GRN-T2I-T": _size(128, 4, 4, 64, _mnist_words_text, **T2I_MNIST, **C2I_T),
    # the same with a frozen open_clip ViT-B-32 text tower (needs its real weights to build)
    "GRN-T2I-T-clip": _size(128, 4, 4, 64, lambda: TextConfig(encoder="open_clip"), **T2I_MNIST, **C2I_T),
}

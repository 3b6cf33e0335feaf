"""The autoencoder's quantizers behind one interface, one registry entry each (`QUANTIZERS`).

HBQ is this project's (grn/hbq.py). FSQ, LFQ, BSQ, VQ and residual VQ are the modules of
vector-quantize-pytorch, not rewritten here: a wrapper only configures one from (latent channels d,
bits per token) and reads its codes. A *token* is one latent position (the d channels at one (h, w)).
Its code is D labels of K classes each (`code_space`), so the bits a quantizer spends per token follow
from what it can write, not from its configuration: bits = D log2 K (tests/test_quantizers.py checks
that every code decodes to a different latent, so the code space is really used as claimed).

    quantizer   code of one token                      configured from bits b (d = 8 in the photo study)
    hbq         d labels of 2^M levels (M rounds)      M = b / d
    fsq         d labels of L levels (per dimension)   L = 2^(b / d), levels [L] * d
    lfq / bsq   b / 8 codebooks of 256 (8 sign bits)   one codebook of 2^b when b < 8; BSQ: on the sphere
    vq          1 label of 2^b codes                   b <= 16 (a single codebook of 2^b entries)
    rvq         b / 8 residual stages of 256 codes     stage 1 is the b = 8 VQ
    none        no code (continuous; the ceiling)

Every wrapper works on [B, d, h, w] latents: `bound` (what the encoder's output becomes before
quantizing: tanh for HBQ and the continuous ceiling; the library quantizers bound it their own way),
`forward` (training: the straight-through latent and the quantizer's auxiliary loss), `codes` ->
[B, D, h, w] int64, `values` (codes -> the quantized latent; in eval mode `values(codes(z))` is exactly
what `forward` gives) and `quantize` (eval: that latent).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from grn.extras import need
from grn.hbq import hbq_quantize, labels_to_values, quantize_ste


class LatentQuantizer(nn.Module):
    """The interface (see the module docstring); subclasses set `code_channels` (D) and `code_classes` (K)."""

    code_channels: int = 0
    code_classes: int = 0
    codebook = False  # a learned codebook: usage and perplexity tell whether it collapsed

    @property
    def code_space(self) -> tuple[int, int]:
        return self.code_channels, self.code_classes

    @property
    def bits(self) -> float:
        """Bits per token, from the code space."""
        return self.code_channels * math.log2(self.code_classes) if self.code_classes else math.inf

    def bound(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def values(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        return self.values(self.codes(z))


def _tokens(z: torch.Tensor) -> torch.Tensor:  # [B, d, h, w] -> [B, h*w, d] (the library's channel-last)
    return z.flatten(2).transpose(1, 2).contiguous()


def _grid(x: torch.Tensor, h: int, w: int) -> torch.Tensor:  # [B, h*w, C] -> [B, C, h, w]
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w).contiguous()


def _zero(z: torch.Tensor) -> torch.Tensor:
    return z.new_zeros(())


class HBQQuantizer(LatentQuantizer):
    """HBQ on the tanh-bounded latent; its code is the `ind` layout (d labels of 2^M levels). The `bit`
    layout and truncated rounds are HBQ's own and stay in grn/hbq.py and HBQTokenizer."""

    def __init__(self, d: int, rounds: int):
        super().__init__()
        self.rounds, self.code_channels, self.code_classes = rounds, d, 2**rounds

    def bound(self, h):
        return torch.tanh(h)

    def forward(self, z):
        return quantize_ste(z, self.rounds), _zero(z)

    def codes(self, z):
        return hbq_quantize(z, self.rounds).labels

    def values(self, codes):
        return labels_to_values(codes, self.rounds)

    @torch.no_grad()
    def quantize(self, z):
        return hbq_quantize(z, self.rounds).values  # equal to values(codes(z)): dyadic values, exact in float32

    def extra_repr(self) -> str:
        return f"rounds={self.rounds}"


class Continuous(LatentQuantizer):
    """No quantizer: the tanh-bounded latent itself (the ceiling every quantizer is measured against)."""

    def bound(self, h):
        return torch.tanh(h)

    def forward(self, z):
        return z, _zero(z)

    def codes(self, z):
        raise ValueError("a continuous tokenizer has no codes; use encode()")

    def quantize(self, z):
        return z


class FSQQuantizer(LatentQuantizer):
    """Finite scalar quantization (Mentzer et al. 2023) with `levels` per latent channel; its code is the
    level index of every channel (the library's single product index overflows int32 beyond 31 bits).
    Two levels need the library's symmetry-preserving grid {-1, 1} (it refuses them otherwise); more
    levels use its default grid. The level index <-> value maps are the library's own. The library holds
    its implicit codebook (every level combination) in memory, so the d channels are split into the fewest
    equal groups ("codebooks") of at most 2^16 combinations each; that changes nothing else."""

    def __init__(self, d: int, levels: int):
        super().__init__()
        FSQ = need("vector_quantize_pytorch", "quantizers", "the FSQ quantizer").FSQ

        groups = next(g for g in range(1, d + 1) if d % g == 0 and levels ** (d // g) <= 2**16)
        # len(levels) * groups == d: no projections
        self.fsq = FSQ(levels=[levels] * (d // groups), dim=d, num_codebooks=groups, preserve_symmetry=levels == 2)
        self.levels, self.groups, self.code_channels, self.code_classes = levels, groups, d, levels

    def forward(self, z):
        out = self.fsq(_tokens(z))[0]
        return _grid(out, *z.shape[2:]), _zero(z)

    def codes(self, z):
        h, w = z.shape[2:]
        t = _tokens(z).float()
        grouped = t.view(*t.shape[:2], self.groups, -1)  # the library's (..., codebook, channel)
        level = self.fsq._scale_and_shift(self.fsq.quantize(grouped))  # k in [0, L) per channel
        return _grid(torch.round(level).long().reshape(t.shape), h, w)

    def values(self, codes):
        b, d, h, w = codes.shape
        grouped = codes.float().view(b, self.groups, d // self.groups, h, w).movedim(1, -1).movedim(1, -1)
        out = self.fsq._scale_and_shift_inverse(grouped)  # [b, h, w, groups, channel]
        return out.reshape(b, h, w, d).permute(0, 3, 1, 2).contiguous()


class LFQQuantizer(LatentQuantizer):
    """Lookup-free quantization (Yu et al. 2023; `spherical`: BSQ, Zhao et al. 2024): the sign of each of
    `bits` projected dimensions, in codebooks of up to 8 bits; its code is each codebook's index."""

    def __init__(self, d: int, bits: int, spherical: bool = False):
        super().__init__()
        LFQ = need("vector_quantize_pytorch", "quantizers", "the LFQ / BSQ quantizer").LFQ

        per = min(bits, 8)
        if bits % per:
            raise ValueError(f"lfq: bits per token must be below 8 or a multiple of 8, got {bits}")
        self.lfq = LFQ(dim=d, codebook_size=2**per, num_codebooks=bits // per, spherical=spherical,
                       entropy_loss_weight=0.1, diversity_gamma=1.0)
        self.code_channels, self.code_classes = bits // per, 2**per

    def forward(self, z):
        out = self.lfq(_tokens(z))
        return _grid(out.quantized, *z.shape[2:]), out.entropy_aux_loss

    def codes(self, z):
        was = self.lfq.training
        self.lfq.eval()
        try:
            indices = self.lfq(_tokens(z)).indices  # [B, h*w, codebooks]
        finally:
            self.lfq.train(was)
        return _grid(indices.long().reshape(z.shape[0], -1, self.code_channels), *z.shape[2:])

    def values(self, codes):
        b, _, h, w = codes.shape
        indices = _tokens(codes) if self.code_channels > 1 else _tokens(codes)[..., 0]  # the library's shapes
        return _grid(self.lfq.indices_to_codes(indices).reshape(b, h * w, -1), h, w)


# Codebook settings of VQ and RVQ: EMA codebooks (decay 0.99), k-means initialisation on the first batch,
# dead codes (EMA count below 2) re-seeded from the batch, commitment 0.25 - the usual recipe against
# collapse (SoundStream, EnCodec); the library's defaults otherwise.
VQ_KWARGS = {"decay": 0.99, "commitment_weight": 0.25, "kmeans_init": True, "threshold_ema_dead_code": 2}


class VQQuantizer(LatentQuantizer):
    """Vector quantization with one learned codebook of 2^bits entries (van den Oord et al. 2017), or
    `stages` residual codebooks of 256 (Zeghidour et al. 2021); its code is the index per codebook."""

    codebook = True

    def __init__(self, d: int, bits: int, residual: bool = False):
        super().__init__()
        vqp = need("vector_quantize_pytorch", "quantizers", "the VQ quantizer")
        ResidualVQ, VectorQuantize = vqp.ResidualVQ, vqp.VectorQuantize

        if residual:
            if bits % 8:
                raise ValueError(f"rvq: bits per token must be a multiple of 8 (stages of 256 codes), got {bits}")
            self.vq = ResidualVQ(dim=d, num_quantizers=bits // 8, codebook_size=256, **VQ_KWARGS)
            self.code_channels, self.code_classes = bits // 8, 256
        else:
            if bits > 16:
                raise ValueError(f"vq: one codebook of 2^{bits} entries is not trainable here; use rvq for > 16 bits")
            self.vq = VectorQuantize(dim=d, codebook_size=2**bits, **VQ_KWARGS)
            self.code_channels, self.code_classes = 1, 2**bits
        self.residual = residual

    def forward(self, z):
        out, _indices, loss = self.vq(_tokens(z))
        return _grid(out, *z.shape[2:]), loss.sum()

    def codes(self, z):
        was = self.vq.training
        self.vq.eval()  # no codebook update
        try:
            indices = self.vq(_tokens(z))[1]
        finally:
            self.vq.train(was)
        return _grid(indices.long().reshape(z.shape[0], -1, self.code_channels), *z.shape[2:])

    def values(self, codes):
        b, _, h, w = codes.shape
        indices = _tokens(codes) if self.residual else _tokens(codes)[..., 0]
        return _grid(self.vq.get_output_from_indices(indices).reshape(b, h * w, -1), h, w)


@dataclass(frozen=True)
class QuantizerSpec:
    name: str
    build: Callable[[int, int], LatentQuantizer]  # (latent channels d, bits per token) -> the quantizer
    describe: str

    def check(self, d: int, bits: int | None) -> None:
        """Refuse a (d, bits) the quantizer cannot spend exactly."""
        if self.name == "none":
            return
        if not isinstance(bits, int) or bits < 1:
            raise ValueError(f"quantizer '{self.name}' needs bits per token (a positive integer), got {bits!r}")
        if self.name in ("hbq", "fsq") and bits % d:
            raise ValueError(f"quantizer '{self.name}' spends the same bits on each of the {d} latent channels: "
                             f"bits per token must be a multiple of {d}, got {bits}")


QUANTIZERS: dict[str, QuantizerSpec] = {}


def register_quantizer(spec: QuantizerSpec) -> QuantizerSpec:
    if spec.name in QUANTIZERS:
        raise ValueError(f"quantizer {spec.name!r} is already registered")
    QUANTIZERS[spec.name] = spec
    return spec


register_quantizer(QuantizerSpec("hbq", lambda d, b: HBQQuantizer(d, b // d), "HBQ, M = bits / d rounds"))
register_quantizer(QuantizerSpec("fsq", lambda d, b: FSQQuantizer(d, 2 ** (b // d)), "FSQ, 2^(bits / d) levels"))
register_quantizer(QuantizerSpec("lfq", lambda d, b: LFQQuantizer(d, b), "LFQ, bits sign dimensions"))
register_quantizer(QuantizerSpec("bsq", lambda d, b: LFQQuantizer(d, b, spherical=True), "BSQ (spherical LFQ)"))
register_quantizer(QuantizerSpec("vq", lambda d, b: VQQuantizer(d, b), "VQ, one codebook of 2^bits"))
register_quantizer(QuantizerSpec("rvq", lambda d, b: VQQuantizer(d, b, residual=True), "residual VQ, bits / 8 x 256"))
register_quantizer(QuantizerSpec("none", lambda d, b: Continuous(), "continuous (no quantizer)"))


# the quantizers that stand on vector-quantize-pytorch (the `quantizers` extra); HBQ and "none" are this project's
LIBRARY_QUANTIZERS = ("fsq", "lfq", "bsq", "vq", "rvq")


def check_installed(name: str, where: str) -> None:
    """Before anything runs: a quantizer of the library needs the `quantizers` extra (one message naming it)."""
    if name in LIBRARY_QUANTIZERS:
        need("vector_quantize_pytorch", "quantizers", f"{where}: the {name.upper()} quantizer")


def build_quantizer(name: str, d: int, bits: int | None) -> LatentQuantizer:
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer '{name}'; allowed: {sorted(QUANTIZERS)}")
    spec = QUANTIZERS[name]
    spec.check(d, bits)
    return spec.build(d, bits)

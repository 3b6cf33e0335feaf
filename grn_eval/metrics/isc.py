"""Inception Score from the official Inception's 1008 logits (torch-fidelity's computation).

Only the official torch-fidelity weights file carries the classifier; with the carrier-converted
weights the score is refused ("not available"), never computed from a zero or random head.
"""

from __future__ import annotations

import numpy as np
import torch

VERSION = "1"
NEEDS = ("the official torch-fidelity Inception file weights-inception-2015-12-05-6726825d.pth "
         "(set GRN_WEIGHTS_INCEPTION_FID to its path, or `grn-eval weights prepare --download` online)")


class NotAvailable(Exception):
    """A metric cannot be computed honestly on this machine; the message says what it needs."""


def inception_score(logits: np.ndarray | None, splits: int = 10, seed: int = 2020) -> dict:
    if logits is None or not np.isfinite(logits).all():
        raise NotAvailable(f"not available: needs {NEEDS}")
    from torch_fidelity.metric_isc import isc_features_to_metric

    out = isc_features_to_metric(torch.from_numpy(np.asarray(logits)), splits=splits, shuffle=True, rng_seed=seed)
    return {"isc_mean": out["inception_score_mean"], "isc_std": out["inception_score_std"], "splits": splits}

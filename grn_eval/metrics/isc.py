"""Inception Score from the official Inception's 1008 logits (torch-fidelity's computation).

Only the official torch-fidelity weights file carries the classifier; with the carrier-converted
weights the score is refused ("not available"), never computed from a zero or random head.
"""

from __future__ import annotations

import numpy as np
import torch

from grn_eval.metrics.registry import Row, register_metric
from grn_eval.options import Opt

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


def _isc(ctx) -> list[dict]:
    ex = ctx.extractor("tf-inception")  # the official Inception's logits whatever the suite's FID protocol
    try:
        res = inception_score(ctx.features(ctx.samples, "tf-inception").get("logits"), ctx.options["splits"])
        return [ctx.row("isc", res["isc_mean"], ex.protocol, {"isc_std": res["isc_std"], "splits": res["splits"]})]
    except NotAvailable as e:
        return [ctx.row("isc", None, ex.protocol, reason=str(e))]


# more splits than samples would leave empty splits
register_metric(key="isc", task="generation", version=VERSION, compute=_isc, order=40,
                options={"splits": Opt(int, 10, min=1, max="n_samples")},
                rows=(Row("isc", "higher", "IS", 2, floor=0.2),))

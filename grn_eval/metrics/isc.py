"""Inception Score from the official Inception's 1008 logits.

Two ways to split the samples, as the two anchors do: torch-fidelity's (`splits` equal parts after a seeded
shuffle; the default, and the official GRN protocol) and the ADM evaluator's (`split_size`: consecutive parts
of that size in the given order, the last one shorter, mean over parts; 5000 there). Both use the logits
without the classifier's bias. Only the official torch-fidelity weights file carries the classifier; with
the carrier-converted weights the score is refused ("not available"), never computed from a zero or random head.
"""

from __future__ import annotations

import numpy as np
import torch

from grn_eval.metrics.registry import NotAvailable, Row, register_metric
from grn_eval.options import Opt

VERSION = "1"
NEEDS = ("the official torch-fidelity Inception file weights-inception-2015-12-05-6726825d.pth "
         "(set GRN_WEIGHTS_INCEPTION_FID to its path, or `grn-eval weights prepare --download` online)")


def inception_score_in_order(logits: np.ndarray, split_size: int) -> dict:
    """The ADM evaluator's score: exp(mean KL(p(y|x) || p(y))) per consecutive part of `split_size`, averaged."""
    lg = np.asarray(logits, np.float64)
    p = np.exp(lg - lg.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for s in range(0, len(p), split_size):
        part = p[s : s + split_size]
        kl = (part * (np.log(part) - np.log(part.mean(0, keepdims=True)))).sum(1).mean()
        scores.append(float(np.exp(kl)))
    return {"isc_mean": float(np.mean(scores)), "isc_std": float(np.std(scores)), "splits": len(scores),
            "split_size": split_size}


def inception_score(logits: np.ndarray | None, splits: int = 10, seed: int = 2020,
                    split_size: int | None = None) -> dict:
    if logits is None or not np.isfinite(logits).all():
        raise NotAvailable(f"not available: needs {NEEDS}")
    if split_size is not None:
        return inception_score_in_order(logits, split_size)
    from torch_fidelity.metric_isc import isc_features_to_metric

    out = isc_features_to_metric(torch.from_numpy(np.asarray(logits)), splits=splits, shuffle=True, rng_seed=seed)
    return {"isc_mean": out["inception_score_mean"], "isc_std": out["inception_score_std"], "splits": splits}


def _isc(ctx) -> list[dict]:
    ex = ctx.extractor("tf-inception")  # the official Inception's logits whatever the suite's FID protocol
    o = ctx.options
    try:
        res = inception_score(ctx.features(ctx.samples, "tf-inception").get("logits"), o["splits"],
                              split_size=o["split_size"])
        how = {"split_size": o["split_size"], "order": "as sampled"} if o["split_size"] else \
            {"splits": o["splits"], "order": "shuffled (seed 2020)"}
        return [ctx.row("isc", res["isc_mean"], {**ex.protocol, **how},
                        {"isc_std": res["isc_std"], "splits": res["splits"]})]
    except NotAvailable as e:
        return [ctx.row("isc", None, ex.protocol, reason=str(e))]


def _check(given) -> str | None:
    if given.get("splits") is not None and given.get("split_size") is not None:
        return ("give either splits (torch-fidelity: equal parts after a shuffle) or split_size (ADM: consecutive "
                "parts of that size), not both")
    return None


# more splits than samples would leave empty splits
register_metric(key="isc", task="generation", version=VERSION, compute=_isc, order=40, check=_check,
                options={"splits": Opt(int, 10, min=1, max="n_samples"),
                         "split_size": Opt(int, None, min=1, why="consecutive parts of this size (ADM: 5000)")},
                rows=(Row("isc", "higher", "IS", 2, floor=0.2),))

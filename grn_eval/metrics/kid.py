"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, over seeded subsets.

k(x, y) = (x.y / d + 1)^3. Subsets are drawn exactly as torch-fidelity draws them
(`numpy.random.RandomState(seed)`, `choice(n, size, replace=False)` for set 1 then set 2, per
subset), so the same seed gives the same subsets; the arithmetic here is float64.
"""

from __future__ import annotations

import numpy as np

from grn.errors import UserError
from grn_eval import intervals
from grn_eval.metrics.registry import BOOTSTRAP, PROTOCOL, Row, register_metric
from grn_eval.options import Opt

VERSION = "1"


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


def kid(features_1: np.ndarray, features_2: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> dict:
    """{'kid_mean', 'kid_std', 'subsets', 'subset_size'}; subset_size is capped at the smaller set."""
    f1, f2 = np.asarray(features_1, np.float64), np.asarray(features_2, np.float64)
    size = min(subset_size, len(f1), len(f2))
    if size < 2:
        raise UserError(f"KID needs at least 2 samples per side, got {len(f1)} and {len(f2)}")
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        a = f1[rng.choice(len(f1), size, replace=False)]
        b = f2[rng.choice(len(f2), size, replace=False)]
        values[i] = mmd2_unbiased(polynomial_kernel(a, a), polynomial_kernel(a, b), polynomial_kernel(b, b))
    return {"kid_mean": float(values.mean()), "kid_std": float(values.std()), "subsets": subsets,
            "subset_size": size}


def mmd2_weighted(features_1, features_2, w, v) -> np.ndarray:
    """The unbiased MMD^2 over the whole of each weighted copy (w [B, n1], v [B, n2]: bootstrap draw counts):
    pairs of distinct draws, so a point drawn c times adds c (c - 1) copies of k(x, x) and never c^2."""
    f1, f2 = np.asarray(features_1, np.float64), np.asarray(features_2, np.float64)
    k_xx, k_yy, k_xy = polynomial_kernel(f1, f1), polynomial_kernel(f2, f2), polynomial_kernel(f1, f2)
    n1, n2 = w.sum(1), v.sum(1)
    xx = ((w @ k_xx) * w).sum(1) - w @ k_xx.diagonal()
    yy = ((v @ k_yy) * v).sum(1) - v @ k_yy.diagonal()
    return xx / (n1 * (n1 - 1)) + yy / (n2 * (n2 - 1)) - 2 * ((w @ k_xy) * v).sum(1) / (n1 * n2)


def kid_interval(ctx, estimate: float, pool, reference):
    """Percentile interval of the full-set unbiased MMD^2 under the bootstrap of both sets: the same population
    quantity as the subset mean KID reports (both estimators are unbiased), without the subsets' extra noise."""
    b = ctx.options["bootstrap"]
    if b < 1:
        return None
    w = intervals.counts(len(pool), b, ctx.seed, "kid:samples")
    v = intervals.counts(len(reference), b, ctx.seed, "kid:reference")
    return intervals.interval(mmd2_weighted(pool, reference, w, v), estimate)


def _kid(ctx) -> list[dict]:
    inc = ctx.inception(ctx.options["protocol"])
    if inc.reference is None:
        return [ctx.row("kid", None, inc.protocol, reason="not available: kid needs reference features, not only "
                                                          "statistics")]
    n, n_ref, given = len(ctx.samples), len(inc.reference), ctx.given.get("subset_size")
    if given is not None and given > min(n, n_ref):  # given explicitly: never shrunk silently (the default is)
        raise UserError(f"{ctx.suite.path}: metrics.kid.subset_size: {given} is larger than the {min(n, n_ref)} "
                        f"images per side (samples {n}, reference {n_ref}); lower it or raise n_samples / "
                        f"reference.limit")
    res = kid(inc.features, inc.reference, ctx.options["subsets"], ctx.options["subset_size"], ctx.seed)
    return [ctx.row("kid", res["kid_mean"], {**inc.protocol, "kernel": "cubic polynomial", "subsets": res["subsets"],
                                             "subset_size": res["subset_size"]}, {"kid_std": res["kid_std"]},
                    ci=kid_interval(ctx, res["kid_mean"], inc.features, inc.reference))]


# Bounds against n_samples: a larger subset than there are samples would give a number without meaning.
register_metric(key="kid", task="generation", version=VERSION, compute=_kid, order=20,
                compares_reference=True,
                min_samples=lambda o: (2, "the unbiased MMD^2 compares distinct pairs: 2 samples per side"),
                options={"subsets": Opt(int, 100, min=1), "subset_size": Opt(int, 1000, min=2, max="n_samples"),
                         "protocol": PROTOCOL, "bootstrap": BOOTSTRAP},
                rows=(Row("kid", "lower", "KID", 4, floor=0.002),))

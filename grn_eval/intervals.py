"""Bootstrap confidence intervals: the resampling every distribution metric shares.

A replicate redraws a set of N features with replacement; it is written as multinomial counts [B, N]
(how often each feature is drawn), so a metric whose statistic is a weighted sum or a weighted Gram
expression evaluates all B replicates with matrix products instead of B copies of the features
(grn_eval/metrics/fid.py `frechet_weighted`, kid.py, prc.py, density_coverage.py). The interval is the
percentile interval of the replicates at LEVEL. Replicates are seeded by (sampling seed, metric, side),
so a row's interval is reproducible and independent of what else the suite computes.
"""

from __future__ import annotations

import zlib

import numpy as np

LEVEL = 0.95  # two-sided


def counts(n: int, replicates: int, seed: int, stream: str) -> np.ndarray:
    """[replicates, n] draw counts of `replicates` bootstrap resamples of n items (each row sums to n)."""
    rng = np.random.default_rng([int(seed), zlib.crc32(stream.encode())])
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def interval(values, estimate: float | None = None, level: float = LEVEL) -> tuple[float, float] | None:
    """The percentile interval of the replicates; None when there are none or any is not finite.

    With `estimate`, the interval is moved by the bootstrap's estimate of the statistic's bias (mean of the
    replicates minus the estimate), so that it lies round the estimate. That matters for the Fréchet
    distance: a replicate holds about 63% distinct features, its covariance is noisier, and its FID sits
    above the estimate by many interval widths when N is not far above d (d = 32, N = 200: 3.0 above, with a
    spread of 0.3 over independent draws); uncentred, such an interval would not even contain the number."""
    v = np.asarray(values, np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        return None
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    shift = 0.0 if estimate is None else float(v.mean() - estimate)
    return float(lo - shift), float(hi - shift)


def mean_interval(per_item, replicates: int, seed: int, stream: str) -> tuple[float, float] | None:
    """The interval of a statistic that is the mean of one value per item (precision: per generated sample,
    inside the real manifold or not), the other set held fixed."""
    x = np.asarray(per_item, np.float64)
    if replicates < 1:
        return None
    return interval(counts(len(x), replicates, seed, stream) @ x / len(x))  # unbiased: no centring needed


def provenance(replicates: int) -> dict:
    """What a row records of its interval (in `extra`: the interval does not change the value, so it is not
    part of the protocol that rows are matched by)."""
    return {"bootstrap": {"replicates": replicates, "level": LEVEL, "interval": "percentile"}} if replicates else {}

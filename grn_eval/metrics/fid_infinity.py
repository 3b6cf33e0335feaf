"""FID-infinity (Chong and Forsyth 2020, "Effectively Unbiased FID and Inception Score and where to find
them"): FID is biased upward by a term that falls as 1/N, so FID at several N drawn from the samples is
fitted by a line in 1/N and its intercept is the FID of infinitely many samples.

As the paper: `points` sizes evenly spaced from `min_fraction` x N to N (5k to 50k of 50k is 0.1), one
subset drawn without replacement per size, the reference whole. Every subset's FID is one weighted copy
of the samples (fid.py `frechet_weighted`, 0/1 weights). Reported as its own row, never in place of FID at
N; its interval is the intercept +- 1.96 standard errors of the least-squares fit, and the fit's residual
and every (N, FID) point are in the row.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np

from grn.errors import UserError
from grn_eval.metrics.fid import frechet_weighted
from grn_eval.metrics.registry import PROTOCOL, Row, register_metric
from grn_eval.options import Opt

VERSION = "1"


def subset_sizes(n: int, points: int, min_fraction: float) -> np.ndarray:
    return np.unique(np.linspace(max(2, round(min_fraction * n)), n, points).round().astype(int))


def _need(options) -> tuple[int, str]:
    """MetricSpec.min_samples: the fewest samples that give the fit its 3 subset sizes under these options."""
    n = next(n for n in itertools.count(3) if len(subset_sizes(n, options["points"], options["min_fraction"])) >= 3)
    return n, (f"a line through FID at 3 or more subset sizes from min_fraction {options['min_fraction']} x N to N, "
               f"each a covariance of at least 2 vectors")


def fid_infinity(pool, reference=None, mu=None, sigma=None, points: int = 15, min_fraction: float = 0.1,
                 seed: int = 0, device="cpu") -> dict:
    """{'fid_inf', 'se', 'slope', 'residual', 'points': [[N, FID], ...]}."""
    n = len(pool)
    sizes = subset_sizes(n, points, min_fraction)
    if len(sizes) < 3:
        raise UserError(f"FID-infinity needs at least 3 subset sizes; {n} samples give {len(sizes)} "
                        f"(metrics.fid_inf.points / min_fraction); raise n_samples or min_fraction")
    rng = np.random.default_rng([int(seed), zlib.crc32(b"fid_inf")])
    w = np.zeros((len(sizes), n))
    for row, m in zip(w, sizes):
        row[rng.choice(n, m, replace=False)] = 1.0
    fids = frechet_weighted(pool, reference, w, device=device) if reference is not None else \
        frechet_weighted(pool, None, w, mu2=mu, sigma2=sigma, device=device)
    design = np.stack([np.ones(len(sizes)), 1.0 / sizes], 1)
    coef, *_ = np.linalg.lstsq(design, fids, rcond=None)
    resid = fids - design @ coef
    dof = len(sizes) - 2
    s2 = float(resid @ resid) / dof if dof > 0 else 0.0
    se = float(np.sqrt(s2 * np.linalg.inv(design.T @ design)[0, 0]))
    return {"fid_inf": float(coef[0]), "se": se, "slope": float(coef[1]), "residual": float(np.sqrt(s2)),
            "points": [[int(m), float(f)] for m, f in zip(sizes, fids)]}


def _fid_inf(ctx) -> list[dict]:
    inc = ctx.inception(ctx.options["protocol"])
    o = ctx.options
    res = fid_infinity(inc.features, inc.stats_features, inc.mu, inc.sigma, o["points"], o["min_fraction"], ctx.seed,
                       ctx.device)
    ci = (res["fid_inf"] - 1.96 * res["se"], res["fid_inf"] + 1.96 * res["se"])
    return [ctx.row("fid_inf", res["fid_inf"], {**inc.protocol, "points": o["points"],
                                                "min_fraction": o["min_fraction"]},
                    {k: res[k] for k in ("se", "slope", "residual", "points")}, ci=ci)]


register_metric(key="fid_inf", task="generation", version=VERSION, compute=_fid_inf, order=12,
                compares_reference=True,
                min_samples=_need,
                options={"points": Opt(int, 15, min=3), "protocol": PROTOCOL,
                         "min_fraction": Opt(float, 0.1, min=0, max=1, min_exclusive=True, max_exclusive=True)},
                rows=(Row("fid_inf", "lower", "FID∞", 2, floor=0.5),))

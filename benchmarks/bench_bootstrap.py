"""The FID bootstrap at d = 2048, N = 250 (the embedded suites): all replicates at once from Gram matrices
(fid.frechet_weighted) against the plain route, one resample -> covariance -> eigh Fréchet per replicate."""

from __future__ import annotations

import warnings

import numpy as np

from benchmarks.common import best_of, write
from grn_eval import intervals
from grn_eval.metrics.fid import frechet_terms, frechet_weighted, gaussian_stats

REPLICATES = 200


def _plain(x, y, w, v) -> list[float]:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # N < d, on purpose
        for wb, vb in zip(w, v):
            xb, yb = (a[np.repeat(np.arange(len(a)), c.astype(int))] for a, c in ((x, wb), (y, vb)))
            out.append(frechet_terms(*gaussian_stats(xb), *gaussian_stats(yb)).total)
    return out


def run() -> None:
    rng = np.random.default_rng(0)
    d, n = 2048, 250
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    x, y = np.abs(rng.standard_normal((n, d)) @ mix), np.abs(rng.standard_normal((n, d)) @ mix + 0.05)
    w, v = intervals.counts(n, REPLICATES, 0, "x"), intervals.counts(n, REPLICATES, 0, "y")
    t_ours, ours = best_of(lambda: frechet_weighted(x, y, w, v), repeats=3)
    k = 3  # the plain route takes seconds per replicate: time a few and scale to REPLICATES
    t_plain, plain = best_of(lambda: _plain(x, y, w[:k], v[:k]), repeats=1)
    t_plain *= REPLICATES / k
    write("bootstrap_fid_d2048", {
        "project": {"method": f"{REPLICATES} replicates at once from Gram matrices", "seconds": t_ours},
        "anchor": {"method": f"resample, covariance, eigh Fréchet per replicate ({k} timed, scaled to "
                             f"{REPLICATES})", "seconds": t_plain},
        "ratio": t_plain / t_ours, "unit": "speed-up (anchor seconds / project seconds)",
        "target": f"B = {REPLICATES} at d = {d}, N = {n} in seconds; replicate values equal to 1e-6 relative",
        "relative_difference": float(np.max(np.abs(ours[:k] - np.asarray(plain)) / np.abs(plain))),
    })


if __name__ == "__main__":
    run()

"""Fréchet distance at d=2048: the symmetric eigh form against scipy.linalg.sqrtm."""

from __future__ import annotations

import numpy as np

from benchmarks.common import best_of, write
from grn_eval.metrics.fid import frechet_distance, gaussian_stats


def run() -> None:
    rng = np.random.default_rng(0)
    d, n = 2048, 4096
    # two correlated, non-isotropic feature clouds, like Inception pool3 statistics
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    a = np.abs(rng.standard_normal((n, d)) @ mix)
    b = np.abs(rng.standard_normal((n, d)) @ (mix + 0.05 * rng.standard_normal((d, d)) / np.sqrt(d)))
    s1, s2 = gaussian_stats(a), gaussian_stats(b)
    t_ours, v_ours = best_of(lambda: frechet_distance(*s1, *s2, method="eigh"))
    t_anchor, v_anchor = best_of(lambda: frechet_distance(*s1, *s2, method="sqrtm"), repeats=1)
    write("frechet_d2048", {
        "project": {"method": "eigh (symmetric)", "seconds": t_ours, "value": v_ours},
        "anchor": {"method": "scipy.linalg.sqrtm", "seconds": t_anchor, "value": v_anchor},
        "ratio": t_anchor / t_ours, "unit": "speed-up (anchor seconds / project seconds)",
        "target": ">= 5x faster, same value to 1e-6 relative",
        "relative_difference": abs(v_ours - v_anchor) / abs(v_anchor),
    })


if __name__ == "__main__":
    run()

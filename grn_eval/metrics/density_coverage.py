"""Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative
Models"), k = 5 as the paper recommends, with the reference implementation's rules (the `prdc` package).

Only the real manifold is used, so an outlier among the generated samples cannot inflate it as it does
recall's: every real sample gets a ball with radius = the distance to its k-th nearest other real sample.
Density: the mean over generated samples of the number of real balls containing it, divided by k (about
1 when both sets come from one distribution; above 1 when samples crowd round the real modes). Coverage:
the fraction of real balls holding at least one generated sample. "Containing" is strict (distance <
radius), as in `prdc`; precision / recall (prc.py) follow the ADM evaluator's `<=`. Distances in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from grn.errors import UserError
from grn_eval.metrics.prc import kth_radii
from grn_eval.metrics.registry import PROTOCOL, Row, register_metric
from grn_eval.options import Opt

VERSION = "1"


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5, device="cpu", block: int = 4096) -> dict:
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64, device=device)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64, device=device)
    if len(r) <= k or len(f) == 0:
        raise UserError(f"density/coverage with k={k} needs more than {k} reference samples and some generated "
                        f"ones (metrics.density_coverage.k); got {len(r)} reference and {len(f)} generated")
    radii = kth_radii(r, k, block)
    inside, covered = 0, []
    for s in range(0, len(r), block):  # a block of real balls against every generated sample
        d = torch.cdist(r[s : s + block], f)
        ball = d < radii[s : s + block, None]
        inside += int(ball.sum())
        covered.append(ball.any(dim=1))
    return {"density": inside / (k * len(f)), "coverage": torch.cat(covered).double().mean().item(), "k": k}


def _density_coverage(ctx) -> list[dict]:
    inc = ctx.inception(ctx.options["protocol"])
    if inc.reference is None:
        return [ctx.row("density_coverage", None, inc.protocol,
                        reason="not available: density/coverage needs reference features, not only statistics")]
    res = density_coverage(inc.reference, inc.pool, ctx.options["k"], ctx.device)
    return [ctx.row(key, res[key], {**inc.protocol, "k": res["k"]}) for key in ("density", "coverage")]


# k neighbours need more than k reference samples, else the radii have no meaning
register_metric(key="density_coverage", task="generation", version=VERSION, compute=_density_coverage, order=35,
                options={"k": Opt(int, 5, min=1, max="n_samples", max_exclusive=True), "protocol": PROTOCOL},
                rows=(Row("density", "higher", "Dens.", 3, floor=0.03),
                      Row("coverage", "higher", "Cov.", 3, floor=0.02)))

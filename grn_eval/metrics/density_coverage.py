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
from grn_eval.metrics.prc import knn_need, knn_rows, kth_radii
from grn_eval.metrics.registry import BOOTSTRAP, PROTOCOL, Row, register_metric
from grn_eval.options import Opt

VERSION = "1"


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5, device="cpu", block: int = 4096,
                     per_item: bool = False) -> dict:
    """{'density', 'coverage', 'k'}; with `per_item` also what the two are means of: the real balls holding
    each generated sample (over k) and whether each real ball holds one."""
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64, device=device)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64, device=device)
    if len(r) <= k or len(f) == 0:
        raise UserError(f"density/coverage with k={k} needs more than {k} reference samples and some generated "
                        f"ones (metrics.density_coverage.k); got {len(r)} reference and {len(f)} generated")
    radii = kth_radii(r, k, block)
    holding, covered = torch.zeros(len(f), dtype=torch.float64, device=f.device), []
    for s in range(0, len(r), block):  # a block of real balls against every generated sample
        ball = torch.cdist(r[s : s + block], f) < radii[s : s + block, None]
        holding += ball.sum(0)
        covered.append(ball.any(dim=1))
    covered = torch.cat(covered).double()
    out = {"density": holding.sum().item() / (k * len(f)), "coverage": covered.mean().item(), "k": k}
    if per_item:
        out.update(fake_density=(holding / k).cpu().numpy(), real_covered=covered.cpu().numpy())
    return out


def _density_coverage(ctx) -> list[dict]:
    return knn_rows(ctx, lambda r, f, k, dev: density_coverage(r, f, k, dev, per_item=True),
                    {"density": "fake_density", "coverage": "real_covered"})


# k neighbours need more than k reference samples, else the radii have no meaning
register_metric(key="density_coverage", task="generation", version=VERSION, compute=_density_coverage, order=35,
                compares_reference=True,
                min_samples=knn_need,
                options={"k": Opt(int, 5, min=1, max="n_samples", max_exclusive=True), "protocol": PROTOCOL,
                         "bootstrap": BOOTSTRAP},
                rows=(Row("density", "higher", "Dens.", 3, floor=0.03),
                      Row("coverage", "higher", "Cov.", 3, floor=0.02)))

"""Improved precision and recall (Kynkäänniemi et al. 2019) with k = 3, as the ADM evaluator.

Each set's manifold is the union of balls around its points with radius = the distance to the
k-th nearest other point of the same set. Precision: the fraction of generated samples inside
the real manifold; recall: the fraction of real samples inside the generated manifold.
Distances in float64 on the given device.
"""

from __future__ import annotations

import numpy as np
import torch

from grn.errors import UserError
from grn_eval import intervals
from grn_eval.metrics.registry import BOOTSTRAP, PROTOCOL, Row, register_metric
from grn_eval.options import Opt

VERSION = "1"


def kth_radii(x: torch.Tensor, k: int, block: int) -> torch.Tensor:
    out = []
    for s in range(0, len(x), block):
        d = torch.cdist(x[s : s + block], x)
        out.append(d.kthvalue(k + 1, dim=1).values)  # +1: the point itself is at distance 0
    return torch.cat(out)


def _inside(query: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, block: int) -> torch.Tensor:
    out = []
    for s in range(0, len(query), block):
        out.append((torch.cdist(query[s : s + block], support) <= radii[None]).any(dim=1))
    return torch.cat(out)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, device="cpu", block: int = 4096,
                     per_item: bool = False) -> dict:
    """{'precision', 'recall', 'k'}; with `per_item` also the 0/1 of every generated sample (inside the real
    manifold) and of every real sample (inside the generated one) that the two numbers are the means of."""
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64, device=device)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64, device=device)
    if min(len(r), len(f)) <= k:
        raise UserError(f"precision/recall with k={k} needs more than {k} samples per side (metrics.prc.k); "
                        f"got {len(r)} reference and {len(f)} generated")
    r_radii, f_radii = kth_radii(r, k, block), kth_radii(f, k, block)
    fake_in, real_in = _inside(f, r, r_radii, block).double(), _inside(r, f, f_radii, block).double()
    out = {"precision": fake_in.mean().item(), "recall": real_in.mean().item(), "k": k}
    if per_item:
        out.update(fake_inside=fake_in.cpu().numpy(), real_inside=real_in.cpu().numpy())
    return out


def knn_rows(ctx, measure, items: dict[str, str]) -> list[dict]:
    """The rows of a k-NN metric: `measure(reference, pool, k, device)` with per-item values, then one row
    per name in `items` (row name -> its per-item key) with its interval. The interval resamples the set a
    number averages over and holds the manifold fixed: resampling the manifold's own points would duplicate
    them and shrink their k-NN radii (the bootstrap fails there). Without reference features, one row named
    after the metric says why none of the numbers is there."""
    inc = ctx.inception(ctx.options["protocol"])
    if inc.reference is None:
        return [ctx.row(ctx.spec.key, None, inc.protocol, reason=f"not available: {ctx.spec.key} needs reference "
                                                                 f"features, not only statistics")]
    res = measure(inc.reference, inc.pool, ctx.options["k"], ctx.device)
    return [ctx.row(name, res[name], {**inc.protocol, "k": res["k"]},
                    ci=intervals.mean_interval(res[item], ctx.options["bootstrap"], ctx.seed,
                                               f"{ctx.spec.key}:{name}"))
            for name, item in items.items()]


def _prc(ctx) -> list[dict]:
    return knn_rows(ctx, lambda r, f, k, dev: precision_recall(r, f, k, dev, per_item=True),
                    {"precision": "fake_inside", "recall": "real_inside"})


# k neighbours need more than k samples, else the radii have no meaning
register_metric(key="prc", task="generation", version=VERSION, compute=_prc, order=30,
                options={"k": Opt(int, 3, min=1, max="n_samples", max_exclusive=True), "protocol": PROTOCOL,
                         "bootstrap": BOOTSTRAP},
                rows=(Row("precision", "higher", "Prec.", 3, floor=0.02),
                      Row("recall", "higher", "Rec.", 3, floor=0.02)))

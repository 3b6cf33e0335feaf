"""Improved precision and recall (Kynkäänniemi et al. 2019) with k = 3, as the ADM evaluator.

Each set's manifold is the union of balls around its points with radius = the distance to the
k-th nearest other point of the same set. Precision: the fraction of generated samples inside
the real manifold; recall: the fraction of real samples inside the generated manifold.
Distances in float64 on the given device by default. `distances: adm-float16` computes them as the ADM
evaluator's `DistanceBlock` does instead (see `adm_sq_distances`), so that its numbers are reproduced to the
sample, not only to within the float16 noise.
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


# ---------------------------------------------------------------------------------------
# The ADM evaluator's distances. Its DistanceBlock casts both feature batches to float16 and computes
# max(|u|^2 - 2 u.v + |v|^2, 0) there; only when some value of a block is not finite (float16 overflows at
# 65504) does it compute that block in float32 instead. Blocks are 10 000 x 10 000 (its row and column
# batches), so the choice is made per block pair as there. Here each float16 operation is done in float32
# and rounded to float16: for +, -, x that is exactly float16 arithmetic (float32 has 24 >= 2 x 11 + 2 bits,
# so the double rounding is innocuous), and the sums of the squares and of the products accumulate in
# float32 as TF's reductions and cuBLAS's half-precision products do on a GPU (their summation order can
# differ, which moves a distance only where it falls on a float16 rounding boundary).
# ---------------------------------------------------------------------------------------

ADM_BLOCK = 10_000


def _f16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).to(torch.float32)


def adm_sq_distances(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [len(u), len(v)], float32, as the ADM evaluator's DistanceBlock."""
    u, v = u.to(torch.float32), v.to(torch.float32)
    u16, v16 = _f16(u), _f16(v)
    nu, nv = _f16(_f16(u16 * u16).sum(1)), _f16(_f16(v16 * v16).sum(1))
    d = _f16(_f16(nu[:, None] - _f16(2 * _f16(u16 @ v16.T))) + nv[None]).clamp(min=0)
    if torch.isfinite(d).all():
        return d
    return ((u * u).sum(1)[:, None] - 2 * (u @ v.T) + (v * v).sum(1)[None]).clamp(min=0)


def _adm_blocks(a: torch.Tensor, b: torch.Tensor):
    """(row start, squared distances of a row block of `a` to all of `b`), block pair by block pair."""
    for i in range(0, len(a), ADM_BLOCK):
        yield i, torch.cat([adm_sq_distances(a[i : i + ADM_BLOCK], b[j : j + ADM_BLOCK])
                            for j in range(0, len(b), ADM_BLOCK)], 1)


def _adm_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.cat([d.kthvalue(k + 1, dim=1).values for _, d in _adm_blocks(x, x)])  # squared, float32


def _adm_precision_recall(r: torch.Tensor, f: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    r_radii, f_radii = _adm_radii(r, k), _adm_radii(f, k)
    real_in = torch.zeros(len(r), dtype=torch.bool, device=r.device)
    fake_in = torch.zeros(len(f), dtype=torch.bool, device=r.device)
    for i, d in _adm_blocks(r, f):  # d [reference block, samples]
        real_in[i : i + len(d)] |= (d <= f_radii[None]).any(1)
        fake_in |= (d <= r_radii[i : i + len(d), None]).any(0)
    return fake_in, real_in


DISTANCES = ("float64", "adm-float16")


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, device="cpu", block: int = 4096,
                     per_item: bool = False, distances: str = "float64") -> dict:
    """{'precision', 'recall', 'k'}; with `per_item` also the 0/1 of every generated sample (inside the real
    manifold) and of every real sample (inside the generated one) that the two numbers are the means of.
    `distances`: "float64", or "adm-float16" as the ADM evaluator (above)."""
    if distances not in DISTANCES:
        raise ValueError(f"unknown distances {distances!r}; allowed: {DISTANCES}")
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64, device=device)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64, device=device)
    if min(len(r), len(f)) <= k:
        raise UserError(f"precision/recall with k={k} needs more than {k} samples per side (metrics.prc.k); "
                        f"got {len(r)} reference and {len(f)} generated")
    if distances == "adm-float16":
        fake_in, real_in = (x.double() for x in _adm_precision_recall(r, f, k))
    else:
        r_radii, f_radii = kth_radii(r, k, block), kth_radii(f, k, block)
        fake_in, real_in = _inside(f, r, r_radii, block).double(), _inside(r, f, f_radii, block).double()
    out = {"precision": fake_in.mean().item(), "recall": real_in.mean().item(), "k": k,
           **({"distances": distances} if distances != "float64" else {})}
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
    res = measure(inc.reference, inc.features, ctx.options["k"], ctx.device)
    protocol = {**inc.protocol, "k": res["k"], **({"distances": res["distances"]} if "distances" in res else {})}
    return [ctx.row(name, res[name], protocol,
                    ci=intervals.mean_interval(res[item], ctx.options["bootstrap"], ctx.seed,
                                               f"{ctx.spec.key}:{name}"))
            for name, item in items.items()]


def knn_need(options) -> tuple[int, str]:
    """MetricSpec.min_samples of a k-NN metric: a point's k-th nearest other point needs k + 1 points per set."""
    return options["k"] + 1, f"k = {options['k']} nearest neighbours need k + 1 points per side"


def _prc(ctx) -> list[dict]:
    distances = ctx.options["distances"]
    return knn_rows(ctx, lambda r, f, k, dev: precision_recall(r, f, k, dev, per_item=True, distances=distances),
                    {"precision": "fake_inside", "recall": "real_inside"})


# k neighbours need more than k samples, else the radii have no meaning
register_metric(key="prc", task="generation", version=VERSION, compute=_prc, order=30, min_samples=knn_need,
                compares_reference=True,
                options={"k": Opt(int, 3, min=1, max="n_samples", max_exclusive=True), "protocol": PROTOCOL,
                         "bootstrap": BOOTSTRAP,
                         "distances": Opt(str, "float64", choices=DISTANCES, why="adm-float16: as the ADM evaluator")},
                rows=(Row("precision", "higher", "Prec.", 3, floor=0.02),
                      Row("recall", "higher", "Rec.", 3, floor=0.02)))

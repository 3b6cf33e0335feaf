"""sFID (Nash et al. 2021), as the ADM evaluator computes it: the Fréchet distance of the Inception's
spatial features (the first 7 channels of `mixed_6/conv`, 17 x 17 x 7 = 2023-d; grn_eval/features.py)
instead of pool3. Being spatial, it is more sensitive than FID to where things are in an image.

The reference statistics are an ADM reference batch's own `mu_s` / `sigma_s` when it carries them (so the
number compares with published ones), a statistics file's `mu_s` / `sigma_s`, or computed from the
reference images; a statistics file without them gives a row that says so.
"""

from __future__ import annotations

from grn_eval.metrics.fid import covariance_need, frechet_rows
from grn_eval.metrics.registry import BOOTSTRAP, PROTOCOL, NotAvailable, Row, register_metric

VERSION = "1"


def _sfid(ctx) -> list[dict]:
    try:
        return frechet_rows(ctx, "sfid", "spatial")
    except NotAvailable as e:
        return [ctx.row("sfid", None, ctx.extractor(ctx.options["protocol"]).protocol, reason=str(e))]


register_metric(key="sfid", task="generation", version=VERSION, compute=_sfid, order=11, min_samples=covariance_need,
                compares_reference=True,
                options={"protocol": PROTOCOL, "bootstrap": BOOTSTRAP},
                rows=(Row("sfid", "lower", "sFID", 2, floor=0.5),))

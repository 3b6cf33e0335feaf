"""Entropy-vs-steps from sampler traces (grn.sampling.Trace dictionaries of several shards)."""

from __future__ import annotations

import numpy as np

from grn_eval.metrics.registry import Row, register_metric

VERSION = "1"


def aggregate(traces: list[dict]) -> dict:
    """Per step: mean normalised entropy (conditional, guided) and refinement fractions, weighted by
    the samples active at that step (for bit tokens also per bit plane); per sample: the steps used.
    Series missing from any trace are left out."""
    steps = max((len(t["active"]) for t in traces), default=0)
    # the baselines' traces have fewer series (AR and MaskGIT: conditional entropy only; flow: none)
    keys = [k for k in ("entropy_cond", "entropy_guided", "filled", "kept", "rewritten", "erased")
            if all(k in t for t in traces)]
    out = {k: [] for k in (*keys, "active")}
    for i in range(steps):
        rows = [(t["active"][i], t) for t in traces if i < len(t["active"])]
        total = sum(a for a, _ in rows)
        for k in out:
            if k == "active":
                out[k].append(total)
            else:
                out[k].append(float(sum(a * t[k][i] for a, t in rows) / total))
    if any(t.get("entropy_bits") for t in traces):  # `bit` layout: per step, one value per bit plane (MSB first)
        for key in ("entropy_bits", "changed_bits"):
            out[key] = []
            for i in range(steps):
                rows = [(t["active"][i], t[key][i]) for t in traces if i < len(t.get(key) or [])]
                total = sum(a for a, _ in rows)
                out[key].append((sum(a * np.asarray(v) for a, v in rows) / total).tolist())
    used = np.concatenate([np.asarray(t["steps_used"], float) for t in traces]) if traces else np.zeros(0)
    return {"per_step": out, "steps_used": used.tolist(), "mean_steps": float(used.mean()) if len(used) else None,
            "median_steps": float(np.median(used)) if len(used) else None}


def _entropy(ctx) -> list[dict]:
    if not (ctx.traces and ctx.traces[0]):  # samples from a file, or a sampler without a trace
        return []
    agg = aggregate(ctx.traces)
    return [ctx.row("mean_steps", agg["mean_steps"], {"source": "sampler trace"}, agg)]


register_metric(key="entropy", task="generation", version=VERSION, compute=_entropy, order=70,
                rows=(Row("mean_steps", "lower", "steps", 1, floor=0.5),))

"""Evaluators: the protocols papers report, each a named set of metrics with fixed options.

A suite that says `evaluator: adm` computes its numbers as the ADM evaluator does; the evaluator's metrics
are added to the suite's own, their fixed options cannot be changed by the suite (it is refused with the
key), and every row of those metrics names the evaluator in its protocol. Other metrics of the suite run as
usual beside them. An evaluator's reference rule says which `reference:` forms it accepts.

The name `evaluator` keeps apart what `protocol` already means in a metric's options: the Inception feature
protocol (tf-inception or clean-fid).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Evaluator:
    name: str
    follows: str  # the code it reproduces
    metrics: Mapping[str, Mapping]  # metric key -> its fixed options
    references: tuple[str, ...]  # the `reference:` forms it accepts (dataset, npz, stats)
    note: str = ""

    def __post_init__(self):
        object.__setattr__(self, "metrics", MappingProxyType({k: MappingProxyType(dict(v))
                                                              for k, v in self.metrics.items()}))


EVALUATORS = {e.name: e for e in (
    # FID from the reference batch's own mu / sigma (the whole dataset), sFID from its mu_s / sigma_s, when the
    # batch carries them; precision / recall against the batch's images (10 000 for ImageNet)
    Evaluator("adm", "openai/guided-diffusion evaluations/evaluator.py",
              {"fid": {"protocol": "tf-inception"}, "sfid": {"protocol": "tf-inception"},
               "isc": {"split_size": 5000},
               "prc": {"k": 3, "protocol": "tf-inception", "distances": "adm-float16"}},
              ("npz", "dataset", "stats"),
              "TF-Inception features; IS in consecutive parts of 5000; precision / recall with k = 3 and the "
              "evaluator's float16 distances"),
    # torch-fidelity (the LTH14 fork's fid_statistics_file) against precomputed statistics, e.g. JiT's
    # jit_in256_stats.npz: FID and IS (10 shuffled splits, seed 2020); no precision / recall
    Evaluator("grn-official", "MGenAI/GRN grn/utils_c2i/engine.py (torch-fidelity, fid_statistics_file)",
              {"fid": {"protocol": "tf-inception"}, "isc": {"splits": 10}},
              ("stats",),
              "torch-fidelity's inception-v3-compat; FID against a statistics file given by path (its sha256 "
              "in every row)"),
)}


def expand(metrics: Mapping, name: str) -> tuple[dict, list[tuple[str, str]]]:
    """(the suite's metrics with the evaluator's added and its options fixed, [(key, problem), ...]) where a
    problem is an option of the suite's that contradicts the evaluator's."""
    ev = EVALUATORS[name]
    out, problems = {k: dict(v or {}) for k, v in metrics.items()}, []
    for key, fixed in ev.metrics.items():
        given = out.setdefault(key, {})
        for opt, value in fixed.items():
            if given.get(opt) is not None and given[opt] != value:
                problems.append((f"metrics.{key}.{opt}", f"evaluator '{name}' fixes it to {value!r}; remove it, "
                                                         f"or drop `evaluator: {name}`"))
            given[opt] = value
    return out, problems


def of_metric(suite_evaluator: str | None, key: str) -> str | None:
    """The evaluator a metric's rows are computed under in a suite, or None."""
    return suite_evaluator if suite_evaluator and key in EVALUATORS[suite_evaluator].metrics else None

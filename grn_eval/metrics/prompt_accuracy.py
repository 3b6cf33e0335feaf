"""Prompt accuracy: does each generated digit show the digit its prompt asked for?

A classifier trained in this project (grn_eval/digit_classifier.py) labels every image; the
score is the fraction that match the asked digit (chance: 1/10). Samples whose prompt names no
single digit are not scored. Every row carries the classifier's own held-out accuracy on real
digits, its sha256 and training seed, so a score can be read against how good the judge is, and a
bootstrap interval over the scored samples.
"""

from __future__ import annotations

import numpy as np

from grn.errors import UserError
from grn_eval import digit_classifier, intervals
from grn_eval.metrics.registry import BOOTSTRAP, Row, register_metric
from grn_eval.model_check import resolve
from grn_eval.options import Opt

VERSION = "1"
CHANCE = 0.1  # ten digits


def score(predicted: np.ndarray, asked: np.ndarray) -> dict:
    """predicted / asked: per-sample digits (asked -1 = the prompt names no digit, not scored)."""
    predicted, asked = np.asarray(predicted), np.asarray(asked)
    if predicted.shape != asked.shape:
        raise ValueError(f"{len(predicted)} predictions for {len(asked)} prompts")
    scored = asked >= 0
    if not scored.any():
        raise UserError("no prompt names a digit (the model's `prompts`); prompt accuracy needs prompts such as "
                        "'a handwritten seven'")
    hit = predicted[scored] == asked[scored]
    per_digit = {int(d): float(hit[asked[scored] == d].mean()) for d in np.unique(asked[scored])}
    return {"accuracy": float(hit.mean()), "n_scored": int(scored.sum()), "n_unscored": int((~scored).sum()),
            "per_digit": per_digit, "chance": CHANCE,
            "predicted_histogram": np.bincount(predicted[scored], minlength=10).tolist()}


def prompt_accuracy(classify, images: np.ndarray, asked: np.ndarray) -> dict:
    """`classify(images) -> digits` (e.g. grn_eval.digit_classifier.predict bound to a model)."""
    return score(np.asarray(classify(images)), asked)


def _prompt_accuracy(ctx) -> list[dict]:
    """Classifier digit vs the digit each prompt asked for (a class-conditional model's class)."""
    adapter = ctx.adapter
    if not adapter.has_prompts and adapter.num_classes != 10:
        return [ctx.row("prompt_accuracy", None, {}, reason="not available: the model has neither digit prompts "
                                                            "nor the 10 digit classes")]
    path = resolve(ctx.options["classifier"], ctx.suite.path.parent)
    model, prov = digit_classifier.load(path, ctx.device)
    asked = np.asarray(adapter.asked_digits(ctx.labels) if adapter.has_prompts else ctx.labels)
    predicted = np.asarray(digit_classifier.predict(model, ctx.samples, ctx.device))
    res = score(predicted, asked)
    scored = asked >= 0  # the interval resamples the scored samples (accuracy is their mean of hits)
    hits = (predicted[scored] == asked[scored]).astype(float)
    ci = intervals.mean_interval(hits, ctx.options["bootstrap"], ctx.seed, "prompt_accuracy")
    return [ctx.row("prompt_accuracy", res["accuracy"], {"classifier": prov, "chance": CHANCE},
                    {**res, "classifier_heldout_accuracy": prov["heldout_accuracy"],
                     "classifier_heldout_n": prov["heldout_n"]}, ci=ci)]


# classifier: a path, relative to the suite or the working directory
register_metric(key="prompt_accuracy", task="generation", version=VERSION, compute=_prompt_accuracy, order=50,
                options={"classifier": Opt(str, str(digit_classifier.DEFAULT_PATH)), "bootstrap": BOOTSTRAP},
                rows=(Row("prompt_accuracy", "higher", "Acc.", 2),))

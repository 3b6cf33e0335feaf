"""Video prompt accuracy: does each generated Moving-MNIST video show the digit, direction and speed its
prompt asked for?

What a video shows is recovered from its pixels only (grn_eval/video_recovery.py): the direction and
speed from the least-squares fit of its ink centroid track, the digit by the project's digit classifier on
every re-centred frame (majority vote). The same recovery run on the real reference videos against their
generating parameters is recorded in every row (`recovery_on_real`): a generated video cannot score above
what the judge gets right on real ones. Chance: 1/10 (digit), 1/8 (direction), 1/2 (speed), 1/160 (all).
"""

from __future__ import annotations

from grn_eval import digit_classifier, intervals
from grn_eval.metrics.registry import BOOTSTRAP, Row, register_metric
from grn_eval.model_check import resolve
from grn_eval.options import Opt

VERSION = "1"
CHANCE = {"digit": 0.1, "direction": 1 / 8, "speed": 0.5, "all": 1 / 160}
ROWS = {"all": "video_prompt_accuracy", "digit": "video_digit_accuracy", "direction": "video_direction_accuracy",
        "speed": "video_speed_accuracy"}


def _recovery_on_real(classifier, split: str) -> dict:
    from grn_eval.video_recovery import recovery_accuracy_on_real

    return recovery_accuracy_on_real(split, classifier=classifier)


def asked_prompts(adapter, labels) -> list[str] | None:
    """The prompt each video of `labels` was asked: a text model's own, a class-conditional video model's its
    class's (grn/video_captions.py motion_classes); None for a model with neither."""
    from grn.video_captions import class_model_prompts

    if adapter.has_prompts:
        return adapter.prompt_texts(labels)
    classes = class_model_prompts(adapter.num_classes)
    return [classes[int(c)] for c in labels] if classes else None


def _video_prompt_accuracy(ctx) -> list[dict]:
    from grn.video_captions import class_prompts
    from grn_eval.video_recovery import video_prompt_accuracy

    prompts = asked_prompts(ctx.adapter, ctx.labels)
    if ctx.samples.ndim != 5 or prompts is None:
        why = "the samples are images" if ctx.samples.ndim != 5 else \
            f"the model has neither prompts nor the {len(class_prompts())} motion classes"
        return [ctx.row(ROWS["all"], None, {}, reason=f"not available: {why} (video prompt accuracy scores videos "
                                                       f"against the motion and digit their prompts ask for)")]
    path = resolve(ctx.options["classifier"], ctx.suite.path.parent)
    model, prov = ctx.runner.asset(("digit classifier", str(path)), lambda: digit_classifier.load(path, ctx.device))
    real = ctx.runner.asset(("video recovery on real", str(path), ctx.options["real_split"]),
                            lambda: _recovery_on_real(model, ctx.options["real_split"]))
    res = video_prompt_accuracy(ctx.samples, prompts, model)
    protocol = {"classifier": prov, "recovery": "centroid-track least squares (direction, speed); digit classifier "
                                                "on re-centred frames, majority vote",
                "recovery_on_real": {"split": real["split"], "n": real["n"]}}
    rows = []
    for aspect, name in ROWS.items():
        hits = res["correct"][aspect].astype(float)
        ci = intervals.mean_interval(hits, ctx.options["bootstrap"], ctx.seed, name)
        rows.append(ctx.row(name, res["accuracy"][aspect], protocol,
                            {"chance": CHANCE[aspect], "recovery_on_real_accuracy": real["accuracy"][aspect],
                             "asked": res["asked"].get(aspect, res["n"])}, ci=ci))
    return rows


register_metric(key="video_prompt_accuracy", task="generation", version=VERSION, compute=_video_prompt_accuracy,
                order=52, video=True,
                options={"classifier": Opt(str, str(digit_classifier.DEFAULT_PATH)),
                         "real_split": Opt(str, "reference", choices=("reference", "train")),
                         "bootstrap": BOOTSTRAP},
                rows=(Row(ROWS["all"], "higher", "Acc. (all)", 2), Row(ROWS["digit"], "higher", "Acc. digit", 2),
                      Row(ROWS["direction"], "higher", "Acc. direction", 2),
                      Row(ROWS["speed"], "higher", "Acc. speed", 2)))

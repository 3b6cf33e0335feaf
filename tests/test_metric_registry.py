"""The metric registry (grn_eval/metrics/registry.py): every metric declares everything about itself in
one place, and a metric registered from outside (here: inside a test) is validated by the suite loader,
run by the runner and read by report / gate / tables like the built-in ones."""

import contextlib
import inspect
from types import SimpleNamespace

import numpy as np
import pytest

from grn.data import load_mnist, save_npz
from grn_eval import gate, report, tables
from grn_eval.metrics import fid, registry
from grn_eval.metrics.registry import MetricContext, MetricSpec, Row, register_metric, unregister_metric
from grn_eval.options import Opt
from grn_eval.runner import run_suite
from grn_eval.suite import SuiteError, load_suite

BUILT_IN = {"fid", "rfid", "kid", "prc", "isc", "psnr", "ssim", "lpips", "clip_score", "latency", "prompt_accuracy",
            "entropy"}


def test_every_metric_declares_version_and_how_each_row_is_read():
    assert BUILT_IN <= set(registry.names())
    assert fid.VERSION == "1"
    seen = []
    for spec in registry.specs():
        assert isinstance(spec.version, str) and spec.version, spec.key
        assert spec.task in registry.TASKS and callable(spec.compute) and spec.rows, spec.key
        assert all(isinstance(o, Opt) for o in spec.options.values()), spec.key
        for r in spec.rows:
            assert r.better in ("lower", "higher") and report.better(r.name) == r.better, r.name
            assert isinstance(r.label, str) and r.label and tables._label(r.name) == r.label, r.name
            assert isinstance(r.digits, int) and r.digits >= 0 and tables._digits(r.name) == r.digits, r.name
            assert r.floor is None or r.floor >= 0, r.name
            seen.append(r.name)
    assert len(seen) == len(set(seen))  # one row name, one meaning
    # what the gate writes into a baseline (pinned: a baseline made before the registry reads the same; a
    # metric added later adds its own floors)
    assert registry.floors().items() >= {"fid": 0.5, "rfid": 0.5, "kid": 0.002, "precision": 0.02, "recall": 0.02,
                                 "psnr": 0.1, "ssim": 0.005, "lpips_alex": 0.005, "lpips_vgg": 0.005, "isc": 0.2,
                                 "mean_steps": 0.5}.items()
    assert gate.tolerance("fid", 10.0, 0.0) == 0.5 and gate.tolerance("clip_score", 10.0, 0.0) == pytest.approx(0.2)


def test_incomplete_or_clashing_declarations_are_refused():
    def compute(ctx):
        return []

    good = {"key": "t_metric", "task": "generation", "version": "1", "compute": compute,
            "rows": (Row("t_row", "lower", "T", 2),)}
    for bad, what in ((dict(task="both-ways"), "task"), (dict(version=""), "version"), (dict(rows=()), "no rows"),
                      (dict(rows=(Row("t_row", "smaller", "T", 2),)), "better"),
                      (dict(rows=(Row("t_row", "lower", "", 2),)), "label"),
                      (dict(rows=(Row("t_row", "lower", "T", -1),)), "digits"),
                      (dict(rows=(Row("fid", "lower", "T", 2),)), "declared twice"),
                      (dict(key="fid"), "already registered"), (dict(options={"x": 3}), "not an Opt")):
        with pytest.raises(ValueError, match=what):
            register_metric(**{**good, **bad})
    assert "t_metric" not in registry.names() and registry.row("t_row") is None


def test_register_metric_as_a_decorator_and_the_row_order():
    @register_metric(key="t_deco", task="both", version="2", rows=(Row("t_deco", "lower", "D", 0),))
    def t_deco(ctx):
        return []

    try:
        spec = registry.get("t_deco")
        # compute is the function, behind the guard that turns a NotAvailable into a row (registry._rows_or_reason)
        assert inspect.unwrap(spec.compute) is t_deco and spec.order == 100 and registry.row("t_deco").digits == 0
        suite_metrics = {"latency": {}, "t_deco": {}, "fid": {}}
        assert [s.key for s in registry.for_suite(suite_metrics, "generation")] == ["fid", "t_deco", "latency"]
        assert [s.key for s in registry.for_suite(suite_metrics, "reconstruction")] == ["t_deco", "latency"]
    finally:
        unregister_metric("t_deco")
    assert registry.get("t_deco") is None


def test_a_row_the_metric_does_not_declare_is_refused():
    spec = MetricSpec("t_metric", "generation", (Row("t_row", "lower", "T", 2),), "1", lambda ctx: [])
    runner = SimpleNamespace(suite=SimpleNamespace(metrics={"t_metric": {}}, evaluator=None),
                             _row=lambda entry, metric, value, seed, n, protocol, version, extra, reason, ci: {
                                 "metric": metric, "n": n, "version": version, "reason": reason})
    ctx = MetricContext(spec, runner, None, None, 0, np.zeros((3, 2, 2, 3), np.uint8), None, [], None, {})
    assert ctx.row("t_row", 1.0, {}) == {"metric": "t_row", "n": 3, "version": "1", "reason": None}
    assert ctx.row("t_metric", None, {}, reason="not available: why")["metric"] == "t_metric"
    with pytest.raises(ValueError, match="made a row 'other'"):
        ctx.row("other", 1.0, {})


# ---------------------------------------------------------------------------------------
# A new metric from outside: declared, validated, run, read
# ---------------------------------------------------------------------------------------


def _mean_pixel(ctx) -> list[dict]:
    """Mean intensity of one channel of the samples: a metric that needs nothing but the images."""
    ch = ctx.options["channel"]
    return [ctx.row("mean_pixel", float(ctx.samples[..., ch].mean()), {"channel": ch})]


MEAN_PIXEL = MetricSpec(key="mean_pixel", task="generation", version="1", compute=_mean_pixel,
                        options={"channel": Opt(int, 0, min=0, max=2, why="R, G, B")},
                        rows=(Row("mean_pixel", "higher", "px", 1),))


@contextlib.contextmanager
def registered(spec: MetricSpec):
    register_metric(spec)
    try:
        yield spec
    finally:
        unregister_metric(spec.key)  # other tests see the built-in registry only


def _suite(tmp_path, metrics: str):
    save_npz(tmp_path / "samples.npz", load_mnist("train").images[:8], load_mnist("train").labels[:8])
    (tmp_path / "s.yaml").write_text(
        "name: mean_pixel\ndatasets: {ref: {name: mnist, split: reference}}\n"
        "models:\n  - {name: external, adapter: npz, path: samples.npz}\n"
        f"metrics: {metrics}\nreference: {{dataset: ref}}\nn_samples: 8\nbatch_size: 4\n")
    return tmp_path / "s.yaml"


def test_a_metric_registered_from_outside_is_validated_run_and_read(tmp_path):
    with registered(MEAN_PIXEL):
        with pytest.raises(SuiteError, match=r"metrics\.mean_pixel\.channel: 3 is out of range; allowed: int >= 0 "
                                             r"and <= 2 \(R, G, B\)"):
            load_suite(_suite(tmp_path, "{mean_pixel: {channel: 3}}"))
        with pytest.raises(SuiteError, match=r"metrics\.mean_pixel\.chanel: unknown key; allowed: \['channel'\]"):
            load_suite(_suite(tmp_path, "{mean_pixel: {chanel: 1}}"))
        suite = load_suite(_suite(tmp_path, "{mean_pixel: {channel: 1}}"))
        assert suite.task == "generation" and suite.metrics == {"mean_pixel": {"channel": 1}}

        res = run_suite(suite, run_dir=tmp_path / "run", progress=False)
        (row,) = res["rows"]
        images = load_mnist("train").images[:8]
        assert row["metric"] == "mean_pixel" and row["value"] == pytest.approx(images[..., 1].mean())
        assert row["version"] == "1" and row["protocol"] == {"channel": 1} and row["n"] == 8 and row["available"]
        # read like a built-in metric: direction, table header and digits, no gate floor
        assert report.better("mean_pixel") == "higher" and "mean_pixel" in report.HIGHER_IS_BETTER
        assert tables._header("mean_pixel") == "px ↑" and tables._digits("mean_pixel") == 1
        assert gate.tolerance("mean_pixel", 10.0, 0.0) == pytest.approx(0.2)

        default = run_suite(load_suite(_suite(tmp_path, "{mean_pixel: {}}")), run_dir=tmp_path / "run0",
                            progress=False)
        assert default["rows"][0]["value"] == pytest.approx(images[..., 0].mean())  # the spec's default channel
    with pytest.raises(SuiteError, match=r"metrics\.mean_pixel: unknown metric"):
        load_suite(_suite(tmp_path, "{mean_pixel: {}}"))
    assert report.better("mean_pixel") is None and "mean_pixel" not in report.HIGHER_IS_BETTER


def test_the_task_of_a_registered_metric_decides_the_task_of_the_suite(tmp_path):
    recon = MetricSpec(key="t_recon", task="reconstruction", version="1", compute=lambda ctx: [],
                       rows=(Row("t_recon", "lower", "T", 2),))
    with registered(recon):
        recon_keys = r"\(codes, rfid, rfvd, psnr, ssim, lpips, t_recon\)"
        with pytest.raises(SuiteError, match=r"mixes reconstruction metrics " + recon_keys):
            load_suite(_suite(tmp_path, "{t_recon: {}, fid: {}}"))
        assert load_suite(_suite(tmp_path, "{t_recon: {}, latency: {}}")).task == "reconstruction"

"""The gate on the committed MNIST GRN: five seeds of the unchanged model pass the baseline built
from them; a sampler temperature bug injected on purpose fails it."""

from pathlib import Path

import pytest

from grn_eval import gate, report
from grn_eval.runner import run_suite
from grn_eval.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
SUITE = """name: gate_test
datasets: {ref: {name: mnist, split: reference}}
defaults: {tokenizer: TOK, checkpoint: GEN}
models:
  - {name: GRN, adapter: grn, sampler: {steps: 10, temperature: TEMP}}
metrics: {fid: {}, kid: {subsets: 10, subset_size: 20}}
reference: {dataset: ref, limit: 40}
seeds: SEEDS
n_samples: 40
batch_size: 40
"""


def _run(tmp_path, name, temperature, seeds):
    text = (SUITE.replace("TOK", str(ROOT / "grn/checkpoints/tokenizer_mnist.pt"))
            .replace("GEN", str(ROOT / "grn/checkpoints/generator_mnist.pt"))
            .replace("TEMP", str(temperature)).replace("SEEDS", str(seeds)))
    (tmp_path / f"{name}.yaml").write_text(text)
    run_suite(load_suite(tmp_path / f"{name}.yaml"), run_dir=tmp_path / name, progress=False)
    return report.load_results([tmp_path / name])


@pytest.mark.skipif(not (ROOT / "grn/checkpoints/generator_mnist.pt").exists(), reason="no committed generator")
def test_five_seeds_pass_and_a_temperature_bug_fails(tmp_path):
    five = _run(tmp_path, "unchanged", 1.0, [0, 1, 2, 3, 4])
    baseline = gate.make_baseline(five, "gate_test")
    verdict = gate.compare(five, baseline)
    assert len(verdict) == 2 and not gate.failed(verdict)  # fid, kid over 5 seeds, paired
    assert (verdict["test"] == "paired").all() and (verdict["delta"] == 0).all()
    buggy = _run(tmp_path, "buggy", 3.0, [0])
    verdict = gate.compare(buggy, baseline)
    assert gate.failed(verdict)
    assert verdict.set_index("metric").loc["fid", "status"] == "REGRESSION"
    # what the gate can see at this N: the smallest flagged FID move, beside one seed's bootstrap interval
    seen = gate.detectable(verdict).set_index("metric")
    assert seen.loc["fid", "smallest_flagged"] > 0 and seen.loc["fid", "one_seed_half_width"] > 0
    assert seen.loc["fid", "mde"] > seen.loc["fid", "smallest_flagged"]

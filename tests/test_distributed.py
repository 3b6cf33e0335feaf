"""A suite run by 2 processes (torchrun, gloo on CPU) equals the same suite run by 1 process."""

import json
import os
import subprocess
import sys

from .test_runner import _tiny_grn_checkpoints

SUITE = """name: dist
datasets: {ref: {name: mnist, split: reference}}
models:
  - {name: grn, adapter: grn, checkpoint: gen.pt, tokenizer: tok.pt, sampler: {steps: 6}}
metrics: {fid: {}, kid: {subsets: 5, subset_size: 10}, entropy: {}}
reference: {dataset: ref, limit: 30}
n_samples: 30
batch_size: 5
"""


def _run(tmp_path, nproc, cache):
    env = {**os.environ, "GRN_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(29500 + nproc), "-m", "grn_eval.cli", "run", str(tmp_path / "s.yaml"), "--run-dir",
           str(tmp_path / f"run{nproc}"), "--quiet"] if nproc > 1 else \
        [sys.executable, "-m", "grn_eval.cli", "run", str(tmp_path / "s.yaml"), "--run-dir", str(tmp_path / "run1"),
         "--quiet"]
    subprocess.run(cmd, check=True, env=env, cwd=tmp_path, capture_output=True, timeout=900)
    return json.loads((tmp_path / f"run{nproc}" / "results.json").read_text())


def test_two_processes_equal_one(tmp_path):
    _tiny_grn_checkpoints(tmp_path)
    (tmp_path / "s.yaml").write_text(SUITE)
    from grn_eval.weights import load_inception

    _, inc = load_inception()  # share the verified weights with the subprocesses' private caches
    for n in (1, 2):
        (tmp_path / f"cache{n}" / "weights").mkdir(parents=True)
        for f in (inc.path, inc.path.with_name(inc.path.name + ".json")):
            (tmp_path / f"cache{n}" / "weights" / f.name).write_bytes(f.read_bytes())
    one = _run(tmp_path, 1, tmp_path / "cache1")
    two = _run(tmp_path, 2, tmp_path / "cache2")
    assert two["world_size"] == 2 and one["world_size"] == 1

    def values(res):
        return {(r["model"], r["metric"]): (r["value"], r["extra"].get("steps_used")) for r in res["rows"]}

    assert values(one) == values(two)
    shards = sorted(p.name for p in (tmp_path / "run2").rglob("shard_*.npz"))
    assert len(shards) == 6

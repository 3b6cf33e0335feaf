"""The project's own small checkpoints (grn/checkpoints/) and the configs that reproduce them.

`python -m grn_eval.embedded [NAME ...] [--retrain]` trains what is missing (or everything named,
with --retrain) into $GRN_CACHE/train/<name> (resumable) and copies the result into
grn/checkpoints/. Tokenizers take their LPIPS weights from the verified weights manager.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

from grn.errors import UserError
from grn.fileio import record_committed
from grn_eval import weights as W

ROOT = Path(__file__).resolve().parents[1]
# checkpoint stem -> config in grn/configs/ (order matters: the tokenizer before its generators)
CHECKPOINTS = {
    "tokenizer_mnist": "tokenizer_mnist.yaml",
    "generator_mnist": "generator_mnist.yaml",
    "maskgit_mnist": "maskgit_mnist.yaml",
    "ar_mnist": "ar_mnist.yaml",
    "flow_mnist": "flow_mnist.yaml",
    "t2i_mnist": "t2i_mnist.yaml",  # the text-conditioned GRN on the MNIST captions
    "t2i_mnist_bit": "t2i_mnist_bit.yaml",  # the same on the official GRN_bit architecture (grn/grn_bit.py)
    "digit_classifier": "digit_classifier.yaml",  # the judge of prompt_accuracy (not a generator)
    **{f"tokenizer_photo_M{m}": f"tokenizer_photo_M{m}.yaml" for m in (1, 2, 3, 4, 6, 8, "null")},
    "tokenizer_mmnist_video": "tokenizer_mmnist_video.yaml",  # Moving-MNIST, causal 3D (suites/video_recon.yaml)
    "t2v_mnist": "t2v_mnist.yaml",  # the text-to-video GRN_bit on its tokens (suites/t2v_mnist.yaml)
    "ar_mmnist_video": "ar_mmnist_video.yaml",  # its baselines on the same latents, same budget
    "flow_mmnist_video": "flow_mmnist_video.yaml",
}
# The quantizer study (suites/quant_study.yaml): the photo autoencoder with each library quantizer at equal
# bits per token (the 16-bit ones first: the study's generators are trained on their tokens), then GRN-T
# on each quantizer's 16-bit tokens (HBQ's are tokenizer_photo_M2's).
QUANT_TOKENIZERS = [f"tokenizer_photo_{q}" for q in ("fsq16", "lfq16", "bsq16", "rvq16", "fsq8", "lfq8", "vq8",
                                                      "fsq32", "lfq32", "rvq32", "bsq8", "bsq32")]
QUANT_GENERATORS = [f"grn_photo_{q}" for q in ("hbq16", "fsq16", "lfq16", "bsq16", "rvq16")]
CHECKPOINTS.update({name: f"{name}.yaml" for name in QUANT_TOKENIZERS + QUANT_GENERATORS})
# a name on the command line that stands for several checkpoints, in training order
GROUPS = {"quant_study": QUANT_TOKENIZERS[:5] + QUANT_GENERATORS + QUANT_TOKENIZERS[5:],
          "video": ["tokenizer_mmnist_video", "t2v_mnist", "ar_mmnist_video", "flow_mmnist_video"]}
DEMO = ["tokenizer_mnist", "generator_mnist", "maskgit_mnist", "ar_mnist", "flow_mnist"]


def train_one(name: str) -> Path:
    from grn import train

    raw = yaml.safe_load((ROOT / "grn" / "configs" / CHECKPOINTS[name]).read_text())
    out = W.cache_root() / "train" / name
    dst = ROOT / "grn" / "checkpoints" / f"{name}.pt"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if name == "digit_classifier":
        from grn_eval import digit_classifier as dc

        dc.save(dc.train(dc.ClassifierTrainConfig(**raw)), dst)
    elif name.startswith("tokenizer"):
        raw["lpips_weights"] = str(W.load_lpips(raw.get("lpips_net", "vgg"))[1].path)
        train.train_tokenizer(train.TokenizerTrainConfig.from_dict(raw), out)
        shutil.copy(out / "tokenizer.pt", dst)
        commit_log(out, dst)
    else:
        relative = raw["tokenizer"]
        raw["tokenizer"] = str(ROOT / relative)
        train.train_generator(train.GeneratorTrainConfig.from_dict(raw), out)
        commit_generator(out / "generator.pt", dst, relative)
        commit_log(out, dst)
    record_committed(dst)  # the new sha256 in SHA256SUMS: what is trained next on this file loads it
    return dst


def log_path(checkpoint: Path, rerun: bool = False) -> Path:
    """Where a checkpoint's training log lies: logs/<stem>.jsonl beside it (what `training_curves` plots).
    `rerun`: logs/<stem>.rerun.jsonl, the log of its config trained again where the weights came out different
    (training is not bit-reproducible across machines and thread counts) and the committed weights were kept,
    because other files pin their sha256; its curve stands for the config, not for the committed weights."""
    return checkpoint.parent / "logs" / f"{checkpoint.stem}{'.rerun' if rerun else ''}.jsonl"


def commit_log(out: Path, dst: Path) -> None:
    """Copy the run's log (every `log_every` steps; a step logged again after a resume counts once) beside dst."""
    import json

    from grn.fileio import atomic_write
    from grn.train import read_log

    path = log_path(dst)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in read_log(out / "log.jsonl")))


def commit_generator(src: Path, dst: Path, tokenizer: str) -> None:
    """Copy a trained generator into grn/checkpoints/ with the tokenizer path as the config gives it
    (relative to the repository): a committed file must not name a folder of the machine it was made on."""
    import torch

    from grn.fileio import save_torch

    record = torch.load(src, map_location="cpu", weights_only=False)
    record["train_config"]["tokenizer"] = tokenizer
    save_torch(record, dst)


def ensure(names=None, retrain: bool = False) -> None:
    names = [n for name in names or list(CHECKPOINTS) for n in GROUPS.get(name, [name])]
    for name in names:
        if name not in CHECKPOINTS:
            raise UserError(f"unknown embedded checkpoint '{name}'; known: {sorted(CHECKPOINTS)}")
        dst = ROOT / "grn" / "checkpoints" / f"{name}.pt"
        if dst.exists() and not retrain:
            continue
        print(f"training {name} with grn/configs/{CHECKPOINTS[name]} (resumable)")
        train_one(name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grn_eval.embedded")
    p.add_argument("names", nargs="*")
    p.add_argument("--retrain", action="store_true")
    a = p.parse_args(argv)
    ensure(a.names or None, a.retrain)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

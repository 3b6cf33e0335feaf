"""The digit classifier behind `prompt_accuracy`: a small CNN trained in this project.

Trained on the embedded MNIST `train` split (4000 digits) with small random shifts, and measured
on the held-out `reference` split (1000 digits, 100 per class), which it never sees in training.
The checkpoint stores that accuracy, so every prompt-accuracy row can show how good the judge is.

Reproduce the committed file (about 0.5 MB, fp32 weights) with

    python -m grn_eval.embedded digit_classifier --retrain

or `python -m grn_eval.digit_classifier --out FILE` (same config; deterministic on CPU).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grn.checkpoint import load_state, seal, verify
from grn.errors import CheckpointError, UserError
from grn.fileio import read, save_torch, sha256_file

KIND = "digit-classifier"
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "grn" / "checkpoints" / "digit_classifier.pt"


@dataclass(frozen=True)
class ClassifierTrainConfig:
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_shift: int = 2  # random translation in pixels (generated digits are not always centred)
    seed: int = 0


class DigitCNN(nn.Module):
    """32x32 gray -> 10 logits: three conv/ReLU/max-pool stages (32, 64, 128 channels) and a linear head."""

    def __init__(self):
        super().__init__()
        chans = [1, 32, 64, 128]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(128 * 4 * 4, 10)

    def forward(self, x):  # [B, 1, 32, 32] in [-1, 1]
        return self.head(self.features(x).flatten(1))


def to_input(images: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 NHWC (1 or 3 identical channels) -> [B, 1, H, W] in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).float()
    return (x.mean(-1, keepdim=True).permute(0, 3, 1, 2) / 127.5 - 1)


SIZE = 32  # the classifier reads 32x32 digits (MNIST padded, as grn/data.py serves them)


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, device="cpu", batch_size: int = 256) -> np.ndarray:
    if images.ndim != 4 or images.shape[1:3] != (SIZE, SIZE):
        raise UserError(f"the digit classifier reads {SIZE}x{SIZE} digits; these images are "
                        f"{'x'.join(map(str, images.shape[1:3]))}: prompt accuracy needs samples at {SIZE} px")
    model = model.to(device).eval()
    out = [model(to_input(images[s : s + batch_size], device)).argmax(1).cpu().numpy()
           for s in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Translate each image by up to max_shift pixels (zero fill, i.e. -1 background)."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=gen)
    return torch.stack([pad[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def train(cfg: ClassifierTrainConfig = ClassifierTrainConfig(), progress: bool = True) -> dict:
    """Train on mnist/train, measure on mnist/reference; returns the checkpoint record."""
    from grn.data import load_mnist

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    tr, ref = load_mnist("train"), load_mnist("reference")
    x, y = to_input(tr.images), torch.as_tensor(tr.labels)
    model = DigitCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * ((len(x) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps)
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for s in range(0, len(x), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            loss = F.cross_entropy(model(_shift(x[idx], gen, cfg.max_shift)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if progress:
            acc = float((predict(model, ref.images) == ref.labels).mean())
            print(f"epoch {epoch + 1}/{cfg.epochs}: train loss {total / len(x):.4f}, held-out accuracy {acc:.4f}")
    model.eval()
    pred = predict(model, ref.images)
    per_digit = [float((pred[ref.labels == d] == d).mean()) for d in range(10)]
    return {"kind": KIND, "state_dict": model.state_dict(), "train_config": asdict(cfg),
            "train_split": tr.name, "train_n": len(tr),
            "heldout": {"split": ref.name, "n": len(ref), "accuracy": float((pred == ref.labels).mean()),
                        "per_digit": per_digit}}


def save(record: dict, path: str | Path) -> Path:
    """Atomically, with bytes that depend only on the record (so a retrained file has the same sha256)."""
    save_torch(seal(record), path)
    return Path(path)


def load(path: str | Path, device="cpu") -> tuple[DigitCNN, dict]:
    """(model, provenance: file, sha256, held-out accuracy with its split, N and training seed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"digit classifier '{path}' does not exist; train it with "
                              f"`python -m grn_eval.embedded digit_classifier`")
    ck = read(path, "digit classifier")
    if not isinstance(ck, dict) or ck.get("kind") != KIND:
        raise CheckpointError(f"'{path}' is not a digit classifier written by this project "
                              f"(metrics.prompt_accuracy.classifier)")
    verify(ck, path)
    model = load_state(DigitCNN(), ck["state_dict"], path)
    h = ck["heldout"]
    prov = {"file": path.name, "sha256": sha256_file(path),
            "heldout_accuracy": h["accuracy"], "heldout_split": h["split"], "heldout_n": h["n"],
            "train_split": ck["train_split"], "train_seed": ck["train_config"]["seed"]}
    return model.eval().to(device), prov


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grn_eval.digit_classifier", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=ClassifierTrainConfig.epochs)
    a = p.parse_args(argv)
    rec = train(ClassifierTrainConfig(epochs=a.epochs))
    save(rec, a.out)
    print(f"wrote {a.out}: held-out accuracy {rec['heldout']['accuracy']:.4f} on {rec['heldout']['n']} "
          f"{rec['heldout']['split']} digits")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

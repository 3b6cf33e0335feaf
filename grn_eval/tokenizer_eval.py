"""Held-out reconstruction quality of trained tokenizers: PSNR, SSIM, LPIPS (alex, vgg).

`python -m grn_eval.tokenizer_eval CKPT [CKPT ...] --dataset photos --out results/tokenizers/x.json`
evaluates every checkpoint on the same held-out split and writes one JSON with provenance.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from grn.data import load_dataset
from grn.train import load_tokenizer
from grn_eval import weights as W
from grn_eval.metrics.recon import lpips_per_image, psnr_per_image, ssim_per_image

HELD_OUT = {"mnist": {"split": "reference"}, "photos": {"split": "val", "crop_size": 32}}


def evaluate(checkpoints: list[str], dataset: str, limit: int | None = None) -> dict:
    data = load_dataset(dataset, **HELD_OUT[dataset])
    images = data.images[:limit] if limit else data.images
    lpips = {net: W.load_lpips(net) for net in ("alex", "vgg")}
    rows = []
    for ckpt in checkpoints:
        tok = load_tokenizer(ckpt)
        t0 = time.perf_counter()
        recon = np.concatenate([tok.reconstruct(images[s : s + 128]) for s in range(0, len(images), 128)])
        row = {"checkpoint": Path(ckpt).as_posix(), "sha256": hashlib.sha256(Path(ckpt).read_bytes()).hexdigest(),
               "rounds": tok.cfg.rounds, "latent_channels": tok.cfg.latent_channels, "stride": tok.cfg.stride,
               "psnr": float(psnr_per_image(images, recon).mean()), "ssim": float(ssim_per_image(images, recon).mean())}
        for net, (model, _) in lpips.items():
            row[f"lpips_{net}"] = float(lpips_per_image(model, images, recon).mean())
        row["seconds"] = round(time.perf_counter() - t0, 2)
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "sha256"}))
    return {"dataset": data.name, "n": len(images), "protocol": {
        "psnr": "skimage peak_signal_noise_ratio, uint8, data_range 255, per image then mean",
        "ssim": "skimage structural_similarity, uint8, data_range 255, channel_axis -1, per image then mean",
        "lpips": {net: r.provenance() for net, (_, r) in lpips.items()}}, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grn_eval.tokenizer_eval")
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--dataset", choices=sorted(HELD_OUT), required=True)
    p.add_argument("--limit", type=int)
    p.add_argument("--out")
    args = p.parse_args(argv)
    result = evaluate(args.checkpoints, args.dataset, args.limit)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

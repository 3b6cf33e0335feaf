"""`grn`: the model library's command line (datasets; training and conversion as they land)."""

from __future__ import annotations

import argparse
import sys

from grn import data, datasets
from grn.errors import run_command


def _cmd_data_list(args) -> int:
    for name in ("mnist", "photos"):
        for split in ("train", "reference") if name == "mnist" else ("train", "val"):
            ds = datasets.load_dataset(name, split=split)
            print(f"{ds.name:20s} {len(ds):6d} images {ds.images.shape[1:]} classes={ds.num_classes}")
    print("imagefolder          ImageNet-style class folders (path=...), ADM center crop")
    print("npz                  ADM sample batches (path=...), memory-mapped")
    return 0


def _cmd_data_export(args) -> int:
    kwargs = {"split": args.split}
    if args.name == "photos":
        kwargs["crop_size"] = args.crop_size
    ds = datasets.load_dataset(args.name, **kwargs)
    images, labels = ds.batch(0, len(ds) if args.limit is None else min(args.limit, len(ds)))
    data.save_npz(args.out, images, labels)
    print(f"wrote {len(images)} images of {ds.name} to {args.out}")
    return 0


def _cmd_train(args) -> int:
    import yaml

    from grn import train

    config_cls, run = {
        "tokenizer": (train.TokenizerTrainConfig, train.train_tokenizer),
        "generator": (train.GeneratorTrainConfig, train.train_generator),
    }[args.what]
    try:
        with open(args.config) as f:
            raw = yaml.safe_load(f) or {}
        if getattr(args, "lpips_weights", None):
            raw["lpips_weights"] = args.lpips_weights
        if getattr(args, "tokenizer", None):
            raw["tokenizer"] = args.tokenizer
        if args.steps:
            raw["steps"] = args.steps
        cfg = config_cls.from_dict(raw)
    except (OSError, yaml.YAMLError, ValueError, TypeError) as e:
        print(f"error: {args.config}: {e}", file=sys.stderr)
        return 2
    try:
        run(cfg, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.what} written to {args.out}")
    return 0


def _convert_grn_bit(src: str, out, which: str) -> dict:
    """Write an official GRN_bit file as this project's sealed record (grn.convert checks it strictly)."""
    import torch

    from grn.checkpoint import seal
    from grn.convert import official_grn_bit_record
    from grn.fileio import atomic_path

    record = seal(official_grn_bit_record(src, which))
    # torch.save straight into the (atomic) file: a 2B model is not buffered in memory first, as save_torch
    # does; a file object gives the archive the same fixed name as its buffer, so the bytes are the same.
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        torch.save(record, f)
    return record


def _cmd_convert_official(args) -> int:
    from pathlib import Path

    from grn.checkpoint import convert_official_generator, convert_official_tokenizer
    from grn.convert import EMA_KEYS, GRN_BIT_ENTRIES
    from grn.errors import CheckpointError

    given = [x for x in (args.generator, args.t2iv, args.tokenizer) if x]
    if not given:
        print("error: give --generator, --t2iv and/or --tokenizer", file=sys.stderr)
        return 2
    # --weights: C2I files ema1 (default) / ema2 / raw; T2I/T2V training checkpoints ema (default) / raw
    c2i_weights, t2iv_weights = args.weights or "ema1", args.weights or "ema"
    for flag, weights, allowed in (("--generator", c2i_weights, EMA_KEYS), ("--t2iv", t2iv_weights, GRN_BIT_ENTRIES)):
        if getattr(args, flag[2:]) and weights not in allowed:
            print(f"error: --weights {weights} does not apply to {flag}; allowed: {sorted(allowed)}", file=sys.stderr)
            return 2
    # --out: a .pt file for a single generator (as before), else a folder for generator.pt / grn_bit.pt / tokenizer.pt
    single = args.out.endswith(".pt") and len(given) == 1
    if args.tokenizer and single:
        print("error: with --tokenizer, --out is a folder (the tokenizer is written as tokenizer.pt)", file=sys.stderr)
        return 2
    out = Path(args.out)  # folders are made when the files are written
    try:
        if args.generator:
            path = convert_official_generator(args.generator, args.name, out if single else out / "generator.pt",
                                              c2i_weights)
            print(f"wrote {path} ({args.name}, {c2i_weights} weights)")
        if args.t2iv:
            path = out if single else out / "grn_bit.pt"
            record = _convert_grn_bit(args.t2iv, path, t2iv_weights)
            print(f"wrote {path} ({record['name']} GRN_bit text/video model, {record['source']}, in the file's dtype)")
        if args.tokenizer:
            path = convert_official_tokenizer(args.tokenizer, out / "tokenizer.pt")
            print(f"wrote {path} (official HBQ tokenizer, float32)")
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="grn", description="Generative Refinement Networks: models and training")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="embedded datasets")
    dsub = d.add_subparsers(dest="action", required=True)
    dsub.add_parser("list", help="the embedded datasets and their splits").set_defaults(func=_cmd_data_list)
    e = dsub.add_parser("export", help="write a split as an ADM .npz batch (arr_0 uint8 NHWC, arr_1 labels)")
    e.add_argument("name", choices=["mnist", "photos"])
    e.add_argument("--split", default="train")
    e.add_argument("--crop-size", type=int, default=32)
    e.add_argument("--limit", type=int)
    e.add_argument("--out", required=True)
    e.set_defaults(func=_cmd_data_export)

    t = sub.add_parser("train", help="training: tokenizer, generator (under torchrun for DDP)")
    tsub = t.add_subparsers(dest="what", required=True)
    tt = tsub.add_parser("tokenizer", help="train or resume an HBQ tokenizer")
    tt.add_argument("--config", required=True, help="YAML training config (see grn/configs/)")
    tt.add_argument("--out", required=True, help="output folder (resumes if it holds a checkpoint)")
    tt.add_argument("--lpips-weights", help="verified LPIPS file: $(grn-eval weights path lpips-vgg)")
    tt.add_argument("--steps", type=int, help="override the number of steps")
    tt.set_defaults(func=_cmd_train)
    tg = tsub.add_parser("generator", help="train or resume a GRN generator on frozen tokenizer codes")
    tg.add_argument("--config", required=True, help="YAML training config (see grn/configs/)")
    tg.add_argument("--out", required=True, help="output folder (resumes if it holds a checkpoint)")
    tg.add_argument("--tokenizer", help="override the tokenizer checkpoint")
    tg.add_argument("--steps", type=int, help="override the number of steps")
    tg.set_defaults(func=_cmd_train)

    c = sub.add_parser("convert", help="convert released checkpoints into this project's format")
    csub = c.add_subparsers(dest="what", required=True)
    co = csub.add_parser("official", help="official GRN C2I generator, GRN_bit T2I/T2V model and/or HBQ tokenizer "
                                          "checkpoints")
    co.add_argument("--generator", help="the official generator .pth (keys under net. in model_ema1 ...)")
    co.add_argument("--name", default="GRN-B", choices=["GRN-B", "GRN-L", "GRN-H", "GRN-G"])
    co.add_argument("--t2iv", help="the official GRN_bit text-to-image / text-to-video model: GRN_T2I_2B.pth or "
                                   "GRN_T2V_2B.pth (a flat state dict), or a training checkpoint global_step_*.pth "
                                   "(trainer.gpt_ema_fsdp / gpt_fsdp); the size is read off the weights")
    co.add_argument("--weights", choices=["ema1", "ema2", "raw", "ema"],
                    help="--generator: ema1 (default), ema2, raw; --t2iv training checkpoints: ema (default, "
                         "trainer.gpt_ema_fsdp), raw (trainer.gpt_fsdp)")
    co.add_argument("--tokenizer", help="an official HBQ tokenizer .ckpt (weights in ema or vae): the C2I image "
                    "tokenizer HBQ_image_tokenizer_16dim_M4 or the joint image/video HBQ_tokenizer_64dim_M4 "
                    "(told apart by width)")
    co.add_argument("--out", required=True, help="output folder (generator.pt, grn_bit.pt, tokenizer.pt); a .pt file "
                                                 "for one generator or GRN_bit model alone")
    co.set_defaults(func=_cmd_convert_official)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    args = parser.parse_args(argv)
    return run_command(args.func, args, "grn", args.debug)


if __name__ == "__main__":
    sys.exit(main())

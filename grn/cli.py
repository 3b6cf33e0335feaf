"""`grn`: the model library's command line (datasets; training and conversion as they land)."""

from __future__ import annotations

import argparse
import sys

from grn import data


def _cmd_data_list(args) -> int:
    for name in ("mnist", "photos"):
        for split in ("train", "reference") if name == "mnist" else ("train", "val"):
            ds = data.load_dataset(name, split=split)
            print(f"{ds.name:20s} {len(ds):6d} images {ds.images.shape[1:]} classes={ds.num_classes}")
    print("imagefolder          ImageNet-style class folders (path=...), ADM center crop")
    print("npz                  ADM sample batches (path=...), memory-mapped")
    return 0


def _cmd_data_export(args) -> int:
    kwargs = {"split": args.split}
    if args.name == "photos":
        kwargs["crop_size"] = args.crop_size
    ds = data.load_dataset(args.name, **kwargs)
    images, labels = ds.batch(0, len(ds) if args.limit is None else min(args.limit, len(ds)))
    data.save_npz(args.out, images, labels)
    print(f"wrote {len(images)} images of {ds.name} to {args.out}")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except data.DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

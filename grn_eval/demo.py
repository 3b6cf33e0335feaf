"""The embedded demo: verify the real weights, then measure real numbers on embedded data.

It grows with the project; today it runs the largest embedded pipeline that exists:
weights verification, and the data-vs-data FID floor of MNIST-5k (train vs reference split)
with the verified TF-FID Inception, plus LPIPS known answers on bundled photos.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from grn.data import load_mnist, load_photos, to_model_input
from grn_eval import weights as W
from grn_eval.features import InceptionFeatures
from grn_eval.metrics.fid import frechet_terms, gaussian_stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m grn_eval.demo")
    p.add_argument("--n", type=int, default=200, help="images per side for the FID floor")
    args = p.parse_args(argv)

    print("== weights ==")
    statuses = W.verify(["inception-fid", "lpips-alex", "lpips-vgg"])
    for s in statuses:
        print(f"{s.state:9s} {s.name}: {s.detail[:160]}")
    if W.exit_code(statuses):
        return 1

    print(f"\n== FID floor: MNIST train vs reference, N={args.n} per side ==")
    t0 = time.time()
    extractor = InceptionFeatures()
    a = extractor(load_mnist("train").images[: args.n], progress=True)["pool"]
    b = extractor(load_mnist("reference").images[: args.n], progress=True)["pool"]
    terms = frechet_terms(*gaussian_stats(a), *gaussian_stats(b))
    print(json.dumps({"metric": "fid", "value": round(terms.total, 4), "mean_term": round(terms.mean_term, 4),
                      "cov_term": round(terms.cov_term, 4), "n": args.n, "protocol": extractor.protocol,
                      "seconds": round(time.time() - t0, 1)}, indent=1))

    print("\n== LPIPS on bundled photo crops (val, 64px): neighbours vs far apart ==")
    photos = load_photos("val", crop_size=64)
    for net in ("alex", "vgg"):
        model, r = W.load_lpips(net)
        with torch.no_grad():
            near = float(model(to_model_input(photos.images[:1]), to_model_input(photos.images[1:2])))
            far = float(model(to_model_input(photos.images[:1]), to_model_input(photos.images[90:91])))
        print(f"lpips-{net}: crop0-crop1 {near:.4f}  crop0-crop90 {far:.4f}  (weights sha256 {r.sha256[:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

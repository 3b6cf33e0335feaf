import numpy as np
import pytest
import torch
from PIL import Image

from grn.data import load_mnist, load_photos


def _tiny_clip():
    import open_clip

    torch.manual_seed(0)
    model = open_clip.CLIP(embed_dim=16, vision_cfg={"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                                                      "head_width": 16},
                           text_cfg={"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1})
    preprocess = open_clip.image_transform(32, is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")

    def tok(texts):
        return tokenizer(texts)[:, :16]

    return model.eval(), preprocess, tok


def test_clip_score_equals_hand_computed_cosine():
    """Random tiny open_clip model: tests only, never reported."""
    from grn_eval.metrics.clip_score import clip_scores

    model, preprocess, tok = _tiny_clip()
    images = load_photos("val", crop_size=32).images[:3]
    texts = ["a cat", "a cup of coffee", "a flower"]
    got = clip_scores(model, preprocess, tok, images, texts)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(Image.fromarray(i)) for i in images]))
        txt = model.encode_text(tok(texts))
    cos = (img / img.norm(dim=-1, keepdim=True) * (txt / txt.norm(dim=-1, keepdim=True))).sum(-1)
    want = 100 * np.maximum(cos.numpy(), 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_clip_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    from grn_eval import weights as W
    from grn_eval.metrics.clip_score import load_clip

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv(W.CLIP_ENV, raising=False)
    with pytest.raises(W.WeightsAbsent, match="GRN_CLIP_WEIGHTS"):
        load_clip("ViT-B-32", "laion2b_s34b_b79k")


def test_clean_fid_protocol_matches_clean_fid(tmp_path):
    """Our `clean-fid` protocol (its resize, the verified network) gives clean-fid's own FID."""
    from cleanfid import fid as cfid

    from grn_eval.features import InceptionFeatures, _inception_from_normalized
    from grn_eval.metrics.fid import frechet_distance, gaussian_stats

    a, b = load_mnist("train").images[:16], load_mnist("reference").images[:16]
    for name, imgs in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        for i, im in enumerate(imgs):
            Image.fromarray(im).save(tmp_path / name / f"{i:03d}.png")
    ex = InceptionFeatures("clean-fid")

    def net(x):  # clean-fid hands over float [0, 255] batches already resized to 299
        with torch.no_grad():
            return _inception_from_normalized(ex.model, (x.float() - 128) / 128)[0]

    theirs = cfid.compute_fid(str(tmp_path / "a"), str(tmp_path / "b"), mode="clean", custom_feat_extractor=net,
                              num_workers=0, device=torch.device("cpu"), batch_size=8, verbose=False)
    ours = frechet_distance(*gaussian_stats(ex(a)["pool"]), *gaussian_stats(ex(b)["pool"]))
    assert ours == pytest.approx(theirs, rel=1e-4)

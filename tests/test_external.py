"""Generators from outside the project (grn_eval/external.py): a Python entry point and a folder of images.

The like-with-like check: the committed MNIST GRN served through the `python` entry point, its samples
written as PNG files and read back through `imagefolder`, give the same FID to the last bit (PNG is lossless
and the sampling seeds are the runner's)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from grn.errors import UserError
from grn_eval.runner import run_suite
from grn_eval.suite import SuiteError, load_suite

ROOT = Path(__file__).resolve().parents[1]
CKPT = ROOT / "grn" / "checkpoints"


def _suite(tmp_path, models: str, n: int = 20, metrics: str = "fid: {bootstrap: 0}") -> Path:
    lines = ["name: external_test", "description: harness test - generators from outside the project",
             "datasets:", "  mnist_ref: {name: mnist, split: reference}", "models:",
             *("  " + m for m in models.splitlines()), "metrics:", *("  " + m for m in metrics.splitlines()),
             "reference: {dataset: mnist_ref}", f"n_samples: {n}", "batch_size: 10"]
    path = tmp_path / "s.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


GRN_ENTRY = (f"- {{name: GRN entry point, adapter: python, entry: 'grn_eval.external:grn_generator', kwargs: "
             f"{{checkpoint: '{CKPT / 'generator_mnist.pt'}', tokenizer: '{CKPT / 'tokenizer_mnist.pt'}', steps: 4}}}}")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # FID at N = 20
def test_entry_point_and_image_folder_give_the_same_fid(tmp_path):
    res = run_suite(load_suite(_suite(tmp_path, GRN_ENTRY)), run_dir=tmp_path / "a", progress=False)
    row = next(r for r in res["rows"] if r["metric"] == "fid")
    model = res["models"]["GRN entry point"]
    assert model["entry"] == "grn_eval.external:grn_generator" and len(model["module_sha256"]) == 64
    assert model["generator"]["sampler"]["steps"] == 4
    images = np.concatenate([np.load(p)["arr_0"] for p in sorted((tmp_path / "a" / "samples").rglob("shard_*.npz"))])
    labels = np.arange(len(images)) % 10  # the runner's class of sample i
    for i, (im, c) in enumerate(zip(images, labels)):  # one folder per class, files sorted by sample index
        (tmp_path / "png" / f"{c}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(tmp_path / "png" / f"{c}" / f"{i:04d}.png")
    folder = _suite(tmp_path, f"- {{name: folder, adapter: imagefolder, path: '{tmp_path / 'png'}'}}")
    res2 = run_suite(load_suite(folder), run_dir=tmp_path / "b", progress=False)
    prov = res2["models"]["folder"]
    assert prov["n"] == 20 and prov["classes"] == [str(c) for c in range(10)] and len(prov["files"]) == 20
    assert prov["files"][0][0] == "0/0000.png" and len(prov["files_sha256"]) == 64
    # the folder's order is class by class, so the same set in another order: the FID is order-free up to float
    # rounding (Inception sees other batches, float32 features, sums in another order: ~1e-7 relative seen)
    assert next(r for r in res2["rows"] if r["metric"] == "fid")["value"] == pytest.approx(row["value"], rel=1e-6)


def _adapter(tmp_path, model_yaml: str):
    from grn_eval.adapters import build_adapter

    suite = load_suite(_suite(tmp_path, model_yaml), check_assets=False)
    import torch

    return build_adapter(suite.models[0], tmp_path, torch.device("cpu"))


def test_entry_point_errors_name_the_model_and_the_fix(tmp_path):
    (tmp_path / "mygen.py").write_text(textwrap.dedent("""\
        import numpy as np
        def broken(**kw):
            raise RuntimeError("weights missing")
        def wrong_shape():
            class G:
                num_classes = 2
                def generate(self, labels, seeds):
                    return np.zeros((1, 8, 8, 3), np.uint8)
            return G()
        def no_generate():
            return object()
        """))
    cases = {"nosuch.module:f": "cannot import 'nosuch.module'", "mygen:absent": "has no 'absent'",
             "mygen:broken": r"broken\(\*\*kwargs\) raised RuntimeError: weights missing",
             "mygen:no_generate": "without a generate"}
    for entry, message in cases.items():
        with pytest.raises(UserError, match=message):
            _adapter(tmp_path, f"- {{name: m, adapter: python, entry: '{entry}', path: '{tmp_path}'}}")
    adapter = _adapter(tmp_path, f"- {{name: m, adapter: python, entry: 'mygen:wrong_shape', path: '{tmp_path}'}}")
    assert adapter.num_classes == 2
    with pytest.raises(UserError, match="for 3 labels"):
        adapter.generate(np.arange(3), [0, 1, 2])
    with pytest.raises(SuiteError, match="package.module:factory"):
        load_suite(_suite(tmp_path, "- {name: m, adapter: python, entry: 'no colon'}"), check_assets=False)


def test_image_folder_refuses_mixed_sizes_and_short_folders(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i + 10, np.uint8)).save(folder / f"{i}.png")
    Image.fromarray(np.full((9, 8, 3), 200, np.uint8)).save(folder / "3.png")
    adapter = _adapter(tmp_path, f"- {{name: f, adapter: imagefolder, path: '{folder}'}}")
    assert adapter.num_classes == 1
    images, labels, _ = adapter.generate_range(0, 3)
    assert images.shape == (3, 8, 8, 3) and images[2, 0, 0, 0] == 90  # sorted order: 0.png, 1.png, 2.png
    assert labels.tolist() == [0, 0, 0]  # a flat folder: one class
    with pytest.raises(UserError, match=r"3.png' is 8x9 RGB, the folder's first image is 8x8 RGB"):
        adapter.generate_range(0, 4)
    with pytest.raises(UserError, match="holds 4 images, the suite asks for 5"):
        adapter.generate_range(0, 5)
    assert json.dumps(adapter.provenance())  # serialisable as it goes into results.json


def _tiny_dit(folder: Path) -> Path:
    """A randomly initialised DiTPipeline built from configs (no download): plumbing only, never a number."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=1, sample_size=8, patch_size=2, norm_num_groups=1,
                                        num_embeds_ada_norm=1000)  # DiTPipeline's null class is 1000
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        block_out_channels=(8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4)
    DiTPipeline(transformer=transformer, vae=vae, scheduler=DDPMScheduler()).save_pretrained(folder)
    return folder


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # FID at N = 20
def test_a_suite_of_an_entry_point_a_folder_and_a_diffusers_pipeline(tmp_path):
    folder = tmp_path / "png"
    folder.mkdir()
    from grn.data import load_mnist

    for i, im in enumerate(load_mnist("train").images[:20]):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    dit = _tiny_dit(tmp_path / "dit")
    models = "\n".join([GRN_ENTRY, f"- {{name: folder, adapter: imagefolder, path: '{folder}'}}",
                        f"- {{name: DiT tiny, adapter: diffusers, path: '{dit}', scheduler: DDIMScheduler, steps: 3, "
                        f"guidance: 1.5}}"])
    path = _suite(tmp_path, models, metrics="fid: {bootstrap: 0}\nlatency: {warmup: 1, repeats: 1}")
    res = run_suite(load_suite(path), run_dir=tmp_path / "run", progress=False)
    fids = {r["model"]: r["value"] for r in res["rows"] if r["metric"] == "fid"}
    assert set(fids) == {"GRN entry point", "folder", "DiT tiny"} and all(v > 0 for v in fids.values())
    dit_prov = res["models"]["DiT tiny"]
    assert dit_prov["pipeline"] == "DiTPipeline" and dit_prov["scheduler"] == "DDIMScheduler"
    assert dit_prov["steps"] == 3 and dit_prov["dtype"] == "float32" and len(dit_prov["files_sha256"]) == 64
    families = {r["model"]: r["family"] for r in res["rows"]}
    assert families["DiT tiny"] == "diffusion" and families["folder"] == "external"
    latency = {r["model"]: r for r in res["rows"] if r["metric"] == "seconds_per_image"}
    assert "folder" not in latency  # stored samples are not timed
    assert latency["DiT tiny"]["extra"]["nfe_per_image"] == 6.0  # 3 steps, CFG counted twice


def test_diffusers_samples_are_seeded_per_sample_and_count_the_denoiser_calls(tmp_path):
    dit = _tiny_dit(tmp_path / "dit")
    adapter = _adapter(tmp_path, f"- {{name: d, adapter: diffusers, path: '{dit}', scheduler: DDIMScheduler, "
                                 f"steps: 4, guidance: 1.5}}")
    assert adapter.num_classes == 1000
    both, trace = adapter.generate(np.array([3, 5]), [11, 12])
    alone, _ = adapter.generate(np.array([5]), [12])
    assert both.dtype == np.uint8 and both.shape == (2, 32, 32, 3)
    assert np.abs(both[1].astype(int) - alone[0]).max() <= 1  # deterministic scheduler: whatever its batch
    ddpm = _adapter(tmp_path, f"- {{name: d, adapter: diffusers, path: '{dit}', steps: 4}}")  # stochastic steps
    first, _ = ddpm.generate(np.array([3, 5]), [11, 12])
    torch.manual_seed(123)  # the process's RNG state does not reach the samples
    assert np.array_equal(first, ddpm.generate(np.array([3, 5]), [11, 12])[0])
    assert trace == {"nfe": [2.0] * 4, "active": [2] * 4, "steps": 4}  # CFG: cond + uncond in one call per step
    with pytest.raises(UserError, match="no model_index.json"):
        _adapter(tmp_path, f"- {{name: d, adapter: diffusers, path: '{tmp_path}'}}")
    with pytest.raises(UserError, match="no scheduler 'NoSuchScheduler'"):
        _adapter(tmp_path, f"- {{name: d, adapter: diffusers, path: '{tmp_path / 'dit'}', scheduler: NoSuchScheduler}}")


def _tiny_text_pipeline(folder: Path) -> Path:
    """A randomly initialised StableDiffusionPipeline from configs, with a word-level CLIP vocabulary written here."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    words = ["a", "digit", "seven", "three"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{f"{w}</w>": i + 2 for i, w in enumerate(words)}}
    (folder / "tok").mkdir(parents=True)
    (folder / "tok" / "vocab.json").write_text(json.dumps(vocab))
    (folder / "tok" / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "tok" / "vocab.json"), str(folder / "tok" / "merges.txt"),
                              model_max_length=77)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, projection_dim=16,
                                        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                norm_num_groups=4, attention_head_dim=2)
    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(),
                            safety_checker=None, feature_extractor=None, requires_safety_checker=False
                            ).save_pretrained(folder / "pipe")
    return folder / "pipe"


def test_a_text_to_image_pipeline_samples_its_prompts(tmp_path):
    pipe = _tiny_text_pipeline(tmp_path)
    adapter = _adapter(tmp_path, f"- {{name: t, adapter: diffusers, path: '{pipe}', steps: 2, guidance: 3.0, "
                                 f"prompts: ['a digit seven', 'a digit three']}}")
    assert adapter.conditioning == "text" and adapter.num_classes == 2
    images, trace = adapter.generate(np.array([0, 1, 0]), [5, 6, 7])
    assert images.dtype == np.uint8 and images.shape == (3, 16, 16, 3)
    assert trace["nfe"] == [2.0, 2.0] and adapter.provenance()["prompts"] == ["a digit seven", "a digit three"]
    with pytest.raises(UserError, match="needs the prompts"):
        _adapter(tmp_path, f"- {{name: t, adapter: diffusers, path: '{pipe}'}}")

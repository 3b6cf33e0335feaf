"""Text encoders behind one interface (grn/text.py): GRN_bit's UMT5 encoder on a TINY RANDOM UMT5 written
here (a UMT5Config of width 16 and a word-level tokenizer built with `tokenizers` in a temporary folder, both
test-only: nothing is downloaded), and the embedded word-level encoder. Plumbing only (shapes, lengths,
padding, the folder and hash checks); no number from random weights means anything."""

import json

import pytest
import torch

from grn.errors import UserError
from grn.fileio import sha256_file
from grn.text import (
    UMT5_ENV,
    UMT5TextEncoder,
    WordTextEncoder,
    encode_prompts,
    text_config_from_dict,
    umt5_weight_files,
)

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ("a", "cat", "dog", "in", "the", "garden", "red")


def _write_tiny_umt5(folder):
    """A UMT5 folder as the Hugging Face layout has it (config.json, model.safetensors, tokenizer files), with
    the UMT5 special ids (pad 0, `</s>` 1, unk 2) and `</s>` appended to every prompt, as the real tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    cfg = UMT5Config(vocab_size=len(vocab), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, relative_attention_max_distance=16,
                     feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    UMT5EncoderModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def umt5_folder(tmp_path_factory):
    return _write_tiny_umt5(tmp_path_factory.mktemp("umt5"))


@pytest.fixture(scope="module")
def umt5(umt5_folder):
    return UMT5TextEncoder(umt5_folder, device="cpu", max_len=8)


def test_umt5_loads_from_the_local_folder_in_fp32_on_cpu_and_records_the_hash(umt5, umt5_folder):
    assert (umt5.width, umt5.max_len, umt5.pad_id) == (16, 8, 0)
    assert next(umt5.encoder.parameters()).dtype == torch.float32
    files = umt5_weight_files(umt5_folder)
    assert [f.name for f in files] == ["model.safetensors"]
    assert umt5.provenance["weights_sha256"] == {"model.safetensors": sha256_file(files[0])}
    assert umt5.provenance["folder"] == umt5_folder.name and umt5.provenance["dtype"] == "float32"
    pinned = UMT5TextEncoder(umt5_folder, device="cpu", sha256=sha256_file(files[0]))
    assert pinned.max_len == 512  # the official length (umt5_tokenizers.py:53-58)


def test_umt5_tokenizes_to_max_len_with_eos_and_encodes_states_and_lengths(umt5):
    ids = umt5.tokenize(["a cat in the garden", "dog", ""])
    assert ids.shape == (3, 8) and ids.dtype == torch.long
    assert ids[1].tolist() == [5, 1, 0, 0, 0, 0, 0, 0]  # "dog" </s> then padding
    assert ids[2].tolist() == [1] + [0] * 7  # the empty prompt is one token, </s>
    long = umt5.tokenize([" ".join(["red"] * 20)])
    assert long.shape == (1, 8) and long[0, -1] == 1  # truncated to max_len, </s> kept
    states, valid = umt5(ids)
    assert states.shape == (3, 8, 16) and states.dtype == torch.float32
    assert valid.sum(1).tolist() == [6, 2, 1]
    assert bool((states[~valid] == 0).all()) and bool((states[valid].abs().sum(-1) > 0).all())
    # GRN_bit's form: cut to the longest prompt, with the valid lengths
    s, lens = encode_prompts(umt5, ["a cat in the garden", "dog", ""])
    assert s.shape == (3, 6, 16) and lens.tolist() == [6, 2, 1]


def test_umt5_padding_never_changes_a_prompts_states(umt5):
    """A prompt's states are the same alone or padded next to a longer one (the attention mask works)."""
    alone, _ = encode_prompts(umt5, ["dog"])
    batched, lens = encode_prompts(umt5, ["a cat in the garden", "dog"])
    torch.testing.assert_close(batched[1, : lens[1]], alone[0], rtol=1e-5, atol=1e-6)


def test_a_missing_umt5_folder_is_one_user_error_naming_path_and_fix(tmp_path, monkeypatch, umt5_folder):
    monkeypatch.delenv(UMT5_ENV, raising=False)
    with pytest.raises(UserError, match=f"no such folder '{tmp_path / 'nope'}'.*huggingface-cli download "
                                        f"google/umt5-xxl.*{UMT5_ENV}=FOLDER.*nothing is downloaded"):
        UMT5TextEncoder(tmp_path / "nope", device="cpu")
    with pytest.raises(UserError, match=f"no folder given.*{UMT5_ENV}"):
        UMT5TextEncoder(device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json in"):
        UMT5TextEncoder(tmp_path / "empty", device="cpu")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="no weight files"):
        UMT5TextEncoder(tmp_path / "empty", device="cpu")
    with pytest.raises(UserError, match="'model.safetensors' has sha256 .* expected 00ff"):
        UMT5TextEncoder(umt5_folder, device="cpu", sha256="00ff")
    monkeypatch.setenv(UMT5_ENV, str(umt5_folder))  # the folder from the environment
    assert UMT5TextEncoder(device="cpu").width == 16


def _damage(folder, tmp_path, name, change):
    import shutil

    copy = tmp_path / name
    shutil.copytree(folder, copy)
    change(copy)
    return copy


@pytest.mark.parametrize("name, change, file, words", [
    ("config_truncated", lambda d: (d / "config.json").write_text('{"d_model": 1'), "config.json", "the model config"),
    ("config_list", lambda d: (d / "config.json").write_text("[1, 2]"), "config.json", "the model config"),
    ("config_field", lambda d: (d / "config.json").write_text(json.dumps(
        {**json.loads((d / "config.json").read_text()), "d_model": "wide"})), "config.json", "the model config"),
    ("weights_truncated", lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-64]),
     "model.safetensors", "weight file"),
    ("weights_garbage", lambda d: (d / "model.safetensors").write_bytes(b"garbage" * 9), "model.safetensors",
     "weight file"),
    ("no_tokenizer", lambda d: [(d / f).unlink() for f in ("tokenizer.json", "tokenizer_config.json")], "",
     r"the tokenizer files \(tokenizer.json / spiece.model, tokenizer_config.json\) in"),
])
def test_a_damaged_umt5_folder_is_one_user_error_naming_the_file(umt5_folder, tmp_path, name, change, file, words):
    folder = _damage(umt5_folder, tmp_path, name, change)
    with pytest.raises(UserError, match=f"UMT5-XXL text encoder: {words} '{folder / file if file else folder}'"
                                        f".*cannot be loaded .*truncated or damaged.*huggingface-cli download "
                                        f"google/umt5-xxl"):
        UMT5TextEncoder(folder, device="cpu")


def test_a_damaged_released_encoder_file_is_one_user_error_naming_it(umt5_folder, tmp_path):
    from grn.text import WAN_UMT5_FILE

    def released(content):
        def write(d):
            (d / "model.safetensors").unlink()
            (d / WAN_UMT5_FILE).write_bytes(content)
        return write

    folder = _damage(umt5_folder, tmp_path, "zip", released(b"PK\x03\x04" + b"\x00" * 40))
    with pytest.raises(UserError, match=f"the released encoder file '{folder / WAN_UMT5_FILE}' cannot be loaded"):
        UMT5TextEncoder(folder, device="cpu")
    folder = _damage(umt5_folder, tmp_path, "list", lambda d: (d / "model.safetensors").unlink())
    torch.save([1, 2, 3], folder / WAN_UMT5_FILE)
    with pytest.raises(UserError, match="holds a list, not a state dict of tensors"):
        UMT5TextEncoder(folder, device="cpu")


def test_umt5_states_condition_grn_bit_through_its_text_cache(umt5):
    from grn.grn_bit import build_grn_bit
    from grn.grn_bit_sampling import PRESETS, sample_grn_bit
    from grn.sampling import sample_generators

    torch.manual_seed(0)
    model = build_grn_bit("GRN-bit-T", text_channels=umt5.width).eval()
    cfg = PRESETS["GRN-2B-t2i"].__class__(**{**PRESETS["GRN-2B-t2i"].__dict__, "steps": 3, "height": 2, "width": 2})
    out, trace = sample_grn_bit(model, encode_prompts(umt5, ["a red cat", "dog"]), cfg, sample_generators([1, 2]),
                                uncond=encode_prompts(umt5, [""]))
    assert out.shape == (2, 16, 2, 2) and trace.nfe == [2, 2, 2]


def test_the_word_level_encoder_is_behind_the_same_interface():
    from grn.captions import vocabulary

    enc = WordTextEncoder(text_config_from_dict({"vocab": vocabulary(), "max_len": 12, "width": 32, "depth": 1,
                                                 "heads": 2}))
    states, lens = encode_prompts(enc, ["a handwritten zero", "the digit 9", ""])
    assert lens.tolist() == [5, 5, 2]  # <bos> words <eos>; the empty prompt is <bos> <eos>
    assert states.shape == (3, 5, 32) and states.dtype == torch.float32


# The released encoder file is in Wan's key layout (t5.py T5Encoder, loaded by infer.py:115-121): its keys, read
# off the official module tree, for a tiny config; the file is made here from the tiny Hugging Face model.
def _wan_layout(hf_state: dict, layers: int) -> dict:
    def block(i, wan, hf):
        return f"blocks.{i}.{wan}", hf_state[f"encoder.block.{i}.{hf}"]
    out = {"token_embedding.weight": hf_state["shared.weight"],
           "norm.weight": hf_state["encoder.final_layer_norm.weight"]}
    pairs = [("norm1.weight", "layer.0.layer_norm.weight"),
             *((f"attn.{p}.weight", f"layer.0.SelfAttention.{p}.weight") for p in "qkvo"),
             ("pos_embedding.embedding.weight", "layer.0.SelfAttention.relative_attention_bias.weight"),
             ("norm2.weight", "layer.1.layer_norm.weight"), ("ffn.gate.0.weight", "layer.1.DenseReluDense.wi_0.weight"),
             ("ffn.fc1.weight", "layer.1.DenseReluDense.wi_1.weight"),
             ("ffn.fc2.weight", "layer.1.DenseReluDense.wo.weight")]
    for i in range(layers):
        out.update(dict(block(i, w, h) for w, h in pairs))
    return out


def test_the_released_wan_layout_file_loads_key_by_key_and_encodes_the_same(umt5_folder, umt5, tmp_path):
    import shutil

    from grn.text import WAN_UMT5_FILE

    wan = tmp_path / "wan"
    wan.mkdir()
    for f in umt5_folder.iterdir():  # the tokenizer files and the config, not the Hugging Face weights
        if f.name != "model.safetensors":
            shutil.copy(f, wan / f.name)
    state = _wan_layout(umt5.encoder.state_dict(), layers=2)
    assert len(state) == 2 + 2 * 10  # every tensor of the encoder, the tied embedding once
    torch.save(state, wan / WAN_UMT5_FILE)
    released = UMT5TextEncoder(wan, device="cpu", max_len=8)
    assert released.provenance["weights_sha256"] == {WAN_UMT5_FILE: sha256_file(wan / WAN_UMT5_FILE)}
    prompts = ["a red cat", "the dog in  the garden "]
    a, b = encode_prompts(umt5, prompts), encode_prompts(released, prompts)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    bad = dict(state)
    bad["blocks.0.ffn.extra.weight"] = bad.pop("blocks.0.ffn.fc1.weight")
    torch.save(bad, wan / WAN_UMT5_FILE)
    with pytest.raises(UserError, match=r"key 'blocks\.0\.ffn\.extra\.weight' .* has no place"):
        UMT5TextEncoder(wan, device="cpu")
    del bad["blocks.0.ffn.extra.weight"]
    torch.save(bad, wan / WAN_UMT5_FILE)
    with pytest.raises(UserError, match=r"has no weights for 'encoder\.block\.0\.layer\.1\.DenseReluDense\.wi_1"):
        UMT5TextEncoder(wan, device="cpu")


def test_prompts_are_cleaned_as_the_official_tokenizer_does(umt5):
    from grn.text import clean_prompt

    assert clean_prompt("  a  red\n\tcat &amp;amp; dog ") == "a red cat & dog"
    assert torch.equal(umt5.tokenize(["a   red cat "]), umt5.tokenize(["a red cat"]))

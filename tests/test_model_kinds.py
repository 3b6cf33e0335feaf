"""One record per model kind (grn/registry.py `KINDS`), one sampler signature, one Trace, typed adapters.

The last test is the worked example of adding a kind: a model that always predicts one fixed token code,
registered with one record, is validated, sampled and run by the harness with no other change.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from grn import registry
from grn.generator import TokenGeometry, TokenLayout
from grn.registry import KINDS, ModelKind, register
from grn.sampling import (
    STEPS,
    EntropyConfig,
    Trace,
    categorical,
    entropy_temperature,
    notifier,
    refine,
    refuse,
    sample_generators,
    uniform,
)
from grn_eval import adapters as A
from grn_eval import suite as S
from tests.identity_adapter import IdentityAdapter

CKPT = Path(__file__).resolve().parents[1] / "grn" / "checkpoints"
TOK = CKPT / "tokenizer_mnist.pt"
TINY = {"hidden": 32, "depth": 2, "heads": 2}
TINY_SIZE = {"grn": "GRN-T", "grn-t2i": "GRN-T2I-T", "grn-bit": "GRN-bit-T", "ar": "AR-T", "maskgit": "MaskGIT-T",
             "flow": "Flow-T"}


def _tiny(name: str):
    torch.manual_seed(0)
    return registry.build_model(TINY_SIZE[name], **({} if name in ("grn-t2i", "grn-bit") else TINY)).eval()


def _cond(kind: ModelKind, model, n: int):
    if kind.name == "grn-bit":  # text states as its text encoder gives them (random: plumbing only)
        g = torch.Generator().manual_seed(n)
        return torch.randn(n, 3, model.cfg.text_channels, generator=g), torch.full((n,), 3)
    return model.tokenize(["a 3"] * n) if kind.conditioning == "text" else torch.arange(n)


def _uncond(kind: ModelKind, model):
    """GRN_bit has no null prompt of its own: the encoded empty prompt (one token) is given."""
    return (torch.zeros(1, 1, model.cfg.text_channels), torch.ones(1, dtype=torch.long)) if kind.name == "grn-bit" \
        else None


def _small(kind: ModelKind) -> dict:
    """GRN_bit's token grid is a sampler setting (official 64 x 64); a 4 x 4 one keeps the tests fast."""
    return {"height": 4, "width": 4} if "height" in kind.sampler_keys else {}


def test_the_embedded_kinds_are_the_registered_ones():
    assert sorted(KINDS) == sorted(TINY_SIZE)
    assert {k: v.family for k, v in KINDS.items()} == {"grn": "GRN", "grn-t2i": "GRN", "grn-bit": "GRN", "ar": "AR",
                                                        "maskgit": "masked", "flow": "diffusion"}


@pytest.mark.parametrize("name", sorted(TINY_SIZE))
def test_every_kind_record_is_complete(name):
    kind = KINDS[name]
    assert registry.problems(kind) == []
    assert kind.model.kind == name and kind.sizes and TINY_SIZE[name] in kind.sizes
    assert isinstance(_tiny(name), kind.model)
    # what the suite derives from the record: every setting with the sampler config's default
    opts = S.sampler_options(name)
    assert set(opts) == kind.sampler_keys
    for f in dataclasses.fields(kind.sampler_config):
        default = getattr(kind.default_sampler, f.name)
        assert opts[f.name].default == (list(default) if isinstance(default, tuple) else default), f.name
    keys = S.adapter_options()[name]
    assert set(S._GENERATOR) <= set(keys) and ("entropy" in keys) == kind.entropy
    assert S.default_family(name) == kind.family
    assert A.adapter_class(name) is A.BY_CONDITIONING[kind.conditioning]


def test_an_incomplete_record_is_refused():
    grn = KINDS["grn"]
    with pytest.raises(ValueError, match="already a kind"):
        register(grn)
    with pytest.raises(ValueError, match="sampler_options: one entry per sampler setting"):
        register(dataclasses.replace(grn, name="x", sampler_options={"steps": {}}))

    def positional(model, cond, sampler, generators, entropy=None, uncond=None, callback=None):
        pass

    with pytest.raises(ValueError, match="sample: sample"):
        register(dataclasses.replace(grn, name="x", sample=positional))
    assert "x" not in KINDS


def _parameters(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_every_sampler_has_the_same_signature():
    want = _parameters(refine)
    assert [n for n, _, _ in want] == ["model", "cond", "sampler", "generators", "entropy", "uncond", "callback"]
    for name, kind in KINDS.items():
        assert _parameters(kind.sample) == want, name


@pytest.mark.parametrize("name", sorted(TINY_SIZE))
def test_every_sampler_returns_the_one_trace_and_calls_back_each_step(name):
    kind = KINDS[name]
    model = _tiny(name)
    cfg = dataclasses.replace(kind.default_sampler, **({"steps": 3} if "steps" in kind.sampler_keys else {}),
                              **_small(kind))
    cond, uncond = _cond(kind, model, 2), _uncond(kind, model)
    seen = []
    out, trace = kind.sample(model, cond, cfg, sample_generators([1, 2]), uncond=uncond, callback=seen.append)
    again, _ = kind.sample(model, cond, cfg, sample_generators([1, 2]), uncond=uncond)
    assert isinstance(trace, Trace) and torch.equal(out, again)  # observing changes nothing
    assert [s["i"] for s in seen] == list(range(len(trace.nfe))) and trace.active == [2] * len(seen)
    assert all({"i", "x", "active", "nfe"} <= set(s) for s in seen) and trace.steps_used == [len(seen)] * 2
    assert tuple(out.shape[1:]) == kind.output_shape(model, cfg)


@pytest.mark.parametrize("name", [n for n in sorted(TINY_SIZE) if not KINDS[n].entropy])
def test_samplers_refuse_settings_they_do_not_implement(name):
    kind = KINDS[name]
    model, gens = _tiny(name), sample_generators([1])
    with pytest.raises(ValueError, match=f"the {name} sampler does not take entropy"):
        kind.sample(model, torch.tensor([1]), kind.default_sampler, gens, entropy=EntropyConfig())
    with pytest.raises(ValueError, match="does not take uncond"):
        kind.sample(model, torch.tensor([1]), kind.default_sampler, gens, uncond=torch.tensor([10]))


def test_entropy_temperature_is_the_official_rule():
    n = torch.tensor([5, 10, 20, 30, 45])  # tau * clip((N - 10) / 40 + 0.5, 0.5, 1)
    assert entropy_temperature(1.2, n).tolist() == pytest.approx([0.6, 0.6, 0.9, 1.2, 1.2])


def test_baseline_trace_dicts_carry_only_their_series():
    _, trace = KINDS["flow"].sample(_tiny("flow"), torch.tensor([0]), KINDS["flow"].default_sampler,
                                    sample_generators([0]))
    assert set(trace.as_dict()) == {"nfe", "active", "steps_used"}  # what metrics/entropy.py aggregates


# ---------------------------------------------------------------------------------------
# Adapters: capabilities are flags of a typed Protocol
# ---------------------------------------------------------------------------------------

ALL_ADAPTERS = [A.GeneratorAdapter, A.T2IAdapter, A.NpzAdapter, A.TokenizerAdapter, IdentityAdapter]
PROTOCOL_STUBS = {A.ModelAdapter, A.GenerationAdapter, A.SeedSampler, A.StoredSamples, A.Prompted,
                  A.ReconstructionAdapter}


def _implements(cls, method: str) -> bool:
    """The class itself (not a Protocol's `...` stub) defines the method."""
    owner = next((c for c in cls.__mro__ if method in c.__dict__), None)
    return owner is not None and owner not in PROTOCOL_STUBS


@pytest.mark.parametrize("cls", ALL_ADAPTERS, ids=lambda c: c.__name__)
def test_adapters_implement_the_protocol_their_flags_name(cls):
    def declares(protocol) -> bool:  # the protocols are not runtime-checkable (no probing): read the bases
        return protocol in cls.__mro__

    assert _implements(cls, "provenance") and cls.task in ("generation", "reconstruction")
    if cls.task == "reconstruction":
        assert declares(A.ReconstructionAdapter) and _implements(cls, "reconstruct")
        return
    assert declares(A.GenerationAdapter) and _implements(cls, "prepare")
    assert declares(A.SeedSampler) == cls.from_seeds == _implements(cls, "generate")
    # the methods a flag says are absent are absent, so runner code that still probes keeps working
    assert declares(A.StoredSamples) == (not cls.from_seeds) == hasattr(cls, "generate_range")
    assert declares(A.Prompted) == cls.has_prompts == hasattr(cls, "asked_digits") == hasattr(cls, "prompt_texts")
    if cls.has_prompts:
        assert _implements(cls, "asked_digits") and _implements(cls, "prompt_texts")


# ---------------------------------------------------------------------------------------
# The worked example: a new kind is one record (plus its file; here, this module)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstantConfig(TokenLayout):
    grid: int = 8
    latent_channels: int = 4
    rounds: int = 4
    num_classes: int = 10
    code: int = 5  # the label every element gets
    layout: ClassVar[str] = "ind"


@dataclass(frozen=True)
class ConstantSamplerConfig:
    steps: int = 1


class ConstantModel(TokenGeometry, nn.Module):
    kind = "constant"

    def __init__(self, cfg: ConstantConfig):
        super().__init__()
        self.cfg = cfg
        self.scale = nn.Parameter(torch.tensor(50.0))  # how sure it is (a weight, so that checkpoints hold one)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """Logits [B, K, d, h, w] with all the mass on `cfg.code`, whatever the condition."""
        code = torch.full((len(cond), *self.token_shape), self.cfg.code, device=cond.device)
        return F.one_hot(code, self.token_classes).movedim(-1, 1).float() * self.scale


@torch.no_grad()
def sample_constant(model, cond, sampler, generators, *, entropy=None, uncond=None, callback=None):
    refuse("constant", entropy=entropy, uncond=uncond)
    trace, everyone = Trace(), torch.arange(len(cond))
    notify = notifier(lambda s: (trace.nfe.append(s["nfe"]), trace.active.append(len(s["active"]))), callback)
    for i in range(sampler.steps):
        x = categorical(torch.softmax(model(cond), dim=1), uniform(generators, model.token_shape, cond.device))
        notify({"i": i, "active": everyone, "x": x, "nfe": 1})
    trace.steps_used = [sampler.steps] * len(cond)
    return x, trace


@pytest.fixture
def constant_kind():
    kind = register(ModelKind("constant", ConstantModel, lambda d: ConstantConfig(**d), ConstantSamplerConfig,
                              ConstantSamplerConfig(), sample_constant, "test", {"steps": STEPS},
                              sizes={"Constant-T": lambda **o: ConstantModel(ConstantConfig(**o))}))
    try:
        yield kind
    finally:
        KINDS.pop("constant")
    assert "constant" not in S.adapter_options() and "Constant-T" not in registry.model_sizes()


def _constant_suite(tmp_path, **sampler) -> Path:
    from grn.fileio import save_torch, sha256_file

    model = registry.build_model("Constant-T")
    from grn.checkpoint import checkpoint_record

    record = checkpoint_record(model, "Constant-T", model.state_dict(), tokenizer_sha256=sha256_file(TOK))
    save_torch(record, tmp_path / "constant.pt")
    data = {"name": "constant", "datasets": {"ref": {"name": "mnist", "split": "reference"}},
            "models": [{"name": "C", "adapter": "constant", "checkpoint": "constant.pt", "tokenizer": str(TOK),
                        "sampler": sampler}],
            "metrics": {"entropy": {}}, "reference": {"dataset": "ref"}, "n_samples": 4, "batch_size": 2}
    path = tmp_path / "constant.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_new_kind_is_one_record(tmp_path, tmp_cache, capsys, constant_kind):
    from grn.checkpoint import load_tokenizer
    from grn_eval import cli
    from grn_eval.preflight import check_suite
    from grn_eval.runner import Runner

    assert registry.problems(constant_kind) == []
    path = _constant_suite(tmp_path, steps=[1, 2])
    assert cli.main(["validate", str(path)]) == 0 and "ok" in capsys.readouterr().out
    suite = S.load_suite(path)
    assert [(m.name, m.family) for m in suite.models] == [(f"C[sampler.steps={n}]", "test") for n in (1, 2)]
    with pytest.raises(S.SuiteError, match=r"sampler.guidance: unknown key; allowed: \['steps'\]"):
        S.load_suite(_constant_suite(tmp_path, guidance=2.0))
    with pytest.raises(S.SuiteError, match=r"sampler.steps: 0 is out of range; allowed: int >= 1"):
        S.load_suite(_constant_suite(tmp_path, steps=0))

    # the adapter path: the record's sampler and decoder, nothing kind-specific in the harness
    suite = S.load_suite(_constant_suite(tmp_path, steps=2))
    checked = check_suite(suite)["C"]
    adapter = A.build_adapter(suite.models[0], suite.path.parent, torch.device("cpu"), checked)
    assert isinstance(adapter, A.GeneratorAdapter) and adapter.sampler == ConstantSamplerConfig(steps=2)
    images, trace = adapter.generate(np.arange(3), [7, 8, 9])
    want = load_tokenizer(TOK).decode_tokens(torch.full((3, 4, 8, 8), 5), "ind")
    assert np.array_equal(images, want)
    assert trace == {"active": [3, 3], "nfe": [1, 1], "steps_used": [2, 2, 2]}
    assert adapter.provenance()["kind"] == "constant" and adapter.provenance()["sampler"] == {"steps": 2}

    # and the runner: entropy-vs-steps from the one Trace
    rows = Runner(suite, run_dir=tmp_path / "run", progress=False).run()["rows"]
    assert [(r["metric"], r["value"]) for r in rows] == [("mean_steps", 2.0)]


def test_an_adapter_that_is_not_a_model_kind_is_registered_once(tmp_path):
    """Registration is how `identity` (tests/identity_adapter.py) becomes a suite adapter; taken names and a
    class without a task are refused, and an unregistered adapter is an unknown one again."""
    with pytest.raises(ValueError, match="already registered"):
        A.register_adapter("identity", IdentityAdapter, options={}, family="external")
    with pytest.raises(ValueError, match="already registered"):
        A.register_adapter("grn", IdentityAdapter, options={}, family="external")
    with pytest.raises(ValueError, match="says no task"):
        A.register_adapter("t_none", object, options={}, family="external")
    A.register_adapter("t_echo", IdentityAdapter, options={"note": S.Opt(str)}, family="echo")
    try:
        assert S.adapter_options()["t_echo"] == {"note": S.Opt(str)} and S.default_family("t_echo") == "echo"
        assert A.adapter_class("t_echo") is IdentityAdapter
    finally:
        A.unregister_adapter("t_echo")
    assert "t_echo" not in S.adapter_options() and "t_echo" not in A.OTHER_ADAPTERS

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests import identity_adapter  # noqa: E402  (after the environment is set)

identity_adapter.register()  # `adapter: identity` in the test suites

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty, private GRN cache."""
    monkeypatch.setenv("GRN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def no_hub_cache(monkeypatch):
    """No feature-network weights on this machine: no weights variables, an empty Hugging Face cache."""
    import huggingface_hub

    from grn_eval import weights as W

    for env in (W.CLIP_ENV, W.DINOV2_ENV):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)


@pytest.fixture
def asset_runner():
    """The part of a Runner a metric's `prepare` uses: its device and `asset` (here: load every time)."""
    from types import SimpleNamespace

    return SimpleNamespace(device="cpu", asset=lambda key, load: load())

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

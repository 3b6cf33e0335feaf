"""The optional parts of the install: which extra brings the package a feature needs.

The core install (`pip install grn-eval`) is what the metrics and the embedded models need. A feature that
needs more imports it through `need`, which names the extra when the package is missing, so a user meets one
message with the fix instead of an ImportError. `nox` installs every extra (`.[dev,all]`).
"""

from __future__ import annotations

import importlib

from grn.errors import UserError

# extra -> the packages it installs (pyproject.toml [project.optional-dependencies] says the same with versions)
EXTRAS = {
    "diffusers": ("diffusers", "transformers"),  # the `diffusers` adapter and its text-to-image pipelines
    "umt5": ("transformers",),  # the UMT5-XXL text encoder of the released GRN_bit models
    "quantizers": ("vector_quantize_pytorch",),  # FSQ, LFQ / BSQ, VQ, residual VQ of the quantizer study
}


def need(module: str, extra: str, what: str):
    """`module` imported, or one UserError naming the extra that installs it (`what`: the feature, for the
    message)."""
    if module not in EXTRAS.get(extra, ()):
        raise ValueError(f"{module!r} is not a package of the extra {extra!r}")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"{what} needs the optional package '{module}' ({e}); install it with "
                        f"pip install \"grn-eval[{extra}]\" (`nox` installs every extra)") from None

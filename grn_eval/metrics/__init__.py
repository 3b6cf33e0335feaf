"""Metrics, each with a name, a version and the protocol it follows.

Every module of this package registers its metrics in `grn_eval.metrics.registry` when imported; importing
the package imports them all (in name order, so that the registry's order does not depend on the file
system), so a new metric is one new file here."""

import importlib
import pkgutil

from grn_eval.metrics import registry  # noqa: F401  (first: the modules below register into it)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

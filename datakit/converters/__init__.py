"""Converters, one module per conversion; importing this package registers them all."""

import importlib
import pkgutil

for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _m not in ("base",) and not _m.startswith("_"):
        importlib.import_module(f"{__name__}.{_m}")

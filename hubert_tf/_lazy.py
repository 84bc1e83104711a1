"""Lazy public names for packages (PEP 562): a name's module is imported on first access, so importing a
package costs nothing until something TensorFlow-backed is used."""

from __future__ import annotations

import importlib
from typing import Callable, Mapping


def lazy_names(package: str, module_globals: dict, names: Mapping[str, str],
               submodules: tuple[str, ...] = ()) -> tuple[Callable, Callable]:
    """(`__getattr__`, `__dir__`) for a package whose public `names` live in the given relative modules.

    Example (in a package's __init__.py):

        __getattr__, __dir__ = lazy_names(__name__, globals(), {"fit_distributed": ".distributed"})
    """

    def __getattr__(name: str):
        module_name = names.get(name)
        if module_name is not None:
            value = getattr(importlib.import_module(module_name, package), name)
            module_globals[name] = value  # later lookups skip this function
            return value
        if name in submodules:
            return importlib.import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(module_globals) | set(module_globals.get("__all__", ())) | set(submodules))

    return __getattr__, __dir__

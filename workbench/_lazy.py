"""Lazy public faces for packages: names resolve to their module on first use (PEP 562).

A package ``__init__`` lists ``name -> module`` and gets ``__getattr__``/``__dir__``
from :func:`lazy_exports`, so that ``import workbench.featurestore.cli`` (or
``workbench --help``) does not import Delta Lake, Dask or TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` exporting ``exports`` (name → defining module).

    Parameters
    ----------
    package
        The package's ``__name__``.
    exports
        Public name → module that defines it.
    namespace
        The package's ``globals()``; a resolved name is cached there.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__

"""Lazy public faces for packages: names resolve to their module on first use (PEP 562).

A package ``__init__`` lists ``name -> module`` and gets ``__getattr__``/``__dir__``
from :func:`lazy_exports`, so that ``import workbench.featurestore.cli`` (or
``workbench --help``) does not import Delta Lake, Dask or TensorFlow.
"""

from __future__ import annotations

import importlib
import sys
import types
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

    module = sys.modules.get(package)
    if module is not None and type(module) is types.ModuleType:
        module.__class__ = _ExportsWinModule
    return __getattr__, __dir__


class _ExportsWinModule(types.ModuleType):
    """A package whose exported names win over same-named submodules.

    Importing ``pkg.preprocess`` makes Python set the attribute ``preprocess`` of
    ``pkg`` to the submodule; when ``preprocess`` is also an exported function,
    that would shadow it. The submodule stays in ``sys.modules`` (``import
    pkg.preprocess`` works as always); the package attribute resolves to the export.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        exports = self.__dict__.get("_EXPORTS", {})
        if (name in exports and isinstance(value, types.ModuleType)
                and value.__name__ == f"{self.__name__}.{name}" and exports[name] == value.__name__):
            self.__dict__.pop(name, None)  # leave it to __getattr__, which gives the export
            return
        super().__setattr__(name, value)

"""ExtremeEarth Workbench: from Copernicus data to deep-learning products to linked geospatial knowledge."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from workbench.errors import WorkbenchError

try:
    __version__ = version("extremeearth-workbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["WorkbenchError", "__version__"]

"""Maps and panels for notebooks: folium result maps, the ipyleaflet processor panel.

>>> from workbench.ui import ProcessorPanel
>>> ProcessorPanel(region=[-23.9, 70.2, -22.9, 70.6], start="2021-12-01", end="2021-12-31")  # doctest: +SKIP

The names are imported on first use, so ``import workbench.ui`` loads no widget library.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PanelState", "ProcessorPanel", "footprint_map"]

_WHERE = {"ProcessorPanel": "workbench.ui.panel", "PanelState": "workbench.ui.state",
          "footprint_map": "workbench.ui.maps"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'workbench.ui' has no attribute {name!r}")

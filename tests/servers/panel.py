"""The project of the map-panel tests: built once per test session, shared by tests/test_85_panel*.py.

It is :func:`tests.servers.processes.build_project` (the sample Sentinel-1 scene, a Sentinel-2
tile and two tiny registered models) in ``<pytest basetemp>/panel-project``; the second module
asking for it in the same session gets the one already built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.servers.processes import build_project

__all__ = ["panel_project"]

_MARKER = "panel-project.json"


def panel_project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``scene_bbox``, ``tile_bbox``, ``seaice``, ``crop`` (name, version) and ``root`` of the shared project.

    Skips when the Sentinel-1 metadata of the sarsen sdist is not installed.
    """
    from workbench.errors import DataError
    from workbench.samples.sarsen_assets import find_grd_safe

    root = tmp_path_factory.getbasetemp() / "panel-project"
    marker = root / _MARKER
    if marker.is_file():
        return {**json.loads(marker.read_text()), "root": root}
    try:
        find_grd_safe()
    except DataError as exc:
        pytest.skip(str(exc))
    root.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_PROJECT_DIR", str(root))
        mp.setenv("WORKBENCH_DASK_WORKERS", "1")
        mp.chdir(root)
        info = build_project(Path(root))
    keep = {k: info[k] for k in ("scene_bbox", "tile_bbox", "seaice", "crop")}
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(keep))
    tmp.replace(marker)
    return {**keep, "root": root}

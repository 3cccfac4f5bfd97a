"""Fixtures of the processor tests: a temp project with sample data, tiny registered models, server processes.

* :func:`build_project` — a project directory with a small Sentinel-1 sample scene and a
  small Sentinel-2 sample tile in its local catalogue, a sea-ice CNN trained for one epoch
  on the scene's patches and a tiny crop LSTM, both registered (``seaice_tiny``, ``crop_tiny``);
* :func:`start_server` — a command (``workbench processes serve`` or the model server) as a
  subprocess on 127.0.0.1 with the project's environment, waited for until it answers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Region and time of the sample scene / tile (EPSG:4326).
SEAICE_DATES = ("2021-12-01", "2021-12-31")
CROP_DATES = ("2023-09-01", "2024-08-31")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project_env(project: Path, **extra: str) -> dict[str, str]:
    """Environment of a subprocess working in ``project``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(WORKBENCH_PROJECT_DIR=str(project), WORKBENCH_DASK_WORKERS="1", TF_CPP_MIN_LOG_LEVEL="3",
               TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def build_project(project: Path, *, scene_size: int = 512, tile_size: int = 32) -> dict[str, Any]:
    """Sample data and two tiny registered models in ``project`` (the current settings must point at it)."""
    import keras
    import numpy as np

    from workbench import registry
    from workbench.datasets.patches import assign_splits, extract_patches, label_raster
    from workbench.models.crops import build_lstm
    from workbench.samples.sentinel1 import ensure_sample_scene
    from workbench.samples.sentinel2 import CROP_CLASSES, generate_sentinel2_samples
    from workbench.sentinel1.preprocess import preprocess
    from workbench.storage import read_geoparquet
    from workbench.training.seaice import TrainConfig, fit, register_model

    data = project / "workbench-data"
    scene = ensure_sample_scene(data, seed=0, size=scene_size)
    items = generate_sentinel2_samples(data / "samples" / "sentinel2", n_tiles=1, size=tile_size, seed=0)
    cube = preprocess(scene.safe, window=scene.window, chunk=64).compute(scheduler="synchronous")
    labels = label_raster(cube, read_geoparquet(str(scene.chart)))
    patches = assign_splits(extract_patches(cube, labels, size=16, stride=8, purity=0.8), block=32, seed=0)
    result = fit(patches, TrainConfig(model="adhoc", epochs=1, batch_size=64, seed=0, augment=False))
    seaice = register_model(result, "seaice_tiny", aliases=("champion",))
    keras.utils.set_random_seed(0)
    lstm = build_lstm(12, 10, len(CROP_CLASSES), n_layers=1, units=8, dropout=0.0, name="crop_tiny")
    crop = registry.save_model("crop_tiny", lstm, input_example=np.zeros((2, 12, 10), np.float32),
                               params={"class_names": ",".join(CROP_CLASSES)}, description="tiny crop LSTM")
    footprint = json.loads(json.dumps(registry_item_bbox(project, "sentinel-1-grd", scene.item_id)))
    tile_bbox = [float(v) for v in items[0].bbox]
    return {
        "scene": scene, "scene_bbox": footprint, "tile_bbox": tile_bbox,
        "seaice": {"name": seaice.name, "version": seaice.version},
        "crop": {"name": crop.name, "version": crop.version},
        "tile_items": [i.id for i in items],
    }


def registry_item_bbox(project: Path, collection: str, item_id: str) -> list[float]:
    """Bbox of a catalogue item of the project."""
    import pystac

    from workbench.config import load_settings

    catalog = pystac.Catalog.from_file(str(load_settings(project_dir=project).local_catalog_path))
    item = catalog.get_child(collection).get_item(item_id)
    return [float(v) for v in item.bbox]


def inner_bbox(bbox: Sequence[float], fraction: float = 0.5) -> list[float]:
    """The central ``fraction`` of a bbox."""
    w, s, e, n = bbox
    dx, dy = (e - w) * (1 - fraction) / 2, (n - s) * (1 - fraction) / 2
    return [w + dx, s + dy, e - dx, n - dy]


def start_server(args: Sequence[str], *, env: dict[str, str], url: str, log: Path, timeout: float = 120.0,
                 cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``args`` (after ``python -m``) and wait until ``url`` answers (any HTTP status)."""
    import httpx

    out = open(log, "ab")
    proc = subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=2.0)
            return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"{' '.join(args)} did not answer on {url} in {timeout:g} s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server process and wait for it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

"""Build every sample data set into the local catalogue (the embedded default of the demo)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from workbench.catalog.local import collections
from workbench.config import load_settings
from workbench.errors import CatalogError

__all__ = ["build_samples", "SAMPLE_SETS"]

log = logging.getLogger(__name__)

#: Sample set → STAC collection it fills.
SAMPLE_SETS = {"sentinel2": "sentinel-2-l2a", "sentinel1": "sentinel-1-grd"}


def _present(catalog_path: Path, collection: str) -> bool:
    try:
        return collection in collections(catalog_path)
    except CatalogError:
        return False


def build_samples(
    data_dir: str | os.PathLike[str] = "workbench-data",
    *,
    seed: int = 0,
    which: tuple[str, ...] = tuple(SAMPLE_SETS),
    rebuild: bool = False,
) -> Path:
    """Generate the sample data sets under ``data_dir`` and register them in the local catalogue.

    The catalogue is the ``local_catalog_path`` of the settings. A set whose
    collection is already in the catalogue is kept unless ``rebuild``.

    Returns
    -------
    Path
        The catalogue's ``catalog.json``.
    """
    unknown = set(which) - set(SAMPLE_SETS)
    if unknown:
        raise CatalogError(f"unknown sample set(s) {sorted(unknown)}; known: {sorted(SAMPLE_SETS)}")
    path = load_settings().local_catalog_path
    root = Path(data_dir)
    for name in which:
        if not rebuild and _present(path, SAMPLE_SETS[name]):
            log.info("sample set %s already in %s", name, path)
            continue
        if name == "sentinel2":
            from workbench.samples.sentinel2 import generate_sentinel2_samples

            generate_sentinel2_samples(root / "samples" / "sentinel2", seed=seed, catalog_path=path)
        elif name == "sentinel1":
            from workbench.samples.sentinel1 import ensure_sample_scene

            ensure_sample_scene(root, seed=seed, rebuild=rebuild)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m workbench.samples.build [--data-dir DIR]``: build the sample data and its catalogue."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m workbench.samples.build", description=main.__doc__)
    parser.add_argument("--data-dir", default="workbench-data", help="where the sample data go")
    parser.add_argument("--rebuild", action="store_true", help="rebuild sets already in the catalogue")
    args = parser.parse_args(argv)
    print(build_samples(args.data_dir, rebuild=args.rebuild))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

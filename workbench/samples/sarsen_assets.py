"""Install-time fetch of real Sentinel-1 SAFE metadata from the ``sarsen`` sdist.

No package registry ships real Sentinel-1 pixels, but the ``sarsen`` source
distribution (version |SARSEN_VERSION|) ships, as test data, a real IW GRDH SAFE
(``S1B_IW_GRDH_1SDV_20211223T051122_..._5371.SAFE``) with its real annotation,
calibration (sigmaNought LUT) and noise (range + azimuth) XML. This module
downloads that sdist with pip *at install time* (``make demo``/``make test``
run it) and extracts the SAFE metadata into a cache folder, never committed::

    python -m workbench.samples.sarsen_assets [--cache-dir DIR]

At run time :func:`find_grd_safe` only looks in the cache; nothing downloads.
The cache folder is, in order: the ``cache_dir`` argument, the
``SARSEN_ASSETS_DIR`` environment variable, ``<project_dir>/.cache/sarsen``,
``<source tree>/.cache/sarsen``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from workbench.errors import DataError

__all__ = ["SARSEN_VERSION", "GRD_SAFE_NAME", "default_cache_dir", "fetch", "find_grd_safe", "main"]

log = logging.getLogger(__name__)

SARSEN_VERSION = "0.9.6"
GRD_SAFE_NAME = "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
ENV_VAR = "SARSEN_ASSETS_DIR"
_KEEP_SUFFIXES = (".xml", ".safe")


def _source_tree_cache() -> Path:
    return Path(__file__).resolve().parents[2] / ".cache" / "sarsen"


def default_cache_dir() -> Path:
    """Cache folder used by :func:`fetch` when none is given."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    from workbench.config import load_settings

    return Path(load_settings().project_dir) / ".cache" / "sarsen"


def _candidates(cache_dir: str | os.PathLike[str] | None) -> list[Path]:
    if cache_dir is not None:
        return [Path(cache_dir)]
    out = [default_cache_dir(), _source_tree_cache()]
    return list(dict.fromkeys(p.resolve() for p in out))


def find_grd_safe(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the extracted real GRD SAFE (metadata only).

    Raises
    ------
    DataError
        When the cache holds no extracted SAFE; the message says how to fetch it.
    """
    tried = _candidates(cache_dir)
    for folder in tried:
        safe = folder / GRD_SAFE_NAME
        if (safe / "annotation" / "calibration").is_dir():
            return safe
    raise DataError(
        f"the real Sentinel-1 SAFE metadata {GRD_SAFE_NAME} is not in the cache (looked in "
        f"{', '.join(map(str, tried))}); fetch it once with `python -m workbench.samples.sarsen_assets`"
    )


def _extract(sdist: Path, target: Path) -> Path:
    """Extract the GRD SAFE's XML files (not its empty measurement TIFF) into ``target``."""
    prefix = f"sarsen-{SARSEN_VERSION}/tests/data/{GRD_SAFE_NAME}/"
    tmp = Path(tempfile.mkdtemp(prefix=".sarsen.", dir=target.parent))
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile() and m.name.startswith(prefix) and m.name.endswith(_KEEP_SUFFIXES)
            ]
            if not members:
                raise DataError(f"sdist {sdist} holds no {GRD_SAFE_NAME}; is it sarsen {SARSEN_VERSION}?")
            for member in members:
                rel = member.name[len(prefix):]
                out = tmp / GRD_SAFE_NAME / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None  # members are regular files
                with src, open(out, "wb") as fh:
                    shutil.copyfileobj(src, fh)
        final = target / GRD_SAFE_NAME
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp / GRD_SAFE_NAME, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(cache_dir: str | os.PathLike[str] | None = None, *, force: bool = False) -> Path:
    """Download the sarsen sdist with pip (install time only) and extract the SAFE metadata.

    Parameters
    ----------
    cache_dir
        Where to keep the sdist and the extracted SAFE (default :func:`default_cache_dir`).
    force
        Download and extract again even when the cache is complete.

    Returns
    -------
    Path
        The extracted ``.SAFE`` folder.
    """
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    if not force and (target / GRD_SAFE_NAME / "annotation" / "calibration").is_dir():
        log.info("sarsen SAFE metadata already in %s", target)
        return target / GRD_SAFE_NAME
    sdist = target / f"sarsen-{SARSEN_VERSION}.tar.gz"
    if force or not sdist.is_file():
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            f"sarsen=={SARSEN_VERSION}", "-d", str(target),
        ]
        log.info("running %s", " ".join(cmd))
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not sdist.is_file():
            raise DataError(
                f"`{' '.join(cmd)}` failed (exit {result.returncode}); it needs the package registry "
                f"at install time:\n{result.stderr[-2000:]}"
            )
    return _extract(sdist, target)


def main(argv: list[str] | None = None) -> int:
    """Command line: fetch the sarsen SAFE metadata into the cache."""
    parser = argparse.ArgumentParser(prog="python -m workbench.samples.sarsen_assets", description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", default=None, help="cache folder (default <project_dir>/.cache/sarsen)")
    parser.add_argument("--force", action="store_true", help="download and extract again")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        safe = fetch(args.cache_dir, force=args.force)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(safe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

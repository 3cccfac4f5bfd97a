"""``workbench s2`` command: Sentinel-2 sample data and monthly composites from the shell.

* ``workbench s2 samples OUT_DIR [--tiles 3] [--size 64] [--seed 0] [--year 2023]``
  generates the sample time series and registers it in the local catalogue;
* ``workbench s2 composite OUT_DIR (--items ITEMS.json | --bbox W S E N) --year 2023
  [--mask-snow] [--mask-dark] [--dilation N] [--chunk N]`` writes one Zarr
  cube of 12 monthly composites per tile and prints their paths.
"""

from __future__ import annotations

import argparse
import json
import logging

__all__ = ["register"]

log = logging.getLogger(__name__)


def _samples(args: argparse.Namespace) -> int:
    from workbench.samples.sentinel2 import generate_sentinel2_samples

    items = generate_sentinel2_samples(args.out_dir, n_tiles=args.tiles, size=args.size, seed=args.seed,
                                       agronomic_year=args.year)
    print(json.dumps({"items": len(items), "tiles": sorted({i.properties["grid:code"] for i in items})}))
    return 0


def _composite(args: argparse.Namespace) -> int:
    from workbench.errors import DataError
    from workbench.sentinel2 import composite_tiles, invalid_classes

    if args.items:
        from workbench.catalog.io import read_item_collection

        items = read_item_collection(args.items)
    elif args.bbox:
        from workbench.catalog import search

        items = search("sentinel-2-l2a", args.bbox, f"{args.year}-09-01", f"{args.year + 1}-08-31")
    else:
        raise DataError("give the items: --items ITEMS.json (from a catalogue search) or --bbox W S E N")
    if args.dask_address is not None:
        from workbench.cluster import get_client

        get_client(args.dask_address or None)
    paths = composite_tiles(items, args.out_dir, agronomic_year=args.year,
                            invalid=invalid_classes(mask_snow=args.mask_snow, mask_dark=args.mask_dark),
                            dilation=args.dilation, chunk=args.chunk)
    print(json.dumps(paths, indent=1))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``s2`` command (``samples`` and ``composite``) to the workbench CLI."""
    p = subparsers.add_parser("s2", help="Sentinel-2 sample data and monthly composites (food security)")
    sub = p.add_subparsers(dest="s2_command", required=True)

    s = sub.add_parser("samples", help="generate the Sentinel-2 sample time series into the local catalogue")
    s.add_argument("out_dir", help="root folder (or s3:// URL) of the sample data")
    s.add_argument("--tiles", type=int, default=3, help="number of tiles (1-6)")
    s.add_argument("--size", type=int, default=64, help="tile size in 10 m pixels (even, 16-2048)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--year", type=int, default=2023, help="agronomic year (starts 1 September)")
    s.set_defaults(func=_samples)

    c = sub.add_parser("composite", help="12 monthly median composites per tile (one Zarr cube each)")
    c.add_argument("out_dir", help="folder (or s3:// URL) for <tile>.zarr")
    c.add_argument("--items", help="item collection JSON (e.g. from 01_discover)")
    c.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"), help="search the catalogue instead")
    c.add_argument("--year", type=int, required=True, help="agronomic year (September year .. August year+1)")
    c.add_argument("--mask-snow", action="store_true", help="also mask SCL 11 (snow)")
    c.add_argument("--mask-dark", action="store_true", help="also mask SCL 2 (dark areas)")
    c.add_argument("--dilation", type=int, default=0, help="pixels added around masked areas")
    c.add_argument("--chunk", type=int, default=512, help="spatial chunk size")
    c.add_argument("--dask-address", default=None,
                   help="Dask scheduler ('' starts a LocalCluster; default: the threaded scheduler)")
    c.set_defaults(func=_composite)

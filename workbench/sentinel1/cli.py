"""``workbench seaice``: sample scene, Sentinel-1 preprocessing and scene classification from the shell."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]


def _sample(args: argparse.Namespace) -> int:
    from workbench.samples.sentinel1 import build_sample_scene

    scene = build_sample_scene(args.out, seed=args.seed, size=args.size, register=not args.no_register)
    print(json.dumps({"scene_id": scene.scene_id, "safe": str(scene.safe), "chart": str(scene.chart),
                      "window": [scene.window.row, scene.window.col, scene.window.height, scene.window.width]}))
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    from workbench.sentinel1 import apply_land_mask, preprocess, write_cube

    cube = preprocess(
        args.safe, polarisations=args.polarisations, window=args.window, multilook=args.multilook,
        boxcar_size=args.boxcar, floor_db=args.floor_db, chunk=args.chunk,
    )
    if args.land:
        cube = apply_land_mask(cube, args.land)
    print(write_cube(cube, args.out))
    return 0


def _classify(args: argparse.Namespace) -> int:
    from workbench.sentinel1 import classify_scene, open_cube
    from workbench.training.seaice import load_model

    model, meta = load_model(args.model)
    result = classify_scene(
        model, open_cube(args.cube), class_names=meta.get("class_names") or [str(i) for i in range(model.output_shape[-1])],
        stride=args.stride, batch_size=args.batch_size, cog_url=args.cog, polygons_url=args.polygons,
    )
    print(json.dumps({"cog": result.cog, "polygons": result.parquet, "patches": result.n_patches}))
    return 0


def register(subparsers: Any) -> None:
    """Add the ``seaice`` command (``sample``, ``preprocess``, ``classify``) to the workbench CLI."""
    p = subparsers.add_parser("seaice", help="polar use case: Sentinel-1 sample, preprocessing, sea-ice charts")
    sub = p.add_subparsers(dest="seaice_command", required=True)

    s = sub.add_parser("sample", help="build the sample Sentinel-1 scene (real metadata, simulated pixels)")
    s.add_argument("--out", default=None, help="output folder (default <project>/workbench-data/samples/sentinel1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=2048, help="window side in 10 m pixels (multiple of 256)")
    s.add_argument("--no-register", action="store_true", help="do not add the STAC item to the local catalogue")
    s.set_defaults(func=_sample)

    pp = sub.add_parser("preprocess", help="SAFE → Zarr cube (HH_db, HV_db, incidence)")
    pp.add_argument("safe", help="the .SAFE folder (local or s3://)")
    pp.add_argument("out", help="output Zarr path or URL")
    pp.add_argument("--window", type=int, nargs=4, metavar=("ROW", "COL", "HEIGHT", "WIDTH"), default=None)
    pp.add_argument("--polarisations", nargs="+", default=["HH", "HV"])
    pp.add_argument("--multilook", type=int, default=4)
    pp.add_argument("--boxcar", type=int, default=3)
    pp.add_argument("--floor-db", type=float, default=-40.0)
    pp.add_argument("--chunk", type=int, default=256)
    pp.add_argument("--land", default=None, help="GeoParquet of land polygons to mask")
    pp.set_defaults(func=_preprocess)

    c = sub.add_parser("classify", help="classify a cube with a saved model → COG + GeoParquet")
    c.add_argument("model", help="model saved by workbench.training.seaice.save_model (.keras)")
    c.add_argument("cube", help="cube Zarr written by `workbench seaice preprocess`")
    c.add_argument("--cog", required=True, help="output class raster (COG)")
    c.add_argument("--polygons", required=True, help="output class polygons (GeoParquet)")
    c.add_argument("--stride", type=int, default=None)
    c.add_argument("--batch-size", type=int, default=256)
    c.set_defaults(func=_classify)

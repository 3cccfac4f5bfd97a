"""Per-tile preprocessing: load → SCL mask → reflectance → monthly composites → one Zarr cube per tile."""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import pystac

from workbench import storage
from workbench.errors import DataError
from workbench.sentinel2.composite import check_has_valid, monthly_composite
from workbench.sentinel2.load import DEFAULT_BANDS, group_by_tile, load_cube
from workbench.sentinel2.masking import DEFAULT_INVALID_SCL, to_reflectance, valid_mask

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["mask_cube", "composite_tile", "composite_tiles", "list_composites", "ndvi", "rgb"]

log = logging.getLogger(__name__)


def _mask_block(dn: np.ndarray, scl: np.ndarray, scale: np.ndarray, offset: np.ndarray,
                invalid: tuple[int, ...], dilation: int) -> np.ndarray:
    # dn (t, band, y, x); scl (t, 1, y, x); scale, offset (t, 1, 1, 1)
    ok = valid_mask(scl, invalid=invalid, dilation=dilation)
    refl = to_reflectance(dn, scale=scale, offset=offset)
    return np.where(ok, refl, np.float32(np.nan))


def mask_cube(
    cube: "xr.Dataset", *, invalid: Iterable[int] = DEFAULT_INVALID_SCL, dilation: int = 0
) -> "xr.DataArray":
    """Masked surface reflectance ``(time, band, y, x)`` from a cube of :func:`load_cube`.

    Observations whose SCL class is in ``invalid`` (grown by ``dilation``
    pixels) and DN 0 (no data) become NaN; the rest is ``DN * scale + offset``.
    """
    import dask.array as da
    import xarray as xr

    for name in ("dn", "scl", "scale", "offset"):
        if name not in cube:
            raise DataError(f"the cube has no {name!r} variable (expected the output of load_cube)")
    if dilation < 0:
        raise DataError(f"dilation must be >= 0 pixels, got {dilation}")
    invalid = tuple(int(v) for v in invalid)
    dn_sizes = {d: cube["dn"].sizes.get(d) for d in ("time", "y", "x")}
    scl_sizes = {d: cube["scl"].sizes.get(d) for d in ("time", "y", "x")}
    if cube["dn"].ndim != 4 or cube["scl"].ndim != 3 or dn_sizes != scl_sizes:
        raise DataError(
            f"the cloud mask 'scl' {dict(cube['scl'].sizes)} does not match the bands 'dn' "
            f"{dict(cube['dn'].sizes)}: expected scl (time, y, x) on the same dates and grid"
        )
    dn = cube["dn"].data
    scl = cube["scl"].data
    if not isinstance(dn, da.Array):
        dn = da.from_array(dn, chunks=(1, -1, 512, 512))
    if not isinstance(scl, da.Array):
        scl = da.from_array(scl, chunks=(1, 512, 512))
    scl = scl.rechunk((dn.chunks[0], dn.chunks[2], dn.chunks[3]))
    dn = dn.rechunk({1: -1})
    scale = da.from_array(cube["scale"].values, chunks=(dn.chunks[0],))
    offset = da.from_array(cube["offset"].values, chunks=(dn.chunks[0],))
    if dilation:
        # dilation needs neighbours: compute the valid mask with an overlap, then mask
        ok = da.map_overlap(
            partial(valid_mask, invalid=invalid, dilation=dilation),
            scl, depth={0: 0, 1: dilation, 2: dilation}, boundary="nearest", dtype=bool,
        )
        scl = da.where(ok, np.uint8(4), np.uint8(0))  # re-encode: 0 (invalid) / 4 (valid)
        invalid, dilation = (0,), 0
    refl = da.map_blocks(
        _mask_block, dn, scl[:, None], scale[:, None, None, None], offset[:, None, None, None],
        invalid, dilation, dtype=np.float32, name="s2-mask-scale",
    )
    return xr.DataArray(
        refl,
        dims=("time", "band", "y", "x"),
        coords={k: v for k, v in cube["dn"].coords.items()},
        name="reflectance",
        attrs={"masked_scl_classes": list(invalid)},
    )


def composite_tile(
    items: Sequence[pystac.Item],
    out_url: str | os.PathLike[str],
    *,
    agronomic_year: int,
    bands: Sequence[str] = DEFAULT_BANDS,
    invalid: Iterable[int] = DEFAULT_INVALID_SCL,
    dilation: int = 0,
    crs: str | int | None = None,
    resolution: float | None = None,
    chunk: int = 512,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Composite one tile's items into a Zarr cube of 12 monthly medians.

    Parameters
    ----------
    items
        The tile's Sentinel-2 L2A items (any number of dates).
    out_url
        Zarr store to write (local path or ``s3://``), written atomically.
    agronomic_year
        Year of the September that starts the 12 months.
    bands, invalid, dilation
        Bands to keep, SCL classes to mask and the mask dilation in pixels.
    crs, resolution
        Target grid (needed only when the items differ in CRS or resolution).
    chunk
        Spatial chunk size.
    storage_options
        fsspec options for ``s3://`` inputs and output.

    Returns
    -------
    str
        ``out_url``.

    Raises
    ------
    DataError
        On a missing SCL/band asset, mixed grids without a target grid, a
        ``chunk`` that is not a positive integer, or a year without any valid
        observation.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise DataError(f"chunk must be a positive number of pixels, got {chunk!r}")
    cube = load_cube(items, bands=bands, crs=crs, resolution=resolution, chunk=chunk,
                     storage_options=storage_options)
    refl = mask_cube(cube, invalid=invalid, dilation=dilation)
    comp = monthly_composite(refl, agronomic_year=agronomic_year, chunk=chunk)
    tiles = sorted(group_by_tile(items))
    name = ",".join(tiles)
    comp.attrs.update(
        tile=name,
        crs=cube.attrs["crs"],
        resolution=cube.attrs["resolution"],
        source_items=list(cube.attrs["item_ids"]),
        masked_scl_classes=list(refl.attrs["masked_scl_classes"]),
        mask_dilation=int(dilation),
    )
    comp = comp.assign(filled=comp["filled"].astype("uint8"))
    comp["filled"].attrs["long_name"] = "1: no valid observation that month, value interpolated in time"
    comp = comp.chunk({"month": -1, "band": -1, "y": chunk, "x": chunk})
    # one pass over the data: write, then check the (small) count array of what was written
    storage.write_zarr(comp, out_url, storage_options=storage_options)
    try:
        n_valid = check_has_valid(storage.open_zarr(out_url, storage_options=storage_options), name=f"tile {name}")
    except DataError:
        storage.remove(out_url, storage_options=storage_options)
        raise
    log.info("tile %s: %d items, %d valid pixel-observations → %s", name, len(items), n_valid, out_url)
    return str(out_url)


def composite_tiles(
    items: Iterable[pystac.Item],
    out_dir: str | os.PathLike[str],
    *,
    agronomic_year: int,
    **kwargs: Any,
) -> dict[str, str]:
    """Composite every tile of ``items`` into ``out_dir/<tile>.zarr``; returns tile → URL.

    Keyword arguments are those of :func:`composite_tile`.
    """
    from tqdm.auto import tqdm

    groups = group_by_tile(items)
    if not groups:
        raise DataError("no items to composite: the item list is empty (did the search, e.g. the discover stage, find any?)")
    out: dict[str, str] = {}
    for tile, tile_items in tqdm(groups.items(), desc="composite tiles", disable=len(groups) < 2):
        url = storage.join(str(out_dir), f"{tile}.zarr")
        out[tile] = composite_tile(tile_items, url, agronomic_year=agronomic_year, **kwargs)
    return out


def list_composites(
    out_dir: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Tile → URL of the ``<tile>.zarr`` composites in ``out_dir`` (as written by :func:`composite_tiles`)."""
    if not storage.exists(out_dir, storage_options=storage_options):
        raise DataError(f"composite folder {str(out_dir)!r} does not exist; run the compositing stage first")
    names = [n for n in storage.listdir(out_dir, storage_options=storage_options) if n.endswith(".zarr")]
    if not names:
        raise DataError(f"composite folder {str(out_dir)!r} holds no <tile>.zarr cube")
    return {n.removesuffix(".zarr"): storage.join(str(out_dir), n) for n in names}


def ndvi(composite: "xr.Dataset") -> "xr.DataArray":
    """NDVI ``(B08 − B04) / (B08 + B04)`` of a composite (or any dataset with a ``reflectance`` band axis)."""
    refl = composite["reflectance"]
    for band in ("B04", "B08"):
        if band not in refl["band"].values:
            raise DataError(f"NDVI needs band {band}; the composite has {list(refl['band'].values)}")
    red, nir = refl.sel(band="B04"), refl.sel(band="B08")
    out = (nir - red) / (nir + red)
    out.name = "ndvi"
    out.attrs = {"long_name": "NDVI", "units": "1"}
    return out


def rgb(composite: "xr.Dataset", *, gain: float = 3.5) -> "xr.DataArray":
    """True-colour image ``(…, y, x, band)`` in 0..1 (B04, B03, B02 times ``gain``, clipped), for ``imshow``."""
    refl = composite["reflectance"]
    out = (refl.sel(band=["B04", "B03", "B02"]) * gain).clip(0, 1)
    return out.transpose(..., "y", "x", "band")

"""Folium maps of footprints and products."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import folium
    import geopandas as gpd

__all__ = ["footprint_map"]


def footprint_map(
    footprints: "gpd.GeoDataFrame", *, bbox: Sequence[float] | None = None, tooltip: Sequence[str] = ("id", "datetime")
) -> "folium.Map":
    """A folium map of item footprints (blue) and an optional search box (red).

    Parameters
    ----------
    footprints
        GeoDataFrame in EPSG:4326 (e.g. from :func:`workbench.catalog.items_to_geodataframe`).
    bbox
        (west, south, east, north) of the search, drawn as a red rectangle.
    tooltip
        Columns shown when hovering a footprint.
    """
    import folium

    if bbox is not None:
        west, south, east, north = bbox
    elif len(footprints):
        west, south, east, north = footprints.total_bounds
    else:
        west, south, east, north = -180.0, -85.0, 180.0, 85.0
    fmap = folium.Map(tiles=None, control_scale=True)
    folium.TileLayer("OpenStreetMap", name="OpenStreetMap").add_to(fmap)
    if len(footprints):
        shown = footprints.copy()
        for column in shown.columns:
            if column != "geometry" and shown[column].dtype.kind in "Mm":
                shown[column] = shown[column].astype(str)
        shown["datetime"] = shown["datetime"].astype(str) if "datetime" in shown else None
        fields = [c for c in tooltip if c in shown.columns]
        folium.GeoJson(
            shown.to_json(),
            name="footprints",
            style_function=lambda _: {"color": "#1f77b4", "weight": 1, "fillOpacity": 0.15},
            tooltip=folium.GeoJsonTooltip(fields=fields) if fields else None,
        ).add_to(fmap)
    if bbox is not None:
        folium.Rectangle([[south, west], [north, east]], color="#d62728", fill=False, weight=2, tooltip="search box").add_to(fmap)
    fmap.fit_bounds([[south, west], [north, east]])
    folium.LayerControl().add_to(fmap)
    return fmap

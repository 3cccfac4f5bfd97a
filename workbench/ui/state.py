"""The state of the processor panel and the pure functions behind its widgets.

:class:`PanelState` holds what a user chose on the map panel. Its raw form
(:meth:`PanelState.to_raw`) is exactly the ``inputs`` object of an OGC API –
Processes execute request, and :meth:`PanelState.validate` runs the processors'
own :func:`workbench.processors.base.validate_inputs` on it: the panel and the
API refuse the same inputs with the same messages.

The other functions turn widget values into raw inputs (a drawn shape, four bbox
text fields) and products or jobs into what the map and the job table show. None
of them touches a widget, a file or the network, so they are tested without a
browser or a kernel.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.processors.base import InputError, ProcessorInputs, validate_inputs

__all__ = [
    "LATEST",
    "JobRow",
    "PanelState",
    "bbox_fields",
    "default_model",
    "graticule",
    "jobs_table_html",
    "legend_of",
    "parse_version",
    "png_data_url",
    "region_bbox",
    "region_from_bbox_fields",
    "region_from_draw",
    "region_geojson",
    "style_of_class",
    "version_choices",
    "view_of_bbox",
]

#: What the version selector shows for "the latest version".
LATEST = "latest"


@dataclass
class PanelState:
    """What the user chose on the panel (all values as the widgets hold them).

    Attributes
    ----------
    processor
        Processor id (``sea_ice_chart``, ``crop_type_map``).
    region
        Raw region: ``{"bbox": [w, s, e, n]}`` or a GeoJSON geometry (EPSG:4326), ``None`` if none yet.
    start, end
        Dates (``datetime.date`` or ``YYYY-MM-DD``), ``None`` if not picked.
    model_name
        Registered model name (empty: none chosen).
    model_version
        Version number, alias (``champion``) or ``None``/``"latest"`` for the latest version.
    model_path
        Path of an exported model instead of a registered name.
    mode
        ``embedded`` or ``remote``.
    serving_url, api_key
        Model server and its key (remote mode).
    options
        Processor-specific options.
    """

    processor: str = "sea_ice_chart"
    region: dict[str, Any] | None = None
    start: dt.date | str | None = None
    end: dt.date | str | None = None
    model_name: str = ""
    model_version: int | str | None = None
    model_path: str = ""
    mode: str = "embedded"
    serving_url: str = ""
    api_key: str = field(default="", repr=False)
    options: dict[str, Any] = field(default_factory=dict)

    def model_raw(self) -> dict[str, Any] | None:
        """The raw ``model`` input (``None`` when no model is chosen)."""
        if self.model_path.strip():
            return {"path": self.model_path.strip()}
        name = self.model_name.strip() if isinstance(self.model_name, str) else self.model_name
        if not name:
            return None
        raw: dict[str, Any] = {"name": name}
        version = parse_version(self.model_version)
        if version is not None:
            raw["version"] = version
        return raw

    def to_raw(self, *, secrets: bool = True) -> dict[str, Any]:
        """The raw inputs: the body of ``POST /processes/{id}/execution`` under ``inputs``.

        Unset values are left out, so that :func:`validate_inputs` reports them as
        required exactly as it does for an API request that lacks them. The API
        key is included unless ``secrets`` is false.
        """
        raw: dict[str, Any] = {}
        if self.region is not None:
            raw["region"] = self.region
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, (dt.date, dt.datetime)):
                raw[name] = value.isoformat()[:10]
            elif value not in (None, ""):
                raw[name] = value
        model = self.model_raw()
        if model is not None:
            raw["model"] = model
        raw["mode"] = self.mode
        if self.serving_url.strip():
            raw["serving_url"] = self.serving_url.strip()
        if secrets and self.api_key.strip():
            raw["api_key"] = self.api_key.strip()
        if self.options:
            raw["options"] = dict(self.options)
        return raw

    def validate(self, *, model_lookup: Callable[[Any], Any] | None = None) -> ProcessorInputs:
        """:func:`workbench.processors.base.validate_inputs` of :meth:`to_raw` (raises :class:`InputError`)."""
        return validate_inputs(self.processor, self.to_raw(), model_lookup=model_lookup)

    def error(self, *, model_lookup: Callable[[Any], Any] | None = None) -> InputError | None:
        """The validation error of the current state, or ``None`` when it is valid."""
        try:
            self.validate(model_lookup=model_lookup)
        except InputError as exc:
            return exc
        return None

    def replace(self, **changes: Any) -> PanelState:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)


# --- regions -----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def region_from_draw(geo_json: Mapping[str, Any]) -> dict[str, Any]:
    """The raw region of a shape drawn with ipyleaflet's ``DrawControl``.

    The draw control hands over a GeoJSON Feature (a rectangle is a Polygon);
    its geometry is the region. Any other shape (a line, a marker) is passed on
    as it is, so :func:`validate_inputs` refuses it with its own message.
    """
    if not isinstance(geo_json, Mapping):
        raise InputError("region", f"the drawn shape is not a GeoJSON object, got {type(geo_json).__name__}")
    if geo_json.get("type") == "Feature":
        geometry = geo_json.get("geometry")
        if not isinstance(geometry, Mapping):
            raise InputError("region", "the drawn GeoJSON Feature has no geometry object")
        return _plain(geometry)
    return _plain(geo_json)


def _field_value(text: Any) -> Any:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return text
    stripped = str(text).strip()
    try:
        number = float(stripped)
    except ValueError:
        return stripped  # validate_inputs names it: "every bbox value must be a finite number, got 'abc'"
    if number.is_integer() and "." not in stripped and "e" not in stripped.lower() and math.isfinite(number):
        return int(number)
    return number


def region_from_bbox_fields(west: Any, south: Any, east: Any, north: Any) -> dict[str, Any] | None:
    """The raw region ``{"bbox": [w, s, e, n]}`` of four text fields; ``None`` when all four are empty.

    Numbers are parsed; a field that is not a number is kept as text, so that
    :func:`validate_inputs` reports it like it reports a bad API request.
    """
    values = [west, south, east, north]
    if all(str(v).strip() == "" for v in values):
        return None
    return {"bbox": [_field_value(v) for v in values]}


def region_bbox(region: Mapping[str, Any] | None) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) of a raw region, or ``None`` when it has none that can be read."""
    if region is None:
        return None
    try:
        inputs_region = validate_region(region)
    except InputError:
        return None
    w, s, e, n = inputs_region.bounds
    return (float(w), float(s), float(e), float(n))


def validate_region(region: Mapping[str, Any]) -> Any:
    """The shapely geometry of a raw region (the processors' region check; :class:`InputError` if bad)."""
    from workbench.processors.base import _region

    return _region(region)


def region_geojson(region: Mapping[str, Any] | None) -> dict[str, Any]:
    """A FeatureCollection drawing a raw region (empty when there is none or it is not a valid shape)."""
    import shapely.geometry

    features: list[dict[str, Any]] = []
    if region is not None:
        try:
            geom = validate_region(region)
        except InputError:
            geom = None
        if geom is not None:
            features.append({"type": "Feature", "properties": {"name": "region"},
                             "geometry": _plain(shapely.geometry.mapping(geom))})
    return {"type": "FeatureCollection", "features": features}


def bbox_fields(bbox: Sequence[float] | None, *, digits: int = 5) -> tuple[str, str, str, str]:
    """Text of the four bbox fields for a bbox (``("", "", "", "")`` for none)."""
    if bbox is None:
        return ("", "", "", "")
    def text(value: float) -> str:
        out = f"{float(value):.{digits}f}".rstrip("0").rstrip(".")
        return "0" if out in ("-0", "") else out

    w, s, e, n = (text(v) for v in bbox)
    return (w, s, e, n)


# --- models ------------------------------------------------------------------------------------


def parse_version(value: Any) -> int | str | None:
    """A version selector's value as the raw ``version``: a number, an alias, or ``None`` (latest)."""
    if value is None or isinstance(value, bool):
        return None if value is None else value
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text == "" or text == LATEST:
        return None
    if text.lower().startswith("v") and text[1:].isdigit():
        return int(text[1:])
    if text.isdigit():
        return int(text)
    return text


def version_choices(versions: Iterable[Any]) -> list[str]:
    """Choices of the version selector from registry versions (``ModelVersion``): latest, aliases, numbers."""
    numbers: list[int] = []
    aliases: list[str] = []
    for v in versions:
        numbers.append(int(v.version))
        aliases.extend(a for a in getattr(v, "aliases", []) or [] if a not in aliases)
    return [LATEST, *sorted(aliases), *(str(n) for n in sorted(numbers, reverse=True))]


_PROCESSOR_MODEL_HINTS: dict[str, tuple[str, ...]] = {
    "sea_ice_chart": ("seaice", "sea_ice", "ice"),
    "crop_type_map": ("crop", "lstm"),
}


def default_model(processor_id: str, names: Sequence[str]) -> str:
    """The registered model the panel preselects for a processor (first name with a fitting word; else '')."""
    for hint in _PROCESSOR_MODEL_HINTS.get(processor_id, ()):
        for name in names:
            if hint in name.lower():
                return name
    return ""


# --- products ----------------------------------------------------------------------------------


def legend_of(product: Mapping[str, Any]) -> dict[str, str]:
    """Class name → colour of a product (for a legend control)."""
    names = list(product.get("class_names") or [])
    colors = list(product.get("class_colors") or [])
    return {str(n): str(colors[i]) if i < len(colors) else "#888888" for i, n in enumerate(names)}


def style_of_class(legend: Mapping[str, str], class_name: Any, *, opacity: float = 0.55) -> dict[str, Any]:
    """Leaflet path style of a polygon of ``class_name``."""
    color = legend.get(str(class_name), "#888888")
    return {"color": color, "fillColor": color, "weight": 1, "fillOpacity": opacity, "opacity": 0.9}


def png_data_url(data: bytes) -> str:
    """``data:image/png;base64,...`` of PNG bytes (an image overlay that needs no file server)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("the quicklook is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# --- jobs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    """One job as the panel shows it (from a local ``Job`` or an OGC API status document)."""

    id: str
    processor: str
    status: str
    progress: int
    message: str
    created: str
    product: dict[str, Any] | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        """True once successful, failed or dismissed."""
        return self.status in ("successful", "failed", "dismissed")

    @classmethod
    def from_job(cls, job: Any) -> JobRow:
        """From a :class:`workbench.processors.jobs.Job`."""
        error = None
        if job.error:
            error = str(job.error.get("detail") or job.message)
        return cls(id=job.id, processor=job.processor, status=job.status, progress=int(job.progress),
                   message=job.message or "", created=job.created or "", product=job.product, error=error)

    @classmethod
    def from_status_info(cls, info: Mapping[str, Any], product: Mapping[str, Any] | None = None) -> JobRow:
        """From an OGC API – Processes ``statusInfo`` document (``GET /jobs/{id}``)."""
        exc = info.get("exception")
        error = None
        if isinstance(exc, Mapping):
            error = str(exc.get("detail") or info.get("message") or "failed")
        elif info.get("status") == "failed":
            error = str(info.get("message") or "failed")
        progress = info.get("progress")
        return cls(id=str(info.get("jobID", "")), processor=str(info.get("processID", "")),
                   status=str(info.get("status", "")),
                   progress=int(progress) if isinstance(progress, (int, float)) else 0,
                   message=str(info.get("message") or ""), created=str(info.get("created") or ""),
                   product=dict(product) if product else None, error=error)


_STATUS_COLORS = {"accepted": "#777", "running": "#1f77b4", "successful": "#2ca02c", "failed": "#d62728",
                  "dismissed": "#999"}


def jobs_table_html(rows: Sequence[JobRow], *, limit: int = 20) -> str:
    """An HTML table of past jobs, newest first (status, progress, message); ``limit`` rows at most."""
    if not rows:
        return '<div class="wb-jobs-empty">No jobs yet.</div>'
    head = "".join(f"<th style='text-align:left;padding:2px 6px'>{h}</th>"
                   for h in ("job", "processor", "status", "progress", "created", "message"))
    body = []
    for row in rows[:limit]:
        color = _STATUS_COLORS.get(row.status, "#000")
        message = row.error if row.status == "failed" and row.error else row.message
        cells = [
            f"<td class='wb-job-id' title='{html.escape(row.id)}'>{html.escape(row.id[:8])}</td>",
            f"<td>{html.escape(row.processor)}</td>",
            f"<td class='wb-job-status' style='color:{color};font-weight:bold'>{html.escape(row.status)}</td>",
            f"<td>{int(row.progress)} %</td>",
            f"<td>{html.escape(row.created[:19].replace('T', ' '))}</td>",
            f"<td>{html.escape(message[:160])}</td>",
        ]
        body.append(f"<tr class='wb-job wb-job-{html.escape(row.status)}' data-job='{html.escape(row.id)}'>"
                    + "".join(c.replace("<td", "<td style='padding:2px 6px'", 1) for c in cells) + "</tr>")
    return ("<table class='wb-jobs-table' style='border-collapse:collapse;font-size:12px'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


# --- the map without web tiles -----------------------------------------------------------------


def graticule(step: float = 10.0) -> dict[str, Any]:
    """Meridians and parallels every ``step`` degrees as GeoJSON lines: a background that needs no tiles."""
    if not 0 < step <= 90:
        raise ValueError(f"step must be in (0, 90], got {step}")
    features = []
    lon = -180.0
    while lon <= 180.0:
        features.append({"type": "Feature", "properties": {"kind": "meridian", "value": lon},
                         "geometry": {"type": "LineString", "coordinates": [[lon, -85.0], [lon, 85.0]]}})
        lon += step
    lat = -80.0
    while lat <= 80.0:
        line = [[-180.0 + i * 5.0, lat] for i in range(73)]
        features.append({"type": "Feature", "properties": {"kind": "parallel", "value": lat},
                         "geometry": {"type": "LineString", "coordinates": line}})
        lat += step
    return {"type": "FeatureCollection", "features": features}


def view_of_bbox(
    bbox: Sequence[float], *, width: int = 700, height: int = 520, max_zoom: int = 16
) -> tuple[tuple[float, float], int]:
    """Centre (lat, lon) and the largest Web-Mercator zoom at which ``bbox`` fits a ``width`` × ``height`` map.

    Computed here rather than with ``Map.fit_bounds`` (which waits for the
    browser) so that it works from any thread and without a front end.
    """
    w, s, e, n = (float(v) for v in bbox)

    def merc_y(lat: float) -> float:
        lat = max(-85.05, min(85.05, lat))
        return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))

    y_center = (merc_y(s) + merc_y(n)) / 2
    center_lat = math.degrees(2 * math.atan(math.exp(y_center)) - math.pi / 2)
    center = (center_lat, (w + e) / 2)
    span_x = max((e - w) / 360.0, 1e-9)  # fraction of the world's width
    span_y = max((merc_y(n) - merc_y(s)) / (2 * math.pi), 1e-9)
    zoom = 0
    while zoom < max_zoom and 256 * 2 ** (zoom + 1) * span_x <= width and 256 * 2 ** (zoom + 1) * span_y <= height:
        zoom += 1
    return center, zoom

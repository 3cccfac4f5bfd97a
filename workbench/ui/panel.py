"""The processor panel: choose a region, dates, a processor and a model on a map, run it, see the product.

>>> from workbench.ui import ProcessorPanel
>>> panel = ProcessorPanel(region=[-23.9, 70.2, -22.9, 70.6], start="2021-12-01", end="2021-12-31")
>>> panel  # doctest: +SKIP

The panel is a thin widget layer over :mod:`workbench.ui.state` (the state,
validated by the processors' own :func:`~workbench.processors.base.validate_inputs`)
and :mod:`workbench.ui.backends` (jobs run by the local
:class:`~workbench.processors.jobs.JobManager`, or by an OGC API – Processes
server when ``processes_url`` is given). The map loads no web tiles: its
background is a graticule, or a tile layer of your own (``tiles_url``, e.g. a
local tile server), so it works offline.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError
from workbench.processors.base import InputError
from workbench.ui.backends import ApiBackend, ApiError, LocalBackend, PanelBackend, ProcessorInfo
from workbench.ui.state import (
    LATEST,
    JobRow,
    PanelState,
    bbox_fields,
    default_model,
    graticule,
    jobs_table_html,
    legend_of,
    png_data_url,
    region_bbox,
    region_from_bbox_fields,
    region_from_draw,
    region_geojson,
    style_of_class,
    version_choices,
    view_of_bbox,
)

__all__ = ["ProcessorPanel", "footprints_geojson", "polygons_geojson"]

log = logging.getLogger(__name__)

_REGION_STYLE = {"color": "#d62728", "weight": 2, "fillOpacity": 0.04, "dashArray": "4 4"}
_FOOTPRINT_STYLE = {"color": "#1f77b4", "weight": 1, "fillOpacity": 0.08}
_GRID_STYLE = {"color": "#b0b0b0", "weight": 0.6, "opacity": 0.7}


def footprints_geojson(items: Sequence[Any]) -> dict[str, Any]:
    """A FeatureCollection of the footprints of catalogue items (id and date in the properties)."""
    features = []
    for item in items:
        if item.geometry is None:
            continue
        when = item.datetime or item.common_metadata.start_datetime
        features.append({"type": "Feature", "geometry": item.geometry,
                         "properties": {"id": item.id, "datetime": when.isoformat() if when else "",
                                        "collection": item.collection_id or ""}})
    return {"type": "FeatureCollection", "features": features}


def polygons_geojson(polygons: Any, legend: Mapping[str, str], *, max_vertices: int = 50_000) -> dict[str, Any]:
    """The class polygons of a product as GeoJSON, each feature styled in its class colour.

    Polygons with more than ``max_vertices`` vertices in all are simplified
    (for display only) so that the browser gets a map it can draw.
    """
    import json

    import shapely

    frame = polygons.to_crs(4326) if polygons.crs is not None else polygons
    total = int(shapely.get_num_coordinates(frame.geometry.values).sum()) if len(frame) else 0
    if total > max_vertices:
        w, s, e, n = frame.total_bounds
        frame = frame.assign(geometry=frame.geometry.simplify(max(e - w, n - s) / 1000.0, preserve_topology=True))
    keep = [c for c in ("class_id", "class_name", "image_id") if c in frame.columns]
    data = json.loads(frame[keep + ["geometry"]].to_json())
    for feature in data["features"]:
        props = feature.setdefault("properties", {})
        props["style"] = style_of_class(legend, props.get("class_name"))
    return data


class ProcessorPanel:
    """An ipyleaflet map panel to run a processor on a region and time range.

    Parameters
    ----------
    processes_url
        An OGC API – Processes server (``workbench processes serve``); default: run the jobs in this
        kernel with the local :class:`~workbench.processors.jobs.JobManager`.
    api_key
        Key of the processes server (scope ``processes:execute``).
    backend
        A ready backend (``LocalBackend``/``ApiBackend``), instead of ``processes_url``.
    region
        Initial region: a bbox ``[w, s, e, n]``, ``{"bbox": [...]}`` or a GeoJSON geometry.
    start, end
        Initial dates.
    processor
        Initial processor id (default: the first one offered).
    model, model_version
        Initial registered model name and version (number, alias or ``"latest"``).
    mode
        ``embedded`` or ``remote``.
    serving_url, serving_api_key
        Model server and its key (remote mode).
    options
        Processor options sent with every run.
    tiles_url
        A tile layer URL template (``http://127.0.0.1:8080/{z}/{x}/{y}.png``); default none (offline).
    poll_interval
        Seconds between two looks at a running job.
    models
        The registered model names offered (default: :func:`workbench.registry.list_models`).
    """

    def __init__(
        self,
        *,
        processes_url: str | None = None,
        api_key: str | None = None,
        backend: PanelBackend | None = None,
        region: Sequence[float] | Mapping[str, Any] | None = None,
        start: dt.date | str | None = None,
        end: dt.date | str | None = None,
        processor: str | None = None,
        model: str | None = None,
        model_version: int | str | None = None,
        mode: str = "embedded",
        serving_url: str = "",
        serving_api_key: str = "",
        options: Mapping[str, Any] | None = None,
        tiles_url: str | None = None,
        poll_interval: float = 0.5,
        models: Sequence[str] | None = None,
    ) -> None:
        import ipyleaflet
        import ipywidgets as w

        if backend is None:
            backend = ApiBackend(processes_url, api_key) if processes_url else LocalBackend()
        self.backend: PanelBackend = backend
        self.poll_interval = float(poll_interval)
        self.options = dict(options or {})
        self.job_id: str | None = None
        self.last_job: JobRow | None = None
        self.product: dict[str, Any] | None = None
        self.scenes: list[Any] = []
        self._watcher: threading.Thread | None = None
        self._syncing = False
        self._lock = threading.RLock()

        self._processors: list[ProcessorInfo] = self.backend.processors()
        if not self._processors:
            raise WorkbenchError("the processes backend offers no processor")
        ids = [p.id for p in self._processors]
        if processor is not None and processor not in ids:
            raise InputError("processor", f"no processor {processor!r} (known: {', '.join(ids)})")
        self._model_names = list(models) if models is not None else _registered_models()

        # --- widgets -------------------------------------------------------------------------
        def box(name: str, placeholder: str) -> w.Text:
            t = w.Text(placeholder=placeholder, description=name, continuous_update=False,
                       layout=w.Layout(width="160px"), style={"description_width": "42px"})
            t.add_class(f"wb-bbox-{name.lower()}")
            return t

        self.processor_select = w.Dropdown(options=[(p.title, p.id) for p in self._processors],
                                           value=processor or ids[0], description="Processor",
                                           layout=w.Layout(width="330px"))
        self.processor_select.add_class("wb-processor")
        self.start_picker = w.DatePicker(description="Start", value=_as_date(start, "start"), layout=w.Layout(width="330px"))
        self.end_picker = w.DatePicker(description="End", value=_as_date(end, "end"), layout=w.Layout(width="330px"))
        self.start_picker.add_class("wb-start")
        self.end_picker.add_class("wb-end")
        self.west, self.south = box("West", "lon"), box("South", "lat")
        self.east, self.north = box("East", "lon"), box("North", "lat")
        self.model_select = w.Combobox(options=self._model_names, value=model or "", description="Model",
                                       placeholder="registered model", ensure_option=False,
                                       layout=w.Layout(width="330px"))
        self.model_select.add_class("wb-model")
        self.version_select = w.Combobox(options=[LATEST], value=str(model_version) if model_version else LATEST,
                                         description="Version", ensure_option=False, layout=w.Layout(width="330px"))
        self.version_select.add_class("wb-version")
        self.mode_select = w.ToggleButtons(options=["embedded", "remote"], value=mode if mode in ("embedded", "remote")
                                           else "embedded", description="Mode", style={"button_width": "110px"})
        self.mode_select.add_class("wb-mode")
        self.serving_url = w.Text(value=serving_url, description="Server", placeholder="http://127.0.0.1:8500",
                                  layout=w.Layout(width="330px"))
        self.serving_key = w.Password(value=serving_api_key, description="API key", layout=w.Layout(width="330px"))
        self.serving_url.add_class("wb-serving-url")
        self.serving_key.add_class("wb-serving-key")
        self.run_button = w.Button(description="Run", button_style="primary", icon="play",
                                   layout=w.Layout(width="330px"))
        self.run_button.add_class("wb-run")
        self.progress = w.IntProgress(value=0, min=0, max=100, description="Progress", bar_style="info",
                                      layout=w.Layout(width="330px"))
        self.progress.add_class("wb-progress")
        self.progress_label = w.HTML(value="")
        self.progress_label.add_class("wb-progress-message")
        self.error_label = w.HTML(value="")
        self.error_label.add_class("wb-error")
        self.scenes_label = w.HTML(value="")
        self.scenes_label.add_class("wb-scenes")
        self.jobs_table = w.HTML(value="")
        self.jobs_table.add_class("wb-jobs")
        self._remote_box = w.VBox([self.serving_url, self.serving_key])

        # --- the map -------------------------------------------------------------------------
        layers: list[Any] = []
        if tiles_url:
            layers.append(ipyleaflet.TileLayer(url=tiles_url, name="tiles", base=True, attribution="local tiles"))
        self.grid_layer = ipyleaflet.GeoJSON(data=graticule(10.0), style=_GRID_STYLE, name="graticule")
        layers.append(self.grid_layer)
        self.map = ipyleaflet.Map(layers=tuple(layers), center=(60.0, 0.0), zoom=2, scroll_wheel_zoom=True,
                                  attribution_control=False, layout=w.Layout(height="520px", width="100%"))
        self.map.add_class("wb-map")
        self.footprint_layer = ipyleaflet.GeoJSON(data=footprints_geojson([]), style=_FOOTPRINT_STYLE,
                                                  hover_style={"fillOpacity": 0.25}, name="scenes")
        self.region_layer = ipyleaflet.GeoJSON(data=region_geojson(None), style=_REGION_STYLE, name="region")
        self.map.add(self.footprint_layer)
        self.map.add(self.region_layer)
        self.draw = ipyleaflet.DrawControl(
            rectangle={"shapeOptions": {"color": "#d62728", "weight": 2, "fillOpacity": 0.05}},
            polygon={"shapeOptions": {"color": "#d62728", "weight": 2, "fillOpacity": 0.05}},
            polyline={}, circlemarker={}, circle={}, marker={},
        )
        self.map.add(self.draw)
        self.map.add(ipyleaflet.ScaleControl(position="bottomleft"))
        self.map.add(ipyleaflet.LayersControl(position="topright"))
        self.quicklook_layer: Any = None
        self.polygons_layer: Any = None
        self.legend: Any = None

        controls = w.VBox([
            w.HTML("<b>Processor</b>"), self.processor_select,
            w.HTML("<b>Region</b> <span style='color:#666'>(draw on the map, or type a box in degrees)</span>"),
            w.HBox([self.west, self.east]), w.HBox([self.south, self.north]), self.scenes_label,
            w.HTML("<b>Time range</b>"), self.start_picker, self.end_picker,
            w.HTML("<b>Model</b>"), self.model_select, self.version_select, self.mode_select, self._remote_box,
            self.run_button, self.progress, self.progress_label, self.error_label,
        ], layout=w.Layout(width="350px", min_width="350px"))
        self.widget = w.VBox([
            w.HBox([controls, w.Box([self.map], layout=w.Layout(flex="1 1 auto"))]),
            w.HTML("<b>Jobs</b>"), self.jobs_table,
        ])
        self.widget.add_class("wb-processor-panel")

        # --- initial state and events --------------------------------------------------------
        self._region: dict[str, Any] | None = None
        if region is not None:
            self.set_region(region)
        if not self.model_select.value:
            self.model_select.value = default_model(self.processor_select.value, self._model_names)
        self._update_versions()
        self._update_mode()
        self.processor_select.observe(self._on_processor, names="value")
        for picker in (self.start_picker, self.end_picker):
            picker.observe(self._on_dates, names="value")
        for field in (self.west, self.south, self.east, self.north):
            field.observe(self._on_bbox_field, names="value")
        self.model_select.observe(self._on_model, names="value")
        self.version_select.observe(lambda _: self.revalidate(), names="value")
        self.mode_select.observe(self._on_mode, names="value")
        self.serving_url.observe(lambda _: self.revalidate(), names="value")
        self.serving_key.observe(lambda _: self.revalidate(), names="value")
        self.draw.on_draw(self._on_draw)
        self.run_button.on_click(lambda _: self.run())
        self.refresh_jobs()
        self.refresh_footprints()
        self.revalidate()

    # ------------------------------------------------------------------ display

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> PanelState:
        """The current choices as a :class:`~workbench.ui.state.PanelState`."""
        return PanelState(
            processor=self.processor_select.value, region=self._region,
            start=self.start_picker.value, end=self.end_picker.value,
            model_name=self.model_select.value or "", model_version=self.version_select.value,
            mode=self.mode_select.value,
            serving_url=self.serving_url.value if self.mode_select.value == "remote" else "",
            api_key=self.serving_key.value if self.mode_select.value == "remote" else "",
            options=dict(self.options),
        )

    @property
    def region(self) -> dict[str, Any] | None:
        """The raw region (``{"bbox": [...]}`` or a GeoJSON geometry)."""
        return self._region

    def set_region(self, region: Sequence[float] | Mapping[str, Any] | None) -> None:
        """Set the region (bbox list, ``{"bbox": ...}`` or GeoJSON), draw it and fill the bbox fields."""
        if region is not None and not isinstance(region, Mapping):
            region = {"bbox": list(region)}
        self._region = dict(region) if region is not None else None
        bbox = region_bbox(self._region)
        self._syncing = True
        try:
            if self._region is not None and "bbox" in self._region and "type" not in self._region:
                values = list(self._region["bbox"]) + [""] * 4
                texts = [str(v) for v in values[:4]]
            else:
                texts = list(bbox_fields(bbox))
            self.west.value, self.south.value, self.east.value, self.north.value = texts
        finally:
            self._syncing = False
        self.region_layer.data = region_geojson(self._region)
        if bbox is not None:
            self._zoom_to(bbox)

    def _zoom_to(self, bbox: Sequence[float]) -> None:
        center, zoom = view_of_bbox(bbox, width=680, height=500)
        self.map.center, self.map.zoom = center, zoom

    def error_message(self) -> str:
        """Text of the error label ('' when the inputs are valid)."""
        import re

        return re.sub(r"<[^>]+>", "", self.error_label.value).replace("&#x27;", "'").replace("&quot;", '"') \
            .replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

    def revalidate(self) -> InputError | None:
        """Validate the current state and show the message (the processors' own) in the error label."""
        error = self.state.error()
        self._show_error(str(error) if error else "")
        return error

    def _show_error(self, message: str) -> None:
        import html

        self.error_label.value = (f"<span class='wb-error-text' style='color:#d62728'>{html.escape(message)}</span>"
                                  if message else "")

    # ------------------------------------------------------------------ events

    def _on_processor(self, change: Mapping[str, Any]) -> None:
        if not self.model_select.value or default_model(change["old"], self._model_names) == self.model_select.value:
            self.model_select.value = default_model(change["new"], self._model_names)
        self.refresh_footprints()
        self.revalidate()

    def _on_dates(self, _: Any) -> None:
        self.refresh_footprints()
        self.revalidate()

    def _on_bbox_field(self, _: Any) -> None:
        if self._syncing:
            return
        fields = (self.west.value, self.south.value, self.east.value, self.north.value)
        if any(str(v).strip() == "" for v in fields) and not all(str(v).strip() == "" for v in fields):
            return  # still typing: wait for all four
        self._region = region_from_bbox_fields(*fields)
        self.region_layer.data = region_geojson(self._region)
        bbox = region_bbox(self._region)
        if bbox is not None:
            self._zoom_to(bbox)
        self.refresh_footprints()
        self.revalidate()

    def _on_draw(self, _control: Any, action: str, geo_json: Mapping[str, Any]) -> None:
        if action not in ("created", "edited"):
            return
        try:
            region = region_from_draw(geo_json)
        except InputError as exc:
            self._show_error(str(exc))
            return
        self.draw.clear()
        self.set_region(region)
        self.refresh_footprints()
        self.revalidate()

    def _on_model(self, _: Any) -> None:
        self._update_versions()
        self.revalidate()

    def _on_mode(self, _: Any) -> None:
        self._update_mode()
        self.revalidate()

    def _update_mode(self) -> None:
        self._remote_box.layout.display = "" if self.mode_select.value == "remote" else "none"

    def _update_versions(self) -> None:
        name = (self.model_select.value or "").strip()
        choices = [LATEST]
        if name and name in self._model_names:
            try:
                from workbench import registry

                versions = registry.get_models(name)
                # search results carry no aliases in MLflow: ask for the newest versions one by one
                versions = versions[:-10] + [registry.get_model(name, v.version) for v in versions[-10:]]
                choices = version_choices(versions)
            except Exception as exc:  # noqa: BLE001 - a registry that cannot be read leaves "latest"
                log.warning("versions of model %s cannot be listed: %s", name, exc)
        current = self.version_select.value
        self.version_select.options = choices
        if current not in choices and not str(current).strip():
            self.version_select.value = LATEST

    # ------------------------------------------------------------------ catalogue footprints

    def _collection(self) -> str | None:
        if "collection" in self.options:
            return str(self.options["collection"])
        for p in self._processors:
            if p.id == self.processor_select.value:
                return p.collection
        return None

    def refresh_footprints(self) -> list[Any]:
        """Search the catalogue over the region and dates; draw the footprints of the scenes found."""
        bbox = region_bbox(self._region)
        start, end, collection = self.start_picker.value, self.end_picker.value, self._collection()
        items: list[Any] = []
        if bbox is None or start is None or end is None or collection is None or end < start:
            self.scenes_label.value = ""
        else:
            from workbench import catalog

            try:
                items = catalog.search(collection, bbox, start, end, limit=100)
            except WorkbenchError as exc:
                self.scenes_label.value = f"<span style='color:#d62728'>catalogue: {_escape(str(exc))}</span>"
            else:
                noun = "scene" if len(items) == 1 else "scenes"
                self.scenes_label.value = (f"<span class='wb-scene-count' style='color:#1f77b4'>{len(items)} {noun} "
                                           f"of {_escape(collection)} in the region and time range</span>")
        self.scenes = items
        self.footprint_layer.data = footprints_geojson(items)
        return items

    # ------------------------------------------------------------------ running

    def run(self) -> str | None:
        """The Run button: validate, submit a job, follow it in the background; returns the job id (or ``None``)."""
        state = self.state
        try:
            state.validate()
            job_id = self.backend.submit(state.processor, state.to_raw())
        except (InputError, ApiError) as exc:
            self._show_error(str(exc))
            return None
        except WorkbenchError as exc:
            self._show_error(f"{type(exc).__name__}: {exc}")
            return None
        self._show_error("")
        self.job_id = job_id
        self.product = None
        self.progress.value, self.progress.bar_style = 0, "info"
        self.progress_label.value = f"job {job_id[:8]} accepted"
        self.refresh_jobs()
        self._watcher = threading.Thread(target=self._watch, args=(job_id,), name=f"wb-panel-{job_id[:8]}",
                                         daemon=True)
        self._watcher.start()
        return job_id

    def wait(self, timeout: float | None = None) -> JobRow | None:
        """Wait for the job being followed (for scripts and tests); returns its last state."""
        watcher = self._watcher
        if watcher is not None:
            watcher.join(timeout)
        return self.last_job

    def _watch(self, job_id: str) -> None:
        row: JobRow | None = None
        failures = 0
        while True:
            try:
                row = self.backend.job(job_id)
                failures = 0
            except WorkbenchError as exc:
                failures += 1
                if failures >= 5:
                    self._show_error(f"the job {job_id[:8]} cannot be followed: {exc}")
                    return
                time.sleep(self.poll_interval)
                continue
            self.last_job = row
            self.progress.value = max(0, min(100, row.progress))
            self.progress_label.value = _escape(_progress_text(row))
            if row.done:
                break
            time.sleep(self.poll_interval)
        self.refresh_jobs()
        if row.status == "successful" and row.product:
            self.progress.bar_style = "success"
            try:
                self.show_product(row.product)
            except (OSError, ValueError, WorkbenchError) as exc:
                self._show_error(f"the product cannot be shown: {exc}")
        elif row.status == "failed":
            self.progress.bar_style = "danger"
            self._show_error(row.error or row.message)
        else:
            self.progress.bar_style = "warning"

    def refresh_jobs(self) -> list[JobRow]:
        """Reload the table of past jobs."""
        try:
            rows = self.backend.jobs(limit=20)
        except WorkbenchError as exc:
            self.jobs_table.value = f"<span style='color:#d62728'>jobs: {_escape(str(exc))}</span>"
            return []
        self.jobs_table.value = jobs_table_html(rows)
        return rows

    # ------------------------------------------------------------------ the product on the map

    def show_product(self, product: Mapping[str, Any]) -> None:
        """Put a product's quicklook and polygons on the map, with a legend of its classes."""
        import ipyleaflet

        from workbench import storage

        with self._lock:
            for layer in (self.quicklook_layer, self.polygons_layer):
                if layer is not None and layer in self.map.layers:
                    self.map.remove(layer)
            if self.legend is not None and self.legend in self.map.controls:
                self.map.remove(self.legend)
            self.quicklook_layer = self.polygons_layer = self.legend = None
            legend = legend_of(product)
            w, s, e, n = (float(v) for v in product["bbox"])
            quicklook = product.get("quicklook")
            if quicklook and Path(quicklook).is_file():
                self.quicklook_layer = ipyleaflet.ImageOverlay(
                    url=png_data_url(Path(quicklook).read_bytes()), bounds=((s, w), (n, e)), opacity=0.8,
                    name="quicklook")
                self.map.add(self.quicklook_layer)
            polygons = product.get("polygons")
            if polygons and (Path(polygons).exists() or "://" in str(polygons)):
                frame = storage.read_geoparquet(str(polygons))
                self.polygons_layer = ipyleaflet.GeoJSON(data=polygons_geojson(frame, legend), name="classes",
                                                         hover_style={"fillOpacity": 0.8})
                self.map.add(self.polygons_layer)
            if self.quicklook_layer is None and self.polygons_layer is None:
                self._show_error(f"product {product.get('id', '')}: its files are not readable from this kernel "
                                 f"({quicklook})")
            if legend:
                self.legend = ipyleaflet.LegendControl(legend, title="classes", position="bottomright")
                self.map.add(self.legend)
            self._zoom_to((w, s, e, n))
            self.product = dict(product)


def _progress_text(row: JobRow) -> str:
    """``status: message`` of a job for the progress line (the message alone when it starts with the status)."""
    if row.status == "failed":
        return "failed"  # the error label below says why
    message = row.message[:200]
    if not message or message.startswith(row.status):
        return message or row.status
    return f"{row.status}: {message}"


def _registered_models() -> list[str]:
    try:
        from workbench import registry

        if not registry.registry_exists():
            return []
        return registry.list_models()
    except Exception as exc:  # noqa: BLE001 - no registry yet: an empty list, typed names still work
        log.warning("registered models cannot be listed: %s", exc)
        return []


def _as_date(value: dt.date | str | None, name: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InputError(name, f"expected a date 'YYYY-MM-DD', got {value!r}") from None


def _escape(text: str) -> str:
    import html

    return html.escape(text)


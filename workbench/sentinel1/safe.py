"""Read a Sentinel-1 GRD SAFE (local folder or ``s3://`` prefix): files, XML metadata, raster windows.

XML is parsed with xarray-sentinel (its schema-driven decoder); this module only
finds the files, reads their bytes through :mod:`workbench.storage`, turns
parse failures into :class:`~workbench.errors.DataError` naming the file, and
assembles the azimuth-noise blocks of GRD products (which xarray-sentinel
reduces to the first block).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping
from xml.etree.ElementTree import ParseError

import numpy as np

from workbench import storage
from workbench.errors import DataError, StorageError
from workbench.sentinel1.calibration import AzimuthNoiseBlock, GridLUT

__all__ = [
    "Window",
    "PolarisationFiles",
    "SafeProduct",
    "Sentinel1Metadata",
    "open_safe",
    "read_metadata",
    "read_window",
]

log = logging.getLogger(__name__)

_CACHE: dict[str, "Sentinel1Metadata"] = {}  # parsed metadata by content hash: parsing costs seconds
_CACHE_LOCK = threading.Lock()
_OPENER_LOCK = threading.Lock()  # rasterio's Python-file opener is not safe across threads
_NAME = re.compile(r"^(?:(calibration|noise|rfi)-)?(s1[abcd])-(iw|ew|sm|s\d)-grd-(hh|hv|vv|vh)-.*\.(xml|tiff?)$")


@dataclass(frozen=True)
class Window:
    """A window of image lines and pixels (full-resolution coordinates)."""

    row: int
    col: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if min(self.row, self.col) < 0 or min(self.height, self.width) <= 0:
            raise DataError(f"window {self} must have row, col >= 0 and height, width > 0")

    @classmethod
    def coerce(cls, value: "Window | tuple[int, int, int, int] | list[int]") -> "Window":
        """A :class:`Window` from itself or ``(row, col, height, width)``."""
        if isinstance(value, Window):
            return value
        try:
            row, col, height, width = (int(v) for v in value)
        except (TypeError, ValueError):
            raise DataError(f"window {value!r} must be (row, col, height, width)") from None
        return cls(row, col, height, width)


@dataclass(frozen=True)
class PolarisationFiles:
    """URLs of the four files of one polarisation."""

    annotation: str
    calibration: str
    noise: str
    measurement: str


@dataclass(frozen=True)
class SafeProduct:
    """A SAFE product: its URL, name and per-polarisation files."""

    url: str
    name: str
    files: Mapping[str, PolarisationFiles]
    storage_options: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def polarisations(self) -> tuple[str, ...]:
        """Polarisations present, upper case (``HH``, ``HV``...)."""
        return tuple(sorted(self.files))

    def pol(self, polarisation: str) -> PolarisationFiles:
        """Files of one polarisation; DataError when the product does not have it."""
        key = str(polarisation).upper()
        if key not in self.files:
            raise DataError(
                f"polarisation {polarisation!r} is not in product {self.url}; it has {list(self.polarisations)}"
            )
        return self.files[key]


@dataclass(frozen=True)
class Sentinel1Metadata:
    """Everything the preprocessing needs from the XML of one polarisation.

    Attributes
    ----------
    polarisation
        ``HH``, ``HV``...
    shape
        ``(lines, samples)`` of the measurement raster.
    sigma_nought
        Calibration LUT ``A_σ``.
    noise_range
        Range noise LUT ``η_r``.
    noise_azimuth
        Azimuth noise blocks ``η_a`` (empty for products without them).
    incidence, latitude, longitude
        Geolocation grid values (degrees) on the annotation's line × pixel grid.
    attrs
        Product attributes (mission, mode, start/stop time, pass, spacing).
    """

    polarisation: str
    shape: tuple[int, int]
    sigma_nought: GridLUT
    noise_range: GridLUT
    noise_azimuth: tuple[AzimuthNoiseBlock, ...]
    incidence: GridLUT
    latitude: GridLUT
    longitude: GridLUT
    attrs: dict[str, Any]


def _find(url: str, storage_options: Mapping[str, Any] | None, sub: str) -> list[str]:
    folder = storage.join(url, sub)
    try:
        return storage.listdir(folder, storage_options=storage_options)
    except StorageError:
        return []


def open_safe(
    url: str, *, storage_options: Mapping[str, Any] | None = None, require_measurement: bool = True
) -> SafeProduct:
    """Find the files of a SAFE product (local folder or object-store prefix).

    Parameters
    ----------
    url
        The ``.SAFE`` folder (or its ``manifest.safe``).
    storage_options
        fsspec options for ``s3://`` URLs (``None``: from the settings).
    require_measurement
        Whether a measurement raster must exist for each polarisation (``False``
        for metadata-only products such as the cached sarsen SAFE).

    Raises
    ------
    DataError
        When ``url`` is not a SAFE folder, or a polarisation lacks its
        calibration, noise or measurement file (the message names the missing file).
    """
    url = str(url).rstrip("/")
    if url.endswith("manifest.safe"):
        url = url[: -len("/manifest.safe")]
    if not storage.exists(url, storage_options=storage_options):
        raise DataError(f"SAFE product {url} does not exist")
    annotations = {
        m.group(4).upper(): n for n in _find(url, storage_options, "annotation") if (m := _NAME.match(n)) and not m.group(1)
    }
    if not annotations:
        raise DataError(f"{url} is not a Sentinel-1 GRD SAFE: no annotation/s1?-*-grd-<pol>-*.xml files")
    calibrations: dict[str, str] = {}
    noises: dict[str, str] = {}
    for name in _find(url, storage_options, "annotation/calibration"):
        m = _NAME.match(name)
        if m and m.group(1) == "calibration":
            calibrations[m.group(4).upper()] = name
        elif m and m.group(1) == "noise":
            noises[m.group(4).upper()] = name
    measurements = {
        m.group(4).upper(): n for n in _find(url, storage_options, "measurement") if (m := _NAME.match(n)) and not m.group(1)
    }
    files: dict[str, PolarisationFiles] = {}
    for pol, ann in annotations.items():
        stem = ann[: -len(".xml")]
        expected = {
            "calibration": (calibrations, storage.join(url, "annotation", "calibration", f"calibration-{stem}.xml")),
            "noise": (noises, storage.join(url, "annotation", "calibration", f"noise-{stem}.xml")),
            "measurement": (measurements, storage.join(url, "measurement", f"{stem}.tiff")),
        }
        for kind, (found, path) in expected.items():
            if pol not in found and (kind != "measurement" or require_measurement):
                raise DataError(f"SAFE {url}: the {kind} file of polarisation {pol} is missing (expected {path})")
        files[pol] = PolarisationFiles(
            annotation=storage.join(url, "annotation", ann),
            calibration=storage.join(url, "annotation", "calibration", calibrations[pol]),
            noise=storage.join(url, "annotation", "calibration", noises[pol]),
            measurement=storage.join(url, "measurement", measurements.get(pol, f"{stem}.tiff")),
        )
    name = url.rsplit("/", 1)[-1]
    return SafeProduct(url=url, name=name, files=files, storage_options=storage_options)


def _xml(url: str, storage_options: Mapping[str, Any] | None) -> bytes:
    try:
        data = storage.read_bytes(url, storage_options=storage_options)
    except StorageError as exc:
        raise DataError(f"cannot read {url}: {exc}") from exc
    if not data.strip():
        raise DataError(f"{url} is empty")
    return data


def _parse(url: str, what: str, fn: Any) -> Any:
    try:
        return fn()
    except ParseError as exc:
        raise DataError(f"{url} is not well-formed XML (truncated?): {exc}") from exc
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - xmlschema raises many types on malformed content
        raise DataError(f"{url}: cannot read the {what}: {type(exc).__name__}: {exc}") from exc


def _noise_azimuth_blocks(vectors: list[dict[str, Any]]) -> tuple[AzimuthNoiseBlock, ...]:
    blocks = []
    for v in vectors:
        lines = np.fromstring(v["line"]["$"], dtype=np.float64, sep=" ")
        lut = np.fromstring(v["noiseAzimuthLut"]["$"], dtype=np.float32, sep=" ")
        if lines.size != lut.size or lines.size == 0:
            raise DataError(f"azimuth noise block has {lines.size} lines but {lut.size} LUT values")
        blocks.append(
            AzimuthNoiseBlock(
                first_line=int(v["firstAzimuthLine"]),
                last_line=int(v["lastAzimuthLine"]),
                first_pixel=int(v["firstRangeSample"]),
                last_pixel=int(v["lastRangeSample"]),
                lines=lines,
                lut=lut,
            )
        )
    return tuple(blocks)


def read_metadata(product: SafeProduct, polarisation: str) -> Sentinel1Metadata:
    """Parse the annotation, calibration and noise XML of one polarisation.

    Raises
    ------
    DataError
        For a missing polarisation, or a missing, empty, truncated or malformed
        XML file (the message names the file).
    """
    files = product.pol(polarisation)
    so = product.storage_options
    cal_xml = _xml(files.calibration, so)
    noise_xml = _xml(files.noise, so)
    ann_xml = _xml(files.annotation, so)
    key = hashlib.sha1(b"\0".join([cal_xml, noise_xml, ann_xml, str(polarisation).upper().encode()])).hexdigest()
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    meta = _parse_metadata(files, str(polarisation).upper(), cal_xml, noise_xml, ann_xml)
    with _CACHE_LOCK:
        _CACHE[key] = meta
        while len(_CACHE) > 16:
            _CACHE.pop(next(iter(_CACHE)))
    return meta


def _parse_metadata(
    files: PolarisationFiles, polarisation: str, cal_xml: bytes, noise_xml: bytes, ann_xml: bytes
) -> Sentinel1Metadata:
    from xarray_sentinel import esa_safe
    from xarray_sentinel import sentinel1 as xs

    cal = _parse(files.calibration, "calibration LUT", lambda: xs.open_calibration_dataset(io.BytesIO(cal_xml), attrs={}))
    nr = _parse(files.noise, "range noise LUT", lambda: xs.open_noise_range_dataset(io.BytesIO(noise_xml), attrs={}))
    az = _parse(
        files.noise,
        "azimuth noise LUT",
        lambda: esa_safe.parse_tag_as_list(io.BytesIO(noise_xml), "//noiseAzimuthVector", "noise"),
    )
    gcp = _parse(files.annotation, "geolocation grid", lambda: xs.open_gcp_dataset(io.BytesIO(ann_xml), attrs={}))
    header = _parse(files.annotation, "product header", lambda: esa_safe.parse_tag(io.BytesIO(ann_xml), "//adsHeader"))
    info = _parse(
        files.annotation, "image information", lambda: esa_safe.parse_tag(io.BytesIO(ann_xml), "//imageAnnotation/imageInformation")
    )
    for url, ds, var in ((files.calibration, cal, "sigmaNought"), (files.noise, nr, "noiseRangeLut")):
        if var not in ds or ds[var].size == 0:
            raise DataError(f"{url} holds no {var} vectors")

    def grid(ds: Any, var: str, url: str) -> GridLUT:
        try:
            return GridLUT(
                lines=np.asarray(ds["line"].values, dtype=np.float64),
                pixels=np.asarray(ds["pixel"].values, dtype=np.float64),
                values=np.asarray(ds[var].values, dtype=np.float32),
            )
        except DataError as exc:
            raise DataError(f"{url}: {var}: {exc}") from exc

    geo = gcp.swap_dims({"azimuth_time": "line", "slant_range_time": "pixel"})
    attrs = {
        "mission": str(header.get("missionId")),
        "mode": str(header.get("mode")),
        "product_type": str(header.get("productType")),
        "start_time": str(header.get("startTime")),
        "stop_time": str(header.get("stopTime")),
        "absolute_orbit": int(header.get("absoluteOrbitNumber", 0)),
        "product_composition": str(info.get("productComposition", "")),
        "range_pixel_spacing": float(info["rangePixelSpacing"]),
        "azimuth_pixel_spacing": float(info["azimuthPixelSpacing"]),
    }
    return Sentinel1Metadata(
        polarisation=str(polarisation).upper(),
        shape=(int(info["numberOfLines"]), int(info["numberOfSamples"])),
        sigma_nought=grid(cal, "sigmaNought", files.calibration),
        noise_range=grid(nr, "noiseRangeLut", files.noise),
        noise_azimuth=_noise_azimuth_blocks(az),
        incidence=grid(geo, "incidenceAngle", files.annotation),
        latitude=grid(geo, "latitude", files.annotation),
        longitude=grid(geo, "longitude", files.annotation),
        attrs=attrs,
    )


def _gdal_s3_env(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``rasterio.Env`` keywords for GDAL's ``/vsis3/`` from fsspec/s3fs options (or the settings)."""
    from urllib.parse import urlparse

    from rasterio.session import AWSSession

    if storage_options is None:
        from workbench.config import load_settings

        storage_options = load_settings().storage_options()
    env: dict[str, Any] = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
    endpoint = storage_options.get("endpoint_url") or (storage_options.get("client_kwargs") or {}).get("endpoint_url")
    host = None
    if endpoint:
        parsed = urlparse(str(endpoint))
        host = parsed.netloc or parsed.path
        env["AWS_HTTPS"] = "NO" if parsed.scheme == "http" else "YES"
        env["AWS_VIRTUAL_HOSTING"] = "FALSE"
    if storage_options.get("anon"):
        env["AWS_NO_SIGN_REQUEST"] = "YES"
    env["session"] = AWSSession(
        aws_access_key_id=storage_options.get("key"),
        aws_secret_access_key=storage_options.get("secret"),
        region_name=(storage_options.get("client_kwargs") or {}).get("region_name"),
        endpoint_url=host,
        aws_unsigned=bool(storage_options.get("anon")),
    )
    return env


@contextlib.contextmanager
def _open_raster(url: str, storage_options: Mapping[str, Any] | None) -> Iterator[Any]:
    """Open a raster with GDAL: local path, or ``s3://`` through GDAL's own (thread-safe) /vsis3/.

    Measurement rasters are in radar geometry (no geotransform): rasterio's
    ``NotGeoreferencedWarning`` is expected and silenced.
    """
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)

    if url.startswith("s3://"):
        with rasterio.Env(**_gdal_s3_env(storage_options)):
            with rasterio.open("/vsis3/" + url[len("s3://"):]) as src:
                yield src
        return
    if storage.is_remote(url):
        fs, path = storage.filesystem(url, storage_options)
        with _OPENER_LOCK, rasterio.open(path, opener=fs) as src:
            yield src
        return
    with rasterio.open(url.removeprefix("file://")) as src:
        yield src


def raster_shape(url: str, *, storage_options: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """``(height, width)`` of a measurement raster (reads the header only)."""
    import rasterio

    try:
        with _open_raster(url, storage_options) as src:
            return src.height, src.width
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"cannot open measurement raster {url}: {exc}") from exc


def read_window(url: str, window: Window, *, storage_options: Mapping[str, Any] | None = None) -> np.ndarray:
    """Read one window of band 1 of a measurement raster as ``float32`` (nodata → NaN).

    Raises
    ------
    DataError
        When the window reaches outside the raster or the file cannot be read.
    """
    import rasterio
    from rasterio.windows import Window as RioWindow

    try:
        with _open_raster(url, storage_options) as src:
            if window.row + window.height > src.height or window.col + window.width > src.width:
                raise DataError(
                    f"window {window} reaches outside measurement raster {url} "
                    f"({src.height} lines × {src.width} pixels)"
                )
            data = src.read(1, window=RioWindow(window.col, window.row, window.width, window.height))
            nodata = src.nodata
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"cannot read measurement raster {url}: {exc}") from exc
    out = data.astype(np.float32)
    if nodata is not None:
        out[data == nodata] = np.nan
    return out

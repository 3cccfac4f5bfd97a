"""Settings of the workbench, from ``workbench.toml`` and environment variables.

Precedence, lowest first: built-in defaults, the TOML file, ``WORKBENCH_*``
environment variables, keyword overrides given to :func:`load_settings`.

The TOML file is ``$WORKBENCH_CONFIG`` when set, else ``workbench.toml`` in the
current directory when it exists. Its keys are the field names of
:class:`Settings`, at top level or under a ``[workbench]`` table.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, get_type_hints

from workbench.errors import ConfigError

__all__ = ["Settings", "load_settings", "CDSE_STAC_URL", "CDSE_ODATA_URL", "ENV_PREFIX"]

CDSE_STAC_URL = "https://stac.dataspace.copernicus.eu/v1"
CDSE_ODATA_URL = "https://catalogue.dataspace.copernicus.eu/odata/v1"
CDSE_S3_ENDPOINT = "https://eodata.dataspace.copernicus.eu"
ENV_PREFIX = "WORKBENCH_"
#: Variables with the prefix that are not settings: the config file, and the
#: pipeline runner's markers for the notebook kernel (see workbench.pipeline).
RESERVED_ENV = frozenset({"WORKBENCH_CONFIG", "WORKBENCH_RUN_DIR", "WORKBENCH_STAGE"})
CATALOG_BACKENDS = ("local", "stac", "odata")


@dataclass(frozen=True)
class Settings:
    """Every setting of the workbench.

    Attributes
    ----------
    project_dir
        Directory of the project: run records, MLflow store, local catalogue.
    storage_root
        Where data products go: a local path or ``s3://bucket/prefix``.
    s3_endpoint_url
        Endpoint of the S3-compatible store (``None``: AWS defaults).
    s3_access_key, s3_secret_key, s3_region
        Credentials and region for ``s3://`` URLs.
    dask_address
        Address of a Dask scheduler; ``None`` starts a LocalCluster.
    dask_workers
        Number of workers of the LocalCluster.
    catalog_backend
        ``local`` (the sample catalogue), ``stac`` or ``odata``.
    stac_url, odata_url
        Catalogue endpoints (CDSE defaults).
    eodata_endpoint_url
        S3 endpoint of the Copernicus data (CDSE ``eodata``).
    connect_timeout
        Seconds before a network connection attempt gives up.
    """

    project_dir: Path = field(default_factory=lambda: Path.cwd())
    storage_root: str = ""
    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    dask_address: str | None = None
    dask_workers: int = 2
    catalog_backend: str = "local"
    stac_url: str = CDSE_STAC_URL
    odata_url: str = CDSE_ODATA_URL
    eodata_endpoint_url: str = CDSE_S3_ENDPOINT
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.storage_root:
            object.__setattr__(self, "storage_root", str(Path(self.project_dir) / "workbench-data"))
        if self.catalog_backend not in CATALOG_BACKENDS:
            raise ConfigError(
                f"setting 'catalog_backend' is {self.catalog_backend!r}; expected one of {CATALOG_BACKENDS}"
            )
        if self.dask_workers < 1:
            raise ConfigError(f"setting 'dask_workers' must be >= 1, got {self.dask_workers}")
        if self.connect_timeout <= 0:
            raise ConfigError(f"setting 'connect_timeout' must be > 0, got {self.connect_timeout}")

    @property
    def local_catalog_path(self) -> Path:
        """Path of the local static STAC catalogue of the sample data."""
        return Path(self.project_dir) / "workbench-data" / "catalog" / "catalog.json"

    @property
    def runs_dir(self) -> Path:
        """Directory holding one folder per pipeline run."""
        return Path(self.project_dir) / "runs"

    def storage_options(self) -> dict[str, Any]:
        """fsspec options for ``s3://`` URLs built from these settings."""
        options: dict[str, Any] = {}
        if self.s3_endpoint_url:
            options["endpoint_url"] = self.s3_endpoint_url
        if self.s3_access_key:
            options["key"] = self.s3_access_key
        if self.s3_secret_key:
            options["secret"] = self.s3_secret_key
        options["client_kwargs"] = {"region_name": self.s3_region}
        options["config_kwargs"] = {
            "connect_timeout": self.connect_timeout,
            "read_timeout": max(self.connect_timeout, 30.0),
            "retries": {"max_attempts": 2, "mode": "standard"},
        }
        return options

    def public(self) -> dict[str, Any]:
        """The settings as plain values, secrets masked (for printing and run records)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "s3_secret_key" and value:
                value = "***"
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def _field_types() -> dict[str, Any]:
    return get_type_hints(Settings)


def _coerce(key: str, value: Any, source: str) -> Any:
    """Turn ``value`` into the type of field ``key``; raise ConfigError naming the key."""
    hint = _field_types()[key]
    optional = type(None) in getattr(hint, "__args__", ())
    base = next((a for a in getattr(hint, "__args__", (hint,)) if a is not type(None)), hint)
    if value is None or (isinstance(value, str) and value == "" and optional):
        if optional:
            return None
        raise ConfigError(f"setting {key!r} from {source} must not be empty")
    try:
        if base is Path:
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError
            return Path(value)
        if base is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"1", "true", "yes", "on"}:
                return True
            if str(value).lower() in {"0", "false", "no", "off"}:
                return False
            raise TypeError
        if base is int:
            if isinstance(value, bool) or isinstance(value, float):
                raise TypeError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if base is str:
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting {key!r} from {source} must be of type {base.__name__}, got {value!r}"
        ) from None
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if "workbench" in data:
        extra = set(data) - {"workbench"}
        if extra:
            raise ConfigError(f"config file {path}: unknown top-level key(s) {sorted(extra)}")
        data = data["workbench"]
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: [workbench] must be a table")
    return data


def load_settings(
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build :class:`Settings` from defaults, a TOML file, the environment and overrides.

    Parameters
    ----------
    config_file
        TOML file to read; default ``$WORKBENCH_CONFIG`` or ``./workbench.toml`` if present.
    environ
        Environment to read ``WORKBENCH_*`` variables from (default ``os.environ``).
    **overrides
        Field values that win over everything else.

    Returns
    -------
    Settings

    Raises
    ------
    ConfigError
        On an unknown key or a value of the wrong type; the message names the key.
    """
    env = os.environ if environ is None else environ
    names = {f.name for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}

    path: Path | None = None
    if config_file is not None:
        path = Path(config_file)
    elif env.get(f"{ENV_PREFIX}CONFIG"):
        path = Path(env[f"{ENV_PREFIX}CONFIG"])
    elif Path("workbench.toml").is_file():
        path = Path("workbench.toml")
    if path is not None:
        for key, value in _read_toml(path).items():
            if key not in names:
                raise ConfigError(f"config file {path}: unknown key {key!r}; known keys: {sorted(names)}")
            values[key] = _coerce(key, value, f"config file {path}")

    for env_key, value in env.items():
        if not env_key.startswith(ENV_PREFIX) or env_key in RESERVED_ENV:
            continue
        key = env_key[len(ENV_PREFIX):].lower()
        if key not in names:
            raise ConfigError(
                f"environment variable {env_key}: unknown setting {key!r}; known settings: {sorted(names)}"
            )
        values[key] = _coerce(key, value, f"environment variable {env_key}")

    for key, value in overrides.items():
        if key not in names:
            raise ConfigError(f"unknown setting {key!r}; known settings: {sorted(names)}")
        values[key] = _coerce(key, value, "argument")
    return Settings(**values)

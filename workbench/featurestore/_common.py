"""Shared machinery of the feature store: errors, names, JSON metadata and Delta storage options."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any, Mapping

from workbench import storage
from workbench.config import Settings, load_settings
from workbench.errors import ConfigError, FeatureStoreError, StorageError

__all__ = [
    "FeatureStoreError",
    "check_name",
    "check_version",
    "delta_storage_options",
    "read_json",
    "write_json",
    "create_json",
    "json_default",
    "project_settings",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")




def project_settings(project: Any = None) -> Settings:
    """Settings of ``project``: a project directory, :class:`Settings`, or None for the current settings."""
    if project is None:
        return load_settings()
    if isinstance(project, Settings):
        return project
    if isinstance(project, (str, os.PathLike)):
        return load_settings(project_dir=Path(project))
    raise ConfigError(f"project must be None, a project directory or Settings, got {type(project).__name__}")


def check_name(value: Any, what: str) -> str:
    """Return ``value`` when it is a valid lower-case identifier, else raise naming ``what``."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise FeatureStoreError(
            f"{what} must be a lower-case identifier (letters, digits, '_', starting with a letter, "
            f"at most 63 characters), got {value!r}"
        )
    return value


def check_version(value: Any, what: str) -> int:
    """Return ``value`` when it is an integer >= 1, else raise naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FeatureStoreError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def delta_storage_options(url: str, fsspec_options: Mapping[str, Any] | None) -> dict[str, str]:
    """Translate fsspec/s3fs options into the object-store options ``deltalake`` expects.

    deltalake (delta-rs) does not use fsspec: it takes ``AWS_*`` keys. On S3,
    deltalake 1.x commits with conditional writes (``If-None-Match``), so
    concurrent writers need neither a DynamoDB locking provider nor
    ``AWS_S3_ALLOW_UNSAFE_RENAME`` as long as the store supports conditional
    PUTs (AWS S3 since 2024, MinIO, moto).
    """
    if not storage.is_remote(url):
        return {}
    if not url.startswith("s3://"):
        raise FeatureStoreError(f"storage root {url!r}: only local paths and s3:// URLs are supported")
    opts = dict(fsspec_options or {})
    out: dict[str, str] = {}
    endpoint = opts.get("endpoint_url") or (opts.get("client_kwargs") or {}).get("endpoint_url")
    if endpoint:
        out["AWS_ENDPOINT_URL"] = str(endpoint)
        if str(endpoint).startswith("http://"):
            out["AWS_ALLOW_HTTP"] = "true"
    if opts.get("key"):
        out["AWS_ACCESS_KEY_ID"] = str(opts["key"])
    if opts.get("secret"):
        out["AWS_SECRET_ACCESS_KEY"] = str(opts["secret"])
    if opts.get("token"):
        out["AWS_SESSION_TOKEN"] = str(opts["token"])
    region = (opts.get("client_kwargs") or {}).get("region_name") or opts.get("region_name")
    out["AWS_REGION"] = str(region or "us-east-1")
    return out


def json_default(value: Any) -> Any:
    """JSON encoder fallback for numpy scalars, timestamps and paths."""
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _dumps(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True, default=json_default).encode()


def read_json(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Read a JSON metadata object."""
    return json.loads(storage.read_bytes(url, storage_options=storage_options))


def write_json(url: str, data: Mapping[str, Any], storage_options: Mapping[str, Any] | None) -> None:
    """Write a JSON metadata object atomically (replacing any old one)."""
    storage.write_bytes(url, _dumps(data), storage_options=storage_options)


def create_json(url: str, data: Mapping[str, Any], storage_options: Mapping[str, Any] | None) -> bool:
    """Create a JSON metadata object only if none exists; return whether this call created it.

    Local files use an exclusive hard link of a fully written temporary file;
    S3 uses a conditional PUT (``If-None-Match: *``). Either way, of two
    processes creating the same object exactly one wins.
    """
    payload = _dumps(data)
    if not storage.is_remote(url):
        target = Path(url.removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(payload)
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
    fs, path = storage.filesystem(url, storage_options)
    try:
        fs.pipe_file(path, payload, mode="create")
        return True
    except FileExistsError:
        return False
    except Exception as exc:  # noqa: BLE001 - botocore reports a failed precondition in several ways
        if "PreconditionFailed" in str(exc) or "412" in str(exc) or "ConditionalRequestConflict" in str(exc):
            return False
        raise StorageError(f"creating {url!r} failed: {exc}") from exc

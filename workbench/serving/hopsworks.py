"""Hopsworks-shaped serving API (the shape of the paper's listings) over the servings store and the server.

>>> from workbench.serving import hopsworks as serving
>>> serving.create_or_update("seaice", "seaice_adhoc_binary", model_version="champion", project="polar")
>>> serving.start("seaice")
>>> serving.make_inference_request("seaice", {"instances": patches.tolist()}, api_key=key)
>>> serving.get_inference_log("seaice")

``start``/``stop`` set what the servings store says the serving should do; a
running server (``workbench serve start``) follows within its poll interval
(0.5 s), loading a new model beside the old one before it swaps them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from workbench.serving.batching import BatchingOptions
from workbench.serving.errors import BadRequest, NotFound, ServingError
from workbench.serving.repository import ServingConfig, ServingStore, check_serving_name, serving_dir

__all__ = [
    "build_config",
    "create_or_update",
    "delete",
    "get",
    "get_all",
    "get_inference_log",
    "get_status",
    "make_inference_request",
    "server_info",
    "start",
    "stop",
]


def _store(project_dir: Any) -> ServingStore:
    return ServingStore(serving_dir(project_dir) / "servings.json")


def _version_ref(model_version: Any) -> tuple[int | None, str | None]:
    if model_version is None or model_version == "latest":
        return None, None
    if isinstance(model_version, bool):
        raise BadRequest(f"model_version must be a version number, an alias or 'latest', got {model_version!r}")
    if isinstance(model_version, int):
        if model_version < 1:
            raise BadRequest(f"model_version must be >= 1, got {model_version}")
        return model_version, None
    if isinstance(model_version, str):
        if model_version.isdigit():
            return int(model_version), None
        return None, model_version
    raise BadRequest(f"model_version must be a version number, an alias or 'latest', got {model_version!r}")


def build_config(
    name: str,
    model_name: Any,
    *,
    model_version: Any = None,
    project: Any,
    batching: BatchingOptions | Mapping[str, Any] | None = None,
    imports: Sequence[str] = (),
    status: str | None = None,
    description: str = "",
    existing: ServingConfig | None = None,
    registry_project: Any = None,
) -> ServingConfig:
    """A checked :class:`ServingConfig`; the model version (or alias) must be registered.

    Raises
    ------
    BadRequest
        A malformed argument.
    NotFound
        The model, version or alias is not in the registry.
    """
    from workbench import registry
    from workbench.serving.auth import _check_project

    check_serving_name(name)
    _check_project(project)
    if not isinstance(model_name, str) or not model_name:
        raise BadRequest(f"model_name must be the name of a registered model, got {model_name!r}")
    version, alias = _version_ref(model_version)
    try:
        registry.get_model(model_name, version, alias=alias, project=registry_project)
    except registry.RegistryError as exc:
        raise NotFound(str(exc)) from exc
    if batching is None:
        opts = existing.batching if existing is not None else BatchingOptions()
    elif isinstance(batching, BatchingOptions):
        opts = batching
    elif isinstance(batching, Mapping):
        opts = BatchingOptions.from_dict(batching)
    else:
        raise BadRequest(f"batching must be a mapping of options, got {type(batching).__name__}")
    if isinstance(imports, str) or not all(isinstance(m, str) and m for m in imports):
        raise BadRequest(f"imports must be a list of module names, got {imports!r}")
    if not isinstance(description, str):
        raise BadRequest(f"description must be a string, got {description!r}")
    return ServingConfig(
        name=name, project=project, model_name=model_name, model_version=version, alias=alias,
        status=status or (existing.status if existing is not None else "stopped"), batching=opts,
        imports=tuple(imports), description=description,
    )


def create_or_update(
    name: str,
    model_name: str,
    *,
    model_version: int | str | None = None,
    project: str,
    batching: BatchingOptions | Mapping[str, Any] | None = None,
    imports: Sequence[str] = (),
    description: str = "",
    status: str | None = None,
    project_dir: Any = None,
) -> ServingConfig:
    """Create a serving of ``model_name`` (a version number, an alias such as ``"champion"``, or the latest),
    or update it: a running server rolls the new version out without dropping requests.

    Parameters
    ----------
    name
        Serving name (the ``{m}`` of ``/v1/models/{m}``).
    model_name
        Registered model.
    model_version
        Version number, alias, or None/``"latest"``.
    project
        Project that owns the serving (its members' keys may call it).
    batching
        Batching options (:class:`~workbench.serving.batching.BatchingOptions` or a mapping).
    imports
        Modules to import before loading (custom Keras layers).
    description
        Free text.
    status
        ``"running"`` or ``"stopped"`` (default: unchanged; ``"stopped"`` for a new serving).
    project_dir
        Project directory (default: the current settings).
    """
    store = _store(project_dir)
    try:
        existing: ServingConfig | None = store.get(name)
    except NotFound:
        existing = None
    cfg = build_config(name, model_name, model_version=model_version, project=project, batching=batching,
                       imports=imports, description=description, status=status, existing=existing,
                       registry_project=project_dir)
    return store.put(cfg)


def get_all(*, project: str | None = None, project_dir: Any = None) -> list[ServingConfig]:
    """Every serving (of ``project`` when given)."""
    return [c for c in _store(project_dir).all().values() if project is None or c.project == project]


def get(name: str, *, project_dir: Any = None) -> ServingConfig:
    """One serving's config."""
    return _store(project_dir).get(name)


def start(name: str, *, wait: float | None = 60.0, project_dir: Any = None) -> ServingConfig:
    """Mark ``name`` running; with a server up and ``wait``, return once the server is ready."""
    cfg = _store(project_dir).set_status(name, "running")
    info = server_info(project_dir=project_dir)
    if wait and info is not None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if get_status(name, project_dir=project_dir)["state"] == "Running":
                break
            time.sleep(0.2)
        else:
            raise ServingError(503, f"serving {name!r} did not become ready within {wait:g} s")
    return cfg


def stop(name: str, *, project_dir: Any = None) -> ServingConfig:
    """Mark ``name`` stopped; a running server unloads it."""
    return _store(project_dir).set_status(name, "stopped")


def delete(name: str, *, project_dir: Any = None) -> None:
    """Remove the serving ``name``."""
    _store(project_dir).delete(name)


def server_info(*, project_dir: Any = None) -> dict[str, Any] | None:
    """``{url, pid, workers, started_at}`` of the newest live server of the project directory, or None.

    Several servers may serve one project directory (on different ports, e.g. behind a
    load balancer); each records itself in ``<project_dir>/serving/servers/<pid>.json``.
    """
    found = []
    for path in (serving_dir(project_dir) / "servers").glob("*.json"):
        try:
            info = json.loads(path.read_text())
            os.kill(int(info["pid"]), 0)
        except (OSError, json.JSONDecodeError, KeyError, ValueError, TypeError):
            continue
        found.append(info)
    return max(found, key=lambda i: i.get("started_at", "")) if found else None


def get_status(name: str, *, project_dir: Any = None) -> dict[str, Any]:
    """State of a serving: ``Running``, ``Starting``, ``Stopped`` or ``Failed``, with its model and server."""
    cfg = get(name, project_dir=project_dir)
    info = server_info(project_dir=project_dir)
    out: dict[str, Any] = {"name": name, "project": cfg.project, "model_name": cfg.model_name,
                           "model_version": cfg.model_version, "alias": cfg.alias, "revision": cfg.revision,
                           "desired": cfg.status, "server": info["url"] if info else None, "error": ""}
    if cfg.status != "running":
        out["state"] = "Stopped"
        return out
    if info is None:
        out["state"] = "Stopped"
        out["error"] = "no server runs for this project directory: start one with 'workbench serve start'"
        return out
    try:
        health = httpx.get(f"{info['url']}/v2/health/servings", timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        out.update(state="Starting", error=f"server not answering: {exc}")
        return out
    mine = (health.get("servings") or {}).get(name, {})
    out["loaded_version"] = mine.get("version")
    out["state"] = {"AVAILABLE": "Running", "FAILED": "Failed"}.get(mine.get("state"), "Starting")
    out["error"] = mine.get("error", "")
    if out["state"] == "Running" and mine.get("revision") != cfg.revision:
        out["state"] = "Updating"
    return out


def make_inference_request(
    name: str,
    data: Mapping[str, Any],
    *,
    verb: str = ":predict",
    api_key: str | None = None,
    url: str | None = None,
    project_dir: Any = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Send ``data`` (``{"instances": ...}`` or ``{"inputs": ...}``) to ``/v1/models/{name}{verb}``.

    Parameters
    ----------
    name
        Serving name.
    data
        The TF-Serving request body.
    verb
        ``":predict"`` or ``":classify"``.
    api_key
        API key (default: the environment variable ``EXTREMEEARTH_API_KEY``).
    url
        Server URL (default: the running server of the project directory).
    """
    if verb not in (":predict", ":classify", "predict", "classify"):
        raise BadRequest(f"verb must be ':predict' or ':classify', got {verb!r}")
    verb = verb if verb.startswith(":") else ":" + verb
    key = api_key or os.environ.get("EXTREMEEARTH_API_KEY")
    if not key:
        raise BadRequest("an API key is needed: pass api_key= or set EXTREMEEARTH_API_KEY")
    if url is None:
        info = server_info(project_dir=project_dir)
        if info is None:
            raise ServingError(503, "no server runs for this project directory: start one with 'workbench serve start'")
        url = info["url"]
    check_serving_name(name)
    try:
        resp = httpx.post(f"{url.rstrip('/')}/v1/models/{name}{verb}", json=dict(data),
                          headers={"Authorization": f"ApiKey {key}"}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ServingError(503, f"cannot reach the serving server at {url}: {exc}") from exc
    try:
        body = resp.json()
    except ValueError:
        body = {"error": resp.text}
    if resp.status_code >= 400:
        raise ServingError(resp.status_code, str(body.get("error", body)))
    return body


def get_inference_log(name: str | None = None, *, project_dir: Any = None, as_of: Any = None) -> Any:
    """The inference log (of serving ``name`` when given) as a DataFrame; ``as_of`` for time travel."""
    from workbench.serving.inference_log import read_inference_log

    return read_inference_log(project_dir, serving=name, as_of=as_of)

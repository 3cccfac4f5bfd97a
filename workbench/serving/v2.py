"""Open Inference Protocol (KServe v2) adapter: pydantic datamodels, tensor decoding, routes.

* ``GET /v2`` server metadata; ``GET /v2/health/live``, ``GET /v2/health/ready`` (no key);
* ``GET /v2/models/{m}[/versions/{v}]`` model metadata, ``.../ready`` model readiness;
* ``POST /v2/models/{m}[/versions/{v}]/infer`` with typed tensors
  (``name``, ``shape``, ``datatype``, ``data`` flat or nested, row-major); the request ``id``
  is echoed; FP16/FP32/FP64, INT8–INT64, UINT8–UINT64, BOOL and BYTES.
* Model repository extension (``serving:admin`` scope): ``POST /v2/repository/index``,
  ``POST /v2/repository/models/{m}/load`` / ``unload`` (start / stop the serving).

Errors are ``{"error": "..."}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from workbench import __version__
from workbench.serving.auth import api_key_from_headers
from workbench.serving.dataplane import DataPlane
from workbench.serving.errors import BadRequest
from workbench.serving.http import FastJSONRoute
from workbench.serving.model import ServedModel

__all__ = [
    "DATATYPES",
    "InferenceRequest",
    "InferenceResponse",
    "MetadataModelResponse",
    "MetadataServerResponse",
    "MetadataTensor",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "decode_tensor",
    "encode_tensor",
    "make_router",
]

#: OIP datatype -> numpy dtype.
DATATYPES: dict[str, str] = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
    "FP32": "float32", "FP64": "float64", "BYTES": "object",
}
_FROM_NUMPY = {v: k for k, v in DATATYPES.items()}


class RequestInput(BaseModel):
    """One input tensor of an inference request."""

    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(BaseModel):
    """An output the client asks for."""

    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """Body of ``POST .../infer``."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(..., min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    """One output tensor of an inference response."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferenceResponse(BaseModel):
    """Answer of ``POST .../infer``."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    """Name, datatype and shape (-1: any size) of a model input or output."""

    name: str
    datatype: str
    shape: list[int]


class MetadataModelResponse(BaseModel):
    """Answer of ``GET /v2/models/{m}``."""

    name: str
    versions: list[str] = []
    platform: str
    inputs: list[MetadataTensor] = []
    outputs: list[MetadataTensor] = []
    parameters: dict[str, Any] | None = None


class MetadataServerResponse(BaseModel):
    """Answer of ``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str


class RepositoryIndexRequest(BaseModel):
    """Body of ``POST /v2/repository/index``."""

    model_config = ConfigDict(extra="forbid")
    ready: bool | None = None


def decode_tensor(t: RequestInput) -> np.ndarray:
    """The numpy array of one request tensor; BadRequest naming the tensor when it is malformed."""
    dtype = DATATYPES.get(t.datatype)
    if dtype is None:
        raise BadRequest(f"input {t.name!r}: unknown datatype {t.datatype!r}; expected one of {sorted(DATATYPES)}")
    if any(d < 0 for d in t.shape):
        raise BadRequest(f"input {t.name!r}: shape {t.shape} has a negative dimension")
    size = int(np.prod(t.shape)) if t.shape else 1
    if dtype == "object":
        flat: list[Any] = []

        def walk(v: Any) -> None:
            if isinstance(v, list):
                for x in v:
                    walk(x)
            elif isinstance(v, str):
                flat.append(v.encode())
            else:
                raise BadRequest(f"input {t.name!r}: BYTES data must be strings, got {type(v).__name__}")

        walk(t.data)
        if len(flat) != size:
            raise BadRequest(f"input {t.name!r}: shape {t.shape} needs {size} values, data holds {len(flat)}")
        return np.array(flat, dtype=object).reshape(t.shape)
    try:
        arr = np.asarray(t.data)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"input {t.name!r}: data is not a rectangular array: {exc}") from exc
    if arr.dtype == object or (arr.size and arr.dtype.kind not in "biuf"):
        raise BadRequest(f"input {t.name!r}: data must be numbers (or booleans) for datatype {t.datatype}")
    if arr.size != size:
        raise BadRequest(f"input {t.name!r}: shape {t.shape} needs {size} values, data holds {arr.size}")
    want = np.dtype(dtype)
    if arr.size and want.kind == "b" and arr.dtype.kind != "b":
        raise BadRequest(f"input {t.name!r}: datatype BOOL needs true/false values")
    if arr.size and want.kind in "iu" and arr.dtype.kind == "f":
        raise BadRequest(f"input {t.name!r}: datatype {t.datatype} needs integers, data holds decimals")
    if arr.size and want.kind in "iu":
        info = np.iinfo(want)
        if arr.min() < info.min or arr.max() > info.max:
            raise BadRequest(f"input {t.name!r}: values outside the range of {t.datatype}")
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(want).reshape(t.shape)


def encode_tensor(name: str, a: np.ndarray) -> ResponseOutput:
    """One response tensor (flat row-major data)."""
    dt = _FROM_NUMPY.get(str(a.dtype), "BYTES" if a.dtype.kind in "OSU" else "FP32")
    if dt == "BYTES":
        data: list[Any] = [x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in a.reshape(-1)]
    else:
        data = a.reshape(-1).tolist()
    return ResponseOutput(name=name, shape=list(a.shape), datatype=dt, data=data)


def _meta_tensor(s: Any) -> MetadataTensor:
    return MetadataTensor(name=s.name, datatype=_FROM_NUMPY.get(s.dtype, "BYTES"),
                          shape=[-1 if d is None else d for d in s.shape])


def make_router(plane: DataPlane) -> APIRouter:
    """The v2 routes over ``plane``."""
    router = APIRouter(route_class=FastJSONRoute, tags=["Open Inference Protocol v2"])
    errors: dict[int | str, dict[str, Any]] = {c: {"model": ErrorBody} for c in (400, 401, 403, 404, 413, 500, 503)}

    def pin(version: str | None) -> int | None:
        if version is None:
            return None
        if not version.isdigit() or int(version) < 1:
            raise BadRequest(f"version must be a positive integer, got {version!r}")
        return int(version)

    @router.get("/v2", response_model=MetadataServerResponse)
    async def server_metadata() -> MetadataServerResponse:
        return MetadataServerResponse(name="extremeearth-workbench", version=__version__,
                                      extensions=["model_repository"])

    @router.get("/v2/health/live", responses={200: {"content": {"application/json": {}}}})
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/v2/health/ready", responses={503: {"model": ErrorBody}})
    async def ready() -> Any:
        if plane.repository.ready:
            return {"ready": True}
        waiting = sorted(n for n, c in plane.repository.configs.items()
                         if c.status == "running" and n not in plane.repository.live)
        return JSONResponse({"ready": False, "error": f"servings not loaded yet: {waiting}"}, status_code=503)

    @router.get("/v2/health/servings")
    async def servings() -> dict[str, Any]:
        repo = plane.repository
        out = {}
        for n, c in repo.configs.items():
            live_s = repo.live.get(n)
            state = ("AVAILABLE" if live_s else "END" if c.status != "running" else
                     "FAILED" if n in repo.failures else "LOADING")
            out[n] = {"state": state, "version": live_s.model.version if live_s else None,
                      "revision": live_s.config.revision if live_s else None, "error": repo.failures.get(n, ""),
                      "calls": live_s.batcher.calls if live_s else 0, "rows": live_s.batcher.rows if live_s else 0}
        return {"servings": out}

    async def model_metadata(request: Request, name: str, version: str | None = None) -> MetadataModelResponse:
        model: ServedModel = plane.model(request.headers, name, version=pin(version))
        return MetadataModelResponse(
            name=name, versions=[str(model.version)], platform="tensorflow_keras",
            inputs=[_meta_tensor(s) for s in model.inputs], outputs=[_meta_tensor(s) for s in model.outputs],
            parameters={"model_name": model.model_name, "class_names": list(model.class_names)},
        )

    async def model_ready(request: Request, name: str, version: str | None = None) -> Any:
        plane.principal(request.headers, name)
        live_s = plane.repository.live.get(name)
        ok = live_s is not None and (version is None or str(live_s.model.version) == version)
        if ok:
            return {"name": name, "ready": True}
        return JSONResponse({"name": name, "ready": False, "error": f"serving {name!r} is not ready"
                             + (f" with version {version}" if version else "")}, status_code=503)

    async def infer(request: Request, body: InferenceRequest, name: str,
                    version: str | None = None) -> InferenceResponse:
        def decode(model: ServedModel) -> dict[str, np.ndarray]:
            names = [s.name for s in model.inputs]
            tensors = {}
            for t in body.inputs:
                if t.name in tensors:
                    raise BadRequest(f"input {t.name!r} is given twice")
                tensors[t.name] = decode_tensor(t)
            if len(names) == 1 and len(tensors) == 1:
                return {names[0]: next(iter(tensors.values()))}
            return tensors

        client_id = body.id if body.id is not None else request.headers.get("x-request-id", "")
        res = await plane.infer(request.headers, name, decode, version=pin(version), protocol="v2",
                                endpoint="infer", client_id=str(client_id)[:128])
        outs = res.outputs
        if body.outputs:
            wanted = [o.name for o in body.outputs]
            unknown = [w for w in wanted if w not in outs]
            if unknown:
                raise BadRequest(f"unknown output(s) {unknown}; the model gives {sorted(outs)}")
            outs = {w: outs[w] for w in wanted}
        return InferenceResponse(model_name=name, model_version=str(res.model.version), id=body.id,
                                 outputs=[encode_tensor(k, v) for k, v in outs.items()])

    for suffix in ("", "/versions/{version}"):
        base = "/v2/models/{name}" + suffix
        router.add_api_route(base, model_metadata, methods=["GET"], response_model=MetadataModelResponse,
                             responses=errors, summary="model metadata")
        router.add_api_route(base + "/ready", model_ready, methods=["GET"], responses=errors, summary="model ready")
        router.add_api_route(base + "/infer", infer, methods=["POST"], response_model=InferenceResponse,
                             responses=errors, summary="inference")

    @router.post("/v2/repository/index", responses=errors)
    async def repository_index(request: Request, body: RepositoryIndexRequest | None = None) -> list[dict[str, Any]]:
        principal = plane.auth.authenticate(api_key_from_headers(request.headers), scope="serving:admin")
        repo = plane.repository
        rows = []
        for n, c in sorted(repo.configs.items()):
            if c.project != principal.project:
                continue
            is_ready = n in repo.live
            if body is not None and body.ready is not None and body.ready != is_ready:
                continue
            rows.append({"name": n, "version": str(repo.live[n].model.version) if is_ready else "",
                         "state": "READY" if is_ready else ("UNAVAILABLE" if c.status == "running" else "UNLOADED"),
                         "reason": repo.failures.get(n, "")})
        return rows

    @router.post("/v2/repository/models/{name}/load", responses=errors)
    async def load(request: Request, name: str) -> dict[str, Any]:
        cfg = await plane.set_status(request.headers, name, "running")
        return {"name": cfg.name, "status": cfg.status}

    @router.post("/v2/repository/models/{name}/unload", responses=errors)
    async def unload(request: Request, name: str) -> dict[str, Any]:
        cfg = await plane.set_status(request.headers, name, "stopped")
        return {"name": cfg.name, "status": cfg.status}

    return router

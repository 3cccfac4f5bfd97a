"""The FastAPI application of the serving server: both protocols over one data plane.

:func:`create_app` wires the model repository (servings of the project directory),
the auth store, the inference log and the two protocol routers, and adds:

* a request-body limit (:class:`~workbench.serving.http.BodyLimitMiddleware`,
  ``max_body_bytes``, default 16 MiB) checked from ``Content-Length`` and while the
  body streams in, before any JSON parsing → 413;
* error answers ``{"error": "..."}`` for every failure: malformed JSON or a body of
  the wrong form → 400, missing/unknown/revoked key → 401, another project's key or
  a missing scope → 403, unknown serving/version/label → 404, too large → 413, a
  model that raises → 500 (the server keeps serving), overloaded/stopped/timed out → 503;
* admin routes (``serving:admin`` scope): ``GET /admin/servings``,
  ``PUT /admin/servings/{name}`` (create or update: a rollout), start/stop.

:func:`app_from_env` builds the app from the JSON options in the environment
variable :data:`OPTIONS_ENV`; ``uvicorn --factory`` uses it in every worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from workbench.serving import v1, v2
from workbench.serving.auth import AuthStore, api_key_from_headers, default_auth_url
from workbench.serving.dataplane import DataPlane
from workbench.serving.errors import ServingError
from workbench.serving.http import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware, JSONBodyMiddleware
from workbench.serving.inference_log import FLUSH_INTERVAL, InferenceLogger
from workbench.serving.repository import ModelRepository, ServingStore, serving_dir

__all__ = ["OPTIONS_ENV", "ServerOptions", "app_from_env", "create_app"]

log = logging.getLogger(__name__)
#: Environment variable holding the JSON :class:`ServerOptions` of :func:`app_from_env`.
OPTIONS_ENV = "EXTREMEEARTH_SERVING_OPTIONS"


@dataclass(frozen=True)
class ServerOptions:
    """Options of a serving server.

    Attributes
    ----------
    project_dir
        Project directory (None: the current settings).
    auth_url
        Auth database URL or path (None: ``<project_dir>/serving/auth.db``).
    max_body_bytes
        Largest request body.
    request_timeout
        Seconds a prediction may queue and run.
    flush_interval
        Seconds between inference-log writes.
    poll_interval
        Seconds between checks of the servings file.
    max_rows
        Most rows in one request.
    only
        Serve only these servings (None: all of the project directory).
    inference_log
        Write the inference log.
    """

    project_dir: str | None = None
    auth_url: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_timeout: float = 30.0
    flush_interval: float = FLUSH_INTERVAL
    poll_interval: float = 0.5
    max_rows: int = 4096
    only: tuple[str, ...] | None = None
    inference_log: bool = True

    def to_json(self) -> str:
        """The options as JSON (for :data:`OPTIONS_ENV`)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerOptions:
        """Options from :meth:`to_json`'s output."""
        d = json.loads(text)
        if d.get("only") is not None:
            d["only"] = tuple(d["only"])
        return cls(**d)


class ServingUpdate(BaseModel):
    """Body of ``PUT /admin/servings/{name}``."""

    model_config = ConfigDict(extra="forbid")
    project: str
    model_name: str
    model_version: int | str | None = Field(None, description="version number, alias or 'latest'")
    batching: dict[str, Any] | None = None
    imports: list[str] | None = None
    status: str | None = Field(None, description="'running' or 'stopped' (default: unchanged)")
    description: str = ""


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        if err.get("type") == "json_invalid":
            parts.append(f"malformed JSON: {err.get('ctx', {}).get('error', err.get('msg'))}")
        else:
            parts.append(f"{loc}: {err.get('msg')}")
    return "invalid request: " + "; ".join(parts)


def create_app(options: ServerOptions | None = None, *, auth: AuthStore | None = None) -> FastAPI:
    """The serving server's ASGI application.

    Parameters
    ----------
    options
        Server options (default :class:`ServerOptions`).
    auth
        The auth store (default: from ``options.auth_url``).
    """
    opts = options or ServerOptions()
    project = opts.project_dir
    store = ServingStore(serving_dir(project) / "servings.json")
    repository = ModelRepository(store, project=project, only=opts.only)
    if auth is not None:
        auth_store = auth
    else:
        auth_store = AuthStore(opts.auth_url) if opts.auth_url else AuthStore(default_auth_url(project))
    logger = InferenceLogger(project, flush_interval=opts.flush_interval) if opts.inference_log else None
    plane = DataPlane(repository, auth_store, logger, request_timeout=opts.request_timeout, max_rows=opts.max_rows)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if logger is not None:
            logger.start()
        await repository.reconcile()
        watcher = asyncio.get_running_loop().create_task(repository.watch(opts.poll_interval))
        log.info("serving %d serving(s) from %s", len(repository.live), store.path)
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await repository.close()
            if logger is not None:
                await asyncio.to_thread(logger.close)
                log.info("inference log: %d rows written in %d commits", logger.written, logger.commits)

    app = FastAPI(
        title="ExtremeEarth Workbench model serving",
        version="1",
        description="TF-Serving REST (v1) and Open Inference Protocol (v2) over the model registry. "
                    "Send 'Authorization: ApiKey <key>'.",
        lifespan=lifespan,
    )
    app.state.plane = plane
    app.state.options = opts

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        if exc.status == 401:
            headers = {"WWW-Authenticate": "ApiKey"}
        return _error(exc.status, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint {request.method} {request.url.path}"
        if exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    app.include_router(v1.make_router(plane))
    app.include_router(v2.make_router(plane))

    errors: dict[int | str, dict[str, Any]] = {c: {"model": v2.ErrorBody} for c in (400, 401, 403, 404, 413)}

    @app.get("/admin/servings", tags=["admin"], responses=errors)
    async def list_servings(request: Request) -> dict[str, Any]:
        principal = auth_store.authenticate(api_key_from_headers(request.headers), scope="serving:admin")
        return {"servings": [c.to_dict() for c in store.all().values() if c.project == principal.project]}

    @app.put("/admin/servings/{name}", tags=["admin"], responses=errors)
    async def put_serving(request: Request, name: str, body: ServingUpdate) -> dict[str, Any]:
        cfg = await plane.create_or_update(request.headers, name, body.model_dump(exclude_unset=True))
        return cfg.to_dict()

    @app.post("/admin/servings/{name}/start", tags=["admin"], responses=errors)
    async def start_serving(request: Request, name: str) -> dict[str, Any]:
        return (await plane.set_status(request.headers, name, "running")).to_dict()

    @app.post("/admin/servings/{name}/stop", tags=["admin"], responses=errors)
    async def stop_serving(request: Request, name: str) -> dict[str, Any]:
        return (await plane.set_status(request.headers, name, "stopped")).to_dict()

    app.add_middleware(JSONBodyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=opts.max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """The app with the options of :data:`OPTIONS_ENV` (for ``uvicorn --factory`` workers)."""
    text = os.environ.get(OPTIONS_ENV)
    return create_app(ServerOptions.from_json(text) if text else ServerOptions())

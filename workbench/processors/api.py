"""OGC API – Processes – Part 1 (core, JSON, OpenAPI 3.0, job list, dismiss) over the processors.

A thin adapter over :class:`~workbench.processors.jobs.JobManager` and the processor
descriptions; it knows HTTP, nothing of the processing:

==========================================  =========================================================
``GET /``                                   landing page (links to the API, conformance, processes, jobs)
``GET /conformance``                        conformance classes
``GET /api``                                the OpenAPI 3.0 document of this server
``GET /processes``                          process summaries
``GET /processes/{processId}``              process description (inputs/outputs as JSON Schema)
``POST /processes/{processId}/execution``   execute: synchronous (200 + results) by default;
                                            ``Prefer: respond-async`` → 201 + ``Location`` of the job
``GET /jobs``                               job list (``processID``, ``status``, ``limit`` filters)
``GET /jobs/{jobId}``                       status info (status, progress 0–100, times, links)
``GET /jobs/{jobId}/results``               results of a successful job
``DELETE /jobs/{jobId}``                    dismiss: cancel a running job or remove a finished one
==========================================  =========================================================

Errors are OGC exception documents (``application/problem+json``: ``type``, ``title``,
``status``, ``detail``; plus ``input`` naming a bad input). Execution and dismissal need an
API key of the serving layer's auth store with scope ``processes:execute``
(``Authorization: ApiKey <key>``). Request bodies over ``max_body_bytes`` are refused with
413 before they are read (:class:`workbench.serving.http.BodyLimitMiddleware`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from workbench.processors.base import (
    InputError,
    Processor,
    UnknownProcessorError,
    get_processor,
    list_processors,
)
from workbench.processors.jobs import Job, JobManager, JobNotFound, QueueFull

__all__ = ["CONFORMANCE", "create_app", "exception_body", "openapi_document"]

log = logging.getLogger(__name__)

_OGC = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf"
CONFORMANCE: tuple[str, ...] = (
    f"{_OGC}/core",
    f"{_OGC}/ogc-process-description",
    f"{_OGC}/json",
    f"{_OGC}/oas30",
    f"{_OGC}/job-list",
    f"{_OGC}/dismiss",
)
_EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0"
_REL = "http://www.opengis.net/def/rel/ogc/1.0"
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           406: "Not Acceptable", 413: "Payload Too Large", 415: "Unsupported Media Type", 500: "Internal Server Error",
           503: "Service Unavailable"}
_STATUS_TO_OGC = {"accepted": "accepted", "running": "running", "successful": "successful", "failed": "failed",
                  "dismissed": "dismissed"}
JSON = "application/json"
PROBLEM = "application/problem+json"
OPENAPI_TYPE = "application/vnd.oai.openapi+json;version=3.0"


def exception_body(status: int, detail: str, *, kind: str | None = None, **extra: Any) -> dict[str, Any]:
    """An OGC API exception document."""
    return {"type": kind or "about:blank", "title": _TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}


def _link(href: str, rel: str, *, title: str = "", type_: str = JSON) -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def _summary(proc: Processor, base: str) -> dict[str, Any]:
    return {
        "id": proc.id, "title": proc.title, "description": proc.description, "version": proc.version,
        "keywords": list(proc.keywords), "jobControlOptions": ["sync-execute", "async-execute", "dismiss"],
        "outputTransmission": ["value"],
        "links": [_link(f"{base}/processes/{proc.id}", "self", title="process description"),
                  _link(f"{base}/processes/{proc.id}/execution", f"{_REL}/execute", title="execute")],
    }


def _description(proc: Processor, base: str) -> dict[str, Any]:
    inputs = {}
    for name, schema in proc.inputs_schema.items():
        schema = dict(schema)
        title = schema.pop("title", name)
        description = schema.pop("description", "")
        inputs[name] = {"title": title, "description": description, "schema": schema,
                        "minOccurs": 1 if name in proc.required_inputs else 0, "maxOccurs": 1}
    outputs = {name: {"title": o.get("title", name), "description": o.get("description", ""), "schema": o["schema"]}
               for name, o in proc.outputs_schema.items()}
    return {**_summary(proc, base), "inputs": inputs, "outputs": outputs}


def _status_info(job: Job, base: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "jobID": job.id, "processID": job.processor, "type": "process", "status": _STATUS_TO_OGC[job.status],
        "message": job.message, "created": job.created, "updated": job.updated, "progress": job.progress,
        "links": [_link(f"{base}/jobs/{job.id}", "self", title="status")],
    }
    if job.started:
        info["started"] = job.started
    if job.finished:
        info["finished"] = job.finished
    if job.status == "successful":
        info["links"].append(_link(f"{base}/jobs/{job.id}/results", f"{_REL}/results", title="results"))
    if job.error:
        info["exception"] = job.error
    return info


def _results(job: Job) -> dict[str, Any]:
    return {"product": job.product}


def openapi_document(processors: list[Processor] | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the server (pure: built from the processor descriptions)."""
    procs = processors if processors is not None else list_processors()
    link = {"type": "object", "required": ["href"], "properties": {
        "href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"}, "title": {"type": "string"}}}
    links = {"type": "array", "items": {"$ref": "#/components/schemas/link"}}
    exc = {"type": "object", "required": ["type", "status"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "input": {"type": "string"}}}
    status_info = {"type": "object", "required": ["jobID", "status", "type"], "properties": {
        "jobID": {"type": "string"}, "processID": {"type": "string"}, "type": {"type": "string", "enum": ["process"]},
        "status": {"type": "string", "enum": list(_STATUS_TO_OGC.values())}, "message": {"type": "string"},
        "created": {"type": "string"}, "started": {"type": "string"}, "finished": {"type": "string"},
        "updated": {"type": "string"}, "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "exception": {"type": "object"}, "links": links}}
    summary = {"type": "object", "required": ["id", "version"], "properties": {
        "id": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
        "version": {"type": "string"}, "keywords": {"type": "array", "items": {"type": "string"}},
        "jobControlOptions": {"type": "array", "items": {"type": "string"}},
        "outputTransmission": {"type": "array", "items": {"type": "string"}}, "links": links}}
    inputs_schemas = [p.json_schema() for p in procs]
    execute = {"type": "object", "required": ["inputs"], "additionalProperties": False, "properties": {
        "inputs": {"anyOf": inputs_schemas} if inputs_schemas else {"type": "object"},
        "outputs": {"type": "object"},
        "response": {"type": "string", "enum": ["document", "raw"]},
        "subscriber": {"type": "object"}}}

    def resp(description: str, schema: str, media: str = JSON) -> dict[str, Any]:
        return {"description": description, "content": {media: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}

    def err(description: str) -> dict[str, Any]:
        return resp(description, "exception", PROBLEM)

    job_id = {"name": "jobId", "in": "path", "required": True, "schema": {"type": "string"}}
    proc_id = {"name": "processId", "in": "path", "required": True, "schema": {"type": "string"}}
    fmt = {"name": "f", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json"]}}
    secured = [{"ApiKey": []}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "ExtremeEarth Workbench – OGC API – Processes", "version": "1.0.0",
                 "description": "The workbench's processors (sea-ice chart, crop-type map) as OGC API – Processes "
                                "Part 1: Core, with job list and dismiss."},
        "paths": {
            "/": {"get": {"operationId": "getLandingPage", "summary": "landing page", "parameters": [fmt],
                          "responses": {"200": resp("links to the API", "landingPage"), "400": err("bad query")}}},
            "/conformance": {"get": {"operationId": "getConformance", "summary": "conformance classes",
                                     "parameters": [fmt],
                                     "responses": {"200": resp("conformance classes", "confClasses"),
                                                   "400": err("bad query")}}},
            "/api": {"get": {"operationId": "getAPI", "summary": "this OpenAPI document",
                             "responses": {"200": {"description": "OpenAPI 3.0",
                                                   "content": {OPENAPI_TYPE: {"schema": {"type": "object"}}}}}}},
            "/processes": {"get": {"operationId": "getProcesses", "summary": "process list", "parameters": [fmt],
                                   "responses": {"200": resp("processes", "processList"), "400": err("bad query")}}},
            "/processes/{processId}": {"get": {
                "operationId": "getProcessDescription", "summary": "process description", "parameters": [proc_id, fmt],
                "responses": {"200": resp("process description", "process"), "400": err("bad query"),
                              "404": err("no such process")}}},
            "/processes/{processId}/execution": {"post": {
                "operationId": "execute", "summary": "execute a process", "security": secured,
                "parameters": [proc_id, {"name": "Prefer", "in": "header", "required": False,
                                         "schema": {"type": "string"},
                                         "description": "respond-async for an asynchronous execution"}],
                "requestBody": {"required": True, "content": {JSON: {"schema": {"$ref": "#/components/schemas/execute"}}}},
                "responses": {"200": resp("results (synchronous execution)", "results"),
                              "201": resp("job created (asynchronous execution)", "statusInfo"),
                              "400": err("malformed request or bad input (the exception names it)"),
                              "401": err("missing or unknown API key"), "403": err("the key lacks processes:execute"),
                              "404": err("no such process"),
                              "413": resp("request body too large", "exception", JSON),
                              "415": err("body is not JSON"), "500": err("the process failed"),
                              "503": err("too many jobs waiting")}}},
            "/jobs": {"get": {
                "operationId": "getJobs", "summary": "job list",
                "parameters": [fmt,
                               {"name": "processID", "in": "query", "required": False, "schema": {"type": "string"}},
                               {"name": "status", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": list(_STATUS_TO_OGC.values())}},
                               {"name": "limit", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                "responses": {"200": resp("jobs", "jobList"), "400": err("bad query")}}},
            "/jobs/{jobId}": {
                "get": {"operationId": "getStatus", "summary": "job status", "parameters": [job_id, fmt],
                        "responses": {"200": resp("status info", "statusInfo"), "400": err("bad query"),
                                      "404": err("no such job")}},
                "delete": {"operationId": "dismiss", "summary": "cancel a job or remove a finished one",
                           "security": secured, "parameters": [job_id],
                           "responses": {"200": resp("status info (dismissed)", "statusInfo"),
                                         "401": err("missing or unknown API key"), "403": err("forbidden"),
                                         "404": err("no such job")}}},
            "/jobs/{jobId}/results": {"get": {
                "operationId": "getResult", "summary": "results of a job", "parameters": [job_id, fmt],
                "responses": {"200": resp("results", "results"), "400": err("bad query"),
                              "404": err("no such job, or results not ready / not available")}}},
        },
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "Authorization",
                                           "description": "'ApiKey <key>' with scope processes:execute"}},
            "schemas": {
                "link": link, "exception": exc, "statusInfo": status_info, "processSummary": summary,
                "landingPage": {"type": "object", "required": ["links"], "properties": {
                    "title": {"type": "string"}, "description": {"type": "string"}, "links": links}},
                "confClasses": {"type": "object", "required": ["conformsTo"], "properties": {
                    "conformsTo": {"type": "array", "items": {"type": "string"}}}},
                "processList": {"type": "object", "required": ["processes", "links"], "properties": {
                    "processes": {"type": "array", "items": {"$ref": "#/components/schemas/processSummary"}},
                    "links": links}},
                "process": {"allOf": [{"$ref": "#/components/schemas/processSummary"}, {"type": "object", "properties": {
                    "inputs": {"type": "object"}, "outputs": {"type": "object"}}}]},
                "jobList": {"type": "object", "required": ["jobs", "links"], "properties": {
                    "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/statusInfo"}}, "links": links}},
                "results": {"type": "object", "additionalProperties": True},
                "execute": execute,
            },
        },
    }


def create_app(
    manager: JobManager | None = None,
    *,
    auth: Any = None,
    max_body_bytes: int = 1 << 20,
    sync_timeout: float = 600.0,
) -> Any:
    """The ASGI application (FastAPI) of the OGC API – Processes server.

    Parameters
    ----------
    manager
        Job manager (default: a :class:`JobManager` on the project's ``processes/jobs.db``).
    auth
        :class:`workbench.serving.auth.AuthStore` checking keys (default: the project's).
    max_body_bytes
        Largest request body accepted (413 beyond, before reading).
    sync_timeout
        Seconds a synchronous execution waits; after that the answer is 201 with the job's
        ``Location`` (the job goes on).
    """
    from workbench.serving.auth import AuthStore, api_key_from_headers
    from workbench.serving.errors import ServingError
    from workbench.serving.http import BodyLimitMiddleware

    app = FastAPI(title="ExtremeEarth Workbench – OGC API – Processes", docs_url=None, redoc_url=None,
                  openapi_url=None)
    state: dict[str, Any] = {"manager": manager, "auth": auth}
    document = openapi_document()

    def jobs() -> JobManager:
        if state["manager"] is None:
            state["manager"] = JobManager()
        return state["manager"]

    def problem(status: int, detail: str, *, kind: str | None = None, headers: Mapping[str, str] | None = None,
                **extra: Any) -> JSONResponse:
        return JSONResponse(exception_body(status, detail, kind=kind, **extra), status_code=status,
                            media_type=PROBLEM, headers=dict(headers or {}))

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def check_format(request: Request) -> JSONResponse | None:
        f = request.query_params.get("f")
        if f is not None and f != "json":
            return problem(400, f"query parameter 'f': only 'json' is served, got {f!r}",
                           kind=f"{_EXC}/invalid-parameter-value", input="f")
        return None

    def authenticate(request: Request) -> Any:
        store = state["auth"]
        if store is None:
            store = state["auth"] = AuthStore()
        return store.authenticate(api_key_from_headers(request.headers), scope="processes:execute")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(400, f"malformed request: {exc.errors()}")

    @app.get("/")
    async def landing(request: Request) -> Any:
        bad = check_format(request)
        if bad:
            return bad
        b = base(request)
        return JSONResponse({
            "title": "ExtremeEarth Workbench processors",
            "description": "Sea-ice charts and crop-type maps on a region and time range, as OGC API – Processes.",
            "links": [_link(f"{b}/", "self", title="this document"),
                      _link(f"{b}/api", "service-desc", title="OpenAPI 3.0 document", type_=OPENAPI_TYPE),
                      _link(f"{b}/conformance", "http://www.opengis.net/def/rel/ogc/1.0/conformance",
                            title="conformance classes"),
                      _link(f"{b}/processes", f"{_REL}/processes", title="processes"),
                      _link(f"{b}/jobs", f"{_REL}/job-list", title="jobs")],
        })

    @app.get("/conformance")
    async def conformance(request: Request) -> Any:
        return check_format(request) or JSONResponse({"conformsTo": list(CONFORMANCE)})

    @app.get("/api")
    async def api_document() -> Any:
        return JSONResponse(document, media_type=OPENAPI_TYPE)

    @app.get("/processes")
    async def processes(request: Request) -> Any:
        bad = check_format(request)
        if bad:
            return bad
        b = base(request)
        return JSONResponse({"processes": [_summary(p, b) for p in list_processors()],
                             "links": [_link(f"{b}/processes", "self")]})

    def find(process_id: str) -> Processor | JSONResponse:
        try:
            return get_processor(process_id)
        except UnknownProcessorError as exc:
            return problem(404, exc.reason, kind=f"{_EXC}/no-such-process")

    @app.get("/processes/{process_id}")
    async def process(process_id: str, request: Request) -> Any:
        bad = check_format(request)
        if bad:
            return bad
        proc = find(process_id)
        if isinstance(proc, JSONResponse):
            return proc
        return JSONResponse(_description(proc, base(request)))

    @app.post("/processes/{process_id}/execution")
    async def execute(process_id: str, request: Request) -> Any:
        try:
            principal = await run_in_threadpool(authenticate, request)
        except ServingError as exc:
            status = exc.status if exc.status in (400, 401, 403) else 401
            headers = {"WWW-Authenticate": 'ApiKey realm="workbench"'} if status == 401 else None
            return problem(status, exc.message if hasattr(exc, "message") else str(exc), headers=headers)
        proc = find(process_id)
        if isinstance(proc, JSONResponse):
            return proc
        ctype = request.headers.get("content-type", "")
        if ctype and "json" not in ctype.split(";")[0].lower():
            return problem(415, f"the execute request must be JSON (application/json), got {ctype!r}")
        raw = await request.body()
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return problem(400, f"the body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return problem(400, "the body must be a JSON object {\"inputs\": {...}}", input="inputs")
        unknown = sorted(set(body) - {"inputs", "outputs", "response", "subscriber"})
        if unknown:
            return problem(400, f"unknown member(s) {unknown} of the execute request "
                                "(expected inputs, outputs, response, subscriber)", input=unknown[0])
        if "inputs" not in body:
            return problem(400, "the execute request has no 'inputs'", input="inputs")
        for member, kind in (("outputs", dict), ("subscriber", dict)):
            if member in body and not isinstance(body[member], kind):
                return problem(400, f"'{member}' must be an object", input=member)
        if body.get("response", "document") not in ("document", "raw"):
            return problem(400, f"'response' must be 'document' or 'raw', got {body.get('response')!r}",
                           input="response")
        manager = jobs()
        try:
            job_id = await run_in_threadpool(manager.submit, proc.id, body["inputs"], user=principal.user)
        except InputError as exc:
            return problem(400, str(exc), kind=f"{_EXC}/invalid-parameter-value", input=exc.input)
        except QueueFull as exc:
            return problem(503, str(exc), headers={"Retry-After": "30"})
        b = base(request)
        location = f"{b}/jobs/{job_id}"
        prefer = request.headers.get("prefer", "").lower()
        if "respond-async" in prefer:
            job = await run_in_threadpool(manager.get, job_id)
            return JSONResponse(_status_info(job, b), status_code=201,
                                headers={"Location": location, "Preference-Applied": "respond-async"})
        job = await run_in_threadpool(manager.wait, job_id, sync_timeout)
        if not job.done:
            return JSONResponse(_status_info(job, b), status_code=201, headers={"Location": location})
        link = {"Link": f'<{location}>; rel="monitor"'}
        if job.status == "successful":
            return JSONResponse(_results(job), headers=link)
        error = job.error or {}
        if error.get("type") == "InputError":
            return problem(400, error.get("detail", job.message), kind=f"{_EXC}/invalid-parameter-value",
                           input=error.get("input", ""), headers=link)
        return problem(500, f"the process failed: {error.get('detail', job.message)}", headers=link)

    @app.get("/jobs")
    async def job_list(request: Request) -> Any:
        bad = check_format(request)
        if bad:
            return bad
        q = request.query_params
        status = q.get("status")
        if status is not None and status not in _STATUS_TO_OGC:
            return problem(400, f"query parameter 'status': expected one of {list(_STATUS_TO_OGC)}, got {status!r}",
                           input="status")
        limit_text = q.get("limit")
        limit = None
        if limit_text is not None:
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
                return problem(400, f"query parameter 'limit': expected an integer 1..1000, got {limit_text!r}",
                               input="limit")
            limit = int(limit_text)
        found = await run_in_threadpool(jobs().list, processor=q.get("processID"), status=status, limit=limit)
        b = base(request)
        return JSONResponse({"jobs": [_status_info(j, b) for j in found], "links": [_link(f"{b}/jobs", "self")]})

    def no_job(job_id: str) -> JSONResponse:
        return problem(404, f"no job {job_id!r}", kind=f"{_EXC}/no-such-job")

    async def find_job(job_id: str, request: Request) -> tuple[Any, JSONResponse | None]:
        """The job, or the error answer (unsupported format, no such job) in its place."""
        bad = check_format(request)
        if bad:
            return None, bad
        try:
            return await run_in_threadpool(jobs().get, job_id), None
        except JobNotFound:
            return None, no_job(job_id)

    @app.get("/jobs/{job_id}")
    async def job_status(job_id: str, request: Request) -> Any:
        job, answer = await find_job(job_id, request)
        if answer is not None:
            return answer
        return JSONResponse(_status_info(job, base(request)))

    @app.get("/jobs/{job_id}/results")
    async def job_results(job_id: str, request: Request) -> Any:
        job, answer = await find_job(job_id, request)
        if answer is not None:
            return answer
        if job.status == "successful":
            return JSONResponse(_results(job))
        if job.status in ("accepted", "running"):
            return problem(404, f"job {job_id!r} is {job.status} ({job.progress} %): results are not ready",
                           kind=f"{_EXC}/result-not-ready")
        if job.status == "dismissed":
            return problem(404, f"job {job_id!r} was dismissed: its results are no longer served",
                           kind=f"{_EXC}/no-such-job")
        detail = (job.error or {}).get("detail", job.message)
        return problem(404, f"job {job_id!r} failed: {detail}", kind=f"{_EXC}/result-not-ready")

    @app.delete("/jobs/{job_id}")
    async def dismiss(job_id: str, request: Request) -> Any:
        try:
            await run_in_threadpool(authenticate, request)
        except ServingError as exc:
            status = exc.status if exc.status in (400, 401, 403) else 401
            return problem(status, getattr(exc, "message", str(exc)))
        try:
            job = await run_in_threadpool(jobs().dismiss, job_id)
        except JobNotFound:
            return no_job(job_id)
        return JSONResponse(_status_info(job, base(request)))

    @app.on_event("shutdown")
    async def _close() -> None:
        if state["manager"] is not None:
            state["manager"].close()

    def problem_bytes(message: str) -> bytes:
        return json.dumps(exception_body(413, message)).encode()

    return BodyLimitMiddleware(app, max_body_bytes, error_body=problem_bytes)

"""SPARQL 1.1 Protocol endpoint over a :class:`~workbench.linked.federation.federation.Federation` (fastapi).

The store endpoint's pieces are reused (:mod:`workbench.linked.endpoint`: content
negotiation, the ``format`` parameter, plain-text errors, daemon-thread evaluation;
:mod:`workbench.linked.results` writers; :class:`workbench.serving.http.BodyLimitMiddleware`),
so the federated endpoint negotiates, limits and fails like the store's:

* ``GET /sparql?query=…``, ``POST /sparql`` (``application/sparql-query`` or a form);
  SELECT and ASK results as SPARQL JSON (default), XML, CSV or TSV;
* a malformed query, or one the federator refuses (CONSTRUCT, GRAPH, SERVICE, ...) → 400;
  updates → 403 (the federation is read-only); no acceptable format → 406;
* a member down → 502, a member timing out → 504 (the message names the member); with
  ``partial=True`` the answer leaves the member out and says so: header
  ``X-Federation-Partial: true`` and a ``Warning`` header per member;
* past ``timeout`` seconds → 503 (the endpoint keeps serving); at most ``workers``
  queries run and ``queue`` wait, past that 503 with ``Retry-After``;
* rows past ``result_limit`` are cut (header ``X-SPARQL-Result-Limit``); bodies over
  ``max_body_bytes`` → 413 before they are read.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from workbench.errors import WorkbenchError
from workbench.linked.answers import choose_results as _choose_results
from workbench.linked.background import BackgroundServer
from workbench.linked.endpoint import _format_params, _in_daemon_thread, _text
from workbench.linked.federation.errors import MemberError, UnsupportedQueryError
from workbench.linked.federation.federation import Federation, SelectResult
from workbench.linked.results import MEDIA_TYPES, write_boolean, write_results
from workbench.linked.store import QuerySyntaxError

__all__ = ["FederationServer", "create_federation_app", "serve_federation"]

log = logging.getLogger(__name__)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "SELECT / ASK results", "content": {m: {} for m in MEDIA_TYPES.values()}},
    400: {"description": "malformed or unsupported query", "content": {"text/plain": {}}},
    403: {"description": "updates are refused: the federation is read-only", "content": {"text/plain": {}}},
    406: {"description": "no acceptable results format", "content": {"text/plain": {}}},
    413: {"description": "request body too large", "content": {"text/plain": {}}},
    415: {"description": "unsupported content type", "content": {"text/plain": {}}},
    502: {"description": "a member endpoint failed", "content": {"text/plain": {}}},
    503: {"description": "timed out, or too many queries", "content": {"text/plain": {}}},
    504: {"description": "a member endpoint timed out", "content": {"text/plain": {}}},
}
_POST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/sparql-query": {"schema": {"type": "string"}},
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
        },
    }
}


def _header(text: str) -> str:
    """A header-safe one-line version of a message."""
    return " ".join(text.encode("latin-1", "replace").decode("latin-1").split())[:500]


def create_federation_app(
    federation: Federation,
    *,
    timeout: float = 60.0,
    result_limit: int = 100_000,
    workers: int = 4,
    queue: int = 64,
    max_body_bytes: int = 64 * 1024 * 1024,
) -> Any:
    """A FastAPI application serving ``federation`` at ``/sparql`` (see the module docstring).

    Parameters
    ----------
    federation
        The federation to answer with.
    timeout
        Seconds a federated query may run before the endpoint answers 503.
    result_limit
        Most rows one answer returns.
    workers
        Federated queries evaluated at once.
    queue
        Queries that may wait for a worker (up to ``timeout``); past that, 503 with ``Retry-After``.
    max_body_bytes
        Largest request body; a larger one is answered 413 before it is read.

    Returns
    -------
    ASGI application
        The FastAPI app behind a body-size limit (the app itself is its ``.app``).
    """
    from workbench.serving.http import BodyLimitMiddleware

    app = FastAPI(title="ExtremeEarth Workbench federated GeoSPARQL endpoint",
                  description="One SPARQL 1.1 Protocol endpoint over the member endpoints: "
                              + ", ".join(f"{n} = {u}" for n, u in federation.members.items()))
    busy = threading.Semaphore(workers)
    waiting = [0]

    def evaluate(query: str, accept: str, fmt: list[str]) -> Response:
        result = federation.query(query, timeout=timeout)
        chosen = _choose_results(accept, fmt)
        if chosen is None:
            return _text(406, f"cannot answer as {accept}: use one of " + ", ".join(MEDIA_TYPES.values()))
        if isinstance(result, bool):
            return Response(write_boolean(result, chosen), media_type=MEDIA_TYPES[chosen])
        assert isinstance(result, SelectResult)
        headers: dict[str, str] = {}
        rows = [[row[v] for v in result.variables] for row in result[:result_limit]]
        if len(result) > result_limit:
            headers["X-SPARQL-Result-Limit"] = f"reached: {result_limit} rows"
        if result.partial:
            headers["X-Federation-Partial"] = "true"
            headers["Warning"] = ", ".join(f'199 workbench "{_header(w)}"' for w in result.warnings)
        return Response(write_results(result.variables, rows, fmt=chosen), media_type=MEDIA_TYPES[chosen],
                        headers=headers)

    async def acquire(started: float) -> bool:
        if busy.acquire(blocking=False):
            return True
        if waiting[0] >= queue:
            return False
        waiting[0] += 1
        try:
            while time.monotonic() - started < timeout:
                await asyncio.sleep(0.005)
                if busy.acquire(blocking=False):
                    return True
            return False
        finally:
            waiting[0] -= 1

    async def run_query(query: str, accept: str, fmt: list[str]) -> Response:
        started = time.monotonic()
        if not await acquire(started):
            return _text(503, f"all {workers} federated query workers are busy and {queue} queries wait; "
                         "retry later", {"Retry-After": "1"})
        future = _in_daemon_thread(evaluate, query, accept, fmt)
        future.add_done_callback(lambda _: busy.release())
        try:
            return await asyncio.wait_for(asyncio.shield(future),
                                          timeout=max(0.0, timeout - (time.monotonic() - started)))
        except TimeoutError:
            log.warning("federated query timed out after %.1f s", time.monotonic() - started)
            return _text(503, f"query timed out: it ran past the federated endpoint's limit of {timeout:g} s")
        except QuerySyntaxError as exc:
            return _text(400, f"malformed query: {exc}")
        except UnsupportedQueryError as exc:
            return _text(400, f"query not supported by the federator: {exc}")
        except MemberError as exc:
            return _text(exc.status, f"federated query failed: {exc}")
        except WorkbenchError as exc:
            return _text(400, f"query refused: {exc}")
        except Exception as exc:
            log.exception("federated query failed")
            return _text(500, f"federated query evaluation failed: {exc}")

    @app.get("/sparql", responses=_RESPONSES)
    async def get_sparql(request: Request, query: str | None = Query(None, description="SPARQL query"),
                         format: str | None = Query(None, description="json, xml, csv or tsv")) -> Response:
        if "update" in request.query_params:
            return _text(403, "the federated endpoint is read-only: send updates to a member")
        if query is None:
            return _text(400, "give a SPARQL query in the 'query' parameter")
        return await run_query(query, request.headers.get("accept", "*/*"), _format_params(request.query_params))

    @app.post("/sparql", responses=_RESPONSES, openapi_extra=_POST_BODY)
    async def post_sparql(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        accept = request.headers.get("accept", "*/*")
        fmt = _format_params(request.query_params)
        body = await request.body()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _text(400, "the request body is not UTF-8 text")
        if content_type == "application/sparql-query":
            return await run_query(text, accept, fmt)
        if content_type == "application/sparql-update":
            return _text(403, "the federated endpoint is read-only: send updates to a member")
        if content_type == "application/x-www-form-urlencoded":
            form = parse_qs(text, keep_blank_values=True)
            fmt = [v for key in ("format", "output") for v in form.get(key, [])] or fmt
            if "query" in form:
                return await run_query(form["query"][0], accept, fmt)
            if "update" in form:
                return _text(403, "the federated endpoint is read-only: send updates to a member")
            return _text(400, "the form has no 'query' field")
        return _text(415, f"unsupported content type {content_type!r}: use application/sparql-query or "
                     "application/x-www-form-urlencoded")

    app.state.federation = federation
    return BodyLimitMiddleware(app, max_body_bytes, error_body=lambda message: (message + "\n").encode())


class FederationServer(BackgroundServer):
    """Run the federated endpoint in a background thread (tests, notebooks); a context manager.

    >>> with FederationServer(Federation(members), port=8895) as server:
    ...     SPARQLWrapper(server.url)
    """

    def __init__(self, federation: Federation, *, host: str = "127.0.0.1", port: int = 8895, **options: Any) -> None:
        self.federation = federation
        super().__init__(create_federation_app(federation, **options), host=host, port=port,
                         what="federated SPARQL endpoint")


def serve_federation(federation: Federation, *, host: str = "127.0.0.1", port: int = 8895, **options: Any) -> None:
    """Serve ``federation`` in the foreground until interrupted."""
    app = create_federation_app(federation, **options)
    log.info("federated SPARQL endpoint on http://%s:%d/sparql", host, port)
    uvicorn.run(app, host=host, port=port, log_level="info")

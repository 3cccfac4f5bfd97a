"""SPARQL 1.1 Protocol endpoint over a :class:`~workbench.linked.store.GeoStore` (fastapi + uvicorn).

* ``GET /sparql?query=…`` and ``POST /sparql`` (form ``query=…`` or a body of type
  ``application/sparql-query``) answer queries; results are negotiated from the
  ``Accept`` header (or a ``format`` parameter): SPARQL JSON (default), XML, CSV,
  TSV for SELECT/ASK; Turtle (default) or N-Triples for CONSTRUCT/DESCRIBE.
* ``POST /sparql`` with ``update=…`` (form) or ``application/sparql-update`` runs an
  update; it needs the API key (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``):
  401 without it; 403 when the server has no key (read-only).
* ``GET /sparql`` without a query answers the service description (Turtle).
* A malformed query or update → 400 with the parser's message; a query past its time
  limit → 503 with a timeout message while the server keeps serving (queries run in
  worker threads; the timed-out one is told to stop computing geometry functions);
  results beyond ``result_limit`` rows are cut, and the response says so in the
  ``X-SPARQL-Result-Limit`` header.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from typing import Any
from urllib.parse import parse_qs

import pyoxigraph as ox
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from workbench.linked.results import MEDIA_TYPES, write_boolean, write_results
from workbench.linked.store import GeoStore, QuerySyntaxError
from workbench.linked.vocab import GEOF, TOPOLOGY_RELATIONS

__all__ = ["create_app", "EndpointServer", "serve"]

log = logging.getLogger(__name__)

_RDF_TYPES = {
    "text/turtle": ox.RdfFormat.TURTLE,
    "application/n-triples": ox.RdfFormat.N_TRIPLES,
    "application/rdf+xml": ox.RdfFormat.RDF_XML,
    "application/ld+json": ox.RdfFormat.JSON_LD,
}
_RESULT_ALIASES = {
    "application/sparql-results+json": "json",
    "application/json": "json",
    "application/sparql-results+xml": "xml",
    "application/xml": "xml",
    "text/xml": "xml",
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
}
_FORMAT_PARAM = {"json": "json", "xml": "xml", "csv": "csv", "tsv": "tsv", "turtle": "text/turtle",
                 "ttl": "text/turtle", "nt": "application/n-triples", "ntriples": "application/n-triples",
                 "n-triples": "application/n-triples", "rdfxml": "application/rdf+xml",
                 "json-ld": "application/ld+json", "jsonld": "application/ld+json"}


def _accepted(accept: str) -> list[str]:
    """Media types of an Accept header, best first."""
    ranked = []
    for n, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if fields[0]:
            ranked.append((-q, n, fields[0].lower()))
    return [m for _, _, m in sorted(ranked)]


def _format_candidates(fmt: list[str]) -> list[str]:
    out = []
    for value in fmt:
        value = value.strip().lower()
        out.append(_FORMAT_PARAM.get(value) or _RESULT_ALIASES.get(value) or value)
    return out


def _choose_results(accept: str, fmt: list[str]) -> str | None:
    for candidate in _format_candidates(fmt):
        if candidate in MEDIA_TYPES:
            return candidate
    for media in _accepted(accept or "*/*"):
        if media in _RESULT_ALIASES:
            return _RESULT_ALIASES[media]
        if media in ("*/*", "application/*", "text/*"):
            return "json"
    return None


def _choose_rdf(accept: str, fmt: list[str]) -> str | None:
    for candidate in _format_candidates(fmt):
        if candidate in _RDF_TYPES:
            return candidate
    for media in _accepted(accept or "*/*"):
        if media in _RDF_TYPES:
            return media
        if media in ("*/*", "text/*", "application/*"):
            return "text/turtle"
    return None


def service_description(endpoint_url: str) -> str:
    """The SPARQL 1.1 service description of the endpoint, in Turtle."""
    functions = ", ".join(f"<{GEOF}{n}>" for n in (*TOPOLOGY_RELATIONS, "relate", "distance", "buffer", "convexHull",
                          "envelope", "boundary", "intersection", "union", "difference", "symDifference", "getSRID"))
    formats = ", ".join(
        f"<http://www.w3.org/ns/formats/{n}>"
        for n in ("SPARQL_Results_JSON", "SPARQL_Results_XML", "SPARQL_Results_CSV", "SPARQL_Results_TSV",
                  "Turtle", "N-Triples")
    )
    return f"""@prefix sd: <http://www.w3.org/ns/sparql-service-description#> .
@prefix dcterms: <http://purl.org/dc/terms/> .

<{endpoint_url}> a sd:Service ;
    sd:endpoint <{endpoint_url}> ;
    sd:supportedLanguage sd:SPARQL11Query, sd:SPARQL11Update ;
    sd:resultFormat {formats} ;
    sd:feature sd:UnionDefaultGraph, sd:BasicFederatedQuery ;
    sd:extensionFunction {functions} ;
    dcterms:title "ExtremeEarth Workbench GeoSPARQL endpoint" ;
    sd:defaultDataset [ a sd:Dataset ; sd:defaultGraph [ a sd:Graph ] ] .
"""


def _format_params(params: Any) -> list[str]:
    return [v for key in ("format", "output") for v in params.getlist(key) if v]


def _in_daemon_thread(func: Any, *args: Any) -> "asyncio.Future[Any]":
    """Run ``func(*args)`` in a new daemon thread; an asyncio future of its result.

    Daemon threads, unlike a thread pool's, never hold up the process at exit when a
    timed-out query is still running.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result = func(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting request
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, daemon=True, name="sparql-query").start()
    return future


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain", headers=headers)


def create_app(
    store: GeoStore,
    *,
    api_key: str | None = None,
    timeout: float = 30.0,
    result_limit: int = 100_000,
    workers: int = 4,
    queue: int = 64,
    max_body_bytes: int = 64 * 1024 * 1024,
) -> Any:
    """A FastAPI application serving ``store`` at ``/sparql``.

    Parameters
    ----------
    store
        The store to query and update.
    api_key
        Key that updates must present; ``None``: the endpoint is read-only.
    timeout
        Seconds a query may run before the endpoint answers 503.
    result_limit
        Most rows (or triples) one answer returns.
    workers
        Queries evaluated at once (threads).
    queue
        Queries that may wait for a worker (up to ``timeout`` seconds); past that, 503 with ``Retry-After``.
    max_body_bytes
        Largest request body (query or update); a larger one is answered 413 before it is read.

    Returns
    -------
    ASGI application
        The FastAPI app behind a body-size limit (the app itself is its ``.app``).
    """
    from workbench.serving.http import BodyLimitMiddleware

    app = FastAPI(title="ExtremeEarth Workbench SPARQL endpoint")
    busy = threading.Semaphore(workers)
    waiting = [0]  # queries waiting for a worker (only touched in the event loop)

    def evaluate(query: str, accept: str, fmt: list[str]) -> Response:
        result = store.query(query, timeout=timeout)
        if isinstance(result, ox.QueryBoolean):
            chosen = _choose_results(accept, fmt)
            if chosen is None:
                return _text(406, f"cannot answer an ASK query as {accept}")
            return Response(write_boolean(bool(result), chosen), media_type=MEDIA_TYPES[chosen])
        if isinstance(result, ox.QuerySolutions):
            chosen = _choose_results(accept, fmt)
            if chosen is None:
                return _text(406, f"cannot answer a SELECT query as {accept}: use one of "
                             + ", ".join(MEDIA_TYPES.values()))
            variables = [v.value for v in result.variables]
            rows = []
            cut = False
            for row in result:
                if len(rows) >= result_limit:
                    cut = True
                    break
                rows.append([row[v] for v in variables])
            headers = {"X-SPARQL-Result-Limit": f"reached: {result_limit} rows"} if cut else {}
            return Response(write_results(variables, rows, fmt=chosen), media_type=MEDIA_TYPES[chosen], headers=headers)
        media = _choose_rdf(accept, fmt)
        if media is None:
            return _text(406, f"cannot answer a CONSTRUCT/DESCRIBE query as {accept}: use one of "
                         + ", ".join(_RDF_TYPES))
        triples = []
        cut = False
        for triple in result:
            if len(triples) >= result_limit:
                cut = True
                break
            triples.append(triple)
        headers = {"X-SPARQL-Result-Limit": f"reached: {result_limit} triples"} if cut else {}
        body = ox.serialize(triples, format=_RDF_TYPES[media]) or b""
        return Response(body, media_type=media, headers=headers)

    async def acquire_worker(started: float) -> bool:
        """Wait (bounded in time and in the number of waiters) for a query worker."""
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
        try:
            store.check_query(query)
        except QuerySyntaxError as exc:
            return _text(400, f"malformed query: {exc}")
        if not await acquire_worker(started):
            return _text(503, f"all {workers} query workers are busy and {queue} queries wait; retry later",
                         {"Retry-After": "1"})
        future = _in_daemon_thread(evaluate, query, accept, fmt)
        future.add_done_callback(lambda _: busy.release())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=max(0.0, timeout - (time.monotonic() - started)))
        except asyncio.TimeoutError:
            log.warning("query timed out after %.1f s", time.monotonic() - started)
            return _text(503, f"query timed out: it ran past the endpoint's limit of {timeout:g} s")
        except QuerySyntaxError as exc:
            return _text(400, f"malformed query: {exc}")
        except Exception as exc:  # noqa: BLE001 - an evaluation error is the client's answer
            log.exception("query failed")
            return _text(500, f"query evaluation failed: {exc}")

    def authorised(request: Request) -> Response | None:
        if api_key is None:
            return _text(403, "this endpoint is read-only: start it with an API key to allow updates")
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given or not hmac.compare_digest(given.encode(), api_key.encode()):
            return _text(401, "updates need a valid API key (Authorization: Bearer KEY or X-API-Key: KEY)",
                         {"WWW-Authenticate": "Bearer"})
        return None

    async def run_update(request: Request, update: str) -> Response:
        denied = authorised(request)
        if denied is not None:
            return denied
        try:
            await _in_daemon_thread(store.update, update)
        except QuerySyntaxError as exc:
            return _text(400, f"malformed update: {exc}")
        return Response(status_code=204)

    @app.get("/sparql")
    async def get_sparql(request: Request) -> Response:
        params = request.query_params
        if "update" in params:
            return _text(405, "updates must be sent with POST")
        query = params.get("query")
        if query is None:
            return Response(service_description(str(request.url_for("get_sparql"))), media_type="text/turtle")
        return await run_query(query, request.headers.get("accept", "*/*"), _format_params(params))

    @app.post("/sparql")
    async def post_sparql(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        accept = request.headers.get("accept", "*/*")
        fmt = _format_params(request.query_params)
        if content_type == "application/sparql-query":
            return await run_query((await request.body()).decode("utf-8"), accept, fmt)
        if content_type == "application/sparql-update":
            denied = authorised(request)  # before the body is read: no key, no upload
            if denied is not None:
                return denied
            return await run_update(request, (await request.body()).decode("utf-8"))
        if content_type == "application/x-www-form-urlencoded":
            form = parse_qs((await request.body()).decode("utf-8"), keep_blank_values=True)
            fmt = [v for key in ("format", "output") for v in form.get(key, [])] or fmt
            if "query" in form:
                return await run_query(form["query"][0], accept, fmt)
            if "update" in form:
                return await run_update(request, form["update"][0])
            return _text(400, "the form has neither a 'query' nor an 'update' field")
        return _text(415, f"unsupported content type {content_type!r}: use application/sparql-query, "
                     "application/sparql-update or application/x-www-form-urlencoded")

    @app.get("/")
    async def root(request: Request) -> Response:
        return Response(service_description(str(request.url_for("get_sparql"))), media_type="text/turtle")

    app.state.store = store
    return BodyLimitMiddleware(app, max_body_bytes, error_body=lambda message: (message + "\n").encode())


class EndpointServer:
    """Run the endpoint in a background thread (notebooks, tests); a context manager.

    >>> with EndpointServer(store, port=8890) as server:
    ...     SPARQLWrapper(server.url)
    """

    def __init__(self, store: GeoStore, *, host: str = "127.0.0.1", port: int = 8890, **options: Any) -> None:
        self.app = create_app(store, **options)
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="sparql-endpoint")
        self.url = f"http://{host}:{port}/sparql"

    def start(self, wait: float = 15.0) -> "EndpointServer":
        """Start serving; returns when the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + wait
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the SPARQL endpoint did not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> "EndpointServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(store: GeoStore, *, host: str = "127.0.0.1", port: int = 8890, **options: Any) -> None:
    """Serve ``store`` in the foreground until interrupted."""
    app = create_app(store, **options)
    log.info("SPARQL endpoint on http://%s:%d/sparql", host, port)
    uvicorn.run(app, host=host, port=port, log_level="info")

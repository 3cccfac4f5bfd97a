"""SPARQL 1.1 Protocol endpoint over a :class:`~workbench.linked.store.GeoStore` (fastapi + uvicorn).

* ``GET /sparql?query=…`` and ``POST /sparql`` (form ``query=…`` or a body of type
  ``application/sparql-query``) answer queries; results are negotiated from the
  ``Accept`` header (or a ``format`` parameter): SPARQL JSON (default), XML, CSV,
  TSV for SELECT/ASK; Turtle (default) or N-Triples for CONSTRUCT/DESCRIBE.
* ``POST /sparql`` with ``update=…`` (form) or ``application/sparql-update`` runs an
  update; it needs the API key (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``):
  401 without it; 403 when the server has no key (read-only).
* ``GET /sparql`` without a query answers the service description (Turtle).
* A malformed query or update, an unknown ``geof:`` function or a malformed geometry
  constant → 400 naming it, before the query takes a worker.
* A query past its time limit → 503 while the server keeps serving. A store on disk is
  queried in worker processes (:mod:`workbench.linked.query_workers`) and the worker of
  a timed-out query is killed, so its CPU use stops at the deadline; an in-memory store
  is queried in threads, whose geometry functions and row reading stop at the deadline
  (pyoxigraph's own evaluation cannot be stopped from outside a process).
* Admission (:mod:`workbench.linked.admission`): ``workers`` queries run at once, up to
  ``queue`` more wait at most ``queue_wait`` seconds, fairly across clients (one client
  holds at most ``per_client`` workers); a full queue or a wait past its bound → 503
  with ``Retry-After``.
* Bodies: a query body over ``max_query_bytes`` → 413 while it streams; an update is
  authenticated from its headers before its body (up to ``max_body_bytes``) is read.
* Results beyond ``result_limit`` rows are cut, and the response says so in the
  ``X-SPARQL-Result-Limit`` header. Every 5xx is counted (``GET /stats``) and logged once.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from workbench.linked.admission import Admission, QueueFull
from workbench.linked.answers import Answer, AnswerTimeout, answer_result
from workbench.linked.background import BackgroundServer
from workbench.linked.store import GeoStore, QuerySyntaxError
from workbench.linked.vocab import GEOF

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_QUERY_BYTES", "EndpointServer", "create_app", "serve"]

log = logging.getLogger(__name__)

#: Largest query body (4 MiB): a query is text; anything larger is refused while it streams.
DEFAULT_MAX_QUERY_BYTES = 4 * 1024 * 1024
#: Largest request body at all (64 MiB): keyed updates may be this large.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


def service_description(endpoint_url: str, *, geosparql: bool = True) -> str:
    """The SPARQL 1.1 service description of the endpoint, in Turtle (``geosparql``: list the ``geof:`` functions)."""
    from workbench.linked.geosparql import AGGREGATE_NAMES, FUNCTION_NAMES

    names = sorted(FUNCTION_NAMES | AGGREGATE_NAMES) if geosparql else []
    functions = "".join(f"    sd:extensionFunction <{GEOF}{n}> ;\n" for n in names)
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
{functions}    dcterms:title "ExtremeEarth Workbench GeoSPARQL endpoint" ;
    sd:defaultDataset [ a sd:Dataset ; sd:defaultGraph [ a sd:Graph ] ] .
"""


def _format_params(params: Any) -> list[str]:
    return [v for key in ("format", "output") for v in params.getlist(key) if v]


def _job(func: Any, args: tuple[Any, ...]) -> tuple[asyncio.Future[Any], Callable[[], None]]:
    """An asyncio future of ``func(*args)`` and the call that settles it from another thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def hand_over(result: Any, error: BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the server stopped while this (timed-out) query ran on: nobody waits
            log.debug("a query finished after its server stopped")

    def run() -> None:
        try:
            result = func(*args)
        except BaseException as exc:  # handed to the awaiting request
            log.debug("worker thread failed", exc_info=True)
            # drop the frames here: they hold pyoxigraph results, which must die in this thread
            link: BaseException | None = exc
            while link is not None:
                link.__traceback__ = None
                link = link.__cause__ or link.__context__
            hand_over(None, exc)
        else:
            hand_over(result, None)

    return future, run


def _in_daemon_thread(func: Any, *args: Any) -> asyncio.Future[Any]:
    """Run ``func(*args)`` in a new daemon thread; an asyncio future of its result.

    Daemon threads, unlike a thread pool's, never hold up the process at exit when a
    timed-out query is still running.
    """
    future, run = _job(func, args)
    threading.Thread(target=run, daemon=True, name="sparql-query").start()
    return future


class _DaemonThreads:
    """``size`` daemon threads taking calls from a queue: no thread start per query, never holding up exit."""

    def __init__(self, size: int) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, daemon=True, name="sparql-query") for _ in range(size)]
        for thread in self._threads:
            thread.start()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            call()

    def submit(self, func: Any, *args: Any) -> asyncio.Future[Any]:
        """Run ``func(*args)`` in one of the threads; an asyncio future of its result."""
        future, run = _job(func, args)
        self._calls.put(run)
        return future

    def close(self) -> None:
        """Let the threads end once the calls before this one are done."""
        for _ in self._threads:
            self._calls.put(None)


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(message + "\n", status_code=status, media_type="text/plain", headers=headers)


def _body_too_large(limit: int, what: str) -> Response:
    return _text(413, f"the {what} is larger than this endpoint's limit of {limit} bytes")


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` as soon as it is known to pass ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _response(answer: Answer) -> Response:
    return Response(answer.body, status_code=answer.status, media_type=answer.media_type, headers=answer.headers)


def create_app(
    store: GeoStore,
    *,
    api_key: str | None = None,
    timeout: float = 30.0,
    result_limit: int = 100_000,
    workers: int = 4,
    queue: int = 64,
    queue_wait: float | None = None,
    per_client: int | None = None,
    isolation: str = "auto",
    max_query_bytes: int = DEFAULT_MAX_QUERY_BYTES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Any:
    """A FastAPI application serving ``store`` at ``/sparql``.

    Parameters
    ----------
    store
        The store to query and update.
    api_key
        Key that updates must present; ``None``: the endpoint is read-only.
    timeout
        Seconds a query may run (waiting for a worker included) before the endpoint answers 503.
    result_limit
        Most rows (or triples) one answer returns.
    workers
        Queries evaluated at once (worker processes or threads).
    queue
        Queries that may wait for a worker; past that, 503 with ``Retry-After`` at once.
    queue_wait
        Longest wait for a worker, seconds (default: ``timeout``).
    per_client
        Workers one client (address) may hold at once (default: ``workers - 1``, at least 1).
    isolation
        ``"process"``: evaluate in worker processes killed at the deadline (needs a store on
        disk); ``"thread"``: in threads (cooperative stop); ``"auto"``: processes when the
        store is on disk.
    max_query_bytes
        Largest query body; a larger one is answered 413 before or while it streams.
    max_body_bytes
        Largest body of any request (keyed updates), enforced before the app reads it.

    Returns
    -------
    ASGI application
        The FastAPI app behind a body-size limit (the app itself is its ``.app``); call
        ``.app.state.close()`` to stop its worker processes.
    """
    from workbench.serving.http import BodyLimitMiddleware

    if isolation not in ("auto", "process", "thread"):
        raise ValueError(f"isolation must be 'auto', 'process' or 'thread', not {isolation!r}")
    if isolation == "process" and store.path is None:
        raise ValueError("isolation='process' needs a store on disk (GeoStore(path)); an in-memory store "
                         "cannot be opened by worker processes")
    use_processes = isolation == "process" or (isolation == "auto" and store.path is not None)
    pool = None
    if use_processes:
        from workbench.linked.query_workers import QueryWorkers

        store.flush()  # the workers' read-only views start from what is on disk
        pool = QueryWorkers(store.path, size=workers, geosparql_functions=store.geosparql).start()

    threads = _DaemonThreads(workers)  # admission holds a slot until its call ends: never more calls than threads
    app = FastAPI(title="ExtremeEarth Workbench SPARQL endpoint")
    admission = Admission(workers=workers, queue=queue, wait=timeout if queue_wait is None else queue_wait,
                          per_client=per_client)
    errors: collections.Counter[int] = collections.Counter()

    def server_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        errors[status] += 1
        log.warning("%d: %s", status, message)
        return _text(status, message, headers)

    def evaluate(query: str, accept: str, fmt: list[str], deadline: float) -> Answer:
        if pool is not None:
            generation = store.generation
            plan = store.plan(query)
            if plan.engine is not None:  # the spatial engine runs here, beside the store's index
                result = store.run_engine(plan, deadline=deadline)
                return answer_result(result, accept=accept, fmt=fmt, result_limit=result_limit, deadline=deadline)
            return pool.run(plan, generation=generation, accept=accept, fmt=fmt, result_limit=result_limit,
                            deadline=deadline)
        result = store.query(query, timeout=max(0.0, deadline - time.monotonic()))
        return answer_result(result, accept=accept, fmt=fmt, result_limit=result_limit, deadline=deadline)

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def run_query(request: Request, query: str, accept: str, fmt: list[str]) -> Response:
        from workbench.linked.query_workers import QueryTimeout, WorkerFailed

        started = time.monotonic()
        deadline = started + timeout
        try:
            store.check_query(query)
        except QuerySyntaxError as exc:
            return _text(400, f"malformed query: {exc}")
        client = client_of(request)
        try:
            await admission.acquire(client, wait=min(admission.wait, timeout))
        except QueueFull as exc:
            return server_error(503, f"{exc}; retry later", {"Retry-After": str(exc.retry_after)})
        future = threads.submit(evaluate, query, accept, fmt, deadline)
        future.add_done_callback(lambda _: admission.release(client))  # the slot is free when the work is
        grace = 2.0 if pool is not None else 0.0  # a worker process answers or is killed at the deadline itself
        try:
            answer = await asyncio.wait_for(asyncio.shield(future), timeout=max(0.0, deadline - time.monotonic()) + grace)
        except (TimeoutError, QueryTimeout, AnswerTimeout):
            return server_error(503, f"query timed out: it ran past the endpoint's limit of {timeout:g} s")
        except QuerySyntaxError as exc:
            return _text(400, f"malformed query: {exc}")
        except WorkerFailed as exc:
            return server_error(500, f"query evaluation failed: {exc}")
        except Exception as exc:  # an evaluation error is the client's answer
            log.debug("query failed", exc_info=True)
            return server_error(500, f"query evaluation failed: {type(exc).__name__}: {exc}")
        return _response(answer)

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

    async def run_update(update: str) -> Response:
        try:
            await _in_daemon_thread(store.update, update)
        except QuerySyntaxError as exc:
            return _text(400, f"malformed update: {exc}")
        except Exception as exc:  # reported once, the server keeps serving
            log.debug("update failed", exc_info=True)
            return server_error(500, f"update failed: {type(exc).__name__}: {exc}")
        return Response(status_code=204)

    def decode(body: bytes, what: str) -> str | Response:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _text(400, f"the {what} is not UTF-8 text: {exc}")

    @app.get("/sparql")
    async def get_sparql(request: Request) -> Response:
        params = request.query_params
        if "update" in params:
            return _text(405, "updates must be sent with POST")
        query = params.get("query")
        if query is None:
            return Response(service_description(str(request.url_for("get_sparql")), geosparql=store.geosparql), media_type="text/turtle")
        return await run_query(request, query, request.headers.get("accept", "*/*"), _format_params(params))

    @app.post("/sparql")
    async def post_sparql(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        accept = request.headers.get("accept", "*/*")
        fmt = _format_params(request.query_params)
        if content_type == "application/sparql-query":
            body = await _read_body(request, max_query_bytes)
            if body is None:
                return _body_too_large(max_query_bytes, "query")
            text = decode(body, "query")
            return text if isinstance(text, Response) else await run_query(request, text, accept, fmt)
        if content_type == "application/sparql-update":
            denied = authorised(request)  # before the body is read: no key, no upload
            if denied is not None:
                return denied
            body = await _read_body(request, max_body_bytes)
            if body is None:
                return _body_too_large(max_body_bytes, "update")
            text = decode(body, "update")
            return text if isinstance(text, Response) else await run_update(text)
        if content_type == "application/x-www-form-urlencoded":
            keyed = api_key is not None and authorised(request) is None
            limit = max_body_bytes if keyed else max_query_bytes  # only a keyed form may carry a large update
            body = await _read_body(request, limit)
            if body is None:
                return _body_too_large(limit, "form")
            text = decode(body, "form")
            if isinstance(text, Response):
                return text
            form = parse_qs(text, keep_blank_values=True)
            fmt = [v for key in ("format", "output") for v in form.get(key, [])] or fmt
            if "query" in form:
                return await run_query(request, form["query"][0], accept, fmt)
            if "update" in form:
                denied = authorised(request)
                return denied if denied is not None else await run_update(form["update"][0])
            return _text(400, "the form has neither a 'query' nor an 'update' field")
        return _text(415, f"unsupported content type {content_type!r}: use application/sparql-query, "
                     "application/sparql-update or application/x-www-form-urlencoded")

    @app.get("/stats")
    async def stats() -> Response:
        counts = admission.snapshot()
        body = {"workers": workers, "isolation": "process" if pool is not None else "thread",
                "busy": admission.busy, "waiting": admission.waiting, "admitted": counts.admitted,
                "waited": counts.waited, "refused_full": counts.refused_full, "refused_wait": counts.refused_wait,
                "running_per_client": counts.running, "errors_5xx": {str(k): v for k, v in sorted(errors.items())},
                "workers_killed": pool.killed if pool is not None else 0}
        return Response(orjson.dumps(body), media_type="application/json")

    @app.get("/")
    async def root(request: Request) -> Response:
        return Response(service_description(str(request.url_for("get_sparql")), geosparql=store.geosparql), media_type="text/turtle")

    def close() -> None:
        if pool is not None:
            pool.close()
        threads.close()

    app.state.store = store
    app.state.admission = admission
    app.state.close = close
    return BodyLimitMiddleware(app, max_body_bytes, error_body=lambda message: (message + "\n").encode())


class EndpointServer(BackgroundServer):
    """Run the endpoint in a background thread (notebooks, tests); a context manager.

    >>> with EndpointServer(store, port=8890) as server:
    ...     SPARQLWrapper(server.url)
    """

    def __init__(self, store: GeoStore, *, host: str = "127.0.0.1", port: int = 8890, **options: Any) -> None:
        super().__init__(create_app(store, **options), host=host, port=port, what="SPARQL endpoint")

    def stop(self) -> None:
        """Stop serving, wait for the thread and stop the query worker processes."""
        super().stop()
        self.app.app.state.close()


def serve(store: GeoStore, *, host: str = "127.0.0.1", port: int = 8890, **options: Any) -> None:
    """Serve ``store`` in the foreground until interrupted."""
    app = create_app(store, **options)
    log.info("SPARQL endpoint on http://%s:%d/sparql", host, port)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        app.app.state.close()

"""Reusable HTTP plumbing for the workbench's ASGI servers: a request-body size limit.

:class:`BodyLimitMiddleware` rejects a request whose body is larger than
``max_body_bytes`` with 413 *before* the application reads it: at once when the
``Content-Length`` header says so, and, for a body sent without a length
(``Transfer-Encoding: chunked``) or with a false one, as soon as the bytes received
pass the limit, while streaming — the handler never sees a partial body and no JSON
parsing starts. The error body is ``{"error": "..."}`` (the format of both
serving protocols); pass ``error_body`` for another format.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import Request

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimitMiddleware", "BodyTooLarge", "FastJSONRoute", "JSONBodyMiddleware"]

#: Default limit of a request body: 16 MiB.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(HTTPException):
    """Raised inside the application's ``receive`` when the streamed body passes the limit.

    An ``HTTPException`` (413), so that frameworks which wrap errors raised while
    reading a body (FastAPI turns them into 400) pass it on unchanged.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes "
                              f"(more than {limit} bytes received while streaming)")


def _default_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class BodyLimitMiddleware:
    """ASGI middleware: 413 for request bodies over ``max_body_bytes``.

    Parameters
    ----------
    app
        The ASGI application.
    max_body_bytes
        Largest accepted body, in bytes.
    error_body
        ``message -> bytes`` of the JSON error body.
    """

    def __init__(self, app: Any, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, *,
                 error_body: Callable[[str], bytes] = _default_body) -> None:
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be a positive integer, got {max_body_bytes!r}")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.error_body = error_body

    async def _reject(self, send: Send, message: str) -> None:
        body = self.error_body(message)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await self._reject(send, f"request body of {declared} bytes is larger than the limit of "
                                             f"{limit} bytes")
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await self._reject(send, str(exc.detail))


class JSONBodyMiddleware:
    """ASGI middleware: read a POST/PUT body as JSON whatever its ``Content-Type`` says.

    TF Serving's REST API takes a JSON body without looking at the header (``curl -d``
    sends ``application/x-www-form-urlencoded``); this middleware marks such bodies
    ``application/json`` so that the framework parses them, and the parser's error
    (400) names a malformed body.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "PATCH"):
            headers = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
            ctype = next((v for k, v in scope.get("headers", []) if k == b"content-type"), b"")
            if not ctype.split(b";")[0].strip().lower().endswith(b"json"):
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


class _FastJSONRequest(Request):
    """A request whose ``json()`` parses with orjson (several times faster on large tensors)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                # the standard library's message names the position and what was expected
                self._json = json.loads(body)
        return self._json


class FastJSONRoute(APIRoute):
    """FastAPI route class that parses JSON bodies with orjson (``APIRouter(route_class=FastJSONRoute)``)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Any]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Any:
            return await handler(_FastJSONRequest(request.scope, request.receive))

        return route_handler

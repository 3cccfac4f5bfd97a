"""An ASGI application served by uvicorn in a daemon thread: the SPARQL endpoints' notebook and test face."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """Serve ``app`` on ``host:port`` in a background thread; a context manager.

    Parameters
    ----------
    app
        The ASGI application.
    host, port
        Where to listen.
    what
        What the server is, for the error raised when it does not start.
    """

    def __init__(self, app: Any, *, host: str, port: int, what: str = "server") -> None:
        self.app = app
        self.what = what
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name=what.replace(" ", "-"))
        self.url = f"http://{host}:{port}/sparql"

    def start(self, wait: float = 15.0) -> Any:
        """Start serving; returns (``self``) when the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + wait
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the {self.what} did not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

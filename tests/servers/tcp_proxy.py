"""A TCP proxy on 127.0.0.1 that a test can cut: mid-transfer, or by dropping the next response.

The storage fault tests put it between s3fs and the loopback S3 server (moto
keeps its data in memory and loses it when stopped, so the proxy is cut, not
the server). ``cut_after(n)`` closes every connection once ``n`` more bytes of
requests went through and refuses traffic until :meth:`resume`;
``drop_next_response()`` forwards the next request whole but closes the
client's connection instead of forwarding the answer (a write whose outcome
the client cannot know).
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Any


class CuttableProxy:
    """Forward ``127.0.0.1:<port>`` to ``target`` until told to cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._budget: int | None = None  # bytes of requests still allowed; None = unlimited
        self._cut = False
        self._drop_response = False
        self._sockets: set[socket.socket] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---------------------------------------------------------------- control
    def cut_after(self, n_bytes: int) -> None:
        """Let ``n_bytes`` more request bytes through, then close everything and refuse traffic."""
        with self._lock:
            self._budget = n_bytes

    def drop_next_response(self) -> None:
        """Forward the next request; close the client's connection instead of answering it (once)."""
        with self._lock:
            self._drop_response = True

    def resume(self) -> None:
        """Forward traffic normally again."""
        with self._lock:
            self._budget, self._cut, self._drop_response = None, False, False

    @property
    def is_cut(self) -> bool:
        return self._cut

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._close_all()

    # ---------------------------------------------------------------- machinery
    def _close_all(self) -> None:
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        sent_request = False
        try:
            while not self._stop.is_set() and not self._cut:
                ready, _, _ = select.select([client, upstream], [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        data = self._spend(data)
                        if data is None:
                            return
                        upstream.sendall(data)
                        sent_request = True
                    else:
                        with self._lock:
                            drop = self._drop_response and sent_request
                            if drop:
                                self._drop_response = False
                        if drop:
                            return  # the server answered; the client never hears it
                        client.sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                with self._lock:
                    self._sockets.discard(sock)
                try:
                    sock.close()
                except OSError:
                    pass

    def _spend(self, data: bytes) -> bytes | None:
        with self._lock:
            if self._budget is None:
                return data
            if len(data) < self._budget:
                self._budget -= len(data)
                return data
            self._budget, self._cut = None, True
        threading.Thread(target=self._close_all, daemon=True).start()
        return None


def proxied_options(options: dict[str, Any], proxy: CuttableProxy) -> dict[str, Any]:
    """fsspec/s3fs options of the loopback S3 server, pointed at the proxy, with no botocore retries."""
    out = {**options, "endpoint_url": proxy.url}
    out["config_kwargs"] = {"connect_timeout": 2, "read_timeout": 5, "retries": {"max_attempts": 1}}
    return out

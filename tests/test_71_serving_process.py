"""`ServerProcess` refuses a port that another server holds (it would answer the readiness probe in its place)."""

from __future__ import annotations

import socket

import pytest

from workbench.serving.errors import ServingError
from workbench.serving.server import ServerProcess


def test_start_on_a_taken_port_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        with pytest.raises(ServingError, match=f"port {port} on 127.0.0.1 is in use already"):
            ServerProcess(port, project_dir=tmp_path).start(timeout=5)

"""A progress bar over the chunks of monthly composites, on threads and on a Dask cluster.

>>> with chunk_progress() as bar:
...     composite_tiles(items, out_dir, agronomic_year=2023)

Inside the ``with`` block, every graph that :func:`monthly_composite` builds
adds its chunks to the bar's total, and every chunk the kernel finishes moves
the bar on: directly when the block runs in this process (threaded or
synchronous scheduler), through a Dask event topic when it runs on a worker
of a distributed cluster (``LocalCluster`` or a scheduler started from the
command line).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

__all__ = ["TOPIC", "ChunkProgress", "chunk_progress", "current", "chunk_done"]

log = logging.getLogger(__name__)

#: Dask event topic on which workers report finished composite chunks.
TOPIC = "workbench-s2-composite-chunk"

_lock = threading.Lock()
_active: dict[str, "ChunkProgress"] = {}
_current: list["ChunkProgress"] = []


class ChunkProgress:
    """A tqdm bar whose total grows with each composite graph and which counts finished chunks."""

    def __init__(self, *, desc: str = "composite chunks", disable: bool = False) -> None:
        from tqdm.auto import tqdm

        self.token = uuid.uuid4().hex
        self.bar = tqdm(total=0, desc=desc, unit="chunk", disable=disable)
        self.done = 0
        self.total = 0

    def add(self, n_chunks: int) -> None:
        """Add ``n_chunks`` to the total (a new graph)."""
        with _lock:
            self.total += int(n_chunks)
            self.bar.total = self.total
            self.bar.refresh()

    def update(self, n: int = 1) -> None:
        """Count ``n`` finished chunks (never beyond the total, e.g. when a chunk is recomputed)."""
        with _lock:
            n = max(0, min(n, self.total - self.done))
            self.done += n
            self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def current() -> ChunkProgress | None:
    """The innermost active :func:`chunk_progress` bar, if any."""
    return _current[-1] if _current else None


def _on_event(event: Any) -> None:
    _, token = event if isinstance(event, tuple) else (None, event)
    bar = _active.get(token)
    if bar is not None:
        bar.update()


@contextlib.contextmanager
def chunk_progress(*, desc: str = "composite chunks", disable: bool = False) -> Iterator[ChunkProgress]:
    """Show a progress bar over the composite chunks computed inside the block."""
    bar = ChunkProgress(desc=desc, disable=disable)
    client = None
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):  # no distributed client: blocks run here
        client = None
    with _lock:
        _active[bar.token] = bar
        _current.append(bar)
    if client is not None:
        client.subscribe_topic(TOPIC, _on_event)
    try:
        yield bar
    finally:
        if client is not None:
            import time

            deadline = time.monotonic() + 2.0  # events from the workers may still be on their way
            while bar.done < bar.total and time.monotonic() < deadline:
                time.sleep(0.02)
            try:
                client.unsubscribe_topic(TOPIC)
            except Exception:  # pragma: no cover - a closed client
                log.debug("could not unsubscribe from %s", TOPIC, exc_info=True)
        with _lock:
            _active.pop(bar.token, None)
            _current.remove(bar)
        bar.close()


def chunk_done(token: str | None) -> None:
    """Called by a composite block when it is done: move the bar ``token`` on, wherever the block ran."""
    if token is None:
        return
    bar = _active.get(token)
    if bar is not None:  # same process: threaded / synchronous scheduler, or the client's own process
        bar.update()
        return
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(TOPIC, token)

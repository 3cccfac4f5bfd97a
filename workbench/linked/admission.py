"""Admission of queries to a fixed number of workers: a bounded, fair wait queue (asyncio).

A query takes a worker at once when one is free and its client holds fewer than
``per_client`` workers; otherwise it waits in a queue of at most ``queue`` entries for at
most ``wait`` seconds. A freed worker goes to the longest-waiting query whose client is
under its cap, so one client's expensive queries cannot hold every worker while other
clients wait. A full queue is answered at once (:class:`QueueFull`), a wait past its bound
with :class:`WaitTimeout`; both carry a ``retry_after`` hint in seconds.

All methods run in one event loop (the server's); nothing here blocks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["Admission", "AdmissionStats", "QueueFull", "WaitTimeout"]


class QueueFull(Exception):
    """Every worker is busy and the wait queue is full."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WaitTimeout(QueueFull):
    """A query waited for a worker longer than the wait bound."""


@dataclass
class AdmissionStats:
    """Counters of an :class:`Admission` (read by the endpoint's ``/stats``)."""

    admitted: int = 0
    waited: int = 0
    refused_full: int = 0
    refused_wait: int = 0
    running: dict[str, int] = field(default_factory=dict)


@dataclass
class _Waiter:
    client: str
    future: asyncio.Future[None]


class Admission:
    """Admit queries to ``workers`` slots, fairly across clients.

    Parameters
    ----------
    workers
        Queries evaluated at once.
    queue
        Queries that may wait for a slot; beyond that a query is refused at once.
    wait
        Longest wait for a slot, seconds.
    per_client
        Slots one client may hold at once (``None``: ``max(1, workers - 1)``, so a single
        client never takes the last worker while another client waits).
    """

    def __init__(self, *, workers: int, queue: int, wait: float, per_client: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if queue < 0:
            raise ValueError(f"queue must be 0 or more, got {queue}")
        if wait < 0:
            raise ValueError(f"wait must be 0 or more seconds, got {wait}")
        self.workers = workers
        self.queue = queue
        self.wait = wait
        self.per_client = per_client if per_client is not None else max(1, workers - 1)
        if self.per_client < 1:
            raise ValueError(f"per_client must be at least 1, got {per_client}")
        self._running: collections.Counter[str] = collections.Counter()
        self._busy = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self.stats = AdmissionStats()

    @property
    def busy(self) -> int:
        """Slots held now."""
        return self._busy

    @property
    def waiting(self) -> int:
        """Queries waiting now."""
        return len(self._waiters)

    def _eligible(self, client: str) -> bool:
        return self._busy < self.workers and self._running[client] < self.per_client

    def _take(self, client: str) -> None:
        self._busy += 1
        self._running[client] += 1
        self.stats.admitted += 1

    def _release(self, client: str) -> None:
        self._busy -= 1
        self._running[client] -= 1
        if self._running[client] <= 0:
            del self._running[client]
        self._grant()

    def _grant(self) -> None:
        """Hand free slots to the longest-waiting queries whose clients are under their cap."""
        for waiter in list(self._waiters):
            if self._busy >= self.workers:
                return
            if waiter.future.done() or not self._eligible(waiter.client):
                continue
            self._waiters.remove(waiter)
            self._take(waiter.client)
            waiter.future.set_result(None)

    async def acquire(self, client: str, *, wait: float | None = None) -> None:
        """Take a worker slot for ``client``, waiting (bounded) in the fair queue; pair with :meth:`release`.

        Raises
        ------
        QueueFull
            When no slot is free and ``queue`` queries already wait.
        WaitTimeout
            When no slot came free within ``wait`` seconds (default: the admission's).
        """
        limit = self.wait if wait is None else wait
        if self._eligible(client) and not any(self._eligible(w.client) for w in self._waiters):
            self._take(client)
            return
        if len(self._waiters) >= self.queue:
            self.stats.refused_full += 1
            raise QueueFull(f"all {self.workers} query workers are busy and {self.queue} queries wait",
                            retry_after=max(1, round(limit / 4)))
        waiter = _Waiter(client, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self.stats.waited += 1
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout=limit)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release(client)  # granted just as the wait ended: hand it on
            else:
                waiter.future.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, asyncio.CancelledError):
                raise
            self.stats.refused_wait += 1
            raise WaitTimeout(f"no query worker came free within {limit:g} s "
                              f"({self.workers} workers, {self.waiting} queries waiting)",
                              retry_after=max(1, round(limit / 4))) from None

    def release(self, client: str) -> None:
        """Give back a slot taken by :meth:`acquire` (call it in the admission's event loop)."""
        self._release(client)

    @contextlib.asynccontextmanager
    async def slot(self, client: str, *, wait: float | None = None) -> AsyncIterator[None]:
        """Hold a worker slot for ``client`` while the block runs (:meth:`acquire` + :meth:`release`)."""
        await self.acquire(client, wait=wait)
        try:
            yield
        finally:
            self._release(client)

    def snapshot(self) -> AdmissionStats:
        """The counters, with the slots each client holds now."""
        self.stats.running = dict(self._running)
        return self.stats

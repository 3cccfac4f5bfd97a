"""Server-side batching: concurrent small requests gathered into one model call.

A :class:`Batcher` owns a bounded asyncio queue and one task. A request puts its
checked inputs in the queue (a full queue answers
:class:`~workbench.serving.errors.Overloaded`, HTTP 503) and awaits its future. The
task takes the first waiting request, then keeps taking requests until the batch
holds ``max_batch_size`` rows or ``batch_timeout_ms`` has passed since the first
one, concatenates the inputs along the batch axis, runs the model once in a worker
thread and hands each request its own rows. A request larger than
``max_batch_size`` runs alone. Every row of a model's output depends only on the
same row of its input (inference mode: no batch statistics), so an answer is the
unbatched call's answer — up to float rounding: CPU kernels (oneDNN, Eigen) pick their
blocking by batch size, so one row's result may differ in the last bit between a
batch of 1 and a batch of 8. With ``pad_to_max_batch`` every model call is padded with
zero rows to ``max_batch_size`` rows (the padding is dropped from the answer): the
kernel then always sees the same shape and answers are bit-identical whatever the
batching, at the cost of computing the padding.

``max_batch_size=1`` (or ``enabled=False``) turns batching off: each request is
its own model call, still through the queue, so the queue bound holds either way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from workbench.serving.errors import BadRequest, Overloaded

__all__ = ["Batcher", "BatchingOptions", "Retired"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchingOptions:
    """Options of server-side batching.

    Attributes
    ----------
    enabled
        Gather concurrent requests (False: one model call per request).
    max_batch_size
        Most rows in one model call.
    batch_timeout_ms
        Longest wait for more requests after the first one of a batch.
    max_queue
        Most requests waiting; one more is answered 503.
    pad_to_max_batch
        Pad every model call to ``max_batch_size`` rows: bit-identical answers
        whatever the batching (see the module docstring).
    """

    enabled: bool = True
    max_batch_size: int = 64
    batch_timeout_ms: float = 2.0
    max_queue: int = 256
    pad_to_max_batch: bool = False

    def __post_init__(self) -> None:
        for flag in ("enabled", "pad_to_max_batch"):
            if not isinstance(getattr(self, flag), bool):
                raise BadRequest(f"batching {flag!r} must be true or false, got {getattr(self, flag)!r}")
        for name, lo in (("max_batch_size", 1), ("max_queue", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise BadRequest(f"batching {name!r} must be an integer >= {lo}, got {v!r}")
        t = self.batch_timeout_ms
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 10_000:
            raise BadRequest(f"batching 'batch_timeout_ms' must be a number in [0, 10000], got {t!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, object] | None) -> BatchingOptions:
        """Options from a mapping (unknown keys are an error)."""
        d = dict(d or {})
        known = {"enabled", "max_batch_size", "batch_timeout_ms", "max_queue", "pad_to_max_batch"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BadRequest(f"unknown batching option(s) {unknown}: expected {', '.join(sorted(known))}")
        return cls(**d)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """The options as a JSON-able mapping."""
        return {"enabled": self.enabled, "max_batch_size": self.max_batch_size,
                "batch_timeout_ms": self.batch_timeout_ms, "max_queue": self.max_queue,
                "pad_to_max_batch": self.pad_to_max_batch}


class Retired(Overloaded):
    """The batcher was closed (its model was replaced or stopped): resubmit to the current one."""


Predict = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


class _Item:
    __slots__ = ("future", "inputs", "rows")

    def __init__(self, inputs: Mapping[str, np.ndarray], future: asyncio.Future[dict[str, np.ndarray]]) -> None:
        self.inputs = inputs
        self.rows = len(next(iter(inputs.values())))
        self.future = future


class Batcher:
    """Gather requests for one model; see the module docstring.

    Parameters
    ----------
    predict
        The model call on a dict of arrays (runs in a worker thread).
    options
        Batching options.
    name
        For log messages.
    """

    def __init__(self, predict: Predict, options: BatchingOptions, *, name: str = "") -> None:
        self._predict = predict
        self.options = options
        self.name = name
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")
        self.calls = 0
        self.rows = 0
        self._carry: _Item | None = None
        self._busy = False
        self.closed = False

    def _ensure(self) -> asyncio.Queue[_Item]:
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self.options.max_queue)
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")
        return self._queue

    @property
    def pending(self) -> int:
        """Requests waiting in the queue."""
        return 0 if self._queue is None else self._queue.qsize()

    async def submit(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs for ``inputs`` (rows of one request).

        Raises
        ------
        Overloaded
            The queue is full.
        """
        if self.closed:
            raise Retired(f"serving {self.name!r}: this model was retired")
        queue = self._ensure()
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        try:
            queue.put_nowait(_Item(inputs, future))
        except asyncio.QueueFull:
            raise Overloaded(
                f"serving {self.name!r} is overloaded: {self.options.max_queue} requests are waiting; retry later"
            ) from None
        return await future

    async def _gather(self, queue: asyncio.Queue[_Item]) -> list[_Item]:
        first = await queue.get()
        self._busy = True
        batch = [first]
        rows = first.rows
        limit = self.options.max_batch_size if self.options.enabled else 1
        if rows >= limit:
            return batch
        deadline = time.monotonic() + self.options.batch_timeout_ms / 1000.0
        while rows < limit:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=left)
                except TimeoutError:
                    break
            if rows + item.rows > limit:
                # does not fit: run it first in the next batch
                self._carry = item
                break
            batch.append(item)
            rows += item.rows
        return batch

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            if self._carry is not None:
                carried, self._carry = self._carry, None
                self._busy = True
                batch = [carried]
                # fill the rest of its batch without waiting
                rows = carried.rows
                limit = self.options.max_batch_size if self.options.enabled else 1
                while rows < limit and not self._queue.empty():
                    nxt = self._queue.get_nowait()
                    if rows + nxt.rows > limit:
                        self._carry = nxt
                        break
                    batch.append(nxt)
                    rows += nxt.rows
            else:
                batch = await self._gather(self._queue)
            live = [it for it in batch if not it.future.done()]
            if not live:
                self._busy = False
                continue
            try:
                if len(live) == 1:
                    joined = live[0].inputs
                else:
                    joined = {k: np.concatenate([it.inputs[k] for it in live]) for k in live[0].inputs}
                joined = self._pad(joined)
                outputs = await loop.run_in_executor(self._executor, self._predict, joined)
            except Exception as exc:  # noqa: BLE001 - each waiting request gets the model's error
                for it in live:
                    if not it.future.done():
                        it.future.set_exception(exc)
                self._busy = False
                continue
            self._busy = False
            self.calls += 1
            start = 0
            for it in live:
                stop = start + it.rows
                if not it.future.done():
                    it.future.set_result({k: v[start:stop] for k, v in outputs.items()})
                start = stop
            self.rows += start

    def _pad(self, inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """Inputs padded with zero rows to ``max_batch_size`` when ``pad_to_max_batch`` is on."""
        size = self.options.max_batch_size
        rows = len(next(iter(inputs.values())))
        if not self.options.pad_to_max_batch or rows >= size:
            return inputs
        return {k: np.concatenate([v, np.zeros((size - rows, *v.shape[1:]), v.dtype)]) for k, v in inputs.items()}

    async def close(self, *, drain_timeout: float = 30.0) -> None:
        """Stop after the waiting requests are answered (or ``drain_timeout`` seconds)."""
        self.closed = True
        if self._task is None:
            self._executor.shutdown(wait=False)
            return
        deadline = time.monotonic() + drain_timeout
        while self._queue is not None and (not self._queue.empty() or self._carry is not None or self._busy):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.005)
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass
        while self._queue is not None and not self._queue.empty():
            it = self._queue.get_nowait()
            if not it.future.done():
                it.future.set_exception(Overloaded(f"serving {self.name!r} was stopped"))
        self._executor.shutdown(wait=False)

"""Chunk-by-chunk computation on the Dask cluster, with progress and cancellation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Cancelled", "compute_blocks", "gather_tasks", "scaled"]

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised by a progress callback to stop a run (a dismissed job)."""


def scaled(progress: Callable[[float, str], None] | None, lo: float, hi: float) -> Callable[[float, str], None]:
    """A progress callback mapping 0–1 onto ``lo``–``hi`` of ``progress`` (a no-op when ``progress`` is None)."""

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(lo + (hi - lo) * min(max(fraction, 0.0), 1.0), message)

    return report


def compute_blocks(
    array: Any,
    *,
    client: Any,
    progress: Callable[[float, str], None] | None = None,
    message: str = "chunks",
) -> np.ndarray:
    """Compute a 2-D or 3-D Dask array on ``client`` block by block, reporting each finished block.

    The blocks are submitted together (one graph, so shared inputs are computed
    once) and gathered as they finish. An exception raised by ``progress``
    (e.g. :class:`Cancelled`) cancels the blocks still running and propagates.
    """
    blocks = array.to_delayed()
    futures = client.compute(list(blocks.ravel()))
    results = gather_tasks(futures, client=client, progress=progress, message=message)
    grid = np.empty(blocks.shape, dtype=object)
    for i, value in enumerate(results):
        grid.ravel()[i] = value
    return np.block(grid.tolist())


def gather_tasks(
    futures: list[Any],
    *,
    client: Any,
    progress: Callable[[float, str], None] | None = None,
    message: str = "tasks",
) -> list[Any]:
    """Results of ``futures`` in their order, reporting each finished one; an exception raised by
    ``progress`` (e.g. :class:`Cancelled`) or by a task cancels the others and propagates."""
    from distributed import as_completed

    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    try:
        for done, fut in enumerate(as_completed(futures), start=1):
            results[index[fut.key]] = fut.result()
            if progress is not None:
                progress(done / len(futures), f"{message}: {done}/{len(futures)}")
    except BaseException:
        client.cancel(futures)
        raise
    return results

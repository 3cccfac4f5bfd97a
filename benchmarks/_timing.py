"""Timing shared by the benchmark scripts (a private module: ``run_all.py`` does not run it)."""

from __future__ import annotations

import time
from typing import Any, Callable

__all__ = ["best_of"]


def best_of(fn: Callable[[], Any], *, repeat: int = 3, stop_after: float | None = None) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs of ``fn`` and its last result (the machine is shared and noisy).

    ``stop_after``: seconds; once the best run is slower than that, no further run is made.
    """
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
        if stop_after is not None and best > stop_after:
            break
    return best, out

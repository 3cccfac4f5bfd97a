"""The inference log: one row per request, appended in batches to the ``inference_log`` feature group.

A request handler calls :meth:`InferenceLogger.log`, which only appends a dict to an
in-memory buffer (no I/O on the request path). A background thread writes the
buffer every ``flush_interval`` seconds (default :data:`FLUSH_INTERVAL`, 1 s) as one
Delta commit of the feature group ``inference_log`` (version 1, primary key
``request_id``, event time ``time``) of the project's feature store, so the log is
readable with time travel (``fg.read(version=...)``, ``fg.as_of(...)``) and DuckDB.

Durability: :meth:`InferenceLogger.close` (called on a clean server shutdown,
SIGTERM or SIGINT) writes what is buffered. A crash (``kill -9``) loses at most the
rows of the last flush interval plus the commit in progress. A failed write keeps
its rows buffered and is retried at the next interval.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["COLUMNS", "FLUSH_INTERVAL", "GROUP", "InferenceLogger", "prediction_summary", "read_inference_log"]

log = logging.getLogger(__name__)

#: Seconds between two writes of the buffered log rows.
FLUSH_INTERVAL = 1.0
#: Name of the feature group.
GROUP = "inference_log"
GROUP_VERSION = 1
#: Column -> pandas dtype of the log rows.
COLUMNS: dict[str, str] = {
    "request_id": "object",
    "client_id": "object",
    "time": "datetime64[us, UTC]",
    "project": "object",
    "user": "object",
    "key_prefix": "object",
    "serving": "object",
    "model": "object",
    "model_version": "int64",
    "protocol": "object",
    "endpoint": "object",
    "status": "int64",
    "latency_ms": "float64",
    "rows": "int64",
    "input_shape": "object",
    "class_counts": "object",
    "mean_confidence": "float64",
    "error": "object",
}
_DEFAULTS: dict[str, Any] = {
    "client_id": "", "project": "", "user": "", "key_prefix": "", "serving": "", "model": "", "model_version": -1,
    "protocol": "", "endpoint": "", "status": 0, "latency_ms": float("nan"), "rows": 0, "input_shape": "",
    "class_counts": "", "mean_confidence": float("nan"), "error": "",
}


def prediction_summary(outputs: Mapping[str, np.ndarray], n_classes: int | None) -> tuple[str, float]:
    """Per-class counts of the predicted classes (JSON list) and the mean top probability.

    For a classifier (first output ``(rows, k)``); other outputs give ``("", nan)``.
    """
    if not outputs or not n_classes:
        return "", float("nan")
    first = next(iter(outputs.values()))
    if first.ndim != 2 or first.shape[1] != n_classes:
        return "", float("nan")
    counts = np.bincount(first.argmax(axis=1), minlength=n_classes)
    return json.dumps([int(c) for c in counts]), float(first.max(axis=1).mean()) if len(first) else float("nan")


def _frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    data = {c: [r.get(c, _DEFAULTS.get(c)) for r in rows] for c in COLUMNS}
    frame = pd.DataFrame(data)
    for c, dtype in COLUMNS.items():
        if c == "time":
            frame[c] = pd.to_datetime(frame[c], utc=True).astype(dtype)
        elif dtype == "object":
            frame[c] = frame[c].astype(str)
        else:
            frame[c] = frame[c].astype(dtype)
    return frame


class InferenceLogger:
    """Buffered writer of the inference log (see the module docstring).

    Parameters
    ----------
    project
        Project directory or Settings (None: the current settings).
    flush_interval
        Seconds between writes.
    max_buffer
        Most rows held; beyond it the oldest are dropped and counted in ``dropped``.
    """

    def __init__(self, project: Any = None, *, flush_interval: float = FLUSH_INTERVAL,
                 max_buffer: int = 1_000_000) -> None:
        if not 0.01 <= float(flush_interval) <= 3600:
            raise ValueError(f"flush_interval must be in [0.01, 3600] seconds, got {flush_interval!r}")
        self.project = project
        self.flush_interval = float(flush_interval)
        self._buffer: deque[dict[str, Any]] = deque()
        self._max = int(max_buffer)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._group: Any = None
        self.written = 0
        self.dropped = 0
        self.commits = 0
        self._thread: threading.Thread | None = None

    def start(self) -> InferenceLogger:
        """Open the feature group (imports, Delta metadata: the first write is then as fast as the
        others) and start the background writer."""
        try:
            import dask.dataframe  # noqa: F401 - FeatureGroup.insert imports it; pay that at start, not in a flush
            import deltalake  # noqa: F401

            self.group().has_data()
        except Exception:  # noqa: BLE001 - the first flush retries and logs the error
            log.exception("cannot open the inference-log feature group yet")
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="inference-log", daemon=True)
            self._thread.start()
        return self

    def log(self, entry: Mapping[str, Any]) -> None:
        """Buffer one log row (``request_id`` and ``time`` are filled in when missing)."""
        row = dict(entry)
        row.setdefault("time", _dt.datetime.now(_dt.UTC))
        if "request_id" not in row:
            import uuid

            row["request_id"] = uuid.uuid4().hex
        with self._lock:
            if len(self._buffer) >= self._max:
                self._buffer.popleft()
                self.dropped += 1
            self._buffer.append(row)

    @property
    def pending(self) -> int:
        """Rows buffered, not written yet."""
        return len(self._buffer)

    def group(self) -> Any:
        """The ``inference_log`` feature group (created on first use)."""
        if self._group is None:
            from workbench.featurestore import FeatureStore

            fs = FeatureStore(self.project)
            self._group = fs.get_or_create_feature_group(
                GROUP, GROUP_VERSION, primary_key=["request_id"], event_time="time",
                description="one row per inference request of the serving server",
            )
        return self._group

    def flush(self) -> int:
        """Write the buffered rows as one commit; the number written."""
        with self._write_lock:
            with self._lock:
                rows = list(self._buffer)
                self._buffer.clear()
            if not rows:
                return 0
            try:
                self.group().insert(_frame(rows))
            except Exception:
                log.exception("writing %d inference-log rows failed; retrying later", len(rows))
                with self._lock:
                    self._buffer.extendleft(reversed(rows))
                return 0
            self.written += len(rows)
            self.commits += 1
            return len(rows)

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            started = time.monotonic()
            self.flush()
            log.debug("inference log flush took %.3f s", time.monotonic() - started)

    def close(self) -> None:
        """Stop the writer and write what is buffered."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        for _ in range(3):
            self.flush()
            if not self._buffer:
                break


def read_inference_log(project: Any = None, *, serving: str | None = None, as_of: Any = None,
                       version: int | None = None) -> pd.DataFrame:
    """The inference log as a DataFrame (empty when nothing was logged yet).

    Parameters
    ----------
    project
        Project directory or Settings.
    serving
        Only the rows of this serving.
    as_of, version
        Time travel: the log as it was at a wall-clock time, or at a Delta version.
    """
    from workbench.featurestore import FeatureStore, FeatureStoreError

    fs = FeatureStore(project)
    try:
        fg = fs.get_feature_group(GROUP, GROUP_VERSION)
        if not fg.has_data():
            raise FeatureStoreError("empty")
        frame = fg.read(as_of, version=version)
    except FeatureStoreError:
        return _frame([]).iloc[0:0]
    if serving is not None:
        frame = frame[frame["serving"] == serving]
    return frame.sort_values("time").reset_index(drop=True)

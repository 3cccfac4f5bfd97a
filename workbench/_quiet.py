"""Silencing what a user cannot act on, and nothing else.

* :func:`ipc_kernel_manager` — pipeline kernels talk over local IPC sockets, so
  ipykernel has no reason to warn that TCP is unencrypted (and no port races);
* :func:`quiet_tensorflow` — drops TensorFlow's "triggered tf.function
  retracing" notices (patch-wise prediction calls the model with changing
  batch sizes by design);
* :func:`quiet_logger` — a logger held at a higher level for a block (urllib3's
  per-retry warnings before the one clear error a catalogue search raises);
* the Zarr notice that consolidated metadata is not in the Zarr v3 spec (the
  workbench consolidates on purpose, for object-store reads).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
import functools
from typing import Any, Iterator

__all__ = ["ipc_kernel_manager", "quiet_tensorflow", "quiet_logger", "quiet_zarr"]


@functools.cache
def ipc_kernel_manager() -> Any:
    """A kernel-manager class whose kernels use IPC transport (POSIX), TCP elsewhere."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class IPCKernelManager(AsyncKernelManager):  # type: ignore[misc]
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc" if os.name == "posix" else "tcp",
                                    config=True)

    return IPCKernelManager


class _DropMessages(logging.Filter):
    def __init__(self, *needles: str) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self.needles)


_RETRACING = _DropMessages("triggered tf.function retracing")


def quiet_tensorflow() -> None:
    """Drop TensorFlow's retracing notices from its logger (idempotent)."""
    logger = logging.getLogger("tensorflow")
    if _RETRACING not in logger.filters:
        logger.addFilter(_RETRACING)


@contextlib.contextmanager
def quiet_logger(name: str, level: int = logging.ERROR) -> Iterator[None]:
    """Hold logger ``name`` at ``level`` or above for the block (unless it is already higher)."""
    logger = logging.getLogger(name)
    old = logger.level
    if old < level:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


def quiet_zarr() -> None:
    """Ignore Zarr's notice that consolidated metadata is not part of the Zarr v3 specification."""
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)

"""Entry point of one rank's TensorFlow process: ``python -m workbench.training._distributed_worker``.

Started by the rank's Dask task (:mod:`workbench.training._distributed_task`) with ``TF_CONFIG`` in its
environment and the pickled :class:`~workbench.training._distributed_loop.RunSpec` on stdin. A fresh
process per run, because TensorFlow's collective context can be set up only once per process while Dask
workers live on. It reports on stdout, one JSON line per record after a marker, and exits (without
TensorFlow's teardown) as soon as it is done; it exits at once when the process that started it dies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

__all__ = ["ERROR", "PROGRESS", "RESULT", "main"]

RESULT = "@@wb-dist-result@@ "
ERROR = "@@wb-dist-error@@ "
PROGRESS = "@@wb-dist-progress@@ "
#: Exit status when the parent (the Dask worker) went away.
ORPHANED = 70


def _say(marker: str, record: Any) -> None:
    sys.stdout.write(marker + json.dumps(record, default=float) + "\n")
    sys.stdout.flush()


def _watch_parent(parent: int, interval: float = 0.5) -> None:
    """Exit when the parent process is gone (its Dask worker was killed): peers then fail at once."""

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(ORPHANED)
            time.sleep(interval)

    threading.Thread(target=watch, name="wb-parent-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one rank: read the spec from stdin, train, print the result; the exit status tells success."""
    parser = argparse.ArgumentParser(prog="python -m workbench.training._distributed_worker")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--n-workers", type=int, required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    _watch_parent(args.parent_pid or os.getppid())
    try:
        from distributed.protocol import pickle as dask_pickle

        from workbench.training._distributed_loop import train

        spec = dask_pickle.loads(sys.stdin.buffer.read())
        result = train(spec, rank=args.rank, n_workers=args.n_workers, emit=lambda r: _say(PROGRESS, r))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the Dask task, then to the caller
        _say(
            ERROR,
            {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()[-6000:]},
        )
        os._exit(1)
    _say(RESULT, result)
    os._exit(0)


if __name__ == "__main__":
    main()

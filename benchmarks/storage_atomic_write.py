"""Cost of atomic writes: workbench.storage.write_bytes against a plain open/write, same files, same run.

The atomic write adds a temporary file, an fsync and a rename; this measures what that costs
per write for small (4 KiB) and larger (8 MiB) payloads on the local disk.

    python benchmarks/storage_atomic_write.py [--small]

Last line: ``atomic_write_cost_vs_plain_write: <ratio>x`` (time of atomic / time of plain, 8 MiB).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from workbench.storage import write_bytes


def _plain(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _time(fn, path: Path, data: bytes, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(path, data)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 10 if args.small else 50
    ratio = float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (4 * 1024, 8 * 1024 * 1024):
            data = os.urandom(size)
            plain = _time(_plain, Path(tmp) / "plain.bin", data, repeats)
            atomic = _time(write_bytes, Path(tmp) / "atomic.bin", data, repeats)
            ratio = atomic / plain
            print(f"{size / 1024:>8.0f} KiB  plain {plain * 1e3:8.3f} ms  atomic {atomic * 1e3:8.3f} ms  ratio {ratio:5.2f}x")
    print(f"atomic_write_cost_vs_plain_write: {ratio:.2f}x")


if __name__ == "__main__":
    main()

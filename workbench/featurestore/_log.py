"""Read the commit information of a Delta table's log (``_delta_log/<version>.json``) through fsspec.

deltalake's own ``history()`` keeps Python's GIL while it waits on the object
store, which blocks an S3 server running in the same process (tests, local
demos); reading the few commit files we need through fsspec does not.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any, Mapping

from workbench import storage

__all__ = ["commit_infos"]

_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")


def commit_infos(
    table_url: str, *, storage_options: Mapping[str, Any] | None, limit: int | None = None
) -> list[dict[str, Any]]:
    """``commitInfo`` of the newest ``limit`` commits (all when None), newest first, each with its ``version``."""
    log_url = storage.join(table_url, "_delta_log")
    fs, path = storage.filesystem(log_url, storage_options)
    fs.invalidate_cache(path)
    try:
        names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)]
    except FileNotFoundError:
        return []
    versions = sorted((int(m.group(1)) for n in names if (m := _COMMIT_FILE.match(n))), reverse=True)
    if limit is not None:
        versions = versions[:limit]
    files = [posixpath.join(path, f"{v:020d}.json") for v in versions]
    contents = fs.cat(files) if files else {}
    out = []
    for version, file in zip(versions, files):
        data = contents[file] if isinstance(contents, dict) else contents
        info: dict[str, Any] = {}
        for line in data.decode().splitlines():
            if line.strip():
                action = json.loads(line)
                if "commitInfo" in action:
                    info = dict(action["commitInfo"])
                    break
        info["version"] = version
        out.append(info)
    return out

"""Checksums of run outputs over their content, not over the bytes a writer happens to stamp.

Two runs of a seeded, deterministic stage write the same data, but some writers stamp each write: Keras puts
``date_saved`` into a ``.keras`` archive (and the ZIP format a time into every member), the feature store names
commits and files by random ids and dates its metadata, Delta Lake logs commit times, and run metadata carry
durations and throughput figures. :func:`content_checksum` hashes what is left when those stamps are taken out:

* a ZIP (``.keras``, ``.zip``): member names and contents, not the members' times; JSON members canonicalised
  (Keras' ``shared_object_id``, the ``id()`` of an object in the saving process, renumbered);
* JSON (``.json``, Delta-log lines): parsed, keys of :data:`VOLATILE_KEYS` dropped, random ids masked, dumped
  with sorted keys;
* Parquet: the table's schema and rows (random ids masked in string columns), not the file's own metadata;
* a folder: each file's relative name (random ids masked) and content checksum, sorted;
* anything else: the bytes.

A random id is a UUID or 32 hex digits (what ``uuid4().hex`` gives); dates and numbers are data and stay.
With ``base`` (the run's project directory), that path is masked too wherever content names it, so that a
replay into another project directory compares equal.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["content_checksum", "VOLATILE_KEYS", "VOLATILE_SUFFIXES"]

#: JSON keys whose values are stamps of one particular write (times, durations, speeds, random ids).
VOLATILE_KEYS = frozenset({
    "date_saved", "created_at", "updated_at", "created", "timestamp", "modificationTime", "deletionTimestamp", "createdTime",
    "execution_time_ms", "commit_id", "commit_time", "committed", "started", "ended", "duration", "duration_s",
    "seconds", "patches_per_s", "samples_per_s", "train_seconds", "fit_seconds", "elapsed", "elapsed_s", "txnId",
    "run_id", "artifact_uri", "time", "when", "clientVersion", "engineInfo", "num_retries",
})
#: (RE2 syntax too: Arrow's regular expressions run it over Parquet string columns.)
#: Key endings that mark a measured time or speed (``train_patches_per_s``, ``fit_seconds``...).
VOLATILE_SUFFIXES = ("_per_s", "_per_second", "_seconds", "_time_s", "_time_ms", "_duration_s")
_RANDOM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[0-9a-f]{32}\b")
_BLOCK = 1 << 20


def _mask(text: str, base: str | None = None) -> str:
    if base:
        text = text.replace(base, "<project>")
    return _RANDOM_ID.sub("<id>", text)


def _canonical(value: Any, base: str | None) -> Any:
    if isinstance(value, dict):
        return {_mask(str(k), base): _canonical(v, base) for k, v in value.items()
                if k not in VOLATILE_KEYS and not str(k).endswith(VOLATILE_SUFFIXES)}
    if isinstance(value, list):
        return [_canonical(v, base) for v in value]
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in "{[" and len(stripped) < 1 << 24:  # JSON nested in a string (Delta commit info)
            try:
                return {"<json>": _canonical(json.loads(stripped), base)}
            except ValueError:
                pass
        return _mask(value, base)
    return value


#: Keys whose values are object identities of the writing process (Keras: ``id()`` of a shared object);
#: they are renumbered in order of first appearance.
IDENTITY_KEYS = frozenset({"shared_object_id"})


def _renumber(value: Any, seen: dict[Any, int]) -> Any:
    if isinstance(value, dict):
        return {k: (seen.setdefault(v, len(seen)) if k in IDENTITY_KEYS and not isinstance(v, (dict, list))
                    else _renumber(v, seen)) for k, v in value.items()}
    if isinstance(value, list):
        return [_renumber(v, seen) for v in value]
    return value


def _json_digest(data: bytes, base: str | None) -> bytes | None:
    """Canonical JSON (one document, or one per line as in a Delta log), or None when it is not JSON."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    try:
        docs = [json.loads(text)]
    except ValueError:
        try:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError:
            return None
    seen: dict[Any, int] = {}
    return json.dumps([_canonical(_renumber(d, seen), base) for d in docs], sort_keys=True, default=str).encode()


def _parquet_digest(path: Path, base: str | None) -> bytes | None:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception:  # noqa: BLE001 - not readable as Parquet: hash the bytes
        return None
    digest = hashlib.sha256(_mask(str(table.schema.remove_metadata())).encode())
    for name in table.column_names:
        column = table[name]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            if base:
                column = pc.replace_substring(column, base, "<project>")
            column = pc.replace_substring_regex(column, _RANDOM_ID.pattern, "<id>")
        digest.update(name.encode())
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, pa.schema([(name, column.type)])) as writer:
            writer.write_table(pa.table({name: column}))
        digest.update(sink.getvalue())
    return digest.digest()


def _zip_digest(path: Path, base: str | None) -> bytes | None:
    try:
        with zipfile.ZipFile(path) as archive:
            digest = hashlib.sha256()
            for name in sorted(archive.namelist()):
                data = archive.read(name)
                digest.update(_mask(name).encode())
                digest.update((_json_digest(data, base) if name.endswith(".json") else None) or data)
            return digest.digest()
    except (zipfile.BadZipFile, OSError):
        return None


def _file_digest(path: Path, base: str | None) -> bytes:
    suffix = path.suffix.lower()
    special: bytes | None = None
    if suffix in (".keras", ".zip"):
        special = _zip_digest(path, base)
    elif suffix == ".json" or path.parent.name == "_delta_log":
        if path.stat().st_size < 1 << 26:
            special = _json_digest(path.read_bytes(), base)
    elif suffix == ".parquet":
        special = _parquet_digest(path, base)
    if special is not None:
        return hashlib.sha256(suffix.encode() + special).digest()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.digest()


def content_checksum(path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None) -> str | None:
    """SHA-256 over the content of a file or folder (see the module docstring); None if absent or remote.

    ``base``: a directory (the run's project directory) whose path is masked where the content names it.
    """
    if "://" in str(path):
        return None
    p = Path(path)
    root = str(Path(base).resolve()) if base else None
    if p.is_file():
        return _file_digest(p, root).hex()
    if not p.is_dir():
        return None
    entries = sorted((_mask(str(f.relative_to(p))), _file_digest(f, root)) for f in p.rglob("*") if f.is_file())
    digest = hashlib.sha256()
    for name, file_digest in entries:
        digest.update(name.encode() + b"\0" + file_digest)
    return digest.hexdigest()

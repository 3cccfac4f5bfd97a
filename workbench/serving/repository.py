"""Servings: their stored configuration, and the models a server worker has loaded for them.

* :class:`ServingConfig` — a serving names a project, a registered model and a
  version or an alias, its batching options, the modules to import (custom layers)
  and whether it should run. :class:`ServingStore` keeps every serving of the project
  directory in ``<project_dir>/serving/servings.json``, written under a file lock,
  to a temporary file renamed into place.
* :class:`ModelRepository` — what one server worker serves. It watches the store
  and reconciles: a new serving or a new revision of one (``create_or_update``) is
  loaded and warmed up *beside* the model in use and then swapped in; requests in
  flight finish on the old model, whose batcher is drained before it is dropped. A
  stopped or deleted serving is unloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workbench.serving.batching import Batcher, BatchingOptions
from workbench.serving.errors import BadRequest, NotFound, Overloaded
from workbench.serving.model import ServedModel

__all__ = ["STATUSES", "LiveServing", "ModelRepository", "ServingConfig", "ServingStore", "serving_dir"]

log = logging.getLogger(__name__)
STATUSES = ("running", "stopped")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def serving_dir(project: Any = None) -> Path:
    """``<project_dir>/serving`` (created)."""
    from workbench.featurestore._common import project_settings

    path = Path(project_settings(project).project_dir).absolute() / "serving"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def check_serving_name(name: Any) -> str:
    """``name`` when it is a valid serving name, else BadRequest."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(f"serving name must start with a letter and hold letters, digits, '_', '.', '-' "
                         f"(at most 64 characters), got {name!r}")
    return name


@dataclass(frozen=True)
class ServingConfig:
    """The stored description of one serving."""

    name: str
    project: str
    model_name: str
    model_version: int | None = None
    alias: str | None = None
    status: str = "stopped"
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    imports: tuple[str, ...] = ()
    description: str = ""
    revision: int = 1
    created_at: str = ""
    updated_at: str = ""

    def __post_init__(self) -> None:
        check_serving_name(self.name)
        if self.model_version is not None and self.alias is not None:
            raise BadRequest("give model_version or alias, not both")
        if self.model_version is not None and (isinstance(self.model_version, bool)
                                               or not isinstance(self.model_version, int) or self.model_version < 1):
            raise BadRequest(f"model_version must be an integer >= 1, got {self.model_version!r}")
        if self.status not in STATUSES:
            raise BadRequest(f"status must be one of {STATUSES}, got {self.status!r}")
        if not isinstance(self.batching, BatchingOptions):
            raise BadRequest("batching must be BatchingOptions")

    @property
    def version_ref(self) -> int | str | None:
        """What to ask the registry for: the version number, the alias, or None (latest)."""
        return self.model_version if self.model_version is not None else self.alias

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-able mapping."""
        return {
            "name": self.name, "project": self.project, "model_name": self.model_name,
            "model_version": self.model_version, "alias": self.alias, "status": self.status,
            "batching": self.batching.to_dict(), "imports": list(self.imports), "description": self.description,
            "revision": self.revision, "created_at": self.created_at, "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ServingConfig:
        """Read a config written by :meth:`to_dict`."""
        return cls(
            name=d["name"], project=d["project"], model_name=d["model_name"], model_version=d.get("model_version"),
            alias=d.get("alias"), status=d.get("status", "stopped"),
            batching=BatchingOptions.from_dict(d.get("batching")), imports=tuple(d.get("imports") or ()),
            description=d.get("description", ""), revision=int(d.get("revision", 1)),
            created_at=d.get("created_at", ""), updated_at=d.get("updated_at", ""),
        )


class ServingStore:
    """Every serving of a project directory, in one JSON file.

    Parameters
    ----------
    path
        The JSON file (default ``<project_dir>/serving/servings.json``).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else serving_dir() / "servings.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path.with_suffix(".lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read(self) -> dict[str, ServingConfig]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            raise BadRequest(f"servings file {self.path} is damaged: {exc}") from exc
        return {name: ServingConfig.from_dict(d) for name, d in (raw.get("servings") or {}).items()}

    def _write(self, configs: Mapping[str, ServingConfig]) -> None:
        data = {"servings": {n: c.to_dict() for n, c in sorted(configs.items())}}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".servings.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def token(self) -> tuple[int, int]:
        """A value that changes whenever the file is rewritten (mtime, inode)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_ino)

    def all(self) -> dict[str, ServingConfig]:
        """Every serving, by name."""
        return self._read()

    def get(self, name: str) -> ServingConfig:
        """One serving; NotFound when it does not exist."""
        check_serving_name(name)
        found = self._read().get(name)
        if found is None:
            raise NotFound(f"serving {name!r} does not exist")
        return found

    def put(self, config: ServingConfig) -> ServingConfig:
        """Create or update a serving (a new revision; the status is kept unless given by ``config``)."""
        with self._locked():
            configs = self._read()
            old = configs.get(config.name)
            now = _now()
            new = replace(
                config,
                revision=(old.revision + 1) if old else 1,
                created_at=old.created_at if old else now,
                updated_at=now,
            )
            configs[config.name] = new
            self._write(configs)
        return new

    def set_status(self, name: str, status: str) -> ServingConfig:
        """Mark a serving running or stopped (the revision is unchanged)."""
        if status not in STATUSES:
            raise BadRequest(f"status must be one of {STATUSES}, got {status!r}")
        with self._locked():
            configs = self._read()
            if name not in configs:
                raise NotFound(f"serving {name!r} does not exist")
            configs[name] = replace(configs[name], status=status, updated_at=_now())
            self._write(configs)
        return configs[name]

    def delete(self, name: str) -> None:
        """Remove a serving."""
        with self._locked():
            configs = self._read()
            if configs.pop(name, None) is None:
                raise NotFound(f"serving {name!r} does not exist")
            self._write(configs)


@dataclass
class LiveServing:
    """A serving as one worker serves it: its config, loaded model and batcher."""

    config: ServingConfig
    model: ServedModel
    batcher: Batcher

    def matches(self, *, version: int | None, label: str | None) -> None:
        """Raise NotFound unless this serving answers ``version`` / ``label``."""
        if version is not None and version != self.model.version:
            raise NotFound(f"serving {self.config.name!r} serves model {self.model.model_name!r} version "
                           f"{self.model.version}; version {version} is not loaded")
        if label is not None and label not in self.model.aliases and label != self.config.alias:
            raise NotFound(f"serving {self.config.name!r} has no label {label!r} "
                           f"(labels: {sorted(set(self.model.aliases) | ({self.config.alias} - {None}))})")


class ModelRepository:
    """The servings one worker serves, kept in step with a :class:`ServingStore`.

    Parameters
    ----------
    store
        The servings store.
    project
        Project directory (registry look-ups).
    only
        Serve only these serving names (None: all).
    """

    def __init__(self, store: ServingStore, *, project: Any = None, only: tuple[str, ...] | None = None) -> None:
        self.store = store
        self.project = project
        self.only = only
        self.live: dict[str, LiveServing] = {}
        self.configs: dict[str, ServingConfig] = {}
        self.failures: dict[str, str] = {}
        self.loading: set[str] = set()
        self._token: tuple[int, int] | None = None
        self._lock = asyncio.Lock()
        self._retired: set[asyncio.Task[None]] = set()

    def _wanted(self, name: str) -> bool:
        return self.only is None or name in self.only

    async def reconcile(self) -> None:
        """Load, swap and unload models so that the worker serves what the store says."""
        async with self._lock:
            token = self.store.token()
            if token == self._token:
                return
            configs = {n: c for n, c in self.store.all().items() if self._wanted(n)}
            self.configs = configs
            self._token = token
            for name, live in list(self.live.items()):
                cfg = configs.get(name)
                if cfg is None or cfg.status != "running":
                    del self.live[name]
                    self._retire(live)
                    log.info("unloaded serving %s", name)
            for name, cfg in configs.items():
                if cfg.status != "running":
                    self.failures.pop(name, None)
                    continue
                current = self.live.get(name)
                if current is not None and current.config.revision == cfg.revision:
                    if current.config != cfg:
                        current.config = cfg
                    continue
                await self._load(cfg, current)

    async def _load(self, cfg: ServingConfig, current: LiveServing | None) -> None:
        self.loading.add(cfg.name)
        try:
            model = await asyncio.to_thread(
                ServedModel.from_registry, cfg.model_name, cfg.version_ref, imports=cfg.imports, project=self.project
            )
            if current is not None and current.model.version == model.version and current.model.path == model.path \
                    and current.config.batching == cfg.batching and current.config.imports == cfg.imports:
                current.config = cfg
                return
            await asyncio.to_thread(model.load)
        except Exception as exc:  # noqa: BLE001 - the old model (if any) keeps serving
            self.failures[cfg.name] = f"{type(exc).__name__}: {exc}"
            log.error("serving %s: cannot load %s %s: %s", cfg.name, cfg.model_name, cfg.version_ref, exc)
            return
        finally:
            self.loading.discard(cfg.name)
        self.failures.pop(cfg.name, None)
        batcher = Batcher(model.predict, cfg.batching, name=cfg.name)
        self.live[cfg.name] = LiveServing(cfg, model, batcher)
        if current is not None:
            self._retire(current)
        log.info("serving %s: model %s v%d ready (revision %d)", cfg.name, model.model_name, model.version,
                 cfg.revision)

    def _retire(self, live: LiveServing) -> None:
        async def drain() -> None:
            await live.batcher.close()
            live.model.unload()

        task = asyncio.get_running_loop().create_task(drain())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def get(self, name: str, *, version: int | None = None, label: str | None = None) -> LiveServing:
        """The live serving ``name`` answering ``version``/``label``.

        Raises
        ------
        NotFound
            Unknown serving, version or label.
        Overloaded
            The serving is stopped, still loading, or failed to load (503).
        """
        live = self.live.get(name)
        if live is None:
            cfg = self.configs.get(name)
            if cfg is None:
                raise NotFound(f"serving {name!r} does not exist")
            if cfg.status != "running":
                raise Overloaded(f"serving {name!r} is stopped; start it with 'workbench serve start {name}'")
            if name in self.failures:
                raise Overloaded(f"serving {name!r} could not load its model: {self.failures[name]}")
            raise Overloaded(f"serving {name!r} is loading its model; retry shortly")
        live.matches(version=version, label=label)
        return live

    def config(self, name: str) -> ServingConfig:
        """The stored config of ``name`` as this worker last read it; NotFound if unknown."""
        cfg = self.configs.get(name)
        if cfg is None:
            raise NotFound(f"serving {name!r} does not exist")
        return cfg

    @property
    def ready(self) -> bool:
        """True when every running serving has a loaded model."""
        return all(n in self.live for n, c in self.configs.items() if c.status == "running")

    async def watch(self, interval: float = 0.5) -> None:
        """Reconcile every ``interval`` seconds, forever (a background task)."""
        while True:
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciling servings failed")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Drain and unload every model."""
        for name, live in list(self.live.items()):
            del self.live[name]
            self._retire(live)
        if self._retired:
            await asyncio.gather(*list(self._retired), return_exceptions=True)

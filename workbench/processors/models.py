"""The model a processor runs: embedded (an exported Keras model on the workers) or remote (the model server).

:func:`resolve_model` turns a :class:`~workbench.processors.base.ModelRef` into a
small picklable :class:`ModelSpec` — input shape, class names, fill values,
the exported folder or the server's address — read from the registry's files
without loading Keras. On a Dask worker :func:`predictor` turns the spec into
an object with ``predict_on_batch`` (and ``input_shape``/``output_shape``):
the Keras model itself (embedded, loaded once per worker process), or a
:class:`RemotePredictor` whose ``predict_on_batch`` sends the batch to the
server. Both modes therefore run the same classification code.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import DataError
from workbench.processors.base import InputError, ModelRef

__all__ = ["ModelSpec", "RemotePredictor", "predictor", "registry_lookup", "resolve_model", "warm_workers"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """Everything a worker needs to build a predictor, and the provenance of the model.

    Attributes
    ----------
    mode
        ``embedded`` or ``remote``.
    name, version
        Registered name and version number (``None`` for an exported path given directly).
    path
        Exported model folder (embedded).
    serving_url, api_key, serving_name
        Model server, its key and the serving's name (remote).
    input_shape, output_shape
        Shapes without the batch dimension.
    class_names
        Output class names.
    fill
        Per-band value replacing NaN inputs (the training mean), or ``None``.
    """

    mode: str
    name: str | None
    version: int | None
    path: str | None
    serving_url: str | None
    api_key: str | None
    serving_name: str | None
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    fill: tuple[float, ...] | None

    def provenance(self) -> dict[str, Any]:
        """Model name, version, mode (and server) for the product's metadata — never the key."""
        out = {k: v for k, v in asdict(self).items() if k in ("mode", "name", "version", "serving_name", "serving_url")}
        if self.path is not None and self.name is None:
            out["path"] = self.path
        return out


def _files(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        signature = json.loads((folder / "signature.json").read_text())
        metadata = json.loads((folder / "metadata.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError("model", f"{folder} is not an exported or registered model: {exc}") from None
    return signature, metadata


def _unpacked(archive: Path, project_dir: Path) -> Path:
    """An exported archive unpacked once under the project (``processors/models/<name>-<sha256[:12]>``).

    The workers then load a folder the client chose: none unpacks an archive into its own temporary
    directory (where ``registry.load`` would leave a copy for every worker and every run).
    """
    import hashlib
    import os
    import shutil
    import uuid

    from workbench import registry

    digest = hashlib.sha256()
    with archive.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    stem = archive.name.split(".")[0] or "model"
    target = project_dir / "processors" / "models" / f"{stem}-{digest.hexdigest()[:12]}"
    if (target / "model.keras").is_file():
        return target
    exported = registry.load(archive)  # checks the archive; keeps an unpacked copy at exported.path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        shutil.copytree(exported.path, tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "model.keras").is_file():  # not a lost race with another run
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if exported.path != archive:
            shutil.rmtree(exported.path, ignore_errors=True)
    return target


def _describe(signature: dict[str, Any], metadata: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...],
                                                                          tuple[str, ...], tuple[float, ...] | None]:
    try:
        in_shape = tuple(int(d) for d in signature["inputs"][0]["shape"][1:])
        out_shape = tuple(int(d) for d in signature["outputs"][0]["shape"][1:])
    except (KeyError, IndexError, TypeError) as exc:
        raise InputError("model", f"the model's signature has no fixed input/output shape: {exc}") from None
    params = metadata.get("params", {})
    names_raw = params.get("class_names") or metadata.get("class_names")
    if isinstance(names_raw, str):
        class_names = tuple(n for n in names_raw.split(",") if n)
    elif isinstance(names_raw, list):
        class_names = tuple(str(n) for n in names_raw)
    else:
        class_names = tuple(str(i) for i in range(out_shape[-1]))
    fill_raw = params.get("standardisation_mean")
    fill = None
    if fill_raw:
        try:
            fill = tuple(float(v) for v in (json.loads(fill_raw) if isinstance(fill_raw, str) else fill_raw))
        except (ValueError, TypeError):
            fill = None
    return in_shape, out_shape, class_names, fill


def _registered(ref: ModelRef, project: Any = None) -> Any:
    from workbench import registry

    try:
        if ref.alias is not None:
            return registry.get_model(ref.name, alias=ref.alias, project=project)
        return registry.get_model(ref.name, ref.version, project=project)
    except DataError as exc:
        raise InputError("model", f"model {ref.label} not found in the registry: {exc}") from None


def registry_lookup(ref: ModelRef, *, project: Any = None) -> None:
    """The ``model_lookup`` of :func:`~workbench.processors.base.validate_inputs`: raise if ``ref`` does not exist."""
    if ref.path is not None:
        folder = Path(ref.path)
        if not folder.exists():
            raise InputError("model", f"exported model {ref.path} does not exist")
        if folder.is_dir():
            _files(folder)
        return
    _registered(ref, project)


def _export_dir(project_dir: Path, name: str, version: int) -> Path:
    return project_dir / "processors" / "models" / f"{name}-v{version}"


def resolve_model(
    ref: ModelRef,
    *,
    mode: str,
    serving_url: str | None = None,
    api_key: str | None = None,
    serving_name: str | None = None,
    project: Any = None,
) -> ModelSpec:
    """The :class:`ModelSpec` of ``ref`` in ``mode``.

    Embedded: a registered version is exported once (``registry.export``) to
    ``<project_dir>/processors/models/<name>-v<version>`` and reused; an exported
    path is used as it is when a folder; an archive is unpacked once under
    ``<project_dir>/processors/models/`` and the workers load that folder.
    Remote: the registry gives the version number and the shapes; the server
    is asked for that version.
    """
    from workbench import registry
    from workbench.config import load_settings

    if ref.path is not None:
        if mode == "remote":
            raise InputError("model", "remote mode needs a registered model name and version, not an exported path")
        folder = Path(ref.path).absolute()
        if not folder.exists():
            raise InputError("model", f"exported model {ref.path} does not exist")
        archive = None if folder.is_dir() else folder
        if archive is not None:
            folder = _unpacked(archive, Path(load_settings().project_dir))
        signature, metadata = _files(folder)
        if archive is not None:
            from workbench.pipeline import record_usage

            record_usage("models", {"name": metadata.get("name"), "version": metadata.get("version"),
                                    "run_id": metadata.get("run_id"), "source": str(archive)})
        in_shape, out_shape, names, fill = _describe(signature, metadata)
        version = metadata.get("version")
        return ModelSpec(
            mode="embedded", name=metadata.get("name"), version=int(version) if version else None, path=str(folder),
            serving_url=None, api_key=None, serving_name=None, input_shape=in_shape, output_shape=out_shape,
            class_names=names, fill=fill,
        )
    mv = _registered(ref, project)
    signature, metadata = _files(Path(mv.path))
    in_shape, out_shape, names, fill = _describe(signature, metadata)
    path = None
    if mode == "embedded":
        settings = project if hasattr(project, "project_dir") else load_settings()
        target = _export_dir(Path(settings.project_dir), mv.name, mv.version)
        if not (target / "model.keras").is_file():
            try:
                registry.export(mv.name, mv.version, target, project=project)
            except DataError:
                if not (target / "model.keras").is_file():  # not a lost race with another run
                    raise
        path = str(target)
    return ModelSpec(
        mode=mode, name=mv.name, version=mv.version, path=path,
        serving_url=serving_url if mode == "remote" else None, api_key=api_key if mode == "remote" else None,
        serving_name=(serving_name or mv.name) if mode == "remote" else None,
        input_shape=in_shape, output_shape=out_shape, class_names=names, fill=fill,
    )


class RemotePredictor:
    """``predict_on_batch`` over the model server (TF-Serving REST ``:predict``), like a Keras model."""

    def __init__(self, spec: ModelSpec) -> None:
        from workbench.serving.client import ServingClient

        if spec.serving_url is None or spec.api_key is None or spec.serving_name is None:
            raise InputError("serving_url", "remote mode needs serving_url, api_key and a serving name")
        self.spec = spec
        self.client = ServingClient(spec.serving_url, spec.api_key, timeout=120.0)
        self.input_shape = (None, *spec.input_shape)
        self.output_shape = (None, *spec.output_shape)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch, from the server."""
        return self.client.predict(self.spec.serving_name, np.asarray(x, dtype=np.float32), version=self.spec.version)

    def predict(self, x: np.ndarray, *, batch_size: int = 4096, verbose: int = 0) -> np.ndarray:
        """Keras-like ``predict``: batches of ``batch_size`` through :meth:`predict_on_batch`."""
        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((0, *self.spec.output_shape), dtype=np.float32)
        return np.concatenate([self.predict_on_batch(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


_cache: dict[tuple[Any, ...], Any] = {}
_cache_lock = threading.Lock()


def predictor(spec: ModelSpec) -> Any:
    """A model with ``predict_on_batch`` for ``spec``; cached per process (one load per Dask worker)."""
    key = (spec.mode, spec.path, spec.serving_url, spec.serving_name, spec.version, spec.api_key)
    with _cache_lock:
        model = _cache.get(key)
        if model is not None:
            return model
        if spec.mode == "remote":
            model = RemotePredictor(spec)
        else:
            import workbench.models.crops
            import workbench.models.seaice  # noqa: F401
            from workbench import registry

            model = registry.load(spec.path).model
        _cache[key] = model
        return model


def _load_on_worker(spec: ModelSpec, imports: tuple[str, ...]) -> bool:
    import importlib

    for name in imports:
        importlib.import_module(name)
    model = predictor(spec)
    if spec.mode == "embedded" and not _cache.get(("warm", id(model))):
        # trace the prediction function for two batch sizes: Keras then relaxes the batch dimension,
        # and no real batch pays the tracing
        for n in (2, 3):
            model.predict_on_batch(np.zeros((n, *spec.input_shape), dtype=np.float32))
        _cache[("warm", id(model))] = True
    return True


def warm_workers(spec: ModelSpec, *, client: Any, imports: tuple[str, ...] = ()) -> None:
    """Build the predictor of ``spec`` (and import ``imports``) on every worker of ``client``.

    Once per worker process — later calls are one short task per worker — so that no chunk
    waits for a model to load, or a library to import, on the worker it lands on.
    """
    workers = list(client.scheduler_info().get("workers", {}))
    futures = [client.submit(_load_on_worker, spec, tuple(imports), workers=[w], allow_other_workers=False,
                             pure=False) for w in workers]
    client.gather(futures)

"""Model registry (Hopsworks-shaped) on MLflow's sqlite registry under the project directory.

``save_model`` stores a Keras model with its signature, metrics, input example
and training-dataset provenance as the artifacts of an MLflow run and
registers them as a new version; ``get_model``/``get_best_model`` find
versions; aliases (``champion``) point at versions; ``export`` writes a
self-contained directory or archive that a processor can embed, and ``load``
reads it back without the registry.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import re
import shutil
import tarfile
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from workbench.errors import DataError
from workbench.experiments._mlflow import client, experiment_id, retry_locked

if TYPE_CHECKING:
    import keras

__all__ = [
    "RegistryError",
    "ModelVersion",
    "ExportedModel",
    "save_model",
    "get_model",
    "get_models",
    "list_models",
    "get_best_model",
    "registry_exists",
    "unknown_model",
    "set_alias",
    "delete_alias",
    "export",
    "load",
    "REGISTRY_EXPERIMENT",
]

log = logging.getLogger(__name__)
REGISTRY_EXPERIMENT = "workbench-model-registry"
MODEL_FILE = "model.keras"
SIGNATURE_FILE = "signature.json"
METADATA_FILE = "metadata.json"
EXAMPLE_FILE = "input_example.npz"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
_ARCHIVES = (".tar.gz", ".tgz", ".zip")
#: Suffixes of archive types that export does not write (a directory named ``out.rar`` would mislead).
_NOT_ARCHIVES = frozenset({".rar", ".7z", ".tar", ".gz", ".bz2", ".xz", ".zst", ".tbz", ".txz", ".tbz2", ".lz",
                           ".jar", ".whl"})


class RegistryError(DataError):
    """A registry call got bad input, or the model/version asked for does not exist."""


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistryError(
            f"model name must start with a letter and hold only letters, digits, '_', '.', '-', got {name!r}"
        )
    return name


def _check_metrics(metrics: Any) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise RegistryError(f"metrics must be a mapping of name to number, got {type(metrics).__name__}")
    out = {}
    for k, v in metrics.items():
        if (
            not isinstance(k, str)
            or isinstance(v, bool)
            or not isinstance(v, (int, float, np.number))
            or not math.isfinite(float(v))
        ):
            raise RegistryError(f"metric {k!r} must be a finite number, got {v!r}")
        out[k] = float(v)
    return out


def _tensor_specs(tensors: Any) -> list[dict[str, Any]]:
    import keras

    out = []
    for t in tensors:
        out.append(
            {
                "name": str(getattr(t, "name", "")).split(":")[0],
                "shape": [None if d is None else int(d) for d in t.shape],
                "dtype": keras.backend.standardize_dtype(t.dtype),
            }
        )
    return out


def signature_of(model: "keras.Model") -> dict[str, Any]:
    """Input and output tensor specs (name, shape with None batch, dtype) of a built Keras model."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError) as exc:
        raise RegistryError(
            f"cannot read the signature of the model ({exc}); build it or give input_example"
        ) from exc
    if not inputs:
        raise RegistryError("the model has no defined inputs; build it (call it once) before saving")
    return {"inputs": _tensor_specs(inputs), "outputs": _tensor_specs(outputs)}


def _signature(model: "keras.Model", examples: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The model's own signature, or one read off the input example for a subclassed model."""
    try:
        return signature_of(model)
    except RegistryError:
        if not examples:
            raise
    arrays = list(examples.values())
    try:
        out = model(arrays[0] if len(arrays) == 1 and "x" in examples else dict(examples))
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"the model cannot be called on input_example: {exc}") from exc
    outs = out if isinstance(out, (list, tuple)) else [out]

    def spec(name: str, a: Any) -> dict[str, Any]:
        return {
            "name": name,
            "shape": [None, *[int(d) for d in a.shape[1:]]],
            "dtype": str(np.asarray(a).dtype),
        }

    return {
        "inputs": [spec(k, v) for k, v in examples.items()],
        "outputs": [spec(f"output_{i}", o) for i, o in enumerate(outs)],
    }


def _example_arrays(example: Any) -> dict[str, np.ndarray]:
    if example is None:
        return {}
    if isinstance(example, Mapping):
        return {str(k): np.asarray(v) for k, v in example.items()}
    return {"x": np.asarray(example)}


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: int
    metrics: dict[str, float]
    run_id: str
    path: Path
    training_dataset: dict[str, Any] | None = None
    aliases: list[str] = field(default_factory=list)
    description: str = ""
    created_at: str = ""

    def download(self) -> Path:
        """Local directory of the version's files (model, signature, metadata)."""
        return self.path

    def load(self) -> "keras.Model":
        """Load the Keras model (noted in the run record when called inside a pipeline run)."""
        import keras

        from workbench.pipeline import record_usage

        register_workbench_layers()
        model = keras.saving.load_model(self.path / MODEL_FILE, compile=True)
        record_usage("models", {"name": self.name, "version": self.version, "run_id": self.run_id,
                                "source": "registry"})
        return model

    @property
    def signature(self) -> dict[str, Any]:
        """Input/output specs."""
        return json.loads((self.path / SIGNATURE_FILE).read_text())


@dataclass(frozen=True)
class ExportedModel:
    """A model loaded from an export, with no registry needed."""

    model: "keras.Model"
    signature: dict[str, Any]
    metadata: dict[str, Any]
    path: Path

    def predict(self, x: Any, **kwargs: Any) -> Any:
        """``model.predict`` after checking ``x`` against the signature."""
        inputs = self.signature["inputs"]
        arrays = [np.asarray(x)] if len(inputs) == 1 and not isinstance(x, Mapping) else None
        if arrays is not None:
            want = inputs[0]["shape"][1:]
            got = list(arrays[0].shape[1:])
            if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
                raise RegistryError(
                    f"input has shape {list(arrays[0].shape)}; the model expects [None, {want}]"
                )
        return self.model.predict(x, verbose=0, **kwargs)

    @property
    def input_example(self) -> dict[str, np.ndarray]:
        """The input example saved with the model (empty if none)."""
        file = self.path / EXAMPLE_FILE
        if not file.exists():
            return {}
        with np.load(file) as data:
            return {k: data[k] for k in data.files}


def register_workbench_layers() -> None:
    """Import the modules whose custom Keras layers workbench models use (sea-ice augmentation, the STAR cell).

    Their ``register_keras_serializable`` decorators run on import, so a model the
    workbench trained loads in any process (a fresh kernel, a Dask worker, a server).
    """
    import workbench.models.crops  # noqa: F401 - registers StarCell
    import workbench.models.seaice  # noqa: F401 - registers SeaIceAugment


def _local_path(uri: str) -> Path:
    from urllib.parse import unquote, urlparse

    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    return Path(uri)


def _to_version(mv: Any, project: Any) -> ModelVersion:
    c = client(project)
    run = c.get_run(mv.run_id)
    path = _local_path(run.info.artifact_uri) / "model"
    meta_file = path / METADATA_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return ModelVersion(
        name=mv.name,
        version=int(mv.version),
        metrics={k: float(v) for k, v in run.data.metrics.items()},
        run_id=mv.run_id,
        path=path,
        training_dataset=meta.get("training_dataset"),
        aliases=list(getattr(mv, "aliases", []) or []),
        description=mv.description or "",
        created_at=_dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, _dt.timezone.utc).isoformat(),
    )


def _provenance(training_dataset: Any) -> dict[str, Any] | None:
    if training_dataset is None:
        return None
    from workbench.featurestore import FeatureView, TrainingDataset

    if isinstance(training_dataset, TrainingDataset):
        return {
            "feature_view": training_dataset.metadata["feature_view"],
            "version": training_dataset.version,
            "provenance": training_dataset.provenance,
        }
    if not isinstance(training_dataset, (tuple, list)) or len(training_dataset) != 2:
        raise RegistryError(
            f"training_dataset must be (feature_view, version) or a TrainingDataset, got {training_dataset!r}"
        )
    view, version = training_dataset
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RegistryError(f"training dataset version must be an integer >= 1, got {version!r}")
    if isinstance(view, FeatureView):
        td = view.get_training_dataset_metadata(version)
        return {
            "feature_view": {"name": view.name, "version": view.version},
            "version": version,
            "provenance": td.provenance,
        }
    if isinstance(view, str):
        return {"feature_view": {"name": view}, "version": version}
    raise RegistryError(f"training_dataset view must be a FeatureView or its name, got {type(view).__name__}")


def save_model(
    name: str,
    model: "keras.Model",
    *,
    metrics: Mapping[str, float] | None = None,
    input_example: Any = None,
    training_dataset: Any = None,
    params: Mapping[str, Any] | None = None,
    description: str = "",
    aliases: Sequence[str] = (),
    project: Any = None,
) -> ModelVersion:
    """Register a Keras model as a new version of ``name``.

    Parameters
    ----------
    name
        Model name.
    model
        A built Keras model.
    metrics
        Evaluation metrics (``{"accuracy": 0.93}``), used by :func:`get_best_model`.
    input_example
        An array (or dict of arrays) of example inputs, saved with the model.
    training_dataset
        ``(feature_view, version)`` (view object or name) or a ``TrainingDataset``: provenance.
    params
        Hyper-parameters to record.
    description
        Free text.
    aliases
        Aliases to point at the new version (e.g. ``["champion"]``).
    project
        Project directory or Settings (default: the current settings).

    Returns
    -------
    ModelVersion
        The new version; two processes saving at once get distinct versions.
    """
    import keras
    import mlflow

    _check_name(name)
    if not isinstance(model, keras.Model):
        raise RegistryError(f"model must be a keras.Model, got {type(model).__name__}")
    metric_values = _check_metrics(metrics)
    examples = _example_arrays(input_example)
    provenance = _provenance(training_dataset)
    for alias in aliases:
        _check_alias(alias)
    signature = _signature(model, examples)
    c = client(project)
    exp = experiment_id(REGISTRY_EXPERIMENT, project)
    run = retry_locked(
        lambda: c.create_run(exp, run_name=f"{name}-{uuid.uuid4().hex[:6]}", tags={"workbench.model": name}),
        what="creating a run",
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            model.save(folder / MODEL_FILE)
            (folder / SIGNATURE_FILE).write_text(json.dumps(signature, indent=1))
            if examples:
                np.savez(folder / EXAMPLE_FILE, **examples)
            meta = {
                "name": name,
                "metrics": metric_values,
                "params": {k: str(v) for k, v in (params or {}).items()},
                "training_dataset": provenance,
                "description": description,
                "framework": {"keras": keras.__version__, "mlflow": mlflow.__version__},
                "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            }
            (folder / METADATA_FILE).write_text(json.dumps(meta, indent=1, default=str))
            c.log_artifacts(run.info.run_id, str(folder), artifact_path="model")
        for k, v in metric_values.items():
            retry_locked(lambda k=k, v=v: c.log_metric(run.info.run_id, k, v), what="logging a metric")
        for k, v in (params or {}).items():
            retry_locked(
                lambda k=k, v=v: c.log_param(run.info.run_id, k, str(v)[:500]), what="logging a param"
            )
        retry_locked(lambda: c.set_terminated(run.info.run_id, "FINISHED"), what="ending the run")
    except BaseException:
        retry_locked(lambda: c.set_terminated(run.info.run_id, "FAILED"), what="ending the run")
        raise

    def ensure_model() -> None:
        try:
            c.get_registered_model(name)
        except Exception:  # noqa: BLE001 - RESOURCE_DOES_NOT_EXIST
            try:
                c.create_registered_model(name)
            except Exception as exc:  # noqa: BLE001 - another process created it first
                if "already exists" not in str(exc).lower():
                    raise

    retry_locked(ensure_model, what=f"registering model {name!r}")
    mv = retry_locked(
        lambda: c.create_model_version(
            name,
            source=f"runs:/{run.info.run_id}/model",
            run_id=run.info.run_id,
            description=description or None,
        ),
        what=f"creating a version of {name!r}",
    )
    for alias in aliases:
        set_alias(name, alias, int(mv.version), project=project)
    log.info("registered %s version %s (metrics %s)", name, mv.version, metric_values)
    return get_model(name, int(mv.version), project=project)


def _check_alias(alias: Any) -> str:
    if (
        not isinstance(alias, str)
        or not re.match(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$", alias)
        or re.match(r"^[vV]\d+$", alias)
        or alias.lower() == "latest"
    ):
        raise RegistryError(f"alias must be a name like 'champion' (not 'latest' or 'v1'), got {alias!r}")
    return alias


def get_model(
    name: str, version: int | None = None, *, alias: str | None = None, project: Any = None
) -> ModelVersion:
    """A version of ``name``: by number, by alias, or the latest when neither is given."""
    _check_name(name)
    c = client(project)
    if version is not None and alias is not None:
        raise RegistryError("give either version or alias, not both")
    if isinstance(version, str) and not version.isdigit():
        version, alias = None, version
    try:
        if alias is not None:
            _check_alias(alias)
            mv = c.get_model_version_by_alias(name, alias)
        elif version is not None:
            if isinstance(version, bool) or int(version) < 1:
                raise RegistryError(f"version must be an integer >= 1, got {version!r}")
            mv = c.get_model_version(name, str(int(version)))
        else:
            versions = c.search_model_versions(f"name = '{name}'")
            if not versions:
                raise RegistryError(f"model {name!r} is not registered")
            mv = max(versions, key=lambda v: int(v.version))
    except RegistryError:
        raise
    except Exception as exc:  # noqa: BLE001 - MlflowException RESOURCE_DOES_NOT_EXIST
        if name not in list_models(project=project):
            raise unknown_model(name, project=project) from None
        what = f"alias {alias!r}" if alias is not None else f"version {version}"
        raise RegistryError(f"model {name!r} has no {what}: {exc}") from exc
    return _to_version(mv, project)


def unknown_model(name: str, *, project: Any = None) -> RegistryError:
    """The error for a model name the registry does not hold, with a "did you mean" or the names it holds."""
    from workbench._args import did_you_mean

    known = list_models(project=project)
    hint = did_you_mean(name, known) or (f"; registered: {sorted(known)}" if known else "; the registry holds no model yet")
    return RegistryError(f"no model named {name!r} is registered{hint}")


def registry_exists(*, project: Any = None) -> bool:
    """Whether the project has a registry store at all (checked without creating one)."""
    from workbench.experiments._mlflow import store_path

    return store_path(project).is_file()


def list_models(*, project: Any = None) -> list[str]:
    """Names of the registered models."""
    return sorted(m.name for m in client(project).search_registered_models())


def get_models(name: str, *, project: Any = None) -> list[ModelVersion]:
    """Every version of ``name``, oldest first, each with its aliases."""
    import dataclasses

    _check_name(name)
    c = client(project)
    versions = c.search_model_versions(f"name = '{name}'")
    aliases: dict[int, list[str]] = {}
    if versions:  # MLflow's search results carry no aliases: the registered model has them
        for alias, number in (getattr(c.get_registered_model(name), "aliases", None) or {}).items():
            aliases.setdefault(int(number), []).append(alias)
    out = []
    for v in sorted(versions, key=lambda v: int(v.version)):
        mv = _to_version(v, project)
        out.append(dataclasses.replace(mv, aliases=sorted(set(mv.aliases) | set(aliases.get(mv.version, [])))))
    return out


def get_best_model(name: str, metric: str, direction: str = "max", *, project: Any = None) -> ModelVersion:
    """The version of ``name`` with the highest (``direction="max"``) or lowest value of ``metric``."""
    if direction not in ("max", "min"):
        raise RegistryError(f"direction must be 'max' or 'min', got {direction!r}")
    candidates = [v for v in get_models(name, project=project) if metric in v.metrics]
    if not candidates:
        raise RegistryError(f"no version of model {name!r} has metric {metric!r}")
    pick = max if direction == "max" else min
    return pick(
        candidates, key=lambda v: (v.metrics[metric], v.version if direction == "max" else -v.version)
    )


def set_alias(name: str, alias: str, version: int, *, project: Any = None) -> None:
    """Point ``alias`` (e.g. ``champion``) at ``version`` of ``name``."""
    _check_name(name)
    _check_alias(alias)
    get_model(name, version, project=project)
    c = client(project)
    retry_locked(
        lambda: c.set_registered_model_alias(name, alias, str(int(version))), what="setting an alias"
    )


def delete_alias(name: str, alias: str, *, project: Any = None) -> None:
    """Remove ``alias`` from model ``name``."""
    _check_name(name)
    _check_alias(alias)
    c = client(project)
    retry_locked(lambda: c.delete_registered_model_alias(name, alias), what="deleting an alias")


def export(
    name: str, version: int | str | None, path: str | os.PathLike[str], *, project: Any = None
) -> Path:
    """Write version ``version`` (number, alias, or None for the latest) of ``name`` to ``path``.

    ``path`` ending in ``.tar.gz``, ``.tgz`` or ``.zip`` gives an archive, else a
    directory. Either holds ``model.keras``, ``signature.json``, ``metadata.json``
    (name, version, metrics, training-dataset provenance) and the input
    example: everything :func:`load` needs, without the registry. The target
    is written under a temporary name and renamed into place.
    """
    lower = Path(path).name.lower()
    if not lower.endswith(_ARCHIVES) and Path(lower).suffix in _NOT_ARCHIVES:
        raise RegistryError(
            f"export target {Path(path).name!r}: unknown archive type; use a directory or one of {'/'.join(_ARCHIVES)}"
        )
    mv = (
        get_model(name, version, project=project)
        if not isinstance(version, str) or version.isdigit()
        else get_model(name, alias=version, project=project)
    )
    target = Path(path).absolute()
    if target.exists():
        raise RegistryError(f"export target {target} exists; remove it or choose another path")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        folder = Path(tmp) / "model"
        shutil.copytree(mv.path, folder)
        meta = json.loads((folder / METADATA_FILE).read_text())
        meta.update(
            version=mv.version,
            run_id=mv.run_id,
            metrics=mv.metrics,
            aliases=mv.aliases,
            exported_at=_dt.datetime.now(_dt.timezone.utc).isoformat(),
        )
        (folder / METADATA_FILE).write_text(json.dumps(meta, indent=1, default=str))
        name_l = target.name.lower()
        if name_l.endswith((".tar.gz", ".tgz")):
            staged = Path(tmp) / "export.tar.gz"
            with tarfile.open(staged, "w:gz") as tar:
                for item in sorted(folder.iterdir()):
                    tar.add(item, arcname=item.name)
        elif name_l.endswith(".zip"):
            staged = Path(tmp) / "export.zip"
            with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as zf:
                for item in sorted(folder.iterdir()):
                    zf.write(item, arcname=item.name)
        else:
            staged = folder
        os.replace(staged, target)
    log.info("exported %s v%d to %s", name, mv.version, target)
    return target


def load(path: str | os.PathLike[str]) -> ExportedModel:
    """Load a model written by :func:`export` (directory or archive)."""
    import keras

    source = Path(path)
    if not source.exists():
        raise RegistryError(f"exported model {source} does not exist")
    if source.is_dir():
        folder = source
        return _load_folder(folder, source, keras)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        name_l = source.name.lower()
        try:
            if name_l.endswith((".tar.gz", ".tgz")):
                with tarfile.open(source, "r:gz") as tar:
                    tar.extractall(folder, filter="data")
            elif name_l.endswith(".zip"):
                with zipfile.ZipFile(source) as zf:
                    zf.extractall(folder)
            else:
                raise RegistryError(f"{source} is neither a directory nor a {'/'.join(_ARCHIVES)} archive")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise RegistryError(f"cannot read the archive {source}: {exc}") from exc
        return _load_folder(folder, source, keras)


def _load_folder(folder: Path, source: Path, keras: Any) -> ExportedModel:
    missing = [f for f in (MODEL_FILE, SIGNATURE_FILE, METADATA_FILE) if not (folder / f).is_file()]
    if missing:
        raise RegistryError(f"{source} is not an exported model: it lacks {missing}")
    register_workbench_layers()
    try:
        model = keras.saving.load_model(folder / MODEL_FILE, compile=True)
        signature = json.loads((folder / SIGNATURE_FILE).read_text())
        metadata = json.loads((folder / METADATA_FILE).read_text())
    except (TypeError, ValueError, OSError, json.JSONDecodeError) as exc:
        raise RegistryError(
            f"{source}: cannot load the exported model: {exc} (a model with custom layers or a subclassed "
            "model needs its classes imported and registered with keras.saving.register_keras_serializable)"
        ) from exc
    keep = folder
    if not source.is_dir():
        keep = Path(tempfile.mkdtemp(prefix="wb-model-"))
        for item in folder.iterdir():
            shutil.copy2(item, keep / item.name)
    from workbench.pipeline import record_usage

    record_usage("models", {"name": metadata.get("name"), "version": metadata.get("version"),
                            "run_id": metadata.get("run_id"), "source": str(source)})
    return ExportedModel(model=model, signature=signature, metadata=metadata, path=keep)

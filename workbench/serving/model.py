"""A served model: one registered model version, loaded once per worker, checked and warmed up.

:class:`ServedModel` reads the version from the registry
(:func:`workbench.registry.get_model`), imports the modules that register custom
layers (``workbench.models.seaice``, ``workbench.models.crops`` for StarRNN's cell,
plus any the serving names), loads the Keras model, wraps it in one compiled
``tf.function`` with a batch-polymorphic input signature and calls it once on the
saved input example (warm-up), so that the first request does not pay for tracing.

:func:`check_inputs` is the pure part: it turns decoded request tensors into the
arrays the model takes, or raises :class:`~workbench.serving.errors.BadRequest`
naming the input, the shape or the dtype that does not fit.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workbench.serving.errors import BadRequest, ModelFailure, NotFound

__all__ = ["DEFAULT_IMPORTS", "SIGNATURE_NAME", "ServedModel", "TensorSpec", "check_inputs"]

log = logging.getLogger(__name__)

#: Modules imported before loading any model: they register the workbench's custom Keras objects.
DEFAULT_IMPORTS: tuple[str, ...] = ("workbench.models.seaice", "workbench.models.crops")
#: The one signature every served model exposes (TF Serving's default name).
SIGNATURE_NAME = "serving_default"
_NUMPY_KINDS = {"f": "floating", "i": "integer", "u": "unsigned integer", "b": "boolean"}


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype (numpy name) and shape (``None``: any size) of a model input or output."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], default_name: str) -> TensorSpec:
        """Read a registry signature entry ``{"name", "dtype", "shape"}``."""
        return cls(
            name=str(d.get("name") or default_name),
            dtype=str(np.dtype(d.get("dtype") or "float32")),
            shape=tuple(None if s is None or s == -1 else int(s) for s in d.get("shape", [])),
        )


def _fits(shape: Sequence[int], spec: TensorSpec) -> bool:
    return len(shape) == len(spec.shape) and all(w is None or w == g for w, g in zip(spec.shape, shape))


def _cast(name: str, value: Any, spec: TensorSpec) -> np.ndarray:
    """``value`` as an array of ``spec.dtype``, or a BadRequest naming the input."""
    want = np.dtype(spec.dtype)
    try:
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"input {name!r} is not a rectangular array: {exc}") from exc
    if arr.dtype == object:
        raise BadRequest(
            f"input {name!r} is ragged or mixes types; expected a rectangular array of {spec.dtype} "
            f"with shape {_shape_text(spec.shape)}"
        )
    kind = arr.dtype.kind
    ok = {
        "f": "fiub",
        "i": "iub",
        "u": "ub",
        "b": "b",
    }.get(want.kind, want.kind)
    if arr.size and kind not in ok:
        raise BadRequest(
            f"input {name!r} has dtype {arr.dtype} ({'text' if kind in 'US' else kind}); expected {spec.dtype}"
        )
    if want.kind in "iu" and arr.size and kind in "iu":
        info = np.iinfo(want)
        if arr.min() < info.min or arr.max() > info.max:
            raise BadRequest(f"input {name!r} holds values outside the range of {spec.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(want, copy=False)


def _shape_text(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("-1" if s is None else str(s) for s in shape) + "]"


def check_inputs(
    specs: Sequence[TensorSpec], tensors: Mapping[str, Any] | Any, *, max_rows: int | None = None
) -> dict[str, np.ndarray]:
    """Validate decoded request tensors against the model's input specs.

    Parameters
    ----------
    specs
        The model's inputs.
    tensors
        A mapping input name -> array-like, or one array-like for a single-input model.
    max_rows
        Most rows one request may hold (None: no limit).

    Returns
    -------
    dict
        Input name -> array of the spec's dtype, every array with the same number of rows.

    Raises
    ------
    BadRequest
        An unknown or missing input, a wrong shape, a wrong dtype, differing row counts.
    """
    if not isinstance(tensors, Mapping):
        if len(specs) != 1:
            raise BadRequest(
                f"the model has {len(specs)} inputs ({', '.join(s.name for s in specs)}); name each of them"
            )
        tensors = {specs[0].name: tensors}
    elif len(specs) == 1 and len(tensors) == 1 and next(iter(tensors)) not in (specs[0].name,):
        # a single unnamed/alias-named tensor goes to the only input (OIP clients often call it "input")
        tensors = {specs[0].name: next(iter(tensors.values()))}
    names = {s.name for s in specs}
    unknown = sorted(set(tensors) - names)
    if unknown:
        raise BadRequest(f"unknown input(s) {unknown}; the model takes {sorted(names)}")
    missing = sorted(names - set(tensors))
    if missing:
        raise BadRequest(f"missing input(s) {missing}; the model takes {sorted(names)}")
    out: dict[str, np.ndarray] = {}
    rows = None
    for spec in specs:
        arr = _cast(spec.name, tensors[spec.name], spec)
        if not _fits(arr.shape, spec):
            raise BadRequest(
                f"input {spec.name!r} has shape {list(arr.shape)}; the model expects {_shape_text(spec.shape)} "
                "(first axis: the batch)"
            )
        if rows is not None and arr.shape[0] != rows:
            raise BadRequest(f"inputs have different batch sizes ({rows} and {arr.shape[0]} rows)")
        rows = arr.shape[0]
        out[spec.name] = arr
    if rows == 0:
        raise BadRequest("the request holds no rows: send at least one instance")
    if max_rows is not None and rows is not None and rows > max_rows:
        raise BadRequest(f"the request holds {rows} rows; this server takes at most {max_rows} per request")
    return out


@dataclass
class ServedModel:
    """One version of a registered model, ready to predict.

    Parameters
    ----------
    model_name
        Registered model name.
    version
        Version number (resolved from the alias when the serving names one).
    path
        Folder of the version's files (``model.keras``, ``signature.json``, ``metadata.json``).
    aliases
        Labels pointing at this version (``champion``...).
    imports
        Extra modules to import before loading (custom layers).
    """

    model_name: str
    version: int
    path: Any
    aliases: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    training_dataset: dict[str, Any] | None = None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    class_names: tuple[str, ...] = ()
    loaded_at: float | None = None
    load_seconds: float | None = None
    _keras: Any = None
    _fn: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_registry(
        cls,
        model_name: str,
        version: int | str | None = None,
        *,
        imports: Sequence[str] = (),
        project: Any = None,
    ) -> ServedModel:
        """The version ``version`` (number, alias, or None for the latest) of ``model_name``; not loaded yet.

        Raises
        ------
        NotFound
            The model or version is not registered.
        """
        from workbench import registry

        try:
            if isinstance(version, str) and not version.isdigit():
                mv = registry.get_model(model_name, alias=version, project=project)
            else:
                mv = registry.get_model(model_name, None if version is None else int(version), project=project)
        except registry.RegistryError as exc:
            raise NotFound(str(exc)) from exc
        return cls.from_folder(
            mv.path, model_name=mv.name, version=mv.version, aliases=tuple(mv.aliases), imports=tuple(imports),
            metrics=dict(mv.metrics), training_dataset=mv.training_dataset,
        )

    @classmethod
    def from_folder(cls, path: Any, *, model_name: str, version: int, aliases: tuple[str, ...] = (),
                    imports: tuple[str, ...] = (), metrics: dict[str, float] | None = None,
                    training_dataset: dict[str, Any] | None = None) -> ServedModel:
        """A served model from a registry version folder (or an export directory)."""
        from pathlib import Path

        from workbench.registry import METADATA_FILE, SIGNATURE_FILE

        folder = Path(path)
        try:
            sig = json.loads((folder / SIGNATURE_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise NotFound(f"model {model_name!r} v{version}: cannot read its signature: {exc}") from exc
        meta_file = folder / METADATA_FILE
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        inputs = tuple(TensorSpec.from_dict(d, f"input_{i}") for i, d in enumerate(sig.get("inputs", [])))
        outputs = tuple(TensorSpec.from_dict(d, f"output_{i}") for i, d in enumerate(sig.get("outputs", [])))
        names_param = (meta.get("params") or {}).get("class_names") or ""
        class_names = tuple(n for n in str(names_param).split(",") if n)
        if outputs and outputs[0].shape and outputs[0].shape[-1] and len(class_names) != outputs[0].shape[-1]:
            class_names = tuple(str(i) for i in range(int(outputs[0].shape[-1])))
        return cls(
            model_name=model_name, version=int(version), path=folder, aliases=tuple(aliases), imports=imports,
            metrics=dict(metrics or meta.get("metrics") or {}),
            training_dataset=training_dataset if training_dataset is not None else meta.get("training_dataset"),
            inputs=inputs, outputs=outputs, class_names=class_names,
        )

    @property
    def ready(self) -> bool:
        """True once loaded and warmed up."""
        return self._fn is not None

    @property
    def is_classifier(self) -> bool:
        """True for one output of shape ``(None, k)``, k ≥ 2 (class probabilities)."""
        return len(self.outputs) == 1 and len(self.outputs[0].shape) == 2 and (self.outputs[0].shape[1] or 0) >= 2

    def load(self) -> Any:
        """Load the Keras model (once), build the compiled predict function and warm it up; the Keras model."""
        with self._lock:
            if self._keras is not None:
                return self._keras
            started = time.perf_counter()
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            for module in DEFAULT_IMPORTS:  # best effort: a model without their layers loads without them
                try:
                    importlib.import_module(module)
                except ImportError as exc:
                    log.warning("cannot import %s (its custom layers will be unknown): %s", module, exc)
            for module in self.imports:
                try:
                    importlib.import_module(module)
                except ImportError as exc:
                    raise NotFound(f"model {self.model_name!r}: cannot import module {module!r}: {exc}") from exc
            import keras
            import tensorflow as tf

            from workbench.registry import MODEL_FILE

            try:
                model = keras.saving.load_model(self.path / MODEL_FILE, compile=False)
            except Exception as exc:
                raise NotFound(f"model {self.model_name!r} v{self.version} cannot be loaded: "
                               f"{type(exc).__name__}: {exc}") from exc
            if not self.inputs:
                self.inputs = tuple(TensorSpec(getattr(t, "name", f"input_{i}").split(":")[0],
                                               keras.backend.standardize_dtype(t.dtype),
                                               tuple(None if d is None else int(d) for d in t.shape))
                                    for i, t in enumerate(model.inputs))
            names = list(getattr(model, "output_names", None) or [])
            if len(names) == len(self.outputs) and any(o.name.startswith("keras_tensor") for o in self.outputs):
                self.outputs = tuple(TensorSpec(str(n), o.dtype, o.shape) for n, o in zip(names, self.outputs))
            specs = [tf.TensorSpec([None, *s.shape[1:]], tf.as_dtype(s.dtype), name=f"x{i}")
                     for i, s in enumerate(self.inputs)]
            single = len(specs) == 1

            def call(*xs: Any) -> Any:
                out = model(xs[0] if single else list(xs), training=False)
                return tuple(out) if isinstance(out, (list, tuple)) else (out,)

            fn = tf.function(call, input_signature=specs, reduce_retracing=True)
            example = self._example()
            fn(*[tf.constant(example[s.name]) for s in self.inputs])
            self._keras = model
            self._fn = fn
            self.loaded_at = time.time()
            self.load_seconds = time.perf_counter() - started
            log.info("loaded %s v%d in %.2f s", self.model_name, self.version, self.load_seconds)
            return model

    def _example(self) -> dict[str, np.ndarray]:
        """The saved input example, or one row of zeros, as arrays of the input dtypes."""
        from workbench.registry import EXAMPLE_FILE

        file = self.path / EXAMPLE_FILE
        saved: dict[str, np.ndarray] = {}
        if file.exists():
            with np.load(file) as data:
                saved = {k: data[k] for k in data.files}
        out = {}
        for i, s in enumerate(self.inputs):
            arr = saved.get(s.name) if s.name in saved else (list(saved.values())[i] if len(saved) == len(self.inputs) else None)
            if arr is None or not _fits(arr.shape, s):
                arr = np.zeros((1, *[d or 1 for d in s.shape[1:]]))
            out[s.name] = np.asarray(arr, dtype=s.dtype)
        return out

    def unload(self) -> None:
        """Drop the Keras model and the compiled function."""
        with self._lock:
            self._fn = None
            self._keras = None

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on checked inputs (:func:`check_inputs`); output name -> array.

        Raises
        ------
        ModelFailure
            The model raised (the message names the model and the error).
        """
        fn = self._fn
        if fn is None:
            self.load()
            fn = self._fn
        try:
            outs = fn(*[inputs[s.name] for s in self.inputs])
            arrays = [np.asarray(o) for o in outs]
        except Exception as exc:
            log.exception("model %s v%d failed", self.model_name, self.version)
            text = str(exc).strip().splitlines()
            raise ModelFailure(f"model {self.model_name!r} v{self.version} failed: {type(exc).__name__}: "
                               f"{text[0] if text else ''}") from exc
        names = [s.name for s in self.outputs] if len(self.outputs) == len(arrays) else [
            f"output_{i}" for i in range(len(arrays))]
        return dict(zip(names, arrays))

    def metadata(self) -> dict[str, Any]:
        """Protocol-neutral description: name, version, aliases, inputs, outputs, classes."""
        return {
            "name": self.model_name,
            "version": self.version,
            "aliases": list(self.aliases),
            "inputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in self.inputs],
            "outputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in self.outputs],
            "class_names": list(self.class_names),
            "metrics": dict(self.metrics),
            "ready": self.ready,
        }

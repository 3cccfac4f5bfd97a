"""TF-Serving REST API (v1) adapter: decode requests, call the data plane, encode answers.

Endpoints (``{m}`` a serving; ``/versions/{v}`` or ``/labels/{l}`` optional):

* ``GET /v1/models/{m}`` — model status (``model_version_status``);
* ``GET /v1/models/{m}/metadata`` — the ``serving_default`` signature (names, dtypes, shapes);
* ``POST /v1/models/{m}:predict`` — ``{"signature_name"?, "instances": [...]}`` (row format,
  answered ``{"predictions": [...]}``) or ``{"inputs": ...}`` (columnar format, answered
  ``{"outputs": ...}``), never both; a value ``{"b64": "..."}`` carries the raw bytes of
  one instance (row format) or of the whole tensor (columnar), little-endian, in the
  input's dtype — or the bytes of a string input;
* ``POST /v1/models/{m}:classify`` — ``{"examples": [{"<input>": value}, ...]}`` answered
  ``{"result": [[[label, score], ...], ...]}`` (per example, every class, best first).

Errors are ``{"error": "..."}`` with the status code of the problem.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from workbench.serving.dataplane import DataPlane
from workbench.serving.errors import BadRequest
from workbench.serving.http import FastJSONRoute
from workbench.serving.model import SIGNATURE_NAME, ServedModel, TensorSpec

__all__ = ["ClassifyRequest", "PredictRequest", "decode_classify", "decode_predict", "make_router"]

_TF_DTYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "float16": "DT_HALF", "int8": "DT_INT8",
              "int16": "DT_INT16", "int32": "DT_INT32", "int64": "DT_INT64", "uint8": "DT_UINT8",
              "uint16": "DT_UINT16", "uint32": "DT_UINT32", "uint64": "DT_UINT64", "bool": "DT_BOOL",
              "object": "DT_STRING", "str": "DT_STRING", "bytes": "DT_STRING"}


class PredictRequest(BaseModel):
    """Body of ``:predict``."""

    model_config = ConfigDict(extra="forbid")
    signature_name: str | None = Field(None, description="signature to call; only 'serving_default'")
    instances: list[Any] | None = Field(None, description="row format: one entry per instance")
    inputs: Any = Field(None, description="columnar format: a tensor, or an object of named tensors")


class ClassifyRequest(BaseModel):
    """Body of ``:classify``."""

    model_config = ConfigDict(extra="forbid")
    signature_name: str | None = None
    context: dict[str, Any] | None = Field(None, description="features shared by every example")
    examples: list[dict[str, Any]] = Field(..., description="one object of features per example")


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str


def _b64(value: Any, spec: TensorSpec, *, rows: bool, what: str) -> Any:
    """Decode ``{"b64": ...}`` values in ``value``; an array for a numeric input."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        if not isinstance(value["b64"], str):
            raise BadRequest(f"{what}: 'b64' must be a base64 string")
        try:
            raw = base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(f"{what}: 'b64' is not valid base64: {exc}") from exc
        dtype = np.dtype(spec.dtype)
        if dtype.kind in "OSU":
            return raw
        if len(raw) % dtype.itemsize:
            raise BadRequest(f"{what}: {len(raw)} bytes are not a whole number of {spec.dtype} values")
        arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
        inner = [d for d in spec.shape[1:]]
        if rows:
            if any(d is None for d in inner):
                raise BadRequest(f"{what}: a b64 instance needs an input of fixed shape, {spec.name!r} has "
                                 f"{list(spec.shape)}")
            size = int(np.prod(inner)) if inner else 1
            if arr.size != size:
                raise BadRequest(f"{what}: b64 holds {arr.size} {spec.dtype} values; one instance of "
                                 f"{spec.name!r} has {size}")
            return arr.reshape(inner)
        fixed = int(np.prod([d for d in inner])) if inner and all(d is not None for d in inner) else None
        if fixed is None or arr.size % fixed:
            raise BadRequest(f"{what}: b64 holds {arr.size} values, not a whole number of rows of {list(spec.shape)}")
        return arr.reshape(-1, *inner)
    if isinstance(value, dict):
        raise BadRequest(f"{what}: an object value must be {{\"b64\": \"...\"}}, got keys {sorted(value)}")
    return value


def _rows_to_arrays(instances: list[Any], model: ServedModel) -> dict[str, Any]:
    specs = model.inputs
    if not instances:
        raise BadRequest("'instances' is empty: send at least one instance")
    named = isinstance(instances[0], dict) and set(instances[0]) != {"b64"}
    if named:
        cols: dict[str, list[Any]] = {}
        for i, inst in enumerate(instances):
            if not isinstance(inst, dict) or set(inst) == {"b64"}:
                raise BadRequest(f"instance {i}: every instance must be an object of named inputs, like the first")
            if cols and set(inst) != set(cols):
                raise BadRequest(f"instance {i} names inputs {sorted(inst)}; instance 0 named {sorted(cols)}")
            for k, v in inst.items():
                spec = next((s for s in specs if s.name == k), None)
                if spec is None:
                    raise BadRequest(f"instance {i}: unknown input {k!r}; the model takes {[s.name for s in specs]}")
                cols.setdefault(k, []).append(_b64(v, spec, rows=True, what=f"instance {i} input {k!r}"))
        return cols
    if len(specs) != 1:
        raise BadRequest(f"the model takes {len(specs)} inputs: each instance must be an object naming them")
    spec = specs[0]
    has_b64 = any(isinstance(v, dict) for v in instances)
    if has_b64:
        return {spec.name: [_b64(v, spec, rows=True, what=f"instance {i}") for i, v in enumerate(instances)]}
    return {spec.name: instances}


def decode_predict(body: PredictRequest, model: ServedModel) -> tuple[dict[str, Any], bool]:
    """Tensors of a ``:predict`` body and whether it used the row format.

    Raises
    ------
    BadRequest
        Both or neither of ``instances``/``inputs``; an unknown signature; bad b64.
    """
    fields = body.model_fields_set
    if body.signature_name not in (None, "", SIGNATURE_NAME):
        raise BadRequest(f"unknown signature_name {body.signature_name!r}: the model has only {SIGNATURE_NAME!r}")
    if "instances" in fields and "inputs" in fields:
        raise BadRequest("give either 'instances' (row format) or 'inputs' (columnar format), not both")
    if body.instances is not None:
        return _rows_to_arrays(body.instances, model), True
    if "inputs" in fields and body.inputs is not None:
        value = body.inputs
        specs = model.inputs
        if isinstance(value, dict) and set(value) != {"b64"}:
            out = {}
            for k, v in value.items():
                spec = next((s for s in specs if s.name == k), None)
                if spec is None:
                    raise BadRequest(f"unknown input {k!r}; the model takes {[s.name for s in specs]}")
                out[k] = _b64(v, spec, rows=False, what=f"input {k!r}")
            return out, False
        if len(specs) != 1:
            raise BadRequest(f"the model takes {len(specs)} inputs: 'inputs' must be an object naming them")
        return {specs[0].name: _b64(value, specs[0], rows=False, what="'inputs'")}, False
    raise BadRequest("the body needs 'instances' (row format) or 'inputs' (columnar format)")


def decode_classify(body: ClassifyRequest, model: ServedModel) -> dict[str, Any]:
    """Tensors of a ``:classify`` body (features of each example merged with ``context``)."""
    if not model.is_classifier:
        raise BadRequest(f"serving model {model.model_name!r} is not a classifier (its output is "
                         f"{[list(o.shape) for o in model.outputs]}); use :predict")
    if body.signature_name not in (None, "", SIGNATURE_NAME):
        raise BadRequest(f"unknown signature_name {body.signature_name!r}: the model has only {SIGNATURE_NAME!r}")
    if not body.examples:
        raise BadRequest("'examples' is empty: send at least one example")
    merged = [{**(body.context or {}), **ex} for ex in body.examples]
    if len(model.inputs) == 1:
        spec = model.inputs[0]
        rows = []
        for i, ex in enumerate(merged):
            if len(ex) != 1:
                raise BadRequest(f"example {i} has features {sorted(ex)}; the model takes one input, {spec.name!r}")
            rows.append(_b64(next(iter(ex.values())), spec, rows=True, what=f"example {i}"))
        return {spec.name: rows}
    return _rows_to_arrays(merged, model)


def _tolist(a: np.ndarray) -> Any:
    if a.dtype.kind in "SO":
        return [base64.b64encode(x).decode() if isinstance(x, bytes) else x for x in a.reshape(-1)]
    return a.tolist()


def _shape(spec: TensorSpec) -> dict[str, Any]:
    return {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape], "unknown_rank": False}


def signature_def(model: ServedModel) -> dict[str, Any]:
    """TF-Serving's ``signature_def`` of the model's one signature."""
    def specs(items: tuple[TensorSpec, ...], kind: str) -> dict[str, Any]:
        return {s.name: {"dtype": _TF_DTYPES.get(s.dtype, "DT_INVALID"), "tensor_shape": _shape(s),
                         "name": f"{kind}_{s.name}:0"} for s in items}

    return {"signature_def": {SIGNATURE_NAME: {"inputs": specs(model.inputs, "serving_default"),
                                                "outputs": specs(model.outputs, "StatefulPartitionedCall"),
                                                "method_name": "tensorflow/serving/predict"}}}


def make_router(plane: DataPlane) -> APIRouter:
    """The v1 routes over ``plane``."""
    router = APIRouter(route_class=FastJSONRoute, tags=["TF-Serving REST v1"])
    errors: dict[int | str, dict[str, Any]] = {
        c: {"model": ErrorBody} for c in (400, 401, 403, 404, 413, 500, 503)}

    def pins(version: str | None, label: str | None) -> tuple[int | None, str | None]:
        if version is None:
            return None, label
        if not version.isdigit() or int(version) < 1:
            raise BadRequest(f"version must be a positive integer, got {version!r}")
        return int(version), label

    async def status(request: Request, name: str, version: str | None = None,
                     label: str | None = None) -> dict[str, Any]:
        v, lab = pins(version, label)
        st = plane.status(request.headers, name, version=v, label=lab)
        code = {"AVAILABLE": "OK", "FAILED": "UNKNOWN", "LOADING": "OK", "END": "OK"}[st["state"]]
        return {"model_version_status": [{
            "version": str(st["version"] if st["version"] is not None else (st["config"]["model_version"] or 0)),
            "state": st["state"], "status": {"error_code": code, "error_message": st["error"]}}]}

    async def metadata(request: Request, name: str, version: str | None = None,
                       label: str | None = None) -> dict[str, Any]:
        v, lab = pins(version, label)
        model = plane.model(request.headers, name, version=v, label=lab)
        return {"model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
                "metadata": {"signature_def": signature_def(model)}}

    async def predict(request: Request, body: PredictRequest, name: str, version: str | None = None,
                      label: str | None = None) -> dict[str, Any]:
        v, lab = pins(version, label)
        row_format = [True]

        def decode(model: ServedModel) -> Any:
            tensors, row_format[0] = decode_predict(body, model)
            return tensors

        res = await plane.infer(request.headers, name, decode, version=v, label=lab, protocol="v1",
                                endpoint="predict", client_id=request.headers.get("x-request-id", "")[:128])
        outs = res.outputs
        if row_format[0]:
            if len(outs) == 1:
                return {"predictions": _tolist(next(iter(outs.values())))}
            n = len(next(iter(outs.values())))
            return {"predictions": [{k: _tolist(v[i]) if v.ndim > 1 else v[i].item() for k, v in outs.items()}
                                    for i in range(n)]}
        if len(outs) == 1:
            return {"outputs": _tolist(next(iter(outs.values())))}
        return {"outputs": {k: _tolist(v) for k, v in outs.items()}}

    async def classify(request: Request, body: ClassifyRequest, name: str, version: str | None = None,
                       label: str | None = None) -> dict[str, Any]:
        v, lab = pins(version, label)
        res = await plane.infer(request.headers, name, lambda m: decode_classify(body, m), version=v, label=lab,
                                protocol="v1", endpoint="classify",
                                client_id=request.headers.get("x-request-id", "")[:128])
        probs = next(iter(res.outputs.values()))
        names = res.model.class_names
        result = []
        for row in probs:
            order = np.argsort(-row, kind="stable")
            result.append([[names[j], float(row[j])] for j in order])
        return {"result": result}

    for suffix, extra in (("", {}), ("/versions/{version}", {}), ("/labels/{label}", {})):
        base = "/v1/models/{name}" + suffix
        router.add_api_route(base, status, methods=["GET"], responses=errors, summary="model status", **extra)
        router.add_api_route(base + "/metadata", metadata, methods=["GET"], responses=errors,
                             summary="model metadata (signature)")
        router.add_api_route(base + ":predict", predict, methods=["POST"], responses=errors, summary="predict")
        router.add_api_route(base + ":classify", classify, methods=["POST"], responses=errors, summary="classify")
    return router

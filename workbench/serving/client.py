"""HTTP client of the serving server (TF-Serving REST v1 and Open Inference Protocol v2).

>>> client = ServingClient("http://127.0.0.1:8501", api_key)
>>> probs = client.predict("seaice", patches)          # (n, 32, 32, 3) -> (n, classes)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from workbench.serving.errors import ServingError

__all__ = ["ServingClient", "model_path"]


def model_path(serving_name: str, *, version: int | None = None, label: str | None = None) -> str:
    """The v1 path ``/v1/models/NAME[/versions/V|/labels/L]`` of a serving.

    Parameters
    ----------
    serving_name
        Name of the serving.
    version
        A model version number, or None.
    label
        A version label (alias such as ``champion``), or None; not together with ``version``.
    """
    if not isinstance(serving_name, str) or not serving_name:
        raise ServingError(400, f"serving_name must be a non-empty string, got {serving_name!r}")
    if version is not None and label is not None:
        raise ServingError(400, "give version or label, not both")
    path = f"/v1/models/{quote(serving_name, safe='')}"
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or int(version) < 1:
            raise ServingError(400, f"version must be an integer >= 1, got {version!r}")
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{quote(str(label), safe='')}"
    return path


class ServingClient:
    """A client of one serving server.

    Parameters
    ----------
    base_url
        Server root, e.g. ``http://127.0.0.1:8501``.
    api_key
        The caller's API key, sent as ``Authorization: ApiKey <key>``.
    timeout
        Seconds per request.
    """

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ServingError(400, f"base_url must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            headers={"Authorization": f"ApiKey {api_key}"} if api_key else {},
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            resp = self._http.request(method, path, json=body) if body is not None else self._http.request(method, path)
        except httpx.HTTPError as exc:
            raise ServingError(503, f"cannot reach the serving server at {self.base_url}: {exc}") from exc
        try:
            payload = resp.json()
        except (json.JSONDecodeError, ValueError):
            payload = {"error": resp.text.strip() or resp.reason_phrase}
        if resp.status_code >= 400:
            err = payload.get("error") if isinstance(payload, dict) else None
            raise ServingError(resp.status_code, str(err if err is not None else payload))
        if not isinstance(payload, dict):
            raise ServingError(502, f"the server answered {type(payload).__name__}, expected a JSON object")
        return payload

    def predict(
        self,
        serving_name: str,
        instances: Any,
        *,
        version: int | None = None,
        label: str | None = None,
        signature_name: str | None = None,
    ) -> np.ndarray:
        """Predict with TF-Serving's REST ``:predict`` (row format); the ``predictions`` as float32.

        Parameters
        ----------
        serving_name
            Name of the serving.
        instances
            Array-like of input rows (first axis: the batch).
        version, label
            Pin a model version or a label (alias); default: the serving's version.
        signature_name
            Signature to call (default ``serving_default``).
        """
        arr = np.asarray(instances)
        if arr.ndim == 0:
            raise ServingError(400, "instances must have a batch axis; got a scalar")
        body: dict[str, Any] = {"instances": arr.tolist()}
        if signature_name is not None:
            body["signature_name"] = signature_name
        out = self._call("POST", model_path(serving_name, version=version, label=label) + ":predict", body)
        if "predictions" not in out:
            raise ServingError(502, f"the server's answer lacks 'predictions': keys {sorted(out)}")
        return np.asarray(out["predictions"], dtype=np.float32)

    def classify(self, serving_name: str, instances: Any, *, version: int | None = None,
                 label: str | None = None) -> list[list[tuple[str, float]]]:
        """TF-Serving's ``:classify``: per row, (label, score) pairs, best first."""
        arr = np.asarray(instances)
        body = {"examples": [{"x": row} for row in arr.tolist()]}
        out = self._call("POST", model_path(serving_name, version=version, label=label) + ":classify", body)
        return [[(str(a), float(b)) for a, b in row] for row in out["result"]]

    def status(self, serving_name: str, *, version: int | None = None, label: str | None = None) -> dict[str, Any]:
        """The v1 model status (``model_version_status``)."""
        return self._call("GET", model_path(serving_name, version=version, label=label))

    def metadata(self, serving_name: str, *, version: int | None = None, label: str | None = None) -> dict[str, Any]:
        """The v1 model metadata (``signature_def``)."""
        return self._call("GET", model_path(serving_name, version=version, label=label) + "/metadata")

    def infer_v2(
        self,
        serving_name: str,
        inputs: Mapping[str, Any] | Any,
        *,
        version: int | None = None,
        request_id: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Open Inference Protocol v2 ``infer``; the outputs by name.

        Parameters
        ----------
        serving_name
            Name of the serving.
        inputs
            One array (sent as the model's first input, named ``input``) or a mapping name -> array.
        version
            Pin a model version.
        request_id
            Request id echoed by the server.
        """
        named = inputs if isinstance(inputs, Mapping) else {"input": inputs}
        tensors = []
        for name, value in named.items():
            arr = np.asarray(value)
            dtype = _V2_TYPES.get(arr.dtype.str.lstrip("<>=|"))
            if dtype is None:
                raise ServingError(400, f"input {name!r}: dtype {arr.dtype} has no Open Inference Protocol datatype")
            tensors.append({"name": name, "shape": list(arr.shape), "datatype": dtype,
                            "data": arr.reshape(-1).tolist()})
        body: dict[str, Any] = {"inputs": tensors}
        if request_id is not None:
            body["id"] = request_id
        path = f"/v2/models/{quote(serving_name, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        out = self._call("POST", path + "/infer", body)
        return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in out.get("outputs", [])}


_V2_TYPES = {"f4": "FP32", "f8": "FP64", "f2": "FP16", "i1": "INT8", "i2": "INT16", "i4": "INT32",
             "i8": "INT64", "u1": "UINT8", "u2": "UINT16", "u4": "UINT32", "u8": "UINT64", "b1": "BOOL"}

"""The protocol-neutral core of the server: authorise, find the model, check inputs, predict, log.

The protocol adapters (:mod:`~workbench.serving.v1` for TF-Serving REST,
:mod:`~workbench.serving.v2` for the Open Inference Protocol) decode a request
into arrays and encode the answer; everything between — the API key and its
project, the serving and its version or label, the input checks, batching, the
time limit and the inference log — happens here, once, for both.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.serving.auth import AuthStore, Principal, api_key_from_headers
from workbench.serving.batching import BatchingOptions, Retired
from workbench.serving.errors import AuthError, BadRequest, NotFound, Overloaded, ServingError
from workbench.serving.inference_log import InferenceLogger, prediction_summary
from workbench.serving.model import ServedModel, check_inputs
from workbench.serving.repository import ModelRepository, ServingConfig, check_serving_name

__all__ = ["DataPlane", "InferenceResult"]

log = logging.getLogger(__name__)

#: decode(model) -> tensors: the adapter's request decoding, given the model's input specs.
Decode = Callable[[ServedModel], Any]


@dataclass(frozen=True)
class InferenceResult:
    """The answer of one inference request."""

    request_id: str
    serving: str
    model: ServedModel
    outputs: dict[str, np.ndarray]
    principal: Principal


class DataPlane:
    """Authorisation, model look-up, prediction and logging shared by every protocol.

    Parameters
    ----------
    repository
        The servings this worker serves.
    auth
        Projects and API keys.
    logger
        The inference log (None: no logging).
    request_timeout
        Seconds a prediction may wait and run before the request is answered 503.
    max_rows
        Most rows one request may hold.
    """

    def __init__(self, repository: ModelRepository, auth: AuthStore, logger: InferenceLogger | None, *,
                 request_timeout: float = 30.0, max_rows: int = 4096) -> None:
        self.repository = repository
        self.auth = auth
        self.logger = logger
        self.request_timeout = float(request_timeout)
        self.max_rows = int(max_rows)

    # -- authorisation -----------------------------------------------------------------------
    def principal(self, headers: Mapping[str, str] | Any, serving: str, *, scope: str = "serving:infer") -> Principal:
        """Who calls, checked for ``scope`` on the project that owns ``serving``.

        401 (no/unknown/revoked key) comes before 404 (unknown serving), which comes
        before 403 (another project's key, or a missing scope).
        """
        key = api_key_from_headers(headers)
        try:
            principal = self.auth.authenticate(key, project=None, scope=scope)
        except AuthError as exc:
            if exc.status != 403:
                raise
            principal = None
            denied = exc
        cfg = self.repository.config(serving)
        if principal is None:
            raise denied
        if principal.project != cfg.project:
            raise AuthError(403, f"API key {principal.key_prefix} belongs to project {principal.project!r}; "
                                 f"serving {serving!r} belongs to project {cfg.project!r}")
        return principal

    def admin(self, headers: Mapping[str, str] | Any, project: str) -> Principal:
        """A caller holding ``serving:admin`` on ``project``."""
        return self.auth.authenticate(api_key_from_headers(headers), project=project, scope="serving:admin")

    # -- inference --------------------------------------------------------------------------
    async def infer(
        self,
        headers: Mapping[str, str] | Any,
        serving: str,
        decode: Decode,
        *,
        version: int | None = None,
        label: str | None = None,
        protocol: str,
        endpoint: str,
        client_id: str = "",
    ) -> InferenceResult:
        """Run one inference request and log it (whatever its outcome).

        Parameters
        ----------
        headers
            Request headers (the API key).
        serving
            Serving name.
        decode
            ``decode(model)``: the request's tensors (a mapping input name -> array, or one array).
        version, label
            A version or label the request pins.
        protocol, endpoint
            For the log (``"v1"``/``"v2"``, ``"predict"``/``"classify"``/``"infer"``).
        client_id
            The caller's request id (logged).
        """
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        entry: dict[str, Any] = {
            "request_id": request_id, "client_id": client_id, "time": _dt.datetime.now(_dt.UTC),
            "serving": serving, "protocol": protocol, "endpoint": endpoint,
        }
        status = 200
        try:
            principal = self.principal(headers, serving)
            entry.update(project=principal.project, user=principal.user, key_prefix=principal.key_prefix)
            outputs: dict[str, np.ndarray] | None = None
            for attempt in range(3):
                live = self.repository.get(serving, version=version, label=label)
                model = live.model
                entry.update(model=model.model_name, model_version=model.version)
                arrays = check_inputs(model.inputs, decode(model), max_rows=self.max_rows)
                entry["rows"] = int(next(iter(arrays.values())).shape[0])
                entry["input_shape"] = ";".join(str(list(a.shape)) for a in arrays.values())
                try:
                    outputs = await asyncio.wait_for(live.batcher.submit(arrays), timeout=self.request_timeout)
                    break
                except Retired:
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.01)
                except TimeoutError:
                    raise Overloaded(f"serving {serving!r} did not answer within {self.request_timeout:g} s") from None
            assert outputs is not None
            counts, confidence = prediction_summary(outputs, len(model.class_names) if model.is_classifier else None)
            entry.update(class_counts=counts, mean_confidence=confidence)
            return InferenceResult(request_id, serving, model, outputs, principal)
        except ServingError as exc:
            status = exc.status
            entry["error"] = str(exc)[:500]
            raise
        except Exception as exc:
            status = 500
            entry["error"] = f"{type(exc).__name__}: {exc}"[:500]
            raise
        finally:
            entry["status"] = status
            entry["latency_ms"] = (time.perf_counter() - started) * 1000.0
            if self.logger is not None:
                self.logger.log(entry)

    # -- status and metadata ----------------------------------------------------------------
    def status(self, headers: Mapping[str, str] | Any, serving: str, *, version: int | None = None,
               label: str | None = None) -> dict[str, Any]:
        """Protocol-neutral state of a serving: config, loaded version, state, failure."""
        self.principal(headers, serving)
        cfg = self.repository.config(serving)
        live = self.repository.live.get(serving)
        if live is not None:
            live.matches(version=version, label=label)
            state = "AVAILABLE"
        elif cfg.status != "running":
            state = "END"
        elif serving in self.repository.failures:
            state = "FAILED"
        else:
            state = "LOADING"
        if live is None and version is not None:
            raise NotFound(f"serving {serving!r} has no loaded version {version}")
        return {
            "config": cfg.to_dict(), "state": state, "version": live.model.version if live else None,
            "error": self.repository.failures.get(serving, ""), "model": live.model if live else None,
        }

    def model(self, headers: Mapping[str, str] | Any, serving: str, *, version: int | None = None,
              label: str | None = None) -> ServedModel:
        """The loaded model of ``serving`` (for metadata)."""
        self.principal(headers, serving)
        return self.repository.get(serving, version=version, label=label).model

    # -- administration ---------------------------------------------------------------------
    async def set_status(self, headers: Mapping[str, str] | Any, serving: str, status: str) -> ServingConfig:
        """Start or stop a serving (admin scope on its project)."""
        cfg = self.repository.config(check_serving_name(serving))
        self.admin(headers, cfg.project)
        new = await asyncio.to_thread(self.repository.store.set_status, serving, status)
        await self.repository.reconcile()
        return new

    async def create_or_update(self, headers: Mapping[str, str] | Any, serving: str,
                               body: Mapping[str, Any]) -> ServingConfig:
        """Create or update a serving from a JSON body (admin scope on its project)."""
        check_serving_name(serving)
        project = body.get("project")
        if not isinstance(project, str):
            raise BadRequest("the body needs 'project': the name of the project that owns the serving")
        self.admin(headers, project)
        try:
            existing: ServingConfig | None = self.repository.store.get(serving)
        except NotFound:
            existing = None
        if existing is not None and existing.project != project:
            raise AuthError(403, f"serving {serving!r} belongs to project {existing.project!r}")
        from workbench.serving.hopsworks import build_config

        cfg = build_config(
            serving, body.get("model_name"), model_version=body.get("model_version"), project=project,
            batching=body.get("batching"), imports=body.get("imports") or (), status=body.get("status"),
            description=body.get("description", ""), existing=existing, registry_project=self.repository.project,
        )
        new = await asyncio.to_thread(self.repository.store.put, cfg)
        await self.repository.reconcile()
        return new

    @staticmethod
    def batching_of(cfg: ServingConfig) -> BatchingOptions:
        """The batching options of a serving."""
        return cfg.batching

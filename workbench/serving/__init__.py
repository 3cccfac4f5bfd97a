"""Model serving over the model registry: TF-Serving REST (v1) and Open Inference Protocol (v2).

Like KServe's python server: a protocol-neutral core (:mod:`~workbench.serving.model`,
:mod:`~workbench.serving.repository`, :mod:`~workbench.serving.batching`,
:mod:`~workbench.serving.dataplane`) under two thin protocol adapters
(:mod:`~workbench.serving.v1`, :mod:`~workbench.serving.v2`), with projects, members and
API keys (:mod:`~workbench.serving.auth`), an inference log in the feature store
(:mod:`~workbench.serving.inference_log`) and monitoring (:mod:`~workbench.serving.monitoring`).

The Hopsworks-shaped functions (``create_or_update``, ``get_all``, ``start``, ``stop``,
``get_status``, ``make_inference_request``, ``get_inference_log``) are re-exported here.
"""

from __future__ import annotations

from workbench.serving.client import ServingClient
from workbench.serving.errors import AuthError, ServingError
from workbench.serving.hopsworks import (
    create_or_update,
    delete,
    get,
    get_all,
    get_inference_log,
    get_status,
    make_inference_request,
    server_info,
    start,
    stop,
)

__all__ = [
    "AuthError",
    "ServingClient",
    "ServingError",
    "create_or_update",
    "delete",
    "get",
    "get_all",
    "get_inference_log",
    "get_status",
    "make_inference_request",
    "server_info",
    "start",
    "stop",
]

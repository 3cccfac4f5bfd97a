"""Model serving (TF-Serving REST v1 and Open Inference Protocol v2) over the model registry."""

from __future__ import annotations

from workbench.serving.client import ServingClient
from workbench.serving.errors import AuthError, ServingError

__all__ = ["ServingClient", "ServingError", "AuthError"]

"""Federated GeoSPARQL: one query over several SPARQL endpoints (Semagrow / FedX style).

See ``docs/federation.md``. Public face::

    from workbench.linked.federation import Federation, FederationServer
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench._lazy import lazy_exports

_EXPORTS = {
    "Federation": "workbench.linked.federation.federation",
    "SelectResult": "workbench.linked.federation.federation",
    "Plan": "workbench.linked.federation.federation",
    "FederationError": "workbench.linked.federation.errors",
    "UnsupportedQueryError": "workbench.linked.federation.errors",
    "MemberError": "workbench.linked.federation.errors",
    "FederationServer": "workbench.linked.federation.server",
    "create_federation_app": "workbench.linked.federation.server",
    "SourceMetadata": "workbench.linked.federation.metadata",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from workbench.linked.federation.errors import FederationError, MemberError, UnsupportedQueryError
    from workbench.linked.federation.federation import Federation, Plan, SelectResult
    from workbench.linked.federation.metadata import SourceMetadata
    from workbench.linked.federation.server import FederationServer, create_federation_app

__all__ = [
    "Federation",
    "FederationError",
    "FederationServer",
    "MemberError",
    "Plan",
    "SelectResult",
    "SourceMetadata",
    "UnsupportedQueryError",
    "create_federation_app",
]

"""The errors of the federator: one base class, a refusal, and a member's failure."""

from __future__ import annotations

from workbench.errors import WorkbenchError

__all__ = ["FederationError", "MemberError", "UnsupportedQueryError"]


class FederationError(WorkbenchError):
    """A federated query failed (base class of the federator's errors)."""


class UnsupportedQueryError(FederationError, ValueError):
    """The federator cannot decompose this query over its members and refuses it (rather than answer wrongly)."""


class MemberError(FederationError):
    """A member endpoint is down, timed out or answered an HTTP error.

    Attributes
    ----------
    member
        The member's name.
    status
        The HTTP status the federated endpoint answers with: 504 for a timeout, 502 otherwise.
    """

    def __init__(self, member: str, message: str, *, timeout: bool = False) -> None:
        super().__init__(f"member {member!r}: {message}")
        self.member = member
        self.status = 504 if timeout else 502

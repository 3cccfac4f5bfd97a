"""HTTP client of one member endpoint (SPARQL 1.1 Protocol, JSON results), with request counts.

Every sub-query the federator sends goes through :meth:`MemberClient.select` or
:meth:`MemberClient.ask`; failures become :class:`~workbench.linked.federation.errors.MemberError`
naming the member (down, timed out, HTTP error, unreadable answer).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from rdflib import Variable
from rdflib.term import Node

from workbench.linked.federation.errors import MemberError
from workbench.linked.federation.terms import from_json

__all__ = ["MemberClient", "MemberStats", "Table"]

log = logging.getLogger(__name__)


@dataclass
class Table:
    """Solutions of a sub-query: variables and rows of rdflib terms (``None``: unbound)."""

    variables: tuple[Variable, ...]
    rows: list[tuple[Node | None, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class MemberStats:
    """Requests sent to a member and the seconds they took."""

    requests: int = 0
    selects: int = 0
    asks: int = 0
    seconds: float = 0.0
    rows: int = 0


class MemberClient:
    """One member endpoint.

    Parameters
    ----------
    name
        The member's name (in messages, plans and statistics).
    url
        Its SPARQL endpoint URL.
    timeout
        Seconds one request may take.
    api_key
        Sent as ``Authorization: Bearer KEY`` when given.
    """

    def __init__(self, name: str, url: str, *, timeout: float = 30.0, api_key: str | None = None) -> None:
        self.name = name
        self.url = url
        self.timeout = timeout
        headers = {"Accept": "application/sparql-results+json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(timeout=timeout, headers=headers, limits=httpx.Limits(max_connections=16))
        self.stats = MemberStats()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _post(self, query: str) -> Any:
        started = time.perf_counter()
        try:
            response = self._http.post(self.url, content=query.encode("utf-8"),
                                       headers={"Content-Type": "application/sparql-query"})
        except httpx.TimeoutException as exc:
            raise MemberError(self.name, f"no answer from {self.url} within {self.timeout:g} s ({exc})",
                              timeout=True) from None
        except httpx.HTTPError as exc:
            raise MemberError(self.name, f"cannot reach {self.url}: {exc}") from None
        finally:
            with self._lock:
                self.stats.requests += 1
                self.stats.seconds += time.perf_counter() - started
        if response.status_code == 504 or (response.status_code == 503 and "timed out" in response.text):
            raise MemberError(self.name, f"{self.url} timed out: {response.text.strip()[:300]}", timeout=True)
        if response.status_code != 200:
            raise MemberError(self.name, f"{self.url} answered HTTP {response.status_code}: "
                              f"{response.text.strip()[:300]}")
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise MemberError(self.name, f"{self.url} answered something that is not SPARQL JSON: {exc}") from None

    def select(self, query: str) -> Table:
        """Run a SELECT sub-query; its solutions as a :class:`Table`."""
        log.debug("-> %s: %s", self.name, query)
        doc = self._post(query)
        try:
            names = doc["head"]["vars"]
            bindings = doc["results"]["bindings"]
        except (KeyError, TypeError):
            raise MemberError(self.name, f"{self.url} answered JSON without head.vars / results.bindings") from None
        variables = tuple(Variable(n) for n in names)
        member = self.name
        rows = [tuple(from_json(b[n], member=member) if n in b else None for n in names) for b in bindings]
        with self._lock:
            self.stats.selects += 1
            self.stats.rows += len(rows)
        return Table(variables, rows)

    def ask(self, query: str) -> bool:
        """Run an ASK sub-query."""
        log.debug("-> %s: %s", self.name, query)
        doc = self._post(query)
        with self._lock:
            self.stats.asks += 1
        if not isinstance(doc, dict) or not isinstance(doc.get("boolean"), bool):
            raise MemberError(self.name, f"{self.url} answered an ASK query without a boolean")
        return doc["boolean"]

    def reset_stats(self) -> None:
        """Zero the request counters."""
        with self._lock:
            self.stats = MemberStats()

"""Where the panel's jobs run: the local :class:`~workbench.processors.jobs.JobManager` or an OGC API server.

Both backends offer the same four calls — ``processors()``, ``submit()``,
``job()`` and ``jobs()`` — so the panel does not know which one it talks to.
:class:`ApiBackend` speaks OGC API – Processes Part 1 over HTTP
(``GET /processes``, ``POST /processes/{id}/execution`` with
``Prefer: respond-async``, ``GET /jobs/{id}``, ``GET /jobs/{id}/results``,
``GET /jobs``), with the API key in ``Authorization: ApiKey <key>``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from workbench.errors import WorkbenchError
from workbench.ui.state import JobRow

__all__ = ["ApiBackend", "ApiError", "LocalBackend", "PanelBackend", "ProcessorInfo"]

log = logging.getLogger(__name__)


class ApiError(WorkbenchError):
    """The OGC API server refused a request or could not be reached.

    Attributes
    ----------
    status
        HTTP status (0 when the server could not be reached).
    detail
        The server's message (the ``detail`` of its exception document).
    input
        The input the server names as bad, if any.
    """

    def __init__(self, status: int, detail: str, *, input: str | None = None) -> None:
        self.status = status
        self.detail = detail
        self.input = input
        super().__init__(detail)


@dataclass(frozen=True)
class ProcessorInfo:
    """A processor as the panel lists it."""

    id: str
    title: str
    collection: str | None = None


class PanelBackend(Protocol):
    """What the panel needs from a job service."""

    def processors(self) -> list[ProcessorInfo]:
        """The processors offered."""

    def submit(self, processor_id: str, raw_inputs: Mapping[str, Any]) -> str:
        """Start a job; returns its id."""

    def job(self, job_id: str) -> JobRow:
        """The state of a job (with its product once successful)."""

    def jobs(self, *, limit: int = 20) -> list[JobRow]:
        """Recent jobs, newest first."""


def _collection_default(options_schema: Mapping[str, Any]) -> str | None:
    prop = (options_schema.get("properties") or {}).get("collection") or {}
    default = prop.get("default")
    return str(default) if default else None


class LocalBackend:
    """Jobs in this process through a :class:`~workbench.processors.jobs.JobManager`.

    Parameters
    ----------
    manager
        The job manager (default: one on the project's ``processes/jobs.db``, made on first use).
    user
        Recorded as the submitting user.
    """

    def __init__(self, manager: Any = None, *, user: str | None = None) -> None:
        self._manager = manager
        self.user = user

    @property
    def manager(self) -> Any:
        """The job manager (made on first use)."""
        if self._manager is None:
            from workbench.processors.jobs import JobManager

            self._manager = JobManager()
        return self._manager

    def processors(self) -> list[ProcessorInfo]:
        from workbench.processors.base import list_processors

        return [ProcessorInfo(p.id, p.title, _collection_default(p.options_schema)) for p in list_processors()]

    def submit(self, processor_id: str, raw_inputs: Mapping[str, Any]) -> str:
        return str(self.manager.submit(processor_id, raw_inputs, user=self.user))

    def job(self, job_id: str) -> JobRow:
        return JobRow.from_job(self.manager.get(job_id))

    def jobs(self, *, limit: int = 20) -> list[JobRow]:
        return [JobRow.from_job(j) for j in self.manager.list(limit=limit)]


class ApiBackend:
    """Jobs on an OGC API – Processes server (``workbench processes serve`` or any other).

    Parameters
    ----------
    url
        Landing page of the server, e.g. ``http://127.0.0.1:5000``.
    api_key
        Key with scope ``processes:execute`` (sent as ``Authorization: ApiKey <key>``).
    timeout
        Seconds per request.
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 30.0) -> None:
        from urllib.parse import urlparse

        parsed = urlparse(str(url))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ApiError(0, f"processes_url must be an http(s) URL like http://127.0.0.1:5000, got {url!r}",
                           input="processes_url")
        self.url = str(url).rstrip("/")
        self.api_key = api_key
        self.timeout = float(timeout)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"ApiKey {self.api_key}"
        return headers

    def _request(self, method: str, path: str, *, json: Any = None, headers: Mapping[str, str] | None = None,
                 params: Mapping[str, Any] | None = None) -> Any:
        import httpx

        try:
            response = httpx.request(method, self.url + path, json=json, params=params,
                                     headers={**self._headers(), **dict(headers or {})}, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"the processes server {self.url} cannot be reached: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            detail = body.get("detail") if isinstance(body, dict) else None
            name = body.get("input") if isinstance(body, dict) else None
            raise ApiError(response.status_code, str(detail or response.text[:300] or response.reason_phrase),
                           input=str(name) if name else None)
        if not isinstance(body, dict):
            raise ApiError(response.status_code, f"{method} {path}: the server answered no JSON object")
        return body

    def processors(self) -> list[ProcessorInfo]:
        body = self._request("GET", "/processes")
        out = []
        for summary in body.get("processes", []):
            pid = str(summary.get("id", ""))
            if not pid:
                continue
            try:
                described = self._request("GET", f"/processes/{pid}")
                options = ((described.get("inputs") or {}).get("options") or {}).get("schema") or {}
            except ApiError:
                options = {}
            out.append(ProcessorInfo(pid, str(summary.get("title") or pid), _collection_default(options)))
        return out

    def submit(self, processor_id: str, raw_inputs: Mapping[str, Any]) -> str:
        body = self._request("POST", f"/processes/{processor_id}/execution", json={"inputs": dict(raw_inputs)},
                             headers={"Prefer": "respond-async"})
        job_id = body.get("jobID")
        if not job_id:
            raise ApiError(200, "the server ran the job synchronously and gave no jobID")
        return str(job_id)

    def job(self, job_id: str) -> JobRow:
        info = self._request("GET", f"/jobs/{job_id}")
        product = None
        if info.get("status") == "successful":
            product = self._request("GET", f"/jobs/{job_id}/results").get("product")
        return JobRow.from_status_info(info, product)

    def jobs(self, *, limit: int = 20) -> list[JobRow]:
        body = self._request("GET", "/jobs", params={"limit": limit})
        return [JobRow.from_status_info(info) for info in body.get("jobs", [])]

"""OGC API – Processes over HTTP on loopback: `workbench processes serve` as a subprocess, a client written
from the standard (plain httpx following links and status codes), schemathesis on the OpenAPI document,
errors as OGC exceptions, API keys, dismiss, and jobs that survive a restart of the server."""

from __future__ import annotations

import os

os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers.processes import (
    SEAICE_DATES,
    build_project,
    free_port,
    inner_bbox,
    project_env,
    start_server,
    stop_server,
)
from workbench.errors import DataError

REL = "http://www.opengis.net/def/rel/ogc/1.0"
CONF = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf"


class Server:
    """`workbench processes serve` on a free port of 127.0.0.1, restartable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Any = None

    def start(self) -> None:
        self.proc = start_server(["workbench.cli", "processes", "serve", "--port", str(self.port),
                                  "--max-body-bytes", "65536", "--max-running", "1"],
                                 env=project_env(self.root), url=f"{self.url}/conformance",
                                 log=self.root / "processes.log", cwd=self.root)

    def stop(self, *, kill: bool = False) -> None:
        if kill and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=20)
        stop_server(self.proc)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from workbench.samples.sarsen_assets import find_grd_safe
    from workbench.serving.auth import AuthStore

    try:
        find_grd_safe()
    except DataError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("processes-api")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_PROJECT_DIR", str(root))
        mp.chdir(root)
        info = build_project(root)
        store = AuthStore()
        info["key"] = store.create_project("tep", owner="alice")
        store.add_member("tep", "bob", role="data_scientist")
        info["infer_key"] = store.create_key("tep", "bob", scopes=("serving:infer",))
        store.close()
        info["root"] = root
        yield info


@pytest.fixture(scope="module")
def server(project: dict[str, Any]) -> Iterator[Server]:
    srv = Server(project["root"])
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _inputs(project: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"region": {"bbox": inner_bbox(project["scene_bbox"], 0.6)}, "start": SEAICE_DATES[0],
            "end": SEAICE_DATES[1], "model": project["seaice"], **extra}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {key}"}


def _link(doc: dict[str, Any], rel: str) -> str:
    found = [link["href"] for link in doc["links"] if link["rel"] == rel]
    assert found, f"no link rel={rel!r} in {doc['links']}"
    return found[0]


def _problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    media = ("application/problem+json", "application/json") if status == 413 else ("application/problem+json",)
    assert resp.headers["content-type"].startswith(media), resp.headers["content-type"]
    body = resp.json()
    assert body["status"] == status and isinstance(body["type"], str) and isinstance(body["detail"], str)
    assert body["title"]
    return body


# ------------------------------------------------------------------ a client written from the standard


def test_client_following_the_standard(server: Server, project: dict[str, Any]) -> None:
    """Landing page → conformance, API, processes → description → execute (async) → status → results."""
    with httpx.Client(timeout=60) as http:
        landing = http.get(server.url + "/")
        assert landing.status_code == 200 and landing.headers["content-type"].startswith("application/json")
        doc = landing.json()
        api = http.get(_link(doc, "service-desc"))
        assert api.status_code == 200 and api.json()["openapi"].startswith("3.0")
        conformance = http.get(_link(doc, "http://www.opengis.net/def/rel/ogc/1.0/conformance")).json()
        for cls in ("core", "ogc-process-description", "json", "oas30", "job-list", "dismiss"):
            assert f"{CONF}/{cls}" in conformance["conformsTo"]
        processes = http.get(_link(doc, f"{REL}/processes")).json()
        summary = next(p for p in processes["processes"] if p["id"] == "sea_ice_chart")
        assert {"async-execute", "sync-execute", "dismiss"} <= set(summary["jobControlOptions"])
        description = http.get(_link(summary, "self")).json()
        assert description["inputs"]["region"]["schema"]["oneOf"] and description["outputs"]["product"]["schema"]
        assert description["inputs"]["start"]["minOccurs"] == 1 and description["inputs"]["mode"]["minOccurs"] == 0
        execute = _link(summary, f"{REL}/execute")
        created = http.post(execute, json={"inputs": _inputs(project)},
                            headers={"Prefer": "respond-async", **_auth(project["key"])})
        assert created.status_code == 201, created.text
        location = created.headers["Location"]
        assert created.json()["status"] in ("accepted", "running")
        progress = []
        for _ in range(600):
            status = http.get(location).json()
            progress.append(status["progress"])
            if status["status"] in ("successful", "failed", "dismissed"):
                break
            time.sleep(0.1)
        assert status["status"] == "successful", status
        assert status["progress"] == 100 and progress == sorted(progress)
        assert status["processID"] == "sea_ice_chart" and status["type"] == "process"
        for key in ("created", "started", "finished", "updated"):
            assert key in status
        results = http.get(_link(status, f"{REL}/results"))
        assert results.status_code == 200
        product = results.json()["product"]
        assert Path(product["cog"]).is_file() and product["model"]["name"] == "seaice_tiny"
        jobs = http.get(_link(doc, f"{REL}/job-list")).json()
        assert status["jobID"] in [j["jobID"] for j in jobs["jobs"]]
        only = http.get(server.url + "/jobs", params={"processID": "crop_type_map"}).json()
        assert status["jobID"] not in [j["jobID"] for j in only["jobs"]]
        # synchronous by default: the results in the answer, the job in the list
        sync = http.post(execute, json={"inputs": _inputs(project, options={"publish": False})},
                         headers=_auth(project["key"]))
        assert sync.status_code == 200, sync.text
        assert Path(sync.json()["product"]["quicklook"]).is_file()
        monitor = sync.headers["Link"].split(";")[0].strip("<>")
        assert http.get(monitor).json()["status"] == "successful"


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("change, name", [
    ({"region": {"bbox": [14.2, 41.7, 14.1, 41.8]}}, "region"),
    ({"region": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}, "region"),
    ({"start": "2021-12-31", "end": "2021-12-01"}, "end"),
    ({"start": "yesterday"}, "start"),
    ({"model": {"name": "nosuch_model", "version": 1}}, "model"),
    ({"mode": "remote"}, "serving_url"),
    ({"mode": "remote", "serving_url": "http://127.0.0.1:9"}, "api_key"),
    ({"regoin": {}}, "regoin"),
    ({"options": {"batch_size": 0}}, "options.batch_size"),
])
def test_bad_inputs_are_400_naming_the_input(server: Server, project: dict[str, Any], change: dict[str, Any],
                                             name: str) -> None:
    resp = httpx.post(f"{server.url}/processes/sea_ice_chart/execution",
                      json={"inputs": {**_inputs(project), **change}}, headers=_auth(project["key"]), timeout=30)
    body = _problem(resp, 400)
    assert body["input"] == name and f"'{name}'" in body["detail"]


def test_no_scene_in_the_region_is_400(server: Server, project: dict[str, Any]) -> None:
    resp = httpx.post(f"{server.url}/processes/sea_ice_chart/execution", timeout=60, headers=_auth(project["key"]),
                      json={"inputs": _inputs(project, region={"bbox": [100.0, 10.0, 100.1, 10.1]})})
    assert _problem(resp, 400)["input"] == "region"


def test_malformed_requests(server: Server, project: dict[str, Any]) -> None:
    url = f"{server.url}/processes/sea_ice_chart/execution"
    key = _auth(project["key"])
    _problem(httpx.post(url, content=b"{not json", headers={**key, "Content-Type": "application/json"}), 400)
    _problem(httpx.post(url, json=[1, 2], headers=key), 400)
    assert _problem(httpx.post(url, json={"input": {}}, headers=key), 400)["input"] == "input"
    assert _problem(httpx.post(url, json={}, headers=key), 400)["input"] == "inputs"
    _problem(httpx.post(url, json={"inputs": {}, "response": "stream"}, headers=key), 400)
    _problem(httpx.post(url, content=b"a=b", headers={**key, "Content-Type": "application/x-www-form-urlencoded"}),
             415)
    _problem(httpx.post(url, content=b"x" * 70000, headers={**key, "Content-Type": "application/json"}), 413)

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 4096

    _problem(httpx.post(url, content=chunks(), headers={**key, "Content-Type": "application/json"}), 413)
    _problem(httpx.get(f"{server.url}/processes", params={"f": "xml"}), 400)
    _problem(httpx.get(f"{server.url}/jobs", params={"limit": "0"}), 400)
    _problem(httpx.get(f"{server.url}/jobs", params={"status": "done"}), 400)


def test_unknown_process_and_job_are_404(server: Server, project: dict[str, Any]) -> None:
    body = _problem(httpx.get(f"{server.url}/processes/sea_ice"), 404)
    assert body["type"].endswith("no-such-process") and "sea_ice_chart" in body["detail"]
    _problem(httpx.post(f"{server.url}/processes/nope/execution", json={"inputs": {}}, headers=_auth(project["key"])),
             404)
    assert _problem(httpx.get(f"{server.url}/jobs/nope"), 404)["type"].endswith("no-such-job")
    _problem(httpx.get(f"{server.url}/jobs/nope/results"), 404)
    _problem(httpx.delete(f"{server.url}/jobs/nope", headers=_auth(project["key"])), 404)


def test_execution_needs_a_key_with_the_processes_scope(server: Server, project: dict[str, Any]) -> None:
    url = f"{server.url}/processes/sea_ice_chart/execution"
    body = {"inputs": _inputs(project)}
    resp = httpx.post(url, json=body)
    _problem(resp, 401)
    assert "ApiKey" in resp.headers["WWW-Authenticate"]
    _problem(httpx.post(url, json=body, headers=_auth("wb_nothing_here")), 401)
    _problem(httpx.post(url, json=body, headers={"Authorization": "Basic dXNlcjpwdw=="}), 401)
    assert "processes:execute" in _problem(httpx.post(url, json=body, headers=_auth(project["infer_key"])),
                                           403)["detail"]
    _problem(httpx.delete(f"{server.url}/jobs/anything"), 401)


# ------------------------------------------------------------------ dismiss, restart


def _submit(server: Server, project: dict[str, Any], **options: Any) -> str:
    resp = httpx.post(f"{server.url}/processes/sea_ice_chart/execution", timeout=30,
                      json={"inputs": _inputs(project, options={"publish": False, **options})},
                      headers={"Prefer": "respond-async", **_auth(project["key"])})
    assert resp.status_code == 201, resp.text
    return resp.headers["Location"]


def test_dismiss_cancels_a_job(server: Server, project: dict[str, Any]) -> None:
    location = _submit(server, project, chunk=32, batch_size=8)
    resp = httpx.delete(location, headers=_auth(project["key"]))
    assert resp.status_code == 200 and resp.json()["status"] == "dismissed"
    time.sleep(3.0)
    status = httpx.get(location).json()
    assert status["status"] == "dismissed"
    _problem(httpx.get(location + "/results"), 404)
    listed = httpx.get(f"{server.url}/jobs").json()["jobs"]
    assert status["jobID"] not in [j["jobID"] for j in listed]
    dismissed = httpx.get(f"{server.url}/jobs", params={"status": "dismissed"}).json()["jobs"]
    assert status["jobID"] in [j["jobID"] for j in dismissed]


def test_restart_keeps_jobs_and_results_and_fails_interrupted_ones(server: Server, project: dict[str, Any]) -> None:
    before = httpx.get(f"{server.url}/jobs").json()["jobs"]
    done = [j for j in before if j["status"] == "successful"]
    assert done, "an earlier test ran a job"
    results = httpx.get(f"{server.url}/jobs/{done[0]['jobID']}/results").json()
    interrupted = _submit(server, project, chunk=32, batch_size=8)
    server.stop(kill=True)
    server.start()
    after = {j["jobID"]: j for j in httpx.get(f"{server.url}/jobs").json()["jobs"]}
    assert {j["jobID"] for j in before} <= set(after)
    assert httpx.get(f"{server.url}/jobs/{done[0]['jobID']}/results").json() == results
    status = httpx.get(interrupted).json()
    assert status["status"] in ("failed", "successful")
    if status["status"] == "failed":
        assert "interrupted" in status["message"]


# ------------------------------------------------------------------ fuzzing


def test_schemathesis_no_5xx(server: Server, project: dict[str, Any]) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(server.url + "/api")
    failures: list[str] = []
    seen = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  derandomize=True)
        @given(operation.as_strategy())
        def check(case: Any) -> None:
            nonlocal seen
            resp = case.call(headers=_auth(project["key"]), timeout=60)
            seen += 1
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {resp.status_code} {resp.text[:300]}")
            if resp.status_code >= 400:
                body = resp.json()
                assert body["status"] == resp.status_code and "detail" in body, resp.text
            try:
                case.validate_response(resp)
            except Exception as exc:  # noqa: BLE001 - collect every kind of non-conformance
                failures.append(f"{case.method} {case.formatted_path}: {str(exc)[:300]}")

        check()
    assert seen > 60 and not failures, failures[:5]
    assert httpx.get(server.url + "/conformance").status_code == 200

"""Model serving on a real server (``workbench serve start`` subprocess on loopback): both protocols,
status codes, keys and projects, rollout, batching, inference log after a clean stop and a kill,
schemathesis fuzzing, a bounded load test and the CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.servers.serving import ServingProject, build_project, server_env
from workbench.cli import main
from workbench.serving import hopsworks
from workbench.serving.client import ServingClient
from workbench.serving.errors import ServingError
from workbench.serving.inference_log import read_inference_log
from workbench.serving.server import ServerProcess

FLUSH = 0.5
MAX_BODY = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> ServingProject:
    return build_project(tmp_path_factory.mktemp("serving") / "project")


@pytest.fixture(scope="module")
def server(project: ServingProject, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("serving-logs") / "server.log"
    proc = ServerProcess(project_dir=project.path, env=server_env(), log_file=log,
                         args=["--flush-interval", str(FLUSH), "--max-body-bytes", str(MAX_BODY),
                               "--poll-interval", "0.2"])
    proc.start(timeout=240)
    yield proc
    proc.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {key}"}


@pytest.fixture(scope="module")
def alice(server: ServerProcess, project: ServingProject) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=auth(project.keys["alice"]), timeout=30) as c:
        yield c


def v2_body(x: np.ndarray, name: str = "patch", **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32",
                        "data": x.reshape(-1).tolist()}], **extra}


# ------------------------------------------------------------------------------------------ protocols
def test_v1_status_metadata_predict(alice: httpx.Client, project: ServingProject) -> None:
    st = alice.get("/v1/models/seaice").json()
    assert st["model_version_status"][0] == {"version": "1", "state": "AVAILABLE",
                                             "status": {"error_code": "OK", "error_message": ""}}
    assert alice.get("/v1/models/seaice/labels/champion").status_code == 200
    meta = alice.get("/v1/models/seaice/versions/1/metadata").json()
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["patch"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["patch"]["tensor_shape"]["dim"]] == ["-1", "32", "32", "3"]
    assert list(sig["outputs"]) == ["classes"]

    x = project.patches[:3]
    rows = alice.post("/v1/models/seaice:predict", json={"instances": x.tolist()})
    assert rows.status_code == 200, rows.text
    pred = np.asarray(rows.json()["predictions"], dtype=np.float32)
    assert pred.shape == (3, 2) and np.allclose(pred.sum(axis=1), 1, atol=1e-5)
    cols = alice.post("/v1/models/seaice/labels/champion:predict",
                      json={"signature_name": "serving_default", "inputs": x.tolist()}).json()
    assert np.array_equal(np.asarray(cols["outputs"], np.float32), pred)
    b64 = [{"b64": base64.b64encode(r.astype("<f4").tobytes()).decode()} for r in x]
    assert np.array_equal(np.asarray(alice.post("/v1/models/seaice:predict", json={"instances": b64}).json()[
        "predictions"], np.float32), pred)
    named = alice.post("/v1/models/seaice/versions/1:predict", json={"instances": [{"patch": r} for r in x.tolist()]})
    assert np.array_equal(np.asarray(named.json()["predictions"], np.float32), pred)

    # the same model, in process
    from workbench import registry

    model = registry.get_model("seaice_adhoc_binary", alias="champion", project=project.path).load()
    assert np.allclose(model.predict(x, verbose=0), pred, atol=1e-5)

    res = alice.post("/v1/models/seaice:classify", json={"examples": [{"patch": r} for r in x.tolist()]}).json()
    labels = [row[0][0] for row in res["result"]]
    assert labels == [("water", "ice")[i] for i in pred.argmax(axis=1)]
    assert all(row[0][1] >= row[1][1] for row in res["result"])


def test_v2_protocol(server: ServerProcess, alice: httpx.Client, project: ServingProject) -> None:
    assert httpx.get(server.url + "/v2").json()["extensions"] == ["model_repository"]
    assert httpx.get(server.url + "/v2/health/live").status_code == 200
    assert httpx.get(server.url + "/v2/health/ready").json() == {"ready": True}
    meta = alice.get("/v2/models/seaice").json()
    assert meta["inputs"] == [{"name": "patch", "datatype": "FP32", "shape": [-1, 32, 32, 3]}]
    assert meta["versions"] == ["1"] and meta["parameters"]["class_names"] == ["water", "ice"]
    assert alice.get("/v2/models/seaice/versions/1/ready").json() == {"name": "seaice", "ready": True}
    x = project.patches[:4]
    r = alice.post("/v2/models/seaice/versions/1/infer", json=v2_body(x, id="req-42")).json()
    assert r["id"] == "req-42" and r["model_name"] == "seaice" and r["model_version"] == "1"
    out = r["outputs"][0]
    assert out["name"] == "classes" and out["datatype"] == "FP32" and out["shape"] == [4, 2]
    v1 = np.asarray(alice.post("/v1/models/seaice:predict", json={"instances": x.tolist()}).json()["predictions"],
                    np.float32)
    assert np.array_equal(np.asarray(out["data"], np.float32).reshape(4, 2), v1)
    # nested data, another numeric datatype, outputs selection
    body = {"inputs": [{"name": "input", "shape": [1, 32, 32, 3], "datatype": "FP64", "data": x[:1].tolist()}],
            "outputs": [{"name": "classes"}]}
    r2 = alice.post("/v2/models/seaice/infer", json=body).json()
    assert np.allclose(np.asarray(r2["outputs"][0]["data"]).reshape(1, 2), v1[:1], atol=1e-6)


def test_starrnn_crop_model_serves(server: ServerProcess, project: ServingProject) -> None:
    with ServingClient(server.url, project.keys["carol"]) as c:
        probs = c.predict("crops", project.series[:5])
        assert probs.shape == (5, 3) and probs.dtype == np.float32
        assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
        assert c.metadata("crops")["model_spec"]["version"] == "1"
        out = c.infer_v2("crops", project.series[:2], request_id="c1")
        assert np.allclose(next(iter(out.values())), probs[:2], atol=1e-6)
        assert c.classify("crops", project.series[:1])[0][0][0] in ("maize", "wheat", "grass")


# ------------------------------------------------------------------------------------------ status codes
@pytest.mark.parametrize(
    "path, body, status, words",
    [
        ("/v1/models/seaice:predict", b'{"instances": [[1', 400, "malformed JSON"),
        ("/v1/models/seaice:predict", {"instances": [[1.0, 2.0]]}, 400, "shape [1, 2]"),
        ("/v1/models/seaice:predict", {"instances": [[[["a", "b", "c"]]]]}, 400, "dtype"),
        ("/v1/models/seaice:predict", {"instances": [1], "inputs": [1]}, 400, "not both"),
        ("/v1/models/seaice:predict", {}, 400, "instances"),
        ("/v1/models/seaice:predict", {"instances": []}, 400, "empty"),
        ("/v1/models/seaice:predict", {"instances": [{"b64": "!!"}]}, 400, "base64"),
        ("/v1/models/seaice:predict", {"instances": [{"b64": "AAAAAA=="}]}, 400, "b64 holds 1"),
        ("/v1/models/seaice:predict", {"instances": [[1]], "signature_name": "other"}, 400, "signature_name"),
        ("/v1/models/seaice:predict", {"instances": [[1]], "extra": 1}, 400, "extra"),
        ("/v1/models/seaice:predict", [1, 2], 400, "invalid request"),
        ("/v1/models/seaice:classify", {"examples": [{"a": 1, "b": 2}]}, 400, "one input"),
        ("/v1/models/nosuch:predict", {"instances": [[1]]}, 404, "nosuch"),
        ("/v1/models/seaice/versions/7:predict", {"instances": [[1]]}, 404, "version 7"),
        ("/v1/models/seaice/versions/x:predict", {"instances": [[1]]}, 400, "version"),
        ("/v1/models/seaice/labels/stable:predict", {"instances": [[1]]}, 404, "label 'stable'"),
        ("/v1/models/parked:predict", {"instances": [[1]]}, 503, "stopped"),
        ("/v2/models/seaice/infer", {"inputs": [{"name": "patch", "shape": [1, 3], "datatype": "FP32",
                                                 "data": [1, 2]}]}, 400, "needs 3 values"),
        ("/v2/models/seaice/infer", {"inputs": [{"name": "patch", "shape": [1], "datatype": "FP128",
                                                 "data": [1]}]}, 400, "unknown datatype"),
        ("/v2/models/seaice/infer", {"inputs": [{"name": "patch", "shape": [1], "datatype": "BYTES",
                                                 "data": ["x"]}]}, 400, "patch"),
        ("/v2/models/seaice/infer", {"inputs": [{"name": "patch", "shape": [1], "datatype": "INT8",
                                                 "data": [300]}]}, 400, "range of INT8"),
        ("/v2/models/seaice/infer", {"inputs": []}, 400, "inputs"),
        ("/v2/models/seaice/infer", {"inputs": [{"name": "a", "shape": [1, 32, 32, 3], "datatype": "FP32",
                                                 "data": [0.0] * 3072},
                                                {"name": "b", "shape": [1, 32, 32, 3], "datatype": "FP32",
                                                 "data": [0.0] * 3072}]}, 400, "unknown input"),
        ("/v2/models/seaice/versions/3/infer", v2_body(np.zeros((1, 32, 32, 3))), 404, "version 3"),
        ("/v2/models/nosuch/infer", v2_body(np.zeros((1, 1))), 404, "nosuch"),
        ("/v1/nothing", {}, 404, "no endpoint"),
    ],
)
def test_bad_requests(alice: httpx.Client, path: str, body: Any, status: int, words: str) -> None:
    resp = alice.post(path, content=body) if isinstance(body, bytes) else alice.post(path, json=body)
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert isinstance(err, str) and words in err


def test_model_exception_is_500_and_server_keeps_serving(alice: httpx.Client) -> None:
    bad = alice.post("/v1/models/guarded:predict", json={"instances": [[1.0, 2.0, 3.0, 5e6]]})
    assert bad.status_code == 500
    assert "guarded" in bad.json()["error"] and "failed" in bad.json()["error"]
    good = alice.post("/v1/models/guarded:predict", json={"instances": [[1.0, 2.0, 3.0, 4.0]]})
    assert good.status_code == 200 and len(good.json()["predictions"]) == 1
    assert alice.post("/v2/models/guarded/infer", json=v2_body(np.full((1, 4), 2e6), name="x")).status_code == 500
    assert alice.get("/v1/models/seaice").status_code == 200


def test_body_limit_content_length_and_chunked(server: ServerProcess, project: ServingProject) -> None:
    big = b'{"instances": [' + b"0.0," * (MAX_BODY // 4) + b"0.0]}"
    with httpx.Client(base_url=server.url, headers=auth(project.keys["alice"]), timeout=30) as c:
        r = c.post("/v1/models/seaice:predict", content=big)
        assert r.status_code == 413 and "larger than the limit" in r.json()["error"]

        def chunks() -> Iterator[bytes]:
            yield b'{"instances": ['
            for _ in range(MAX_BODY // 65536 + 2):
                yield b"0.0," * 16384
            yield b"0.0]}"

        r = c.post("/v2/models/seaice/infer", content=chunks())
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert r.status_code == 413 and "while streaming" in r.json()["error"]
    # a lying Content-Length (smaller than the body) cannot smuggle a large body in either
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/models/seaice:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/json\r\n\r\n")
        piece = b"0.0," * 65536
        try:
            for _ in range(MAX_BODY // len(piece) + 2):
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except OSError:
            pass
        answer = s.recv(4096)
    assert b" 413 " in answer.split(b"\r\n")[0]


# ------------------------------------------------------------------------------------------ keys, projects, roles
def test_keys_projects_and_scopes(server: ServerProcess, project: ServingProject,
                                  capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_PROJECT_DIR", str(project.path))
    x = project.patches[:1].tolist()
    url = server.url + "/v1/models/seaice:predict"
    assert httpx.post(url, json={"instances": x}).status_code == 401
    r = httpx.post(url, json={"instances": x}, headers=auth("wb_0123456789ab_" + "A" * 43))
    assert r.status_code == 401 and "unknown" in r.json()["error"] and r.headers["www-authenticate"] == "ApiKey"
    assert httpx.post(url, json={"instances": x}, headers={"Authorization": "Bearer nonsense"}).status_code == 401
    # another project's key
    r = httpx.post(url, json={"instances": x}, headers=auth(project.keys["carol"]))
    assert r.status_code == 403 and "food" in r.json()["error"] and "polar" in r.json()["error"]
    assert httpx.get(server.url + "/v2/models/crops", headers=auth(project.keys["alice"])).status_code == 403

    # key lifecycle through the CLI
    assert main(["projects", "add-member", "polar", "erin", "--role", "data_scientist"]) == 0
    assert main(["projects", "keys", "create", "polar", "--user", "erin", "--scope", "serving:infer"]) == 0
    key = capsys.readouterr().out.split()[-1]
    assert key.startswith("wb_")
    assert httpx.post(url, json={"instances": x}, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert main(["projects", "keys", "list", "--project", "polar"]) == 0
    listing = capsys.readouterr().out
    assert key[:15] in listing and key not in listing
    assert main(["projects", "keys", "revoke", key[:15]]) == 0
    r = httpx.post(url, json={"instances": x}, headers=auth(key))
    assert r.status_code == 401 and "revoked" in r.json()["error"]

    # admin verbs need serving:admin
    body = {"project": "polar", "model_name": "seaice_adhoc_binary", "model_version": 2, "status": "running"}
    r = httpx.put(server.url + "/admin/servings/adm", json=body, headers=auth(project.keys["bob"]))
    assert r.status_code == 403 and "serving:admin" in r.json()["error"]
    r = httpx.put(server.url + "/admin/servings/adm", json=body, headers=auth(project.keys["carol"]))
    assert r.status_code == 403
    r = httpx.put(server.url + "/admin/servings/adm", json={**body, "model_version": 9},
                  headers=auth(project.keys["alice"]))
    assert r.status_code == 404 and "version 9" in r.json()["error"]
    r = httpx.put(server.url + "/admin/servings/adm", json=body, headers=auth(project.keys["alice"]))
    assert r.status_code == 200 and r.json()["model_version"] == 2
    ok = httpx.post(server.url + "/v1/models/adm/versions/2:predict", json={"instances": x},
                    headers=auth(project.keys["bob"]))
    assert ok.status_code == 200
    assert httpx.post(server.url + "/v2/repository/models/adm/unload", headers=auth(project.keys["bob"])).status_code == 403
    assert httpx.post(server.url + "/v2/repository/models/adm/unload",
                      headers=auth(project.keys["alice"])).json()["status"] == "stopped"
    assert httpx.post(server.url + "/v1/models/adm:predict", json={"instances": x},
                      headers=auth(project.keys["bob"])).status_code == 503
    index = httpx.post(server.url + "/v2/repository/index", json={}, headers=auth(project.keys["alice"])).json()
    assert {"name": "adm", "version": "", "state": "UNLOADED", "reason": ""} in index
    assert all(row["name"] != "crops" for row in index)
    listed = httpx.get(server.url + "/admin/servings", headers=auth(project.keys["alice"])).json()["servings"]
    assert {s["name"] for s in listed} >= {"seaice", "adm", "parked"} and "crops" not in {s["name"] for s in listed}


# ------------------------------------------------------------------------------------------ batching, rollout
def _health(server: ServerProcess) -> dict[str, Any]:
    return httpx.get(server.url + "/v2/health/servings").json()["servings"]


@pytest.mark.parametrize("batched, unbatched, exact", [("seaice", "seaice_nobatch", False),
                                                       ("seaice_det", "seaice_det_nobatch", True)])
def test_batching_gives_the_unbatched_answers(server: ServerProcess, project: ServingProject, batched: str,
                                              unbatched: str, exact: bool) -> None:
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 4, size=48)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) % (len(project.patches) - 4)
    requests = [project.patches[s:s + n] for s, n in zip(starts, sizes)]
    before = _health(server)[batched]["calls"]

    async def send(serving: str) -> list[np.ndarray]:
        async with httpx.AsyncClient(base_url=server.url, headers=auth(project.keys["alice"]), timeout=60) as c:
            async def one(x: np.ndarray) -> np.ndarray:
                r = await c.post(f"/v1/models/{serving}:predict", json={"instances": x.tolist()})
                assert r.status_code == 200, r.text
                return np.asarray(r.json()["predictions"], np.float32)

            return await asyncio.gather(*[one(x) for x in requests])

    got = asyncio.run(send(batched))
    alone = asyncio.run(send(unbatched))
    for a, b, x in zip(got, alone, requests):
        assert a.shape == (len(x), 2)
        if exact:
            assert np.array_equal(a, b)
        else:  # CPU kernels choose their blocking by batch size: the last bit may differ
            np.testing.assert_allclose(a, b, rtol=0, atol=5e-7)
            assert np.array_equal(a.argmax(axis=1), b.argmax(axis=1))
    health = _health(server)
    calls = health[batched]["calls"] - before
    assert calls < len(requests), f"{calls} model calls for {len(requests)} concurrent requests: nothing was batched"
    assert health[unbatched]["calls"] >= len(requests)


def test_rollout_without_failed_requests(server: ServerProcess, project: ServingProject) -> None:
    x = project.patches[:2]
    seen: list[tuple[float, str]] = []
    failures: list[str] = []

    async def stream() -> None:
        async with httpx.AsyncClient(base_url=server.url, headers=auth(project.keys["alice"]), timeout=60) as c:
            stop_at = time.monotonic() + 60

            async def client() -> None:
                while time.monotonic() < stop_at:
                    r = await c.post("/v2/models/seaice_roll/infer", json=v2_body(x))
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text}")
                        continue
                    seen.append((time.monotonic(), r.json()["model_version"]))
                    if r.json()["model_version"] == "2" and sum(v == "2" for _, v in seen) > 30:
                        return

            async def roll() -> None:
                await asyncio.sleep(1.0)
                await asyncio.to_thread(hopsworks.create_or_update, "seaice_roll", "seaice_adhoc_binary",
                                        model_version=2, project="polar", project_dir=project.path)

            await asyncio.gather(roll(), *[client() for _ in range(8)])

    asyncio.run(stream())
    assert not failures, failures[:5]
    versions = [v for _, v in seen]
    assert "1" in versions and versions[-1] == "2"
    first_v2 = versions.index("2")
    assert versions[first_v2:].count("1") <= 8  # only requests already in flight at the swap
    assert hopsworks.get_status("seaice_roll", project_dir=project.path)["state"] == "Running"


# ------------------------------------------------------------------------------------------ load test, log
def test_load_32_clients_2000_requests_no_error_no_log_loss(server: ServerProcess, project: ServingProject) -> None:
    tag = uuid.uuid4().hex[:8]
    x = project.patches[:1].tolist()
    total, clients = 2000, 32
    statuses: list[int] = []

    async def run() -> None:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=server.url, headers=auth(project.keys["bob"]), timeout=60,
                                     limits=limits) as c:
            counter = iter(range(total))

            async def client() -> None:
                for i in counter:
                    r = await c.post("/v1/models/seaice:predict", json={"instances": x},
                                     headers={"X-Request-ID": f"{tag}-{i}"})
                    statuses.append(r.status_code)

            await asyncio.gather(*[client() for _ in range(clients)])

    started = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - started
    assert len(statuses) == total and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    deadline = time.monotonic() + 30
    while True:
        frame = read_inference_log(project.path, serving="seaice")
        got = frame[frame["client_id"].str.startswith(tag + "-")]
        if len(got) >= total or time.monotonic() > deadline:
            break
        time.sleep(FLUSH)
    assert sorted(got["client_id"]) == sorted(f"{tag}-{i}" for i in range(total))
    assert set(got["status"]) == {200} and set(got["user"]) == {"bob"} and set(got["project"]) == {"polar"}
    assert got["latency_ms"].gt(0).all() and got["class_counts"].str.len().gt(0).all()
    print(f"load test: {total} requests by {clients} clients in {elapsed:.1f} s ({total / elapsed:.0f} req/s)")


def _stream_until_killed(server: ServerProcess, key: str, tag: str, x: list[Any], seconds: float,
                         kill: bool) -> tuple[list[tuple[str, float]], float]:
    answered: list[tuple[str, float]] = []

    async def run() -> float:
        async with httpx.AsyncClient(base_url=server.url, headers=auth(key), timeout=30) as c:
            stop_at = time.monotonic() + seconds
            n = iter(range(10**9))

            async def client() -> None:
                while time.monotonic() < stop_at:
                    cid = f"{tag}-{next(n)}"
                    r = await c.post("/v1/models/seaice:predict", json={"instances": x}, headers={"X-Request-ID": cid})
                    assert r.status_code == 200
                    answered.append((cid, time.time()))

            await asyncio.gather(*[client() for _ in range(4)])
            end = time.time()
            if kill:
                server.kill()
            else:
                server.stop()
            return end

    end = asyncio.run(run())
    return answered, end


def test_inference_log_complete_after_clean_stop(project: ServingProject) -> None:
    # two worker processes, a flush interval longer than the test: only the shutdown flush writes the rows
    proc = ServerProcess(project_dir=project.path, env=server_env(), workers=2,
                         args=["--flush-interval", "30", "--only", "seaice"])
    proc.start(timeout=240)
    tag = uuid.uuid4().hex[:8]
    answered, _ = _stream_until_killed(proc, project.keys["alice"], tag, project.patches[:1].tolist(), 1.5, kill=False)
    # uvicorn re-raises SIGTERM after its graceful shutdown: exit status -15 (or 0)
    assert proc.proc is not None and proc.proc.returncode in (0, -15)
    frame = read_inference_log(project.path)
    logged = set(frame["client_id"][frame["client_id"].str.startswith(tag + "-")])
    assert len(answered) > 10 and logged == {cid for cid, _ in answered}


def test_inference_log_after_kill_loses_at_most_the_last_flush_interval(project: ServingProject) -> None:
    flush = 0.5
    commit_allowance = 2.5  # the write in progress at the kill: one Delta commit on a busy 2-core machine
    proc = ServerProcess(project_dir=project.path, env=server_env(),
                         args=["--flush-interval", str(flush), "--only", "seaice"])
    proc.start(timeout=240)
    tag = uuid.uuid4().hex[:8]
    answered, killed_at = _stream_until_killed(proc, project.keys["alice"], tag, project.patches[:1].tolist(), 5.0,
                                               kill=True)
    assert proc.proc is not None and proc.proc.returncode == -9
    frame = read_inference_log(project.path)
    logged = set(frame["client_id"][frame["client_id"].str.startswith(tag + "-")])
    lost = [(cid, t) for cid, t in answered if cid not in logged]
    assert len(answered) > 20 and logged <= {cid for cid, _ in answered}
    assert all(t > killed_at - flush - commit_allowance for _, t in lost), (
        f"{len(lost)} rows lost, the oldest answered {killed_at - min(t for _, t in lost):.2f} s before the kill")
    assert len(logged) >= len(answered) // 2


def test_hopsworks_api_and_monitoring(server: ServerProcess, project: ServingProject) -> None:
    from workbench.serving import monitoring

    assert {c.name for c in hopsworks.get_all(project="polar", project_dir=project.path)} >= {"seaice", "parked"}
    st = hopsworks.get_status("seaice", project_dir=project.path)
    assert st["state"] == "Running" and st["server"] == server.url and st["loaded_version"] == 1
    assert hopsworks.get_status("parked", project_dir=project.path)["state"] == "Stopped"
    hopsworks.stop("seaice_det", project_dir=project.path)
    deadline = time.monotonic() + 30
    while httpx.get(server.url + "/v2/health/servings").json()["servings"]["seaice_det"]["state"] != "END":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert httpx.post(server.url + "/v1/models/seaice_det:predict", json={"instances": project.patches[:1].tolist()},
                      headers=auth(project.keys["bob"])).status_code == 503
    assert hopsworks.start("seaice_det", wait=60, project_dir=project.path).status == "running"
    assert hopsworks.get_status("seaice_det", project_dir=project.path)["state"] == "Running"
    out = hopsworks.make_inference_request("seaice", {"instances": project.patches[:2].tolist()},
                                           api_key=project.keys["bob"], project_dir=project.path)
    assert np.asarray(out["predictions"]).shape == (2, 2)
    with pytest.raises(ServingError) as e:
        hopsworks.make_inference_request("seaice", {"instances": [[1]]}, api_key=project.keys["bob"],
                                         project_dir=project.path)
    assert e.value.status == 400
    time.sleep(FLUSH * 3)
    frame = hopsworks.get_inference_log("seaice", project_dir=project.path)
    summary = monitoring.summarize(frame, training=[0.5, 0.5], class_names=["water", "ice"])
    assert summary["requests"] == len(frame) > 100
    assert 0 < summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]
    assert 0 < summary["error_rate"] < 1 and 400 in summary["status"]
    assert abs(sum(summary["classes"]["served"]) - 1) < 1e-9 and 0 <= summary["drift"]["tvd"] <= 1
    table = monitoring.summary_table(summary)
    assert "latency p99 (ms)" in set(table["figure"])
    fig = monitoring.plot(frame, summary)
    assert len(fig.axes) == 3


# ------------------------------------------------------------------------------------------ OpenAPI, fuzzing
def test_openapi_schema(server: ServerProcess) -> None:
    schema = httpx.get(server.url + "/openapi.json").json()
    paths = schema["paths"]
    for p in ("/v1/models/{name}", "/v1/models/{name}/metadata", "/v1/models/{name}:predict",
              "/v1/models/{name}/versions/{version}:predict", "/v1/models/{name}/labels/{label}:classify",
              "/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
              "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer",
              "/v2/repository/models/{name}/load", "/admin/servings/{name}"):
        assert p in paths, p
    comps = schema["components"]["schemas"]
    assert {"InferenceRequest", "InferenceResponse", "PredictRequest", "ClassifyRequest", "RequestInput"} <= set(comps)
    assert set(comps["RequestInput"]["required"]) == {"name", "shape", "datatype", "data"}
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("InferenceRequest")
    assert {"400", "401", "403", "404", "413", "500", "503"} <= set(infer["responses"])


def test_schemathesis_fuzzing_no_5xx(server: ServerProcess, project: ServingProject) -> None:
    import schemathesis
    from hypothesis import HealthCheck, settings

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    failures: list[str] = []
    seen = 0
    headers = auth(project.keys["bob"])
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy()

        @settings(max_examples=8, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case: Any) -> None:
            nonlocal seen
            resp = case.call(headers=headers, timeout=30)
            seen += 1
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {resp.status_code} {resp.text[:200]}")
            if resp.status_code >= 400:
                body = resp.json()
                assert isinstance(body.get("error"), str), (case.formatted_path, resp.text)

        from hypothesis import given

        given(strategy)(check)()
    assert seen > 100 and not failures, failures[:5]
    # every route still answers
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200


# ------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize(
    "argv, words",
    [
        (["serve", "create", "x", "--model", "nosuch", "--project", "polar"], "nosuch"),
        (["serve", "create", "x", "--model", "seaice_adhoc_binary", "--version", "99", "--project", "polar"], "99"),
        (["serve", "create", "bad name", "--model", "seaice_adhoc_binary", "--project", "polar"], "serving name"),
        (["serve", "create", "x", "--model", "seaice_adhoc_binary", "--project", "Bad"], "project name"),
        (["serve", "logs", "nosuch"], "does not exist"),
        (["serve", "status", "nosuch"], "does not exist"),
        (["projects", "create", "Bad Name", "--owner", "a"], "project name"),
        (["projects", "create", "polar", "--owner", "a"], "exists"),
        (["projects", "add-member", "nosuch", "u"], "nosuch"),
        (["projects", "keys", "revoke", "nonsense"], "prefix"),
        (["projects", "keys", "create", "polar", "--user", "nobody"], "not a member"),
    ],
)
def test_cli_errors(project: ServingProject, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                    argv: list[str], words: str) -> None:
    monkeypatch.setenv("WORKBENCH_PROJECT_DIR", str(project.path))
    assert main(argv) == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "start", "--port", "0"],
        ["serve", "start", "--port", "70000"],
        ["serve", "start", "--workers", "many"],
        ["serve", "create", "x", "--model", "m"],
        ["serve", "create", "x", "--model", "m", "--project", "p", "--max-batch-size", "0"],
        ["serve", "create", "x", "--model", "m", "--project", "p", "--batch-timeout-ms", "-1"],
        ["projects", "add-member", "p", "u", "--role", "admin"],
        ["projects", "keys", "create", "p", "--user", "u", "--scope", "root"],
        ["projects", "create", "p"],
    ],
)
def test_cli_malformed_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_cli_listing(project: ServingProject, server: ServerProcess, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORKBENCH_PROJECT_DIR", str(project.path))
    assert main(["serve", "list"]) == 0
    out = capsys.readouterr().out
    assert "seaice" in out and "parked" in out and "no batching" in out
    assert main(["serve", "status", "seaice", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "Running"
    assert main(["serve", "logs", "seaice", "--limit", "3"]) == 0
    assert "latency_ms" in capsys.readouterr().out
    assert main(["serve", "logs", "seaice", "--summary"]) == 0
    assert "latency p50 (ms)" in capsys.readouterr().out
    assert main(["projects", "list"]) == 0
    assert "polar" in capsys.readouterr().out
    path = Path(project.path) / "serving" / "servings.json"
    assert json.loads(path.read_text())["servings"]["seaice"]["alias"] == "champion"

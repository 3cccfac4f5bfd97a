"""Model serving: our server (TF-Serving REST, batching on/off) against MLflow's own scoring server.

Same model (the ad-hoc sea-ice CNN, 32×32×3 patches, 2 classes, registered in our
registry and logged as an MLflow ``tensorflow`` model copy for ``mlflow models serve``),
same payload (a batch of 8 patches as JSON ``{"instances": ...}``), same machine, same run:

* **overhead**: one client, sequential requests: p50/p99 latency of our server minus the
  in-process ``model.predict`` of the same batch (Keras), and minus the in-process compiled
  call our server makes (the fair floor); also with the batch sent as base64 rows;
* **throughput** at 1, 8 and 32 concurrent clients (httpx asyncio clients, fixed duration):
  requests/s and p99 of our server with batching on, with batching off, and of MLflow's
  scoring server (``/invocations``, one uvicorn worker, ``--env-manager local``); at 32
  clients also our server with the batch sent as base64 rows (batching on and off), where
  the model, not JSON decoding, is the larger part of a request's cost.
  MLServer is not measured: mlserver 1.7.1 requires fastapi<0.116 (we pin 0.165).

Usage: python benchmarks/serving.py [--small]

Last line: ``serving_vs_mlflow_at_32_clients: <ratio>x`` (our batched requests/s over
MLflow's at 32 clients); when MLflow's server cannot start, the named baseline is our own
unbatched server (``serving_batched_vs_unbatched_at_32_clients: <ratio>x``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import httpx
import numpy as np

BATCH = 8
PATCH = (32, 32, 3)


def percentiles(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values) * 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def build(project: Path) -> tuple[Any, Path]:
    """Train (1 epoch) and register the ad-hoc CNN; an MLflow model copy of the registered version."""
    import keras
    import mlflow.tensorflow

    from workbench import registry
    from workbench.models import seaice

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal((-15.0, -25.0, 35.0), 4.0, size=(256, *PATCH)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > -15.0).astype("int64")
    model = seaice.build_model("adhoc", PATCH, 2, mean=[-15.0, -25.0, 35.0], std=[4.0] * 3)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    mv = registry.save_model("seaice_adhoc_binary", model, metrics={"overall_accuracy": 0.5},
                             input_example=x[:1], params={"class_names": "water,ice"}, aliases=["champion"],
                             project=project)
    mlflow_dir = project / "mlflow_model"
    mlflow.tensorflow.save_model(mv.load(), str(mlflow_dir), input_example=x[:1])
    return mv, mlflow_dir


def start_mlflow(model_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes] | None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    mlflow = shutil.which("mlflow", path=env["PATH"])
    if mlflow is None:
        return None
    proc = subprocess.Popen([mlflow, "models", "serve", "-m", str(model_dir), "--env-manager", "local", "-h",
                             "127.0.0.1", "-p", str(port), "-w", "1"], env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    return None


def sequential(url: str, body: bytes, headers: dict[str, str], n: int) -> list[float]:
    out = []
    with httpx.Client(headers={**headers, "content-type": "application/json"}, timeout=120) as c:
        for _ in range(max(3, n // 10)):
            c.post(url, content=body).raise_for_status()
        for _ in range(n):
            t = time.perf_counter()
            c.post(url, content=body).raise_for_status()
            out.append(time.perf_counter() - t)
    return out


def load(url: str, body: bytes, headers: dict[str, str], clients: int, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    errors = 0

    async def run() -> float:
        nonlocal errors
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(headers={**headers, "content-type": "application/json"}, timeout=120,
                                     limits=limits) as c:
            await asyncio.gather(*[c.post(url, content=body) for _ in range(clients)])  # warm connections
            stop_at = time.perf_counter() + seconds

            async def client() -> None:
                nonlocal errors
                while time.perf_counter() < stop_at:
                    t = time.perf_counter()
                    r = await c.post(url, content=body)
                    if r.status_code != 200:
                        errors += 1
                    lat.append(time.perf_counter() - t)

            t0 = time.perf_counter()
            await asyncio.gather(*[client() for _ in range(clients)])
            return time.perf_counter() - t0

    elapsed = asyncio.run(run())
    p50, p99 = percentiles(lat)
    return {"rps": len(lat) / elapsed, "p50": p50, "p99": p99, "errors": errors, "n": len(lat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="shorter runs (2 s per load point)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    seconds = 2.0 if args.small else 6.0
    n_seq = 60 if args.small else 200

    from workbench.serving import hopsworks
    from workbench.serving.auth import AuthStore, default_auth_url
    from workbench.serving.batching import BatchingOptions
    from workbench.serving.model import ServedModel
    from workbench.serving.server import ServerProcess, free_port

    tmp = Path(tempfile.mkdtemp(prefix="wb-serving-bench-"))
    project = tmp / "project"
    project.mkdir()
    ours = mlflow_proc = None
    try:
        mv, mlflow_dir = build(project)
        key = AuthStore(default_auth_url(project)).create_project("bench", owner="bench")
        hopsworks.create_or_update("seaice", mv.name, model_version=mv.version, project="bench", status="running",
                                   batching=BatchingOptions(max_batch_size=64, batch_timeout_ms=2.0, max_queue=1024),
                                   project_dir=project)
        hopsworks.create_or_update("seaice_nobatch", mv.name, model_version=mv.version, project="bench",
                                   status="running", batching=BatchingOptions(enabled=False, max_queue=1024),
                                   project_dir=project)
        ours = ServerProcess(project_dir=project, log_file=tmp / "server.log").start(timeout=300)
        mlflow_port = free_port()
        mlflow_proc = start_mlflow(mlflow_dir, mlflow_port, tmp / "mlflow.log")

        x = np.random.default_rng(1).normal((-15.0, -25.0, 35.0), 4.0, size=(BATCH, *PATCH)).astype("float32")
        body = json.dumps({"instances": x.tolist()}).encode()
        b64 = json.dumps({"instances": [{"b64": base64.b64encode(r.astype("<f4").tobytes()).decode()}
                                        for r in x]}).encode()
        auth = {"Authorization": f"ApiKey {key}"}
        url = f"{ours.url}/v1/models/seaice:predict"
        url_nb = f"{ours.url}/v1/models/seaice_nobatch:predict"
        url_mlflow = f"http://127.0.0.1:{mlflow_port}/invocations"

        # in-process references: Keras model.predict and the compiled call the server makes
        served = ServedModel.from_registry(mv.name, mv.version, project=project)
        keras_model = served.load()
        for _ in range(5):
            keras_model.predict(x, verbose=0)
        t_predict = []
        for _ in range(n_seq):
            t = time.perf_counter()
            keras_model.predict(x, verbose=0)
            t_predict.append(time.perf_counter() - t)
        t_compiled = []
        for _ in range(n_seq):
            t = time.perf_counter()
            served.predict({"patch": x})
            t_compiled.append(time.perf_counter() - t)
        p_pred, p_comp = percentiles(t_predict), percentiles(t_compiled)
        s_json = percentiles(sequential(url_nb, body, auth, n_seq))
        s_b64 = percentiles(sequential(url_nb, b64, auth, n_seq))
        print(f"payload: {BATCH} patches {PATCH}, JSON {len(body) / 1024:.0f} KiB, base64 rows {len(b64) / 1024:.0f} KiB")
        print(f"in-process model.predict (Keras):  p50 {p_pred[0]:7.2f} ms  p99 {p_pred[1]:7.2f} ms")
        print(f"in-process compiled call:          p50 {p_comp[0]:7.2f} ms  p99 {p_comp[1]:7.2f} ms")
        print(f"our server, JSON rows:             p50 {s_json[0]:7.2f} ms  p99 {s_json[1]:7.2f} ms")
        print(f"our server, base64 rows:           p50 {s_b64[0]:7.2f} ms  p99 {s_b64[1]:7.2f} ms")
        print(f"overhead over model.predict, JSON: p50 {s_json[0] - p_pred[0]:+7.2f} ms  "
              f"p99 {s_json[1] - p_pred[1]:+7.2f} ms (target <= 2 / <= 10 ms)")
        print(f"overhead over model.predict, b64:  p50 {s_b64[0] - p_pred[0]:+7.2f} ms  "
              f"p99 {s_b64[1] - p_pred[1]:+7.2f} ms")
        print(f"overhead over the compiled call, JSON: p50 {s_json[0] - p_comp[0]:+7.2f} ms  "
              f"p99 {s_json[1] - p_comp[1]:+7.2f} ms; b64: p50 {s_b64[0] - p_comp[0]:+7.2f} ms  "
              f"p99 {s_b64[1] - p_comp[1]:+7.2f} ms")

        peers: dict[str, tuple[str, dict[str, str]]] = {
            "ours, batching on": (url, auth), "ours, batching off": (url_nb, auth)}
        if mlflow_proc is not None:
            peers["MLflow scoring server"] = (url_mlflow, {})
        else:
            print("MLflow scoring server: could not start (see mlflow.log); the baseline is our unbatched server")
        results: dict[tuple[str, int], dict[str, float]] = {}
        print(f"\nthroughput ({seconds:g} s per point, {BATCH} patches per request):")
        print(f"{'server':<24}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        for clients in (1, 8, 32):
            for name, (u, h) in peers.items():
                r = load(u, body, h, clients, seconds)
                results[(name, clients)] = r
                print(f"{name:<24}{clients:>8}{r['rps']:>10.1f}{r['p50']:>10.1f}{r['p99']:>10.1f}{r['errors']:>8}")
        b64_on = load(url, b64, auth, 32, seconds)
        b64_off = load(url_nb, b64, auth, 32, seconds)
        for name, r in (("ours, on, base64 rows", b64_on), ("ours, off, base64 rows", b64_off)):
            print(f"{name:<24}{32:>8}{r['rps']:>10.1f}{r['p50']:>10.1f}{r['p99']:>10.1f}{r['errors']:>8}")
        health = httpx.get(ours.url + "/v2/health/servings").json()["servings"]["seaice"]
        print(f"\nbatching on: {health['calls']} model calls for {health['rows'] // BATCH} requests "
              f"(mean {health['rows'] / max(1, health['calls']):.1f} rows per call)")
        on, off = results[("ours, batching on", 32)], results[("ours, batching off", 32)]
        ratio_batching = on["rps"] / off["rps"]
        print(f"batching on vs off at 32 clients: {ratio_batching:.2f}x requests/s (target >= 3x), "
              f"p99 {on['p99']:.1f} vs {off['p99']:.1f} ms; with base64 rows "
              f"{b64_on['rps'] / b64_off['rps']:.2f}x")
        if mlflow_proc is not None:
            peer = results[("MLflow scoring server", 32)]
            best_ours = max(on["rps"], off["rps"])
            print(f"ours (batching on) vs MLflow at 32 clients: p99 {on['p99']:.1f} vs {peer['p99']:.1f} ms; "
                  f"best of ours {best_ours / peer['rps']:.2f}x (target >= 1.5x)")
            print(f"serving_vs_mlflow_at_32_clients: {on['rps'] / peer['rps']:.2f}x")
        else:
            print(f"serving_batched_vs_unbatched_at_32_clients: {ratio_batching:.2f}x")
    finally:
        if ours is not None:
            ours.stop()
        if mlflow_proc is not None:
            import signal

            try:
                os.killpg(mlflow_proc.pid, signal.SIGTERM)
                mlflow_proc.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(mlflow_proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

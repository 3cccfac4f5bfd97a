"""Processors: km²/min of ``sea_ice_chart`` embedded vs remote, overhead vs its stages run directly, OGC API latency.

In a temporary project: the sample Sentinel-1 scene (real SAFE metadata, simulated pixels), an ad-hoc
sea-ice CNN (32×32 patches, untrained weights: throughput does not depend on them) registered in the
model registry and served by the model server (``workbench serve start``, a subprocess on loopback).

1. ``sea_ice_chart`` over the whole scene, **embedded** (exported model on the Dask workers) and
   **remote** (batches of patches to the server), same run, best of ``--repeat`` after a warm-up:
   km² of classified sea surface per minute.
2. Baseline — the processor's stages run directly in this process: catalogue search,
   :func:`workbench.sentinel1.preprocess` + :func:`workbench.sentinel1.classify_scene` (the model in
   this process) and :func:`workbench.processors.products.publish_product`. Target overhead ≤ 10 %.
3. ``workbench processes serve`` (subprocess): latency from an asynchronous execution request to
   the job's start (its ``started`` time), p50 over ``--jobs`` jobs on a small region.

Usage: ``python benchmarks/processors.py [--small]`` (``--small``: 1024² raw window, fewer jobs).
The last line is ``sea_ice_chart_processor_vs_direct_stages: <ratio>x`` (time ratio; target ≤ 1.10).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server did not answer on {url}: {log.read_text()[-2000:]}")


def _km2(cog: str) -> float:
    import rasterio

    with rasterio.open(cog) as src:
        data = src.read(1)
        t = src.transform
        rows = np.arange(src.height)
        lat = t.f + t.e * (rows + 0.5)
    cell = abs(t.a * t.e) * (111.32 ** 2) * np.cos(np.radians(lat))
    return float(((data != 255) * cell[:, None]).sum())


def _parse(ts: str) -> float:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="1024×1024 raw window, 5 jobs (quick mode)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each variant (best of)")
    parser.add_argument("--jobs", type=int, default=None, help="OGC API jobs for the latency (default 12; 5 small)")
    args = parser.parse_args()
    n_jobs = args.jobs or (5 if args.small else 12)
    size = 1024 if args.small else 2048

    tmp = tempfile.mkdtemp(prefix="wb-bench-processors-")
    root = Path(tmp)
    os.environ["WORKBENCH_PROJECT_DIR"] = str(root)
    os.environ.setdefault("WORKBENCH_DASK_WORKERS", "2")
    os.chdir(root)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    import httpx

    from workbench import registry
    from workbench.catalog import search
    from workbench.cluster import get_client
    from workbench.models.seaice import build_model
    from workbench.processors import get_processor, validate_inputs
    from workbench.processors.models import registry_lookup, resolve_model
    from workbench.processors.products import publish_product
    from workbench.samples.sentinel1 import ensure_sample_scene
    from workbench.sentinel1.classify import classify_scene
    from workbench.sentinel1.landmask import apply_land_mask
    from workbench.sentinel1.preprocess import preprocess
    from workbench.serving.auth import AuthStore
    from workbench.serving.repository import ServingConfig, ServingStore
    from workbench.storage import read_geoparquet

    scene = ensure_sample_scene(root / "workbench-data", seed=0, size=size)
    cube0 = preprocess(scene.safe, window=scene.window, chunk=256).compute()
    sar = cube0["sar"].values
    mean, std = np.nanmean(sar, axis=(0, 1)), np.nanstd(sar, axis=(0, 1))
    model = build_model("adhoc", (32, 32, 3), 2, mean=mean, std=std)
    mv = registry.save_model("seaice_bench", model, input_example=np.zeros((1, 32, 32, 3), np.float32),
                             params={"class_names": "water,ice", "standardisation_mean": list(map(float, mean))})
    key = AuthStore().create_project("bench", owner="bench")
    ServingStore().put(ServingConfig(name="seaice_bench", project="bench", model_name="seaice_bench",
                                     model_version=mv.version, status="running"))
    item = search("sentinel-1-grd", [-180, -90, 180, 90], "2021-12-01", "2021-12-31")[0]
    region = {"bbox": [float(v) for v in item.bbox]}

    serve_port, api_port = _free_port(), _free_port()
    serving_log, api_log = root / "serving.log", root / "processes.log"
    serving = subprocess.Popen([sys.executable, "-m", "workbench.cli", "serve", "start", "--port", str(serve_port),
                                "--no-inference-log"], env=env, stdout=open(serving_log, "wb"),
                               stderr=subprocess.STDOUT)
    api = None
    try:
        serving_url = f"http://127.0.0.1:{serve_port}"
        _wait(f"{serving_url}/v1/models/seaice_bench", serving, serving_log)
        for _ in range(300):
            if httpx.get(f"{serving_url}/v1/models/seaice_bench",
                         headers={"Authorization": f"ApiKey {key}"}).status_code == 200:
                break
            time.sleep(0.2)
        client = get_client()
        proc = get_processor("sea_ice_chart")
        base = {"region": region, "start": "2021-12-01", "end": "2021-12-31",
                "model": {"name": "seaice_bench", "version": mv.version}, "options": {"stride": 16}}
        variants = {
            "embedded": validate_inputs("sea_ice_chart", base, model_lookup=registry_lookup),
            "remote": validate_inputs("sea_ice_chart", {**base, "mode": "remote", "serving_url": serving_url,
                                                        "api_key": key}, model_lookup=registry_lookup),
        }
        times: dict[str, float] = {}
        area = 0.0
        for name, inputs in variants.items():
            proc.execute(inputs, out_dir=root / "warm", client=client)  # warm-up: workers load the model
        for _ in range(args.repeat):  # alternating, best of N, on a shared machine
            for name, inputs in variants.items():
                start = time.perf_counter()
                product = proc.execute(inputs, out_dir=root / name, client=client)
                times[name] = min(times.get(name, float("inf")), time.perf_counter() - start)
                area = _km2(product.cog)

        # baseline: the same stages called directly, the model in this process
        spec = resolve_model(variants["embedded"].model, mode="embedded")
        keras_model = registry.load(spec.path).model
        t_direct = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            items = search("sentinel-1-grd", region["bbox"], "2021-12-01", "2021-12-31")
            chart = read_geoparquet(items[0].assets["ice-chart"].href)
            cube = preprocess(items[0].assets["safe"].href, window=tuple(items[0].properties["workbench:window"]),
                              chunk=256)
            cube = apply_land_mask(cube, chart[chart["is_land"]])
            result = classify_scene(keras_model, cube, class_names=["water", "ice"], stride=16, batch_size=256)
            frame = result.polygons.assign(image_id=items[0].id)
            publish_product(processor=proc, inputs=variants["embedded"], model=spec, raster=result.geocoded,
                            polygons=frame, class_names=["water", "ice"], class_colors=["#1f4e9c", "#e8f1fa"],
                            source_items=items, out_dir=root / "direct", rdf_kind="sea_ice_chart")
            t_direct = min(t_direct, time.perf_counter() - start)

        # OGC API: submission to start
        api = subprocess.Popen([sys.executable, "-m", "workbench.cli", "processes", "serve", "--port", str(api_port),
                                "--max-running", "1"], env=env, stdout=open(api_log, "wb"), stderr=subprocess.STDOUT)
        api_url = f"http://127.0.0.1:{api_port}"
        _wait(f"{api_url}/conformance", api, api_log)
        w, s, e, n = region["bbox"]
        small = {**base, "region": {"bbox": [w + (e - w) * 0.45, s + (n - s) * 0.45, w + (e - w) * 0.55,
                                             s + (n - s) * 0.55]}, "options": {"publish": False}}
        latencies = []
        with httpx.Client(timeout=120) as http:
            for i in range(n_jobs + 1):
                sent = time.time()
                resp = http.post(f"{api_url}/processes/sea_ice_chart/execution", json={"inputs": small},
                                 headers={"Prefer": "respond-async", "Authorization": f"ApiKey {key}"})
                resp.raise_for_status()
                location = resp.headers["Location"]
                while True:
                    status = http.get(location).json()
                    if status["status"] in ("successful", "failed", "dismissed"):
                        break
                    time.sleep(0.05)
                if status["status"] != "successful":
                    raise RuntimeError(f"job failed: {status}")
                if i:  # the first job warms the server's cluster up
                    latencies.append(_parse(status["started"]) - sent)
    finally:
        for p in (api, serving):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(timeout=30)

    t_emb, t_rem = times["embedded"], times["remote"]
    print(f"scene {size}x{size} raw px -> {sar.shape[0]}x{sar.shape[1]} at 40 m, {area:.1f} km2 classified, "
          f"ad-hoc CNN 32x32 stride 16, best of {args.repeat}")
    print(f"sea_ice_chart embedded: {t_emb:.2f} s = {area / (t_emb / 60):.1f} km2/min")
    print(f"sea_ice_chart remote (model server on loopback): {t_rem:.2f} s = {area / (t_rem / 60):.1f} km2/min")
    print(f"remote_vs_embedded_throughput: {t_emb / t_rem:.2f}x")
    print(f"stages run directly (search + preprocess + classify_scene + publish_product): {t_direct:.2f} s")
    print(f"OGC API job submission-to-start latency p50: {statistics.median(latencies) * 1000:.0f} ms "
          f"over {len(latencies)} jobs (max {max(latencies) * 1000:.0f} ms)")
    print(f"sea_ice_chart_processor_vs_direct_stages: {t_emb / t_direct:.2f}x")


if __name__ == "__main__":
    main()

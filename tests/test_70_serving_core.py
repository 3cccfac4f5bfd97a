"""Serving core without a server: batching, input checks, the inference-log writer, drift figures."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.serving.batching import Batcher, BatchingOptions, Retired
from workbench.serving.errors import BadRequest, Overloaded
from workbench.serving.inference_log import InferenceLogger, read_inference_log
from workbench.serving.model import TensorSpec, check_inputs
from workbench.serving.monitoring import drift, summarize


class Recorder:
    """A model: doubles its input and records the batch sizes it was called with."""

    def __init__(self, delay: float = 0.0) -> None:
        self.sizes: list[int] = []
        self.delay = delay

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.delay)
        self.sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2.0}


def test_batcher_gathers_and_splits() -> None:
    model = Recorder(delay=0.01)
    batcher = Batcher(model, BatchingOptions(max_batch_size=16, batch_timeout_ms=20), name="t")
    xs = [np.full((1 + i % 3, 2), float(i)) for i in range(20)]

    async def run() -> list[dict[str, np.ndarray]]:
        out = await asyncio.gather(*[batcher.submit({"x": x}) for x in xs])
        await batcher.close()
        return out

    outs = asyncio.run(run())
    for x, o in zip(xs, outs):
        assert np.array_equal(o["y"], x * 2)
    assert sum(model.sizes) == sum(len(x) for x in xs)
    assert len(model.sizes) < len(xs) and max(model.sizes) <= 16


def test_batcher_off_oversize_padding_and_errors() -> None:
    model = Recorder()
    off = Batcher(model, BatchingOptions(enabled=False), name="off")

    async def run_off() -> None:
        await asyncio.gather(*[off.submit({"x": np.ones((2, 1))}) for _ in range(5)])
        await off.close()

    asyncio.run(run_off())
    assert model.sizes == [2] * 5

    padded = Recorder()
    pad = Batcher(padded, BatchingOptions(max_batch_size=8, pad_to_max_batch=True), name="pad")

    async def run_pad() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        small = await pad.submit({"x": np.ones((3, 1))})
        big = await pad.submit({"x": np.ones((11, 1))})
        await pad.close()
        return small, big

    small, big = asyncio.run(run_pad())
    assert padded.sizes == [8, 11] and small["y"].shape == (3, 1) and big["y"].shape == (11, 1)

    def broken(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise RuntimeError("boom")

    failing = Batcher(broken, BatchingOptions(), name="bad")

    async def run_bad() -> None:
        with pytest.raises(RuntimeError, match="boom"):
            await failing.submit({"x": np.ones((1, 1))})
        await failing.close()
        with pytest.raises(Retired):
            await failing.submit({"x": np.ones((1, 1))})

    asyncio.run(run_bad())


def test_bounded_queue_answers_503() -> None:
    batcher = Batcher(Recorder(delay=0.2), BatchingOptions(enabled=False, max_queue=2), name="q")

    async def run() -> list[object]:
        tasks = [asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1))})) for _ in range(6)]
        out = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.close()
        return out

    out = asyncio.run(run())
    rejected = [o for o in out if isinstance(o, Overloaded)]
    assert rejected and all(r.status == 503 and "overloaded" in str(r) for r in rejected)
    assert sum(isinstance(o, dict) for o in out) >= 2


@pytest.mark.parametrize("kwargs, words", [
    ({"max_batch_size": 0}, "max_batch_size"), ({"batch_timeout_ms": -1}, "batch_timeout_ms"),
    ({"enabled": "yes"}, "enabled"), ({"max_queue": 1.5}, "max_queue")])
def test_batching_options_are_checked(kwargs: dict, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        BatchingOptions(**kwargs)
    with pytest.raises(BadRequest, match="unknown batching"):
        BatchingOptions.from_dict({"size": 3})


def test_check_inputs() -> None:
    specs = (TensorSpec("patch", "float32", (None, 4, 4, 3)),)
    ok = check_inputs(specs, {"input": np.zeros((2, 4, 4, 3), np.float64)})
    assert ok["patch"].dtype == np.float32 and ok["patch"].shape == (2, 4, 4, 3)
    for value, words in [(np.zeros((2, 4, 4)), "shape"), ([[["a"]]], "dtype"), ([[1, 2], [3]], "rectangular|ragged"),
                         (np.zeros((0, 4, 4, 3)), "no rows")]:
        with pytest.raises(BadRequest, match=words):
            check_inputs(specs, value)
    with pytest.raises(BadRequest, match="at most 3"):
        check_inputs(specs, np.zeros((5, 4, 4, 3)), max_rows=3)
    two = (TensorSpec("a", "int8", (None, 1)), TensorSpec("b", "float32", (None, 2)))
    with pytest.raises(BadRequest, match="missing"):
        check_inputs(two, {"a": [[1]]})
    with pytest.raises(BadRequest, match="range of int8"):
        check_inputs(two, {"a": [[300]], "b": [[1, 2]]})
    with pytest.raises(BadRequest, match="batch sizes"):
        check_inputs(two, {"a": [[1], [2]], "b": [[1, 2]]})


def test_inference_logger_writes_in_batches(tmp_path: Path) -> None:
    logger = InferenceLogger(tmp_path, flush_interval=0.2).start()
    for i in range(25):
        logger.log({"client_id": f"c{i}", "serving": "s", "status": 200, "latency_ms": 1.0 + i, "rows": 1,
                    "class_counts": "[1, 0]"})
    deadline = time.monotonic() + 30
    while logger.written < 25 and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in range(25, 30):
        logger.log({"client_id": f"c{i}", "serving": "s", "status": 400, "error": "bad"})
    logger.close()
    frame = read_inference_log(tmp_path, serving="s")
    assert sorted(frame["client_id"]) == sorted(f"c{i}" for i in range(30))
    assert logger.commits >= 2 and logger.pending == 0
    first = read_inference_log(tmp_path, version=0)  # time travel: the first commit only
    assert 0 < len(first) < 30
    s = summarize(frame, training=[0.5, 0.5])
    assert s["requests"] == 30 and s["error_rate"] == pytest.approx(5 / 30)
    assert s["classes"]["served"] == [1.0, 0.0] and s["drift"]["tvd"] == pytest.approx(0.5)
    assert read_inference_log(tmp_path / "empty").empty


def test_drift_figures() -> None:
    assert drift([10, 10], [1, 1]) == {"tvd": 0.0, "js_distance": 0.0}
    far = drift([5, 0], [0, 5])
    assert far["tvd"] == pytest.approx(1.0) and far["js_distance"] == pytest.approx(1.0)
    assert np.isnan(drift([1, 2], [1, 2, 3])["tvd"])


@pytest.mark.parametrize("kind", ["vgg16", "lstm", "tempcnn", "starrnn"])  # adhoc: test_70_serving
def test_every_workbench_model_serves(tmp_path: Path, kind: str) -> None:
    """The sea-ice CNNs and the three crop models load through the registry and answer as in process."""
    from workbench import registry
    from workbench.models import crops, seaice
    from workbench.serving.model import ServedModel

    rng = np.random.default_rng(0)
    if kind == "vgg16":
        x = rng.normal(-15, 4, size=(3, 16, 16, 3)).astype("float32")
        model = seaice.build_model(kind, (16, 16, 3), 2, width=0.125, dense_units=64)
    else:
        x = rng.uniform(0, 3000, size=(3, 12, 4)).astype("float32")
        params = {"lstm": {"n_layers": 1, "units": 8}, "tempcnn": {}, "starrnn": {"n_layers": 2, "units": 8}}[kind]
        model = crops.build_model(kind, 12, 4, 3, scaling=crops.fit_percentile_scaling(x), **params)
    registry.save_model(f"m_{kind}", model, input_example=x[:1], project=tmp_path)
    served = ServedModel.from_registry(f"m_{kind}", None, project=tmp_path)
    served.load()
    assert served.ready and served.is_classifier
    out = next(iter(served.predict(check_inputs(served.inputs, x)).values()))
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)

"""Dynamic batching on CPU: matched answers under concurrency, batches that form, failures alone."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from medfn.config import ModelConfig
from medfn.function import load_models
from medfn.http import create_app
from medfn.serving import InferencePlane, server_runner
from medfn.serving.batching import BatchingPolicy, DynamicBatcher
from medfn.serving.store import LocalStore
from tests.onnx_builders import affine_model, linear_softmax_model, write_model_folder

BATCHING = "[dynamic_batching]\nmax_queue_delay_ms = 20\n"


@pytest.fixture(scope="module")
def batching_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferencePlane]:
    """`batched` (y = 2x+1, up to 8 rows a batch) and `plain` (no [dynamic_batching])."""
    root = tmp_path_factory.mktemp("batching_store")
    write_model_folder(root, "batched", {1: affine_model(2.0)}, extra_toml=BATCHING)
    write_model_folder(root, "plain", {1: affine_model(2.0)})
    plane = InferencePlane(runner=server_runner())
    for name in ("batched", "plain"):
        plane.add(name, load_models(LocalStore(root), name))
    started = plane.start_batchers()
    assert [b.label for b in started] == ["batched v1"]
    yield plane
    plane.stop_batchers()


def row(i: int) -> list[float]:
    return [float(i), i + 0.5, -float(i), 2.0 * i]


def infer_body(values: list[float], shape: list[int] | None = None) -> dict:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": shape or [1, 4], "data": values}]}


async def post_all(plane: InferencePlane, bodies: list[dict]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=create_app(plane))
    async with httpx.AsyncClient(transport=transport, base_url="http://medfn") as client:
        return await asyncio.gather(*(client.post("/v2/models/batched/infer", json=b) for b in bodies))


def test_concurrent_callers_get_their_own_answers_and_batches_form(batching_plane: InferencePlane) -> None:
    model = batching_plane.get("batched")
    before = model.batcher.stats.snapshot()  # type: ignore[union-attr]
    bodies = [infer_body(row(i)) for i in range(64)]
    bodies[31] = infer_body([1.0, 2.0, 3.0], shape=[1, 3])  # malformed, in the middle of the crowd
    responses = asyncio.run(post_all(batching_plane, bodies))

    assert responses[31].status_code == 400
    assert "shape" in responses[31].json()["error"]
    for i, response in enumerate(responses):
        if i == 31:
            continue
        assert response.status_code == 200, response.text
        alone = model.execute({"x": np.asarray([row(i)], dtype=np.float32)}, ["y"])["y"]
        assert response.json()["outputs"][0]["data"] == alone.ravel().tolist()

    after = model.batcher.stats.snapshot()  # type: ignore[union-attr]
    assert after.requests - before.requests == 63  # the malformed one never reached the queue
    assert after.batches - before.batches < 63  # so some batches held more than one request
    assert after.max_batch_size > 1
    assert after.max_batch_size <= 8  # never beyond max_batch_size
    assert after.failures == before.failures and after.fallbacks == before.fallbacks


def test_batch_sizes_are_exposed(batching_plane: InferencePlane) -> None:
    asyncio.run(post_all(batching_plane, [infer_body(row(i)) for i in range(16)]))

    async def read() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(batching_plane))
        async with httpx.AsyncClient(transport=transport, base_url="http://medfn") as c:
            return await c.get("/metrics"), await c.get("/v2/models/batched"), await c.get("/v2/models/plain")

    metrics, batched, plain = asyncio.run(read())
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'medfn_model_info{model="batched",version="1",provider="CPUExecutionProvider",device="cpu"} 1' in text
    count = next(line for line in text.splitlines() if line.startswith('medfn_batch_size_count{model="batched"'))
    summed = next(line for line in text.splitlines() if line.startswith('medfn_batch_size_sum{model="batched"'))
    assert int(summed.split()[-1]) > int(count.split()[-1]) > 0  # more rows than batches
    assert 'medfn_batch_size_bucket{model="batched",version="1",le="1"}' in text
    assert 'model="plain"' not in text.split("# HELP medfn_batch_requests_total")[1]

    parameters = batched.json()["parameters"]
    assert parameters["dynamic_batching"] is True and parameters["device"] == "cpu"
    assert parameters["max_queue_delay_ms"] == 20.0
    assert parameters["batch_size_max"] > 1 and parameters["batch_requests"] >= 16
    assert plain.json()["parameters"]["dynamic_batching"] is False


def test_lambda_app_runs_inline_without_metrics(batching_plane: InferencePlane) -> None:
    async def probe() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(batching_plane, metrics_route=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://medfn") as c:
            return await c.get("/metrics")

    assert asyncio.run(probe()).status_code == 404


TABULAR_TOML = """\
name = "screen"
task = "tabular_classification"
max_batch_size = 64

[dynamic_batching]
max_queue_delay_ms = 20

[[inputs]]
name = "features"
datatype = "FP32"
shape = [-1, 2]

[[outputs]]
name = "probabilities"
datatype = "FP32"
shape = [-1, 2]

[preprocessing]
features = ["a", "b"]

[postprocessing]
labels = ["no", "yes"]

[versions.1.sha256]
"model.onnx" = "{sha}"
"""


def test_task_route_batches_grow_past_the_worker_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The task route awaits its batch on the event loop between preprocess and postprocess,
    so with one worker thread 24 concurrent requests still share batches."""
    monkeypatch.setattr("medfn.serving.sessions.available_cores", lambda: 1)
    weights = np.asarray([[1.0, -1.0], [0.5, 2.0]], dtype=np.float32)
    onnx_bytes = linear_softmax_model(weights, np.zeros(2, dtype=np.float32))
    (tmp_path / "screen" / "1").mkdir(parents=True)
    (tmp_path / "screen" / "1" / "model.onnx").write_bytes(onnx_bytes)
    (tmp_path / "screen" / "model.toml").write_text(TABULAR_TOML.format(sha=hashlib.sha256(onnx_bytes).hexdigest()))
    plane = InferencePlane(runner=server_runner())
    plane.add("screen", load_models(LocalStore(tmp_path), "screen"))
    plane.start_batchers()
    records = [{"a": float(i), "b": 1.0 - i} for i in range(24)]

    async def post_records() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(plane))
        async with httpx.AsyncClient(transport=transport, base_url="http://medfn") as client:
            return await asyncio.gather(*(client.post("/v1/models/screen/predict", json=r) for r in records))

    try:
        responses = asyncio.run(post_records())
        stats = plane.get("screen").batcher.stats.snapshot()  # type: ignore[union-attr]
    finally:
        plane.stop_batchers()
    for record, response in zip(records, responses, strict=True):
        assert response.status_code == 200, response.text
        logits = np.asarray([record["a"], record["b"]], dtype=np.float32) @ weights
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert response.json()["probabilities"]["yes"] == pytest.approx(float(expected[1]), abs=1e-6)
    assert stats.requests == 24 and max(stats.batch_sizes) > 1, stats.batch_sizes


def test_task_path_threads_share_batches(batching_plane: InferencePlane) -> None:
    """`Model.run` from worker threads (the task route's path) blocks on the batcher."""
    model = batching_plane.get("batched")
    before = model.batcher.stats.snapshot()  # type: ignore[union-attr]
    inputs = [{"x": np.asarray([row(i)], dtype=np.float32)} for i in range(24)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(model.run, inputs))
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer["y"], inputs[i]["x"] * 2 + 1)
    assert model.batcher.stats.snapshot().requests - before.requests == 24  # type: ignore[union-attr]


# -- the batcher alone, with a session stand-in whose runs we hold and release -------------------


class GatedSession:
    """Doubles x; refuses a batch holding a negative value; the first run waits for `release`."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.runs: list[int] = []  # rows per run

    def __call__(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        if not self.runs:
            self.release.wait(timeout=10)
        x = inputs["x"]
        self.runs.append(len(x))
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x * 2}


def queue_behind_a_held_run(policy: BatchingPolicy, values: list[float]) -> tuple[GatedSession, DynamicBatcher, list]:
    session = GatedSession()
    batcher = DynamicBatcher("gated v1", session, ["y"], policy)
    first = batcher.submit({"x": np.asarray([[100.0]], dtype=np.float32)})
    while not first.running():  # until the first run has started and holds the batcher's thread
        threading.Event().wait(0.001)
    futures = [batcher.submit({"x": np.asarray([[v]], dtype=np.float32)}) for v in values]
    session.release.set()
    assert first.result(timeout=10)["y"][0, 0] == 200.0
    return session, batcher, futures


def test_a_failing_request_fails_alone() -> None:
    values = [1.0, 2.0, -3.0, 4.0, 5.0]
    session, batcher, futures = queue_behind_a_held_run(BatchingPolicy(max_batch_size=8), values)
    for value, future in zip(values, futures, strict=True):
        if value < 0:
            with pytest.raises(ValueError, match="negative"):
                future.result(timeout=10)
        else:
            assert future.result(timeout=10)["y"][0, 0] == value * 2
    batcher.close()
    assert session.runs == [1, 5, 1, 1, 1, 1, 1]  # held run, the batch that failed, then each alone
    stats = batcher.stats.snapshot()
    assert stats.fallbacks == 1 and stats.failures == 1 and stats.batch_sizes == {1: 1, 5: 1}


def test_batches_stop_at_max_batch_size_and_prefer_preferred_sizes() -> None:
    session, batcher, futures = queue_behind_a_held_run(BatchingPolicy(max_batch_size=4), [1.0] * 7)
    [f.result(timeout=10) for f in futures]
    batcher.close()
    assert session.runs == [1, 4, 3]

    session, batcher, futures = queue_behind_a_held_run(BatchingPolicy(8, 0.0, (2, 4)), [1.0] * 7)
    [f.result(timeout=10) for f in futures]
    batcher.close()
    assert session.runs == [1, 4, 2, 1]  # 7 queued: the largest preferred size, then the next


def test_a_lone_request_is_not_held_past_the_delay() -> None:
    """With nobody to batch with, a request still runs once its delay is up (counts, not time)."""
    batcher = DynamicBatcher("lone v1", lambda inputs, names: {"y": inputs["x"]}, ["y"], BatchingPolicy(8, 30.0))
    assert batcher.submit({"x": np.ones((1, 1), np.float32)}).result(timeout=10)["y"].shape == (1, 1)
    batcher.close()
    assert batcher.stats.snapshot().batch_sizes == {1: 1}


def policy_of(config: ModelConfig) -> BatchingPolicy | None:
    return BatchingPolicy.of(config.name, config.max_batch_size, config.dynamic_batching)


def test_policy_from_model_toml() -> None:
    base = {"name": "m", "inputs": [], "outputs": [], "max_batch_size": 16}
    assert policy_of(ModelConfig.parse(base)) is None  # no table: no batching
    assert policy_of(ModelConfig.parse({**base, "max_batch_size": 0, "dynamic_batching": {}})) is None
    policy = policy_of(
        ModelConfig.parse({**base, "dynamic_batching": {"max_queue_delay_ms": 5, "preferred_batch_sizes": [8, 4]}})
    )
    assert policy == BatchingPolicy(16, 5.0, (4, 8)) and policy.full == 8
    with pytest.raises(ValueError, match="preferred"):
        policy_of(ModelConfig.parse({**base, "dynamic_batching": {"preferred_batch_sizes": [32]}}))

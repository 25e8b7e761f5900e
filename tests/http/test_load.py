"""A bounded load test: 10,000 valid requests for all five functions at concurrency 32 against
`medfn serve` on loopback, the session's server (which the hostile tests may already have
attacked). Every answer must be a 200; latencies are recorded, not asserted (CI machines
vary), in .medfn/load-test.json and on the terminal.

One worker: on 2 cores, `--workers 2` measured slower (386 against 520 requests/s), each
process's ONNX Runtime sessions keeping a thread per core and the two contending for them."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from dataclasses import dataclass

import aiohttp
import numpy as np
import pytest

from tests.conftest import REPO, LiveServer

REQUESTS = 10_000
CONCURRENCY = 32
REPORT = REPO / ".medfn" / "load-test.json"


@dataclass(frozen=True)
class Call:
    model: str
    body: bytes
    media_type: str


def valid_calls() -> list[Call]:
    """A few valid requests per function, from the generators the models were trained from."""
    from model_store.build import breast_cancer_data, chest_phantoms, ct_phantoms, notes_corpus, vitals_series

    radiographs, _ = chest_phantoms.generate(4, seed=4401)
    slices, _ = ct_phantoms.generate(4, seed=4402)
    notes, _ = notes_corpus.generate(4, seed=4403)
    series, _ = vitals_series.generate(4, seed=4404)
    _, records, _, _, features = breast_cancer_data.split()
    calls = []
    for i in range(4):
        calls += [
            Call("scan_classifier", chest_phantoms.to_png(radiographs[i]), "image/png"),
            Call("scan_segmenter", ct_phantoms.to_dicom(slices[i]), "application/dicom"),
            Call("notes_classifier", notes[i].encode(), "text/plain"),
            Call(
                "vitals_risk",
                json.dumps(
                    {
                        "observations": [
                            dict(zip(vitals_series.FEATURES, map(float, row), strict=True)) for row in series[i]
                        ]
                    }
                ).encode(),
                "application/json",
            ),
            Call(
                "breast_mass",
                json.dumps(dict(zip(features, map(float, records[i]), strict=True))).encode(),
                "application/json",
            ),
        ]
    return calls


async def drive(url: str, calls: list[Call]) -> tuple[dict[str, list[float]], list[str], float]:
    """Latencies (ms) per model, failures, and the wall time, for REQUESTS calls cycling through `calls`.

    aiohttp rather than httpx: at this concurrency httpx's pool costs ~4 ms of client CPU a
    request, which on a 2-core machine would measure the client, not the server; aiohttp ~0.2 ms.
    """
    latencies: dict[str, list[float]] = defaultdict(list)
    failures: list[str] = []
    plan = itertools.islice(itertools.cycle(calls), REQUESTS)  # shared: each call is taken once
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def caller() -> None:
            for call in plan:
                started = time.perf_counter()
                try:
                    async with session.post(
                        f"/v1/models/{call.model}/predict", data=call.body, headers={"content-type": call.media_type}
                    ) as response:
                        answer = await response.read()
                except (TimeoutError, aiohttp.ClientError) as exc:
                    failures.append(f"{call.model}: {type(exc).__name__}")
                    continue
                latencies[call.model].append((time.perf_counter() - started) * 1000.0)
                if response.status != 200:
                    failures.append(f"{call.model}: {response.status} {answer[:200]!r}")

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
        return latencies, failures, time.perf_counter() - started


def percentiles(values: list[float]) -> dict[str, float]:
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2), "max_ms": round(max(values), 2)}


def test_ten_thousand_mixed_requests_without_an_error(
    medfn_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    latencies, failures, seconds = asyncio.run(drive(medfn_server.url, valid_calls()))
    assert not failures, f"{len(failures)} failures, e.g. {failures[:5]}"
    every = [ms for values in latencies.values() for ms in values]
    assert len(every) == REQUESTS
    report = {
        "requests": REQUESTS,
        "concurrency": CONCURRENCY,
        "server": "medfn serve (one worker), all five functions",
        "seconds": round(seconds, 2),
        "requests_per_second": round(REQUESTS / seconds, 1),
        **percentiles(every),
        "per_model": {model: percentiles(values) for model, values in sorted(latencies.items())},
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    with capsys.disabled():
        print(
            f"\nload: {REQUESTS} requests at concurrency {CONCURRENCY} in {seconds:.1f} s"
            f" ({report['requests_per_second']}/s), p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms -> {REPORT}"
        )
    assert medfn_server.alive()

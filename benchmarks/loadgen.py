"""One load generator for every server compared: the same bytes, request count and concurrency.

`drive(url, body, headers, requests, concurrency, processes)` splits the callers over a few
processes (asyncio + aiohttp each: on 2 cores one Python client process tops out near the rate
a small-model server reaches, so the client must not be the bottleneck it measures), sends
exactly `requests` POSTs to loopback, and returns the latencies, the wall time from the first
send to the last answer, and the CPU time the callers used (they share the server's cores).
A non-200 answer stops the run: a fast error is not throughput.

Latencies are of the steady state: each caller's first request is sent and counted in the
rate but not timed. It opens the caller's connection, and all callers send it at the same
instant, a burst that a closed loop never sends again: at concurrency 32 on the ResNet-18,
those first requests were all of medfn's slowest (up to 457 ms against a steady 342 ms p50,
while its steady p99 was 375), so the p99 of 300 requests measured the start, not the load.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from dataclasses import dataclass

from benchmarks.stats import percentile


@dataclass
class Load:
    requests: int
    concurrency: int
    seconds: float
    latencies: list[float]  # seconds, one per request but each caller's first
    client_cpu_s: float  # user + system time of the callers' processes

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000


async def _callers(
    url: str, body: bytes, headers: dict[str, str], requests: int, concurrency: int
) -> tuple[list[float], float, float, float]:
    import aiohttp

    latencies: list[float] = []
    remaining = requests
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def caller() -> None:
            nonlocal remaining
            first = True
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    answer = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}: {answer[:300]!r}")
                if not first:
                    latencies.append(time.perf_counter() - started)
                first = False

        started, cpu_before = time.perf_counter(), _cpu_s()  # imports and set-up not counted
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return latencies, started, time.perf_counter(), _cpu_s() - cpu_before


def _process(job: tuple) -> tuple[list[float], float, float, float]:  # type: ignore[type-arg]
    """One process's callers: latencies, first send, last answer, the CPU time they took."""
    return asyncio.run(_callers(*job))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drive(url: str, body: bytes, headers: dict[str, str], requests: int, concurrency: int, processes: int = 2) -> Load:
    """`requests` POSTs of `body` with `concurrency` callers in flight, spread over `processes`."""
    if requests <= concurrency:
        raise ValueError(
            f"{requests} requests at concurrency {concurrency}: each caller's first is not timed, so none would be"
        )
    processes = max(1, min(processes, concurrency))
    shares = [requests // processes + (i < requests % processes) for i in range(processes)]
    callers = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
    jobs = [(url, body, headers, n, c) for n, c in zip(shares, callers, strict=True)]
    if processes == 1:
        results = [_process(jobs[0])]
    else:
        # time.perf_counter is system-wide on Linux (CLOCK_MONOTONIC), so the processes' clocks agree
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            results = pool.map(_process, jobs)
    latencies = [lat for result in results for lat in result[0]]
    seconds = max(r[2] for r in results) - min(r[1] for r in results)
    return Load(requests, concurrency, seconds, latencies, sum(r[3] for r in results))

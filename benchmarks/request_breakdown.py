"""Where a request's time goes in `medfn serve`, stage by stage, in one run, on this machine's CPU.

The app `medfn serve` builds (benchmarks/ceiling_store.py's near-zero-cost model, batching on,
the usage store on) is called in process through ASGI by --concurrency tasks at once, with
each stage wrapped in a timer of the CPU time of the thread it runs on: reading the body,
decoding it (OIP JSON, binary tensors, or a PNG on the task route), checking it against
model.toml, handing it to the batcher, assembling the batch, the session run, the answer. What
no wrapper claims (Starlette and FastAPI's request handling, the middleware, futures and
thread wake-ups) is the remainder of the process's CPU time. The same requests run again with
batching off (each request inline on the loop): the difference in that remainder is what the
hand-off to the batcher's thread costs. HTTP/1.1 parsing (httptools, as uvicorn uses it) is
timed on the request's own bytes; the rest of uvicorn's per-request work (sockets, uvloop, the
ASGI messages) is what benchmarks/serving_ceiling.py's floor measures over loopback.

Not measured here, because this machine has no GPU: what the CUDA path adds. There the batch is
copied to the device once per run (I/O binding) and the outputs back once; for the segmenter's
input that is 64 KB an image, 2 MB a batch of 32: tens of microseconds a batch over PCIe, a
microsecond or two a request, against the hundreds of microseconds of Python a request below.

    .venv/bin/python benchmarks/request_breakdown.py [--requests 2000] [--concurrency 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# --medfn-src DIR: time another tree's medfn (the other side of a before/after); read before importing it
_SOURCE = sys.argv[sys.argv.index("--medfn-src") + 1] if "--medfn-src" in sys.argv[:-1] else str(REPO / "src")
sys.path.insert(0, _SOURCE)

from benchmarks import ceiling_store  # noqa: E402

# stage -> where it is timed (module attribute or class method patched for the run)
STAGES = {
    "read body": "medfn.http.body.read_body",
    "decode": "parse_request (OIP) or Model.prepare (PNG decode, resize, normalise)",
    "check inputs": "Model.check_inputs (names, dtypes, shapes, finite values)",
    "submit to batcher": "DynamicBatcher.submit",
    "batch assembly and scatter": "DynamicBatcher._run_together less the run",
    "run": "Model.execute (the session run, per request of the batch)",
    "answer": "encode_response (OIP) or Model.finish + the JSON answer (task route)",
}


class Clock:
    """CPU seconds per stage, from wrappers around the functions each stage calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.inner: dict[str, float] = defaultdict(float)  # time spent in a stage nested in another

    def wrap(self, stage: str, fn: Callable[..., Any], inside: str | None = None) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                self.seconds[stage] += spent
                if inside:
                    self.inner[inside] += spent

        return timed

    def wrap_async(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:  # the ASGI receive here never suspends
            started = time.thread_time()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.thread_time() - started

        return timed


@contextmanager
def instrumented(clock: Clock) -> Iterator[None]:
    import medfn.http.body as body
    import medfn.http.inference_protocol_routes as oip
    import medfn.http.task_routes as task
    from medfn.serving.batching.batcher import DynamicBatcher
    from medfn.serving.model import Model

    patches: list[tuple[Any, str, Any]] = [
        (body, "read_body", clock.wrap_async("read body", body.read_body)),
        (oip, "read_body", clock.wrap_async("read body", oip.read_body)),
        (oip, "parse_request", clock.wrap("decode", oip.parse_request)),
        (oip, "encode_response", clock.wrap("answer", oip.encode_response)),
        (task, "JSONBody", clock.wrap("answer", task.JSONBody)),
        (Model, "prepare", clock.wrap("decode", Model.prepare)),
        (Model, "finish", clock.wrap("answer", Model.finish)),
        (Model, "check_inputs", clock.wrap("check inputs", Model.check_inputs)),
        (Model, "execute", clock.wrap("run", Model.execute, inside="batch assembly and scatter")),
        (DynamicBatcher, "submit", clock.wrap("submit to batcher", DynamicBatcher.submit)),
        *[  # the event loop's own submit, where the batcher has one
            (DynamicBatcher, "submit_async", clock.wrap("submit to batcher", DynamicBatcher.submit_async))
            for _ in range(hasattr(DynamicBatcher, "submit_async"))
        ],
        (DynamicBatcher, "_run_together", clock.wrap("batch assembly and scatter", DynamicBatcher._run_together)),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, wrapped in patches:
        setattr(owner, name, wrapped)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def scope_for(kind: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    raw = [(k.encode(), v.encode()) for k, v in {**headers, "content-length": str(len(body))}.items()]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": ceiling_store.route(kind), "raw_path": ceiling_store.route(kind).encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1"), *raw], "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }  # fmt: skip


class Answer:
    status = 0

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def drive(app: Any, kind: str, requests: int, concurrency: int) -> None:
    body, headers = ceiling_store.BODIES[kind]()
    scope = scope_for(kind, body, headers)
    remaining = requests

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            answer = Answer()
            await app(dict(scope), receive, answer.send)
            if answer.status != 200:
                raise RuntimeError(f"{kind}: answered {answer.status}")

    await asyncio.gather(*(caller() for _ in range(concurrency)))


def framework_us(root: Path, runs: int = 3000) -> tuple[float, float]:
    """GET /v2/health/live through the app `medfn serve` builds, with and without its usage-store
    middleware: what Starlette, FastAPI, the middleware and a JSON answer cost a request alone."""
    from medfn.gateway import GatewaySettings, build_gateway_app
    from medfn.http import create_app

    app = build_gateway_app(GatewaySettings(functions=str(root / "functions"), usage_store=str(root / "f.sqlite3")))
    bare = create_app(app.state.plane, metering=None)
    scope = {**scope_for("binary", b"", {}), "method": "GET", "path": "/v2/health/live", "raw_path": b"/v2/health/live"}

    async def calls(target: Any, count: int) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        for _ in range(count):
            await target(dict(scope), receive, Answer().send)

    loop = new_loop()
    try:
        figures = []
        for target in (app, bare):
            loop.run_until_complete(calls(target, 300))
            started = time.process_time()
            loop.run_until_complete(calls(target, runs))
            figures.append((time.process_time() - started) / runs * 1e6)
    finally:
        app.state.plane.stop_batchers()
        loop.close()
    return figures[0], figures[1]


def http_parse_us(kind: str, runs: int = 2000) -> float:
    """httptools on the request's bytes: request line, headers, body, as uvicorn feeds it."""
    import httptools

    body, headers = ceiling_store.BODIES[kind]()
    head = f"POST {ceiling_store.route(kind)} HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in {**headers, "content-length": str(len(body))}.items()
    )
    raw = head.encode() + b"\r\n" + body

    class Sink:
        def __init__(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []
            self.body: list[bytes] = []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.lower(), value))

        def on_body(self, chunk: bytes) -> None:
            self.body.append(chunk)

    started = time.thread_time()
    for _ in range(runs):
        parser = httptools.HttpRequestParser(Sink())
        parser.feed_data(raw)
    return (time.thread_time() - started) / runs * 1e6


def _echo(connection: Any) -> None:
    """The other end of ipc_round_trip_us: answers each tensor with a small reply, then reports its CPU."""
    started = time.process_time()
    while (message := connection.recv_bytes()) != b"stop":
        if message == b"mark":  # the timed runs start: its start-up and the warm-up are not counted
            started = time.process_time()
            continue
        connection.send_bytes(message[:8])
    connection.send(time.process_time() - started)


def ipc_round_trip_us(runs: int = 2000) -> tuple[float, float]:
    """The alternative to a batcher in each front-end process: one batching process fed by all, each
    request's 64 KB tensor sent to it and its answer sent back over a pipe. (CPU us of the front end,
    CPU us of the batching process) a request; neither includes any batching work."""
    import multiprocessing

    body, _ = ceiling_store.binary_body()
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_echo, args=(child,))
    process.start()
    for _ in range(100):  # warm-up
        parent.send_bytes(body)
        parent.recv_bytes()
    parent.send_bytes(b"mark")
    started = time.process_time()
    for _ in range(runs):
        parent.send_bytes(body)
        parent.recv_bytes()
    front = (time.process_time() - started) / runs * 1e6
    parent.send_bytes(b"stop")
    other = float(parent.recv()) / runs * 1e6
    process.join()
    return front, other


def measure(root: Path, kind: str, batching: bool, args: argparse.Namespace) -> dict[str, Any]:
    from medfn.gateway import GatewaySettings, build_gateway_app

    settings = GatewaySettings(
        functions=str(root / "functions"), usage_store=str(root / f"usage-{kind}-{batching}.sqlite3"),
        batching=batching,
    )  # fmt: skip
    app = build_gateway_app(settings)
    plane = app.state.plane
    loop = new_loop()
    try:
        loop.run_until_complete(drive(app, kind, 4 * args.concurrency, args.concurrency))  # warm-up
        clock = Clock()
        model = plane.get(ceiling_store.NAME)
        before = model.batcher.stats.snapshot() if model.batcher else None
        if model.batcher is not None:  # it holds Model.execute as bound at start: time that one
            model.batcher._execute = clock.wrap("run", model.batcher._execute, inside="batch assembly and scatter")
        with instrumented(clock):
            started = time.process_time()
            loop.run_until_complete(drive(app, kind, args.requests, args.concurrency))
            total = time.process_time() - started
        after = model.batcher.stats.snapshot() if model.batcher else None
    finally:
        plane.stop_batchers()
        loop.close()
    seconds = dict(clock.seconds)
    seconds["batch assembly and scatter"] = seconds.get("batch assembly and scatter", 0.0) - clock.inner.get(
        "batch assembly and scatter", 0.0
    )
    per_request = {stage: seconds.get(stage, 0.0) * 1e6 / args.requests for stage in STAGES}
    row: dict[str, Any] = {"body": kind, "batching": batching, "total_us": total * 1e6 / args.requests}
    row["stages_us"] = per_request
    row["remainder_us"] = row["total_us"] - sum(per_request.values())
    if before is not None and after is not None:
        requests = after.requests - before.requests
        row["queue_wait_us"] = (after.queue_seconds - before.queue_seconds) * 1e6 / max(1, requests)
        row["batch_mean"] = (after.rows - before.rows) / max(1, after.batches - before.batches)
    return row


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # as uvicorn picks it

        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.new_event_loop()


def report(
    rows: list[dict[str, Any]],
    parse: dict[str, float],
    ipc: tuple[float, float],
    framework: tuple[float, float],
    args: argparse.Namespace,
) -> None:
    kinds = list(dict.fromkeys(r["body"] for r in rows))
    batched = {r["body"]: r for r in rows if r["batching"]}
    inline = {r["body"]: r for r in rows if not r["batching"]}

    def line(label: str, values: list[float], digits: int = 1) -> None:
        print(f"{label:46}" + "".join(f"{v:>10.{digits}f}" for v in values))

    print(f"\nCPU microseconds a request, {args.concurrency} requests in flight, near-zero-cost model, batching on")
    print(f"{'stage':46}" + "".join(f"{k:>10}" for k in kinds))
    line("HTTP/1.1 parse (httptools; uvicorn does more)", [parse[k] for k in kinds])
    for stage in STAGES:
        line(stage, [batched[k]["stages_us"][stage] for k in kinds])
    line("the rest: framework, middleware, hand-offs", [batched[k]["remainder_us"] for k in kinds])
    line("total in the app (process CPU)", [batched[k]["total_us"] for k in kinds])
    line("  same, batching off (inline on the loop)", [inline[k]["total_us"] for k in kinds])
    line("  the rest, batching off", [inline[k]["remainder_us"] for k in kinds])
    line("wall: queue wait in the batcher (us)", [batched[k].get("queue_wait_us", 0.0) for k in kinds], 0)
    line("formed batch (requests a run)", [batched[k].get("batch_mean", 0.0) for k in kinds])
    print(
        f"\nthe framework alone, GET /v2/health/live through the same app: {framework[0]:.1f} us a request"
        f" ({framework[1]:.1f} without the usage-store middleware)"
    )
    front, other = ipc
    print(
        f"\none batching process fed by all front ends instead (a 64 KB tensor over a pipe and back): "
        f"{front:.1f} us a request in the front end, {other:.1f} us in the batching process, before any batching"
    )
    print(
        "(stages timed by thread CPU clocks around the functions in the script's STAGES; 'the rest' is the process's"
        " CPU less every stage; uvicorn's socket and protocol work is not in these: serving_ceiling.py's floor)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests timed per body and mode")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--bodies", default="binary,json,png", help="binary, json, png (the task route)")
    parser.add_argument("--medfn-src", type=Path, help="time medfn from this src/ folder (a before/after)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.INFO)  # the gateway's start-up lines
    kinds = args.bodies.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="medfn-breakdown-") as tmp:
        root = ceiling_store.write_store(Path(tmp))
        for kind in kinds:
            for batching in (True, False):
                rows.append(measure(root, kind, batching, args))
    parse = {kind: http_parse_us(kind) for kind in kinds}
    ipc = ipc_round_trip_us()
    with tempfile.TemporaryDirectory(prefix="medfn-breakdown-") as tmp:
        framework = framework_us(ceiling_store.write_store(Path(tmp)))
    report(rows, parse, ipc, framework, args)
    if args.json:
        figures = {
            "rows": rows,
            "http_parse_us": parse,
            "ipc_round_trip_us": {"front_end": ipc[0], "batching": ipc[1]},
            "framework_us": {"with_metering": framework[0], "without": framework[1]},
        }
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The serving path's own ceiling, beside a bare loopback HTTP floor, in one run, as a ratio.

What a GPU server can reach is bounded by what its front end answers when the model costs
nothing: `medfn serve` with a near-zero-cost model (benchmarks/ceiling_store.py: the
segmenter's 64 KB input, a mean and a softmax, `[dynamic_batching]` at --batch rows and
--delay-ms) against a raw ASGI app under the same uvicorn that reads the body and answers
medfn's own answer bytes (benchmarks/peer_apps/floor_app.py). Same load generator
(benchmarks/loadgen.py), same body, same callers, same number of server processes. Printed:
requests/s of each and per server process, their ratio (served / floor), the batch size the
batcher formed under that load, and the CPU time each server spent a request (on a shared
machine the rate follows cores / (server + client CPU per request), so the CPU figures say
where a rate comes from). On a GPU machine this ceiling is what the front end can feed the
device: benchmarks/gpu_throughput.py measures the rest.

    .venv/bin/python benchmarks/serving_ceiling.py [--quick] [--workers 1,2] [--bodies binary,png] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import ceiling_store, servers  # noqa: E402
from benchmarks.loadgen import drive  # noqa: E402
from benchmarks.stats import machine  # noqa: E402

KEPT_HEADERS = ("content-type", "inference-header-content-length", "x-request-id", "x-model-version")


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 30) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read(), {k.lower(): v for k, v in response.headers.items()}


def wait_ready(url: str, body: bytes, headers: dict[str, str], process: Any, log: Path, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited; its log ends:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            if post(url, body, headers, timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no 200 from {url} in {limit_s} s; see {log}")


def batch_counts(base: str, workers: int) -> tuple[int, int]:
    """(requests, batches) the batchers counted so far. With several processes each GET reaches
    one of them: distinct answers are summed, so the figure covers the processes sampled."""
    seen: set[tuple[int, int]] = set()
    for _ in range(1 if workers == 1 else 6 * workers):
        with urllib.request.urlopen(f"{base}/v2/models/{ceiling_store.NAME}", timeout=10) as response:
            parameters = json.loads(response.read())["parameters"]
        seen.add((int(parameters["batch_requests"]), int(parameters["batch_count"])))
    return sum(r for r, _ in seen), sum(b for _, b in seen)


def start(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> Any:
    import subprocess

    out = log.open("wb")
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def measure(server: str, root: Path, kind: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """One server ("medfn", "baseline": medfn from --baseline-src, or "floor") at one body and
    process count: rate, latency, CPU, batches."""
    body, headers = ceiling_store.BODIES[kind]()
    port = servers.free_port()
    base = f"http://127.0.0.1:{port}"
    url = base + ceiling_store.route(kind)
    # another tree's medfn: the other side of a before/after, measured alone or beside this one
    source = str(args.baseline_src if server == "baseline" else args.medfn_src or REPO / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([source, str(REPO), os.environ.get("PYTHONPATH", "")]))
    log = root / f"{server}-{kind}-{workers}.log"
    if server != "floor":
        env["MEDFN_MODEL_STORE"] = str(root / "model_store")
        command = [sys.executable, "-m", "medfn.cli", "serve", "--functions", str(root / "functions"),
                   "--port", str(port), "--workers", str(workers)]  # fmt: skip
    else:
        env["MEDFN_FLOOR_ANSWER"] = str(root / f"answer-{kind}.bin")
        env["MEDFN_FLOOR_HEADERS"] = (root / f"answer-{kind}.json").read_text()
        command = [sys.executable, "-m", "uvicorn", "benchmarks.peer_apps.floor_app:app", "--port", str(port),
                   "--workers", str(workers), "--no-access-log", "--log-level", "warning", "--ws", "none"]  # fmt: skip
    process = start(command, env, REPO if server == "floor" else root, log)
    try:
        wait_ready(url, body, headers, process, log)
        if server == "medfn":  # the floor answers exactly this, headers and all
            _, answer, answered = post(url, body, headers)
            (root / f"answer-{kind}.bin").write_bytes(answer)
            kept = {k: answered[k] for k in KEPT_HEADERS if k in answered}
            (root / f"answer-{kind}.json").write_text(json.dumps(kept))
        drive(url, body, headers, max(4 * args.concurrency, 200), args.concurrency, args.clients)  # warm-up
        counts = batch_counts(base, workers) if server != "floor" else (0, 0)
        cpu_before = servers.cpu_seconds(process)
        load = drive(url, body, headers, args.requests, args.concurrency, args.clients)
        server_cpu = servers.cpu_seconds(process) - cpu_before
        after = batch_counts(base, workers) if server != "floor" else (0, 0)
        lone = drive(url, body, headers, args.lone_requests + 1, 1, 1)  # one caller: no company ever comes
    finally:
        servers.stop(process)
    requests, batches = after[0] - counts[0], after[1] - counts[1]
    return {
        "server": server,
        "body": kind,
        "workers": workers,
        "rps": load.rps,
        "rps_per_process": load.rps / workers,
        "p50_ms": load.p50_ms,
        "p99_ms": load.p99_ms,
        "lone_p50_ms": lone.p50_ms,
        "server_cpu_ms": server_cpu * 1000 / args.requests,
        "client_cpu_ms": load.client_cpu_s * 1000 / args.requests,
        # with several processes the counts cover those the samples reached; zero batches: none seen
        "batch_mean": round(requests / batches, 2) if batches > 0 and requests >= 0 else None,
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (body, workers): the medians over rounds, and served / floor."""
    out = []
    for kind, workers in sorted({(r["body"], r["workers"]) for r in rows}):

        def median(server: str, key: str, kind: str = kind, workers: int = workers) -> float:
            values = [r[key] for r in rows if (r["server"], r["body"], r["workers"]) == (server, kind, workers)]
            values = [v for v in values if v is not None]
            return statistics.median(values) if values else 0.0

        served, floor = median("medfn", "rps"), median("floor", "rps")
        ratios = [
            m["rps"] / f["rps"]
            for m, f in zip(
                [r for r in rows if (r["server"], r["body"], r["workers"]) == ("medfn", kind, workers)],
                [r for r in rows if (r["server"], r["body"], r["workers"]) == ("floor", kind, workers)],
                strict=True,
            )
        ]
        out.append(
            {
                "body": kind,
                "workers": workers,
                "served_rps": served,
                "floor_rps": floor,
                "served_rps_per_process": served / workers,
                "ratio": statistics.median(ratios),
                "ratio_range": [min(ratios), max(ratios)],
                "batch_mean": median("medfn", "batch_mean"),
                "lone_extra_ms": median("medfn", "lone_p50_ms") - median("floor", "lone_p50_ms"),
                "served_cpu_ms": median("medfn", "server_cpu_ms"),
                "floor_cpu_ms": median("floor", "server_cpu_ms"),
                **(
                    {
                        "baseline_rps": median("baseline", "rps"),
                        "baseline_cpu_ms": median("baseline", "server_cpu_ms"),
                        "baseline_batch_mean": median("baseline", "batch_mean"),
                        "baseline_lone_extra_ms": median("baseline", "lone_p50_ms") - median("floor", "lone_p50_ms"),
                    }
                    if any(r["server"] == "baseline" for r in rows)
                    else {}
                ),
            }
        )
    return out


def report(summary: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nserving ceiling: near-zero-cost model, batch {args.batch}, max_queue_delay_ms {args.delay_ms}, "
        f"{args.concurrency} callers from {args.clients} load processes, {args.requests} requests, "
        f"median of {args.rounds} round(s)"
    )
    print(f"{'body':7} {'procs':>5} {'served/s':>9} {'per proc':>9} {'floor/s':>9} {'ratio':>6} "
          f"{'batch':>6} {'CPU ms/req served':>18} {'floor':>6} {'lone +ms':>8}")  # fmt: skip
    for s in summary:
        print(
            f"{s['body']:7} {s['workers']:>5} {s['served_rps']:>9.0f} {s['served_rps_per_process']:>9.0f}"
            f" {s['floor_rps']:>9.0f} {s['ratio']:>6.2f} {s['batch_mean']:>6.1f}"
            f" {s['served_cpu_ms']:>18.3f} {s['floor_cpu_ms']:>6.3f} {s['lone_extra_ms']:>8.2f}"
        )
    for s in summary:
        if "baseline_rps" in s:
            print(
                f"baseline ({args.baseline_src}), {s['body']} x{s['workers']}: {s['baseline_rps']:.0f} req/s"
                f" (ratio {s['baseline_rps'] / s['floor_rps']:.2f}), batch {s['baseline_batch_mean']:.1f}, CPU"
                f" {s['baseline_cpu_ms']:.3f} ms/req, lone +{s['baseline_lone_extra_ms']:.2f} ms"
            )
    print(
        "(ratio: served / floor requests/s, same uvicorn, body, callers and processes; batch: mean requests per"
        " session run the batcher formed under that load; lone +ms: one caller's p50, served less floor)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests, one round, binary bodies only")
    parser.add_argument("--requests", type=int, help="timed requests per measurement (default 4000; --quick 600)")
    parser.add_argument("--concurrency", type=int, default=64, help="callers in flight")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument("--workers", default="1", help="server processes, comma-separated counts to measure (1)")
    parser.add_argument("--bodies", help="binary, json, png (the task route); default binary,png (--quick: binary)")
    parser.add_argument("--lone-requests", type=int, default=200, help="timed requests of a lone caller")
    parser.add_argument("--rounds", type=int, help="repeats, alternating the servers (default 3; --quick 1)")
    parser.add_argument("--batch", type=int, default=32, help="max_batch_size")
    parser.add_argument("--delay-ms", type=float, default=2.0, help="max_queue_delay_ms")
    parser.add_argument("--medfn-src", type=Path, help="serve medfn from this src/ folder (a before/after)")
    parser.add_argument(
        "--baseline-src", type=Path, help="also serve medfn from this src/ folder, in the same rounds (a before/after)"
    )
    parser.add_argument("--json", type=Path, help="also write the rows and the summary here")
    args = parser.parse_args(argv)
    args.requests = args.requests or (600 if args.quick else 4000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    bodies = (args.bodies or ("binary" if args.quick else "binary,png")).split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="medfn-ceiling-") as tmp:
        root = ceiling_store.write_store(Path(tmp), args.batch, args.delay_ms)
        for _ in range(args.rounds):
            for workers in [int(w) for w in args.workers.split(",")]:
                for kind in bodies:
                    # medfn first: the floor answers with its answer; a baseline, if any, in the same round
                    for server in ("medfn", "floor", *(["baseline"] if args.baseline_src else [])):
                        rows.append(measure(server, root, kind, workers, args))
                        print(f"  {server} {kind} x{workers}: {rows[-1]['rps']:.0f} req/s", file=sys.stderr)
    summary = summarise(rows)
    report(summary, args)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput and latency of the batching server beside a bare session, fp32 and fp16.

Serves the scan_segmenter U-Net and a ResNet-18-shaped classifier (random weights: the
throughput is real, the answers mean nothing; model_store/build/resnet18_bench.py) with
`medfn serve` in a child process, exactly as containers/gpu.Dockerfile runs it, with
[dynamic_batching] at --batch rows. Load generator processes (asyncio + aiohttp, benchmarks/loadgen.py; the binary
tensor extension, one image a request) drive it at low load (1 caller) and high load
(--high-concurrency callers, bounded request counts). In the same run, on the same
providers, a bare session runs batches of --batch (and of 1) through medfn.serving.sessions: I/O
binding on CUDA. It prints rows/s and latency p50/p99 per level, the server/bare
throughput ratio at --batch (the target: >= 0.80 at batch 32, fp32 and fp16) and a lone
request's p50 through the server against a bare batch of 1 (the target: at most 1 ms more).

One run covers every server configuration named (--server-workers 1,4: one process, then four,
each with its own batcher; --rows-per-request 1,8; --switch-interval-ms ,0.5: CPython's default
GIL switch interval, then 0.5 ms), so a device lent for minutes records them all at once; the
serving path's own ceiling on that host's CPU (benchmarks/serving_ceiling.py) is measured first
in the same run with --ceiling, so served / bare can be read against what the front end can feed.

On this CPU machine (small counts; CUDA absent, so it runs on CPU and says so):
    .venv/bin/python benchmarks/gpu_throughput.py --quick

On a GPU machine (CUDA 13 driver and cuDNN 9 libraries present), from a checkout:
    python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'      # medfn + onnx, httpx, uvicorn
    .venv/bin/pip install --no-deps --target /opt/ort-gpu 'onnxruntime-gpu>=1.31'
    PYTHONPATH=/opt/ort-gpu .venv/bin/python benchmarks/gpu_throughput.py --require-cuda \\
        --server-workers 1,4 --rows-per-request 1,8 --ceiling --json gpu_results.json   # about 8 minutes
The --target dir on PYTHONPATH shadows the CPU onnxruntime wheel for this process and the
server it starts (--no-deps: numpy, protobuf and the rest are in .venv already). If CUDA and
cuDNN come from pip wheels (nvidia-*-cu13) rather than the system, put their lib folders on
LD_LIBRARY_PATH. --require-cuda (or MEDFN_REQUIRE_CUDA=1) stops the run, non-zero, unless
every session lands on the CUDA provider; without it a missing GPU falls back to CPU with a
log line. torch is not needed: the ResNet-18 is written with onnx.helper (or --resnet PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.loadgen import drive  # noqa: E402
from medfn.serving.sessions import make_session, run_session, session_device  # noqa: E402
from model_store.build import convert_fp16, resnet18_bench  # noqa: E402

SEGMENTER = REPO / "model_store" / "scan_segmenter" / "1" / "model.onnx"
SHAPES = {"segmenter": (1, 128, 128), "resnet18": (3, 224, 224)}  # one image, no batch axis
OUTPUTS = {"segmenter": (1, 128, 128), "resnet18": (1000,)}


@dataclass
class Row:
    model: str
    precision: str
    path: str  # "bare" or "server"
    load: str  # "low" or "high"
    batch: int  # bare: rows a run; server: callers in flight
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    device: str
    batch_mean: float = 0.0  # server: rows per session run its batcher formed
    config: str = ""  # server: "<processes> proc, <rows> rows/req[, switch <ms> ms]"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


# -- the model store the server and the bare session read ---------------------------------------


def write_store(root: Path, name: str, onnx_path: Path, batch: int, delay_ms: float) -> None:
    """A tensor-task model (OIP only) with [dynamic_batching], and a function serving it."""
    import hashlib

    folder = root / "model_store" / name
    (folder / "1").mkdir(parents=True)
    target = folder / "1" / "model.onnx"
    target.write_bytes(onnx_path.read_bytes())
    kind = name.split("_")[0]
    in_shape = [-1, *SHAPES[kind]]
    out_shape = [-1, *OUTPUTS[kind]]
    (folder / "model.toml").write_text(
        f'name = "{name}"\ntask = "tensor"\nmax_batch_size = {batch}\n\n'
        f"[dynamic_batching]\nmax_queue_delay_ms = {delay_ms}\n\n"
        f'[[inputs]]\nname = "image"\ndatatype = "FP32"\nshape = {in_shape}\n\n'
        f'[[outputs]]\nname = "probabilities"\ndatatype = "FP32"\nshape = {out_shape}\n\n'
        f'[versions.1.sha256]\n"model.onnx" = "{hashlib.sha256(target.read_bytes()).hexdigest()}"\n',
        "utf-8",
    )
    function = root / "functions" / name
    function.mkdir(parents=True)
    (function / "function.toml").write_text(
        f'name = "{name}"\nmodel = "{name}"\nruntime = "container"\naccelerator = "gpu"\n'
    )


def model_files(work: Path, resnet: Path | None, models: list[str], precisions: list[str]) -> dict[str, Path]:
    """name ("segmenter_fp16", ...) -> ONNX file; fp16 made with onnxconverter-common."""
    fp32 = {"segmenter": SEGMENTER, "resnet18": resnet or resnet18_bench.write(work / "resnet18.onnx")}
    files = {}
    for kind in models:
        for precision in precisions:
            path = fp32[kind]
            if precision == "fp16":
                path = work / f"{kind}_fp16.onnx"
                convert_fp16.to_fp16(fp32[kind], path)
            files[f"{kind}_{precision}"] = path
    return files


# -- bare session ---------------------------------------------------------------------------------


def bare(name: str, path: Path, batch: int, runs: int, require_cuda: bool) -> Row:
    session = make_session(path)
    device = session_device(session)
    if require_cuda and device.kind != "cuda":
        raise SystemExit(f"--require-cuda: {name} runs on {session.get_providers()[0]}")
    images = np.random.default_rng(0).random((batch, *SHAPES[name.split("_")[0]]), dtype=np.float32)
    for _ in range(3):  # warm-up: CUDA kernels chosen, arenas grown
        run_session(session, ["probabilities"], {"image": images}, device)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run_session(session, ["probabilities"], {"image": images}, device)
        times.append(time.perf_counter() - started)
    kind, precision = name.split("_")
    load = "high" if batch > 1 else "low"
    return Row(
        kind,
        precision,
        "bare",
        load,
        batch,
        batch * runs / sum(times),
        percentile(times, 50),
        percentile(times, 99),
        device.label,
    )


# -- the server and its load ----------------------------------------------------------------------


def request_body(kind: str, seed: int, rows: int = 1) -> tuple[bytes, dict[str, str]]:
    """One image as the binary tensor extension: JSON header, then the raw FP32 bytes."""
    image = np.random.default_rng(seed).random((rows, *SHAPES[kind]), dtype=np.float32)
    raw = image.tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": list(image.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"}


def load(
    url: str, kind: str, requests: int, concurrency: int, clients: int, rows: int = 1
) -> tuple[float, list[float]]:
    """rows/s and latencies from `clients` processes sharing `concurrency` callers, `rows` images a request.

    The load generator shared with `medfn bench` (aiohttp): httpx's client spent ~3.7 ms of
    CPU a request, so with it the first H100 runs measured the client as much as the server.
    """
    body, headers = request_body(kind, seed=1, rows=rows)
    result = drive(url, body, headers, requests, concurrency, clients)
    return result.rps * rows, result.latencies


def serve(root: Path, port: int, env: dict[str, str], workers: int = 1) -> subprocess.Popen:  # type: ignore[type-arg]
    """`medfn serve` of the store under `root`, as containers/gpu.Dockerfile runs it (its batchers
    assemble batches in page-locked buffers and answer the event loop once a batch)."""
    command = [
        sys.executable,
        "-m",
        "medfn.cli",
        "serve",
        "--functions",
        str(root / "functions"),
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    log = open(root / "server.log", "wb")  # noqa: SIM115  # the child writes to it until it ends
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180  # CUDA's first session can take a while
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited; its log:\n{(root / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not become ready in 180 s")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_rows(
    name: str, port: int, args: argparse.Namespace, workers: int, rows_per_request: int, config: str
) -> list[Row]:
    kind, precision = name.split("_")
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/v2/models/{name}/infer"
    rows = []
    for level, concurrency, requests in (
        ("low", 1, args.low_requests),
        ("high", args.high_concurrency, args.high_requests),
    ):
        rows_each = 1 if level == "low" else rows_per_request
        load(url, kind, max(concurrency * 2, 8), concurrency, 1, rows_each)  # warm-up
        before = httpx.get(f"{base}/v2/models/{name}").json()["parameters"]
        # loadgen times all but each caller's first request: send that many more
        rate, latencies = load(
            url, kind, requests + concurrency, concurrency, args.clients if level == "high" else 1, rows_each
        )
        after = httpx.get(f"{base}/v2/models/{name}").json()["parameters"]
        if args.require_cuda and not after["device"].startswith("cuda"):
            raise SystemExit(f"--require-cuda: the server runs {name} on {after['device']}")
        batches = after["batch_count"] - before["batch_count"]
        # with several server processes the two snapshots may come from different ones
        one_process = workers == 1
        mean = (after["batch_requests"] - before["batch_requests"]) / batches if batches and one_process else 0.0
        rows.append(
            Row(
                kind,
                precision,
                "server",
                level,
                concurrency,
                rate,
                percentile(latencies, 50),
                percentile(latencies, 99),
                after["device"],
                round(mean, 2),
                config,
            )
        )
    return rows


def configurations(args: argparse.Namespace) -> list[tuple[int, int, str]]:
    """(server processes, images a request at high load, switch interval ms or "") to measure."""
    return [
        (int(workers), int(rows), switch)
        for workers in str(args.server_workers).split(",")
        for rows in str(args.rows_per_request).split(",")
        for switch in str(args.switch_interval_ms).split(",")
    ]


def label(workers: int, rows: int, switch: str) -> str:
    return f"{workers} proc, {rows} rows/req" + (f", switch {switch} ms" if switch else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a CPU smoke run (about a minute)")
    parser.add_argument("--batch", type=int, default=32, help="max_batch_size of the server and the bare batch (32)")
    parser.add_argument("--delay-ms", type=float, default=2.0, help="max_queue_delay_ms of the server (2)")
    parser.add_argument("--high-concurrency", type=int, help="callers in flight at high load (default 4 x --batch)")
    parser.add_argument("--high-requests", type=int, help="requests timed at high load (default 4000; --quick 128)")
    parser.add_argument("--low-requests", type=int, help="requests timed at low load (default 300; --quick 16)")
    parser.add_argument("--bare-runs", type=int, help="timed bare runs per batch size (default 100; --quick 5)")
    parser.add_argument(
        "--server-workers", default="1", help="`medfn serve --workers`: server processes; several, comma-separated (1)"
    )
    parser.add_argument(
        "--rows-per-request", default="1", help="images per request at high load; several, comma-separated (1)"
    )
    parser.add_argument(
        "--switch-interval-ms",
        default="",
        help="MEDFN_SWITCH_INTERVAL_MS for the server ('' keeps CPython's 5 ms); several, comma-separated (',0.5')",
    )
    parser.add_argument(
        "--ceiling", action="store_true", help="first, the serving path's ceiling on this host (serving_ceiling.py)"
    )
    parser.add_argument("--clients", type=int, help="load generator processes at high load (default: cores / 4, 1..4)")
    parser.add_argument("--models", default="segmenter,resnet18", help="segmenter, resnet18 or both (default)")
    parser.add_argument("--precisions", default="fp32,fp16", help="fp32, fp16 or both (default)")
    parser.add_argument("--resnet", type=Path, help="a pre-built ResNet-18 ONNX (input image, output probabilities)")
    parser.add_argument(
        "--require-cuda",
        action="store_true",
        default=os.environ.get("MEDFN_REQUIRE_CUDA") == "1",
        help="fail unless every session runs on CUDA (also: MEDFN_REQUIRE_CUDA=1)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    quick = args.quick
    args.high_concurrency = args.high_concurrency or 4 * args.batch
    args.high_requests = args.high_requests or (128 if quick else 4000)
    args.low_requests = args.low_requests or (16 if quick else 300)
    args.bare_runs = args.bare_runs or (5 if quick else 100)
    args.clients = args.clients or max(1, min(4, (os.cpu_count() or 1) // 4))

    env = dict(os.environ)
    if args.require_cuda:
        env["MEDFN_REQUIRE_CUDA"] = "1"  # the server's sessions too: not ready (and we stop) on CPU
        os.environ["MEDFN_REQUIRE_CUDA"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(REPO / "src")) if p)
    rows: list[Row] = []
    ceiling = run_ceiling(args) if args.ceiling else None
    with tempfile.TemporaryDirectory(prefix="medfn-gpu-bench-") as tmp:
        work = Path(tmp)
        files = model_files(work, args.resnet, args.models.split(","), args.precisions.split(","))
        for name, path in files.items():
            rows += [
                bare(name, path, 1, args.bare_runs * 4, args.require_cuda),
                bare(name, path, args.batch, args.bare_runs, args.require_cuda),
            ]
            root = work / name
            write_store(root, name, path, args.batch, args.delay_ms)
            for workers, rows_each, switch in configurations(args):
                port = free_port()
                server_env = env | {"MEDFN_MODEL_STORE": str(root / "model_store"), "MEDFN_SWITCH_INTERVAL_MS": switch}
                server = serve(root, port, server_env, workers)
                try:
                    rows += server_rows(name, port, args, workers, rows_each, label(workers, rows_each, switch))
                finally:
                    server.terminate()
                    server.wait(timeout=30)
            print(f"{name}: done", file=sys.stderr)
    report(rows, args, ceiling)
    if args.json:
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows], "ceiling": ceiling}, indent=2))


def run_ceiling(args: argparse.Namespace) -> list[dict[str, object]]:
    """serving_ceiling.py on this host, at the process counts measured below: its summary rows."""
    from benchmarks import serving_ceiling

    out = Path(tempfile.mkdtemp(prefix="medfn-ceiling-")) / "ceiling.json"
    workers = ",".join(sorted({str(w) for w, _, _ in configurations(args)}))
    clients = str(max(2, args.clients))
    quick = ["--quick"] if args.quick else []
    serving_ceiling.main([*quick, "--workers", workers, "--rounds", "1", "--clients", clients, "--json", str(out)])
    summary: list[dict[str, object]] = json.loads(out.read_text())["summary"]
    return summary


def report(rows: list[Row], args: argparse.Namespace, ceiling: list[dict[str, object]] | None = None) -> None:
    print(
        f"\nbatch {args.batch}, max_queue_delay_ms {args.delay_ms}, high load {args.high_concurrency} callers"
        f" ({args.clients} client processes), {args.high_requests} requests; low load 1 caller;"
        f" server configurations: {', '.join(label(*c) for c in configurations(args))}\n"
    )
    print(
        f"{'model':9} {'prec':5} {'path':6} {'load':5} {'batch':>5} {'rows/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'device':7} {'formed':>6}  config"
    )
    for r in rows:
        formed = f"{r.batch_mean:.1f}" if r.path == "server" else ""
        print(
            f"{r.model:9} {r.precision:5} {r.path:6} {r.load:5} {r.batch:>5} {r.rows_per_s:>9.1f}"
            f" {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.device:7} {formed:>6}  {r.config}"
        )
    print(f"\nserved / bare throughput at high load (batch {args.batch:d}; target >= 0.80):")
    for r in rows:
        if r.path == "server" and r.load == "high":
            bare_row = next(
                b for b in rows if (b.model, b.precision, b.path, b.batch) == (r.model, r.precision, "bare", args.batch)
            )
            print(f"  {r.model} {r.precision} ({r.config}): {r.rows_per_s / bare_row.rows_per_s:.2f}")
    print("\na lone request: server p50 - bare p50 at batch 1 (target <= 1.0 ms):")
    for r in rows:
        if r.path == "server" and r.load == "low":
            lone = next(b for b in rows if (b.model, b.precision, b.path, b.batch) == (r.model, r.precision, "bare", 1))
            print(f"  {r.model} {r.precision} ({r.config}): {r.p50_ms - lone.p50_ms:+.2f} ms")
    for c in ceiling or []:
        print(
            f"\nthis host's serving ceiling (near-zero-cost model, {c['workers']} process(es), {c['body']}):"
            f" {float(c['served_rps']):.0f} req/s served, {float(c['floor_rps']):.0f} bare loopback floor,"  # type: ignore[arg-type]
            f" ratio {float(c['ratio']):.2f}"  # type: ignore[arg-type]
        )
    print(
        "(rows/s: images a second; bare p50/p99 are per batch run; server p50/p99 per request,"
        " queueing included; 'formed': mean requests per batched run (of one server process).)"
    )


if __name__ == "__main__":
    main()

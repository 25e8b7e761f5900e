"""The models compared and how each server is started on them: medfn serve, KServe, BentoML.

Every server loads the very same ONNX file and answers the same Open Inference Protocol v2
JSON body on POST /v2/models/<name>/infer, so the load generator can send identical bytes.
medfn gets the file through a throwaway model store (a `tensor` task model and a function
serving it), the peers through their own scripts in benchmarks/peer_apps/.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PEER_APPS = REPO / "benchmarks" / "peer_apps"


@dataclass(frozen=True)
class BenchModel:
    name: str
    onnx: Path
    input: str
    shape: tuple[int, ...]  # one request's input, batch axis included
    output: str
    output_shape: tuple[int, ...]

    def json_body(self) -> bytes:
        """The OIP JSON request every server gets: seeded values, written once, sent as bytes."""
        data = np.random.default_rng(1).random(self.shape, dtype=np.float32)
        return json.dumps(
            {
                "inputs": [
                    {
                        "name": self.input,
                        "shape": list(self.shape),
                        "datatype": "FP32",
                        "data": [round(float(x), 6) for x in data.ravel()],
                    }
                ]
            }
        ).encode()

    def binary_body(self) -> tuple[bytes, dict[str, str]]:
        """The same tensor with the binary tensor extension: a JSON header, then raw FP32 bytes."""
        raw = np.random.default_rng(1).random(self.shape, dtype=np.float32).tobytes()
        head = json.dumps(
            {
                "inputs": [
                    {
                        "name": self.input,
                        "shape": list(self.shape),
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ]
            }
        ).encode()
        return head + raw, {
            "content-type": "application/octet-stream",
            "inference-header-content-length": str(len(head)),
        }


def bench_models(work: Path) -> dict[str, BenchModel]:
    """Two small models (breast_mass's MLP on 30 features: all HTTP and framework; scan_classifier's
    CNN on a 128x128 image: 160 KB of JSON a request) and a ResNet-18-shaped classifier built here."""
    sys.path.insert(0, str(REPO))
    from model_store.build import resnet18_bench

    resnet = work / "resnet18.onnx"
    if not resnet.exists():
        resnet18_bench.write(resnet)
    store = REPO / "model_store"
    return {
        "breast_mass": BenchModel(
            "breast_mass", store / "breast_mass" / "1" / "model.onnx", "features", (1, 30), "probabilities", (1, 2)
        ),
        "scan_classifier": BenchModel(
            "scan_classifier",
            store / "scan_classifier" / "1" / "model.onnx",
            "image",
            (1, 1, 128, 128),
            "probabilities",
            (1, 2),
        ),
        "resnet18": BenchModel("resnet18", resnet, "image", (1, 3, 224, 224), "probabilities", (1, 1000)),
    }


def write_medfn_store(root: Path, model: BenchModel) -> None:
    """root/model_store/<name> (a tensor-task model, no batching) and root/functions/<name>."""
    folder = root / "model_store" / model.name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.onnx"
    target.write_bytes(model.onnx.read_bytes())
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    (folder.parent / "model.toml").write_text(
        f'name = "{model.name}"\ntask = "tensor"\nmax_batch_size = 1\n\n'
        f'[[inputs]]\nname = "{model.input}"\ndatatype = "FP32"\nshape = {[-1, *model.shape[1:]]}\n\n'
        f'[[outputs]]\nname = "{model.output}"\ndatatype = "FP32"\nshape = {[-1, *model.output_shape[1:]]}\n\n'
        f'[versions.1.sha256]\n"model.onnx" = "{digest}"\n',
        "utf-8",
    )
    function = root / "functions" / model.name
    function.mkdir(parents=True, exist_ok=True)
    (function / "function.toml").write_text(f'name = "{model.name}"\nmodel = "{model.name}"\n', "utf-8")


@dataclass
class Launch:
    server: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    infer_url: str


def launch_spec(server: str, model: BenchModel, root: Path, port: int, python: Path | None = None) -> Launch:
    """How to start `server` ("medfn", "kserve", "bentoml") on `model` at 127.0.0.1:`port`."""
    env = dict(os.environ)
    url = f"http://127.0.0.1:{port}/v2/models/{model.name}/infer"
    if server == "medfn":
        write_medfn_store(root, model)
        env["MEDFN_MODEL_STORE"] = str(root / "model_store")
        command = [
            sys.executable,
            "-m",
            "medfn.cli",
            "serve",
            "--functions",
            str(root / "functions"),
            "--port",
            str(port),
        ]
        return Launch(server, command, env, root, url)
    assert python is not None, f"{server} needs its venv's python"
    if server == "kserve":
        command = [
            str(python),
            str(PEER_APPS / "kserve_onnx.py"),
            "--model_name",
            model.name,
            "--model_file",
            str(model.onnx),
            "--http_port",
            str(port),
            "--grpc_port",
            str(free_port()),
        ]
        return Launch(server, command, env, root, url)
    env.update(
        MEDFN_BENCH_MODEL=model.name,
        MEDFN_BENCH_ONNX=str(model.onnx),
        BENTOML_HOME=str(root / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
    )
    command = [
        str(python.parent / "bentoml"),
        "serve",
        "bentoml_onnx:OnnxService",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    return Launch(server, command, env, PEER_APPS, url)


def start(launch: Launch, log: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    out = log.open("wb")
    return subprocess.Popen(
        launch.command, cwd=launch.cwd, env=launch.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )  # BentoML forks workers: stop the whole group


def wait_first_answer(
    launch: Launch,
    body: bytes,
    process: subprocess.Popen,
    log: Path,
    started: float,  # type: ignore[type-arg]
    limit_s: float = 120,
) -> float:
    """Seconds from `started` (perf_counter before the spawn) to the infer route's first 200, polled every 10 ms."""
    request = urllib.request.Request(launch.infer_url, data=body, headers={"content-type": "application/json"})
    while time.perf_counter() - started < limit_s:
        if process.poll() is not None:
            raise RuntimeError(f"{launch.server} exited; its log ends:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{launch.server} gave no 200 in {limit_s} s; see {log}")


def check_answer(launch: Launch, model: BenchModel) -> None:
    """Raise unless the server's answer to the JSON body is what onnxruntime computes here:
    a fast wrong answer must not count as throughput."""
    import onnxruntime

    request = urllib.request.Request(
        launch.infer_url, data=model.json_body(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    data = np.asarray(answer["outputs"][0]["data"], dtype=np.float32).reshape(model.output_shape)
    sent = json.loads(model.json_body())["inputs"][0]["data"]
    feeds = {model.input: np.asarray(sent, dtype=np.float32).reshape(model.shape)}
    expected = onnxruntime.InferenceSession(str(model.onnx)).run([model.output], feeds)[0]
    if not np.allclose(data, expected, rtol=1e-3, atol=1e-5):
        raise RuntimeError(
            f"{launch.server} answered {data.ravel()[:4]}..., onnxruntime gives {expected.ravel()[:4]}..."
        )


def cpu_seconds(process: subprocess.Popen) -> float:  # type: ignore[type-arg]
    """CPU time (user + system) used so far by the server and every process under it: a server
    that forks workers (BentoML's supervisor starts its own) is counted with them, including
    workers that have exited and been waited for (their parent's cutime and cstime). Linux /proc only."""
    parents, ticks = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # what follows "pid (comm)"
        except (OSError, IndexError):
            continue  # gone between listing and reading
        pid = int(stat.parent.name)
        # ppid; utime + stime + cutime + cstime (children it has reaped)
        parents[pid], ticks[pid] = int(fields[1]), sum(int(field) for field in fields[11:15])
    tree, grew = {process.pid}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen) -> None:  # type: ignore[type-arg]
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

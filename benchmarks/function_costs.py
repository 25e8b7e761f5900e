"""What a call of each function costs: warm duration, package size, price per million calls.

For each function, in this process: its Lambda handler (functions/<name>/handler.py) answers
benchmarks/samples.py's task request as an API Gateway REST event, warmed up, then timed over
--calls calls (median of 5 rounds' means). That duration and the function.toml memory give
the arm64 Lambda charge per million calls (src/medfn/metering/pricing.py; API Gateway not
included), beside SageMaker Serverless Inference at the smallest memory size holding the same
memory (1 GB steps) for the same duration and the same request and response bytes.
The package size is that of the arm64 zip `medfn package` builds (rebuilt by every run).

Durations are this machine's (x86-64, see RESULTS.md), not a Graviton Lambda's: Lambda gives a
1024 MB function about 0.6 vCPU, so real durations are longer; the ratio between the two
services holds for any duration, as both bill memory x time.

    .venv/bin/python benchmarks/function_costs.py [--calls 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.overhead import rest_event  # noqa: E402
from benchmarks.samples import FUNCTIONS, task_request  # noqa: E402
from medfn.config import FunctionConfig  # noqa: E402
from medfn.metering import pricing  # noqa: E402


def warm_duration_ms(function: str, calls: int) -> tuple[float, int]:
    """(median per-call ms, response body bytes) of the handler answering the task request."""
    spec = importlib.util.spec_from_file_location(f"handler_{function}", REPO / "functions" / function / "handler.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    model = FunctionConfig.load(REPO / "functions" / function).model
    body, content_type = task_request(function)
    event = rest_event(f"/v1/models/{model}/predict", body, {"content-type": content_type})
    response = module.handler(copy.copy(event), None)
    assert response["statusCode"] == 200, response
    for _ in range(20):
        module.handler(copy.copy(event), None)
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            module.handler(copy.copy(event), None)
        rounds.append((time.perf_counter() - started) / calls * 1000)
    return statistics.median(rounds), len(response["body"])


def package_bytes(function: str) -> tuple[int, int]:
    """(zipped, unzipped) bytes of the function's arm64 zip, built now by `medfn package`:
    a zip left in dist/ may predate the packaging code being measured."""
    dist = REPO / ".medfn" / "bench" / "dist"
    subprocess.run([sys.executable, "-m", "medfn.cli", "package", function, "--arch", "arm64", "--dist", str(dist)],
                   cwd=REPO, check=True, capture_output=True)  # fmt: skip
    path = dist / f"{function}-arm64.zip"
    with zipfile.ZipFile(path) as archive:
        return path.stat().st_size, sum(info.file_size for info in archive.infolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from tqdm import tqdm

    rows = []
    for function in tqdm(FUNCTIONS, desc="function costs", file=sys.stderr):
        config = FunctionConfig.load(REPO / "functions" / function)
        duration, out_bytes = warm_duration_ms(function, args.calls)
        in_bytes = len(task_request(function)[0])
        zipped, unzipped = package_bytes(function)
        lam = pricing.lambda_cost(duration, config.memory_mb) * 1e6
        sage = pricing.sagemaker_serverless_cost(duration, config.memory_mb, in_bytes, out_bytes) * 1e6
        rows.append(
            {
                "function": function,
                "memory_mb": config.memory_mb,
                "duration_ms": duration,
                "zip_mib": zipped / 2**20,
                "unzipped_mib": unzipped / 2**20,
                "lambda_per_million": lam,
                "sagemaker_per_million": sage,
            }
        )
    print(f"per million calls at this machine's warm duration ({pricing.PRICES_READ}; {pricing.SAGEMAKER_PRICES_READ})")
    print(
        f"{'function':17} {'MB':>5} {'ms':>7} {'zip MiB':>8} {'unzip MiB':>10} {'Lambda $':>9} {'SageMaker $':>12}"
        f" {'ratio':>6}"
    )
    for r in rows:
        print(
            f"{r['function']:17} {r['memory_mb']:>5} {r['duration_ms']:>7.2f} {r['zip_mib']:>8.1f}"
            f" {r['unzipped_mib']:>10.1f} {r['lambda_per_million']:>9.2f} {r['sagemaker_per_million']:>12.2f}"
            f" {r['sagemaker_per_million'] / r['lambda_per_million']:>6.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"calls": args.calls, "rows": rows}))


if __name__ == "__main__":
    main()

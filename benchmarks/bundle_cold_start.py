"""Cold start of a function's Lambda bundle under Python 3.12, with and without its bytecode.

Lambda unpacks a zip into a read-only folder, so a bundle shipped without bytecode compiles
every module it imports on every cold start; `medfn package` therefore compiles the bundle
with a Python 3.12. This stages one function's bundle for this machine's architecture twice,
compiles one of them, and times fresh `python3.12 -I -S -B` processes (no site-packages, no
bytecode written, as in Lambda) from spawn to the handler's first 200 to an API Gateway
event. Samples alternate; prints medians and the ratio.

    .venv/bin/python benchmarks/bundle_cold_start.py [--function breast_mass] [--runs 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FIRST_ANSWER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import handler
event = json.loads(sys.stdin.read())
response = handler.handler(event, None)
assert response["statusCode"] == 200, response
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--function", default="breast_mass")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from tqdm import tqdm

    from benchmarks.samples import task_request
    from benchmarks.stats import ANSWERED, machine, spawn_to_answer
    from medfn.config import FunctionConfig
    from medfn.packaging import compile_bytecode, find_python312, stage

    python = find_python312()
    if python is None:
        raise SystemExit("no python3.12 on this machine: Lambda's runtime is what this measures")
    config = FunctionConfig.load(REPO / "functions" / args.function)
    arch = {"x86_64": "x86_64", "aarch64": "arm64"}[platform.machine()]
    body, content_type = task_request(args.function)
    event = json.loads((REPO / "tests" / "events" / "apigw_rest.json").read_text())
    event.update(path=f"/v1/models/{config.model}/predict", httpMethod="POST", isBase64Encoded=True,
                 body=base64.b64encode(body).decode())  # fmt: skip
    event["headers"]["content-type"] = content_type
    event["multiValueHeaders"]["content-type"] = [content_type]
    env = {"PATH": "/usr/bin:/bin", "MEDFN_MODEL_STORE": str(REPO / "model_store")}

    with tempfile.TemporaryDirectory(prefix="medfn-bundle-") as tmp:
        plain, compiled = Path(tmp) / "source only", Path(tmp) / "with bytecode"
        stage(config, arch, plain, REPO / ".medfn" / "wheels", model_store=None)
        shutil.copytree(plain, compiled)
        compile_bytecode(compiled, python)
        bundles = {"source only": plain, "with bytecode": compiled}
        for root in bundles.values():
            os.chmod(root, 0o555)  # read-only, as /var/task is

        def once(root: Path) -> float:
            command = [python, "-I", "-S", "-B", "-c", FIRST_ANSWER + ANSWERED, str(root)]
            return spawn_to_answer(command, input=json.dumps(event), env=env)[0]

        for root in bundles.values():
            once(root)  # warm the page cache; not counted
        samples: dict[str, list[float]] = {name: [] for name in bundles}
        for _ in tqdm(range(args.runs), desc="bundle cold start", file=sys.stderr):
            for name, root in bundles.items():
                samples[name].append(once(root))
        for root in bundles.values():
            os.chmod(root, 0o755)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{args.function} bundle ({arch}) under {python}: spawn to the first 200, median of {args.runs}")
    for name, value in medians.items():
        print(f"  {name:14} {value * 1000:7.1f} ms")
    print(f"  with bytecode / source only: {medians['with bytecode'] / medians['source only']:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "function": args.function,
                    "arch": arch,
                    "samples_s": samples,
                    "median_s": medians,
                    "machine": machine(),
                }
            )
        )


if __name__ == "__main__":
    main()

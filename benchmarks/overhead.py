"""Warm per-call overhead of the Lambda handler over a bare `session.run`, in one run.

Three loops over the same small input, in this process, after warm-up:
- bare: `session.run` on the tensor alone (the floor);
- handler, OIP binary: an API Gateway REST event carrying the same tensor with the binary
  tensor extension, through Mangum, FastAPI, the codec and back (pure serving overhead);
- handler, task route: the same scan as a PNG through `/v1/models/<m>/predict` (adds the
  decode and resize a caller would otherwise do themselves).

    .venv/bin/python benchmarks/overhead.py [--function scan_classifier] [--calls 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import copy
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def per_call_us(fn, calls: int, rounds: int = 5) -> float:  # type: ignore[no-untyped-def]
    """Median over rounds of the mean per-call time, in microseconds."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        results.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(results)


def rest_event(path: str, body: bytes, headers: dict[str, str]) -> dict:
    event = json.loads((REPO / "tests" / "events" / "apigw_rest.json").read_text())
    event.update(path=path, httpMethod="POST", body=base64.b64encode(body).decode(), isBase64Encoded=True)
    event["headers"].update(headers)
    event["multiValueHeaders"].update({k: [v] for k, v in headers.items()})
    return event


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--function", default="scan_classifier")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="also write the per-call times here")
    args = parser.parse_args()

    spec = importlib.util.spec_from_file_location("handler", REPO / "functions" / args.function / "handler.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    handler = module.handler
    model = handler.function.plane.get(handler.function.config.model)
    spec_in = model.config.inputs[0]
    shape = [1 if d < 0 else d for d in spec_in.shape]

    from model_store.build import chest_phantoms

    image = chest_phantoms.generate(1, seed=3)[0][0]
    tensor = image.reshape(shape).astype(np.float32)
    session, feeds = model.session, {spec_in.name: tensor}

    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": spec_in.name,
                    "shape": shape,
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": tensor.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    oip_event = rest_event(
        f"/v2/models/{model.name}/infer",
        head + tensor.tobytes(),
        {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))},
    )
    png_event = rest_event(
        f"/v1/models/{model.name}/predict", chest_phantoms.to_png(image), {"content-type": "image/png"}
    )

    def call(event: dict):  # type: ignore[no-untyped-def]
        def run() -> None:
            response = handler(copy.copy(event), None)
            assert response["statusCode"] == 200, response

        return run

    for fn in (lambda: session.run(None, feeds), call(oip_event), call(png_event)):
        for _ in range(50):
            fn()
    bare = per_call_us(lambda: session.run(None, feeds), args.calls)
    oip = per_call_us(call(oip_event), args.calls)
    png = per_call_us(call(png_event), args.calls)
    print(f"warm per-call time, {args.function}, {args.calls} calls x 5 rounds (median of round means)")
    print(f"  bare session.run:                 {bare:8.1f} us")
    print(f"  handler, OIP binary tensor:       {oip:8.1f} us   overhead {oip - bare:7.1f} us  ratio {oip / bare:.2f}")
    print(f"  handler, task route (PNG upload): {png:8.1f} us   overhead {png - bare:7.1f} us  ratio {png / bare:.2f}")
    print("  target: overhead <= 500 us per call")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "function": args.function,
                    "calls": args.calls,
                    "bare_us": bare,
                    "oip_binary_us": oip,
                    "task_png_us": png,
                }
            )
        )


if __name__ == "__main__":
    main()

"""Cold start of a function's Lambda handler beside the dependency floor, in one run.

Each sample is a fresh `python` process, timed by this parent from spawn to exit:
- floor: imports the libraries the handler path imports (onnxruntime, numpy, Pillow,
  FastAPI, Mangum), makes the same ONNX Runtime session with the same options and runs it
  once; nothing else.
- handler: imports functions/<name>/handler.py (init: verify sha256, make the session, build
  the app) and answers one API Gateway REST event with a 200.
- app floor: the floor plus the least a FastAPI-on-Lambda function does: a FastAPI app with
  one route that runs the session, behind Mangum, answering the same event. Not the issue's
  floor; printed beside it to show what FastAPI's own route set-up costs.
Samples alternate so machine noise hits all alike. Prints medians and the ratios.

    .venv/bin/python benchmarks/cold_start.py [--function scan_classifier] [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FLOOR = """
import numpy, onnxruntime, PIL.Image, fastapi, mangum
from medfn.runtime import make_session
model = {model!r}
session = make_session(__import__("pathlib").Path(model))
inp = session.get_inputs()[0]
shape = [1 if not isinstance(d, int) or d < 0 else d for d in inp.shape]
session.run(None, {{inp.name: numpy.zeros(shape, numpy.float32)}})
"""

APP_FLOOR = FLOOR + """
import base64, json
from fastapi import FastAPI, Request
from mangum import Mangum
app = FastAPI()

@app.post("/v1/models/{{name}}/predict")
async def predict(name: str, request: Request):
    await request.body()
    return {{"p": session.run(None, {{inp.name: numpy.zeros(shape, numpy.float32)}})[0].tolist()}}

event = json.load(open({event!r}))
event.update(path="/v1/models/m/predict", httpMethod="POST", body="", isBase64Encoded=False)
assert Mangum(app, lifespan="off")(event, None)["statusCode"] == 200
"""

HANDLER = """
import base64, json, sys
sys.path.insert(0, {repo!r})
import importlib.util
spec = importlib.util.spec_from_file_location("handler", {handler!r})
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
event = json.load(open({event!r}))
event.update(path={path!r}, httpMethod="POST", body={body!r}, isBase64Encoded=True)
event["headers"]["content-type"] = {content_type!r}
event["multiValueHeaders"]["content-type"] = [{content_type!r}]
response = module.handler(event, None)
assert response["statusCode"] == 200, response
"""


def sample_png() -> bytes:
    sys.path.insert(0, str(REPO))
    from model_store.build import chest_phantoms

    return chest_phantoms.to_png(chest_phantoms.generate(1, seed=1)[0][0])


def time_process(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--function", default="scan_classifier")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    import base64

    from medfn.config import FunctionConfig

    config = FunctionConfig.load(REPO / "functions" / args.function)
    model_file = REPO / "model_store" / config.model / "1" / "model.onnx"
    floor = FLOOR.format(model=str(model_file))
    app_floor = APP_FLOOR.format(model=str(model_file), event=str(REPO / "tests" / "events" / "apigw_rest.json"))
    handler = HANDLER.format(
        repo=str(REPO),
        handler=str(REPO / "functions" / args.function / "handler.py"),
        event=str(REPO / "tests" / "events" / "apigw_rest.json"),
        path=f"/v1/models/{config.model}/predict",
        body=base64.b64encode(sample_png()).decode(),
        content_type="image/png",
    )
    programs = {"floor": floor, "app floor": app_floor, "handler": handler}
    samples: dict[str, list[float]] = {name: [] for name in programs}
    for code in programs.values():
        time_process(code)  # warm the page cache and byte-code caches; not counted
    for _ in range(args.runs):
        for name, code in programs.items():
            samples[name].append(time_process(code))
    f, a, h = (statistics.median(samples[name]) for name in programs)
    print(f"cold start, {args.function}, median of {args.runs} processes each")
    print(f"  floor     (imports + session + one run):           {f * 1000:7.1f} ms")
    print(f"  app floor (+ one-route FastAPI app behind Mangum):  {a * 1000:7.1f} ms")
    print(f"  handler   (medfn init + first 200 on API GW):      {h * 1000:7.1f} ms")
    print(f"  ratio handler / floor:     {h / f:.3f}  (target <= 1.15)")
    print(f"  ratio handler / app floor: {h / a:.3f}")


if __name__ == "__main__":
    main()

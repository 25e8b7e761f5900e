"""Cold start of each function's Lambda handler beside the dependency floor, in one run.

Each sample is a fresh `python` process, timed from spawn to the moment it has its answer
(benchmarks.stats.spawn_to_answer):
- floor: imports the libraries the handler path imports (onnxruntime, numpy, Pillow,
  FastAPI, Mangum), makes the same ONNX Runtime session with the same options and runs it
  once; nothing else. Like the handler's init it runs with the garbage collector paused
  (medfn.coldstart), which alone takes ~55 ms off it here.
- handler: imports functions/<name>/handler.py (init: verify sha256, make the session, build
  the app) and answers one API Gateway REST event (benchmarks/samples.py's task request) with
  a 200; it reports its peak resident memory (ru_maxrss), the memory that function needs.
- app floor: the floor plus the least a FastAPI-on-Lambda function does: a FastAPI app with
  one route that runs the session, behind Mangum, answering the same event. Not the issue's
  floor; printed beside it to show what FastAPI's own route set-up costs.
Samples alternate so machine noise hits all alike. Prints medians and the ratios.

    .venv/bin/python benchmarks/cold_start.py [--function all] [--runs 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FLOOR = """
import gc; gc.disable()
import numpy, onnxruntime, PIL.Image, fastapi, mangum
from medfn.serving.sessions import make_session
model = {model!r}
session = make_session(__import__("pathlib").Path(model))
dtypes = {{"tensor(float)": numpy.float32, "tensor(int64)": numpy.int64, "tensor(int32)": numpy.int32}}
feeds = {{i.name: numpy.zeros([1 if not isinstance(d, int) or d < 0 else d for d in i.shape], dtypes[i.type])
         for i in session.get_inputs()}}
session.run(None, feeds)
{answered}
"""

APP_FLOOR = (
    FLOOR
    + """
import base64, json
from fastapi import FastAPI, Request
from mangum import Mangum
app = FastAPI()

@app.post("/v1/models/{{name}}/predict")
async def predict(name: str, request: Request):
    await request.body()
    return {{"p": session.run(None, feeds)[0].tolist()}}

event = json.load(open({event!r}))
event.update(path="/v1/models/m/predict", httpMethod="POST", body="", isBase64Encoded=False)
assert Mangum(app, lifespan="off")(event, None)["statusCode"] == 200
{answered}
"""
)

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
{answered}
import resource
print("maxrss_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def time_process(code: str) -> tuple[float, str]:
    from benchmarks.stats import spawn_to_answer

    return spawn_to_answer([sys.executable, "-c", code], cwd=REPO)


def programs(function: str) -> dict[str, str]:
    import base64

    from benchmarks.samples import task_request
    from benchmarks.stats import ANSWERED
    from medfn.config import FunctionConfig

    config = FunctionConfig.load(REPO / "functions" / function)
    model_file = REPO / "model_store" / config.model / "1" / "model.onnx"
    event = str(REPO / "tests" / "events" / "apigw_rest.json")
    body, content_type = task_request(function)
    handler = HANDLER.format(
        repo=str(REPO),
        handler=str(REPO / "functions" / function / "handler.py"),
        event=event,
        path=f"/v1/models/{config.model}/predict",
        body=base64.b64encode(body).decode(),
        content_type=content_type,
        answered=ANSWERED,
    )
    return {
        "floor": FLOOR.format(model=str(model_file), answered=ANSWERED),
        "app floor": APP_FLOOR.format(model=str(model_file), event=event, answered=ANSWERED),
        "handler": handler,
    }


def measure(function: str, runs: int) -> dict[str, float]:
    """Medians in seconds of floor, app floor and handler, and the handler's peak memory in MiB."""
    codes = programs(function)
    samples: dict[str, list[float]] = {name: [] for name in codes}
    rss: list[int] = []
    for code in codes.values():
        time_process(code)  # warm the page cache; not counted
    for _ in range(runs):
        for name, code in codes.items():
            seconds, out = time_process(code)
            samples[name].append(seconds)
            if name == "handler":
                rss.append(int(out.split("maxrss_kib")[1].split()[0]))
    result = {name: statistics.median(values) for name, values in samples.items()}
    result["peak_rss_mib"] = max(rss) / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--function", default="all", help="a function, or all (default)")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from tqdm import tqdm

    from benchmarks.samples import FUNCTIONS
    from benchmarks.stats import cache_medfn_bytecode

    cache_medfn_bytecode()  # the floor's libraries load cached bytecode; so must medfn

    functions = FUNCTIONS if args.function == "all" else [args.function]
    results = {f: measure(f, args.runs) for f in tqdm(functions, desc="cold start", file=sys.stderr)}
    print(
        f"cold start, median of {args.runs} processes each (floor: imports + session + one run; app floor: "
        "+ a one-route FastAPI app behind Mangum; handler: medfn init + first 200 on API Gateway)"
    )
    print(
        f"{'function':17} {'floor ms':>9} {'app floor':>10} {'handler':>9} {'h/floor':>8} {'h/app':>6} {'peak MiB':>9}"
    )
    for function, r in results.items():
        f, a, h = r["floor"], r["app floor"], r["handler"]
        print(
            f"{function:17} {f * 1000:9.1f} {a * 1000:10.1f} {h * 1000:9.1f} {h / f:8.2f} {h / a:6.2f}"
            f" {r['peak_rss_mib']:9.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "functions": results}))


if __name__ == "__main__":
    main()

"""What an explanation costs: explanation time / prediction time, per model, in one run.

Each case is a model of the local gateway (functions/) and one request body. Both calls run in
process through the plane (`explain_blocking`, `predict_blocking`), alternating, after a warm-up;
each figure is the median of --runs calls. Two ratios: the whole call (decoding, the run,
postprocessing, and for a scan the overlay PNG), and the model run alone (each answer's
inference_ms). Goals: at most 1.2x for a class-activation-map output ("grad-cam": one run with a
second output); occlusion is one batched run of grid² + 1 images, so it costs what that batch
costs. Rendering the overlay (a colour blend and a PNG of up to 256 x 256) is a cost of its own,
beside the run: the whole-call ratio shows it.

    .venv/bin/python benchmarks/explain_cost.py [--runs 40] [--json out.json]

To add a model, add a `Case` to CASES: (label, model name, a function giving (body, content
type), and optionally a change to its model.toml config for this case).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@dataclasses.dataclass(frozen=True)
class Case:
    label: str
    model: str
    body: Callable[[], tuple[bytes, str]]
    # A change to the model's config for this case only (e.g. no saliency output: occlusion).
    config: Callable[[Any], Any] | None = None


def _chest(size: int, dicom: bool = False) -> Callable[[], tuple[bytes, str]]:
    def body() -> tuple[bytes, str]:
        from model_store.build import chest_phantoms

        image = chest_phantoms.generate(2, seed=77, size=size)[0][1]
        if dicom:
            return chest_phantoms.to_dicom(image), "application/dicom"
        return chest_phantoms.to_png(image), "image/png"

    return body


def _sample(function: str) -> Callable[[], tuple[bytes, str]]:
    def body() -> tuple[bytes, str]:
        from benchmarks.samples import task_request

        return task_request(function)

    return body


def _without_saliency(config: Any) -> Any:
    """The classifier as a graph without class maps would be served: explained by occlusion."""
    output = config.explain.get("output")
    outputs = tuple(spec for spec in config.outputs if spec.name != output)
    return dataclasses.replace(config, explain={"occlusion_grid": 8}, outputs=outputs)


# The hook: one row each. Notes, records and vital signs add theirs here.
CASES: list[Case] = [
    Case("scan_classifier grad-cam, PNG 128", "scan_classifier", _chest(128)),
    Case("scan_classifier grad-cam, DICOM 512", "scan_classifier", _chest(512, dicom=True)),
    Case("scan_classifier occlusion 8x8, PNG 128", "scan_classifier", _chest(128), _without_saliency),
    Case("scan_segmenter probability-map, PNG", "scan_segmenter", _sample("scan_segmenter")),
    # Leave-one-out: one variant a token, max_batch_size (32) a run: 8 tokens, then 128 (5 runs).
    Case("notes_classifier leave-one-out, 8 tokens", "notes_classifier", _sample("notes_classifier")),
    Case(
        "notes_classifier leave-one-out, 128 tokens",
        "notes_classifier",
        lambda: (b"c/o cp x 2d. no cough. " * 30, "text/plain"),
    ),
    # Baseline replacement: 30 features + the record in one run; a series: 1 + hours x 7 in one run.
    Case("breast_mass baseline-replacement, 1 record", "breast_mass", _sample("breast_mass")),
    Case("vitals_risk baseline-replacement, 12 h", "vitals_risk", _sample("vitals_risk")),
    Case(
        "vitals_risk baseline-replacement, 48 h",
        "vitals_risk",
        lambda: (
            json.dumps({"observations": json.loads(_sample("vitals_risk")()[0])["observations"] * 4}).encode(),
            "application/json",
        ),
    ),
]


def measure(case: Case, runs: int) -> dict[str, Any]:
    from medfn.gateway import load_gateway_plane
    from medfn.serving import Payload

    plane = load_gateway_plane(REPO / "functions", [case.model])
    model = plane.get(case.model)
    model.ensure_ready()
    if case.config is not None:
        model = copy.copy(model)
        model.config = case.config(model.config)
    data, media_type = case.body()
    payload = Payload(data=data, media_type=media_type)
    method = plane.explain_blocking(model, payload).method
    for _ in range(3):  # warm-up: sessions, allocators, imports
        plane.predict_blocking(model, payload)
        plane.explain_blocking(model, payload)
    predict, explain, predict_run, explain_run = [], [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        predict_run.append(plane.predict_blocking(model, payload).inference_ms)
        predict.append(time.perf_counter() - started)
        started = time.perf_counter()
        explain_run.append(plane.explain_blocking(model, payload).prediction.inference_ms)
        explain.append(time.perf_counter() - started)
    p, e = statistics.median(predict) * 1000, statistics.median(explain) * 1000
    p_run, e_run = statistics.median(predict_run), statistics.median(explain_run)
    return {"case": case.label, "method": method, "predict_ms": round(p, 3), "explain_ms": round(e, 3),
            "ratio": round(e / p, 2), "predict_run_ms": round(p_run, 3), "explain_run_ms": round(e_run, 3),
            "run_ratio": round(e_run / p_run, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from benchmarks.stats import machine

    rows = [measure(case, args.runs) for case in CASES]
    print(f"{'':65} {'whole call (ms)':^26} {'model run (ms)':^26}")
    head = f"{'predict':>8} {'explain':>8} {'ratio':>8}"
    print(f"{'case':42} {'method':22} {head} {head}")
    for row in rows:
        whole = f"{row['predict_ms']:8.2f} {row['explain_ms']:8.2f} {row['ratio']:8.2f}"
        run = f"{row['predict_run_ms']:8.2f} {row['explain_run_ms']:8.2f} {row['run_ratio']:8.2f}"
        print(f"{row['case']:42} {row['method']:22} {whole} {run}")
    print("machine:", machine())
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

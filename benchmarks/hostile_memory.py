"""Peak memory of a function's Lambda handler per hostile input, beside the function's memory.

Each input is sent once, in a fresh process, through functions/<name>/handler.py as an API
Gateway REST event, as Lambda would deliver it; the child prints its peak resident memory
(ru_maxrss) after the answer. The figure that matters is peak / memory_mb of function.toml:
under 1.0 the request is answered (a 4xx for a bomb) instead of the sandbox being killed.
A well-formed scan of the largest size a radiograph has (4096 x 4096, 16-bit) is the
baseline: a bomb should cost no more than it.

    .venv/bin/python benchmarks/hostile_memory.py [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHILD = """
import base64, json, resource, sys
sys.path.insert(0, {repo!r})
from medfn.lambda_handler import make_handler
handler = make_handler({handler!r})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
event = json.load(open({event!r}))
answer = handler(event, None)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"status": answer["statusCode"], "init_kib": before, "peak_kib": peak}}))
"""


def _radiograph(size: int) -> np.ndarray:
    """12-bit content in flat 64-pixel steps: a full-size image that RLE packs under the 6 MB body limit."""
    steps = (np.arange(size) // 64 * 64).astype(np.uint16)
    return np.add.outer(steps, steps) // 2


def _palette_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("P", (8000, 8000)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _oip(name: str, datatype: str, shape: list[int], value: float | int) -> bytes:
    count = int(np.prod(shape))
    return json.dumps(
        {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": [value] * count}]}
    ).encode()


def inputs() -> list[tuple[str, str, str, Callable[[], bytes], str]]:
    """(label, function, path, body maker, content type)."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian as DEFLATED
    from pydicom.uid import RLELossless

    from model_store.build import dicom_part10

    predict = "/v1/models/{}/predict"
    return [
        ("4096x4096 16-bit radiograph, RLE (valid)", "scan_classifier", predict,
         lambda: dicom_part10.around(_radiograph(4096), RLELossless), "application/dicom"),
        ("deflated DICOM, 32 MB of pixels", "scan_classifier", predict,
         lambda: dicom_part10.around(np.zeros((4000, 4000), np.uint16), DEFLATED), "application/dicom"),
        ("palette PNG 8000x8000", "scan_classifier", predict, _palette_png, "image/png"),
        ("RLE RGB DICOM 4000x4000", "scan_classifier", predict,
         lambda: dicom_part10.around(np.zeros((4000, 4000, 3), np.uint8), RLELossless, rgb=True), "application/dicom"),
        ("OIP 100,000 tokens", "notes_classifier", "/v2/models/{}/infer",
         lambda: _oip("tokens", "INT64", [1, 100_000], 2), "application/json"),
        ("OIP batch of 20 CT slices (max 16)", "scan_segmenter", "/v2/models/{}/infer",
         lambda: _oip("image", "FP32", [20, 1, 128, 128], 0.0), "application/json"),
    ]  # fmt: skip


def measure(function: str, path: str, body: bytes, content_type: str, folder: Path) -> dict[str, int]:
    event = json.loads((REPO / "tests" / "events" / "apigw_rest.json").read_text())
    event.update(
        path=path.format(function),
        httpMethod="POST",
        headers={"content-type": content_type},
        multiValueHeaders={"content-type": [content_type]},
        body=base64.b64encode(body).decode(),
        isBase64Encoded=True,
    )
    event_path = folder / "event.json"
    event_path.write_text(json.dumps(event))
    code = CHILD.format(
        repo=str(REPO), handler=str(REPO / "functions" / function / "handler.py"), event=str(event_path)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    if done.returncode != 0:
        return {"status": -1, "init_kib": 0, "peak_kib": 0}  # killed: the figure that must never show
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    from medfn.config import FunctionConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    rows = []
    print(
        f"{'input':<42} {'function':<17} {'body':>9} {'status':>6} {'init MiB':>8} {'peak MiB':>9}"
        f" {'memory MiB':>10} {'peak/memory':>11}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for label, function, path, make, content_type in inputs():
            body = make()
            figures = measure(function, path, body, content_type, Path(folder))
            memory = FunctionConfig.load(REPO / "functions" / function).memory_mb
            peak = figures["peak_kib"] / 1024
            row = {"input": label, "function": function, "body_bytes": len(body), **figures, "memory_mb": memory}
            rows.append(row)
            print(
                f"{label:<42} {function:<17} {len(body):>9} {figures['status']:>6} {figures['init_kib'] / 1024:>8.0f}"
                f" {peak:>9.0f} {memory:>10} {peak / memory:>11.2f}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Scans per second through `medfn watch`'s processing, beside the floor of decode + inference.

A backlog of chest phantoms (DICOM and PNG, one kind at a time) is written to a fresh
DIR/incoming; then, after a warm-up:
- floor: the same bytes, already in memory, through the model's decode + inference in one loop;
- watch: `medfn watch DIR --once`'s processing (FolderWatch + ScanWorker): list and stat the
  folder, read each file, sniff, decode, infer, write results/<key>.json atomically, and
  write the SQLite status record, with the progress bar off.
The ratio (watch / floor, the median of the rounds' ratios) is what the pipeline's bookkeeping
costs.

    .venv/bin/python benchmarks/pipeline_throughput.py [--scans 300] [--size 512] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from medfn.function import load_function  # noqa: E402
from medfn.pipeline.folder_storage import FolderStorage  # noqa: E402
from medfn.pipeline.folder_watch import FolderWatch  # noqa: E402
from medfn.pipeline.settings import PipelineSettings  # noqa: E402
from medfn.pipeline.sqlite_status import SqliteStatusTable  # noqa: E402
from medfn.pipeline.worker import ScanWorker  # noqa: E402
from medfn.serving.model import Payload  # noqa: E402
from model_store.build import chest_phantoms  # noqa: E402

MEDIA_TYPES = {"dicom": "application/dicom", "png": "image/png"}


def backlog(kind: str, n: int, size: int) -> list[bytes]:
    images, _ = chest_phantoms.generate(n, seed=7, size=size)
    encode = chest_phantoms.to_dicom if kind == "dicom" else chest_phantoms.to_png
    return [encode(image) for image in images]


def floor_rate(model, kind: str, files: list[bytes]) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for data in files:
        model.predict(Payload(data=data, media_type=MEDIA_TYPES[kind]))
    return len(files) / (time.perf_counter() - started)


def watch_rate(function, kind: str, files: list[bytes]) -> float:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "incoming").mkdir()
        for i, data in enumerate(files):
            (root / "incoming" / f"scan-{i:05d}.{'dcm' if kind == 'dicom' else 'png'}").write_bytes(data)
        settings = PipelineSettings()
        storage = FolderStorage(root, settings)
        status = SqliteStatusTable(root / "status.sqlite3")
        worker = ScanWorker(function.plane, function.config.model, storage, status, settings)
        watch = FolderWatch(storage=storage, worker=worker, progress=False)
        started = time.perf_counter()
        summary = watch.run(once=True)
        elapsed = time.perf_counter() - started
        status.close()
    assert summary.results == len(files), summary.as_dict()
    return len(files) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--function", default="scan_classifier")
    parser.add_argument("--scans", type=int, default=300, help="backlog size per kind")
    parser.add_argument("--size", type=int, default=512, help="phantom width and height in pixels")
    parser.add_argument("--rounds", type=int, default=3, help="median over this many rounds")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    function = load_function(REPO / "functions" / args.function)
    model = function.plane.get(function.config.model)
    print(
        f"{args.function}: {args.scans} scans of {args.size}x{args.size} per kind, median of {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs, {model.provider}"
    )
    print(f"{'kind':6} {'floor scans/s':>14} {'watch scans/s':>14} {'watch/floor':>12}")
    rows = []
    for kind in ("dicom", "png"):
        files = backlog(kind, args.scans, args.size)
        floor_rate(model, kind, files[:20])  # warm-up: first-call allocations, pydicom imports
        # Interleaved rounds: on a shared machine a burst of load then hits both loops alike.
        rounds = [(floor_rate(model, kind, files), watch_rate(function, kind, files)) for _ in range(args.rounds)]
        floor, watch = (statistics.median(r[i] for r in rounds) for i in (0, 1))
        ratio = statistics.median(w / f for f, w in rounds)
        print(f"{kind:6} {floor:14.1f} {watch:14.1f} {ratio:12.2f}")
        rows.append({"kind": kind, "floor_scans_s": floor, "watch_scans_s": watch, "ratio": ratio})
    if args.json:
        args.json.write_text(json.dumps({"scans": args.scans, "size": args.size, "rounds": args.rounds, "rows": rows}))


if __name__ == "__main__":
    main()

"""The series pipeline (ct_nodule_volume): slices per second beside a decode + inference floor, and
the peak memory of a 300-slice 512 x 512 series beside the 3 GB goal and the function's memory.

- throughput, ours: a CT phantom series written as DICOM instances to a fresh DIR/incoming and
  answered by `medfn watch DIR --once`'s code: every instance's header read and added to the
  series table, then the series fetched, assembled into a volume, run through the model, and
  written as seg.dcm, sr.dcm and result.json, with its status record;
- throughput, floor: the same instances, already in memory, assembled into the volume (pixel
  decoding, sorting, rescaling to HU: medfn.studies.build_volume) and run through the same model:
  the work no pipeline can skip. Ratio = ours / floor (goal >= 0.9), median of the rounds;
- peak memory: the ours path for a 300-slice 512 x 512 series in a fresh process, ru_maxrss,
  and the Lambda memory setting it implies (the peak and a quarter more, in 64 MB steps).

    .venv/bin/python benchmarks/series_pipeline.py [--slices 120] [--rounds 3] [--memory-slices 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FUNCTION = REPO / "functions" / "ct_nodule_volume"
GOAL_RATIO, GOAL_PEAK_MB = 0.9, 3072


def phantom_files(slices: int, seed: int = 5) -> list[bytes]:
    """A 512 x 512 chest phantom series (0.7 mm pixels, 1 mm slices) with nodules, as DICOM files."""
    from model_store.build import ct_series_phantoms, dicom_series

    truth = ct_series_phantoms.generate(
        seed, 0, rows=512, cols=512, pixel_spacing=(0.7, 0.7), slice_spacing=1.0, slices=slices, nodules=2
    )
    return dicom_series.single_frame_series(truth.hu, dicom_series.SeriesOptions(spacing_mm=truth.spacing_mm))


def ours(files: list[bytes], function: object) -> float:
    """Seconds for the watch's processing of one series dropped into a fresh folder."""
    from medfn.pipeline.local import open_local_pipeline
    from medfn.pipeline.settings import PipelineSettings

    with tempfile.TemporaryDirectory() as folder:
        incoming = Path(folder) / "incoming"
        incoming.mkdir()
        for index, data in enumerate(files):
            (incoming / f"{index:04d}.dcm").write_bytes(data)
        local = open_local_pipeline(Path(folder), function, PipelineSettings(), settle_s=0.0, progress=False, once=True)  # type: ignore[arg-type]
        try:
            started = time.perf_counter()
            summary = local.watch.run(once=True)
            elapsed = time.perf_counter() - started
        finally:
            local.close()
        if summary.results != 1 or summary.transient:
            raise SystemExit(f"the series was not answered: {summary.as_dict()}")
        return elapsed


def floor(files: list[bytes], function: object) -> float:
    from medfn.serving import Payload
    from medfn.studies import build_volume

    model = function.plane.get(function.config.model)  # type: ignore[attr-defined]
    started = time.perf_counter()
    volume = build_volume(files, memory_mb=function.config.memory_mb)  # type: ignore[attr-defined]
    model.predict(Payload(b"", "application/dicom", volume=volume))
    return time.perf_counter() - started


PEAK_CHILD = """
import json, resource, sys
sys.path.insert(0, {repo!r}); sys.path.insert(0, {repo!r} + "/benchmarks")
from series_pipeline import ours, phantom_files
from medfn.function import load_function
files = phantom_files({slices})
function = load_function(__import__("pathlib").Path({function!r}))
seconds = ours(files, function)
print(json.dumps({{"seconds": seconds, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def peak_memory(slices: int) -> dict[str, float]:
    child = PEAK_CHILD.format(repo=str(REPO), slices=slices, function=str(FUNCTION))
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=120, help="slices of the throughput series")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-slices", type=int, default=300, help="slices of the peak-memory series (0: skip)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from medfn.config import FunctionConfig
    from medfn.function import load_function

    function = load_function(FUNCTION)
    files = phantom_files(args.slices)
    floor(files, function)  # warm-up: the first run pays for lazy imports and ORT's first allocations
    rounds = []
    for _ in range(args.rounds):
        ours_s, floor_s = ours(files, function), floor(files, function)
        rounds.append({"ours_s": ours_s, "floor_s": floor_s, "ratio": floor_s / ours_s})
    ratio = statistics.median(r["ratio"] for r in rounds)
    best_ours = min(r["ours_s"] for r in rounds)
    best_floor = min(r["floor_s"] for r in rounds)
    print(f"series of {args.slices} slices, 512 x 512, {args.rounds} rounds")
    print(f"  ours  (watch: arrivals, volume, model, SEG, SR): {args.slices / best_ours:7.1f} slices/s")
    print(f"  floor (volume + model, in memory):               {args.slices / best_floor:7.1f} slices/s")
    print(f"  ours / floor: {ratio:.2f}  (goal >= {GOAL_RATIO})")
    figures: dict[str, object] = {"slices": args.slices, "rounds": rounds, "ratio": ratio}
    if args.memory_slices:
        memory_mb = FunctionConfig.load(FUNCTION).memory_mb
        peak = peak_memory(args.memory_slices)
        peak_mb = peak["peak_kib"] / 1024
        implied = int(-(-peak_mb * 1.25 // 64) * 64)
        print(f"peak memory, {args.memory_slices} x 512 x 512 series through the watch: {peak_mb:.0f} MB")
        print(f"  / goal {GOAL_PEAK_MB} MB: {peak_mb / GOAL_PEAK_MB:.2f}")
        print(f"  / function.toml memory_mb {memory_mb}: {peak_mb / memory_mb:.2f}")
        print(f"  Lambda memory it implies (peak + 25%, 64 MB steps): {implied} MB")
        figures |= {
            "peak_mb": peak_mb,
            "memory_mb": memory_mb,
            "implied_memory_mb": implied,
            "peak_run_s": peak["seconds"],
        }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

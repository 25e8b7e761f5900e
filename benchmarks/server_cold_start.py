"""Cold start of each server: process spawn to the first 200 from its infer route, same model.

`medfn serve`, KServe's model server and BentoML each start on a small model (breast_mass's
ONNX file) and are polled every 10 ms with the OIP v2 JSON body until one answer is a 200.
Rounds alternate the servers so machine noise hits all alike; after one unrecorded round
(page cache, byte-code caches) the median of --runs rounds is printed with medfn / peer ratios.

    .venv/bin/python benchmarks/server_cold_start.py [--runs 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import peers, servers  # noqa: E402
from benchmarks.stats import cache_medfn_bytecode, machine  # noqa: E402


def once(name: str, model: servers.BenchModel, python: Path | None, root: Path) -> float:
    root.mkdir(parents=True)
    launch = servers.launch_spec(name, model, root, servers.free_port(), python)
    log = root / "server.log"
    started = time.perf_counter()
    process = servers.start(launch, log)
    try:
        return servers.wait_first_answer(launch, model.json_body(), process, log, started)
    finally:
        servers.stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from tqdm import tqdm

    cache_medfn_bytecode()  # the peers' wheels brought theirs
    pythons: dict[str, Path | None] = {"medfn": None}
    skipped = {}
    for peer in ("kserve", "bentoml"):
        python, why = peers.ensure(peer)
        if python is None:
            skipped[peer] = why
        else:
            pythons[peer] = python
    model = servers.bench_models(REPO / ".medfn" / "bench")["breast_mass"]
    samples: dict[str, list[float]] = {name: [] for name in pythons}
    with tempfile.TemporaryDirectory(prefix="medfn-cold-") as tmp:
        for round_ in tqdm(range(args.runs + 1), desc="server cold start", file=sys.stderr):
            for name, python in pythons.items():
                seconds = once(name, model, python, Path(tmp) / f"{name}-{round_}")
                if round_:  # round 0 warms caches
                    samples[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"server cold start (spawn to first 200, {model.name}), median of {args.runs}")
    for name, value in medians.items():
        ratio = f"   medfn / {name}: {medians['medfn'] / value:.2f}" if name != "medfn" else ""
        print(f"  {name:8} {value * 1000:8.1f} ms{ratio}")
    for name, why in skipped.items():
        print(f"  skipped {name}: {why}")
    if args.json:
        args.json.write_text(
            json.dumps({"samples_s": samples, "median_s": medians, "skipped": skipped, "machine": machine()})
        )


if __name__ == "__main__":
    main()

"""`medfn bench`: every benchmark in one run, figures printed as ratios against their targets.

The work is in the scripts under benchmarks/ (each runnable alone, each writing JSON); this
command runs them in turn from a checkout and hands their JSON to benchmarks/report.py, which
prints the ratios and writes the markdown and plots. Peers (KServe, BentoML) are installed into
.medfn/peers/ on first use, which takes a few minutes once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HELP = "benchmark medfn against its floors and against KServe and BentoML; results as ratios"

# section -> (script, full-run arguments, --quick arguments); --quick keeps the lot near 3 minutes
SECTIONS: dict[str, tuple[str, list[str], list[str]]] = {
    "cold_start": ("cold_start.py", ["--runs", "10"], ["--runs", "1"]),
    "server_cold_start": ("server_cold_start.py", ["--runs", "10"], ["--runs", "2"]),
    "bundle_cold_start": ("bundle_cold_start.py", ["--runs", "10"], ["--runs", "2"]),
    "overhead": ("overhead.py", ["--calls", "1000"], ["--calls", "200"]),
    "serving": ("serving_compare.py", [], ["--quick"]),
    # the serving path's own ceiling beside a bare loopback floor: the CPU proxy of a GPU server
    "serving_ceiling": ("serving_ceiling.py", ["--workers", "1,2"], ["--quick"]),
    "pipeline": ("pipeline_throughput.py", ["--rounds", "3"], ["--scans", "60", "--size", "256", "--rounds", "1"]),
    "costs": ("function_costs.py", ["--calls", "200"], ["--calls", "50"]),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="fewer runs and requests (about 3 minutes); results in --out only"
    )
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON results folder (default: .medfn/bench/results, or .medfn/bench/quick for --quick)",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        help="where the report goes (default: benchmarks/RESULTS.md for a full run, OUT/RESULTS.md for --quick)",
    )


def run(args: argparse.Namespace) -> int:
    benchmarks = Path("benchmarks")
    if not (benchmarks / "report.py").is_file():
        print("run `medfn bench` from a medfn checkout: it needs the scripts in ./benchmarks/")
        return 2
    args.out = args.out or Path(".medfn") / "bench" / ("quick" if args.quick else "results")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(SECTIONS):
        script, full, quick = SECTIONS[name]
        command = [
            sys.executable,
            str(benchmarks / script),
            *(quick if args.quick else full),
            "--json",
            str(args.out / f"{name}.json"),
        ]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        started, facts = time.monotonic(), run_facts(" ".join(["python", *command[1:]]))
        if subprocess.run(command).returncode == 0:
            record_run(args.out, name, facts)
        else:  # its JSON, if any, is an earlier run's: that run's record stays beside it
            print(f"{name} failed; the other sections still run")
        print(f"== {name}: {time.monotonic() - started:.0f} s\n", flush=True)
    markdown = args.markdown or (args.out / "RESULTS.md" if args.quick else benchmarks / "RESULTS.md")
    report = [sys.executable, str(benchmarks / "report.py"), "--results", str(args.out), "--markdown", str(markdown)]
    return subprocess.run(report).returncode


def run_facts(command: str) -> dict[str, object]:
    """How and when a section is about to run: its command, the commit, the time, and the
    load average just before (whether other work shared the machine; during the run, the run
    itself loads it)."""
    return {
        "command": command,
        "commit": _commit(),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }


def record_run(out: Path, section: str, facts: dict[str, object]) -> None:
    """Keep `facts` for a section that ran in OUT/runs.json. `--only` runs replace their own
    sections' records and keep the rest, so a report mixing runs says which figure came from which."""
    runs_file = out / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.exists() else {}
    runs[section] = facts
    runs_file.write_text(json.dumps(runs, indent=2))


def _commit() -> str:
    """The checkout's commit, marked when files differ from it; "unknown" outside git. The
    report and plots an earlier run left do not count: every run rewrites them."""
    outputs = [f":(exclude){path}" for path in ("benchmarks/RESULTS.md", "benchmarks/bench_*.png")]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *outputs],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with uncommitted changes" if changed.strip() else "")

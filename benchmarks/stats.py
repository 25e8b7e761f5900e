"""Small helpers the benchmark scripts share: percentiles, the machine they ran on, timing a process."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time

# The last line a timed child prints: the moment it had its first answer, on the clock
# (CLOCK_MONOTONIC, one clock for every process on the machine) the parent started from.
ANSWERED = "print('answered_at', __import__('time').monotonic(), flush=True)"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def machine() -> dict[str, object]:
    """CPU model, cores and load average now: printed beside every figure, as the machine is shared."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def cache_medfn_bytecode() -> None:
    """Compile medfn's sources to bytecode, as installing any package does.

    An editable install leaves them uncompiled, and where PYTHONDONTWRITEBYTECODE is set (as on
    the CI machines) no run ever caches them: every sample of a cold start would then pay to
    compile medfn while the peers and the floor, installed from wheels, load cached bytecode.
    """
    import compileall
    from pathlib import Path

    compileall.compile_dir(Path(__file__).resolve().parent.parent / "src" / "medfn", quiet=1)


def spawn_to_answer(command: list[str], **run: object) -> tuple[float, str]:
    """Seconds from spawning `command` to its ANSWERED line, and its stdout.

    Timing to the answer, not to the exit, leaves out the interpreter's teardown (a last
    garbage collection over every object), which no caller waiting for the answer sees.
    """
    started = time.monotonic()
    done = subprocess.run(command, check=True, capture_output=True, text=True, **run)  # type: ignore[call-overload]
    marks = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("answered_at ")]
    if not marks:
        raise RuntimeError(f"{command[:3]} never printed its answered_at line; stderr: {done.stderr[-2000:]}")
    return float(marks[-1]) - started, done.stdout

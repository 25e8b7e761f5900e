"""`medfn bench`'s cheap parts: its help, its timing and CPU helpers, and the cost arithmetic.

The benchmarks themselves are slow and load the machine; they run by hand (`medfn bench`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.servers import cpu_seconds
from benchmarks.stats import ANSWERED, percentile, spawn_to_answer
from medfn.cli import main
from medfn.metering import pricing


def test_bench_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "--help"])
    assert exited.value.code == 0
    assert "--quick" in capsys.readouterr().out


@pytest.mark.parametrize("q", [0, 1, 50, 90, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = list(np.random.default_rng(3).exponential(size=101))
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([5.0], q) == 5.0


def test_spawn_to_answer_stops_the_clock_at_the_answer_not_at_the_exit() -> None:
    started = time.monotonic()
    seconds, out = spawn_to_answer([sys.executable, "-c", f"print('hello'); {ANSWERED}; __import__('time').sleep(1)"])
    assert "hello" in out
    assert 0 < seconds < (time.monotonic() - started) - 0.9  # the second after the answer is not counted


def test_spawn_to_answer_says_when_there_was_no_answer() -> None:
    with pytest.raises(RuntimeError, match="never printed"):
        spawn_to_answer([sys.executable, "-c", "print('no answer')"])


def test_cpu_seconds_counts_the_processes_a_server_starts() -> None:
    # a server that sleeps and a worker it starts that spins ~0.3 s: the worker's CPU is the server's
    spin = "import time; t = time.process_time(); exec('while time.process_time() - t < 0.3: pass')"
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {spin!r}]); time.sleep(3)",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while cpu_seconds(server) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_seconds(server) >= 0.25
    finally:
        server.kill()
        server.wait()


def test_cpu_seconds_keeps_a_worker_that_has_exited_and_been_reaped() -> None:
    spin = "import time; t = time.process_time(); exec('while time.process_time() - t < 0.3: pass')"
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time; subprocess.run([sys.executable, '-c', {spin!r}]); "
            "print('reaped', flush=True); time.sleep(3)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "reaped"
        assert cpu_seconds(server) >= 0.25
    finally:
        server.kill()
        server.wait()


def test_sagemaker_serverless_cost_rounds_memory_up_and_bills_per_ms() -> None:
    # 512 MB runs on the 1 GB size; 1.2 ms bills as 2 ms; 1 GiB of data in and out at $0.016/GB
    one_gib = 1024**3
    cost = pricing.sagemaker_serverless_cost(1.2, 512, bytes_in=one_gib // 2, bytes_out=one_gib // 2)
    assert cost == pytest.approx(0.002 * 1 * 0.00002 + 0.016)
    assert pricing.sagemaker_serverless_cost(100, 3008) == pytest.approx(0.1 * 3 * 0.00002)
    with pytest.raises(ValueError, match="6144"):
        pricing.sagemaker_serverless_cost(1, 10240)


def test_lambda_cost_per_million_at_100_ms_and_1_gb() -> None:
    per_million = pricing.lambda_cost(100, 1024) * 1_000_000
    assert per_million == pytest.approx(0.1 * 0.0000133334 * 1_000_000 + 0.20)


def test_a_rerun_section_replaces_its_own_record_and_the_report_says_which_run_is_which(tmp_path: Path) -> None:
    from benchmarks.report import markdown
    from medfn.commands.bench import record_run, run_facts

    record_run(tmp_path, "cold_start", run_facts("python benchmarks/cold_start.py --runs 10"))
    record_run(tmp_path, "serving", run_facts("python benchmarks/serving_compare.py"))
    record_run(tmp_path, "serving", run_facts("python benchmarks/serving_compare.py --rounds 5"))  # `--only serving`
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert list(runs) == ["cold_start", "serving"]
    assert runs["serving"]["command"] == "python benchmarks/serving_compare.py --rounds 5"
    assert re.fullmatch(r"[0-9a-f]{7,}( with uncommitted changes)?|unknown", runs["cold_start"]["commit"])
    assert len(runs["cold_start"]["load_average_before"]) == 3
    report = markdown({"runs": runs}, [])
    row = next(line for line in report.splitlines() if line.startswith("| serving |"))
    assert runs["serving"]["commit"] in row and "`python benchmarks/serving_compare.py --rounds 5`" in row


def test_a_serving_run_kept_from_another_machine_gets_its_own_targets_computed_from_its_rows() -> None:
    from benchmarks.report import elsewhere

    def row(server: str, encoding: str, concurrency: int, rps: float, p99_ms: float) -> dict:
        return {
            "model": "resnet18",
            "server": server,
            "encoding": encoding,
            "concurrency": concurrency,
            "requests": 300,
            "rps": rps,
            "p50_ms": p99_ms / 2,
            "p99_ms": p99_ms,
        }

    kept = {
        "machine": {"cpu": "Some Xeon", "cores": 16, "load_average": [1.0, 1.0, 1.0], "python": "3.12.3"},
        "command": "python benchmarks/serving_compare.py --models resnet18",
        "rounds": 3,
        "versions": {"bentoml": "1.4.39"},
        "onnxruntime": {"medfn": "1.30.0", "bentoml": "1.30.0"},
        "rows": [
            row("medfn", "json", 8, 150, 90),
            row("medfn", "binary", 8, 250, 60),
            row("medfn", "json", 32, 160, 300),
            row("bentoml", "json", 8, 30, 400),
            row("bentoml", "json", 32, 30, 1500),
        ],
    }
    text = "\n".join(elsewhere([("serving-xeon16.json", kept)]))
    assert "### Some Xeon, 16 cores (serving-xeon16.json)" in text
    assert (
        "onnxruntime: medfn 1.30.0, bentoml 1.30.0" in text
        and "`python benchmarks/serving_compare.py --models resnet18`" in text
    )
    json_row = next(line for line in text.splitlines() if "medfn json / best peer" in line)
    binary_row = next(line for line in text.splitlines() if "medfn binary / best peer" in line)
    p99_row = next(line for line in text.splitlines() if line.startswith("| p99 at concurrency 32"))
    assert "5.00x (150 vs 30)" in json_row and json_row.endswith("| met |")
    assert "8.33x (250 vs 30)" in binary_row and binary_row.endswith("| met |")
    assert "0.20 (300.0 vs 1500.0 ms)" in p99_row
    assert elsewhere([]) == []


def test_a_ratio_that_two_decimals_would_round_onto_its_goal_is_shown_with_three() -> None:
    from benchmarks.report import shown

    assert shown(0.5049, 0.5) == "0.505"
    assert shown(1.9962, 2.0) == "1.996"
    assert shown(0.45, 0.5) == "0.45" and shown(2.0, 2.0) == "2.00"


def test_the_commit_recorded_ignores_the_report_an_earlier_run_left_but_not_other_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medfn.commands.bench import _commit

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True
        )

    (tmp_path / "benchmarks").mkdir()
    for name in ("benchmarks/RESULTS.md", "benchmarks/bench_latency.png", "benchmarks/report.py"):
        (tmp_path / name).write_text("before\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks" / "RESULTS.md").write_text("an earlier run's report\n")
    (tmp_path / "benchmarks" / "bench_latency.png").write_text("its plot\n")
    assert re.fullmatch(r"[0-9a-f]{7,}", _commit())
    (tmp_path / "benchmarks" / "report.py").write_text("changed\n")
    assert _commit().endswith(" with uncommitted changes")


def test_more_decimals_until_the_ratio_no_longer_reads_as_its_goal() -> None:
    from benchmarks.report import shown

    assert shown(0.4996, 0.5) == "0.4996"
    assert shown(0.5, 0.5) == "0.50"

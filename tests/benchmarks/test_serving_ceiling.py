"""`medfn bench --only serving_ceiling`, run tiny: the section serves the near-zero-cost model and
the bare floor, and the report prints their ratio. Rates are printed, never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medfn.commands import bench

TINY = ["--requests", "40", "--concurrency", "4", "--clients", "1", "--rounds", "1", "--bodies", "binary",
        "--lone-requests", "10"]  # fmt: skip


def test_the_bench_section_measures_both_servers_and_prints_their_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(bench.SECTIONS, "serving_ceiling", ("serving_ceiling.py", TINY, TINY))
    parser = __import__("argparse").ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(
        ["--only", "serving_ceiling", "--out", str(tmp_path), "--markdown", str(tmp_path / "R.md")]
    )

    assert bench.run(args) == 0

    result = json.loads((tmp_path / "serving_ceiling.json").read_text())
    servers = {row["server"] for row in result["rows"]}
    assert servers == {"medfn", "floor"}
    [summary] = result["summary"]
    assert summary["served_rps"] > 0 and summary["floor_rps"] > 0
    assert summary["ratio"] == pytest.approx(summary["served_rps"] / summary["floor_rps"])
    assert summary["batch_mean"] >= 1  # the batcher ran every request, in batches it reports
    assert "lone_extra_ms" in summary
    out = capfd.readouterr().out
    assert "serving path ceiling" in out and f"{summary['ratio']:.2f} (" in out
    assert "serving path ceiling" in (tmp_path / "R.md").read_text()

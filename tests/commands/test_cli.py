"""The CLI as a user runs it: `medfn serve` on loopback, `medfn predict` in process and over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from model_store.build import chest_phantoms
from tests.conftest import REPO, free_port, wait_until_ready


def medfn(*args: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "medfn.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=120, **kwargs
    )


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    images, labels = chest_phantoms.generate(2, seed=31)
    path = tmp_path_factory.mktemp("scans") / "scan.dcm"
    path.write_bytes(chest_phantoms.to_dicom(images[1]))
    return path, chest_phantoms.LABELS[labels[1]]


def test_predict_in_process(scan: tuple[Path, str]) -> None:
    result = medfn("predict", "scan_classifier", str(scan[0]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] == scan[1]


def test_predict_reports_refusals_with_a_failing_exit(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    result = medfn("predict", "scan_classifier", str(junk))
    assert result.returncode == 1 and "error" in json.loads(result.stdout)


def test_serve_then_predict_over_http(scan: tuple[Path, str], tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "medfn.cli", "serve", "--port", str(port), "--only", "scan_classifier"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url)
        assert httpx.get(url + "/v1/models").json()["models"][0]["name"] == "scan_classifier"
        result = medfn("predict", "scan_classifier", str(scan[0]), "--url", url)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["label"] == scan[1]
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_help_lists_the_commands() -> None:
    result = medfn("--help")
    assert result.returncode == 0 and "serve" in result.stdout and "predict" in result.stdout


def test_serve_with_several_workers_answers_and_refuses_shared_quotas(tmp_path: Path) -> None:
    refused = medfn("serve", "--workers", "2", "--api-keys", str(tmp_path / "keys.toml"))
    assert refused.returncode != 0 and "single worker" in refused.stderr
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "medfn.cli",
            "serve",
            "--port",
            str(port),
            "--only",
            "breast_mass",
            "--workers",
            "2",
            "--usage-store",
            str(tmp_path / "usage.sqlite3"),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}")
        answers = {httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["models"][0]["name"] for _ in range(6)}
        assert answers == {"breast_mass"}
    finally:
        server.terminate()
        server.wait(timeout=20)


def assert_one_line(result: subprocess.CompletedProcess, command: str, *words: str) -> None:  # type: ignore[type-arg]
    """A user's mistake: exit status 2 and one line on stderr that says what is wrong."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"medfn {command}: ")
    assert all(word in result.stderr for word in words), result.stderr


def test_user_mistakes_are_one_line_and_exit_2(scan: tuple[Path, str], tmp_path: Path) -> None:
    assert_one_line(medfn("predict", "scan_classifier", str(tmp_path / "missing.dcm")), "predict", "no such file")
    assert_one_line(medfn("predict", "nope", str(scan[0])), "predict", "'nope'", "breast_mass", "scan_classifier")
    closed = f"http://127.0.0.1:{free_port()}"
    assert_one_line(medfn("predict", "scan_classifier", str(scan[0]), "--url", closed), "predict", "cannot reach")
    elsewhere = subprocess.run(
        [sys.executable, "-m", "medfn.cli", "predict", "scan_classifier", str(scan[0])],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert_one_line(elsewhere, "predict", "--functions")
    assert_one_line(
        medfn("watch", str(tmp_path / "scans"), "--function", "notes_classifier"),
        "watch",
        "notes_classifier does not take uploads; these do: ct_nodule_volume, scan_classifier, scan_segmenter",
    )
    assert_one_line(medfn("synth", env={"PATH": str(tmp_path)}), "synth", "Node.js")


def test_predict_in_process_prints_the_answer_and_no_warnings(scan: tuple[Path, str]) -> None:
    result = medfn("predict", "scan_classifier", str(scan[0]))
    assert result.returncode == 0 and result.stderr == ""
    answer = json.loads(result.stdout)
    assert answer["model"] == "scan_classifier" and answer["model_version"] == "1" and answer["request_id"]


def test_every_option_has_help_and_shows_its_default() -> None:
    import argparse
    import importlib

    from medfn.cli import COMMANDS

    for name in COMMANDS:
        parser = argparse.ArgumentParser()
        importlib.import_module(f"medfn.commands.{name}").add_arguments(parser)
        assert all(action.help for action in parser._actions), name
    assert "(default: 8080)" in medfn("serve", "--help").stdout

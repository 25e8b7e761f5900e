"""`medfn package`: the zip runs under a bare Python 3.12 and fits Lambda's limits.

Builds reuse the wheel cache in .medfn/wheels (downloaded once), so this costs about half
a minute. The function here serves the test's affine model (a tiny ONNX graph) with the
same runtime dependencies every CPU function bundles; the model is not in the zip:
MEDFN_MODEL_STORE points at a model store folder, as the model bucket does in AWS.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from medfn.config import FunctionConfig
from medfn.packaging import UNZIPPED_LIMIT, ZIP_LIMIT, build_package
from tests.conftest import load_event


def python312() -> str | None:
    """A real interpreter: pyenv's build first (its shim on PATH needs a pyenv version set)."""
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    builds = sorted(glob.glob(f"{pyenv}/versions/3.12*/bin/python3.12"))
    found = shutil.which("python3.12")
    return builds[-1] if builds else found if found and "shims" not in found else None


PYTHON312 = python312()
pytestmark = pytest.mark.skipif(PYTHON312 is None, reason="no python3.12 interpreter (Lambda's runtime) on this machine")

# Runs inside the unpacked zip with `-I -S`: no site-packages, no user site, no PYTHONPATH.
CLEAN_RUN = """
import json, sys
sys.path[:0] = [sys.argv[1]]
import handler
assert not [p for p in sys.path if "site-packages" in p], sys.path
events = json.loads(sys.stdin.read())
answers = [handler.handler(event, None) for event in events]
import PIL.Image  # the imaging stack loads from the zip too
print(json.dumps(answers))
"""


def function_folder(root: Path, uploads: bool) -> FunctionConfig:
    folder = root / "functions" / "affine_fn"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "function.toml").write_text(f'model = "affine"\n[triggers]\nuploads = {str(uploads).lower()}\n')
    (folder / "handler.py").write_text("from medfn.lambda_handler import make_handler\n\nhandler = make_handler(__file__)\n")
    return FunctionConfig.load(folder)


@pytest.fixture(scope="module")
def x86_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pkg")
    package = build_package(function_folder(root, uploads=False), "x86_64", dist=root / "dist")
    assert package.path.name == "affine_fn-x86_64.zip"
    return package.path


def test_x86_64_zip_answers_api_gateway_and_s3_events_under_bare_python312(x86_zip: Path, affine_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    unpacked = tmp_path / "task"
    with zipfile.ZipFile(x86_zip) as archive:
        archive.extractall(unpacked)
    assert not list(unpacked.rglob("*.pyc")) and not (unpacked / "boto3").exists()
    infer = load_event("apigw_rest")
    infer.update(path="/v2/models/affine/infer", httpMethod="POST", body=json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}))  # fmt: skip
    infer["headers"]["content-type"] = "application/json"
    s3_event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                             "s3": {"bucket": {"name": "uploads"}, "object": {"key": "affine_fn/scan.dcm", "size": 4}}}]}  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "MEDFN_MODEL_STORE": str(affine_store.root), "HOME": str(tmp_path)}
    done = subprocess.run(
        [PYTHON312, "-I", "-S", "-c", CLEAN_RUN, str(unpacked)],
        input=json.dumps([infer, s3_event]), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    http_answer, s3_answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert http_answer["statusCode"] == 200, http_answer
    assert json.loads(http_answer["body"])["outputs"][0]["data"] == [4.0, 7.0, 10.0, 13.0]  # version 2: y = 3x + 1
    assert s3_answer == {"ignored": True}  # a function without `uploads = true` takes no scans


def test_arm64_image_function_zip_fits_lambda_limits(tmp_path: Path) -> None:
    package = build_package(function_folder(tmp_path, uploads=True), "arm64", dist=tmp_path / "dist")
    print(package.summary())
    assert package.zipped_bytes <= ZIP_LIMIT and package.unzipped_bytes <= UNZIPPED_LIMIT, package.summary()
    with zipfile.ZipFile(package.path) as archive:
        names = archive.namelist()
    assert "handler.py" in names and "function.toml" in names and "medfn/lambda_handler.py" in names
    assert any(n.startswith("pydicom/") for n in names)  # uploads take DICOM
    assert any(n.startswith("aws_lambda_powertools/") for n in names)  # the pipeline's batch handling
    assert any(n.startswith("onnxruntime/capi/") and "aarch64" in n for n in names)
    for never in ("boto3/", "pytest/", "torch/", "aws_cdk/", "uvicorn/", "onnxruntime/tools/", "numpy/_core/tests/"):
        assert not any(n.startswith(never) for n in names), never

"""`medfn package`: the zip runs under a bare Python 3.12 and fits Lambda's limits.

Builds reuse the wheel cache in .medfn/wheels (downloaded once), so this costs about half
a minute. The x86_64 zip is the real scan_classifier function; the model is not in the zip:
MEDFN_MODEL_STORE points at the repository's model store, as the model bucket does in AWS.
boto3 is not in the zip either: Lambda's runtime provides it, and so does the test, from a
folder of its own beside the zip, pointed at the moto server.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from medfn.config import FunctionConfig
from medfn.packaging import UNZIPPED_LIMIT, build_package, find_python312
from tests.conftest import REPO, create_status_table, load_event

PYTHON312 = find_python312()
pytestmark = pytest.mark.skipif(
    PYTHON312 is None, reason="no python3.12 interpreter (Lambda's runtime) on this machine"
)

# Runs inside the unpacked zip with `-I -S`: no site-packages, no user site, no PYTHONPATH;
# argv[2] stands in for the runtime's own boto3 (/var/runtime in Lambda).
CLEAN_RUN = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
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
    (folder / "handler.py").write_text(
        "from medfn.lambda_handler import make_handler\n\nhandler = make_handler(__file__)\n"
    )
    return FunctionConfig.load(folder)


@pytest.fixture(scope="module")
def x86_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    package = build_package(FunctionConfig.load(REPO / "functions" / "scan_classifier"), "x86_64",
                            dist=tmp_path_factory.mktemp("pkg") / "dist")  # fmt: skip
    assert package.path.name == "scan_classifier-x86_64.zip"
    return package.path


def runtime_boto3(target: Path) -> Path:
    """boto3 and what it needs (pure Python), as the python3.12 runtime ships them."""
    import boto3

    site = Path(boto3.__file__).parent.parent
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py"):
        source = site / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target / name)
    return target


def assert_lambda_ready_bytecode(unpacked: Path) -> None:
    """Every module has python3.12 bytecode that imports without looking at its source."""
    magic = subprocess.run(
        [PYTHON312, "-c", "import importlib.util, sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sources = [p for p in unpacked.rglob("*.py") if p.parent.name != "__pycache__"]
    assert len(sources) > 100
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc"
        assert pyc.is_file(), f"no bytecode for {source.relative_to(unpacked)}"
        header = pyc.read_bytes()[:8]
        # PEP 552: bit 0 of the flags set = hash-based, bit 1 clear = the source is never checked
        assert header[:4].hex() == magic and int.from_bytes(header[4:8], "little") == 0b01, pyc


def test_x86_64_zip_answers_api_gateway_and_s3_events_under_bare_python312(
    x86_zip: Path, aws_env: str, tmp_path: Path
) -> None:
    import boto3

    from model_store.build import chest_phantoms

    unpacked, runtime = tmp_path / "task", runtime_boto3(tmp_path / "runtime")
    with zipfile.ZipFile(x86_zip) as archive:
        archive.extractall(unpacked)
    assert not (unpacked / "boto3").exists()
    assert_lambda_ready_bytecode(unpacked)
    images, labels = chest_phantoms.generate(2, seed=12)
    s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
    s3.create_bucket(Bucket="uploads")
    s3.put_object(Bucket="uploads", Key="scan_classifier/chest 1.dcm", Body=chest_phantoms.to_dicom(images[1]))
    create_status_table(dynamodb, "status")
    head = s3.head_object(Bucket="uploads", Key="scan_classifier/chest 1.dcm")
    s3_event = load_event("s3_object_created")
    record = s3_event["Records"][0]["s3"]
    record["bucket"]["name"] = "uploads"
    record["object"].update(key="scan_classifier/chest+1.dcm", eTag=head["ETag"].strip('"'), size=head["ContentLength"])
    record["object"].pop("versionId", None)
    predict = load_event("apigw_rest")
    predict.update(path="/v1/models/scan_classifier/predict", httpMethod="POST", isBase64Encoded=True,
                   body=base64.b64encode(chest_phantoms.to_png(images[1])).decode())  # fmt: skip
    predict["headers"]["content-type"] = "image/png"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MEDFN_MODEL_STORE": str(REPO / "model_store"),
           "MEDFN_STATUS_TABLE": "status"} | {k: v for k, v in os.environ.items() if k.startswith("AWS_")}  # fmt: skip
    done = subprocess.run(
        [PYTHON312, "-I", "-S", "-c", CLEAN_RUN, str(unpacked), str(runtime)],
        input=json.dumps([predict, s3_event]), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    http_answer, s3_answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert http_answer["statusCode"] == 200, http_answer
    expected = chest_phantoms.LABELS[labels[1]]
    assert json.loads(http_answer["body"])["top_label"] == expected
    assert s3_answer == {"results": 1, "errors": 0, "duplicates": 0, "ignored": 0, "retrying": 0}
    result = json.loads(s3.get_object(Bucket="uploads", Key="results/scan_classifier/chest 1.dcm.json")["Body"].read())
    assert result["prediction"]["top_label"] == expected and result["source"]["key"] == "scan_classifier/chest 1.dcm"


def test_arm64_image_function_zip_fits_lambda_limits(tmp_path: Path) -> None:
    package = build_package(function_folder(tmp_path, uploads=True), "arm64", dist=tmp_path / "dist")
    print(package.summary())
    # Over 50 MiB zipped is allowed: CDK deploys the zip through S3, where only the unzipped limit holds.
    assert package.unzipped_bytes <= UNZIPPED_LIMIT and package.bytecode, package.summary()
    with zipfile.ZipFile(package.path) as archive:
        names = archive.namelist()
    assert "handler.py" in names and "function.toml" in names and "medfn/lambda_handler.py" in names
    assert any(n.startswith("pydicom/") for n in names)  # uploads take DICOM
    assert any(n.startswith("aws_lambda_powertools/") for n in names)  # the pipeline's batch handling
    assert any(n.startswith("onnxruntime/capi/") and "aarch64" in n for n in names)
    for never in ("boto3/", "pytest/", "torch/", "aws_cdk/", "uvicorn/", "onnxruntime/tools/", "numpy/_core/tests/"):
        assert not any(n.startswith(never) for n in names), never

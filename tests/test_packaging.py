"""`medfn package`: the zip runs under a bare Python 3.12 and fits Lambda's limits.

Builds reuse the wheel cache in .medfn/wheels (downloaded once) and each requirement set's
dependency zip in .medfn/package/dependencies: from scratch this module costs about 40 s (three
dependency zips, then about a second per function), with both caches warm about 10 s. The
x86_64 zip is the real scan_classifier function, run here because this machine can run it;
every CPU function's arm64 zip (what deploys) is built and checked against the limits. The
model is not in the zip: MEDFN_MODEL_STORE points at the repository's model store, as the model
bucket does in AWS. boto3 is not in the zip either: Lambda's runtime provides it, and so does
the test, from a folder of its own beside the zip, pointed at the moto server.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medfn.config import FunctionConfig, discover_functions
from medfn.packaging import UNZIPPED_LIMIT, ZIP_LIMIT, Package, build_package, elf_needed, find_python312
from tests.conftest import REPO, create_status_table, load_event

PYTHON312 = find_python312()
pytestmark = pytest.mark.skipif(
    PYTHON312 is None, reason="no python3.12 interpreter (Lambda's runtime) on this machine"
)

# Runs inside the unpacked zip with `-I -S`: no site-packages, no user site, no PYTHONPATH;
# argv[2] stands in for the runtime's own boto3 (/var/runtime in Lambda); argv[3:] are images
# the pruned imaging stack (Pillow, pydicom and their libraries) must still decode, as here.
CLEAN_RUN = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import handler
assert not [p for p in sys.path if "site-packages" in p], sys.path
events = json.loads(sys.stdin.read())
answers = [handler.handler(event, None) for event in events]
import PIL.Image  # the imaging stack loads from the zip too
assert PIL.Image.__file__.startswith(sys.argv[1]), PIL.Image.__file__
print(json.dumps([answers, {name: pixel_summary(name) for name in sys.argv[3:]}]))
"""
# Shape and mean of an image's pixels, through the libraries that medfn.codecs calls (here and in the zip).
PIXEL_SUMMARY = """
def pixel_summary(name):
    import numpy as np
    if name.endswith(".dcm"):
        import pydicom
        pixels = pydicom.dcmread(name).pixel_array
    else:
        import PIL.Image
        pixels = np.asarray(PIL.Image.open(name))
    return [list(pixels.shape), float(pixels.mean())]
"""
# What a Lambda python3.12 runtime (Amazon Linux 2023) provides to extension modules: glibc's
# libraries, the C++ runtime and zlib, all in manylinux's policy. Anything else must be in the zip.
SYSTEM_LIBRARIES = {
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libstdc++.so.6",
    "libgcc_s.so.1", "libz.so.1", "ld-linux-aarch64.so.1", "ld-linux-x86-64.so.2",
}  # fmt: skip
CPU_ZIP_FUNCTIONS = [
    config.name
    for config in discover_functions(REPO / "functions")
    if config.runtime == "zip" and config.accelerator == "cpu"
]


@pytest.fixture(scope="session")
def arm64_zip(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Package]:
    """Each function's arm64 zip (what deploys), built once per session, when first asked for."""
    dist = tmp_path_factory.mktemp("arm64") / "dist"
    built: dict[str, Package] = {}

    def build(name: str) -> Package:
        if name not in built:
            built[name] = build_package(FunctionConfig.load(REPO / "functions" / name), "arm64", dist=dist)
        return built[name]

    return build


def sample_images(folder: Path) -> list[Path]:
    """A JPEG and a 16-bit PNG, and DICOM: RLE, JPEG 2000 and JPEG baseline (decoded by Pillow)."""
    import numpy as np
    from PIL import Image
    from pydicom.data import get_testdata_file

    ramp = np.add.outer(np.arange(48), np.arange(64)).astype(np.uint16)
    Image.fromarray((ramp * 2).astype(np.uint8)).save(folder / "ramp.jpg", quality=90)
    Image.fromarray(ramp * 500).save(folder / "ramp16.png")
    dicoms = ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_dcmtk.dcm"]
    return [folder / "ramp.jpg", folder / "ramp16.png", *(Path(str(get_testdata_file(name))) for name in dicoms)]


@pytest.fixture(scope="module")
def x86_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    package = build_package(FunctionConfig.load(REPO / "functions" / "scan_classifier"), "x86_64",
                            dist=tmp_path_factory.mktemp("pkg") / "dist")  # fmt: skip
    assert package.path.name == "scan_classifier-x86_64.zip"
    return package.path


@pytest.fixture(scope="module")
def x86_unpacked(x86_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    unpacked = tmp_path_factory.mktemp("x86_task")
    with zipfile.ZipFile(x86_zip) as archive:
        archive.extractall(unpacked)
    return unpacked


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
    images = sample_images(tmp_path)
    done = subprocess.run(
        [PYTHON312, "-I", "-S", "-c", PIXEL_SUMMARY + CLEAN_RUN, str(unpacked), str(runtime), *map(str, images)],
        input=json.dumps([predict, s3_event]), capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (http_answer, s3_answer), decoded = json.loads(done.stdout.strip().splitlines()[-1])
    here: dict[str, Any] = {}
    exec(PIXEL_SUMMARY, here)
    for image in images:  # the pixels this venv's unpruned Pillow and pydicom give (maybe other releases)
        shape, mean = here["pixel_summary"](str(image))
        assert decoded[str(image)] == [shape, pytest.approx(mean, rel=0.01)], image.name
    assert http_answer["statusCode"] == 200, http_answer
    expected = chest_phantoms.LABELS[labels[1]]
    assert json.loads(http_answer["body"])["label"] == expected
    assert s3_answer == {"results": 1, "errors": 0, "duplicates": 0, "ignored": 0, "retrying": 0}
    result = json.loads(s3.get_object(Bucket="uploads", Key="results/scan_classifier/chest 1.dcm.json")["Body"].read())
    assert result["prediction"]["label"] == expected and result["source"]["key"] == "scan_classifier/chest 1.dcm"


@pytest.mark.parametrize("function", CPU_ZIP_FUNCTIONS)
def test_every_cpu_function_arm64_zip_is_under_the_direct_upload_limit(
    function: str, arm64_zip: Callable[[str], Package]
) -> None:
    package = arm64_zip(function)
    print(package.summary())
    assert package.zipped_bytes <= ZIP_LIMIT, package.summary()
    assert package.unzipped_bytes <= UNZIPPED_LIMIT and package.bytecode, package.summary()


def test_arm64_zips_hold_what_their_function_imports_and_no_more(arm64_zip: Callable[[str], Package]) -> None:
    with zipfile.ZipFile(arm64_zip("scan_classifier").path) as archive:
        names = archive.namelist()
    assert "handler.py" in names and "function.toml" in names and "medfn/lambda_handler.py" in names
    assert any(n.startswith("pydicom/") for n in names)  # scans may be DICOM
    assert "pydicom/data/test_files/CT_small.dcm" in names  # `import pydicom` looks its examples up
    assert any(n.startswith("aws_lambda_powertools/") for n in names)  # the pipeline's batch handling
    # results out to a PACS by STOW-RS (the `pacs` extra): dicomweb-client and requests, not pynetdicom
    assert any(n.startswith("dicomweb_client/") for n in names) and any(n.startswith("requests/") for n in names)
    assert any(n.startswith("onnxruntime/capi/") and "aarch64" in n for n in names)
    never = ("boto3/", "pytest/", "torch/", "aws_cdk/", "uvicorn/", "onnxruntime/tools/", "numpy/_core/tests/",
             "onnxruntime/capi/libonnxruntime.so", "pydicom/data/test_files/MR_small_RLE.dcm",
             "pillow.libs/libavif", "google/", "fastapi_offline/", "pynetdicom/")  # fmt: skip
    # its DICOM scans' results are SRs: highdicom, with what it imports (pydicom's SR codes, packaging)
    assert all(any(n.startswith(p) for n in names) for p in ("highdicom/", "pydicom/sr/", "packaging/"))
    for prefix in never:
        assert not any(n.startswith(prefix) for n in names), prefix
    assert not [n for n in names if n.endswith((".pyi", ".c", ".h", ".cpp"))]
    with zipfile.ZipFile(arm64_zip("notes_classifier").path) as archive:
        assert not any(
            n.startswith(("pydicom/", "aws_lambda_powertools/", "dicomweb_client/")) for n in archive.namelist()
        )


@pytest.mark.parametrize(
    "module",
    [
        "dicomweb_client",  # medfn.dicomweb.destination: results out by STOW-RS
        "highdicom",  # medfn.studies.dicom_sr: the results themselves (SR, SEG)
    ],
)
def test_an_upload_zip_imports_what_its_dicom_results_need(x86_unpacked: Path, module: str) -> None:
    """Under bare python3.12, from the zip alone (x86_64: what this machine runs)."""
    code = (
        f"import sys; sys.path[:0] = [sys.argv[1]]; import {module}; assert {module}.__file__.startswith(sys.argv[1])"
    )
    done = subprocess.run(
        [PYTHON312, "-I", "-S", "-c", code, str(x86_unpacked)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("function", ["scan_classifier", "notes_classifier"])  # the two dependency sets
def test_every_library_an_arm64_extension_links_to_is_in_the_zip(
    function: str, arm64_zip: Callable[[str], Package], tmp_path: Path
) -> None:
    with zipfile.ZipFile(arm64_zip(function).path) as archive:
        objects = [n for n in archive.namelist() if ".so" in Path(n).name]
        archive.extractall(tmp_path, members=objects)
    present = {Path(n).name for n in objects}
    missing = {
        f"{name} needs {library}"
        for name in objects
        for library in elf_needed(tmp_path / name) or ()
        if library not in present | SYSTEM_LIBRARIES
    }
    assert len(objects) > 20 and not missing, sorted(missing)

"""The model store: local and S3 backends, sha256 verification, version policy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest

from medfn.config import VersionPolicy
from medfn.function import load_models
from medfn.serving.plane import InferencePlane
from medfn.serving.store import LocalStore, S3Store, open_store
from tests.onnx_builders import affine_model, write_model_folder


def test_verified_model_is_ready_and_serves_each_version(affine_plane: InferencePlane) -> None:
    import numpy as np

    x = np.ones((1, 4), dtype=np.float32)
    assert affine_plane.get("affine", 1).run({"x": x})["y"].tolist() == [[3.0] * 4]
    assert affine_plane.get("affine", 2).run({"x": x})["y"].tolist() == [[4.0] * 4]
    assert affine_plane.get("affine").version == 2  # unversioned: the latest


def test_sha256_mismatch_leaves_the_model_not_ready_with_the_reason(affine_plane: InferencePlane) -> None:
    model = affine_plane.get("tampered")
    assert not model.ready
    assert "sha256" in model.reason and "model.onnx" in model.reason
    assert model.session is None  # never made a session from unverified bytes


def test_missing_artifact_leaves_the_model_not_ready(affine_plane: InferencePlane) -> None:
    model = affine_plane.get("hollow")
    assert not model.ready
    assert "missing" in model.reason


@pytest.mark.parametrize(
    ("policy", "available", "served"),
    [
        (VersionPolicy(), [1, 2, 3], [3]),
        (VersionPolicy(latest_n=2), [3, 1, 2], [2, 3]),
        (VersionPolicy(policy="all"), [2, 1], [1, 2]),
        (VersionPolicy(policy="specific", versions=(1, 3)), [1, 2, 3], [1, 3]),
    ],
)
def test_version_policy_selects_as_triton_does(policy: VersionPolicy, available: list[int], served: list[int]) -> None:
    assert policy.select(available) == served


def test_open_store_picks_the_backend_from_the_uri(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path), LocalStore)
    assert isinstance(open_store("s3://bucket/prefix", cache_dir=tmp_path), S3Store)


def _upload_tree(root: Path, bucket: str, prefix: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    for path in root.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")


def test_s3_store_downloads_once_verifies_and_serves(aws_env: str, tmp_path: Path) -> None:
    local = tmp_path / "src"
    write_model_folder(local, "affine", {1: affine_model(2.0), 2: affine_model(5.0)})
    write_model_folder(local, "tampered", {1: affine_model()}, sha_override={1: hashlib.sha256(b"x").hexdigest()})
    _upload_tree(local, "models", "store/v1")

    cache = tmp_path / "cache"
    store = open_store("s3://models/store/v1", cache_dir=cache)
    plane = InferencePlane()
    plane.add("affine", load_models(store, "affine"))
    plane.add("tampered", load_models(store, "tampered"))

    assert store.versions("affine") == [1, 2]
    model = plane.get("affine")
    assert model.ready and model.version == 2
    cached = cache / "affine" / "2" / "model.onnx"
    assert cached.is_file()
    assert not plane.get("tampered").ready and "sha256" in plane.get("tampered").reason

    # A second load in the same process reads the cache: nothing is fetched again.
    boto3.client("s3").delete_object(Bucket="models", Key="store/v1/affine/2/model.onnx")
    again = InferencePlane()
    again.add("affine", load_models(store, "affine"))
    assert again.get("affine").ready


def test_s3_store_missing_artifact_is_not_ready(aws_env: str, tmp_path: Path) -> None:
    local = tmp_path / "src"
    folder = write_model_folder(local, "affine", {1: affine_model()})
    (folder / "1" / "model.onnx").unlink()
    (folder / "1" / "placeholder.txt").write_text("keeps the version folder in S3")
    _upload_tree(local, "models-missing", "p")
    plane = InferencePlane()
    plane.add("affine", load_models(open_store("s3://models-missing/p", cache_dir=tmp_path / "cache"), "affine"))
    assert not plane.get("affine").ready
    assert "missing" in plane.get("affine").reason

"""Model stores: where `model.toml` and versioned artifacts come from.

Two backends share one layout (`<model>/model.toml`, `<model>/<version>/<artifact>`):
a local directory (the embedded default) and S3 (`s3://bucket/prefix`), whose files are
downloaded once per process into a cache directory. Either way, `verified_artifacts` checks
every artifact's sha256 against `model.toml` before anyone makes a session from it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

from medfn.config import ModelConfig
from medfn.errors import ArtifactError


class ModelStore(Protocol):
    def read_config(self, model: str) -> ModelConfig: ...

    def versions(self, model: str) -> list[int]: ...

    def fetch(self, model: str, version: int, artifact: str) -> Path:
        """A local path to the artifact; raises ArtifactError if the store lacks it."""
        ...


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def read_config(self, model: str) -> ModelConfig:
        return ModelConfig.from_bytes((self.root / model / "model.toml").read_bytes())

    def versions(self, model: str) -> list[int]:
        return sorted(int(p.name) for p in (self.root / model).iterdir() if p.is_dir() and p.name.isdigit())

    def fetch(self, model: str, version: int, artifact: str) -> Path:
        path = self.root / model / str(version) / artifact
        if not path.is_file():
            raise ArtifactError(f"artifact {artifact} of version {version} is missing")
        return path


class S3Store:
    """The same layout under `s3://bucket/prefix`, cached on local disk once per process."""

    def __init__(self, uri: str, cache_dir: Path, client: object | None = None) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.cache_dir = cache_dir
        self._client = client

    def __repr__(self) -> str:
        return f"S3Store('s3://{self.bucket}/{self.prefix}')"

    @property
    def client(self):  # type: ignore[no-untyped-def]
        # boto3 costs ~200 ms to import: only the S3 backend pays it, and only when used.
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def reconnect(self) -> None:
        """Drop the client so the next call makes a new one (after a SnapStart restore)."""
        self._client = None

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def read_config(self, model: str) -> ModelConfig:
        body = self.client.get_object(Bucket=self.bucket, Key=self._key(model, "model.toml"))["Body"]
        return ModelConfig.from_bytes(body.read())

    def versions(self, model: str) -> list[int]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(model) + "/", Delimiter="/"
        )
        names = [cp["Prefix"].rstrip("/").rsplit("/", 1)[-1] for page in pages for cp in page.get("CommonPrefixes", [])]
        return sorted(int(n) for n in names if n.isdigit())

    def fetch(self, model: str, version: int, artifact: str) -> Path:
        from botocore.exceptions import ClientError

        target = self.cache_dir / model / str(version) / artifact
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + f".{os.getpid()}.part")
        try:
            self.client.download_file(self.bucket, self._key(model, str(version), artifact), str(partial))
        except ClientError as exc:
            raise ArtifactError(f"artifact {artifact} of version {version} is missing") from exc
        partial.replace(target)  # atomic: a concurrent reader never sees half a file
        return target


def open_store(location: str | Path, cache_dir: Path | None = None) -> ModelStore:
    """`s3://bucket/prefix` -> S3Store, anything else -> LocalStore."""
    text = str(location)
    if text.startswith("s3://"):
        cache = cache_dir or Path(os.environ.get("MEDFN_CACHE_DIR", "/tmp/medfn-models"))
        return S3Store(text, cache)
    return LocalStore(Path(text))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified_artifacts(store: ModelStore, config: ModelConfig, version: int) -> dict[str, Path]:
    """Fetch every artifact of `version` and check its sha256; raise ArtifactError otherwise."""
    expected = config.sha256.get(version)
    if not expected:
        raise ArtifactError(f"model.toml lists no sha256 for version {version}")
    paths: dict[str, Path] = {}
    for artifact, want in expected.items():
        path = store.fetch(config.name, version, artifact)
        got = sha256_of(path)
        if got != want.lower():
            raise ArtifactError(
                f"artifact {artifact} of version {version} fails its sha256 check "
                f"(expected {want[:12]}…, found {got[:12]}…)"
            )
        paths[artifact] = path
    return paths

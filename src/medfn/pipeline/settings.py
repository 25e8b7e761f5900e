"""Where the pipeline writes, read once from the environment (documented in docs/pipeline.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

QUARANTINE_MODES = ("move", "tag")
RESULT_FORMATS = ("json", "fhir")


@dataclass(frozen=True)
class PipelineSettings:
    results_bucket: str = ""  # empty: the bucket the scan was uploaded to
    results_prefix: str = "results/"
    quarantine_prefix: str = "quarantine/"
    quarantine_mode: str = "move"  # "move": copy under the prefix, then delete; "tag": tag in place
    status_table: str = ""  # the DynamoDB table of status records
    max_attempts: int = 3  # transient failures tolerated before the error record (= SQS maxReceiveCount)
    formats: tuple[str, ...] = ("json",)  # add "fhir" for a DiagnosticReport beside the JSON
    max_object_bytes: int = 512 * 1024 * 1024  # larger uploads are refused unread, not loaded into memory

    def __post_init__(self) -> None:
        if self.quarantine_mode not in QUARANTINE_MODES:
            raise ValueError(f"MEDFN_QUARANTINE_MODE must be one of {QUARANTINE_MODES}")
        unknown = sorted(set(self.formats) - set(RESULT_FORMATS))
        if unknown:
            raise ValueError(f"MEDFN_RESULT_FORMATS has unknown formats {unknown}; known: {RESULT_FORMATS}")
        if self.max_attempts < 1:
            raise ValueError("MEDFN_MAX_ATTEMPTS must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PipelineSettings:
        env = os.environ if environ is None else environ
        formats = tuple(f.strip() for f in env.get("MEDFN_RESULT_FORMATS", "json").split(",") if f.strip())
        return cls(
            results_bucket=env.get("MEDFN_RESULTS_BUCKET", ""),
            results_prefix=_as_prefix(env.get("MEDFN_RESULTS_PREFIX", "results/")),
            quarantine_prefix=_as_prefix(env.get("MEDFN_QUARANTINE_PREFIX", "quarantine/")),
            quarantine_mode=env.get("MEDFN_QUARANTINE_MODE", "move"),
            status_table=env.get("MEDFN_STATUS_TABLE", ""),
            max_attempts=int(env.get("MEDFN_MAX_ATTEMPTS", "3")),
            formats=formats or ("json",),
            max_object_bytes=int(env.get("MEDFN_MAX_OBJECT_BYTES", str(512 * 1024 * 1024))),
        )

    def is_own_output(self, bucket: str, key: str) -> bool:
        """Keys we wrote ourselves: their events must not feed back into the pipeline."""
        if self.results_bucket and bucket == self.results_bucket:
            return True
        return any(prefix and key.startswith(prefix) for prefix in (self.results_prefix, self.quarantine_prefix))


def _as_prefix(value: str) -> str:
    value = value.strip().lstrip("/")
    return value if not value or value.endswith("/") else value + "/"

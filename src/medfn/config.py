"""Typed views of `model.toml` and `function.toml`, the single source of truth.

The runtime, the local gateway, the packager and the CDK app all read these two files
through this module, so a field means the same thing everywhere.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

# Open Inference Protocol datatype names -> numpy dtype names.
DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}


# What model.toml may hold at its top, and in a [versions.<v>] table.
_MODEL_KEYS = frozenset(
    {"name", "task", "max_batch_size", "version_policy", "inputs", "outputs", "preprocessing", "postprocessing"}
    | {"dynamic_batching", "versions", "card", "guards", "explain"}
)
_VERSION_KEYS = frozenset({"sha256", "inputs", "outputs", "preprocessing", "postprocessing"})


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> TensorSpec:
        datatype = str(raw["datatype"]).upper()
        if datatype not in DATATYPES:
            raise ValueError(f"tensor {raw.get('name')!r}: unknown datatype {datatype!r}")
        return cls(name=str(raw["name"]), datatype=datatype, shape=tuple(int(d) for d in raw["shape"]))

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.shape) and all(
            want < 0 or want == got for want, got in zip(self.shape, shape, strict=True)
        )


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions are served, as Triton's `version_policy`."""

    policy: str = "latest"
    latest_n: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        ordered = sorted(available)
        if self.policy == "all":
            return ordered
        if self.policy == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.latest_n :]


@dataclass(frozen=True)
class ModelConfig:
    name: str
    task: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 0
    version_policy: VersionPolicy = VersionPolicy()
    preprocessing: dict[str, Any] = field(default_factory=dict)
    postprocessing: dict[str, Any] = field(default_factory=dict)
    # `[dynamic_batching]` as written; absent: no server-side batching (see medfn.serving.batching)
    dynamic_batching: dict[str, Any] | None = None
    # version -> {artifact file name -> sha256 hex}
    sha256: dict[int, dict[str, str]] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    # `[guards]`: what inputs lie outside the model's training data (medfn.tasks.guards)
    guards: dict[str, Any] = field(default_factory=dict)
    # version -> what `[versions.<v>]` says beside sha256: inputs, outputs, pre- and postprocessing
    overrides: dict[int, dict[str, Any]] = field(default_factory=dict)
    # `[explain]`: how answers are explained (medfn.explain); `output` names a graph output (a
    # saliency map) that is computed only when asked for, never in a plain prediction
    explain: dict[str, Any] = field(default_factory=dict)

    @property
    def answered_outputs(self) -> tuple[TensorSpec, ...]:
        """The outputs a call gets when it names none: all but `[explain] output`."""
        on_request = self.explain.get("output")
        return tuple(spec for spec in self.outputs if spec.name != on_request)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> ModelConfig:
        unknown = sorted(set(raw) - _MODEL_KEYS)
        if unknown:
            raise ValueError(f"model.toml: {unknown[0]!r} is not a setting; settings: {', '.join(sorted(_MODEL_KEYS))}")
        for version, table in raw.get("versions", {}).items():
            extra = sorted(set(table) - _VERSION_KEYS)
            if extra:
                raise ValueError(f"model.toml: [versions.{version}] {extra[0]!r} is not one of {sorted(_VERSION_KEYS)}")
        policy = raw.get("version_policy", {})
        return cls(
            name=str(raw["name"]),
            task=str(raw.get("task", "tensor")),
            inputs=tuple(TensorSpec.parse(t) for t in raw.get("inputs", [])),
            outputs=tuple(TensorSpec.parse(t) for t in raw.get("outputs", [])),
            max_batch_size=int(raw.get("max_batch_size", 0)),
            version_policy=VersionPolicy(
                policy=str(policy.get("policy", "latest")),
                latest_n=int(policy.get("latest_n", 1)),
                versions=tuple(int(v) for v in policy.get("versions", ())),
            ),
            preprocessing=dict(raw.get("preprocessing", {})),
            postprocessing=dict(raw.get("postprocessing", {})),
            dynamic_batching=dict(raw["dynamic_batching"]) if "dynamic_batching" in raw else None,
            sha256={int(version): dict(spec.get("sha256", {})) for version, spec in raw.get("versions", {}).items()},
            overrides={
                int(version): {key: value for key, value in spec.items() if key != "sha256"}
                for version, spec in raw.get("versions", {}).items()
            },
            card=dict(raw.get("card", {})),
            guards=dict(raw.get("guards", {})),
            explain=dict(raw.get("explain", {})),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelConfig:
        return cls.parse(tomllib.loads(data.decode("utf-8")))

    def for_version(self, version: int) -> ModelConfig:
        """This config as `version` has it: its own tensors, preprocessing and postprocessing,
        where `[versions.<v>]` gives them (a new export with another layout or size)."""
        own = self.overrides.get(version, {})
        if not own:
            return self
        return replace(
            self,
            inputs=tuple(TensorSpec.parse(t) for t in own["inputs"]) if "inputs" in own else self.inputs,
            outputs=tuple(TensorSpec.parse(t) for t in own["outputs"]) if "outputs" in own else self.outputs,
            preprocessing={**self.preprocessing, **own.get("preprocessing", {})},
            postprocessing={**self.postprocessing, **own.get("postprocessing", {})},
        )

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)


@dataclass(frozen=True)
class SeriesConfig:
    """`[series]` in function.toml: the function answers about whole DICOM series, not single files.

    A series is complete when no instance has arrived for `settle_s` (in AWS; `medfn watch` uses
    `local_settle_s`, a folder copy being fast), or at once when its headers say how many to expect.
    """

    settle_s: float = 30.0
    local_settle_s: float = 2.0

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> SeriesConfig:
        unknown = sorted(set(raw) - {"settle_s", "local_settle_s"})
        if unknown:
            raise ValueError(f"[series] has unknown keys {unknown}; known: ['local_settle_s', 'settle_s']")
        series = cls(float(raw.get("settle_s", 30.0)), float(raw.get("local_settle_s", 2.0)))
        # SQS delays a message by 15 minutes at most: the stability check rides on such a delay
        if not (0 <= series.settle_s <= 900 and 0 <= series.local_settle_s <= 900):
            raise ValueError("[series] settle_s and local_settle_s must be between 0 and 900 seconds")
        return series


@dataclass(frozen=True)
class FunctionConfig:
    """One deployable function: which model it serves and how it runs."""

    name: str
    model: str
    description: str = ""
    runtime: str = "zip"  # "zip" | "container"
    accelerator: str = "cpu"  # "cpu" | "gpu"
    architecture: str = "arm64"  # "arm64" | "x86_64"
    memory_mb: int = 1024
    timeout_s: int = 30
    reserved_concurrency: int | None = None
    max_body_bytes: int = 6 * 1024 * 1024  # Lambda's synchronous payload limit
    http: bool = True
    uploads: bool = False  # processes scans uploaded to the upload bucket
    series: SeriesConfig | None = None  # set: uploads are DICOM instances assembled into series
    # `explain = true` under [pipeline] (or [triggers]): scan results also carry the model's explanation
    explain: bool = False
    directory: Path | None = None

    @classmethod
    def load(cls, directory: Path) -> FunctionConfig:
        raw = tomllib.loads((directory / "function.toml").read_text("utf-8"))
        triggers = raw.get("triggers", {})
        return cls(
            name=str(raw.get("name", directory.name)),
            model=str(raw["model"]),
            description=str(raw.get("description", "")),
            runtime=str(raw.get("runtime", "zip")),
            accelerator=str(raw.get("accelerator", "cpu")),
            architecture=str(raw.get("architecture", "arm64")),
            memory_mb=int(raw.get("memory_mb", 1024)),
            timeout_s=int(raw.get("timeout_s", 30)),
            reserved_concurrency=raw.get("reserved_concurrency"),
            max_body_bytes=int(raw.get("max_body_bytes", 6 * 1024 * 1024)),
            http=bool(triggers.get("http", True)),
            uploads=bool(triggers.get("uploads", False)),
            series=SeriesConfig.parse(raw["series"]) if "series" in raw else None,
            explain=bool(raw.get("pipeline", {}).get("explain", triggers.get("explain", False))),
            directory=directory,
        )


def discover_functions(functions_dir: Path) -> list[FunctionConfig]:
    """Every `functions/*/function.toml`, sorted by name."""
    return [FunctionConfig.load(p.parent) for p in sorted(functions_dir.glob("*/function.toml"))]

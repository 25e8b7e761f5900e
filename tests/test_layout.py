"""The house itself: package faces pinned, no import circle, few loose modules, one error tree.

Import circles are read from the source with `ast`, counting every import: those inside
functions (kept lazy for cold start) and those under `if TYPE_CHECKING:` alike.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import medfn
import medfn.errors
from tests.conftest import REPO

# Each package's public names. A change here is a change of what the package promises.
FACES: dict[str, list[str]] = {
    "medfn": ["__version__"],
    "medfn.codecs": ["MEDIA_TYPES", "DecodedImage", "check_budget", "decode_image", "signature_media_type", "sniff"],
    "medfn.commands": [],
    "medfn.dicomweb": [
        "CStoreDestination", "DicomwebDestination", "FolderSink", "InstanceSink", "ResultDestination", "S3Sink",
        "StoreListener", "destination_from_env", "dicomweb_router",
    ],
    "medfn.errors": [
        "ArtifactError", "BadRequest", "CorruptInstance", "MedfnError", "ModelNotReady", "NotFound", "ObjectMissing",
        "PayloadTooLarge", "SeriesProblem", "StorageUnavailable", "TransientFailure", "UnprocessableInput",
        "UnsupportedMediaType",
    ],
    "medfn.explain": [
        "MAX_OCCLUDED_COPIES", "class_activation", "heat_colours", "image_explanation", "occluded_copies",
        "occlusion_grid", "onto_image", "overlay_png", "relative", "sensitivity", "upsample",
    ],
    "medfn.http": ["create_app"],
    "medfn.inference_protocol": ["InferRequest", "encode_response", "parse_request"],
    "medfn.metering": [
        "EmfMeter", "KeyGate", "Meter", "Metering", "MeteringMiddleware", "SqliteMeter", "UsageRecord",
        "lambda_cost", "local_metering", "read_usage",
    ],
    "medfn.packaging": [
        "REPO", "UNZIPPED_LIMIT", "ZIP_LIMIT", "Package", "build_package", "compile_bytecode", "elf_needed",
        "find_python312", "stage",
    ],
    "medfn.pipeline": [
        "Analysis", "Announced", "BatchSummary", "DynamoStatusTable", "FolderStorage", "FolderWatch",
        "ObjectRef", "PipelineSettings", "S3Storage", "ScanWorker", "SqliteStatusTable", "StatusRecord",
        "UploadTargets", "analyse", "presign_upload",
    ],
    "medfn.pipeline.series": [
        "DynamoSeriesTable", "SeriesKey", "SeriesState", "SeriesTable", "SeriesWorker", "SqliteSeriesTable",
        "SqsCheckSender",
    ],
    "medfn.serving": [
        "CostAwareRunner", "Explanation", "InferencePlane", "LocalStore", "Model", "ModelEntry", "ModelStore",
        "Payload", "Prediction", "Runner", "S3Store", "open_store", "run_inline", "server_runner", "verified_artifacts",
    ],
    "medfn.serving.batching": ["BatchStats", "BatchingPolicy", "DynamicBatcher", "StatsSnapshot"],
    "medfn.sources": [
        "UPLOAD_SOURCES", "EventSource", "HttpEvents", "S3EventBridgeEvents", "S3Notifications", "SqsUploads",
        "sources_for",
    ],
    "medfn.studies": [
        "InstanceHeader", "SourceFrame", "Volume", "build_volume", "classification_report", "explanation_capture",
        "nodule_report", "read_header", "readable", "segmentation",
    ],
    "medfn.tasks": ["TASKS", "model_class"],
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(FACES))
def test_each_package_states_its_public_names(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(FACES[package])
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_every_package_has_a_face() -> None:
    packages = {
        ".".join(init.relative_to(REPO / "src").parent.parts) for init in (REPO / "src" / "medfn").rglob("__init__.py")
    }
    assert packages | {"medfn.errors"} == set(FACES)


def _modules(root: Path, package: str) -> dict[str, Path]:
    found = {}
    for path in (root / package.replace(".", "/")).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `module` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        edges |= {name for name in names if name in known and name != module}
    return edges


def _cycles(root: Path, package: str) -> list[list[str]]:
    modules = _modules(root, package)
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    cycles, done, stack = [], set(), []

    def visit(name: str) -> None:
        if name in stack:
            cycles.append([*stack[stack.index(name) :], name])
            return
        if name in done:
            return
        stack.append(name)
        for target in sorted(graph[name]):
            visit(target)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    return cycles


@pytest.mark.parametrize(("root", "package"), [("src", "medfn"), ("infra", "medfn_infra")])
def test_no_import_circles(root: str, package: str) -> None:
    assert _cycles(REPO / root, package) == []


def test_the_cycle_finder_finds_type_only_and_lazy_circles(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
    )
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from . import a\n")
    assert _cycles(tmp_path, "pkg") == [["pkg.a", "pkg.b", "pkg.a"]]


def test_few_loose_modules_at_the_top() -> None:
    loose = sorted(p.name for p in (REPO / "src" / "medfn").glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= 9, loose


def test_every_error_class_is_in_the_one_tree() -> None:
    defined = []
    for info in pkgutil.walk_packages(medfn.__path__, "medfn."):
        module = importlib.import_module(info.name)
        defined += [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__ == info.name
        ]
    assert defined and all(issubclass(cls, medfn.errors.MedfnError) for cls in defined)
    assert {cls.__module__ for cls in defined} == {"medfn.errors"}

"""`medfn package`: a function's Lambda zip, built offline and without Docker.

The zip holds, at its root: the function folder (`handler.py`, `function.toml`), the
`medfn` runtime, and the runtime's dependencies as cross-platform wheels for Lambda's
python3.12 (manylinux, the function's architecture), unpacked with `--no-compile`; then a
Python 3.12 compiles the whole bundle to bytecode. Lambda's code folder is read-only, so a
bundle without bytecode compiles every module it imports on every cold start, which more
than doubles it (benchmarks/bundle_cold_start.py; figures in benchmarks/README.md). Wheels are
downloaded once into a cache folder; later builds install from it with `--no-index`, so CI
rebuilds offline. Lambda's handler setting is `handler.handler`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from medfn.config import FunctionConfig

REPO = Path(__file__).resolve().parents[2]
PYTHON_VERSION = "3.12"  # the Lambda runtime the CDK app deploys (python3.12)
ARCHITECTURES = {"arm64": "aarch64", "x86_64": "x86_64"}
ZIP_LIMIT = 50 * 1024 * 1024  # Lambda's direct-upload limit
UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda's limit for the unpacked function and layers

RUNTIME_PROVIDED = ("boto3", "botocore")  # in every Lambda Python runtime
# Tasks whose inputs may be DICOM: their functions get the `dicom` extra (pydicom).
DICOM_TASKS = {"image_classification", "image_segmentation"}

# Distributions the runtime never imports: onnxruntime needs protobuf and flatbuffers only in
# its model-conversion tools, which are trimmed too. The packaging test proves the handler
# still answers without them.
UNUSED_DISTRIBUTIONS = ("protobuf", "flatbuffers")

# Paths (relative to the bundle root) that nothing on the serving path imports.
TRIMMED_PATHS = (
    "bin",
    "google",  # protobuf's package
    "flatbuffers",
    "onnxruntime/tools",
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/training",
    "onnxruntime/datasets",
    "onnxruntime/backend",
    "numpy/f2py",
    "numpy/_core/include",
    "numpy/_pyinstaller",
    "numpy/doc",
    "PIL/_imagingtk.cpython-312-aarch64-linux-gnu.so",
    "PIL/_imagingtk.cpython-312-x86_64-linux-gnu.so",
)
# Folder names removed wherever they occur: package test suites and bytecode caches.
TRIMMED_DIR_NAMES = {"tests", "test", "__pycache__"}
TRIMMED_SUFFIXES = (".pyi", ".pyc", ".c", ".h", ".pxd", ".pyx")


@dataclass(frozen=True)
class Package:
    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    bytecode: bool  # compiled for python3.12; False where no python3.12 was found

    def summary(self) -> str:
        mib = 1024 * 1024
        bytecode = (
            "with python3.12 bytecode"
            if self.bytecode
            else "WITHOUT bytecode (no python3.12 found: slower cold starts)"
        )
        return (
            f"{self.path}: {self.zipped_bytes / mib:.1f} MiB zipped (direct-upload limit 50), "
            f"{self.unzipped_bytes / mib:.1f} MiB unzipped (limit 250), {bytecode}"
        )


def requirements(config: FunctionConfig, model_task: str, pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The runtime dependencies from pyproject.toml, plus what imaging and upload functions use.

    Never dev, train, serve or infra extras. Upload functions get `dicom` and the `aws` extra
    without boto3: boto3 is part of Lambda's Python runtime, and bundling it would add
    ~20 MiB for nothing.
    """
    project = tomllib.loads(pyproject.read_text("utf-8"))["project"]
    extras = project["optional-dependencies"]
    wanted = list(project["dependencies"])
    if model_task in DICOM_TASKS or config.uploads:
        wanted += extras["dicom"]
    if config.uploads:
        wanted += [r for r in extras.get("aws", []) if not r.startswith(RUNTIME_PROVIDED)]
    return wanted


def _pip(arch: str, *args: str) -> list[str]:
    machine = ARCHITECTURES[arch]
    return [
        sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args,
        "--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION,
        # onnxruntime ships manylinux_2_28 wheels only; with that tag alone pip settles for
        # an sdist-less stub of pydantic-core, so the older tag must be offered as well.
        "--platform", f"manylinux_2_28_{machine}", "--platform", f"manylinux2014_{machine}",
    ]  # fmt: skip


def install_dependencies(wanted: list[str], arch: str, target: Path, wheel_cache: Path) -> None:
    """Install from the wheel cache; on a cache miss, download into it first, then retry."""
    wheel_cache.mkdir(parents=True, exist_ok=True)
    offline = _pip(
        arch,
        "install",
        "--no-compile",
        "--no-index",
        "--find-links",
        str(wheel_cache),
        "--target",
        str(target),
        *wanted,
    )
    if subprocess.run(offline, capture_output=True).returncode == 0:
        return
    for command in (_pip(arch, "download", "--dest", str(wheel_cache), *wanted), offline):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip failed for {arch}: {done.stderr.strip()[-2000:]}")


def trim(root: Path) -> None:
    """Delete what the serving path never imports (see the constants above for why)."""
    for relative in TRIMMED_PATHS:
        path = root / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for dist in UNUSED_DISTRIBUTIONS:
        for info in root.glob(f"{dist}-*.dist-info"):
            shutil.rmtree(info)
    for path in sorted(root.rglob("*"), reverse=True):  # children before their parents
        if path.is_dir() and path.name in TRIMMED_DIR_NAMES and path.parent != root:
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in TRIMMED_SUFFIXES:
            path.unlink()


def stage(config: FunctionConfig, arch: str, staging: Path, wheel_cache: Path, model_store: Path | None) -> None:
    """Lay out the bundle's files under `staging` (emptied first)."""
    assert config.directory is not None
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    task = _model_task(config, model_store or REPO / "model_store")
    install_dependencies(requirements(config, task), arch, staging, wheel_cache)
    trim(staging)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(__file__).resolve().parent, staging / "medfn", ignore=ignore)
    shutil.copytree(config.directory, staging, dirs_exist_ok=True, ignore=ignore)
    if model_store is not None:  # for local runs; in AWS the model comes from the model bucket
        shutil.copytree(model_store / config.model, staging / "model_store" / config.model, ignore=ignore)


def _model_task(config: FunctionConfig, model_store: Path) -> str:
    toml = model_store / config.model / "model.toml"
    return str(tomllib.loads(toml.read_text("utf-8")).get("task", "tensor")) if toml.is_file() else "tensor"


def find_python312() -> str | None:
    """An interpreter matching Lambda's python3.12: pyenv's build first (its shim on PATH
    needs a pyenv version set to work), else a python3.12 on PATH."""
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    builds = sorted(glob.glob(f"{pyenv}/versions/{PYTHON_VERSION}*/bin/python{PYTHON_VERSION}"))
    found = shutil.which(f"python{PYTHON_VERSION}")
    return builds[-1] if builds else found if found and "shims" not in found else None


def compile_bytecode(staging: Path, python: str) -> None:
    """Bytecode for every module, checked by nothing at import: `unchecked-hash` pycs skip
    the source's timestamp, which a zip round trip does not keep anyway."""
    done = subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(staging)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"compiling the bundle's bytecode failed: {(done.stdout + done.stderr).strip()[-2000:]}")


def write_zip(staging: Path, out: Path, bytecode: bool) -> Package:
    out.parent.mkdir(parents=True, exist_ok=True)
    unzipped = 0
    partial = out.with_suffix(".zip.part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                # fixed timestamps: the same inputs give the same zip, so CDK's asset hash is stable
                info = zipfile.ZipInfo(str(path.relative_to(staging)), date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                data = path.read_bytes()
                unzipped += len(data)
                archive.writestr(info, data, compresslevel=6)
    partial.replace(out)
    return Package(path=out, zipped_bytes=out.stat().st_size, unzipped_bytes=unzipped, bytecode=bytecode)


def build_package(
    config: FunctionConfig,
    arch: str | None = None,
    *,
    dist: Path = REPO / "dist",
    wheel_cache: Path = REPO / ".medfn" / "wheels",
    model_store: Path | None = None,
) -> Package:
    """Build `dist/<function>-<arch>.zip`; `model_store` bundles the function's model."""
    arch = arch or config.architecture
    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, not {arch!r}")
    staging = REPO / ".medfn" / "package" / f"{config.name}-{arch}"
    stage(config, arch, staging, wheel_cache, model_store)
    python = find_python312()
    if python is not None:
        compile_bytecode(staging, python)
    return write_zip(staging, dist / f"{config.name}-{arch}.zip", bytecode=python is not None)

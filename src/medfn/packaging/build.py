"""Building a function's Lambda zip: requirements, pip, staging, the dependency zip cache,
bytecode and the zip itself (medfn.packaging says how the pieces fit)."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from medfn.config import FunctionConfig
from medfn.packaging.prune import prune

REPO = Path(__file__).resolve().parents[3]  # src/medfn/packaging/build.py
PYTHON_VERSION = "3.12"  # the Lambda runtime the CDK app deploys (python3.12)
ARCHITECTURES = {"arm64": "aarch64", "x86_64": "x86_64"}
ZIP_LIMIT = 50 * 1024 * 1024  # Lambda's direct-upload limit
UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda's limit for the unpacked function and layers
LAMBDA_TASK_ROOT = "/var/task"  # where Lambda unpacks the zip
# Each requirement set's dependencies, installed, pruned and compiled, as a zip (dependency_zip).
DEPENDENCY_ZIPS = REPO / ".medfn" / "package" / "dependencies"

RUNTIME_PROVIDED = ("boto3", "botocore")  # in every Lambda Python runtime
# Tasks whose inputs may be DICOM: their functions get the `dicom` extra (pydicom).
DICOM_TASKS = {"image_classification", "image_segmentation"}
# Tasks that answer about whole series: the `volumes` extra (scipy; these functions are containers).
VOLUME_TASKS = {"volume_segmentation"}
# Upload functions deliver their DICOM results to a PACS when the stack names one (MEDFN_DICOMWEB_URL
# at synth): the `pacs` extra, always, so a zip built before that choice still delivers (~1.2 MiB
# zipped). Without pynetdicom: in AWS results go out by STOW-RS only (C-STORE is DIMSE, unencrypted,
# and functions run outside a VPC), and `medfn listen` does not run in Lambda.
LAMBDA_PACS_LEFT_OUT = ("pynetdicom",)


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

    Never dev, train, serve or infra extras. Upload functions get `dicom-results` (their DICOM
    scans' results are written as DICOM SR too), `pacs` without what Lambda never runs
    (LAMBDA_PACS_LEFT_OUT) and the `aws` extra without boto3: boto3 is part of Lambda's Python
    runtime, and bundling it would add ~20 MiB for nothing.
    """
    project = tomllib.loads(pyproject.read_text("utf-8"))["project"]
    extras = project["optional-dependencies"]
    wanted = list(project["dependencies"])
    if model_task in VOLUME_TASKS:
        wanted += _expand(extras, "volumes")
    elif config.uploads:
        wanted += _expand(extras, "dicom-results")
    elif model_task in DICOM_TASKS:
        wanted += extras["dicom"]
    if config.uploads:
        wanted += [r for r in _expand(extras, "pacs") if not r.startswith(LAMBDA_PACS_LEFT_OUT)]
        wanted += [r for r in extras.get("aws", []) if not r.startswith(RUNTIME_PROVIDED)]
    return wanted


def _expand(extras: dict[str, list[str]], extra: str) -> list[str]:
    """An extra's requirements with its `medfn[...]` references to other extras resolved."""
    found: list[str] = []
    for requirement in extras[extra]:
        if requirement.startswith("medfn["):
            for inner in requirement[len("medfn[") : -1].split(","):
                found += _expand(extras, inner.strip())
        else:
            found.append(requirement)
    return found


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


def stage_dependencies(wanted: list[str], arch: str, staging: Path, wheel_cache: Path) -> None:
    """Install `wanted` for Lambda into `staging` (emptied first), then prune it."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    install_dependencies(wanted, arch, staging, wheel_cache)
    prune(staging)


def stage_own_files(config: FunctionConfig, staging: Path, model_store: Path | None) -> None:
    """The `medfn` runtime and the function folder (and, for runs outside AWS, its model)."""
    assert config.directory is not None
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(__file__).resolve().parents[1], staging / "medfn", ignore=ignore)
    shutil.copytree(config.directory, staging, dirs_exist_ok=True, ignore=ignore)
    if model_store is not None:  # for local runs; in AWS the model comes from the model bucket
        shutil.copytree(model_store / config.model, staging / "model_store" / config.model, ignore=ignore)


def stage(config: FunctionConfig, arch: str, staging: Path, wheel_cache: Path, model_store: Path | None) -> None:
    """Lay out the whole bundle's files under `staging` (emptied first), without bytecode."""
    task = _model_task(config, model_store or REPO / "model_store")
    stage_dependencies(requirements(config, task), arch, staging, wheel_cache)
    stage_own_files(config, staging, model_store)


def dependency_zip(
    wanted: list[str], arch: str, wheel_cache: Path, python: str | None, folder: Path = DEPENDENCY_ZIPS
) -> Path:
    """The zip of `wanted`, installed for Lambda, pruned and compiled: built once, then reused
    for as long as the requirements, the wheels in the cache, the interpreter and this package
    (prune.py's rules, this module's build) are the same. One file per requirement set and architecture."""
    requirement_set = _digest([arch, *sorted(wanted)])

    def path() -> Path:
        rules = b"".join(source.read_bytes() for source in sorted(Path(__file__).parent.glob("*.py")))
        made_of = [python or "no bytecode", hashlib.sha256(rules).hexdigest(),
                   *sorted(wheel.name for wheel in wheel_cache.glob("*.whl"))]  # fmt: skip
        return folder / f"{arch}-{requirement_set}-{_digest(made_of)}.zip"

    if path().is_file():
        return path()
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{arch}-{requirement_set}.", dir=folder))  # builds may run at once
    try:
        stage_dependencies(wanted, arch, staging / "bundle", wheel_cache)
        if python is not None:
            compile_bytecode(staging / "bundle", python)
        built = path()  # the wheel cache may have grown on a miss
        write_zip(staging / "bundle", staging / "dependencies.zip", bytecode=python is not None)
        (staging / "dependencies.zip").replace(built)
    finally:
        shutil.rmtree(staging)
    for stale in folder.glob(f"{arch}-{requirement_set}-*.zip"):
        if stale != built:
            stale.unlink(missing_ok=True)
    return built


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


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
    the source's timestamp, which a zip round trip does not keep anyway. Each records its source
    as under Lambda's code folder, not the build folder, so the same inputs give the same zip."""
    done = subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
         "-s", str(staging), "-p", LAMBDA_TASK_ROOT, str(staging)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"compiling the bundle's bytecode failed: {(done.stdout + done.stderr).strip()[-2000:]}")


def write_zip(staging: Path, out: Path, bytecode: bool, base: Path | None = None) -> Package:
    """Zip the files under `staging`; after those of the zip `base` (a dependency_zip), if given."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".zip.part")
    if base is not None:
        shutil.copyfile(base, partial)
    with zipfile.ZipFile(partial, "a" if base else "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        names = set(archive.namelist())
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                name = str(path.relative_to(staging))
                if name in names:
                    raise RuntimeError(f"{name} is both a dependency's and the function's: rename the function's")
                # fixed timestamps: the same inputs give the same zip, so CDK's asset hash is stable
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes(), compresslevel=6)
        unzipped = sum(info.file_size for info in archive.infolist())
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
    python = find_python312()
    task = _model_task(config, model_store or REPO / "model_store")
    wheel_cache.mkdir(parents=True, exist_ok=True)
    dependencies = dependency_zip(requirements(config, task), arch, wheel_cache, python)
    staging = REPO / ".medfn" / "package" / f"{config.name}-{arch}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    stage_own_files(config, staging, model_store)
    if python is not None:
        compile_bytecode(staging, python)
    return write_zip(staging, dist / f"{config.name}-{arch}.zip", bytecode=python is not None, base=dependencies)

"""`medfn package`: a function's Lambda zip, built offline and without Docker.

The zip holds, at its root: the function folder (`handler.py`, `function.toml`), the
`medfn` runtime, and the runtime's dependencies as cross-platform wheels for Lambda's
python3.12 (manylinux, the function's architecture), unpacked with `--no-compile`, then
pruned of what the function never imports (`PRUNED` and the rules below it say what and
why); then a Python 3.12 compiles the whole bundle to bytecode. Lambda's code folder is
read-only, so a bundle without bytecode compiles every module it imports on every cold start,
which more than doubles it (benchmarks/bundle_cold_start.py; figures in benchmarks/README.md).
Every zip must stay under Lambda's 50 MiB direct-upload limit (tests/test_packaging.py checks
each function's). Wheels are downloaded once into a cache folder; later builds install from it
with `--no-index`, so CI rebuilds offline. The dependencies, pruned and compiled, are zipped
once per requirement set and architecture (`dependency_zip`, kept in .medfn/package/dependencies),
and each function's zip is a copy of that zip with its own files added: seconds, not a full
build per function. Lambda's handler setting is `handler.handler`.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
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
LAMBDA_TASK_ROOT = "/var/task"  # where Lambda unpacks the zip
# Each requirement set's dependencies, installed, pruned and compiled, as a zip (dependency_zip).
DEPENDENCY_ZIPS = REPO / ".medfn" / "package" / "dependencies"

RUNTIME_PROVIDED = ("boto3", "botocore")  # in every Lambda Python runtime
# Tasks whose inputs may be DICOM: their functions get the `dicom` extra (pydicom).
DICOM_TASKS = {"image_classification", "image_segmentation"}

# What a bundle leaves out, and why. Nothing here is imported by a function: the packaging test
# runs the pruned bundle under a bare python3.12 (HTTP and S3 events, PNG, JPEG, and DICOM
# uncompressed, RLE, JPEG baseline and JPEG 2000), and checks that every shared library an
# extension links to is still in the zip.
#
# Distributions onnxruntime declares but needs only in its model-conversion tools (pruned
# below): their metadata and their top-level packages go.
UNUSED_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "protobuf": ("google",),
    "flatbuffers": ("flatbuffers",),
    "packaging": ("packaging",),
}
# Globs relative to the bundle root -> why nothing imports them. A match goes, file or folder.
PRUNED: dict[str, str] = {
    "bin": "console scripts of the wheels; Lambda runs no command",
    # onnxruntime: `import onnxruntime` and InferenceSession need only capi/'s Python binding.
    "onnxruntime/capi/libonnxruntime.so*": "the C API library for programs that link ONNX Runtime; the Python "
    "binding (onnxruntime_pybind11_state) has the runtime built in and never loads it (~10 MiB zipped)",
    "onnxruntime/tools": "model conversion and optimisation scripts",
    "onnxruntime/transformers": "transformer graph optimisation scripts",
    "onnxruntime/quantization": "model quantization",
    "onnxruntime/training": "on-device training",
    "onnxruntime/datasets": "sample models for its own docs",
    "onnxruntime/backend": "the ONNX backend-test API",
    # numpy: building against numpy, not running it.
    "numpy/f2py": "the Fortran wrapper generator",
    "numpy/_core/include": "C headers",
    "numpy/_core/lib": "a static library and pkg-config files for C extensions",
    "numpy/random/lib": "a static library for C extensions",
    "numpy/_pyinstaller": "PyInstaller hooks",
    "numpy/doc": "documentation",
    # Pillow: medfn decodes PNG, JPEG and JPEG 2000 (in DICOM), all in PIL/_imaging. Without
    # these modules Pillow reports the format or feature unsupported, as its plugins expect.
    "PIL/_avif.*": "AVIF images (with libavif, the largest of pillow.libs)",
    "PIL/_webp.*": "WebP images",
    "PIL/_imagingft.*": "drawing text with FreeType and HarfBuzz",
    "PIL/_imagingtk.*": "Tkinter display",
    # pydicom: its data folder is test and documentation data (test_files: pruned_testdata).
    "pydicom/data/charset_files": "character-set test files",
    "pydicom/data/palettes": "well-known colour palettes, read only by apply_color_lut(palette=name)",
    "pydicom/sr": "Structured Report code dictionaries (pydicom.sr.codedict, ~1.7 MiB zipped): imported only "
    "by code that writes SR documents, never by dcmread or the pixel decoders",
    # Powertools' own REST resolver can serve Swagger UI; medfn's HTTP is FastAPI.
    "aws_lambda_powertools/event_handler/openapi/swagger_ui/*.min.*": "Swagger UI's script and styles",
}
# Folder names removed wherever they occur below the root: package test suites, and bytecode
# of whatever interpreter the wheel was built with (python3.12 compiles the bundle afresh).
PRUNED_DIR_NAMES = {"tests", "test", "__pycache__"}
# Stubs, sources and build inputs: nothing runs them.
PRUNED_SUFFIXES = (".pyi", ".pyc", ".c", ".h", ".cpp", ".hpp", ".pxd", ".pyx", ".a")
# Shared libraries that auditwheel vendored into `<distribution>.libs/` go when no extension
# module left in the bundle links to them, directly or through another: Pillow's libavif,
# libwebp, FreeType, HarfBuzz, Brotli and libpng go with the modules pruned above.
VENDORED_LIBS = "*.libs"
# `import pydicom` imports pydicom.examples, which looks up its example files in
# data/test_files at once: they stay, the other ~70 test files go. Missing, each lookup would
# scan every installed distribution's entry points on every cold start.
PYDICOM_TEST_FILES = "pydicom/data/test_files"
PYDICOM_EXAMPLES = "pydicom/examples/__init__.py"


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


def prune(root: Path) -> None:
    """Delete what the function never imports (the constants above say what and why)."""
    for distribution, packages in UNUSED_DISTRIBUTIONS.items():
        for path in [*root.glob(f"{distribution}-*.dist-info"), *(root / name for name in packages)]:
            _remove(path)
    for pattern in PRUNED:
        for path in root.glob(pattern):
            _remove(path)
    for path in sorted(root.rglob("*"), reverse=True):  # children before their parents
        if path.is_dir() and path.name in PRUNED_DIR_NAMES and path.parent != root:
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in PRUNED_SUFFIXES:
            path.unlink()
    for path in pruned_testdata(root):
        path.unlink()
    for path in unlinked_vendored_libraries(root):
        path.unlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def pruned_testdata(root: Path) -> list[Path]:
    """pydicom's test files, less the example files `import pydicom` looks up."""
    folder, examples = root / PYDICOM_TEST_FILES, root / PYDICOM_EXAMPLES
    if not folder.is_dir():
        return []
    source = examples.read_text("utf-8") if examples.is_file() else ""
    keep = set(re.findall(r'get_testdata_file\(\s*"([^"]+)"', source))
    return [path for path in folder.rglob("*") if path.is_file() and path.name not in keep]


def unlinked_vendored_libraries(root: Path) -> list[Path]:
    """Libraries in `*.libs/` folders that no other shared object in the bundle needs.

    Kept: whatever the bundle's extension modules (every ELF file outside those folders) link
    to, followed through the libraries' own links. If any ELF file cannot be read, all are kept.
    """
    folders = [folder for folder in root.glob(VENDORED_LIBS) if folder.is_dir()]
    vendored = {path.name: path for folder in folders for path in folder.iterdir() if path.is_file()}
    if not vendored:
        return []
    needs: dict[str, list[str]] = {}
    roots: list[str] = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink() or not _is_elf(path):
            continue
        needed = elf_needed(path)
        if needed is None:
            return []
        if path.parent in folders:
            needs[path.name] = needed
        else:
            roots.extend(needed)
    linked: set[str] = set()
    while roots:
        name = roots.pop()
        if name in vendored and name not in linked:
            linked.add(name)
            roots.extend(needs.get(name, []))
    return [path for name, path in sorted(vendored.items()) if name not in linked]


def _is_elf(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(4) == b"\x7fELF"


def elf_needed(path: Path) -> list[str] | None:
    """The DT_NEEDED entries (the libraries it links to) of a 64-bit little-endian ELF file,
    the only kind manylinux wheels for x86_64 and aarch64 hold; None for any other file, and
    for one whose dynamic section cannot be found (its section headers stripped)."""
    with path.open("rb") as file:
        header = file.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return None
        (section_offset,) = struct.unpack_from("<Q", header, 0x28)
        entry_size, count = struct.unpack_from("<HH", header, 0x3A)
        file.seek(section_offset)
        table = file.read(entry_size * count)
        # (type, offset, size, link) of each section header
        sections = [struct.unpack_from("<4xI16xQQI", table, i * entry_size) for i in range(count)]
        needed: list[str] | None = None
        for kind, offset, size, link in sections:
            if kind != 6:  # SHT_DYNAMIC
                continue
            needed = needed or []
            file.seek(offset)
            dynamic = file.read(size)
            _, strings_offset, strings_size, _ = sections[link]
            file.seek(strings_offset)
            strings = file.read(strings_size)
            for tag, value in struct.iter_unpack("<qQ", dynamic[: len(dynamic) // 16 * 16]):
                if tag == 0:  # DT_NULL
                    break
                if tag == 1:  # DT_NEEDED
                    needed.append(strings[value : strings.index(b"\0", value)].decode())
        return needed


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
    shutil.copytree(Path(__file__).resolve().parent, staging / "medfn", ignore=ignore)
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
    for as long as the requirements, the wheels in the cache, the interpreter and this module
    (its pruning rules) are the same. One file per requirement set and architecture."""
    requirement_set = _digest([arch, *sorted(wanted)])

    def path() -> Path:
        made_of = [python or "no bytecode", hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
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

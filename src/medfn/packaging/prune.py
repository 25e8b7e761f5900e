"""What a Lambda bundle leaves out, and why: the tables below, and the rules that apply them.

`prune` deletes, from an installed bundle, what no function imports; `unlinked_vendored_libraries`
reads the bundle's ELF files (`elf_needed`) to find which vendored shared libraries are still linked.
"""

from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path

# What a bundle leaves out, and why. Nothing here is imported by a function: the packaging test
# runs the pruned bundle under a bare python3.12 (HTTP and S3 events, PNG, JPEG, and DICOM
# uncompressed, RLE, JPEG baseline and JPEG 2000), and checks that every shared library an
# extension links to is still in the zip.
#
# Distributions onnxruntime declares but needs only in its model-conversion tools (pruned
# below): their metadata and their top-level packages go, unless another distribution in the
# bundle requires one too (highdicom imports `packaging`).
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
    # pydicom: its data folder is test and documentation data (test_files: pruned_testdata). Its
    # `sr` code dictionaries stay: highdicom writes the upload functions' SRs with them.
    "pydicom/data/charset_files": "character-set test files",
    "pydicom/data/palettes": "well-known colour palettes, read only by apply_color_lut(palette=name)",
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


def prune(root: Path) -> None:
    """Delete what the function never imports (the constants above say what and why)."""
    needed = _required_beyond_onnxruntime(root)
    for distribution, packages in UNUSED_DISTRIBUTIONS.items():
        if distribution in needed:
            continue
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


def _required_beyond_onnxruntime(root: Path) -> set[str]:
    """The distribution names that the bundle's other distributions require (their METADATA)."""
    needed = set()
    for metadata in root.glob("*.dist-info/METADATA"):
        if metadata.parent.name.startswith("onnxruntime"):
            continue
        for line in metadata.read_text("utf-8", errors="replace").splitlines():
            if line.startswith("Requires-Dist:") and "extra ==" not in line:
                needed.add(
                    re.split(r"[\s<>=!~;\[(]", line.removeprefix("Requires-Dist:").strip(), maxsplit=1)[0].lower()
                )
    return needed


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

"""`medfn package`: a function's Lambda zip, built offline and without Docker.

The zip holds, at its root: the function folder (`handler.py`, `function.toml`), the
`medfn` runtime, and the runtime's dependencies as cross-platform wheels for Lambda's
python3.12 (manylinux, the function's architecture), unpacked with `--no-compile`, then
pruned of what the function never imports (`PRUNED` in prune.py and the rules below it say
what and why); then a Python 3.12 compiles the whole bundle to bytecode. Lambda's code folder is
read-only, so a bundle without bytecode compiles every module it imports on every cold start,
which more than doubles it (benchmarks/bundle_cold_start.py; figures in benchmarks/README.md).
Every zip must stay under Lambda's 50 MiB direct-upload limit (tests/test_packaging.py checks
each function's). Wheels are downloaded once into a cache folder; later builds install from it
with `--no-index`, so CI rebuilds offline. The dependencies, pruned and compiled, are zipped
once per requirement set and architecture (`dependency_zip`, kept in .medfn/package/dependencies),
and each function's zip is a copy of that zip with its own files added: seconds, not a full
build per function. Lambda's handler setting is `handler.handler`.

    build.py    requirements, pip, staging, the dependency zip cache, bytecode, the zip
    prune.py    what a bundle leaves out, and why; the ELF reader that keeps linked libraries
"""

from medfn.packaging.build import (
    REPO,
    UNZIPPED_LIMIT,
    ZIP_LIMIT,
    Package,
    build_package,
    compile_bytecode,
    find_python312,
    stage,
)
from medfn.packaging.prune import elf_needed

__all__ = [
    "REPO",
    "UNZIPPED_LIMIT",
    "ZIP_LIMIT",
    "Package",
    "build_package",
    "compile_bytecode",
    "elf_needed",
    "find_python312",
    "stage",
]

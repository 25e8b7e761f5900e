"""Lay one function out in an image: its function.toml and handler.py, and only its model.

    python copy_function.py <repo> <function> <function dest> <model store dest>

Run by both Dockerfiles from a bind mount of the build context, so the image's layer holds
this function's model and no other (a COPY of model_store/ then a delete would keep them all).
Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path


def main(repo: Path, function: str, function_dest: Path, store_dest: Path) -> None:
    source = repo / "functions" / function
    if not (source / "function.toml").is_file():
        raise SystemExit(f"no functions/{function}/function.toml in the build context")
    model = tomllib.loads((source / "function.toml").read_text("utf-8"))["model"]
    shutil.copytree(source, function_dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(repo / "model_store" / model, store_dest / model, dirs_exist_ok=True)
    print(f"function {function} -> {function_dest}; model {model} -> {store_dest / model}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))

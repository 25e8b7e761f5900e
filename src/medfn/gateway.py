"""The local gateway: every function's model in one plane, behind the routes AWS will have."""

from __future__ import annotations

import os
from pathlib import Path

from medfn.config import discover_functions
from medfn.function import load_function
from medfn.plane import InferencePlane


def functions_dir(given: str | None = None) -> Path:
    return Path(given or os.environ.get("MEDFN_FUNCTIONS", "functions")).resolve()


def load_gateway_plane(functions: Path, only: list[str] | None = None) -> InferencePlane:
    """A plane with the model of every function under `functions/` (or of those named)."""
    plane = InferencePlane()
    configs = discover_functions(functions)
    if not configs:
        raise FileNotFoundError(f"no functions/*/function.toml under {functions}")
    for config in configs:
        if only and config.name not in only and config.model not in only:
            continue
        assert config.directory is not None
        load_function(config.directory, plane)
    return plane

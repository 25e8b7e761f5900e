"""A function as deployed: its `function.toml`, its model store, and the plane serving its model."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medfn.config import FunctionConfig
from medfn.plane import InferencePlane
from medfn.store import ModelStore, open_store


@dataclass
class LoadedFunction:
    config: FunctionConfig
    store: ModelStore
    plane: InferencePlane


def store_location(function_dir: Path) -> str | Path:
    """`MEDFN_MODEL_STORE` (set by the CDK app to the model bucket), else the nearest model_store/.

    A Lambda bundle carries model_store/ beside the function; a checkout has it two levels up.
    """
    configured = os.environ.get("MEDFN_MODEL_STORE")
    if configured:
        return configured
    for candidate in (function_dir / "model_store", function_dir.parent.parent / "model_store"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no model store for {function_dir.name}: set MEDFN_MODEL_STORE")


def load_function(function_dir: Path, plane: InferencePlane | None = None) -> LoadedFunction:
    """Read `function.toml` and load its model into `plane` (a new one unless given)."""
    config = FunctionConfig.load(function_dir)
    store = open_store(store_location(function_dir))
    plane = plane or InferencePlane()
    plane.add(store, config.model, function=config.name)
    return LoadedFunction(config=config, store=store, plane=plane)

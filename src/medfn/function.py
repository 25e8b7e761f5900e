"""A function as deployed: its `function.toml`, its model store, and the plane serving its model.

Loading is where a model's task (model.toml `task`) picks the class that serves it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from medfn.config import FunctionConfig
from medfn.serving import InferencePlane, LocalStore, Model, ModelStore, open_store
from medfn.tasks import model_class
from medfn.tasks.options import option_problems

log = logging.getLogger(__name__)


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
    plane.add(config.model, load_models(store, config.model, config.memory_mb, deployed_pin()), function=config.name)
    return LoadedFunction(config=config, store=store, plane=plane)


def load_models(
    store: ModelStore, name: str, memory_mb: int = 1024, pinned: tuple[int, str] | None = None
) -> list[Model]:
    """The versions of `name` that its version policy serves, loaded; failures stay not-ready.
    `memory_mb` is the function's memory: decoders budget their work from it. `pinned`: the
    (version, model.onnx sha256) a deployment fixed; any other is refused."""
    config = store.read_config(name)
    cls = model_class(config.task)
    versions = config.version_policy.select(store.versions(name))
    if not versions:
        log.error("model %s has no version to serve under policy %s", name, config.version_policy.policy)
    models = []
    for version in versions:
        own = config.for_version(version)
        model = cls(config=own, version=version, store=store, memory_mb=memory_mb, pinned=pinned)
        problems = option_problems(own.task, own.preprocessing, own.postprocessing)
        if problems:  # a misspelt or unknown setting is never ignored, nor loaded around
            model.refuse(problems)
        else:
            model.load()
        models.append(model)
    return models


def deployed_pin() -> tuple[int, str] | None:
    """`MEDFN_MODEL_VERSION` and `MEDFN_MODEL_SHA256`, which the CDK app sets from the model
    deployed with the function: the store (a bucket a writer could change) must agree."""
    version, sha256 = os.environ.get("MEDFN_MODEL_VERSION"), os.environ.get("MEDFN_MODEL_SHA256")
    return (int(version), sha256) if version and sha256 else None


def check_models(store_dir: Path, names: list[str] | None = None) -> list[str]:
    """Every problem of the models in a local store, one line each; none when all would serve."""
    store = LocalStore(store_dir)
    names = names or sorted(path.parent.name for path in store_dir.glob("*/model.toml"))
    lines: list[str] = []
    for name in names:
        if not (store_dir / name / "model.toml").is_file():
            lines.append(f"{name}: no model.toml in {store_dir / name}")
            continue
        try:
            models = load_models(store, name)
        except (KeyError, TypeError, ValueError) as exc:  # tomllib's errors are ValueErrors
            lines.append(f"{name}: model.toml cannot be read: {exc!r}")
            continue
        if not models:
            lines.append(f"{name}: no version folder that its version policy serves")
        for model in models:
            lines += [
                f"{name} v{model.version}: {problem}" for problem in model.problems or [model.reason] if not model.ready
            ]
    return lines

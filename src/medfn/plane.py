"""The inference plane: every served model by name and version, and nothing about transport.

HTTP (task routes and the Open Inference Protocol), the CLI and the scan pipeline all call
this one object, as KServe's DataPlane sits between its REST endpoints and its models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from medfn.errors import NotFound
from medfn.model import Model, Payload, Prediction
from medfn.store import ModelStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    """A row of `GET /v1/models`."""

    name: str
    version: int
    task: str
    function: str
    ready: bool
    reason: str


class InferencePlane:
    def __init__(self) -> None:
        # name -> version -> model; versions kept sorted so the last is the latest served
        self._models: dict[str, dict[int, Model]] = {}
        self._function_of: dict[str, str] = {}

    def add(self, store: ModelStore, name: str, function: str = "") -> list[Model]:
        """Load the versions of `name` that its version policy serves. Failures stay not-ready."""
        from medfn.tasks import model_class

        config = store.read_config(name)
        cls = model_class(config.task)
        versions = config.version_policy.select(store.versions(name))
        if not versions:
            log.error("model %s has no version to serve under policy %s", name, config.version_policy.policy)
        loaded = [cls(config=config, version=v, store=store) for v in versions]
        for model in loaded:
            model.load()
        self._models[name] = {m.version: m for m in loaded}
        self._function_of[name] = function or name
        return loaded

    @property
    def names(self) -> list[str]:
        return sorted(self._models)

    def versions(self, name: str) -> list[int]:
        return sorted(self._versions(name))

    def _versions(self, name: str) -> dict[int, Model]:
        versions = self._models.get(name)
        if versions is None:
            raise NotFound(f"model {name!r} not found; models: {self.names}")
        return versions

    def get(self, name: str, version: str | int | None = None) -> Model:
        """The version asked for, or the latest served when none is asked."""
        versions = self._versions(name)
        if version is None or version == "":
            if not versions:
                raise NotFound(f"model {name!r} has no version served")
            return versions[max(versions)]
        try:
            return versions[int(version)]
        except (KeyError, ValueError):
            raise NotFound(f"model {name!r} has no version {version!r}; versions: {sorted(versions)}") from None

    def entries(self) -> list[ModelEntry]:
        return [
            ModelEntry(m.name, m.version, m.config.task, self._function_of[name], m.ready, m.reason)
            for name in self.names
            for m in self._models[name].values()
        ]

    @property
    def ready(self) -> bool:
        return all(m.ready for versions in self._models.values() for m in versions.values())

    def predict(self, name: str, payload: Payload, version: str | int | None = None) -> tuple[Model, Prediction]:
        model = self.get(name, version)
        return model, model.predict(payload)

"""The inference plane: the one way into a model, whatever the transport.

HTTP task routes call `predict` and Open Inference Protocol routes call `infer`, awaited on
the server's event loop; the scan pipeline calls `predict_blocking` on its own thread. The
plane decides where each call runs: through the model's dynamic batcher when a server gave
it one, else on the runner the plane was built with (inline in Lambda, a cost-aware pool in a
server: medfn.serving.runners). As KServe's DataPlane, it knows nothing of transports.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medfn.errors import BadRequest, NotFound
from medfn.serving.model import Explanation, Model, Payload, Prediction
from medfn.serving.runners import Runner, run_inline

if TYPE_CHECKING:
    from medfn.serving.batching import DynamicBatcher

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
    def __init__(self, runner: Runner = run_inline) -> None:
        self.runner = runner
        # name -> version -> model; versions kept sorted so the last is the latest served
        self._models: dict[str, dict[int, Model]] = {}
        self._function_of: dict[str, str] = {}

    # -- what is served ------------------------------------------------------------------------

    def add(self, name: str, models: list[Model], function: str = "") -> list[Model]:
        """Serve `models`, the loaded versions of `name` (medfn.function.load_models)."""
        self._models[name] = {m.version: m for m in sorted(models, key=lambda m: m.version)}
        self._function_of[name] = function or name
        return models

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
            served = sorted(versions)
            policy = versions[served[-1]].config.version_policy.policy if served else "latest"
            raise NotFound(
                f"model {name!r} serves no version {version!r}; served: {served} (version_policy {policy!r};"
                ' policy = "all" or "specific" in model.toml serves more)'
            ) from None

    @property
    def models(self) -> list[Model]:
        """Every served version of every model, by name then version."""
        return [self._models[name][version] for name in self.names for version in self.versions(name)]

    def entries(self) -> list[ModelEntry]:
        return [
            ModelEntry(m.name, m.version, m.config.task, self._function_of[m.name], m.ready, m.reason)
            for m in self.models
        ]

    @property
    def ready(self) -> bool:
        return all(m.ready for m in self.models)

    # -- calls ---------------------------------------------------------------------------------

    async def infer(
        self, model: Model, inputs: dict[str, np.ndarray], outputs: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Raw tensors, checked against `model.toml`, through the batcher or the runner.

        A batch is awaited on the event loop, not from a worker thread: a waiting request then
        holds no thread, so more requests can queue than the pool has threads.
        """
        model.ensure_ready()
        model.check_inputs(inputs)
        unknown = sorted(set(outputs or ()) - {spec.name for spec in model.config.outputs})
        if unknown:
            raise BadRequest(f"model {model.name} has no outputs {unknown}")
        return await self._run(model, inputs, outputs or None)

    async def _run(
        self, model: Model, inputs: dict[str, np.ndarray], outputs: list[str] | None
    ) -> dict[str, np.ndarray]:
        answered = {spec.name for spec in model.config.answered_outputs}
        if model.batcher is not None and set(outputs or ()) <= answered:  # a saliency map is run outside batches
            return model.refuse_non_finite(await model.batcher.submit_async(inputs, outputs))
        elements = sum(array.size for array in inputs.values())
        return await self.runner(model.run, inputs, outputs, size=elements, waits=model.on_gpu)

    async def predict(self, model: Model, payload: Payload) -> Prediction:
        """A task payload. With a batcher, preprocess and postprocess go through the runner and
        the batch is awaited on the loop, so batches can grow past the pool's width."""
        model.ensure_ready()
        if model.batcher is None:
            return await self.runner(model.predict, payload, size=len(payload.data), waits=model.on_gpu)
        inputs, context = await self.runner(model.prepare, payload, size=len(payload.data))
        started = time.perf_counter()
        outputs = await self._run(model, inputs, None)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        return await self.runner(model.finish, outputs, context, payload, elapsed_ms)

    def predict_blocking(self, model: Model, payload: Payload) -> Prediction:
        """A task payload on the calling thread (the pipeline's, the CLI's); a batcher still batches."""
        return model.predict(payload)

    async def explain(self, model: Model, payload: Payload) -> Explanation:
        """The prediction and why (medfn.explain), on the runner: explaining runs the model, often
        on a batch of perturbed copies, so it is never done on the event loop."""
        model.ensure_ready()
        return await self.runner(model.explain, payload, size=len(payload.data), waits=model.on_gpu)

    def explain_blocking(self, model: Model, payload: Payload) -> Explanation:
        """`explain` on the calling thread (the pipeline's, the CLI's)."""
        return model.explain(payload)

    # -- dynamic batching (servers only: a Lambda environment serves one request at a time) ----

    def start_batchers(self) -> list[DynamicBatcher]:
        """Give every ready model whose `model.toml` has `[dynamic_batching]` its batcher."""
        from medfn.serving.batching import BatchingPolicy, DynamicBatcher

        started = []
        for model in self.models:
            config = model.config
            policy = BatchingPolicy.of(config.name, config.max_batch_size, config.dynamic_batching)
            if policy is None or not model.ready or model.batcher is not None:
                continue
            outputs = [spec.name for spec in config.answered_outputs]
            label = f"{model.name} v{model.version}"
            model.batcher = DynamicBatcher(label, model.execute, outputs, policy, model.device)
            log.info(
                "model %s v%s batches up to %d rows, waiting at most %g ms",
                model.name,
                model.version,
                policy.max_batch_size,
                policy.max_queue_delay_ms,
            )
            started.append(model.batcher)
        return started

    def stop_batchers(self) -> None:
        """Drain and stop every batcher; the models run requests inline again."""
        for model in self.models:
            if model.batcher is not None:
                batcher, model.batcher = model.batcher, None
                batcher.close()

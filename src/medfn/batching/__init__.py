"""Server-side dynamic batching: requests for one model version run together.

Only servers batch (`medfn serve`, the containers): under Lambda one environment serves one
request at a time, so there is nothing to gather and models run inline.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from medfn.batching.batcher import DynamicBatcher
from medfn.batching.policy import BatchingPolicy
from medfn.batching.stats import BatchStats, StatsSnapshot

if TYPE_CHECKING:
    from medfn.model import Model
    from medfn.plane import InferencePlane

__all__ = [
    "BatchStats",
    "BatchingPolicy",
    "DynamicBatcher",
    "StatsSnapshot",
    "served_models",
    "serving_parameters",
    "start_batchers",
    "stop_batchers",
]

log = logging.getLogger(__name__)


def served_models(plane: InferencePlane) -> list[Model]:
    return [plane.get(name, version) for name in plane.names for version in plane.versions(name)]


def start_batchers(plane: InferencePlane) -> list[DynamicBatcher]:
    """Give every ready model whose `model.toml` has `[dynamic_batching]` its batcher."""
    started = []
    for model in served_models(plane):
        policy = BatchingPolicy.of(model.config)
        if policy is None or not model.ready or model.batcher is not None:
            continue
        outputs = [spec.name for spec in model.config.outputs]
        model.batcher = DynamicBatcher(f"{model.name} v{model.version}", model.execute, outputs, policy)
        log.info(
            "model %s v%s batches up to %d rows, waiting at most %g ms",
            model.name, model.version, policy.max_batch_size, policy.max_queue_delay_ms,
        )
        started.append(model.batcher)
    return started


def stop_batchers(plane: InferencePlane) -> None:
    """Drain and stop every batcher; the models run requests inline again."""
    for model in served_models(plane):
        if model.batcher is not None:
            batcher, model.batcher = model.batcher, None
            batcher.close()


def serving_parameters(model: Model) -> dict[str, str | int | float | bool]:
    """Device and batching figures for `GET /v2/models/{m}` parameters (flat, as OIP wants)."""
    parameters: dict[str, str | int | float | bool] = {
        "device": model.device.label if model.device else "none",
        "dynamic_batching": model.batcher is not None,
    }
    if model.batcher is not None:
        stats = model.batcher.stats.snapshot()
        parameters |= {
            "max_queue_delay_ms": model.batcher.policy.max_queue_delay_ms,
            "batch_requests": stats.requests,
            "batch_count": stats.batches,
            "batch_size_mean": round(stats.mean_batch_size, 3),
            "batch_size_max": stats.max_batch_size,
            "batch_fallbacks": stats.fallbacks,
        }
    return parameters

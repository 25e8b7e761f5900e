"""`GET /metrics`: Prometheus text exposition of what each served model version did.

Mounted on servers only (`medfn serve`, the containers): a Lambda environment's counters
would describe one short-lived sandbox, and CloudWatch metering covers Lambda already.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from starlette.responses import PlainTextResponse

from medfn.serving import InferencePlane, Model

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Batch sizes, in rows, as histogram bucket bounds; +Inf is added.
BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def metrics_router(plane: InferencePlane) -> APIRouter:
    router = APIRouter(tags=["server"])

    @router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics of the served models")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(render(plane.models), media_type=CONTENT_TYPE)

    return router


def _labels(model: Model, **extra: str) -> str:
    pairs = {"model": model.name, "version": str(model.version), **extra}
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items()) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(models: list[Model]) -> str:
    return "\n".join(_lines(models)) + "\n"


def _lines(models: list[Model]) -> Iterator[str]:
    yield "# HELP medfn_model_info Served model versions: where they run, whether they are ready."
    yield "# TYPE medfn_model_info gauge"
    for m in models:
        device = m.device.label if m.device else "none"
        yield f"medfn_model_info{_labels(m, provider=m.provider, device=device)} {int(m.ready)}"
    batching = [(m, m.batcher) for m in models if m.batcher is not None]
    counters = (
        ("medfn_batch_requests_total", "Requests run by the dynamic batcher.", "requests"),
        ("medfn_batch_fallbacks_total", "Batched runs that failed and were re-run one request at a time.", "fallbacks"),
        ("medfn_batch_failures_total", "Requests the batcher answered with an error.", "failures"),
        ("medfn_batch_queue_seconds_total", "Seconds requests waited in the queue, summed.", "queue_seconds"),
        ("medfn_batch_compute_seconds_total", "Seconds spent in session runs of batches, summed.", "compute_seconds"),
    )
    snapshots = [(m, b.stats.snapshot()) for m, b in batching]
    for metric, help_text, attribute in counters:
        yield f"# HELP {metric} {help_text}"
        yield f"# TYPE {metric} counter"
        for m, stats in snapshots:
            yield f"{metric}{_labels(m)} {getattr(stats, attribute)}"
    yield "# HELP medfn_batch_size Rows per session run formed by the dynamic batcher."
    yield "# TYPE medfn_batch_size histogram"
    for m, stats in snapshots:
        for bound in (*BUCKETS, None):
            count = sum(n for size, n in stats.batch_sizes.items() if bound is None or size <= bound)
            yield f"medfn_batch_size_bucket{_labels(m, le='+Inf' if bound is None else str(bound))} {count}"
        yield f"medfn_batch_size_sum{_labels(m)} {stats.rows}"
        yield f"medfn_batch_size_count{_labels(m)} {stats.batches}"

"""The local gateway: every function's model in one plane, behind the routes AWS will have.

`medfn serve` builds it here; so does each worker process when it runs several, which is why
its settings travel as one JSON environment variable rather than as objects.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medfn.config import discover_functions
from medfn.errors import BadRequest, NotFound
from medfn.function import load_function
from medfn.serving import InferencePlane, server_runner

if TYPE_CHECKING:
    from fastapi import FastAPI

    from medfn.dicomweb.sinks import FolderSink

log = logging.getLogger(__name__)
SETTINGS_VARIABLE = "MEDFN_GATEWAY_SETTINGS"
TOKEN_VARIABLE = "MEDFN_SERVE_TOKEN"


def functions_dir(given: str | None = None) -> Path:
    return Path(given or os.environ.get("MEDFN_FUNCTIONS", "functions")).resolve()


def load_gateway_plane(functions: Path, only: list[str] | None = None) -> InferencePlane:
    """A server's plane with the model of every function under `functions/` (or of those named)."""
    plane = InferencePlane(runner=server_runner())
    configs = discover_functions(functions)
    if not configs:
        raise NotFound(
            f"no functions/*/function.toml under {functions}: run medfn in a medfn project folder, or pass --functions"
        )
    unknown = sorted(set(only or ()) - {c.name for c in configs} - {c.model for c in configs})
    if unknown:
        raise NotFound(f"no function or model named {unknown[0]!r}; functions: {', '.join(c.name for c in configs)}")
    for config in configs:
        if only and config.name not in only and config.model not in only:
            continue
        assert config.directory is not None
        load_function(config.directory, plane)
    return plane


@dataclass(frozen=True)
class GatewaySettings:
    functions: str
    only: list[str] | None = None
    max_body_bytes: int = 6 * 1024 * 1024
    api_keys: str | None = None
    usage_store: str = ".medfn/usage.sqlite3"
    batching: bool = True
    require_token: bool = False  # the token itself comes from MEDFN_SERVE_TOKEN, never from settings
    dicomweb: str | None = None  # STOW-RS instances go to DIR/incoming (medfn.dicomweb.FolderSink)


def build_gateway_app(settings: GatewaySettings) -> FastAPI:
    """Models loaded, metering and batchers started; all of it stopped when the server stops."""
    from medfn.http import create_app
    from medfn.metering.local import local_metering

    functions = functions_dir(settings.functions)
    plane = load_gateway_plane(functions, settings.only)
    for entry in plane.entries():
        state = "ready" if entry.ready else f"NOT READY: {entry.reason}"
        log.info("model %s v%s (%s): %s", entry.name, entry.version, entry.task, state)
    metering = local_metering(
        functions, Path(settings.usage_store), Path(settings.api_keys) if settings.api_keys else None
    )
    app = create_app(
        plane,
        max_body_bytes=settings.max_body_bytes,
        title="medfn local gateway",
        metering=metering,
        token=serve_token() if settings.require_token else None,
        dicomweb_sink=_dicomweb_sink(settings.dicomweb),
    )
    if settings.batching:
        plane.start_batchers()

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        plane.stop_batchers()  # answers what is queued before the process ends
        metering.meter.close()  # type: ignore[attr-defined]  # writes the calls still buffered

    app.router.lifespan_context = lifespan
    return app


def _dicomweb_sink(directory: str | None) -> FolderSink | None:
    if directory is None:
        return None
    from medfn.dicomweb.sinks import FolderSink

    log.info("STOW-RS at /dicomweb/studies stores into %s/incoming", directory)
    return FolderSink(directory)


def serve_token() -> str:
    """`MEDFN_SERVE_TOKEN`: a secret of at least 32 characters, as `openssl rand -hex 16` gives."""
    token = os.environ.get(TOKEN_VARIABLE, "")
    if len(token) < 32:
        raise BadRequest(f"--require-token needs {TOKEN_VARIABLE} set to a secret of at least 32 characters")
    return token


def gateway_app_from_environment() -> FastAPI:
    """The factory each `medfn serve --workers N` process calls, once, as its start-up."""
    from medfn.coldstart import collector_paused

    with collector_paused():
        return build_gateway_app(GatewaySettings(**json.loads(os.environ[SETTINGS_VARIABLE])))


def settings_to_environment(settings: GatewaySettings) -> None:
    os.environ[SETTINGS_VARIABLE] = json.dumps(asdict(settings))

"""The Lambda entry point every `functions/<name>/handler.py` exposes.

Init loads the function (model verified, session made) with the garbage collector paused,
and builds the HTTP source when the function serves HTTP, so the first request is warm and a
SnapStart snapshot holds it. Each event then goes to the first source in `medfn.sources`
whose `infer` claims it; a function deployed only for uploads never imports FastAPI.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medfn.coldstart import collector_paused, register_snapstart_hooks

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


def make_handler(handler_file: str, sources: list[type[Any]] | None = None) -> Handler:
    """Load the function beside `handler_file` at init and return its `handler(event, context)`."""
    with collector_paused():
        from medfn.function import load_function
        from medfn.sources import EventSource, HttpEvents, sources_for

        function = load_function(Path(handler_file).resolve().parent)
        register_snapstart_hooks([function.store])  # re-seed and reconnect after a restore
        ordered: list[type[EventSource]] = sources if sources is not None else sources_for(function)
        warm_http = function.config.http and os.environ.get("MEDFN_WARM_HTTP", "1") != "0"
        built: dict[type[EventSource], EventSource] = {}
        if warm_http and HttpEvents in ordered:
            built[HttpEvents] = HttpEvents(function)

    def handler(event: dict[str, Any], context: Any) -> Any:
        for source in ordered:
            if isinstance(event, dict) and source.infer(event):
                if source not in built:
                    built[source] = source(function)
                return built[source](event, context)
        shape = sorted(event)[:8] if isinstance(event, dict) else type(event).__name__
        log.warning("ignored an event of unknown shape (keys: %s)", shape)
        return {"ignored": True}

    handler.function = function  # type: ignore[attr-defined]  # for tests and the local gateway
    return handler

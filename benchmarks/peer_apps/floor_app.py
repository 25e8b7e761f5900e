"""The bare loopback HTTP floor: a raw ASGI app under the same uvicorn that reads the whole body
and answers fixed bytes, the very answer medfn gave to that body (benchmarks/serving_ceiling.py
writes it to MEDFN_FLOOR_ANSWER, its headers as JSON to MEDFN_FLOOR_HEADERS). No routing, no
parsing, no model: what any Python server on this uvicorn costs before it does anything.

    MEDFN_FLOOR_ANSWER=answer.bin MEDFN_FLOOR_HEADERS='{"content-type": "application/json"}' \\
        python -m uvicorn benchmarks.peer_apps.floor_app:app --port 8090 --no-access-log --ws none
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ANSWER = Path(os.environ["MEDFN_FLOOR_ANSWER"]).read_bytes() if "MEDFN_FLOOR_ANSWER" in os.environ else b"{}"
_HEADERS = json.loads(os.environ.get("MEDFN_FLOOR_HEADERS", '{"content-type": "application/json"}'))
HEADERS = [(k.encode(), str(v).encode()) for k, v in _HEADERS.items()] + [
    (b"content-length", str(len(ANSWER)).encode())
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan: nothing to start or stop
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:  # the whole body, as a server that used it would
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})

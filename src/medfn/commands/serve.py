"""`medfn serve`: the local gateway, every function on one port with the routes API Gateway has."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "run every function's model behind one local HTTP gateway"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--functions", help="folder of functions/*/function.toml (default: ./functions)")
    parser.add_argument("--only", nargs="*", help="serve only these functions")
    parser.add_argument("--max-body-bytes", type=int, default=6 * 1024 * 1024)
    parser.add_argument("--api-keys", type=Path, help="TOML of API keys and tiers to enforce as API Gateway does")
    parser.add_argument("--usage-store", type=Path, default=Path(".medfn") / "usage.sqlite3", help="SQLite usage store")
    parser.add_argument(
        "--no-batching", action="store_true",
        help="run every request alone, even for models whose model.toml has [dynamic_batching]",
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from medfn.gateway import functions_dir, load_gateway_plane
    from medfn.http import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plane = load_gateway_plane(functions_dir(args.functions), args.only)
    for entry in plane.entries():
        state = "ready" if entry.ready else f"NOT READY: {entry.reason}"
        logging.info("model %s v%s (%s): %s", entry.name, entry.version, entry.task, state)
    from medfn.metering.local import local_metering

    metering = local_metering(functions_dir(args.functions), args.usage_store, args.api_keys)
    app = create_app(plane, max_body_bytes=args.max_body_bytes, title="medfn local gateway", metering=metering)
    from medfn.batching import start_batchers, stop_batchers

    if not args.no_batching:
        start_batchers(plane)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        stop_batchers(plane)  # answers what is queued before the process ends
        metering.meter.close()  # type: ignore[attr-defined]  # writes the calls still buffered
    return 0

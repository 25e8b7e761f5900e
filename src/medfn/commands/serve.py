"""`medfn serve`: the local gateway, every function on one port with the routes API Gateway has."""

from __future__ import annotations

import argparse
import logging

HELP = "run every function's model behind one local HTTP gateway"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--functions", help="folder of functions/*/function.toml (default: ./functions)")
    parser.add_argument("--only", nargs="*", help="serve only these functions")
    parser.add_argument("--max-body-bytes", type=int, default=6 * 1024 * 1024)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from medfn.gateway import functions_dir, load_gateway_plane
    from medfn.http import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plane = load_gateway_plane(functions_dir(args.functions), args.only)
    for entry in plane.entries():
        state = "ready" if entry.ready else f"NOT READY: {entry.reason}"
        logging.info("model %s v%s (%s): %s", entry.name, entry.version, entry.task, state)
    app = create_app(plane, max_body_bytes=args.max_body_bytes, title="medfn local gateway")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0

"""`medfn serve`: the local gateway, every function on one port with the routes API Gateway has."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "run every function's model behind one local HTTP gateway"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on")
    parser.add_argument("--functions", help="folder of functions/*/function.toml (default: ./functions)")
    parser.add_argument("--only", nargs="*", help="serve only these functions")
    parser.add_argument(
        "--max-body-bytes", type=int, default=6 * 1024 * 1024, help="largest request body (Lambda's synchronous limit)"
    )
    parser.add_argument("--api-keys", type=Path, help="TOML of API keys and tiers to enforce as API Gateway does")
    parser.add_argument("--usage-store", type=Path, default=Path(".medfn") / "usage.sqlite3", help="SQLite usage store")
    parser.add_argument(
        "--no-batching",
        action="store_true",
        help="run every request alone, even for models whose model.toml has [dynamic_batching]",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes, each with its own sessions and batchers: one Python process parses "
        "a few hundred to a few thousand requests a second, a GPU runs far more",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (costs ~0.1 ms each)")
    parser.add_argument("--ssl-keyfile", type=Path, help="serve HTTPS with this private key (PEM)")
    parser.add_argument("--ssl-certfile", type=Path, help="... and this certificate (PEM)")
    parser.add_argument(
        "--dicomweb",
        metavar="DIR",
        type=Path,
        help="take STOW-RS at POST /dicomweb/studies into DIR/incoming, for `medfn watch DIR` (docs/pacs.md)",
    )
    parser.add_argument(
        "--require-token",
        action="store_true",
        help="answer only requests with Authorization: Bearer $MEDFN_SERVE_TOKEN (health routes stay open)",
    )


def run(args: argparse.Namespace) -> int:
    from medfn.coldstart import collector_paused

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.workers > 1 and args.api_keys:
        # each process would count quotas and rates alone, letting a key exceed its tier N-fold
        raise SystemExit("--api-keys needs a single worker: key quotas are counted in one process")
    if args.require_token:
        from medfn.gateway import serve_token

        serve_token()  # refused here, once, rather than in each worker
    with collector_paused():  # imports and model loading, once: see medfn.coldstart
        import uvicorn

        from medfn.gateway import GatewaySettings, build_gateway_app, settings_to_environment

        settings = GatewaySettings(
            functions=args.functions or "functions",
            only=args.only,
            max_body_bytes=args.max_body_bytes,
            api_keys=str(args.api_keys) if args.api_keys else None,
            usage_store=str(args.usage_store),
            batching=not args.no_batching,
            require_token=args.require_token,
            dicomweb=str(args.dicomweb) if args.dicomweb else None,
        )
        app = build_gateway_app(settings) if args.workers == 1 else None
    # ws="none": no route speaks WebSocket, and loading uvicorn's websockets protocol cost
    # ~15 ms of every start
    options = {"host": args.host, "port": args.port, "log_level": "info", "access_log": args.access_log, "ws": "none"}
    if args.ssl_keyfile or args.ssl_certfile:
        if not (args.ssl_keyfile and args.ssl_certfile):
            raise SystemExit("HTTPS needs both --ssl-keyfile and --ssl-certfile")
        options |= {"ssl_keyfile": str(args.ssl_keyfile), "ssl_certfile": str(args.ssl_certfile)}
    if app is not None:
        uvicorn.run(app, **options)
    else:
        settings_to_environment(settings)
        uvicorn.run("medfn.gateway:gateway_app_from_environment", factory=True, workers=args.workers, **options)
    return 0

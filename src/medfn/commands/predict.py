"""`medfn predict MODEL FILE`: one prediction, in process or against a running gateway."""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
from pathlib import Path

HELP = "predict from a file (a scan, a note, a JSON record), in process or against --url"

_TYPES = {".dcm": "application/dicom", ".dicom": "application/dicom", ".json": "application/json", ".txt": "text/plain"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model")
    parser.add_argument("file", type=Path)
    parser.add_argument("--url", help="a running gateway, e.g. http://127.0.0.1:8080 (default: in process)")
    parser.add_argument("--content-type", help="default: from the file's extension")
    parser.add_argument("--functions", help="folder of functions/*/function.toml (in process)")
    parser.add_argument("--api-key", help="sent as x-api-key")


def run(args: argparse.Namespace) -> int:
    import httpx

    data = args.file.read_bytes()
    content_type = args.content_type or _TYPES.get(args.file.suffix.lower()) or mimetypes.guess_type(args.file.name)[0]
    headers = {"content-type": content_type or "application/octet-stream"}
    if args.api_key:
        headers["x-api-key"] = args.api_key
    path = f"/v1/models/{args.model}/predict"
    if args.url:
        response = httpx.post(args.url.rstrip("/") + path, content=data, headers=headers, timeout=60)
    else:
        from medfn.gateway import functions_dir, load_gateway_plane
        from medfn.http import create_app

        app = create_app(load_gateway_plane(functions_dir(args.functions), [args.model]))
        from fastapi.testclient import TestClient

        response = TestClient(app).post(path, content=data, headers=headers)
    try:
        print(json.dumps(response.json(), indent=2))
    except ValueError:
        sys.stdout.buffer.write(response.content)
    return 0 if response.status_code < 400 else 1

"""`medfn predict MODEL FILE`: one prediction, in process or against a running gateway.

With --explain the model also says why (`/explain`): the JSON carries the explanation, and a
scan's heat map over the image is written beside the input as `<file>.explain.png` (the JSON
names that file instead of holding the PNG as base64).
"""

from __future__ import annotations

import argparse
import json
import mimetypes
from pathlib import Path
from typing import Any

HELP = "predict from a file (a scan, a note, a JSON record), in process or against --url"

_TYPES = {".dcm": "application/dicom", ".dicom": "application/dicom", ".json": "application/json", ".txt": "text/plain"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the model (or function) to ask, as `GET /v1/models` lists them")
    parser.add_argument("file", type=Path, help="a scan (PNG, JPEG, DICOM), a note (.txt) or a record (.json)")
    parser.add_argument("--url", help="a running gateway, e.g. http://127.0.0.1:8080 (default: in process)")
    parser.add_argument("--content-type", help="default: from the file's extension")
    parser.add_argument("--functions", help="folder of functions/*/function.toml (in process)")
    parser.add_argument("--api-key", help="sent as x-api-key")
    parser.add_argument(
        "--explain", action="store_true", help="also say why; a scan's overlay goes to <file>.explain.png"
    )


def run(args: argparse.Namespace) -> int:
    from medfn.errors import MedfnError, NotFound

    if not args.file.is_file():
        raise NotFound(f"no such file: {args.file}")
    data = args.file.read_bytes()
    content_type = args.content_type or _TYPES.get(args.file.suffix.lower()) or mimetypes.guess_type(args.file.name)[0]
    if args.url:
        status, answer = _over_http(args, data, content_type)
    else:
        try:
            status, answer = 200, _in_process(args, data, content_type)
        except MedfnError as exc:
            if exc.status >= 500 or isinstance(exc, NotFound):
                raise  # the model or the setup, not the file: one line, exit 2
            status, answer = exc.status, {"error": exc.message}
    if args.explain and status < 400 and isinstance(answer, dict):
        _write_overlay(answer, args.file)
    print(json.dumps(answer, indent=2))
    return 0 if status < 400 else 1


def _in_process(args: argparse.Namespace, data: bytes, content_type: str | None) -> dict[str, object]:
    """The same answer as the task route, from a plane in this process."""
    import uuid

    from medfn.codecs import signature_media_type
    from medfn.gateway import functions_dir, load_gateway_plane
    from medfn.serving import Payload

    plane = load_gateway_plane(functions_dir(args.functions), [args.model])
    name = args.model if args.model in plane.names else plane.names[0]  # a function's name leads to its model
    model = plane.get(name)
    model.ensure_ready()
    media_type = content_type or signature_media_type(data) or "application/octet-stream"
    payload = Payload(data=data, media_type=media_type)
    if args.explain:
        return plane.explain_blocking(model, payload).answer(model, uuid.uuid4().hex)
    return plane.predict_blocking(model, payload).answer(model, uuid.uuid4().hex)


def _write_overlay(answer: dict[str, Any], source: Path) -> None:
    """The explanation's overlay, from base64 in `answer` to `<source>.explain.png`; the answer
    then names the file."""
    import base64

    details = answer.get("explanation", {}).get("details", {})
    encoded = details.pop("overlay_png_base64", None) if isinstance(details, dict) else None
    if isinstance(encoded, str):
        target = source.with_name(source.name + ".explain.png")
        target.write_bytes(base64.b64decode(encoded))
        details["overlay_png"] = str(target)


def _over_http(args: argparse.Namespace, data: bytes, content_type: str | None) -> tuple[int, object]:
    import httpx

    from medfn.errors import BadRequest

    headers = {"content-type": content_type or "application/octet-stream"}
    if args.api_key:
        headers["x-api-key"] = args.api_key
    url = args.url.rstrip("/") + f"/v1/models/{args.model}/{'explain' if args.explain else 'predict'}"
    try:
        response = httpx.post(url, content=data, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        raise BadRequest(f"cannot reach {args.url} ({type(exc).__name__}): is `medfn serve` running there?") from None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"error": f"answer of {len(response.content)} bytes is not JSON"}

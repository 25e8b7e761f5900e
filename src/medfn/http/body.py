"""Reading request bodies: the size limit, and a task payload from raw, multipart or JSON."""

from __future__ import annotations

from starlette.datastructures import UploadFile
from starlette.requests import Request

from medfn.codecs import signature_media_type
from medfn.errors import PayloadTooLarge, UnprocessableInput, UnsupportedMediaType
from medfn.serving.model import Payload


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {int(declared)} bytes, over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # noqa: SLF001 - lets Starlette's form parser re-read what we read
    return body


def media_type_of(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def task_payload(request: Request, limit: int) -> Payload:
    """A raw body, the first file of a multipart form, or JSON, as one transport-free Payload."""
    body = await read_body(request, limit)
    media_type = media_type_of(request)
    accept = request.headers.get("accept", "application/json")
    if media_type == "multipart/form-data":
        return await _multipart_payload(request, accept)
    if not media_type:
        sniffed = signature_media_type(body)
        if sniffed is None:
            raise UnsupportedMediaType("Content-Type header is required for this body")
        media_type = sniffed
    return Payload(data=body, media_type=media_type, accept=accept)


async def _multipart_payload(request: Request, accept: str) -> Payload:
    try:
        form = await request.form(max_files=1, max_fields=16)
    except Exception as exc:  # python-multipart's parse errors
        raise UnprocessableInput("multipart body could not be parsed") from exc
    try:
        upload = form.get("file") or next((v for v in form.values() if isinstance(v, UploadFile)), None)
        if not isinstance(upload, UploadFile):
            raise UnprocessableInput('multipart body has no file part (send it as field "file")')
        data = await upload.read()
    finally:
        await form.close()
    declared = (upload.content_type or "").split(";", 1)[0].strip().lower()
    sniffed = signature_media_type(data)
    # Browsers label unknown files application/octet-stream; the bytes know better.
    media_type = sniffed if sniffed and declared in ("", "application/octet-stream") else declared
    return Payload(data=data, media_type=media_type or "application/octet-stream", accept=accept)

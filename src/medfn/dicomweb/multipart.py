"""A STOW-RS body (`multipart/related; type="application/dicom"`, PS3.18 8.6.1.2) split into its parts.

python-multipart's streaming MultipartParser does the framing: it knows nothing of form fields
at that level, so it reads multipart/related as well as multipart/form-data. What it leaves to
us is checked here, strictly: the media type and its parameters, a body that ends before its
closing boundary (truncated: nothing is kept), the number of parts, each part's headers (count
and size), and the body's size as it streams in. Messages are ours, never the
parser's, and none quotes the body.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from medfn.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

DICOM = "application/dicom"
TOO_LARGE_HINT = "send fewer instances per request, or upload them with a presigned upload (POST /v1/uploads)"
# RFC 2046 5.1.1 says 70 characters at most; Orthanc's DICOMweb client sends 73 (two UUIDs)
_MAX_BOUNDARY = 200
# per part: a STOW-RS part needs one or two headers (python-multipart's own bounds are near these)
_MAX_HEADERS = 8
_MAX_HEADER_BYTES = 4096  # names and values together


@dataclass(frozen=True)
class Part:
    index: int  # its place in the body, counting from 0: what logs and failure entries name
    media_type: str  # the part's Content-Type without parameters, lowercased; "" when it has none
    declared_length: int | None  # the part's own Content-Length header, when it sends one (-1: unusable)
    data: bytes


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_parts: int = 1000


def related_boundary(content_type: str) -> bytes:
    """The boundary of a STOW-RS request's Content-Type. 415 for another media type, 400 without
    a usable boundary."""
    media_type, options = parse_options_header(content_type)
    if media_type.lower() != b"multipart/related":
        raise UnsupportedMediaType(f'STOW-RS takes multipart/related; type="{DICOM}" bodies')
    kind = options.get(b"type", b"").decode("latin-1").strip().lower()
    if kind and kind != DICOM:
        raise UnsupportedMediaType(f'STOW-RS here takes only type="{DICOM}" parts (no metadata and bulk data)')
    boundary = options.get(b"boundary", b"")
    if not boundary or len(boundary) > _MAX_BOUNDARY or not boundary.isascii():
        raise BadRequest("Content-Type multipart/related needs a boundary parameter (1 to 200 characters)")
    return boundary


@dataclass
class _Building:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    header_bytes: int = 0
    header_count: int = 0


class RelatedParser:
    """Feed it the body chunk by chunk, then `close()` for the parts."""

    def __init__(self, boundary: bytes, limits: Limits) -> None:
        self.limits = limits
        self.size = 0
        self.parts: list[Part] = []
        self._ended = False
        self._field = bytearray()
        self._value = bytearray()
        self._part: _Building | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_part_data": self._data,
                "on_header_field": lambda data, start, end: self._header_bytes(self._field, data[start:end]),
                "on_header_value": lambda data, start, end: self._header_bytes(self._value, data[start:end]),
                "on_header_end": self._header_end,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limits.max_body_bytes:
            raise PayloadTooLarge(f"body is over the limit of {self.limits.max_body_bytes} bytes: {TOO_LARGE_HINT}")
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:  # its message may quote bytes of the body
            raise BadRequest(
                "multipart body does not follow its boundary (a wrong boundary, bad framing, or a part with too"
                f" many headers: at most {_MAX_HEADERS}, {_MAX_HEADER_BYTES} bytes)"
            ) from exc

    def close(self) -> list[Part]:
        if not self._ended:
            if not self.parts and self._part is None:
                raise BadRequest("multipart body has no part delimited by its boundary")
            raise BadRequest("multipart body is truncated (it ends before its closing boundary); nothing was stored")
        if not self.parts:
            raise BadRequest("multipart body has no parts")
        return self.parts

    def _begin(self) -> None:
        if len(self.parts) >= self.limits.max_parts:
            raise PayloadTooLarge(f"more than {self.limits.max_parts} instances in one request: {TOO_LARGE_HINT}")
        self._part = _Building()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part is not None:
            self._part.chunks.append(bytes(data[start:end]))

    def _header_bytes(self, into: bytearray, data: bytes) -> None:
        if self._part is not None:
            self._part.header_bytes += len(data)
            if self._part.header_bytes > _MAX_HEADER_BYTES:
                raise BadRequest(f"a part's headers are over {_MAX_HEADER_BYTES} bytes")
        into.extend(data)

    def _header_end(self) -> None:
        if self._part is not None:
            self._part.header_count += 1
            if self._part.header_count > _MAX_HEADERS:
                raise BadRequest(f"a part has more than {_MAX_HEADERS} headers")
            self._part.headers[bytes(self._field).strip().lower()] = bytes(self._value).strip()
        self._field.clear()
        self._value.clear()

    def _part_end(self) -> None:
        part, self._part = self._part, None
        if part is None:
            return
        media_type, _ = parse_options_header(part.headers.get(b"content-type", b""))
        length = part.headers.get(b"content-length", b"")
        self.parts.append(
            Part(
                index=len(self.parts),
                media_type=media_type.decode("latin-1").lower(),
                declared_length=(int(length) if length.isdigit() and len(length) <= 18 else -1) if length else None,
                data=b"".join(part.chunks),
            )
        )

    def _end(self) -> None:
        self._ended = True

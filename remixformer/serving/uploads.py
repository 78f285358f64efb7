"""Reading a ``multipart/form-data`` request into memory with limits enforced while it streams.

The body is fed chunk by chunk to python-multipart's parser; a file part that grows past
``max_file_bytes`` stops the read at once (413), whatever ``Content-Length`` claimed. A body must end
with its closing boundary: one cut off earlier is a 400, never a form without its unfinished part.
Nothing is written to disk and client file names are kept only as text for messages, never used as
paths.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

MAX_FIELD_BYTES = 64 * 1024  # a text field (metadata value, option)
MAX_PARTS = 64
MAX_HEADER_OVERHEAD = 256 * 1024  # part headers and boundaries on top of the file bytes
DRAIN_BYTES = 64 * 2**20  # read and drop at most this much of a body found too large
DEFAULT_READ_TIMEOUT = 10.0  # seconds a client may send nothing in the middle of its body
DEFAULT_BODY_TIMEOUT = 120.0  # seconds for a whole body (a stream of single bytes cannot last forever)


class UploadError(ValueError):
    """A request that cannot be read; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field


@dataclass
class UploadedFile:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Form:
    files: dict[str, UploadedFile] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class _Part:
    name: str | None = None
    filename: str | None = None
    content_type: str = ""
    data: bytearray = field(default_factory=bytearray)


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError(400, f"{what} is not valid UTF-8") from None


class _Collector:
    """python-multipart callbacks that collect parts in memory under the limits."""

    def __init__(self, max_file_bytes: int, file_fields: tuple[str, ...]) -> None:
        self.max_file_bytes = max_file_bytes
        self.file_fields = file_fields
        self.form = Form()
        self.part = _Part()
        self.n_parts = 0
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": lambda d, s, e: self.header_name.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.header_value.extend(d[s:e]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self.n_parts += 1
        if self.n_parts > MAX_PARTS:
            raise UploadError(400, f"too many form parts (more than {MAX_PARTS})")
        self.part = _Part()
        self.headers = {}

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_name).lower()] = bytes(self.header_value)
        self.header_name.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise UploadError(400, "a form part has no name (Content-Disposition 'name' is required)")
        self.part.name = _decode(options[b"name"], "a form field name")
        if b"filename" in options:
            self.part.filename = _decode(options[b"filename"], "a file name")
            self.part.content_type = self.headers.get(b"content-type", b"").decode("latin-1")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        limit = self.max_file_bytes if part.filename is not None else MAX_FIELD_BYTES
        if len(part.data) + (end - start) > limit:
            if part.filename is not None:
                raise UploadError(
                    413,
                    f"{part.name}: file is larger than the upload limit of {limit:,} bytes "
                    f"({limit / 2**20:g} MiB)",
                    field=part.name,
                )
            raise UploadError(413, f"{part.name}: form field longer than {limit:,} bytes", field=part.name)
        part.data.extend(data[start:end])

    def on_part_end(self) -> None:
        part, name = self.part, self.part.name or ""
        if name in self.form.files or name in self.form.fields:
            raise UploadError(422, f"{name}: given more than once", field=name)
        if part.filename is None:
            self.form.fields[name] = _decode(bytes(part.data), f"form field {name!r}")
            return
        if name not in self.file_fields:
            raise UploadError(
                422,
                f"{name}: unexpected file field; files are accepted as {list(self.file_fields)}",
                field=name,
            )
        if not part.data and not part.filename:
            return  # an empty file input of an HTML form: nothing chosen
        self.form.files[name] = UploadedFile(name, part.filename, part.content_type, bytes(part.data))


async def timed(
    stream: AsyncIterator[bytes], read_timeout: float | None, body_timeout: float | None
) -> AsyncIterator[bytes]:
    """``stream`` with deadlines: at most ``read_timeout`` seconds between chunks and ``body_timeout``
    for all of them (``None``: no limit); past one, :class:`UploadError` 408."""
    loop = asyncio.get_running_loop()
    deadline = None if body_timeout is None else loop.time() + body_timeout
    chunks = stream.__aiter__()
    while True:
        waits = [
            t for t in (read_timeout, None if deadline is None else deadline - loop.time()) if t is not None
        ]
        wait = min(waits) if waits else None
        if wait is not None and wait <= 0:
            raise UploadError(408, f"the request body took longer than {body_timeout:g} s to arrive")
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), wait)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            if deadline is not None and loop.time() >= deadline:
                raise UploadError(
                    408, f"the request body took longer than {body_timeout:g} s to arrive"
                ) from None
            raise UploadError(
                408, f"the client sent nothing for {read_timeout:g} s in the middle of its request body"
            ) from None
        yield chunk


async def read_form(
    content_type: str | None,
    stream: AsyncIterator[bytes],
    *,
    max_file_bytes: int,
    file_fields: tuple[str, ...],
    read_timeout: float | None = DEFAULT_READ_TIMEOUT,
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
) -> Form:
    """Parse a multipart body from ``stream`` (e.g. ``request.stream()``) under the limits.

    Raises :class:`UploadError`: 415 when the body is not multipart, 413 when a file (or the whole body)
    is too large, 400 for malformed or unfinished bodies, 422 for unexpected or repeated parts, 408 when
    the client sends nothing for ``read_timeout`` seconds or the body takes longer than ``body_timeout``.
    """
    stream = timed(stream, read_timeout, body_timeout)
    mime, params = parse_options_header(content_type or "")
    if mime in (b"", b"application/x-www-form-urlencoded"):
        return await _read_urlencoded(stream, allow_body=bool(mime))
    if mime != b"multipart/form-data":
        raise UploadError(
            415,
            f"expected a multipart/form-data body (files and form fields), got {content_type!r}",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart/form-data body without a boundary")
    collector = _Collector(max_file_bytes, file_fields)
    max_body = max_file_bytes * max(1, len(file_fields)) + MAX_PARTS * MAX_FIELD_BYTES + MAX_HEADER_OVERHEAD
    try:
        parser = MultipartParser(boundary, collector.callbacks())
    except Exception as e:  # an over-long boundary
        raise UploadError(400, f"invalid multipart boundary: {e}") from None
    total = 0
    too_large: UploadError | None = None
    try:
        async for chunk in stream:
            total += len(chunk)
            if too_large is not None:
                # Read on (and drop) a little more, so that the client sees the 413 rather than a
                # connection closed while it is still sending; then give up on the body.
                if total > max_body + DRAIN_BYTES:
                    break
                continue
            if total > max_body:
                too_large = UploadError(413, f"request body larger than {max_body:,} bytes")
                continue
            try:
                parser.write(chunk)
            except UploadError as e:
                if e.status != 413:
                    raise
                too_large = e
        if too_large is not None:
            raise too_large
        parser.finalize()
        # python-multipart's finalize() does not check completeness: an unfinished last part would
        # simply be dropped and the request answered from the other parts
        if total and parser.state != MultipartState.END:
            raise UploadError(
                400,
                "malformed multipart body: it ends before its closing boundary (the upload was cut off, "
                "or the boundary is wrong)",
            )
    except UploadError as e:
        if e.status == 408 and too_large is not None:
            raise too_large from None  # it stalled while its excess was drained: the real reason
        raise
    except Exception as e:  # python-multipart's FormParserError and friends
        raise UploadError(400, f"malformed multipart body: {e}") from None
    return collector.form


async def _read_urlencoded(stream: AsyncIterator[bytes], allow_body: bool) -> Form:
    """Fields only (``a=1&b=2``), e.g. a metadata-only request; no content type: an empty body only."""
    limit = MAX_PARTS * MAX_FIELD_BYTES
    body = bytearray()
    async for chunk in stream:
        body.extend(chunk)
        if len(body) > limit:
            raise UploadError(413, f"form body larger than {limit:,} bytes")
    if not body:
        return Form()
    if not allow_body:
        raise UploadError(415, "a body without a content type; send multipart/form-data")
    try:
        # percent-escapes must decode as UTF-8 too (the default would put U+FFFD in their place)
        pairs = parse_qsl(
            _decode(bytes(body), "the form body"),
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
        )
    except UnicodeDecodeError:
        raise UploadError(400, "a form field name or value is not valid UTF-8 (after %-decoding)") from None
    except ValueError as e:
        raise UploadError(400, f"malformed form body: {e}") from None
    form = Form()
    for name, value in pairs:
        if name in form.fields:
            raise UploadError(422, f"{name}: given more than once", field=name)
        form.fields[name] = value
    return form

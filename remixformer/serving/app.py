"""The web service: a FastAPI app around one loaded :class:`~remixformer.serving.predictor.Predictor`.

    app = create_app(Predictor.from_checkpoint("best.safetensors"))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints: ``GET /health``, ``GET /model``, ``POST /predict`` (multipart: ``clinical`` and/or
``dermoscopy`` image files, one text field per metadata field, options ``explain`` and ``top_k``),
``GET /docs`` (OpenAPI) and the web page at ``/``. docs/serving.md describes them.

Bad input gets a 4xx JSON ``{"detail": "...", "field": "..."}``: 413 for a file over the upload limit or
an image over the pixel limit, 415 for a body that is not multipart or a file that is not a decodable
image, 422 for unknown fields or values, a modality the model was not trained with, or bad options,
400 for an empty request or a malformed body, 408 for a body that stalls. Uploads stay in memory;
nothing a client sends is used as a path. At most ``max_uploads`` bodies are read at once, each under a
read timeout; only a complete, valid request takes a slot of the bounded inference pool
(:mod:`remixformer.serving.pool`). A full pool, or too many uploads at once, answers 503 with
``Retry-After``.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from remixformer.data.images import BadImageError, ImageTooLargeError, load_image
from remixformer.modalities import IMAGE_LETTERS, modality_name, modality_names
from remixformer.schema import is_blank
from remixformer.serving.overlays import make_overlays
from remixformer.serving.pool import InferencePool, QueueFull
from remixformer.serving.predictor import PredictionError, Predictor
from remixformer.serving.uploads import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    UploadError,
    read_form,
)

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
DEFAULT_QUEUE_SIZE = 8
DEFAULT_MAX_UPLOADS = 16  # request bodies read at once (each at most two files + fields)
FAILING_AFTER = 3  # consecutive internal errors of /predict after which /health says "failing"
IMAGE_FIELDS = ("clinical", "dermoscopy")
OPTION_FIELDS = ("explain", "top_k")
DISCLAIMER = (
    "Research tool, not a medical device: its output is not a diagnosis and must not guide the care "
    "of a patient."
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class ServingError(Exception):
    """An answer other than 200; ``detail`` says what was wrong, ``field`` names the input."""

    def __init__(
        self, status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers or {}


# --- response shapes (for the OpenAPI page) ----------------------------------------------------------
class ErrorBody(BaseModel):
    detail: str
    field: str | None = None


class OverlayBody(BaseModel):
    name: str
    modality: str
    title: str
    image: str  # data:image/png;base64,...


class PredictionBody(BaseModel):
    diagnosis: str
    top_k: list[dict[str, Any]]
    probabilities: dict[str, dict[str, float]]
    modalities_used: str
    metadata_used: dict[str, str | None] | None = None
    overlays: list[OverlayBody] | None = None
    model: dict[str, Any]
    seconds: float
    disclaimer: str


# --- reading a request ------------------------------------------------------------------------------
@dataclass
class CaseRequest:
    images: dict[str, bytes] = field(default_factory=dict)  # clinical / dermoscopy -> file bytes
    metadata: dict[str, str] | None = None
    metadata_used: dict[str, str | None] | None = None
    explain: bool = False
    top_k: int = 3


def _flag(name: str, raw: str) -> bool:
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ServingError(422, f"{name}: expected true or false, got {raw!r}", name)


def _top_k(raw: str, n_classes: int) -> int:
    try:
        k = int(raw.strip())
    except ValueError:
        raise ServingError(422, f"top_k: expected a whole number, got {raw!r}", "top_k") from None
    if not 1 <= k <= n_classes:
        raise ServingError(422, f"top_k: expected 1 to {n_classes} (the diagnosis classes), got {k}", "top_k")
    return k


def decode_image(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Upload bytes -> 8-bit RGB image; 413 over the pixel limit or too elongated (both read from the
    header, before decoding), 415 when not a decodable image."""
    if not data:
        raise ServingError(415, f"{name}: the file is empty", name)
    try:
        return load_image(data, max_pixels=max_pixels)
    except ImageTooLargeError as e:
        raise ServingError(413, f"{name}: {e.reason}", name) from None
    except BadImageError as e:
        if e.reason.startswith("not a readable image"):
            reason = "expected a JPEG, PNG, TIFF, BMP or WebP file"
        else:
            reason = e.reason
        raise ServingError(415, f"{name}: not a decodable image ({reason})", name) from None


# --- the app ------------------------------------------------------------------------------------------
class _SecurityHeaders:
    """Pure ASGI middleware: ``nosniff`` everywhere, a strict CSP on the page and its files."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        page = path == "/" or path.startswith("/static/")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                if page:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                    headers.append((b"referrer-policy", b"no-referrer"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class UploadGate:
    """Counts the request bodies being received (on the event loop: no lock needed) and bounds them, so
    that memory stays bounded while slow clients upload; stalled ones are cut off by the read timeouts."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"max_uploads must be at least 1, got {limit}")
        self.limit = limit
        self.reading = 0
        self.peak = 0
        self.refused = 0
        self.timed_out = 0

    def enter(self) -> None:
        if self.reading >= self.limit:
            self.refused += 1
            raise ServingError(
                503,
                f"the service is busy ({self.reading} uploads being received); retry later",
                headers={"Retry-After": "1"},
            )
        self.reading += 1
        self.peak = max(self.peak, self.reading)

    def leave(self) -> None:
        self.reading -= 1

    def stats(self) -> dict[str, int]:
        return {
            "max": self.limit,
            "reading": self.reading,
            "peak": self.peak,
            "refused": self.refused,
            "timed_out": self.timed_out,
        }


class _InternalErrors:
    """Pure ASGI middleware: an exception escaping a route becomes a 500 JSON answer, logged with its
    traceback, and the connection stays open. (Starlette's handler for ``Exception`` answers too but
    then re-raises, and the server closes the keep-alive connection.) ``on_error`` is told of each."""

    def __init__(self, app: Any, on_error: Any = None) -> None:
        self.app = app
        self.on_error = on_error

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            log.exception("internal error on %s", scope.get("path"))
            if self.on_error is not None:
                self.on_error(exc, scope.get("path"))
            if started:  # part of an answer is out: nothing sensible can follow it
                raise
            response = JSONResponse(
                {"detail": "internal error; the service log has the details"}, status_code=500
            )
            await response(scope, receive, send)


class Health:
    """Whether the model can predict: the self-check at start-up and the run of internal errors since
    the last good prediction (``/health`` answers 503 "failing" when either says it cannot)."""

    def __init__(self) -> None:
        self.self_check_error: str | None = None
        self.consecutive_failures = 0
        self.internal_errors = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.consecutive_failures += 1
            self.internal_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"

    def succeeded(self) -> None:
        with self._lock:
            self.consecutive_failures = 0

    def report(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            body: dict[str, Any] = {
                "internal_errors": self.internal_errors,
                "consecutive_failures": self.consecutive_failures,
            }
            problems = []
            if self.self_check_error:
                problems.append(f"the start-up self-check failed: {self.self_check_error}")
            if self.consecutive_failures >= FAILING_AFTER:
                problems.append(
                    f"the last {self.consecutive_failures} predictions failed with an internal error "
                    f"(last: {self.last_error})"
                )
            if problems:
                body["detail"] = "; ".join(problems)
            return not problems, body


def _form_schema(predictor: Predictor) -> dict[str, Any]:
    """OpenAPI schema of the multipart body for this model (shown on /docs)."""
    props: dict[str, Any] = {}
    for m in predictor.modalities:
        if m in IMAGE_LETTERS:
            key = modality_name(m)
            props[key] = {"type": "string", "format": "binary", "description": f"{key} image file"}
    for f in predictor.metadata_fields():
        if f["kind"] == "numeric":
            if f.get("encoding") == "linear":
                what = f"a number, interpolated between the knots {f['bins']}"
            else:
                what = f"a number (binned at {f['bins']}) or one of the bin labels {f['values']}"
            props[f["name"]] = {"type": "string", "description": what}
        else:
            props[f["name"]] = {"type": "string", "enum": f["values"]}
            if f.get("description"):
                props[f["name"]]["description"] = f["description"]
    props["explain"] = {"type": "boolean", "default": False, "description": "return attention overlays"}
    props["top_k"] = {"type": "integer", "default": 3, "minimum": 1}
    return {
        "required": True,
        "content": {"multipart/form-data": {"schema": {"type": "object", "properties": props}}},
    }


class Service:
    """The handlers of the service's routes around one predictor, and the state they share: the
    inference pool, the upload gate, the health record and the limits. :func:`create_app` builds one
    and registers its methods as the routes."""

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_upload_bytes: int,
        pixels: int,
        workers: int,
        queue_size: int,
        default_top_k: int,
        max_uploads: int,
        read_timeout: float | None,
        body_timeout: float | None,
    ) -> None:
        self.predictor = predictor
        self.max_upload_bytes = max_upload_bytes
        self.pixels = pixels
        self.workers = workers
        self.queue_size = queue_size
        self.max_uploads = max_uploads
        self.read_timeout = read_timeout
        self.body_timeout = body_timeout
        self.pool = InferencePool(workers=workers, queue_size=queue_size)
        self.uploads = UploadGate(max_uploads)
        self.health_state = Health()
        self.n_classes = len(predictor.tasks[0].classes)
        self.default_top_k = max(1, min(default_top_k, self.n_classes))
        self.image_fields = tuple(modality_name(m) for m in predictor.modalities if m in IMAGE_LETTERS)
        self.accepted = ", ".join(modality_names(predictor.modalities))
        self.description = predictor.describe()

    @asynccontextmanager
    async def lifespan(self, app: FastAPI):
        log.info(
            "serving %s (%s, modalities %s): %d worker(s), queue %d, uploads up to %d bytes",
            self.predictor.identity.get("file", "a model"),
            self.predictor.identity.get("preset"),
            self.predictor.modalities,
            self.workers,
            self.queue_size,
            self.max_upload_bytes,
        )
        yield
        self.pool.shutdown()

    def parse_case(
        self, fields: dict[str, str], files: dict[str, bytes], query: dict[str, str]
    ) -> CaseRequest:
        predictor, accepted = self.predictor, self.accepted
        case = CaseRequest(top_k=self.default_top_k)
        unknown_query = sorted(set(query) - set(OPTION_FIELDS))
        if unknown_query:
            raise ServingError(
                422, f"unknown query parameter(s) {unknown_query}; accepted: {list(OPTION_FIELDS)}"
            )
        options = {**query, **{k: v for k, v in fields.items() if k in OPTION_FIELDS}}
        if "explain" in options:
            case.explain = _flag("explain", options["explain"])
            if case.explain and not self.predictor.can_explain:
                raise ServingError(
                    422,
                    f"explain: the {self.predictor.backend} backend gives no attention maps; "
                    "the service must run the checkpoint with the eager backend for them",
                    "explain",
                )
        if "top_k" in options:
            case.top_k = _top_k(options["top_k"], self.n_classes)
        for key in files:
            if key not in self.image_fields:
                raise ServingError(
                    422, f"{key}: the model was trained without {key} images; it takes {accepted}", key
                )
        case.images = dict(files)
        for key in IMAGE_FIELDS:
            if not is_blank(fields.get(key)):
                raise ServingError(422, f"{key}: expected an image file upload, got a text field", key)
        meta = {k: v for k, v in fields.items() if k not in OPTION_FIELDS + IMAGE_FIELDS}
        given = {k: v for k, v in meta.items() if not is_blank(v)}
        if "M" not in predictor.modalities:
            if meta:
                name = sorted(meta)[0]
                raise ServingError(
                    422,
                    f"{name}: unknown form field; the model was trained without metadata "
                    f"(it takes {accepted})",
                    name,
                )
        else:
            try:
                case.metadata_used = predictor.schema.validate(meta)
            except ValueError as e:
                bad = [k for k in meta if k not in predictor.schema]
                bad += [
                    k
                    for k in meta
                    if k in predictor.schema and predictor.schema[k].lookup(meta[k])[1] == "unseen"
                ]
                raise ServingError(422, str(e), bad[0] if bad else None) from None
            case.metadata = meta
        if not case.images and not given:
            raise ServingError(400, f"empty request: give at least one of {accepted}")
        return case

    def run_case(self, case: CaseRequest) -> dict[str, Any]:
        predictor = self.predictor
        start = time.perf_counter()
        images = {k: decode_image(v, k, self.pixels) for k, v in case.images.items()}
        try:
            result = predictor.predict(
                clinical=images.get("clinical"),
                dermoscopy=images.get("dermoscopy"),
                metadata=case.metadata,
                top_k=case.top_k,
                explain=case.explain,
            )
        except ValueError as e:  # anything the checks above did not catch
            raise ServingError(422, str(e)) from None
        body = result.to_dict()
        if case.metadata_used is not None:
            body["metadata_used"] = case.metadata_used
        if case.explain:
            overlays = make_overlays(result.explanation, predictor.input_sizes, **images)
            body["overlays"] = [o.to_dict() for o in overlays]
        body["model"] = {k: predictor.identity.get(k) for k in ("file", "sha256", "preset")}
        body["seconds"] = round(time.perf_counter() - start, 4)
        body["disclaimer"] = DISCLAIMER
        self.health_state.succeeded()
        return body

    # --- routes -------------------------------------------------------------------------------------
    def health(self) -> JSONResponse:
        """Whether the model can predict (its self-check, and its last predictions); the load."""
        ok, state = self.health_state.report()
        body = {
            "status": "ok" if ok else "failing",
            "model": self.predictor.identity.get("sha256"),
            **state,
            "pool": self.pool.stats(),
            "uploads": self.uploads.stats(),
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    def model_info(self) -> dict[str, Any]:
        """Labels, tasks, modalities, metadata fields with allowed values, input sizes, checkpoint, limits."""
        return {
            **self.description,
            "image_fields": list(self.image_fields),
            "limits": {
                "max_upload_bytes": self.max_upload_bytes,
                "max_image_pixels": self.pixels,
                "workers": self.workers,
                "queue_size": self.queue_size,
                "max_uploads": self.max_uploads,
                "read_timeout_s": self.read_timeout,
                "body_timeout_s": self.body_timeout,
            },
            "disclaimer": DISCLAIMER,
        }

    async def predict(self, request: Request) -> JSONResponse:
        """One case: any subset of the model's modalities. Returns probabilities, top-k and, with
        ``explain=true``, attention overlays (PNG data URLs)."""
        self.uploads.enter()
        try:
            form = await read_form(
                request.headers.get("content-type"),
                request.stream(),
                max_file_bytes=self.max_upload_bytes,
                file_fields=IMAGE_FIELDS,
                read_timeout=self.read_timeout,
                body_timeout=self.body_timeout,
            )
        except UploadError as e:
            headers = None
            if e.status == 408:  # the rest of the body may still come: do not read it as a request
                self.uploads.timed_out += 1
                headers = {"Connection": "close"}
            raise ServingError(e.status, e.detail, e.field, headers) from None
        except ClientDisconnect:
            raise ServingError(400, "the client went away before its request was read") from None
        finally:
            self.uploads.leave()
        files = {k: f.data for k, f in form.files.items()}
        case = self.parse_case(form.fields, files, dict(request.query_params))
        try:  # only a complete, valid request waits for a worker
            slot = self.pool.slot()
        except QueueFull as e:
            raise ServingError(503, str(e), headers={"Retry-After": str(e.retry_after)}) from None
        body = await slot.run(self.run_case, case)
        return JSONResponse(body)

    def page(self) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")


async def serving_error_handler(request: Request, exc: ServingError) -> JSONResponse:
    """A :class:`ServingError` as its JSON answer ``{"detail", "field"}`` with its status and headers."""
    body = {"detail": exc.detail}
    if exc.field:
        body["field"] = exc.field
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "empty request or malformed body"},
    408: {"model": ErrorBody, "description": "the body stalled or took too long to arrive"},
    413: {
        "model": ErrorBody,
        "description": "file over the upload limit or image over the pixel limit",
    },
    415: {
        "model": ErrorBody,
        "description": "not multipart, or a file that is not a decodable image",
    },
    422: {"model": ErrorBody, "description": "unknown field or value, or an untrained modality"},
    503: {
        "model": ErrorBody,
        "description": "queue full, or too many uploads at once; see the Retry-After header",
    },
}


def create_app(
    predictor: Predictor,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_image_pixels: int | None = None,
    workers: int = 1,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    default_top_k: int = 3,
    max_uploads: int = DEFAULT_MAX_UPLOADS,
    read_timeout: float | None = DEFAULT_READ_TIMEOUT,
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
    self_check: bool = True,
) -> FastAPI:
    """The service for one loaded predictor.

    ``max_upload_bytes``: per image file. ``max_image_pixels``: width x height of a decoded image
    (default: the predictor's). ``workers`` threads run decoding and inference; at most ``queue_size``
    more requests wait for them, others get 503. ``max_uploads`` request bodies are received at once
    (503 beyond); a body is cut off with 408 when the client sends nothing for ``read_timeout`` seconds
    or takes more than ``body_timeout`` in all. A request takes its place in the pool only once its
    body is complete and valid. ``self_check``: predict a made-up case now; ``GET /health`` reports
    (503, "failing") a model that cannot predict, or whose last predictions all failed.
    """
    for name, value in (("read_timeout", read_timeout), ("body_timeout", body_timeout)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive (or None: no limit), got {value}")
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
    pixels = predictor.max_image_pixels if max_image_pixels is None else int(max_image_pixels)
    if not 0 < pixels <= predictor.max_image_pixels:
        raise ValueError(
            f"max_image_pixels must be in 1..{predictor.max_image_pixels:,} (the predictor's limit), "
            f"got {pixels:,}"
        )
    names = [f["name"] for f in predictor.metadata_fields()]
    clash = sorted(set(names) & set(IMAGE_FIELDS + OPTION_FIELDS))
    if clash:
        raise ValueError(f"metadata field(s) {clash} clash with the form fields of /predict")
    service = Service(
        predictor,
        max_upload_bytes=max_upload_bytes,
        pixels=pixels,
        workers=workers,
        queue_size=queue_size,
        default_top_k=default_top_k,
        max_uploads=max_uploads,
        read_timeout=read_timeout,
        body_timeout=body_timeout,
    )
    if self_check:
        try:
            predictor.self_check()
        except PredictionError as e:
            service.health_state.self_check_error = str(e)
            log.error("the model cannot predict: %s", e)

    app = FastAPI(
        title="RemixFormer++",
        description=(
            "Skin tumour diagnosis from a clinical photo, a dermoscopy image and patient metadata. "
            + DISCLAIMER
        ),
        version="1",
        lifespan=service.lifespan,
    )
    app.state.predictor = predictor
    app.state.pool = service.pool
    app.state.uploads = service.uploads
    app.state.health = service.health_state
    app.state.service = service
    app.add_middleware(
        _InternalErrors,
        on_error=lambda exc, path: service.health_state.failed(exc) if path == "/predict" else None,
    )
    app.add_middleware(_SecurityHeaders)  # outermost: its headers go on the 500s too
    app.add_exception_handler(ServingError, serving_error_handler)
    app.get("/health", tags=["service"])(service.health)
    app.get("/model", tags=["service"])(service.model_info)
    app.post(
        "/predict",
        tags=["prediction"],
        response_model=PredictionBody,
        openapi_extra={"requestBody": _form_schema(predictor)},
        responses=PREDICT_RESPONSES,
    )(service.predict)
    app.get("/", include_in_schema=False)(service.page)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

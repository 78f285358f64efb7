"""The reader-study web application (FastAPI): pages for readers and for the study's administrator.

    app = create_app(Study(StudyDatabase("sqlite:///study.db")))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Readers: ``GET /login``, ``POST /login``, ``GET /join/{token}`` and ``POST /join`` (a one-time link:
choose a password), ``GET /read`` (the current case at the current stage), ``GET
/read/image/{step}/{modality}/{i}`` (only the current step's images that its stage shows), ``POST
/read/answer``, ``POST /logout``. Admin (the admin token, given once on the sign-in page and then in
the session, or as ``Authorization: Bearer TOKEN``): ``GET /admin``, ``POST /admin/login``, ``POST
/admin/close`` and ``/admin/reopen``, ``POST /admin/readers`` and ``/admin/link`` (accounts and
one-time links), ``POST /admin/predictions`` (the model's predictions.csv, a bounded upload),
``GET /admin/export.csv`` (the reader CSV), ``GET /admin/answers.csv`` (with times), ``GET
/admin/comparison`` (readers against the model, once the study is closed). ``GET /health``.

Security: sessions are cookies signed with the study's secret key (Starlette's ``SessionMiddleware``,
itsdangerous), ``HttpOnly``, ``SameSite=Strict``, ``Secure`` with ``secure_cookies``; every form
carries the session's CSRF token, and a POST whose ``Origin`` is another site is refused; pages are
rendered by Jinja2 with autoescaping (a case id or metadata value holding HTML stays text) under a
Content-Security-Policy without scripts; form bodies are read by :func:`remixformer.serving.uploads.
read_form` under its limits (an upload over ``max_upload_bytes`` is a 413 while it streams). No
answer of a reader, label or model output is reachable from a reader's session.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import ClientDisconnect

from remixformer.serving.uploads import Form, UploadError, read_form
from remixformer.study import security
from remixformer.study.cases import describe_stage
from remixformer.study.compare import check_predictions, compare_study
from remixformer.study.db import SCHEMA_VERSION
from remixformer.study.export import details_csv_text, reader_csv_text
from remixformer.study.study import CONFIDENCE_WORDS, Reader, Study, StudyError

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
SERVING_STATIC = HERE.parent / "serving" / "static"
STATIC_FILES = {"style.css": SERVING_STATIC / "style.css", "study.css": HERE / "static" / "study.css"}
DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20  # as `remixformer serve`
DEFAULT_SESSION_DAYS = 7
COOKIE_NAME = "remixformer_study"
PAGE_CSP = (
    "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
MODALITY_NAMES = {"clinical": "Clinical photo", "dermoscopy": "Dermoscopy image"}
ANSWER_FIELDS = {"csrf", "step", "diagnosis", "confidence"}


class Refused(Exception):
    """Answer with a page (``template``, default the message page) and ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        template: str = "message.html",
        heading: str | None = None,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.template = template
        self.heading = heading
        self.headers = headers or {}
        self.context = context


class _Headers:
    """Pure ASGI middleware: security headers on every answer; pages and images are never cached."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy", PAGE_CSP.encode()),
                    (b"referrer-policy", b"same-origin"),  # no-referrer would make Origin "null"
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"max-age=300" if static else b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    study: Study,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    secure_cookies: bool = False,
    session_days: float = DEFAULT_SESSION_DAYS,
    public_url: str | None = None,
) -> FastAPI:
    """The application for one study.

    ``max_upload_bytes``: the largest file (the admin's predictions upload). ``secure_cookies``: send
    the session cookie over HTTPS only (behind a TLS proxy). ``session_days``: how long a sign-in
    lasts. ``public_url``: the address readers use (for one-time links; default: the request's).
    """
    if max_upload_bytes < 1:
        raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
    if session_days <= 0:
        raise ValueError(f"session_days must be positive, got {session_days}")
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(describe_stage=describe_stage, pct=_pct)
    comparison_lock = threading.Lock()
    comparison_cache: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        s = study.settings()
        log.info("reader study %r (%s): %d cases, stages %s", s.name, s.state, s.n_cases, list(s.stages))
        yield

    app = FastAPI(
        title="RemixFormer++ reader study",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.study = study
    app.add_middleware(
        SessionMiddleware,
        secret_key=study.secret_key,
        session_cookie=COOKIE_NAME,
        max_age=int(session_days * 86400),
        same_site="strict",
        https_only=secure_cookies,
    )
    app.add_middleware(_Headers)

    # --- pages ---------------------------------------------------------------------------------------
    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = security.new_token()
        return token

    def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        settings = study.settings()
        ctx = {
            "study_name": settings.name,
            "title": context.pop("title", settings.name),
            "csrf": csrf_token(request),
            **context,
        }
        return HTMLResponse(env.get_template(template).render(**ctx), status_code=status)

    def refused_page(request: Request, exc: Refused) -> HTMLResponse:
        ctx = dict(exc.context)
        heading = exc.heading or _STATUS_HEADINGS.get(exc.status, "Not possible")
        if exc.template == "message.html":
            ctx.setdefault("heading", heading)
            ctx.setdefault("text", exc.message)
        else:
            ctx.setdefault("error", exc.message)
        title = ctx.pop("title", None) or heading
        response = render(request, exc.template, exc.status, title=title, **ctx)
        for k, v in exc.headers.items():
            response.headers[k] = v
        return response

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> HTMLResponse:
        return await run_in_threadpool(refused_page, request, exc)

    @app.exception_handler(StudyError)
    async def _study_error(request: Request, exc: StudyError) -> HTMLResponse:
        return await run_in_threadpool(refused_page, request, Refused(exc.status, str(exc)))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return HTMLResponse("internal error; the server log has the details", status_code=500)

    # --- who is asking -------------------------------------------------------------------------------
    def session_reader(request: Request) -> Reader | None:
        s = request.session
        if s.get("role") != "reader":
            return None
        reader = study.reader(int(s.get("rid", -1)))
        if reader is None or reader.auth_version != s.get("v"):
            s.clear()  # a replaced link or password ended this session
            return None
        return reader

    def bearer(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def require_reader(request: Request) -> Reader:
        reader = session_reader(request)
        if reader is not None:
            return reader
        if request.session.get("role") == "admin" or bearer(request):
            raise Refused(403, "these pages are for readers; the administrator's session cannot read cases")
        raise Refused(401, "please sign in to continue", template="login.html", title="Sign in")

    def require_admin(request: Request) -> str:
        """``"bearer"`` or ``"session"``; 401 without the admin token, 403 for a reader's session."""
        token = bearer(request)
        if token is not None:
            if study.check_admin_token(token) is None:
                raise Refused(
                    401, "the admin token is not valid", headers={"WWW-Authenticate": 'Bearer realm="admin"'}
                )
            return "bearer"
        s = request.session
        if s.get("role") == "admin" and s.get("v") == study.admin_version():
            return "session"
        if session_reader(request) is not None:
            raise Refused(403, "the admin pages need the admin token; a reader's session cannot open them")
        raise Refused(
            401,
            "the admin pages need the admin token",
            template="admin_login.html",
            title="Administrator sign-in",
            area="administration",
            headers={"WWW-Authenticate": 'Bearer realm="admin"'},
        )

    def check_form(request: Request, form: Form, how: str = "session") -> None:
        """Refuse a POST from another site: a foreign ``Origin``, or a CSRF token other than the
        session's (skipped for the admin's bearer-token requests, which carry no cookie)."""
        origin = request.headers.get("origin")
        if origin is not None:
            allowed = {request.headers.get("host", "")} | (
                {urlsplit(public_url).netloc} if public_url else set()
            )
            if origin == "null" or urlsplit(origin).netloc not in allowed:
                raise Refused(
                    403,
                    f"a form sent from another site ({origin}) is refused"
                    + ("" if public_url else "; behind a proxy, give the server --public-url"),
                )
        if how == "bearer":
            return
        if not security.same_secret(form.fields.get("csrf"), request.session.get("csrf")):
            raise Refused(
                403,
                "the form has expired or did not come from this site (CSRF check failed); "
                "reload the page and try again",
            )

    async def read_fields(request: Request, files: tuple[str, ...] = ()) -> Form:
        try:
            return await read_form(
                request.headers.get("content-type"),
                request.stream(),
                max_file_bytes=max_upload_bytes,
                file_fields=files,
            )
        except UploadError as e:
            raise Refused(e.status, e.detail) from None
        except ClientDisconnect:
            raise Refused(400, "the client went away before its request was read") from None

    def reader_area(request: Request, reader: Reader) -> dict[str, Any]:
        return {"who": reader.name, "logout_action": "/logout", "area": f"reader {reader.name}"}

    def admin_area() -> dict[str, Any]:
        return {"who": "the administrator", "logout_action": "/admin/logout", "area": "administration"}

    def link_url(request: Request, token: str) -> str:
        base = public_url.rstrip("/") if public_url else str(request.base_url).rstrip("/")
        return f"{base}/join/{token}"

    # --- service -------------------------------------------------------------------------------------
    @app.get("/health")
    def health() -> JSONResponse:
        try:
            study.db.ping()
            s = study.settings()
        except Exception as e:  # the database went away
            log.error("health check: %s", e)
            return JSONResponse({"status": "error", "detail": "the database cannot be read"}, status_code=503)
        return JSONResponse(
            {"status": "ok", "study": s.name, "state": s.state, "schema_version": SCHEMA_VERSION}
        )

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        path = STATIC_FILES.get(name)
        if path is None:
            raise Refused(404, f"no file {name!r} here")
        return FileResponse(path, media_type="text/css")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    # --- readers -------------------------------------------------------------------------------------
    @app.get("/")
    def home(request: Request) -> Response:
        if session_reader(request) is not None:
            return RedirectResponse("/read", status_code=303)
        if request.session.get("role") == "admin":
            return RedirectResponse("/admin", status_code=303)
        return render(request, "login.html", title="Sign in")

    @app.get("/login")
    def login_page(request: Request) -> HTMLResponse:
        return render(request, "login.html", title="Sign in")

    def _login(request: Request, form: Form) -> Response:
        check_form(request, form)
        name = form.fields.get("name", "").strip()
        reader = study.login(name, form.fields.get("password", ""))
        if reader is None:
            raise Refused(
                401, "the reader name or the password is not right", template="login.html", name=name
            )
        request.session.clear()
        request.session.update(role="reader", rid=reader.id, v=reader.auth_version, csrf=security.new_token())
        log.info("reader %s signed in", reader.name)
        return RedirectResponse("/read", status_code=303)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await read_fields(request)
        return await run_in_threadpool(_login, request, form)

    @app.get("/join/{token}")
    def join_page(request: Request, token: str) -> HTMLResponse:
        reader = study.link_reader(token)
        if reader is None:
            raise Refused(
                404,
                "this link is not valid: it was used already or replaced by a newer one. Sign in with "
                "your name and password, or ask the study's administrator for a new link.",
                heading="Link not valid",
                link="/login",
                link_text="Sign in",
            )
        return render(
            request,
            "join.html",
            title="Welcome",
            reader_name=reader.name,
            token=token,
            min_password=security.MIN_PASSWORD_LENGTH,
        )

    def _join(request: Request, form: Form) -> Response:
        check_form(request, form)
        token = form.fields.get("token", "")
        password = form.fields.get("password", "")
        reader = study.link_reader(token)
        if reader is None:
            raise Refused(404, "this link is not valid (used or replaced)", heading="Link not valid")
        problem = None
        if password != form.fields.get("password2", ""):
            problem = "the two passwords differ"
        else:
            try:
                security.check_password_rules(password)
            except ValueError as e:
                problem = str(e)
        if problem:
            raise Refused(
                422,
                problem,
                template="join.html",
                reader_name=reader.name,
                token=token,
                min_password=security.MIN_PASSWORD_LENGTH,
            )
        reader = study.redeem_link(token, password)
        request.session.clear()
        request.session.update(role="reader", rid=reader.id, v=reader.auth_version, csrf=security.new_token())
        return RedirectResponse("/read", status_code=303)

    @app.post("/join")
    async def join(request: Request) -> Response:
        form = await read_fields(request)
        return await run_in_threadpool(_join, request, form)

    def _logout(request: Request, form: Form) -> Response:
        check_form(request, form)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        form = await read_fields(request)
        return await run_in_threadpool(_logout, request, form)

    @app.get("/read")
    def read(request: Request) -> HTMLResponse:
        reader = require_reader(request)
        settings = study.settings()
        answered, total = study.progress_of(reader.id)
        summary = f"{answered} of {total} answers given."
        if answered >= total:
            return render(
                request,
                "message.html",
                title="Finished",
                heading="All cases read: thank you",
                text=f"You have answered all {total} steps ({reader.n_cases} cases, {len(study.stages)} "
                "stages each). Your answers are stored; you can close this page.",
                progress=summary,
                body_class="finished",
                **reader_area(request, reader),
            )
        if not settings.is_open:
            return render(
                request,
                "message.html",
                title="Study closed",
                heading="The study is closed",
                text="No more answers are taken. Thank you for taking part.",
                progress=summary,
                **reader_area(request, reader),
            )
        view = study.case_view(reader.id)
        if view is None:  # finished in between
            return RedirectResponse("/read", status_code=303)  # type: ignore[return-value]
        return render(
            request,
            "read.html",
            title=f"Case {view.step.case_number} of {view.step.n_cases}",
            step=view.step,
            view=view,
            stage_words=describe_stage(view.step.stage),
            classes=study.classes,
            confidence=sorted(CONFIDENCE_WORDS.items()),
            modality_names=MODALITY_NAMES,
            letters={"clinical": "C", "dermoscopy": "D"},
            new_letters=_new_letters(study.stages, view.step.stage_number),
            notice=request.session.pop("notice", None),
            **reader_area(request, reader),
        )

    @app.get("/read/image/{step}/{modality}/{index}")
    def read_image(request: Request, step: int, modality: str, index: int) -> Response:
        reader = require_reader(request)
        media_type, data = study.image(reader.id, step, modality, index)
        return Response(data, media_type=media_type)

    def _answer(request: Request, form: Form) -> Response:
        reader = require_reader(request)
        check_form(request, form)
        unknown = sorted(set(form.fields) - ANSWER_FIELDS)
        if unknown:
            raise Refused(422, f"unexpected form field(s) {unknown}; expected {sorted(ANSWER_FIELDS)}")
        try:
            step = int(form.fields.get("step", ""))
        except ValueError:
            raise Refused(422, f"step: expected a number, got {form.fields.get('step')!r}") from None
        diagnosis = form.fields.get("diagnosis", "")
        if not diagnosis:
            raise Refused(
                422,
                "no diagnosis chosen; choose one of the classes",
                link="/read",
                link_text="Back to the case",
            )
        raw = form.fields.get("confidence", "").strip()
        try:
            confidence = int(raw) if raw else None
        except ValueError:
            raise Refused(422, f"confidence: expected a number from 1 to 5, got {raw!r}") from None
        try:
            study.answer(reader.id, step, diagnosis, confidence)
        except StudyError as e:
            extra = (
                {"link": "/read", "link_text": "Continue with the current stage"} if e.status == 409 else {}
            )
            raise Refused(e.status, str(e), **extra, **reader_area(request, reader)) from None
        return RedirectResponse("/read", status_code=303)

    @app.post("/read/answer")
    async def answer(request: Request) -> Response:
        form = await read_fields(request)
        return await run_in_threadpool(_answer, request, form)

    # --- admin ---------------------------------------------------------------------------------------
    def dashboard(request: Request, status: int = 200, **extra: Any) -> HTMLResponse:
        return render(
            request,
            "admin.html",
            status,
            title="Administration",
            settings=study.settings(),
            counts=study.counts(),
            progress=study.progress(),
            cases=study.case_rows(),
            max_upload=_size(max_upload_bytes),
            **admin_area(),
            **extra,
        )

    @app.get("/admin")
    def admin(request: Request) -> HTMLResponse:
        require_admin(request)
        return dashboard(request, notice=request.session.pop("notice", None))

    def _admin_login(request: Request, form: Form) -> Response:
        check_form(request, form)
        version = study.check_admin_token(form.fields.get("token", "").strip())
        if version is None:
            raise Refused(
                401, "the admin token is not right", template="admin_login.html", area="administration"
            )
        request.session.clear()
        request.session.update(role="admin", v=version, csrf=security.new_token())
        log.info("administrator signed in")
        return RedirectResponse("/admin", status_code=303)

    @app.post("/admin/login")
    async def admin_login(request: Request) -> Response:
        form = await read_fields(request)
        return await run_in_threadpool(_admin_login, request, form)

    def admin_post(handler):
        async def endpoint(request: Request) -> Response:
            how = require_admin(request)
            form = await read_fields(request)

            def run() -> Response:
                check_form(request, form, how)
                return handler(request, form)

            return await run_in_threadpool(run)

        return endpoint

    def _admin_logout(request: Request, form: Form) -> Response:
        request.session.clear()
        return RedirectResponse("/admin", status_code=303)

    def _close(request: Request, form: Form) -> Response:
        study.set_state("closed")
        request.session["notice"] = "The study is closed: readers can no longer answer."
        return RedirectResponse("/admin", status_code=303)

    def _reopen(request: Request, form: Form) -> Response:
        study.set_state("open")
        request.session["notice"] = "The study is open again."
        return RedirectResponse("/admin", status_code=303)

    def _add_reader(request: Request, form: Form) -> Response:
        try:
            reader, token = study.add_reader(
                form.fields.get("name", ""), form.fields.get("group", "") or "reader"
            )
        except ValueError as e:
            return dashboard(request, 422, error=str(e))
        return dashboard(request, new_link={"name": reader.name, "url": link_url(request, token or "")})

    def _new_link(request: Request, form: Form) -> Response:
        name = form.fields.get("name", "")
        token = study.new_link(name)
        return dashboard(request, new_link={"name": name, "url": link_url(request, token)})

    def _predictions(request: Request, form: Form) -> Response:
        upload = form.files.get("predictions")
        if upload is None or not upload.data:
            return dashboard(
                request, 422, error="no file chosen: expected the predictions.csv of remixformer evaluate"
            )
        try:
            text = upload.data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return dashboard(request, 422, error="the predictions file is not UTF-8 text")
        name = Path(upload.filename or "predictions.csv").name[:200]
        try:
            _, notes = check_predictions(study, text, name)
        except StudyError as e:
            return dashboard(request, 422, error=str(e))
        study.set_predictions(name, text)
        comparison_cache.clear()
        request.session["notice"] = " ".join([f"Model predictions {name} stored.", *notes])
        return RedirectResponse("/admin", status_code=303)

    app.post("/admin/logout")(admin_post(_admin_logout))
    app.post("/admin/close")(admin_post(_close))
    app.post("/admin/reopen")(admin_post(_reopen))
    app.post("/admin/readers")(admin_post(_add_reader))
    app.post("/admin/link")(admin_post(_new_link))

    @app.post("/admin/predictions")
    async def predictions(request: Request) -> Response:
        how = require_admin(request)
        form = await read_fields(request, files=("predictions",))

        def run() -> Response:
            check_form(request, form, how)
            return _predictions(request, form)

        return await run_in_threadpool(run)

    @app.get("/admin/export.csv")
    def export_csv(request: Request, stage: str | None = None) -> Response:
        require_admin(request)
        name = f"readers_{stage}.csv" if stage else "readers.csv"
        return Response(
            reader_csv_text(study, stage),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/admin/answers.csv")
    def answers_csv(request: Request) -> Response:
        require_admin(request)
        return Response(
            details_csv_text(study),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="answers.csv"'},
        )

    def comparison(request: Request) -> Any:
        settings = study.settings()
        if settings.is_open:
            raise Refused(
                409,
                "the comparison with the model is shown once the study is closed",
                link="/admin",
                link_text="Back to the study",
                **admin_area(),
            )
        key = f"{study.counts()['answers']}|{settings.predictions_at}|{settings.closed_at}"
        with comparison_lock:
            if key not in comparison_cache:
                try:
                    result = compare_study(study)
                except StudyError as e:
                    raise Refused(
                        409, str(e), link="/admin", link_text="Back to the study", **admin_area()
                    ) from None
                comparison_cache.clear()
                comparison_cache[key] = result
            return comparison_cache[key]

    @app.get("/admin/comparison")
    def comparison_page(request: Request) -> HTMLResponse:
        require_admin(request)
        result = comparison(request)
        return render(
            request, "admin_comparison.html", title="Readers and the model", result=result, **admin_area()
        )

    @app.get("/admin/comparison/{name}.png")
    def comparison_figure(request: Request, name: str) -> Response:
        require_admin(request)
        png = comparison(request).figures.get(name)
        if png is None:
            raise Refused(404, f"no figure {name!r}")
        return Response(png, media_type="image/png")

    return app


_STATUS_HEADINGS = {
    400: "Bad request",
    401: "Sign-in needed",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible now",
    413: "Too large",
    415: "Wrong kind of request",
    422: "Not accepted",
}


def _new_letters(stages: tuple[str, ...], stage_number: int) -> set[str]:
    """Modality letters a stage shows for the first time for its case (none at the first stage)."""
    if stage_number <= 1:
        return set()
    return set(stages[stage_number - 1]) - set(stages[stage_number - 2])


def _pct(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if v != v else f"{100 * v:.1f} %"


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 1024:g} KiB"

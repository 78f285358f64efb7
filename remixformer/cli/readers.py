"""``remixformer readers``: run a reader study (the paper's Fig. 11) as a web application.

    remixformer readers init   --db sqlite:///study.db --cases MANIFEST [--split test] [--stages C,CM,CDM]
    remixformer readers add    --db sqlite:///study.db d001 d002 --group specialist
    remixformer readers serve  --db sqlite:///study.db [--cases MANIFEST] [--port 8000]
    remixformer readers status --db sqlite:///study.db
    remixformer readers close  --db sqlite:///study.db
    remixformer readers export --db sqlite:///study.db --out readers.csv

``--db`` takes any SQLAlchemy URL (a plain path is a SQLite file). docs/readers.md describes the study,
the pages and the files.
"""

from __future__ import annotations

import argparse
import os
import sys

ADMIN_TOKEN_ENV = "REMIXFORMER_ADMIN_TOKEN"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "readers",
        help="reader study web application: set-up, serve, export (Fig. 11)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp = p.add_subparsers(dest="readers_command", metavar="COMMAND", required=True)

    def db_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--db",
            required=True,
            metavar="URL",
            help="the study's database: sqlite:///study.db, a file path, or any SQLAlchemy URL",
        )

    def setup_args(q: argparse.ArgumentParser, required: bool) -> None:
        g = q.add_argument_group(
            "study set-up" + ("" if required else " (when the database has no study yet)")
        )
        g.add_argument("--cases", required=required, metavar="MANIFEST", help="manifest CSV of the cases")
        g.add_argument("--schema", help="the manifest's schema file (default: schema.json beside it)")
        g.add_argument("--split", choices=["train", "val", "test"], help="only the cases of this split")
        g.add_argument("--max-cases", type=int, help="the first N eligible cases in manifest order")
        g.add_argument("--stages", help="comma-separated stages of letters C, D, M (default C,CM,CDM)")
        g.add_argument(
            "--classes", help="comma-separated answers (default: the manifest's diagnosis classes)"
        )
        g.add_argument("--randomise", action="store_true", help="a random case order per reader")
        g.add_argument("--seed", type=int, default=0, help="seed of the random orders (default 0)")
        g.add_argument("--name", help="the study's title on its pages (default: 'Reader study')")
        g.add_argument(
            "--max-side",
            type=int,
            default=2048,
            help="shrink longer images to this side (0: keep; default 2048)",
        )
        g.add_argument("--max-image-pixels", type=int, help="width x height limit (default 100,000,000)")

    init = sp.add_parser("init", help="set up a study in a new database and print the admin token")
    db_arg(init)
    setup_args(init, required=True)
    init.set_defaults(func=run_init)

    serve = sp.add_parser("serve", help="serve the study (sets it up first when the database has none)")
    db_arg(serve)
    setup_args(serve, required=False)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    serve.add_argument(
        "--predictions", help="the model's predictions.csv (remixformer evaluate) for the admin comparison"
    )
    serve.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest upload (predictions; default 20 MiB)"
    )
    serve.add_argument("--secure-cookies", action="store_true", help="session cookie over HTTPS only")
    serve.add_argument("--session-days", type=float, default=7.0, help="how long a sign-in lasts (default 7)")
    serve.add_argument("--public-url", help="the address readers use, for one-time links (default: as asked)")
    serve.set_defaults(func=run_serve)

    add = sp.add_parser("add", help="reader accounts: one-time links (default) or a password")
    db_arg(add)
    add.add_argument("names", nargs="+", metavar="NAME", help="reader names (letters, digits, _ . -)")
    add.add_argument("--group", default="reader", help="the readers' group, e.g. specialist (default reader)")
    add.add_argument(
        "--password",
        action="store_true",
        help="set a password instead of a link (one NAME; asked for, or read from standard input)",
    )
    add.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help=f"server address (default {DEFAULT_BASE_URL})"
    )
    add.set_defaults(func=run_add)

    link = sp.add_parser("link", help="a new one-time link for a reader (ends their password and sessions)")
    db_arg(link)
    link.add_argument("name", metavar="NAME")
    link.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help=f"server address (default {DEFAULT_BASE_URL})"
    )
    link.set_defaults(func=run_link)

    token = sp.add_parser("admin-token", help="make a new admin token (the old one stops working)")
    db_arg(token)
    token.set_defaults(func=run_admin_token)

    for name, what in (("close", "close the study: no more answers"), ("reopen", "reopen a closed study")):
        q = sp.add_parser(name, help=what)
        db_arg(q)
        q.set_defaults(func=run_state, state="closed" if name == "close" else "open")

    status = sp.add_parser("status", help="the study and each reader's progress")
    db_arg(status)
    status.set_defaults(func=run_status)

    export = sp.add_parser("export", help="write the reader CSV that `remixformer analyze readers` reads")
    db_arg(export)
    export.add_argument(
        "--out", required=True, help="reader CSV to write (reader_id, group, case_id, stage, answer)"
    )
    export.add_argument("--stage", help="only this stage's answers")
    export.add_argument("--details", metavar="FILE", help="also write every answer with confidence and times")
    export.set_defaults(func=run_export)


# --- helpers ----------------------------------------------------------------------------------------
def _open(args: argparse.Namespace):
    from remixformer.study import Study, StudyDatabase

    return Study(StudyDatabase(args.db))


def _prepare(args: argparse.Namespace):
    from remixformer.data.config import DEFAULT_MAX_IMAGE_PIXELS
    from remixformer.study.cases import DEFAULT_STAGES, cases_from_manifest, parse_stages

    stages = parse_stages(args.stages) if args.stages else DEFAULT_STAGES
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    prepared = cases_from_manifest(
        args.cases,
        args.schema,
        stages=stages,
        split=args.split,
        max_cases=args.max_cases,
        classes=classes,
        max_image_pixels=args.max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS,
    )
    return prepared, stages


def _create(args: argparse.Namespace):
    """Set up the study of ``args`` in a database without one; prints what it did."""
    from remixformer.study import Study, StudyDatabase

    if args.max_side < 0:
        raise ValueError(f"--max-side must be >= 0, got {args.max_side}")
    prepared, stages = _prepare(args)
    db = StudyDatabase(args.db, create=True)
    n = len(prepared.cases)
    print(
        f"setting up the study: {n} cases, stages {', '.join(stages)}, classes {', '.join(prepared.classes)}"
    )
    for note in prepared.notes:
        print(f"note: {note}")

    def progress(i: int, total: int) -> None:
        if i == total or i % 50 == 0:
            print(f"  images of {i}/{total} cases stored", flush=True)

    try:
        study = Study.create(
            db,
            prepared,
            name=args.name or "Reader study",
            stages=stages,
            randomise=args.randomise,
            seed=args.seed,
            max_side=args.max_side or None,
            max_image_pixels=args.max_image_pixels,
            progress=progress,
        )
    except BaseException:
        db.close()
        raise
    return study


def _has_study(url: str) -> bool:
    from remixformer.study.db import NoStudyError, StudyDatabase

    try:
        StudyDatabase(url).close()
    except NoStudyError:
        return False
    return True


# --- commands ---------------------------------------------------------------------------------------
def run_init(args: argparse.Namespace) -> int:
    if _has_study(args.db):
        raise ValueError(
            f"{args.db}: already holds a study; use another database, or `readers serve` to run it"
        )
    study = _create(args)
    token = study.set_admin_token(os.environ.get(ADMIN_TOKEN_ENV) or None)
    print(f"study ready in {study.db.shown_url}")
    if os.environ.get(ADMIN_TOKEN_ENV):
        print(f"admin token: the one in {ADMIN_TOKEN_ENV}")
    else:
        print(f"admin token (shown only now; keep it secret): {token}")
    print("next: `remixformer readers add --db URL NAME ...` for reader accounts, then `readers serve`")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from remixformer.study.app import create_app

    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if not 0 <= args.port < 65536:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if _has_study(args.db):
        study = _open(args)
        if args.cases:
            _check_same_cases(args, study)
        print(f"study {study.settings().name!r} in {study.db.shown_url}: resuming")
    else:
        if not args.cases:
            raise ValueError(f"{args.db}: no study in this database; give --cases MANIFEST to set one up")
        study = _create(args)
    env_token = os.environ.get(ADMIN_TOKEN_ENV)
    if env_token:
        study.set_admin_token(env_token)
        print(f"admin token: the one in {ADMIN_TOKEN_ENV}")
    elif not study.settings().has_admin_token:
        print(f"admin token (shown only now; keep it secret): {study.set_admin_token()}")
    else:
        print("admin token: as set before (`remixformer readers admin-token` makes a new one)")
    if args.predictions:
        _store_predictions(study, args.predictions)
    app = create_app(
        study,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        secure_cookies=args.secure_cookies,
        session_days=args.session_days,
        public_url=args.public_url,
    )
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from None
    port = sock.getsockname()[1]
    s = study.settings()
    counts = study.counts()
    print(
        f"{s.n_cases} cases, stages {', '.join(s.stages)}, {counts['readers']} reader(s), "
        f"{counts['answers']} answer(s) so far; the study is {s.state}"
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.secure_cookies:
        print(f"warning: listening on {args.host} without --secure-cookies: put it behind an HTTPS proxy")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"readers: http://{host}:{port}/   admin: http://{host}:{port}/admin", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        study.db.close()
    return 0


def _check_same_cases(args: argparse.Namespace, study) -> None:
    """``serve --cases`` on a database that has a study: the manifest must give the same cases."""
    prepared, stages = _prepare(args)
    given = [c.case_id for c in prepared.cases]
    stored = study.case_ids()
    if given != stored:
        extra = [c for c in given if c not in set(stored)]
        gone = [c for c in stored if c not in set(given)]
        raise ValueError(
            f"{args.db}: already holds a study whose {len(stored)} cases differ from the {len(given)} that "
            f"--cases gives (new: {extra[:5]}, missing: {gone[:5]}"
            f"{', order differs' if not extra and not gone else ''}); "
            "serve it without --cases, or set up the new study in another database"
        )
    if args.stages and tuple(stages) != tuple(study.stages):
        raise ValueError(
            f"--stages {args.stages}: the study in {args.db} has stages {','.join(study.stages)}"
        )


def _store_predictions(study, path: str) -> None:
    from pathlib import Path

    from remixformer.study.compare import check_predictions

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--predictions {path}: no such file")
    text = p.read_text(encoding="utf-8-sig")
    _, notes = check_predictions(study, text, p.name)
    study.set_predictions(p.name, text)
    print(f"model predictions {p.name} stored (shown to the admin once the study is closed)")
    for note in notes:
        print(f"note: {note}")


def run_add(args: argparse.Namespace) -> int:
    study = _open(args)
    if args.password:
        if len(args.names) != 1:
            raise ValueError("--password sets the password of one reader; give one NAME")
        password = _read_password()
        reader, _ = study.add_reader(args.names[0], args.group, password=password)
        print(f"reader {reader.name} ({reader.group}) added with a password")
        return 0
    base = args.base_url.rstrip("/")
    for name in args.names:
        reader, token = study.add_reader(name, args.group)
        print(f"{reader.name} ({reader.group}): {base}/join/{token}")
    print("each link works once (the reader chooses a password there); send each privately")
    return 0


def _read_password() -> str:
    import getpass

    from remixformer.study.security import check_password_rules

    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the two passwords differ")
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    check_password_rules(first)
    return first


def run_link(args: argparse.Namespace) -> int:
    study = _open(args)
    token = study.new_link(args.name)
    print(f"{args.name}: {args.base_url.rstrip('/')}/join/{token}")
    print("the reader's password and sessions no longer work; their answers stay")
    return 0


def run_admin_token(args: argparse.Namespace) -> int:
    study = _open(args)
    print(f"new admin token (shown only now; keep it secret): {study.set_admin_token()}")
    return 0


def run_state(args: argparse.Namespace) -> int:
    study = _open(args)
    study.set_state(args.state)
    print(f"the study is {args.state}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    study = _open(args)
    s = study.settings()
    counts = study.counts()
    print(f"{s.name}: {s.state}; {s.n_cases} cases; stages {', '.join(s.stages)}")
    print(f"classes: {', '.join(s.classes)}")
    print(f"source: {s.source}")
    for note in s.notes:
        print(f"note: {note}")
    print(f"{counts['readers']} reader(s), {counts['answers']} answer(s)")
    rows = study.progress()
    if rows:
        print(f"  {'reader':16s} {'group':14s} {'answers':>11s} {'cases':>9s}  last answer")
        for r in rows:
            done = " done" if r["finished"] else ""
            print(
                f"  {r['reader_id']:16s} {r['group']:14s} {r['answered']:>5d}/{r['total']:<5d} "
                f"{r['cases_done']:>4d}/{r['n_cases']:<4d}  {r['last_answer_at'] or '-'}{done}"
                f"{'  (link not used yet)' if r['account'] == 'link not used yet' else ''}"
            )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from remixformer.study.export import write_details_csv, write_reader_csv

    study = _open(args)
    n = write_reader_csv(study, args.out, args.stage)
    print(f"wrote {n} answer(s) to {args.out}")
    if args.details:
        write_details_csv(study, args.details, args.stage)
        print(f"wrote {n} answer(s) with confidence and times to {args.details}")
    if study.settings().is_open:
        print("note: the study is still open; answers may still come")
    return 0

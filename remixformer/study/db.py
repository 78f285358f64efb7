"""The reader study's database: tables, engine, transactions and the schema version.

Any SQLAlchemy URL works (``sqlite:///study.db``, ``postgresql+psycopg://user@host/db``); a plain path
is a SQLite file. The schema is versioned: the ``study_meta`` table holds ``schema_version``, and a
database written by another version is refused with a message naming both versions (there is only
version 1 so far, so there is nothing to migrate yet).

Durability. SQLite runs in WAL mode with ``synchronous=FULL``: a transaction is on disk when its
commit returns, so a process killed with SIGKILL (or a power cut) loses nothing committed; a
transaction it was in the middle of is rolled back when the file is next opened. Write transactions
start with ``BEGIN IMMEDIATE`` on SQLite, so two writers wait for each other (``busy_timeout``) instead
of failing to upgrade a read lock; on other databases a writer locks the reader's row
(``SELECT ... FOR UPDATE``) before it reads what it will change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APPLICATION = "remixformer reader study"
BUSY_TIMEOUT_S = 30

metadata = MetaData()

meta_table = Table(
    "study_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

settings_table = Table(
    "study_settings",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: one study per database
    Column("name", String(200), nullable=False),
    Column("stages", Text, nullable=False),  # JSON list, e.g. ["C", "CM", "CDM"]
    Column("classes", Text, nullable=False),  # JSON list of the diagnosis classes readers choose from
    Column("fields", Text, nullable=False),  # JSON list of {"name", "description"}: metadata shown
    Column("randomise", Boolean, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # open | closed
    Column("created_at", String(40), nullable=False),
    Column("closed_at", String(40)),
    Column("source", Text, nullable=False),  # where the cases came from (manifest, split, limits)
    Column("notes", Text, nullable=False),  # JSON list of notes of the set-up (cases left out, ...)
    Column("secret_key", String(128), nullable=False),  # signs the session cookies
    Column("admin_token_hash", String(128)),
    Column("admin_version", Integer, nullable=False, default=0),  # bumped with each new admin token
    Column("predictions_name", String(300)),  # the model's predictions.csv (admin only)
    Column("predictions_csv", Text),
    Column("predictions_at", String(40)),
)

cases_table = Table(
    "study_cases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("position", Integer, nullable=False, unique=True),  # order in the manifest
    Column("case_id", String(300), nullable=False, unique=True),
    Column("label", String(200)),  # the true diagnosis; never shown to readers
    Column("meta_json", Text, nullable=False),  # {field: raw value or null}
)

images_table = Table(
    "study_images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("case_ref", Integer, ForeignKey("study_cases.id"), nullable=False),
    Column("modality", String(1), nullable=False),  # C or D
    Column("position", Integer, nullable=False),
    Column("media_type", String(40), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("source", Text, nullable=False),  # the file it was read from (admin only)
    UniqueConstraint("case_ref", "modality", "position"),
)

readers_table = Table(
    "study_readers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("grp", String(64), nullable=False),
    Column("password_hash", String(256)),
    Column("link_hash", String(128), unique=True),  # pending one-time link (SHA-256 of the token)
    Column("auth_version", Integer, nullable=False, default=0),  # bumped to end every session
    Column("case_order", Text, nullable=False),  # JSON list of study_cases.id in reading order
    Column("created_at", String(40), nullable=False),
)

views_table = Table(
    "study_views",
    metadata,
    Column("reader_ref", Integer, ForeignKey("study_readers.id"), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("first_shown_at", String(40), nullable=False),
    Column("last_shown_at", String(40), nullable=False),
    Column("times_shown", Integer, nullable=False),
)

answers_table = Table(
    "study_answers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("reader_ref", Integer, ForeignKey("study_readers.id"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("case_ref", Integer, ForeignKey("study_cases.id"), nullable=False),
    Column("stage", String(8), nullable=False),
    Column("diagnosis", String(200), nullable=False),
    Column("confidence", Integer),
    Column("shown_at", String(40)),
    Column("answered_at", String(40), nullable=False),
    Column("seconds", Float),
    UniqueConstraint("reader_ref", "step"),
    UniqueConstraint("reader_ref", "case_ref", "stage"),
)


class StudyDatabaseError(ValueError):
    """The database cannot be used: unreachable, not a reader study, another schema version."""


class NoStudyError(StudyDatabaseError):
    """The database is reachable but holds no reader study yet."""


def now() -> str:
    """The current time, UTC, ISO 8601 with milliseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def database_url(value: str) -> str:
    """A SQLAlchemy URL as given, or a plain path made into a SQLite URL."""
    value = str(value).strip()
    if not value:
        raise StudyDatabaseError("empty database URL; expected e.g. sqlite:///study.db or a file path")
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"


def _sqlite_engine(url: str) -> Engine:
    u = make_url(url)
    memory = u.database in (None, "", ":memory:")
    if not memory:
        folder = Path(u.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise StudyDatabaseError(f"{shown_url(url)}: the folder {folder} does not exist")
    kwargs: dict = {"connect_args": {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = StaticPool  # one shared connection, or each thread sees its own database
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, not by the driver
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


class StudyDatabase:
    """An open reader-study database (``create=True`` makes the tables in an empty one)."""

    def __init__(self, url: str, *, create: bool = False) -> None:
        self.url = database_url(url)
        self.shown_url = shown_url(self.url)
        try:
            dialect = make_url(self.url).get_backend_name()
        except (ArgumentError, ValueError) as e:
            raise StudyDatabaseError(
                f"{self.url!r} is not a database URL ({e}); expected e.g. sqlite:///study.db"
            ) from None
        try:
            self.engine = (
                _sqlite_engine(self.url)
                if dialect == "sqlite"
                else create_engine(self.url, pool_pre_ping=True)
            )
        except NoSuchModuleError as e:
            raise StudyDatabaseError(f"{self.shown_url}: no SQLAlchemy dialect for it ({e})") from None
        except ModuleNotFoundError as e:
            raise StudyDatabaseError(
                f"{self.shown_url}: the database driver is not installed ({e.name}); install it with pip"
            ) from None
        self.dialect = dialect
        try:
            self._check_schema(create)
        except OperationalError as e:
            self.engine.dispose()
            raise StudyDatabaseError(f"{self.shown_url}: cannot open the database: {e.orig}") from None
        except BaseException:
            self.engine.dispose()
            raise

    # --- schema --------------------------------------------------------------------------------------
    def _check_schema(self, create: bool) -> None:
        names = set(inspect(self.engine).get_table_names())
        ours = set(metadata.tables)
        if not names & ours:
            if not create:
                raise NoStudyError(
                    f"{self.shown_url}: no reader study in this database; set one up with "
                    f"`remixformer readers init --db URL --cases MANIFEST` (or `readers serve --cases`)"
                )
            with self.write() as conn:
                metadata.create_all(conn)
                conn.execute(
                    meta_table.insert(),
                    [
                        {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                        {"key": "application", "value": APPLICATION},
                        {"key": "created_at", "value": now()},
                    ],
                )
            log.info(
                "%s: created the reader-study tables (schema version %d)", self.shown_url, SCHEMA_VERSION
            )
            return
        if meta_table.name not in names:
            raise StudyDatabaseError(
                f"{self.shown_url}: has tables {sorted(names & ours)} but no {meta_table.name!r}; "
                "not a reader-study database written by remixformer"
            )
        with self.read() as conn:
            rows = dict(conn.execute(select(meta_table.c.key, meta_table.c.value)).all())
        version = rows.get("schema_version")
        if rows.get("application") != APPLICATION or version is None:
            raise StudyDatabaseError(
                f"{self.shown_url}: {meta_table.name!r} does not describe a remixformer reader study "
                f"(application {rows.get('application')!r}, schema version {version!r})"
            )
        if version != str(SCHEMA_VERSION):
            newer = version.isdigit() and int(version) > SCHEMA_VERSION
            hint = (
                "it was written by a newer remixformer: use that version"
                if newer
                else "there is no migration from that version: export its answers with the remixformer "
                "that wrote it"
            )
            raise StudyDatabaseError(
                f"{self.shown_url}: database schema version {version}, this remixformer reads version "
                f"{SCHEMA_VERSION}; {hint}"
            )
        missing = sorted(ours - names)
        if missing:
            raise StudyDatabaseError(
                f"{self.shown_url}: schema version {version} but table(s) {missing} are missing "
                "(a damaged or partly deleted database)"
            )

    # --- transactions --------------------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction for reading (a consistent snapshot)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that writes; committed (and on disk) when the block ends without an error."""
        with self.engine.connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                yield conn

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(select(meta_table.c.value).limit(1))

    def close(self) -> None:
        self.engine.dispose()

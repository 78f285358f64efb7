"""The reader study's rules, on top of its database: set-up, accounts, the reading order, answers.

A reader's work is a fixed sequence of steps: for each case in the reader's order, each stage in
turn (default C, then CM, then CDM). Step ``s`` is case ``order[s // n_stages]`` at stage
``stages[s % n_stages]``. A reader's current step is the number of answers they have given, so an
answer can only be given at the current step: nothing can be skipped, and an answered step is never
shown again (no going back). The answer is committed before the server replies; after a crash the
reader continues at the first step without a committed answer.

Readers never get labels, the model's predictions, other readers' answers, or the images or metadata
of a stage they have not reached: :meth:`Study.case_view` and :meth:`Study.image` only give what the
current stage shows.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from remixformer.data.config import DEFAULT_MAX_IMAGE_PIXELS
from remixformer.study import security
from remixformer.study.cases import DEFAULT_MAX_SIDE, PreparedCases, encode_image
from remixformer.study.db import (
    StudyDatabase,
    answers_table,
    cases_table,
    images_table,
    now,
    readers_table,
    settings_table,
    views_table,
)

log = logging.getLogger(__name__)

OPEN, CLOSED = "open", "closed"
CONFIDENCE_LEVELS = (1, 2, 3, 4, 5)
CONFIDENCE_WORDS = {1: "very unsure", 2: "unsure", 3: "fairly sure", 4: "sure", 5: "certain"}
IMAGE_MODALITIES = {"clinical": "C", "dermoscopy": "D"}


class StudyError(ValueError):
    """A request the study refuses; ``status`` is the HTTP status the web application answers with."""

    status = 422


class NotFound(StudyError):
    status = 404


class Forbidden(StudyError):
    status = 403


class Conflict(StudyError):
    status = 409


@dataclass(frozen=True)
class Settings:
    name: str
    stages: tuple[str, ...]
    classes: tuple[str, ...]
    fields: tuple[dict[str, str], ...]
    randomise: bool
    seed: int
    state: str
    created_at: str
    closed_at: str | None
    source: str
    notes: tuple[str, ...]
    n_cases: int
    admin_version: int
    has_admin_token: bool
    predictions_name: str | None
    predictions_at: str | None

    @property
    def is_open(self) -> bool:
        return self.state == OPEN


@dataclass(frozen=True)
class Reader:
    id: int
    name: str
    group: str
    auth_version: int
    has_password: bool
    link_pending: bool
    created_at: str
    n_cases: int


@dataclass(frozen=True)
class Step:
    """Where a reader is: step ``index`` of ``total`` (case ``case_number`` of ``n_cases`` at stage
    ``stage_number`` of ``n_stages``; numbers count from 1)."""

    index: int
    total: int
    case_ref: int
    case_number: int
    n_cases: int
    stage: str
    stage_number: int
    n_stages: int

    @property
    def answered(self) -> int:
        return self.index


@dataclass
class CaseView:
    """What the current step shows: images by modality (only the stage's), metadata rows at an M stage."""

    step: Step
    images: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # modality -> [{index, w, h}]
    metadata: list[dict[str, str]] | None = None  # [{name, description, value}] or None (not shown)


@dataclass(frozen=True)
class Answer:
    step: int
    stage: str
    diagnosis: str
    confidence: int | None


def _settings_row(conn) -> Any:
    row = conn.execute(select(settings_table).where(settings_table.c.id == 1)).mappings().first()
    if row is None:
        raise StudyError("the database has the study tables but no study (an interrupted set-up?)")
    return row


class Study:
    """Operations of one study database (thread-safe: every call is its own transaction)."""

    def __init__(self, db: StudyDatabase) -> None:
        self.db = db
        with db.read() as conn:
            row = _settings_row(conn)
            self._stages = tuple(json.loads(row["stages"]))
            self._classes = tuple(json.loads(row["classes"]))
            self._fields = tuple(json.loads(row["fields"]))
            self.secret_key: str = row["secret_key"]

    # ------------------------------------------------------------------------------------------------
    # Set-up
    # ------------------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        db: StudyDatabase,
        prepared: PreparedCases,
        *,
        name: str,
        stages: Sequence[str],
        randomise: bool = False,
        seed: int = 0,
        max_side: int | None = DEFAULT_MAX_SIDE,
        max_image_pixels: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Study:
        """Store the study and its cases (images decoded and re-encoded) in one transaction."""
        pixels = max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS
        with db.read() as conn:
            if conn.execute(select(settings_table.c.name)).first() is not None:
                raise StudyError(f"{db.shown_url}: already holds a study; use another database")
        with db.write() as conn:
            conn.execute(
                settings_table.insert().values(
                    id=1,
                    name=name,
                    stages=json.dumps(list(stages)),
                    classes=json.dumps(list(prepared.classes)),
                    fields=json.dumps(prepared.fields),
                    randomise=bool(randomise),
                    seed=int(seed),
                    state=OPEN,
                    created_at=now(),
                    source=prepared.source,
                    notes=json.dumps(prepared.notes),
                    secret_key=security.new_token(32),
                    admin_version=0,
                )
            )
            for pos, case in enumerate(prepared.cases):
                if progress is not None:
                    progress(pos, len(prepared.cases))
                ref = conn.execute(
                    cases_table.insert().values(
                        position=pos,
                        case_id=case.case_id,
                        label=case.label,
                        meta_json=json.dumps(case.metadata),
                    )
                ).inserted_primary_key[0]
                for modality, i, path in case.images():
                    img = encode_image(path, max_side=max_side, max_pixels=pixels, case_id=case.case_id)
                    conn.execute(
                        images_table.insert().values(
                            case_ref=ref,
                            modality=modality,
                            position=i,
                            media_type=img.media_type,
                            width=img.width,
                            height=img.height,
                            data=img.data,
                            source=str(path),
                        )
                    )
            if progress is not None:
                progress(len(prepared.cases), len(prepared.cases))
        log.info("%s: study %r set up with %d cases", db.shown_url, name, len(prepared.cases))
        return cls(db)

    def settings(self) -> Settings:
        with self.db.read() as conn:
            row = _settings_row(conn)
            n_cases = conn.execute(select(func.count()).select_from(cases_table)).scalar_one()
        return Settings(
            name=row["name"],
            stages=self._stages,
            classes=self._classes,
            fields=self._fields,
            randomise=bool(row["randomise"]),
            seed=int(row["seed"]),
            state=row["state"],
            created_at=row["created_at"],
            closed_at=row["closed_at"],
            source=row["source"],
            notes=tuple(json.loads(row["notes"])),
            n_cases=int(n_cases),
            admin_version=int(row["admin_version"]),
            has_admin_token=row["admin_token_hash"] is not None,
            predictions_name=row["predictions_name"],
            predictions_at=row["predictions_at"],
        )

    @property
    def stages(self) -> tuple[str, ...]:
        return self._stages

    @property
    def classes(self) -> tuple[str, ...]:
        return self._classes

    def case_ids(self) -> list[str]:
        with self.db.read() as conn:
            return list(
                conn.execute(select(cases_table.c.case_id).order_by(cases_table.c.position)).scalars()
            )

    def set_state(self, state: str) -> None:
        """Close (no more answers; the admin comparison becomes available) or reopen the study."""
        if state not in (OPEN, CLOSED):
            raise ValueError(f"state must be {OPEN!r} or {CLOSED!r}, got {state!r}")
        with self.db.write() as conn:
            conn.execute(
                update(settings_table)
                .where(settings_table.c.id == 1)
                .values(state=state, closed_at=now() if state == CLOSED else None)
            )
        log.info("study %s", state)

    # ------------------------------------------------------------------------------------------------
    # The admin token
    # ------------------------------------------------------------------------------------------------
    def set_admin_token(self, token: str | None = None) -> str:
        """Store (the hash of) ``token``, or of a new random one, which is returned; earlier admin
        tokens and admin sessions stop working."""
        token = token or security.new_token(32)
        if len(token) < 16:
            raise ValueError("the admin token is too short: at least 16 characters expected")
        with self.db.write() as conn:
            conn.execute(
                update(settings_table)
                .where(settings_table.c.id == 1)
                .values(
                    admin_token_hash=security.token_hash(token),
                    admin_version=settings_table.c.admin_version + 1,
                )
            )
        log.info("a new admin token was set")
        return token

    def check_admin_token(self, token: str | None) -> int | None:
        """The admin version when ``token`` is the admin token, else None."""
        if not token:
            return None
        with self.db.read() as conn:
            row = _settings_row(conn)
        if security.same_secret(security.token_hash(token), row["admin_token_hash"]):
            return int(row["admin_version"])
        return None

    def admin_version(self) -> int:
        with self.db.read() as conn:
            return int(_settings_row(conn)["admin_version"])

    # ------------------------------------------------------------------------------------------------
    # Readers
    # ------------------------------------------------------------------------------------------------
    def _reader(self, row: Any, n_cases: int) -> Reader:
        return Reader(
            id=int(row["id"]),
            name=row["name"],
            group=row["grp"],
            auth_version=int(row["auth_version"]),
            has_password=row["password_hash"] is not None,
            link_pending=row["link_hash"] is not None,
            created_at=row["created_at"],
            n_cases=n_cases,
        )

    def add_reader(
        self, name: str, group: str = "reader", password: str | None = None
    ) -> tuple[Reader, str | None]:
        """A new reader account: with ``password``, or with a one-time link token (returned; only its
        hash is stored). Their case order is fixed now (shuffled when the study randomises)."""
        name = security.check_name(name, "reader name")
        group = security.check_name(group, "group")
        password_hash = security.hash_password(password) if password is not None else None
        token = None if password is not None else security.new_token()
        with self.db.write() as conn:
            settings = _settings_row(conn)
            order = list(conn.execute(select(cases_table.c.id).order_by(cases_table.c.position)).scalars())
            if settings["randomise"]:
                random.Random(f"{settings['seed']}/{name}").shuffle(order)
            try:
                conn.execute(
                    readers_table.insert().values(
                        name=name,
                        grp=group,
                        password_hash=password_hash,
                        link_hash=security.token_hash(token) if token else None,
                        auth_version=0,
                        case_order=json.dumps(order),
                        created_at=now(),
                    )
                )
            except IntegrityError:
                raise StudyError(f"reader {name!r} already exists; choose another name") from None
        log.info("reader %s (%s) added", name, group)
        return self.reader_by_name(name), token

    def new_link(self, name: str) -> str:
        """A new one-time link token for reader ``name``: their password and sessions stop working
        until they use it (to set a new password). Their answers stay."""
        token = security.new_token()
        with self.db.write() as conn:
            done = conn.execute(
                update(readers_table)
                .where(readers_table.c.name == name)
                .values(
                    link_hash=security.token_hash(token),
                    password_hash=None,
                    auth_version=readers_table.c.auth_version + 1,
                )
            ).rowcount
        if not done:
            raise NotFound(f"no reader named {name!r}")
        log.info("new one-time link for reader %s", name)
        return token

    def readers(self) -> list[Reader]:
        with self.db.read() as conn:
            rows = conn.execute(select(readers_table).order_by(readers_table.c.id)).mappings().all()
        return [self._reader(r, len(json.loads(r["case_order"]))) for r in rows]

    def reader(self, reader_id: int) -> Reader | None:
        with self.db.read() as conn:
            row = (
                conn.execute(select(readers_table).where(readers_table.c.id == reader_id)).mappings().first()
            )
        return None if row is None else self._reader(row, len(json.loads(row["case_order"])))

    def reader_by_name(self, name: str) -> Reader:
        with self.db.read() as conn:
            row = conn.execute(select(readers_table).where(readers_table.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"no reader named {name!r}")
        return self._reader(row, len(json.loads(row["case_order"])))

    def login(self, name: str, password: str) -> Reader | None:
        """The reader when ``name`` and ``password`` match, else None (the same for either wrong)."""
        with self.db.read() as conn:
            row = conn.execute(select(readers_table).where(readers_table.c.name == name)).mappings().first()
        if row is None:
            security.verify_password(password, _dummy_hash())  # as long as for a wrong password
            return None
        if not security.verify_password(password, row["password_hash"]):
            return None
        return self._reader(row, len(json.loads(row["case_order"])))

    def link_reader(self, token: str) -> Reader | None:
        """The reader a pending one-time link token belongs to (the link is not used up)."""
        if not token or len(token) > 200:
            return None
        with self.db.read() as conn:
            row = (
                conn.execute(
                    select(readers_table).where(readers_table.c.link_hash == security.token_hash(token))
                )
                .mappings()
                .first()
            )
        return None if row is None else self._reader(row, len(json.loads(row["case_order"])))

    def redeem_link(self, token: str, password: str) -> Reader:
        """Use up a one-time link: set the reader's password; returns the reader."""
        security.check_password_rules(password)
        password_hash = security.hash_password(password)
        if not token or len(token) > 200:
            raise NotFound("this link is not valid")
        with self.db.write() as conn:
            row = (
                conn.execute(
                    select(readers_table).where(readers_table.c.link_hash == security.token_hash(token))
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(
                    "this link is not valid (already used or replaced); "
                    "ask the study's administrator for a new one"
                )
            conn.execute(
                update(readers_table)
                .where(readers_table.c.id == row["id"])
                .values(
                    link_hash=None, password_hash=password_hash, auth_version=readers_table.c.auth_version + 1
                )
            )
        log.info("reader %s used their one-time link", row["name"])
        return self.reader(int(row["id"]))  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------------------------------------
    def _lock_reader(self, conn, reader_id: int) -> Any:
        row = (
            conn.execute(select(readers_table).where(readers_table.c.id == reader_id).with_for_update())
            .mappings()
            .first()
        )
        if row is None:
            raise Forbidden("unknown reader")
        return row

    def _step(self, conn, reader_row: Any) -> Step | None:
        order = json.loads(reader_row["case_order"])
        n = conn.execute(
            select(func.count())
            .select_from(answers_table)
            .where(answers_table.c.reader_ref == reader_row["id"])
        ).scalar_one()
        n_stages = len(self._stages)
        total = len(order) * n_stages
        if n >= total:
            return None
        return Step(
            index=n,
            total=total,
            case_ref=int(order[n // n_stages]),
            case_number=n // n_stages + 1,
            n_cases=len(order),
            stage=self._stages[n % n_stages],
            stage_number=n % n_stages + 1,
            n_stages=n_stages,
        )

    def current_step(self, reader_id: int) -> Step | None:
        """The reader's current step; None when they have answered every step."""
        with self.db.read() as conn:
            row = (
                conn.execute(select(readers_table).where(readers_table.c.id == reader_id)).mappings().first()
            )
            if row is None:
                raise Forbidden("unknown reader")
            return self._step(conn, row)

    def progress_of(self, reader_id: int) -> tuple[int, int]:
        """(answers given, steps in all) of one reader."""
        with self.db.read() as conn:
            row = (
                conn.execute(select(readers_table).where(readers_table.c.id == reader_id)).mappings().first()
            )
            if row is None:
                raise Forbidden("unknown reader")
            n = conn.execute(
                select(func.count()).select_from(answers_table).where(answers_table.c.reader_ref == reader_id)
            ).scalar_one()
        return int(n), len(json.loads(row["case_order"])) * len(self._stages)

    def case_view(self, reader_id: int) -> CaseView | None:
        """What the reader's current step shows (None when finished), recording that it was shown."""
        stamp = now()
        with self.db.write() as conn:
            step = self._step(conn, self._lock_reader(conn, reader_id))
            if step is None:
                return None
            key = (views_table.c.reader_ref == reader_id) & (views_table.c.step == step.index)
            if conn.execute(select(views_table.c.step).where(key)).first() is None:
                conn.execute(
                    views_table.insert().values(
                        reader_ref=reader_id,
                        step=step.index,
                        first_shown_at=stamp,
                        last_shown_at=stamp,
                        times_shown=1,
                    )
                )
            else:
                conn.execute(
                    update(views_table)
                    .where(key)
                    .values(last_shown_at=stamp, times_shown=views_table.c.times_shown + 1)
                )
            view = CaseView(step)
            for letter in "CD":
                if letter not in step.stage:
                    continue
                rows = conn.execute(
                    select(images_table.c.position, images_table.c.width, images_table.c.height)
                    .where((images_table.c.case_ref == step.case_ref) & (images_table.c.modality == letter))
                    .order_by(images_table.c.position)
                ).all()
                name = "clinical" if letter == "C" else "dermoscopy"
                view.images[name] = [
                    {"index": r.position, "width": r.width, "height": r.height} for r in rows
                ]
            if "M" in step.stage:
                raw = json.loads(
                    conn.execute(
                        select(cases_table.c.meta_json).where(cases_table.c.id == step.case_ref)
                    ).scalar_one()
                )
                view.metadata = [
                    {"name": f["name"], "description": f.get("description", ""), "value": raw.get(f["name"])}
                    for f in self._fields
                ]
        return view

    def image(self, reader_id: int, step_index: int, modality: str, index: int) -> tuple[str, bytes]:
        """(media type, bytes) of an image of the reader's current step, if its stage shows it."""
        letter = IMAGE_MODALITIES.get(modality)
        if letter is None:
            raise NotFound(f"unknown modality {modality!r}; expected clinical or dermoscopy")
        with self.db.read() as conn:
            row = (
                conn.execute(select(readers_table).where(readers_table.c.id == reader_id)).mappings().first()
            )
            if row is None:
                raise Forbidden("unknown reader")
            step = self._step(conn, row)
            if step is None or step.index != step_index:
                raise Forbidden("this image belongs to a step that is not your current one")
            if letter not in step.stage:
                raise Forbidden(f"the current stage does not show the {modality} image")
            found = conn.execute(
                select(images_table.c.media_type, images_table.c.data).where(
                    (images_table.c.case_ref == step.case_ref)
                    & (images_table.c.modality == letter)
                    & (images_table.c.position == index)
                )
            ).first()
        if found is None:
            raise NotFound(f"no {modality} image {index} in this case")
        return found.media_type, found.data

    def answer(self, reader_id: int, step_index: int, diagnosis: str, confidence: int | None = None) -> bool:
        """Record the answer to step ``step_index``; True when recorded, False when that step already
        has exactly this answer (a repeated submission). Raises :class:`Conflict` for another answer
        to an answered step, for a step not yet reached, or when the study is closed."""
        if diagnosis not in self._classes:
            raise StudyError(
                f"diagnosis {diagnosis!r} is not one of the study's classes {list(self._classes)}"
            )
        if confidence is not None and confidence not in CONFIDENCE_LEVELS:
            raise StudyError(f"confidence {confidence!r}: expected one of {list(CONFIDENCE_LEVELS)} or none")
        stamp = now()
        with self.db.write() as conn:
            reader = self._lock_reader(conn, reader_id)
            if _settings_row(conn)["state"] != OPEN:
                raise Conflict("the study is closed: no more answers are taken")
            step = self._step(conn, reader)
            current = (
                step.index if step is not None else len(json.loads(reader["case_order"])) * len(self._stages)
            )
            if step_index < current:
                done = conn.execute(
                    select(answers_table.c.diagnosis, answers_table.c.confidence).where(
                        (answers_table.c.reader_ref == reader_id) & (answers_table.c.step == step_index)
                    )
                ).first()
                if done is not None and done.diagnosis == diagnosis and done.confidence == confidence:
                    return False
                raise Conflict(
                    f"step {step_index + 1} was already answered"
                    + (f" ({done.diagnosis})" if done is not None else "")
                    + "; answers are final"
                )
            if step is None:
                raise Conflict("every step has been answered already")
            if step_index != step.index:
                raise Conflict(f"step {step_index + 1} is not your current step ({current + 1})")
            shown = conn.execute(
                select(views_table.c.first_shown_at).where(
                    (views_table.c.reader_ref == reader_id) & (views_table.c.step == step.index)
                )
            ).scalar()
            conn.execute(
                answers_table.insert().values(
                    reader_ref=reader_id,
                    step=step.index,
                    case_ref=step.case_ref,
                    stage=step.stage,
                    diagnosis=diagnosis,
                    confidence=confidence,
                    shown_at=shown,
                    answered_at=stamp,
                    seconds=_seconds_between(shown, stamp),
                )
            )
        log.info("reader %s answered step %d", reader["name"], step_index + 1)
        return True

    def answers_of(self, reader_id: int) -> list[Answer]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(answers_table)
                .where(answers_table.c.reader_ref == reader_id)
                .order_by(answers_table.c.step)
            ).mappings()
            return [Answer(r["step"], r["stage"], r["diagnosis"], r["confidence"]) for r in rows]

    # ------------------------------------------------------------------------------------------------
    # Admin views and exports
    # ------------------------------------------------------------------------------------------------
    def progress(self) -> list[dict[str, Any]]:
        """Per reader: name, group, answers given of all steps, cases finished, last answer time,
        account state (password set or link pending)."""
        with self.db.read() as conn:
            counts: dict[Any, int] = dict(
                conn.execute(
                    select(answers_table.c.reader_ref, func.count()).group_by(answers_table.c.reader_ref)
                ).all()
            )
            last = dict(
                conn.execute(
                    select(answers_table.c.reader_ref, func.max(answers_table.c.answered_at)).group_by(
                        answers_table.c.reader_ref
                    )
                ).all()
            )
            rows = conn.execute(select(readers_table).order_by(readers_table.c.id)).mappings().all()
        out = []
        n_stages = len(self._stages)
        for r in rows:
            total = len(json.loads(r["case_order"])) * n_stages
            n = int(counts.get(r["id"], 0))
            out.append(
                {
                    "reader_id": r["name"],
                    "group": r["grp"],
                    "answered": n,
                    "total": total,
                    "percent": 100.0 * n / total if total else 100.0,
                    "cases_done": n // n_stages,
                    "n_cases": total // n_stages,
                    "finished": n >= total,
                    "last_answer_at": last.get(r["id"]),
                    "account": "link not used yet"
                    if r["link_hash"] is not None
                    else ("password set" if r["password_hash"] is not None else "no sign-in"),
                }
            )
        return out

    def answer_rows(self, stage: str | None = None) -> list[dict[str, Any]]:
        """Every answer, by reader (in order of creation) then step: reader_id, group, case_id, stage,
        answer, confidence, case_number, stage_number, step, shown_at, answered_at, seconds,
        times_shown."""
        if stage is not None and stage not in self._stages:
            raise StudyError(f"stage {stage!r} is not one of the study's stages {list(self._stages)}")
        a, r, c, v = answers_table, readers_table, cases_table, views_table
        query = (
            select(
                r.c.name,
                r.c.grp,
                c.c.case_id,
                a.c.stage,
                a.c.diagnosis,
                a.c.confidence,
                a.c.step,
                a.c.shown_at,
                a.c.answered_at,
                a.c.seconds,
                v.c.times_shown,
            )
            .select_from(
                a.join(r, a.c.reader_ref == r.c.id)
                .join(c, a.c.case_ref == c.c.id)
                .outerjoin(v, (v.c.reader_ref == a.c.reader_ref) & (v.c.step == a.c.step))
            )
            .order_by(r.c.id, a.c.step)
        )
        if stage is not None:
            query = query.where(a.c.stage == stage)
        n_stages = len(self._stages)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [
            {
                "reader_id": row.name,
                "group": row.grp,
                "case_id": row.case_id,
                "stage": row.stage,
                "answer": row.diagnosis,
                "confidence": row.confidence,
                "case_number": row.step // n_stages + 1,
                "stage_number": row.step % n_stages + 1,
                "step": row.step + 1,
                "shown_at": row.shown_at,
                "answered_at": row.answered_at,
                "seconds": row.seconds,
                "times_shown": row.times_shown,
            }
            for row in rows
        ]

    def case_rows(self) -> list[dict[str, Any]]:
        """Per case (manifest order): number, case id, label and images per modality (admin only)."""
        with self.db.read() as conn:
            counts = {
                (r.case_ref, r.modality): r.n
                for r in conn.execute(
                    select(
                        images_table.c.case_ref, images_table.c.modality, func.count().label("n")
                    ).group_by(images_table.c.case_ref, images_table.c.modality)
                )
            }
            rows = conn.execute(select(cases_table).order_by(cases_table.c.position)).mappings().all()
        return [
            {
                "number": r["position"] + 1,
                "case_id": r["case_id"],
                "label": r["label"],
                "clinical": counts.get((r["id"], "C"), 0),
                "dermoscopy": counts.get((r["id"], "D"), 0),
            }
            for r in rows
        ]

    def labels(self) -> dict[str, str | None]:
        """case id -> true diagnosis (admin only)."""
        with self.db.read() as conn:
            return dict(conn.execute(select(cases_table.c.case_id, cases_table.c.label)).all())

    def counts(self) -> dict[str, int]:
        with self.db.read() as conn:
            return {
                "cases": conn.execute(select(func.count()).select_from(cases_table)).scalar_one(),
                "readers": conn.execute(select(func.count()).select_from(readers_table)).scalar_one(),
                "answers": conn.execute(select(func.count()).select_from(answers_table)).scalar_one(),
            }

    def set_predictions(self, name: str, text: str) -> None:
        """Store the model's per-case predictions CSV (checked by the caller) for the admin comparison."""
        with self.db.write() as conn:
            conn.execute(
                update(settings_table)
                .where(settings_table.c.id == 1)
                .values(predictions_name=name, predictions_csv=text, predictions_at=now())
            )
        log.info("model predictions %s stored", name)

    def predictions_csv(self) -> tuple[str, str] | None:
        with self.db.read() as conn:
            row = _settings_row(conn)
        if row["predictions_csv"] is None:
            return None
        return row["predictions_name"], row["predictions_csv"]


def _seconds_between(start: str | None, end: str) -> float | None:
    if start is None:
        return None

    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(security.hash_password(security.new_token()))
    return _DUMMY[0]

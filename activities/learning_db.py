"""The learning loop's database: SQLAlchemy 2 schema, engine and Alembic migrations.

SQLite file by default, PostgreSQL through ``DATABASE_URL``
(``postgresql+psycopg://user:pass@host/db``). The schema is made and upgraded by
Alembic (``activities/learning_migrations``): ``starter.py learn init-db`` runs
the migrations, and :meth:`LearningDatabase.session` runs them on first use.

Tables: curricula, knowledge_components (with BKT parameters), kc_prerequisites,
items, students, tests, responses, mastery, mastery_history, remediations.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    Text,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "learning_migrations"
ID = 200  # length of ID columns: workflow IDs plus a step suffix fit


def utcnow() -> datetime:
    """The current time, UTC (activities only; workflows use workflow.now())."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of the learning schema."""


class Curriculum(Base):
    """An imported curriculum (objective set)."""

    __tablename__ = "curricula"
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    source_sha256: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class KnowledgeComponent(Base):
    """A KC with its curriculum position, BKT parameters and remediation content."""

    __tablename__ = "knowledge_components"
    curriculum_id: Mapped[str] = mapped_column(
        String(ID), ForeignKey("curricula.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    p_prior: Mapped[float] = mapped_column(Float)
    p_learn: Mapped[float] = mapped_column(Float)
    p_guess: Mapped[float] = mapped_column(Float)
    p_slip: Mapped[float] = mapped_column(Float)
    hint: Mapped[str] = mapped_column(Text, default="")
    worked_example: Mapped[str] = mapped_column(Text, default="")
    misconceptions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    item_templates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class KcPrerequisite(Base):
    """``kc_id`` needs ``prerequisite_id`` mastered first (same curriculum)."""

    __tablename__ = "kc_prerequisites"
    curriculum_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    kc_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    prerequisite_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    __table_args__ = (
        ForeignKeyConstraint(["curriculum_id", "kc_id"],
                             ["knowledge_components.curriculum_id", "knowledge_components.id"]),
        ForeignKeyConstraint(["curriculum_id", "prerequisite_id"],
                             ["knowledge_components.curriculum_id", "knowledge_components.id"]),
    )


class Item(Base):
    """An item of the bank; ``origin`` is ``authored`` (imported) or ``generated``."""

    __tablename__ = "items"
    curriculum_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    kc_id: Mapped[str] = mapped_column(String(ID))
    prompt: Mapped[str] = mapped_column(Text)
    answer_type: Mapped[str] = mapped_column(String(32))
    answer_key: Mapped[str] = mapped_column(Text)
    choices: Mapped[list[str]] = mapped_column(JSON, default=list)
    tolerance: Mapped[float] = mapped_column(Float, default=1e-6)
    difficulty: Mapped[float] = mapped_column(Float, default=0.5)
    origin: Mapped[str] = mapped_column(String(16))
    misconceptions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    alternatives: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(ID))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        ForeignKeyConstraint(["curriculum_id", "kc_id"],
                             ["knowledge_components.curriculum_id", "knowledge_components.id"]),
    )


class Student(Base):
    """A student."""

    __tablename__ = "students"
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Test(Base):
    """A test: the items assigned to a student for one KC in one round."""

    __tablename__ = "tests"
    __test__ = False  # a learning test, not a pytest test class
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(ID), index=True)
    round: Mapped[int] = mapped_column(Integer)
    student_id: Mapped[str] = mapped_column(String(ID), ForeignKey("students.id"))
    curriculum_id: Mapped[str] = mapped_column(String(ID))
    kc_id: Mapped[str] = mapped_column(String(ID))
    item_ids: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # open, answered, expired, canceled
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Response(Base):
    """One scored response; ``id`` is ``<test id>/<item id>``."""

    __tablename__ = "responses"
    id: Mapped[str] = mapped_column(String(ID + 100), primary_key=True)
    test_id: Mapped[str] = mapped_column(String(ID), ForeignKey("tests.id"), index=True)
    student_id: Mapped[str] = mapped_column(String(ID))
    curriculum_id: Mapped[str] = mapped_column(String(ID))
    item_id: Mapped[str] = mapped_column(String(ID))
    kc_id: Mapped[str] = mapped_column(String(ID))
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempted: Mapped[bool] = mapped_column(Boolean)
    correct: Mapped[bool] = mapped_column(Boolean)
    misconception: Mapped[str | None] = mapped_column(String(ID), nullable=True)
    graded_by: Mapped[str] = mapped_column(String(32))
    feedback: Mapped[str] = mapped_column(Text, default="")
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Mastery(Base):
    """A student's current P(L) of one KC."""

    __tablename__ = "mastery"
    student_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    curriculum_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    kc_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    p_known: Mapped[float] = mapped_column(Float)
    opportunities: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MasteryHistory(Base):
    """Every change of a P(L). ``step_key`` is unique: a response ID (BKT), or
    ``<workflow id>/<step>`` (override, prior), so no change is applied twice."""

    __tablename__ = "mastery_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step_key: Mapped[str] = mapped_column(String(ID + 100), unique=True)
    student_id: Mapped[str] = mapped_column(String(ID), index=True)
    curriculum_id: Mapped[str] = mapped_column(String(ID))
    kc_id: Mapped[str] = mapped_column(String(ID))
    source: Mapped[str] = mapped_column(String(16))  # prior, bkt, override
    correct: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    p_before: Mapped[float | None] = mapped_column(Float, nullable=True)
    p_after: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(ID), default="workflow")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Remediation(Base):
    """Remediation after a test: misconceptions addressed and the artifact written."""

    __tablename__ = "remediations"
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)  # the test ID
    workflow_id: Mapped[str] = mapped_column(String(ID))
    round: Mapped[int] = mapped_column(Integer)
    student_id: Mapped[str] = mapped_column(String(ID))
    curriculum_id: Mapped[str] = mapped_column(String(ID))
    kc_id: Mapped[str] = mapped_column(String(ID))
    misconceptions: Mapped[list[str]] = mapped_column(JSON)
    hint: Mapped[str] = mapped_column(Text)
    worked_example: Mapped[str] = mapped_column(Text)
    practice_item_ids: Mapped[list[str]] = mapped_column(JSON)
    artifact_path: Mapped[str] = mapped_column(Text)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite: the file's directory is created, foreign keys
    are enforced and writers wait up to 30 s for a lock (the worker's threads and
    the CLI share the file)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` on ``engine``'s database."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


class LearningDatabase:
    """The engine and sessions of the learning database; migrates on first use.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._migrated = False
        self._lock = threading.Lock()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (once per process)."""
        with self._lock:
            if not self._migrated:
                upgrade(self.engine)
                self._migrated = True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        self.migrate()
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        """Close the engine's connections."""
        self.engine.dispose()


def new_revision(message: str, rev_id: str | None = None) -> None:
    """Write a new Alembic revision by comparing the models with a scratch SQLite
    database at the current head (for developers changing the schema)."""
    import tempfile

    from alembic import command
    from alembic.config import Config

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/scratch.db")
        upgrade(engine)
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
        engine.dispose()

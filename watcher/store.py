"""State in SQLAlchemy 2: per-source fetch state, entries, standards, events and the delivery outbox.

SQLite under state/ by default (WAL); any SQLAlchemy URL works, PostgreSQL included. One poll's state and its
events (and their deliveries) are written in one transaction by the pipeline.
"""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, bindparam, create_engine,
    event, func,
    select, text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from watcher.errors import StoreError

SCHEMA_VERSION = 1


class UTCDateTime(TypeDecorator):
    """Stores UTC; always returns aware datetimes (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class SourceState(Base):
    __tablename__ = "source_state"
    source_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_poll_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    alerted: Mapped[str | None] = mapped_column(String(16))       # 'failed' / 'broken' while an alert is open
    baselined: Mapped[bool] = mapped_column(Boolean, default=False)
    entry_count: Mapped[int] = mapped_column(Integer, default=0)
    etag: Mapped[str | None] = mapped_column(String(512))
    last_modified: Mapped[str | None] = mapped_column(String(128))
    body_digest: Mapped[str | None] = mapped_column(String(64))
    not_before: Mapped[datetime | None]                          # Retry-After from the server
    polls: Mapped[int] = mapped_column(Integer, default=0)


class EntryRow(Base):
    __tablename__ = "entries"
    __table_args__ = (UniqueConstraint("source_id", "key", name="uq_entries_source_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(512))
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    row_digest: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    deadline: Mapped[str | None] = mapped_column(String(10), index=True)
    first_seen: Mapped[datetime]
    updated_at: Mapped[datetime]


class Standard(Base):
    __tablename__ = "standards"
    id: Mapped[int] = mapped_column(primary_key=True)
    plan_no: Mapped[str | None] = mapped_column(String(32), unique=True)
    std_no: Mapped[str | None] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    title_key: Mapped[str | None] = mapped_column(String(255), index=True)
    stage: Mapped[str | None] = mapped_column(String(32))
    stage_since: Mapped[datetime | None]
    committee: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class StandardEvidence(Base):
    __tablename__ = "standard_evidence"
    id: Mapped[int] = mapped_column(primary_key=True)
    standard_id: Mapped[int] = mapped_column(ForeignKey("standards.id"), index=True)
    stage: Mapped[str | None] = mapped_column(String(32))       # None: the entry mentions the standard
    previous_stage: Mapped[str | None] = mapped_column(String(32))
    at: Mapped[datetime]
    source_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    date: Mapped[str | None] = mapped_column(String(10))
    event_id: Mapped[int | None] = mapped_column(Integer)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_source_time", "source_id", "detected_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(64))
    entry_key: Mapped[str | None] = mapped_column(String(512))
    dedupe_key: Mapped[str | None] = mapped_column(String(600), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    detected_at: Mapped[datetime] = mapped_column(index=True)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("event_id", "channel", name="uq_delivery_event_channel"),
                      Index("ix_deliveries_status_next", "status", "next_try_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    channel: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16), default="immediate")
    status: Mapped[str] = mapped_column(String(16), default="pending")   # pending, sent, failed, skipped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    claimed_until: Mapped[datetime | None]   # a sender holds the row while status = 'sending'
    created_at: Mapped[datetime]


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class StateCache:
    """Per-process copy of each source's fetch validators and body digest, so an unchanged poll reads nothing.

    Entries expire after `ttl` seconds (replicas may have moved on) and are dropped after every full write."""

    def __init__(self, ttl: float = 60.0):
        self.ttl = ttl
        self._d: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def get(self, sid: str) -> dict | None:
        with self._lock:
            hit = self._d.get(sid)
        if hit and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return None

    def put(self, sid: str, value: dict) -> None:
        with self._lock:
            self._d[sid] = (time.monotonic(), value)

    def drop(self, sid: str) -> None:
        with self._lock:
            self._d.pop(sid, None)


class TouchBuffer:
    """Timestamps of unchanged polls, written in batches (one transaction per batch, at most `max_age` late).

    An unchanged poll of a healthy source has no events; losing its timestamps in a crash loses nothing else."""

    def __init__(self, max_items: int = 256, max_age: float = 2.0):
        self.max_items, self.max_age = max_items, max_age
        self._d: dict[str, dict] = {}
        self._since: float | None = None
        self._lock = threading.Lock()

    def add(self, sid: str, now: datetime, etag: str | None, last_modified: str | None) -> bool:
        """Buffer a touch; True when the buffer is due for a flush."""
        with self._lock:
            prev = self._d.get(sid)
            self._d[sid] = {"sid": sid, "now": now, "etag": etag or (prev or {}).get("etag"),
                            "lm": last_modified or (prev or {}).get("lm"), "n": (prev or {}).get("n", 0) + 1}
            if self._since is None:
                self._since = time.monotonic()
            return len(self._d) >= self.max_items or time.monotonic() - self._since >= self.max_age

    def take(self) -> list[dict]:
        with self._lock:
            items, self._d, self._since = list(self._d.values()), {}, None
        return items


def default_db_url(state_dir: str | Path) -> str:
    return f"sqlite:///{Path(state_dir) / 'watcher.db'}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA cache_size=-1024")  # 1 MiB page cache per connection: lookups are by index
    cur.close()


class Store:
    """Engine, schema and a session factory; the pipeline writes through `transaction()`."""

    def __init__(self, url: str, *, create: bool = True):
        self.url = url
        self._write_lock = contextlib.nullcontext() if not url.startswith("sqlite") else threading.RLock()
        try:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[-1]
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.engine: Engine = create_engine(url, connect_args={"timeout": 30})
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
            self.dialect = self.engine.dialect.name
            if create:
                self._create_schema()
                with self.transaction() as s:
                    if s.get(Meta, "schema_version") is None:
                        s.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
        except ModuleNotFoundError as e:
            raise StoreError(f"database driver missing for {_mask_db(url)}: {e} "
                             "(for PostgreSQL: pip install 'watcher[postgres]')") from None
        except SQLAlchemyError as e:
            raise StoreError(f"cannot open state database {_mask_db(url)}: {e.__class__.__name__}: "
                             f"{str(e).splitlines()[0]}") from None
        except OSError as e:
            raise StoreError(f"cannot open state database {_mask_db(url)}: {e}") from None
        self.cache = StateCache()
        self.touches = TouchBuffer()

    def _create_schema(self) -> None:
        if self.dialect == "postgresql":
            # replicas starting together must not race on CREATE TABLE
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(7457656)"))
                Base.metadata.create_all(conn)
        else:
            Base.metadata.create_all(self.engine)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One ORM transaction. On SQLite, writers of this process queue on a lock instead of SQLite's busy
        handler, which sleeps in steps of up to 100 ms when threads collide."""
        with self._write_lock:
            session = Session(self.engine, expire_on_commit=False)
            try:
                with session.begin():
                    yield session
            finally:
                session.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads only: no write lock (WAL readers never block)."""
        session = Session(self.engine, expire_on_commit=False)
        try:
            yield session
        finally:
            session.close()

    @contextlib.contextmanager
    def begin(self):
        """A Core connection in a transaction, under the same write lock."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def source_lock(self, source_id: str) -> Iterator[bool]:
        """Exclusive right to poll a source across replicas (PostgreSQL advisory lock); always True on SQLite."""
        if self.dialect != "postgresql":
            yield True
            return
        key = zlib.crc32(f"watcher:source:{source_id}".encode()) - 2**31
        with self.engine.connect() as conn:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()

    def flush_touches(self) -> int:
        """Write the buffered unchanged-poll timestamps; returns how many sources were touched."""
        items = self.touches.take()
        if items:
            t = SourceState.__table__
            stmt = (t.update().where(t.c.source_id == bindparam("sid"), t.c.alerted.is_(None))
                    .values(last_poll_at=bindparam("now"), last_success_at=bindparam("now"), consecutive_failures=0,
                            last_error=None, not_before=None, polls=t.c.polls + bindparam("n"),
                            last_status="unchanged", etag=func.coalesce(bindparam("etag"), t.c.etag),
                            last_modified=func.coalesce(bindparam("lm"), t.c.last_modified)))
            with self.begin() as conn:
                conn.execute(stmt, items)
        return len(items)

    def state(self, session: Session, source_id: str) -> SourceState:
        st = session.get(SourceState, source_id)
        if st is None:
            st = SourceState(source_id=source_id, consecutive_failures=0, baselined=False, entry_count=0, polls=0)
            session.add(st)
        return st

    def check(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def dispose(self) -> None:
        self.engine.dispose()


def _mask_db(url: str) -> str:
    from watcher.logs import mask
    return mask(url)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)

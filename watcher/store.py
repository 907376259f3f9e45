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
    JSON, Boolean, Column, DateTime, ForeignKey, Index, Integer, MetaData, String, Table, Text, UniqueConstraint,
    bindparam, create_engine, event, func, insert, select, text, update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
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


metadata = MetaData()


class Rows:
    """A Core table whose columns read as attributes (`EntryRow.source_id`); `select(EntryRow)`,
    `insert(EntryRow)` and `update(EntryRow)` take it as the table itself. Plain Core keeps the ORM (about 7 MB)
    out of the daemon."""

    __slots__ = ("__table__",)

    def __init__(self, *columns: Any, name: str, args: tuple = ()):
        object.__setattr__(self, "__table__", Table(name, metadata, *columns, *args))

    def __clause_element__(self) -> Table:
        return self.__table__

    def __getattr__(self, name: str) -> Column:
        try:
            return self.__table__.c[name]
        except KeyError:
            raise AttributeError(f"table {self.__table__.name} has no column {name}") from None


def _col(name: str, type_: Any, *args: Any, null: bool = False, **kw: Any) -> Column:
    return Column(name, type_, *args, nullable=null, **kw)


def _id() -> Column:
    return Column("id", Integer, primary_key=True)


SourceState = Rows(
    Column("source_id", String(64), primary_key=True),
    _col("last_poll_at", UTCDateTime, null=True),
    _col("last_success_at", UTCDateTime, null=True),
    _col("last_status", String(16), null=True),
    _col("last_error", Text, null=True),
    _col("consecutive_failures", Integer, default=0),
    _col("alerted", String(16), null=True),           # 'failed' / 'broken' while an alert is open
    _col("baselined", Boolean, default=False),
    _col("entry_count", Integer, default=0),
    _col("etag", String(512), null=True),
    _col("last_modified", String(128), null=True),
    _col("body_digest", String(64), null=True),
    _col("not_before", UTCDateTime, null=True),        # Retry-After from the server
    _col("polls", Integer, default=0),
    name="source_state")

EntryRow = Rows(
    _id(),
    _col("source_id", String(64)),
    _col("key", String(512)),
    _col("url", Text),
    _col("title", Text),
    _col("fields", JSON),
    _col("row_digest", String(64)),
    _col("digest", String(64)),
    _col("detail", JSON, null=True),
    _col("detail_ok", Boolean, default=False),
    _col("deadline", String(10), null=True, index=True),
    _col("first_seen", UTCDateTime),
    _col("updated_at", UTCDateTime),
    name="entries", args=(UniqueConstraint("source_id", "key", name="uq_entries_source_key"),))

Standard = Rows(
    _id(),
    _col("plan_no", String(32), null=True, unique=True),
    _col("std_no", String(64), null=True, unique=True),
    _col("title", Text),
    _col("title_key", String(255), null=True, index=True),
    _col("stage", String(32), null=True),
    _col("stage_since", UTCDateTime, null=True),
    _col("committee", String(32), null=True, index=True),
    _col("created_at", UTCDateTime),
    _col("updated_at", UTCDateTime),
    name="standards")

StandardEvidence = Rows(
    _id(),
    _col("standard_id", Integer, ForeignKey("standards.id"), index=True),
    _col("stage", String(32), null=True),              # None: the entry mentions the standard
    _col("previous_stage", String(32), null=True),
    _col("at", UTCDateTime),
    _col("source_id", String(64)),
    _col("url", Text),
    _col("title", Text, null=True),
    _col("date", String(10), null=True),
    _col("event_id", Integer, null=True),
    name="standard_evidence")

EventRow = Rows(
    _id(),
    _col("kind", String(32)),
    _col("source_id", String(64)),
    _col("entry_key", String(512), null=True),
    _col("dedupe_key", String(600), null=True, unique=True),
    _col("payload", JSON),
    _col("detected_at", UTCDateTime, index=True),
    name="events", args=(Index("ix_events_source_time", "source_id", "detected_at"),))

Delivery = Rows(
    _id(),
    _col("event_id", Integer, ForeignKey("events.id")),
    _col("channel", String(64)),
    _col("mode", String(16), default="immediate"),
    _col("status", String(16), default="pending"),     # pending, sending, sent, failed
    _col("attempts", Integer, default=0),
    _col("next_try_at", UTCDateTime),
    _col("last_error", Text, null=True),
    _col("sent_at", UTCDateTime, null=True),
    _col("claimed_until", UTCDateTime, null=True),     # a sender holds the row while status = 'sending'
    _col("created_at", UTCDateTime),
    name="deliveries", args=(UniqueConstraint("event_id", "channel", name="uq_delivery_event_channel"),
                             Index("ix_deliveries_status_next", "status", "next_try_at")))

Meta = Rows(
    Column("key", String(64), primary_key=True),
    _col("value", Text),
    name="meta")


class Record:
    """A mutable copy of one row. Attribute writes are remembered and written back (only the changed columns) by
    the transaction before its next statement and at commit."""

    __slots__ = ("_table", "_values", "_dirty")

    def __init__(self, table: Table, values: dict[str, Any]):
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_dirty", set())

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._table.c:
            raise AttributeError(f"table {self._table.name} has no column {name}")
        self._values[name] = value
        self._dirty.add(name)

    def _key(self) -> dict[str, Any]:
        return {c.name: self._values[c.name] for c in self._table.primary_key}


class Tx:
    """One transaction on a Core connection, with the few unit-of-work habits the code relies on: `get` and
    `records` hand out tracked Records, `add` inserts at once (so the new id is known), and changed Records are
    written before any further statement (reads see them) and at commit."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._tracked: list[Record] = []

    def flush(self) -> None:
        for rec in self._tracked:
            if rec._dirty:
                t = rec._table
                key = rec._key()
                values = {k: rec._values[k] for k in rec._dirty}
                rec._dirty.clear()
                self.conn.execute(t.update().where(*(t.c[k] == v for k, v in key.items())).values(values))

    def execute(self, stmt, params=None):
        self.flush()
        return self.conn.execute(stmt, params)

    def scalars(self, stmt, params=None):
        return self.execute(stmt, params).scalars()

    def scalar(self, stmt, params=None):
        return self.execute(stmt, params).scalar()

    def records(self, table: Rows, stmt) -> list[Record]:
        out = [Record(table.__table__, dict(r._mapping)) for r in self.execute(stmt)]
        self._tracked += out
        return out

    def get(self, table: Rows, key: Any) -> Record | None:
        t = table.__table__
        (pk,) = t.primary_key
        found = self.records(table, select(t).where(pk == key))
        return found[0] if found else None

    def add(self, table: Rows, **values: Any) -> Record:
        """INSERT now; the Record carries the defaults and the new primary key."""
        t = table.__table__
        for c in t.columns:
            if c.name not in values and c.default is not None and c.default.is_scalar:
                values[c.name] = c.default.arg
        given = values
        values = {c.name: given.get(c.name) for c in t.columns}
        self.flush()
        result = self.conn.execute(t.insert().values(given))
        for c, v in zip(t.primary_key, result.inserted_primary_key):
            values[c.name] = v
        rec = Record(t, values)
        self._tracked.append(rec)
        return rec


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
    """Engine and schema; the pipeline writes through `transaction()`, readers use `read()`."""

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
        """Tables and the schema version, in one transaction; on PostgreSQL under an advisory lock, so that
        replicas starting together do not race on CREATE TABLE or on the version row."""
        with self._write_lock, self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7457656)"))
            metadata.create_all(conn)
            if conn.execute(select(Meta.value).where(Meta.key == "schema_version")).first() is None:
                conn.execute(insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One transaction. On SQLite, writers of this process queue on a lock instead of SQLite's busy handler,
        which sleeps in steps of up to 100 ms when threads collide."""
        with self._write_lock, self.engine.begin() as conn:
            tx = Tx(conn)
            yield tx
            tx.flush()

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        """Reads only: no write lock (WAL readers never block)."""
        with self.engine.connect() as conn:
            yield Tx(conn)

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
            t = SourceState
            stmt = (update(t).where(t.source_id == bindparam("sid"), t.alerted.is_(None))
                    .values(last_poll_at=bindparam("now"), last_success_at=bindparam("now"), consecutive_failures=0,
                            last_error=None, not_before=None, polls=t.polls + bindparam("n"),
                            last_status="unchanged", etag=func.coalesce(bindparam("etag"), t.etag),
                            last_modified=func.coalesce(bindparam("lm"), t.last_modified)))
            with self.begin() as conn:
                conn.execute(stmt, items)
        return len(items)

    def state(self, tx: Tx, source_id: str) -> Record:
        return tx.get(SourceState, source_id) or tx.add(SourceState, source_id=source_id)

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

"""State in SQLAlchemy 2 Core: per-source fetch state, entries, standards, events and the delivery outbox.

SQLite under state/ by default (WAL); any SQLAlchemy URL works, PostgreSQL included. The store owns everything
about state: the tables and their migrations, a per-process cache of each source's fetch state, the batched
timestamps of unchanged polls and when they are written. Callers use two entry points, `read()` (a connection,
no lock) and `write()` (one transaction under the process's writer lock); writes are explicit statements.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import (
    JSON, Boolean, Column, DateTime, ForeignKey, Index, Integer, MetaData, String, Table, Text, UniqueConstraint,
    bindparam, create_engine, event, func, insert, inspect, select, text, update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from watcher.errors import StoreError

log = logging.getLogger("watcher.store")

SCHEMA_VERSION = 3


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
    _col("not_before", UTCDateTime, null=True),        # Retry-After from the server (capped)
    _col("polls", Integer, default=0),
    # v2
    _col("config_digest", String(64), null=True),      # extraction settings the stored entries were read with
    _col("consecutive_broken", Integer, default=0),
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
    # v2
    _col("detail_failures", Integer, default=0),       # failed reads of the detail page since the row last changed
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
    # v3
    _col("family", String(64), null=True, index=True),   # the number without its year: every edition shares it
    _col("title_en", Text, null=True),
    _col("issue_date", String(10), null=True),
    _col("act_date", String(10), null=True, index=True),  # comes into force on this (Beijing) date
    _col("replaces", JSON, null=True),                    # standard numbers this edition replaces
    _col("replaced_by", JSON, null=True),
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
    # v2
    _col("claim_token", String(64), null=True),        # host:pid:random of the sender holding the row
    name="deliveries", args=(UniqueConstraint("event_id", "channel", name="uq_delivery_event_channel"),
                             Index("ix_deliveries_status_next", "status", "next_try_at")))

ArchivedFile = Rows(
    _id(),
    _col("source_id", String(64)),
    _col("entry_key", String(512)),
    _col("url", Text),
    _col("name", Text, null=True),
    _col("status", String(16), default="pending"),     # pending, kept, failed (for good)
    _col("attempts", Integer, default=0),
    _col("sha256", String(64), null=True),
    _col("path", Text, null=True),                     # relative to the archive directory
    _col("size", Integer, null=True),
    _col("content_type", String(128), null=True),
    _col("last_error", Text, null=True),
    _col("created_at", UTCDateTime),
    _col("fetched_at", UTCDateTime, null=True),
    name="archive", args=(UniqueConstraint("source_id", "entry_key", "url", name="uq_archive_entry_url"),
                          Index("ix_archive_status", "status")))

ChannelState = Rows(
    Column("channel_id", String(64), primary_key=True),
    _col("failing_since", UTCDateTime, null=True),     # first failure of the current run of failures
    _col("last_ok_at", UTCDateTime, null=True),
    _col("last_error", Text, null=True),
    _col("alerted", Boolean, default=False),           # channel_failed raised for the current run
    name="channel_state")

Meta = Rows(
    Column("key", String(64), primary_key=True),
    _col("value", Text),
    name="meta")

# Columns added after version 1, by the version that added them: opening an older state adds them in place.
MIGRATIONS: dict[int, list[tuple[Rows, str]]] = {
    2: [(SourceState, "config_digest"), (SourceState, "consecutive_broken"), (EntryRow, "detail_failures"),
        (Delivery, "claim_token")],
    3: [(Standard, "family"), (Standard, "title_en"), (Standard, "issue_date"), (Standard, "act_date"),
        (Standard, "replaces"), (Standard, "replaced_by")],
}

STATE_COLUMNS = tuple(c.name for c in SourceState.__table__.columns if c.name != "source_id")
NEW_STATE: dict[str, Any] = {c.name: (c.default.arg if c.default is not None else None)
                             for c in SourceState.__table__.columns if c.name != "source_id"}


class Writer:
    """One open write transaction: explicit statements, and callbacks that run once it has committed."""

    __slots__ = ("conn", "_after")

    def __init__(self, conn: Connection):
        self.conn = conn
        self._after: list[Callable[[], None]] = []

    def execute(self, stmt, params=None):
        return self.conn.execute(stmt, params)

    def scalar(self, stmt, params=None):
        return self.conn.execute(stmt, params).scalar()

    def scalars(self, stmt, params=None):
        return self.conn.execute(stmt, params).scalars()

    def after_commit(self, fn: Callable[[], None]) -> None:
        self._after.append(fn)


class _StateCache:
    """Per-process copy of each source's state row, so an unchanged poll reads nothing. Entries expire after
    `ttl` seconds (another replica may have moved on); the store refreshes them after each committed write."""

    def __init__(self, ttl: float = 60.0):
        self.ttl = ttl
        self._d: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def get(self, sid: str) -> dict | None:
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


class _Touches:
    """Timestamps of unchanged polls of healthy sources, written in batches (at most `max_age` late)."""

    def __init__(self, max_items: int = 256, max_age: float = 2.0):
        self.max_items, self.max_age = max_items, max_age
        self._d: dict[str, dict] = {}
        self._since: float | None = None
        self._lock = threading.Lock()

    def add(self, sid: str, now: datetime, etag: str | None, last_modified: str | None) -> tuple[bool, bool]:
        """(first of a batch, batch full)."""
        with self._lock:
            prev = self._d.get(sid) or {}
            self._d[sid] = {"sid": sid, "now": now, "etag": etag or prev.get("etag"),
                            "lm": last_modified or prev.get("lm"), "n": prev.get("n", 0) + 1}
            first = self._since is None
            if first:
                self._since = time.monotonic()
            return first, len(self._d) >= self.max_items

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


def _sqlite_path(url: str) -> str | None:
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1] if "///" in url else ""
    return None if not path or path == ":memory:" else path


class Store:
    """Engine, schema and source state. `read()` for readers, `write()` for one transaction of writes."""

    def __init__(self, url: str, *, create: bool = True, must_exist: bool = False, pool_size: int | None = None):
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self._write_lock = threading.RLock() if self.sqlite else contextlib.nullcontext()
        path = _sqlite_path(url)
        if must_exist and path and not Path(path).exists():
            raise StoreError(f"no state at {path} (run `watcher once` or `watcher run` first, or check --state)")
        try:
            if self.sqlite:
                if path:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                self.engine: Engine = create_engine(url, connect_args={"timeout": 30})
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                kw = {"pool_size": pool_size, "max_overflow": 10} if pool_size else {}
                self.engine = create_engine(url, pool_pre_ping=True, **kw)
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
        self._cache = _StateCache()
        self._touches = _Touches()
        self._timer: threading.Timer | None = None
        self.write_errors = 0            # failed write transactions since start (health and /metrics)
        self.last_write_error: str | None = None

    # --- schema ----------------------------------------------------------------------------------------------

    def _create_schema(self) -> None:
        """Tables, migrations and the schema version, in one transaction; on PostgreSQL under an advisory lock,
        so that replicas starting together do not race on CREATE TABLE or on the version row."""
        with self._write_lock, self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7457656)"))
            metadata.create_all(conn)
            row = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).first()
            if row is None:
                conn.execute(insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
                return
            version = int(row.value)
            if version > SCHEMA_VERSION:
                raise StoreError(f"state {_mask_db(self.url)} was written by a newer watcher (schema {version}, "
                                 f"this one knows {SCHEMA_VERSION})")
            if version < SCHEMA_VERSION:
                self._migrate(conn, version)

    def _migrate(self, conn: Connection, version: int) -> None:
        insp = inspect(conn)
        for v in range(version + 1, SCHEMA_VERSION + 1):
            for table, name in MIGRATIONS.get(v, []):
                t = table.__table__
                if name in {c["name"] for c in insp.get_columns(t.name)}:
                    continue
                col = t.c[name]
                ddl = f"ALTER TABLE {t.name} ADD COLUMN {name} {col.type.compile(self.engine.dialect)}"
                if col.default is not None:
                    ddl += f" DEFAULT {col.default.arg!r}".replace("True", "TRUE").replace("False", "FALSE")
                conn.execute(text(ddl))
            for table in {t for t, _ in MIGRATIONS.get(v, [])}:
                for idx in table.__table__.indexes:
                    idx.create(conn, checkfirst=True)
        conn.execute(update(Meta).where(Meta.key == "schema_version").values(value=str(SCHEMA_VERSION)))
        log.info("state schema migrated from version %d to %d", version, SCHEMA_VERSION)

    # --- the two entry points --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads only: no writer lock (WAL readers never block)."""
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Writer]:
        """One transaction. Batched timestamps go first in the same transaction; callbacks registered with
        `after_commit` run once it has committed. On SQLite, writers of this process queue on a lock instead of
        SQLite's busy handler, which sleeps in steps of up to 100 ms when threads collide. A failure to write
        (disk full, read-only file) is raised as StoreError."""
        w = None
        try:
            with self._write_lock, self.engine.begin() as conn:
                self._write_touches(conn, self._touches.take())
                w = Writer(conn)
                yield w
        except OperationalError as e:
            self._write_failed(e)
            raise StoreError(f"cannot write state {_mask_db(self.url)}: {str(e.orig or e).splitlines()[0]}") from None
        except OSError as e:
            self._write_failed(e)
            raise StoreError(f"cannot write state {_mask_db(self.url)}: {e}") from None
        for fn in w._after:
            fn()

    def _write_failed(self, e: BaseException) -> None:
        self.write_errors += 1
        self.last_write_error = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        self._cache = _StateCache(self._cache.ttl)      # what we cached may not be what is stored

    # --- source state ----------------------------------------------------------------------------------------

    def state(self, sid: str, *, fresh: bool = False) -> dict[str, Any]:
        """The source's state row as a dict (cached unless `fresh`; a source never polled gives the defaults)."""
        hit = None if fresh else self._cache.get(sid)
        if hit is not None:
            return hit
        with self.read() as conn:
            row = conn.execute(select(SourceState).where(SourceState.source_id == sid)).first()
        st = dict(row._mapping) if row is not None else {"source_id": sid, **NEW_STATE}
        self._cache.put(sid, st)
        return st

    def preload_states(self, ids: list[str]) -> None:
        """Fill the cache for many sources with one query (a `once` over 1000 sources reads once)."""
        wanted = set(ids)
        found: dict[str, dict] = {}
        with self.read() as conn:
            for row in conn.execute(select(SourceState)):
                if row.source_id in wanted:
                    found[row.source_id] = dict(row._mapping)
        for sid in wanted:
            self._cache.put(sid, found.get(sid) or {"source_id": sid, **NEW_STATE})

    def load_state(self, w: Writer, sid: str) -> dict[str, Any]:
        """The source's state row read inside a write transaction (fresh, not cached)."""
        row = w.execute(select(SourceState).where(SourceState.source_id == sid)).first()
        return dict(row._mapping) if row is not None else {"source_id": sid, **NEW_STATE, "_new": True}

    def save_state(self, w: Writer, state: dict[str, Any], **changes: Any) -> dict[str, Any]:
        """Write `changes` to the source's state row (inserting it the first time); returns the new state, which
        the cache takes once the transaction has committed."""
        sid = state["source_id"]
        new = {k: v for k, v in state.items() if k != "_new"}
        new.update(changes)
        if state.get("_new"):
            w.execute(insert(SourceState).values(**new))
        elif changes:
            w.execute(update(SourceState).where(SourceState.source_id == sid).values(**changes))
        self._cache.drop(sid)
        w.after_commit(lambda: self._cache.put(sid, new))
        return new

    def touch(self, sid: str, now: datetime, etag: str | None, last_modified: str | None) -> None:
        """Record an unchanged poll of a healthy source: its timestamps join the next batched write."""
        cached = self._cache.get(sid)
        if cached is not None:
            cached.update(last_poll_at=now, last_success_at=now, not_before=None, last_status="unchanged")
            if etag or last_modified:
                cached["etag"], cached["last_modified"] = etag, last_modified
        first, full = self._touches.add(sid, now, etag, last_modified)
        if full:
            self.flush()
        elif first:
            t = threading.Timer(self._touches.max_age, self._flush_quietly)
            t.daemon = True
            self._timer = t
            t.start()

    def flush(self) -> int:
        """Write the batched timestamps now; returns how many sources were touched."""
        items = self._touches.take()
        if items:
            try:
                with self._write_lock, self.engine.begin() as conn:
                    self._write_touches(conn, items)
            except (OperationalError, OSError) as e:
                self._write_failed(e)
                raise StoreError(f"cannot write state {_mask_db(self.url)}: {e}") from None
        return len(items)

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception as e:  # a timer thread has nobody to raise to; the next write reports it
            log.warning("writing batched poll timestamps failed: %s", e)

    @staticmethod
    def _write_touches(conn: Connection, items: list[dict]) -> None:
        if not items:
            return
        t = SourceState
        stmt = (update(t).where(t.source_id == bindparam("sid"), t.alerted.is_(None))
                .values(last_poll_at=bindparam("now"), last_success_at=bindparam("now"), consecutive_failures=0,
                        consecutive_broken=0, last_error=None, not_before=None, polls=t.polls + bindparam("n"),
                        last_status="unchanged", etag=func.coalesce(bindparam("etag"), t.etag),
                        last_modified=func.coalesce(bindparam("lm"), t.last_modified)))
        conn.execute(stmt, items)

    # --- replicas --------------------------------------------------------------------------------------------

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

    # --- lifecycle -------------------------------------------------------------------------------------------

    def probe_write(self) -> None:
        """A real write (and the batched timestamps): raises StoreError when the state cannot be written."""
        stamp = datetime.now(timezone.utc).isoformat()
        with self.write() as w:
            if not w.execute(update(Meta).where(Meta.key == "heartbeat").values(value=stamp)).rowcount:
                w.execute(insert(Meta).values(key="heartbeat", value=stamp))

    def check(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def close(self) -> None:
        """Write what is batched and release the connections."""
        if self._timer is not None:
            self._timer.cancel()
        try:
            self.flush()
        finally:
            self.engine.dispose()

    def dispose(self) -> None:
        self.engine.dispose()


def _mask_db(url: str) -> str:
    from watcher.logs import mask
    return mask(url)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)

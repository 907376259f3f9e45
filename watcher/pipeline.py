"""poll_source: fetch -> decode -> extract -> details -> identify -> fingerprint -> detect -> one transaction.

The only orchestration function; `watcher once`, `watcher run` and the demo all call it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

from sqlalchemy import bindparam, func, insert, select, update

from watcher.config import Config, Source
from watcher.decode import to_text
from watcher.detect import describe_changes
from watcher.errors import FetchError, ParseError
from watcher.extract import get as get_extractor
from watcher.fetch import Fetcher
from watcher.fingerprint import body_digest, digest
from watcher.identify import enrich, stage_label
from watcher.models import Entry, Page
from watcher.standards import update_standards
from watcher.store import Delivery, EntryRow, EventRow, Record, SourceState, Store, utcnow

log = logging.getLogger("watcher.poll")

DETAIL_FIELDS = ("deadline", "summary", "plan_no", "attachments", "published")
DETAIL_TRIES = 3      # a detail page that keeps failing is retried on this many polls, then when its row changes


@dataclass
class Context:
    config: Config
    store: Store
    fetcher: Fetcher
    clock: Callable[[], datetime] = utcnow


@dataclass
class PollOutcome:
    source: str
    status: str                 # ok, unchanged, failed, broken, locked
    entries: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    duration: float = 0.0
    error: str | None = None


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def entry_event(kind: str, source: Source, e: Entry, **extra: Any) -> dict[str, Any]:
    payload = {
        "kind": kind, "source": source.id, "source_name": source.name, "url": e.url, "title": e.title,
        "published": e.published, "deadline": e.deadline, "plan_no": e.plan_no, "std_no": e.std_no,
        "std_nos": e.std_nos, "stage": e.stage, "previous_stage": None, "stage_label": stage_label(e.stage),
        "status": e.status, "committee": e.committee, "issue_date": e.issue_date, "act_date": e.act_date,
        "summary": e.summary, "attachments": e.attachments, "changes": {}, "entry_key": e.key,
    }
    payload.update(extra)
    return payload


def source_event(kind: str, source: Source, **extra: Any) -> dict[str, Any]:
    payload = {"kind": kind, "source": source.id, "source_name": source.name, "url": source.url,
               "title": source.name, "published": None, "deadline": None, "plan_no": None, "std_no": None,
               "stage": None, "previous_stage": None, "changes": {}}
    payload.update(extra)
    return payload


def write_events(s, ctx: Context, payloads: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Insert events and their deliveries inside the caller's transaction (one bulk INSERT each); returns the
    payloads with their ids. The stored payload has no id: readers add the row id."""
    from watcher.subscribe import delivery_rows

    if not payloads:
        return []
    rows, evidence = [], []
    for p in payloads:
        evidence.append(p.pop("_evidence_row", None))
        p["detected_at"] = _iso(now)
        rows.append({"kind": p["kind"], "source_id": p["source"], "entry_key": p.get("entry_key"),
                     "dedupe_key": p.pop("dedupe_key", None), "payload": p, "detected_at": now})
    ids = s.execute(insert(EventRow).returning(EventRow.id, sort_by_parameter_order=True), rows).scalars().all()
    out, deliveries = [], []
    for p, event_id, ev_row in zip(payloads, ids, evidence):
        if ev_row is not None:
            ev_row.event_id = event_id
        full = {"id": event_id, **p}
        deliveries += delivery_rows(ctx.config, event_id, full, now)
        out.append(full)
    if deliveries:
        s.execute(insert(Delivery), deliveries)
    return out


_READ_STATE = select(SourceState.etag, SourceState.last_modified, SourceState.body_digest, SourceState.baselined,
                     SourceState.alerted, SourceState.entry_count).where(SourceState.source_id == bindparam("sid"))


def _snapshot_state(ctx: Context, source: Source) -> dict[str, Any]:
    cached = ctx.store.cache.get(source.id)
    if cached is not None:
        return cached
    with ctx.store.engine.connect() as conn:
        row = conn.execute(_READ_STATE, {"sid": source.id}).first()
    if row is None:
        return {"etag": None, "last_modified": None, "body_digest": None, "baselined": False, "alerted": None,
                "entry_count": 0}
    state = dict(row._mapping)
    ctx.store.cache.put(source.id, state)
    return state


def poll_source(ctx: Context, source: Source) -> PollOutcome:
    """Poll one source and commit its new state and events in one transaction."""
    with ctx.store.source_lock(source.id) as got:
        # timing is taken while the lock is held, so the logged interval is the exclusive one
        t0, started = time.monotonic(), time.time()
        if not got:
            return PollOutcome(source.id, "locked", duration=0.0)
        out = _poll(ctx, source)
        out.duration = time.monotonic() - t0
    log.info("poll", extra={"fields": {"source": source.id, "status": out.status, "entries": out.entries,
                                       "events": len(out.events), "duration_ms": round(out.duration * 1000),
                                       "started": f"{started:.3f}",
                                       **({"error": out.error} if out.error else {})}})
    return out


def _poll(ctx: Context, source: Source) -> PollOutcome:
    prior = _snapshot_state(ctx, source)
    try:
        fr = ctx.fetcher.fetch(source.url, method=source.method, form=source.form, headers=source.headers,
                               timeout=source.timeout, retries=source.retries, max_bytes=source.max_bytes,
                               etag=prior["etag"], last_modified=prior["last_modified"], ca_bundle=source.ca_bundle)
    except FetchError as e:
        return _record_failure(ctx, source, e)
    if fr.not_modified or (prior["baselined"] and prior["body_digest"] == body_digest(fr.body)):
        return _record_healthy_unchanged(ctx, source, fr.headers, prior)
    text, encoding, bad_chars = to_text(fr.body, fr.headers.get("content-type"))
    page = Page(url=fr.url or source.url, text=text, content_type=fr.headers.get("content-type", ""),
                encoding=encoding, replacements=bad_chars)
    page.url = source.url if urlsplit(page.url).hostname == source.host else page.url
    extractor = get_extractor(source.kind)
    try:
        entries = extractor.extract(page, source)
    except ParseError as e:
        return _record_broken(ctx, source, f"HTTP {fr.status} but {e}")
    except Exception as e:  # an extractor bug or a page it never imagined: a broken source, not a crash
        log.exception("extractor %s failed on %s", source.kind, source.url)
        return _record_broken(ctx, source, f"HTTP {fr.status} but the {source.kind} extractor failed: "
                                           f"{e.__class__.__name__}: {e}")
    if not entries and not getattr(entries, "confirmed_empty", False):
        return _record_broken(ctx, source, f"HTTP {fr.status} but 0 entries parsed")
    unique: dict[str, Entry] = {}
    for e in entries:
        unique.setdefault(e.key, e)
    entries = list(unique.values())
    previous = _load_previous(ctx, source, list(unique))
    rows: list[tuple[Entry, str, dict | None, bool]] = []
    retry_details = False
    for e in entries:
        row_digest = digest(e.as_dict())
        p = previous.get(e.key)
        detail, detail_ok = (p.detail if p else None), (p.detail_ok if p else False)
        failures = (detail or {}).get("_failures", 0)
        wants = extractor.has_detail and extractor.wants_detail(e, source)
        if wants and (
                p is None or p.row_digest != row_digest or not p.detail_ok and failures < DETAIL_TRIES):
            detail, detail_ok = _fetch_detail(ctx, source, extractor, e, detail)
        if wants and not detail_ok and (detail or {}).get("_failures", 0) < DETAIL_TRIES:
            retry_details = True
        if detail:
            for k in DETAIL_FIELDS:
                if detail.get(k) and not getattr(e, k):
                    setattr(e, k, detail[k])
        enrich(e, source)
        rows.append((e, row_digest, detail, detail_ok))
    # a detail page still to retry: keep an unchanged list body from short-cutting the next poll
    bdigest = None if retry_details else body_digest(fr.body)
    return _commit_entries(ctx, source, fr.headers, bdigest, rows, previous, len(entries))


def _load_previous(ctx: Context, source: Source, keys: list[str]) -> dict[str, Any]:
    """The stored rows of these entry keys (read-only Row objects), by key."""
    out: dict[str, Any] = {}
    with ctx.store.read() as s:
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            for r in s.execute(select(EntryRow).where(EntryRow.source_id == source.id, EntryRow.key.in_(chunk))):
                out[r.key] = r
    return out


def _failed(old: dict | None, permanent: bool = False) -> tuple[dict, bool]:
    detail = dict(old or {})
    detail["_failures"] = DETAIL_TRIES if permanent else detail.get("_failures", 0) + 1
    return detail, False


def _fetch_detail(ctx: Context, source: Source, extractor, e: Entry, old: dict | None) -> tuple[dict | None, bool]:
    if urlsplit(e.url).hostname != source.host:
        log.warning("detail page %s is not on %s: not fetched", e.url, source.host)
        return _failed(old, permanent=True)
    try:
        fr = ctx.fetcher.fetch(e.url, headers=source.headers, timeout=source.timeout, retries=source.retries,
                               max_bytes=source.max_bytes, ca_bundle=source.ca_bundle)
        text, enc, _ = to_text(fr.body, fr.headers.get("content-type"))
        return extractor.parse_detail(Page(url=e.url, text=text, encoding=enc), e, source), True
    except (FetchError, ParseError) as err:
        log.warning("detail page %s: %s (kept the list row)", e.url, err)
        return _failed(old)
    except Exception as err:  # same as above for an unexpected detail layout
        log.warning("detail page %s: %s: %s (kept the list row)", e.url, err.__class__.__name__, err)
        return _failed(old)


def _finish_success(st: Record, now: datetime, headers: dict[str, str]) -> None:
    st.last_poll_at = st.last_success_at = now
    st.consecutive_failures = 0
    st.last_error = None
    st.not_before = None
    st.polls = (st.polls or 0) + 1
    h = {k.lower(): v for k, v in headers.items()}
    if h.get("etag") or h.get("last-modified"):
        st.etag, st.last_modified = h.get("etag"), h.get("last-modified")


def _recovered(source: Source, st: Record) -> list[dict[str, Any]]:
    if not st.alerted:
        return []
    was = st.alerted
    st.alerted = None
    return [source_event("source_recovered", source, previous_problem=was)]


def _record_healthy_unchanged(ctx: Context, source: Source, headers: dict[str, str],
                              prior: dict[str, Any]) -> PollOutcome:
    now = ctx.clock()
    h = {k.lower(): v for k, v in headers.items()}
    if prior.get("alerted") is None and prior.get("baselined"):
        # the common case, an unchanged page of a healthy source: its timestamps join the next batched write
        if h.get("etag") or h.get("last-modified"):
            prior.update(etag=h.get("etag"), last_modified=h.get("last-modified"))
        if ctx.store.touches.add(source.id, now, h.get("etag"), h.get("last-modified")):
            ctx.store.flush_touches()
        return PollOutcome(source.id, "unchanged", entries=prior.get("entry_count") or 0)
    ctx.store.flush_touches()
    ctx.store.cache.drop(source.id)
    with ctx.store.transaction() as s:
        st = ctx.store.state(s, source.id)
        _finish_success(st, now, headers)
        st.last_status = "unchanged"
        events = write_events(s, ctx, _recovered(source, st), now)
        count = st.entry_count
    return PollOutcome(source.id, "unchanged", entries=count, events=events)


def _record_failure(ctx: Context, source: Source, err: FetchError) -> PollOutcome:
    now = ctx.clock()
    ctx.store.flush_touches()
    ctx.store.cache.drop(source.id)
    with ctx.store.transaction() as s:
        st = ctx.store.state(s, source.id)
        st.last_poll_at = now
        st.last_status = "failed"
        st.last_error = str(err)
        st.polls = (st.polls or 0) + 1
        st.consecutive_failures = (st.consecutive_failures or 0) + 1
        if err.retry_after:
            st.not_before = now + timedelta(seconds=err.retry_after)
        payloads = []
        if st.consecutive_failures >= source.alert_after_failures and st.alerted != "failed":
            st.alerted = "failed"
            payloads.append(source_event(
                "source_failed", source, reason=str(err), http_status=err.status,
                retry_after_s=int(err.retry_after) if err.retry_after is not None else None,
                consecutive_failures=st.consecutive_failures))
        events = write_events(s, ctx, payloads, now)
    return PollOutcome(source.id, "failed", events=events, error=str(err))


def _record_broken(ctx: Context, source: Source, reason: str) -> PollOutcome:
    now = ctx.clock()
    ctx.store.flush_touches()
    ctx.store.cache.drop(source.id)
    with ctx.store.transaction() as s:
        st = ctx.store.state(s, source.id)
        st.last_poll_at = now
        st.last_status = "broken"
        st.last_error = reason
        st.polls = (st.polls or 0) + 1
        st.consecutive_failures = 0
        st.etag = st.last_modified = None     # fetch in full next time: a 304 must not hide the breakage
        payloads = []
        if st.alerted != "broken":
            st.alerted = "broken"
            payloads.append(source_event("source_broken", source, reason=reason,
                                         previous_entries=st.entry_count))
        events = write_events(s, ctx, payloads, now)
    return PollOutcome(source.id, "broken", events=events, error=reason)


def _merge_status_edits(payloads: list[dict[str, Any]], stage_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A status label that changed on a row (即将实施 -> 现行) is the stage change itself: report it once, as the
    stage_changed event carrying the field changes, rather than as a second `changed` event."""
    by_key = {ev["entry_key"]: ev for ev in stage_events}
    out = []
    for p in payloads:
        st = by_key.get(p.get("entry_key")) if p["kind"] == "changed" else None
        if st is not None and set(p["changes"]) <= {"status", "issue_date", "act_date", "published"}:
            st["changes"] = p["changes"]
            continue
        out.append(p)
    return out + stage_events


def _commit_entries(ctx: Context, source: Source, headers: dict[str, str], bdigest: str | None,
                    rows: list[tuple[Entry, str, dict | None, bool]], previous: dict[str, Any],
                    count: int) -> PollOutcome:
    now = ctx.clock()
    ctx.store.flush_touches()
    ctx.store.cache.drop(source.id)
    payloads: list[dict[str, Any]] = []
    with ctx.store.transaction() as s:
        st = ctx.store.state(s, source.id)
        baseline = not st.baselined
        payloads += _recovered(source, st)
        new_rows = []
        for e, row_digest, detail, detail_ok in rows:
            fields = e.as_dict()
            full = digest(fields)
            p = previous.get(e.key)
            if p is None:
                new_rows.append({"source_id": source.id, "key": e.key, "url": e.url, "title": e.title,
                                 "fields": fields, "row_digest": row_digest, "digest": full, "detail": detail,
                                 "detail_ok": detail_ok, "deadline": e.deadline, "first_seen": now, "updated_at": now})
                if not baseline:
                    payloads.append(entry_event("new", source, e))
                continue
            if p.digest == full and p.row_digest == row_digest and p.detail_ok == detail_ok and p.detail == detail:
                continue
            values = {"row_digest": row_digest, "detail": detail, "detail_ok": detail_ok}
            if p.digest != full:
                changes = describe_changes(p.fields, fields)
                if changes:
                    payloads.append(entry_event("changed", source, e, changes=changes))
                values.update(fields=fields, url=e.url, title=e.title, digest=full, deadline=e.deadline,
                              updated_at=now)
            s.execute(update(EntryRow).where(EntryRow.id == p.id).values(values))
        if new_rows:
            s.execute(insert(EntryRow), new_rows)
        stage_events = update_standards(s, source, [r[0] for r in rows], now, baseline=baseline,
                                        source_name=source.name)
        payloads = _merge_status_edits(payloads, stage_events)
        _finish_success(st, now, headers)
        st.last_status = "ok"
        st.body_digest = bdigest
        if bdigest is None:            # a detail retry is due: ask for the full list again, not a 304
            st.etag = st.last_modified = None
        st.baselined = True
        if baseline:
            st.entry_count = s.scalar(select(func.count()).select_from(EntryRow).where(EntryRow.source_id == source.id))
        else:
            st.entry_count = (st.entry_count or 0) + len(new_rows)
        events = write_events(s, ctx, payloads, now)
        known = {"etag": st.etag, "last_modified": st.last_modified, "body_digest": st.body_digest,
                 "baselined": True, "alerted": st.alerted, "entry_count": st.entry_count}
    ctx.store.cache.put(source.id, known)     # committed: the next poll needs no read
    return PollOutcome(source.id, "ok", entries=count, events=events)


"""One poll of one source, in two halves.

`prepare` does the network and parsing work: fetch -> decode -> extract -> sanitise -> detail pages -> identify
-> fingerprint. `commit` compares with the stored entries and writes, in one transaction, the source's state, its
entries, the standards records, the events and their outbox rows. `poll_source` is the two in a row; the runner
overlaps the first halves of many sources and commits them in configuration order.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from datetime import datetime, timedelta
from typing import Any, Callable
from urllib.parse import urlsplit

from sqlalchemy import func, insert, select, update

from watcher.config import Config, Source
from watcher.decode import to_text
from watcher.detect import describe_changes
from watcher.errors import FetchError, ParseError
from watcher.events import Event, write_events
from watcher.extract import Extractor, get as get_extractor
from watcher.fetch import Fetcher
from watcher.fingerprint import body_digest, digest
from watcher.identify import enrich
from watcher.models import Entry, FetchResult, Page
from watcher.sanitize import sanitize_entry
from watcher.standards import link_evidence, update_standards
from watcher.store import EntryRow, Store

log = logging.getLogger("watcher.poll")

DETAIL_FIELDS = ("deadline", "summary", "plan_no", "attachments", "published", "title_en", "replaces", "replaced_by",
                 "act_date", "issue_date")
DETAIL_TRIES = 3      # a detail page that keeps failing is retried on this many polls, then when its row changes


class Context:
    """What a poll needs: the config, the store, the fetcher and a clock (the runner is one)."""

    config: Config
    store: Store
    fetcher: Fetcher
    clock: Callable[[], datetime]


@dataclass
class PollOutcome:
    source: str
    status: str                 # ok, unchanged, failed, broken, locked, skipped
    entries: int = 0
    events: list[Event] = field(default_factory=list)
    duration: float = 0.0
    error: str | None = None


@dataclass
class Row:
    """One extracted entry with what commit needs to compare it."""

    entry: Entry
    row_digest: str
    detail: dict | None
    detail_ok: bool
    detail_failures: int


@dataclass
class Prepared:
    """The first half of a poll: what was fetched and parsed, not yet compared or stored."""

    source: Source
    status: str                          # ok, unchanged, failed, broken, locked
    headers: dict[str, str] = field(default_factory=dict)
    error: FetchError | None = None
    reason: str | None = None
    rows: list[Row] = field(default_factory=list)
    previous: dict[str, Any] = field(default_factory=dict)
    body_digest: str | None = None
    rebaseline: bool = False             # the source's extraction settings changed since the last poll
    started: float = 0.0
    t0: float = 0.0
    lock: contextlib.ExitStack | None = None
    archive: list[dict] = field(default_factory=list)    # attachment downloads to record (archive = true)


# --- shared by polls, `watcher record` and `watcher try` ---------------------------------------------------------

def fetch_list(ctx: Context, source: Source, *, etag: str | None = None,
               last_modified: str | None = None) -> FetchResult:
    return ctx.fetcher.fetch(source.url, method=source.method, form=source.form, headers=source.headers,
                             timeout=source.timeout, retries=source.retries, max_bytes=source.max_bytes,
                             etag=etag, last_modified=last_modified, ca_bundle=source.ca_bundle)


def extract_entries(source: Source, fr: FetchResult) -> list[Entry]:
    """Decode and extract a list page; entries are sanitised and unique by key. Raises ParseError when the page
    does not parse or yields nothing (unless the page itself says it is empty)."""
    text, encoding, bad_chars = to_text(fr.body, fr.headers.get("content-type"))
    page = Page(url=fr.url or source.url, text=text, content_type=fr.headers.get("content-type", ""),
                encoding=encoding, replacements=bad_chars)
    page.url = source.url if urlsplit(page.url).hostname == source.host else page.url
    extractor = get_extractor(source.kind)
    try:
        entries = extractor.extract(page, source)
    except ParseError:
        raise
    except Exception as e:  # an extractor bug or a page it never imagined: a broken source, not a crash
        log.exception("extractor %s failed on %s", source.kind, source.url)
        raise ParseError(f"the {source.kind} extractor failed: {e.__class__.__name__}: {e}", url=source.url) from None
    if not entries and not getattr(entries, "confirmed_empty", False):
        raise ParseError("0 entries parsed", url=source.url)
    unique: dict[str, Entry] = {}
    for e in entries:
        sanitize_entry(e)
        unique.setdefault(e.key, e)
    return list(unique.values())


def wants_detail(extractor: Extractor, source: Source, e: Entry) -> bool:
    return extractor.has_detail and source.detail_pages and extractor.wants_detail(e, source)


def on_source_sites(source: Source, extractor: Extractor, url: str) -> bool:
    """Detail pages and attachments come from the source's own site, or one its extractor names."""
    host = urlsplit(url).hostname
    return host == source.host or host in getattr(extractor, "detail_hosts", ())


def fetch_detail(ctx: Context, source: Source, extractor: Extractor, e: Entry) -> tuple[dict | None, str | None]:
    """(detail fields, None) or (None, why it failed). Detail pages must be on the source's host (or a host its
    extractor names: std.samr's announcements are published on std.sacinfo.org.cn)."""
    if not on_source_sites(source, extractor, e.url):
        return None, f"detail page {e.url} is not on {source.host}: not fetched"
    try:
        fr = ctx.fetcher.fetch(e.url, headers=source.headers, timeout=source.timeout, retries=source.retries,
                               max_bytes=source.max_bytes, ca_bundle=source.ca_bundle)
        text, enc, _ = to_text(fr.body, fr.headers.get("content-type"))
        detail = extractor.parse_detail(Page(url=e.url, text=text, encoding=enc), e, source)
        return sanitize_detail(detail), None
    except (FetchError, ParseError) as err:
        return None, f"detail page {e.url}: {err} (kept the list row)"
    except Exception as err:  # same as above for an unexpected detail layout
        return None, f"detail page {e.url}: {err.__class__.__name__}: {err} (kept the list row)"


def sanitize_detail(detail: dict | None) -> dict | None:
    if not detail:
        return detail
    probe = Entry(key="", url="", title="")
    for k in DETAIL_FIELDS:
        if k in detail:
            setattr(probe, k, detail[k])
    sanitize_entry(probe)
    return {**detail, **{k: getattr(probe, k) for k in DETAIL_FIELDS if k in detail}}


# --- the poll -------------------------------------------------------------------------------------------------

def poll_source(ctx: Context, source: Source, *, force: bool = False) -> PollOutcome:
    """Poll one source and commit its new state and events in one transaction."""
    return commit(ctx, prepare(ctx, source))


def prepare(ctx: Context, source: Source) -> Prepared:
    """Fetch and parse; holds the source's replica lock until `commit` releases it."""
    lock = contextlib.ExitStack()
    try:
        got = lock.enter_context(ctx.store.source_lock(source.id))
        # timing is taken while the lock is held, so the logged interval is the exclusive one
        p = Prepared(source, "locked", started=time.time(), t0=time.monotonic(), lock=lock)
        if got:
            _prepare(ctx, p)
        return p
    except BaseException:
        lock.close()
        raise


def _prepare(ctx: Context, p: Prepared) -> None:
    source = p.source
    prior = ctx.store.state(source.id)
    stored_cfg = prior.get("config_digest")
    p.rebaseline = bool(prior.get("baselined")) and stored_cfg is not None and stored_cfg != source.config_digest
    fresh = p.rebaseline or not prior.get("baselined")
    # a watch lookup reads its editions' detail pages on every poll: a 修订 label, a revision plan (当前标准计划) or a
    # plan's progress (CURRENT_LINK) shows only there, while the list row stays the same
    reread = source.watch
    try:
        fr = fetch_list(ctx, source, etag=None if fresh or reread else prior.get("etag"),
                        last_modified=None if fresh or reread else prior.get("last_modified"))
    except FetchError as e:
        p.status, p.error = "failed", e
        return
    p.headers = fr.headers
    if fr.not_modified or not fresh and not reread and prior.get("body_digest") == body_digest(fr.body):
        p.status = "unchanged"
        return
    try:
        entries = _only_watched(source, extract_entries(source, fr))
    except ParseError as e:
        p.status, p.reason = "broken", f"HTTP {fr.status} but {e}"
        return
    extractor = get_extractor(source.kind)
    p.previous = _load_previous(ctx, source, [e.key for e in entries])
    if not fresh:
        entries += _later_pages(ctx, source, extractor, entries, p.previous)
    retry_details = False
    extra_entries: list[Entry] = []
    for e in entries:
        row_digest = digest(e.as_dict())
        prev = p.previous.get(e.key)
        detail = prev.detail if prev else None
        detail_ok = prev.detail_ok if prev else False
        failures = (prev.detail_failures or 0) if prev else 0
        wants = wants_detail(extractor, source, e)
        if wants and (reread or prev is None or prev.row_digest != row_digest
                      or not detail_ok and failures < DETAIL_TRIES):
            got, why = fetch_detail(ctx, source, extractor, e)
            if why is None:
                detail, detail_ok, failures = got, True, 0
            else:
                log.warning(why)
                detail_ok = False
                if not on_source_sites(source, extractor, e.url):
                    failures = DETAIL_TRIES          # never fetched from elsewhere: no point in trying again
                else:
                    failures = failures + 1 if prev is None or prev.row_digest == row_digest else 1
        if wants and not detail_ok and failures < DETAIL_TRIES:
            retry_details = True
        if detail:
            _merge_detail(e, detail)
        enrich(e, source)
        if detail:
            _detail_stage(e, detail)
            if source.watch:
                extra_entries += _revision_plans(source, e, detail)
        p.rows.append(Row(e, row_digest, detail, detail_ok, failures))
    if extra_entries:
        known = {r.entry.key for r in p.rows}
        fresh_plans = [x for x in extra_entries if x.key not in known]
        p.previous.update(_load_previous(ctx, source, [x.key for x in fresh_plans]))
        for x in fresh_plans:
            enrich(x, source)
            p.rows.append(Row(x, digest(x.as_dict()), None, False, 0))
    if source.archive:
        from watcher.archive import download_attachments
        download_attachments(ctx, source, p)
        # a file still to fetch: the next poll must not stop at an unchanged list
        retry_details = retry_details or any(not r["ok"] and not r.get("final") for r in p.archive)
    # a detail page still to retry: keep an unchanged list body from short-cutting the next poll
    p.body_digest = None if retry_details else body_digest(fr.body)
    p.status = "ok"


def _merge_detail(e: Entry, detail: dict) -> None:
    """Fill what the list row lacks from its detail page."""
    for k in DETAIL_FIELDS:
        if detail.get(k) and not getattr(e, k):
            setattr(e, k, detail[k])
    if detail.get("standards"):       # an announcement: the standards it publishes, each with what it replaces
        e.extra["standards"] = detail["standards"]
    if detail.get("withdrawn_date"):  # gbDetailed 废止日期: the date a withdrawn or superseded edition left force
        e.extra["withdrawn_date"] = detail["withdrawn_date"]


def _detail_stage(e: Entry, detail: dict) -> None:
    """A detail page may know more than the list's status label: a standard in force whose revision is under
    way, or one the page already shows as superseded or withdrawn; for a plan, the step it has reached
    (CURRENT_LINK 正在审查, 正在批准…), where its search card only ever says 制定中."""
    from watcher.identify import is_forward
    st = detail.get("stage")
    if not st or not e.stage or not is_forward(e.stage, st):
        return
    if st in ("under_revision", "superseded", "withdrawn") or e.plan_no and not e.std_no:
        e.stage = st


def _only_watched(source: Source, entries: list[Entry]) -> list[Entry]:
    """A watch lookup keeps only the watched standard's editions (or its plan): a search returns neighbours too."""
    if not source.watch or not source.watch_item:
        return entries
    from watcher.identify import normalize_plan_no, std_family
    plan = normalize_plan_no(source.watch_item)
    family = None if plan else std_family(source.watch_item)
    keep = []
    for e in entries:
        if plan and e.plan_no == plan or family and std_family(e.std_no) == family:
            keep.append(e)
    if not keep and entries:
        log.info("watch %s: the lookup found %d rows, none of them an edition of it", source.watch_item, len(entries))
    from watcher.extract import Entries
    found = Entries(keep)
    found.confirmed_empty = True      # a lookup that finds nothing is an answer, not a broken page
    return found


def _revision_plans(source: Source, e: Entry, detail: dict) -> list[Entry]:
    """The revision plan a watched standard's page shows (当前标准计划) becomes an entry of its own, so that a new
    project in the family is reported (as `new`, replacing the edition in force)."""
    cur = detail.get("current_plan") or {}
    plan = cur.get("plan_no")
    if not plan:
        return []
    url = cur.get("url") or e.url
    return [Entry(key=f"plan:{plan}", url=url, title=cur.get("title") or e.title, plan_no=plan,
                  status=cur.get("status"), replaces=[e.std_no] if e.std_no else [],
                  extra={"revision_of": e.std_no})]


def _later_pages(ctx: Context, source: Source, extractor: Extractor, first: list[Entry],
                 previous: dict[str, Any]) -> list[Entry]:
    """A burst: every row of the first page is new. Read the following pages (kinds whose paging is known, at most
    `max_pages` in all) until a page shows an entry we already know."""
    if not first or any(e.key in previous for e in first) or source.max_pages < 2:
        return []
    seen = {e.key for e in first}
    more: list[Entry] = []
    for n in range(2, source.max_pages + 1):
        req = extractor.page_request(source, n)
        if req is None:
            break
        url, form = req
        try:
            fr = ctx.fetcher.fetch(url, method=source.method, form=form or source.form, headers=source.headers,
                                   timeout=source.timeout, retries=source.retries, max_bytes=source.max_bytes,
                                   ca_bundle=source.ca_bundle)
            page = _only_watched(source, extract_entries(source, fr))
        except (FetchError, ParseError) as err:
            log.warning("page %d of %s: %s (the first page's rows are kept)", n, source.id, err)
            break
        fresh = [e for e in page if e.key not in seen]
        if not fresh:
            break
        seen.update(e.key for e in fresh)
        previous.update(_load_previous(ctx, source, [e.key for e in fresh]))
        known = [e for e in fresh if e.key in previous]
        more += [e for e in fresh if e.key not in previous]
        if known:
            break
    if more:
        log.info("source %s: every row of page 1 was new; %d more from the following pages", source.id, len(more))
    return more


def _load_previous(ctx: Context, source: Source, keys: list[str]) -> dict[str, Any]:
    """The stored rows of these entry keys (plain read-only records), by key."""
    out: dict[str, Any] = {}
    with ctx.store.read() as conn:
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            for r in conn.execute(select(EntryRow).where(EntryRow.source_id == source.id, EntryRow.key.in_(chunk))):
                out[r.key] = SimpleNamespace(**r._mapping)
    return out


def commit(ctx: Context, p: Prepared) -> PollOutcome:
    """Compare and store the prepared poll; releases the source's lock; logs one line."""
    try:
        if p.status == "locked":
            out = PollOutcome(p.source.id, "locked")
        elif p.status == "unchanged":
            out = _commit_unchanged(ctx, p)
        elif p.status == "failed":
            out = _commit_failure(ctx, p)
        elif p.status == "broken":
            out = _commit_broken(ctx, p)
        else:
            out = _commit_entries(ctx, p)
        out.duration = time.monotonic() - p.t0
    finally:
        if p.lock is not None:
            p.lock.close()
    if out.status != "locked":
        level = logging.WARNING if out.status in ("failed", "broken") else logging.INFO
        log.log(level, "poll", extra={"fields": {
            "source": p.source.id, "status": out.status, "entries": out.entries, "events": len(out.events),
            "duration_ms": round(out.duration * 1000), "started": f"{p.started:.3f}",
            **({"error": out.error} if out.error else {})}})
    return out


def _success(st: dict[str, Any], now: datetime, headers: dict[str, str]) -> dict[str, Any]:
    """State changes of a poll that fetched and parsed."""
    ch: dict[str, Any] = {"last_poll_at": now, "last_success_at": now, "consecutive_failures": 0,
                          "consecutive_broken": 0, "last_error": None, "not_before": None,
                          "polls": (st.get("polls") or 0) + 1}
    h = {k.lower(): v for k, v in headers.items()}
    if h.get("etag") or h.get("last-modified"):
        ch["etag"], ch["last_modified"] = h.get("etag"), h.get("last-modified")
    return ch


def _recovered(source: Source, st: dict[str, Any], ch: dict[str, Any]) -> list[Event]:
    if not st.get("alerted"):
        return []
    ch["alerted"] = None
    return [Event.source_recovered(source, previous_problem=st["alerted"])]


def _commit_unchanged(ctx: Context, p: Prepared) -> PollOutcome:
    now = ctx.clock()
    source = p.source
    prior = ctx.store.state(source.id)
    if prior.get("alerted") is None and prior.get("baselined"):
        # the common case, an unchanged page of a healthy source: its timestamps join the next batched write
        h = {k.lower(): v for k, v in p.headers.items()}
        ctx.store.touch(source.id, now, h.get("etag"), h.get("last-modified"))
        return PollOutcome(source.id, "unchanged", entries=prior.get("entry_count") or 0)
    with ctx.store.write() as w:
        st = ctx.store.load_state(w, source.id)
        ch = _success(st, now, p.headers)
        ch["last_status"] = "unchanged"
        events = write_events(w, ctx.config, _recovered(source, st, ch), now)
        ctx.store.save_state(w, st, **ch)
    return PollOutcome(source.id, "unchanged", entries=st.get("entry_count") or 0, events=events)


def _commit_failure(ctx: Context, p: Prepared) -> PollOutcome:
    now = ctx.clock()
    source, err = p.source, p.error
    with ctx.store.write() as w:
        st = ctx.store.load_state(w, source.id)
        fails = (st.get("consecutive_failures") or 0) + 1
        ch: dict[str, Any] = {"last_poll_at": now, "last_status": "failed", "last_error": _safe_error(err),
                              "polls": (st.get("polls") or 0) + 1, "consecutive_failures": fails}
        if err.retry_after:
            ch["not_before"] = now + timedelta(seconds=min(err.retry_after, retry_after_cap(source)))
        events = []
        if fails >= source.alert_after_failures and st.get("alerted") != "failed":
            ch["alerted"] = "failed"
            events.append(Event.source_failed(source, reason=str(err), http_status=err.status,
                                              retry_after=err.retry_after, consecutive_failures=fails))
        events = write_events(w, ctx.config, events, now)
        ctx.store.save_state(w, st, **ch)
    return PollOutcome(source.id, "failed", events=events, error=_safe_error(err))


def _safe_error(err: Exception | str) -> str:
    from watcher.sanitize import shown
    return shown(err)


def retry_after_cap(source: Source) -> float:
    """The longest a server's Retry-After may defer a source: one interval, at most 6 h (README: the daemon)."""
    return min(max(source.interval, 60.0), 6 * 3600.0)


def _commit_broken(ctx: Context, p: Prepared) -> PollOutcome:
    now = ctx.clock()
    source, reason = p.source, p.reason or "broken"
    with ctx.store.write() as w:
        st = ctx.store.load_state(w, source.id)
        broken = (st.get("consecutive_broken") or 0) + 1
        # fetch in full next time: a 304 must not hide the breakage
        reason = _safe_error(reason)
        ch: dict[str, Any] = {"last_poll_at": now, "last_status": "broken", "last_error": reason,
                              "polls": (st.get("polls") or 0) + 1, "consecutive_failures": 0,
                              "consecutive_broken": broken, "etag": None, "last_modified": None, "body_digest": None}
        events = []
        if broken >= source.alert_after_failures and st.get("alerted") != "broken":
            ch["alerted"] = "broken"
            events.append(Event.source_broken(source, reason=reason, previous_entries=st.get("entry_count") or 0))
        events = write_events(w, ctx.config, events, now)
        ctx.store.save_state(w, st, **ch)
    return PollOutcome(source.id, "broken", events=events, error=reason)


def _merge_status_edits(changed: list[Event], stage_events: list[tuple[Event, int]]) -> tuple[list[Event], list]:
    """A status label that changed on a row (即将实施 -> 现行) is the stage change itself: report it once, as the
    stage_changed event carrying the field changes, rather than as a second `changed` event."""
    by_key = {ev.entry_key: i for i, (ev, _) in enumerate(stage_events)}
    confirmed = getattr(stage_events, "confirmed", set())
    out = []
    for ev in changed:
        i = by_key.get(ev.entry_key) if ev.kind == "changed" else None
        if i is not None and set(ev.changes) <= {"status", "issue_date", "act_date", "published"}:
            st_ev, ev_id = stage_events[i]
            stage_events[i] = (replace(st_ev, changes=ev.changes), ev_id)
            continue
        if ev.kind == "changed" and ev.entry_key in confirmed and set(ev.changes) <= {"status"}:
            continue   # the page catches up with a stage already reported (in force on its date, or another source)
        out.append(ev)
    return out, stage_events


def _commit_entries(ctx: Context, p: Prepared) -> PollOutcome:
    now = ctx.clock()
    source = p.source
    with ctx.store.write() as w:
        st = ctx.store.load_state(w, source.id)
        baseline = not st.get("baselined") or p.rebaseline
        ch = _success(st, now, p.headers)
        events: list[Event] = _recovered(source, st, ch)
        new_rows = []
        for r in p.rows:
            e = r.entry
            fields = e.as_dict()
            full = digest(fields)
            prev = p.previous.get(e.key)
            if prev is None:
                new_rows.append({"source_id": source.id, "key": e.key, "url": e.url, "title": e.title,
                                 "fields": fields, "row_digest": r.row_digest, "digest": full, "detail": r.detail,
                                 "detail_ok": r.detail_ok, "detail_failures": r.detail_failures,
                                 "deadline": e.deadline, "first_seen": now, "updated_at": now})
                if not baseline:
                    events.append(Event.new(source, e))
                continue
            if (prev.digest == full and prev.row_digest == r.row_digest and prev.detail_ok == r.detail_ok
                    and prev.detail == r.detail and (prev.detail_failures or 0) == r.detail_failures):
                continue
            values = {"row_digest": r.row_digest, "detail": r.detail, "detail_ok": r.detail_ok,
                      "detail_failures": r.detail_failures}
            if prev.digest != full or p.rebaseline and prev.fields != fields:
                if not baseline:
                    changes = describe_changes(prev.fields, fields)
                    if changes:
                        events.append(Event.changed(source, e, changes))
                values.update(fields=fields, url=e.url, title=e.title, digest=full, deadline=e.deadline,
                              updated_at=now)
            w.execute(update(EntryRow).where(EntryRow.id == prev.id).values(values))
        if new_rows:
            w.execute(insert(EntryRow), new_rows)
        if p.archive:
            from watcher.archive import record
            record(w, source, p.archive, now)
        stage_events = update_standards(w, source, [r.entry for r in p.rows], now, baseline=baseline)
        events, stage_events = _merge_status_edits(events, stage_events)
        events += [ev for ev, _ in stage_events]
        ch.update(last_status="ok", body_digest=p.body_digest, baselined=True,
                  config_digest=source.config_digest)
        if p.body_digest is None:            # a detail retry is due: ask for the full list again, not a 304
            ch["etag"] = ch["last_modified"] = None
        if baseline:
            ch["entry_count"] = w.scalar(select(func.count()).select_from(EntryRow)
                                         .where(EntryRow.source_id == source.id))
        else:
            ch["entry_count"] = (st.get("entry_count") or 0) + len(new_rows)
        stored = write_events(w, ctx.config, events, now)
        n_plain = len(stored) - len(stage_events)
        link_evidence(w, [(ev_id, ev.id) for (_, ev_id), ev in zip(stage_events, stored[n_plain:])])
        ctx.store.save_state(w, st, **ch)
    if p.rebaseline:
        log.info("source %s: extraction settings changed; entries re-read silently (new baseline)", source.id)
    return PollOutcome(source.id, "ok", entries=len(p.rows), events=stored)

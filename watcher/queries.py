"""Read-only questions people ask of the state, shared by the web pages, the JSON API and the terminal views: what is
open for comment, the standards and their stories, the watch list, events, sources, stored entries, calendar items.

Every function takes a connection from `Store.read()` (never the writer lock) and returns plain dicts and lists that
serialise to JSON as they are. Columns that other parts of watcher add over time (`title_en`, `act_date`, `family`,
`replaces`, `replaced_by`, attachments' `archived`/`sha256`) are read when present and left out when not.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import func, or_, select

from watcher.identify import normalize_plan_no, normalize_std_no, stage_label, std_family, title_key
from watcher.reminders import CHINA
from watcher.store import EntryRow, EventRow, SourceState, Standard, StandardEvidence

RECENTLY_CLOSED_DAYS = 30      # a window closed this recently is still shown (with a "closed" note)
PER_PAGE = 50


# --- the clock ---------------------------------------------------------------------------------------------------

def today(now: datetime | date | str | None = None) -> date:
    """Today in Beijing, where comment deadlines are dated.

    `now` fixes the clock (a datetime, a date or an ISO string). Without it, the environment variable
    `WATCHER_TODAY` (an ISO date or timestamp; undocumented for users, meant for tests, demos and screenshots) fixes
    it; otherwise the system clock is read."""
    if now is None:
        now = os.environ.get("WATCHER_TODAY") or None
    if isinstance(now, str):
        text = now.replace("Z", "+00:00")
        now = datetime.fromisoformat(text) if "T" in text or " " in text else date.fromisoformat(text)
    if isinstance(now, datetime):
        return (now if now.tzinfo else now.replace(tzinfo=CHINA)).astimezone(CHINA).date()
    if isinstance(now, date):
        return now
    return datetime.now(CHINA).date()


def days_left(deadline: str | None, on: date) -> int | None:
    from watcher.render import days_left as left
    return left(deadline, on)


def iso(dt: datetime | None) -> str | None:
    from watcher.events import iso as stamp
    return stamp(dt) if dt else None


# --- helpers -----------------------------------------------------------------------------------------------------

def _source_name(config, sid: str) -> str:
    src = config.sources.get(sid) if config is not None else None
    return (src.name or sid) if src is not None else sid


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _text_match(needle: str, *hay: str | None) -> bool:
    n = needle.casefold()
    return any(h and n in h.casefold() for h in hay)


def number_query(q: str | None) -> tuple[str | None, str | None, str | None]:
    """(standard number, family, plan number) a search string spells, in any spelling; None where it spells none.
    A number without a year (`GB/T 22080`, `gbt22080`) gives only the family: every edition."""
    if not q:
        return None, None, None
    std_no = normalize_std_no(q)
    family = std_family(q)
    plan = normalize_plan_no(q)
    return std_no, family, plan


def _attachments(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The entry's attachments, each with its archived copy (`archived`: path, `sha256`) when one is kept: the
    archive records copies on the attachment itself or in `extra.archived` (by URL)."""
    kept = {}
    for a in ((fields.get("extra") or {}).get("archived") or []):
        if isinstance(a, dict) and a.get("sha256"):
            kept[a.get("url")] = a
    out = []
    for a in fields.get("attachments") or []:
        if isinstance(a, dict) and (a.get("url") or a.get("archived")):
            d = {k: a.get(k) for k in ("name", "label", "url", "archived", "sha256") if a.get(k)}
            copy = kept.pop(a.get("url"), None)
            if copy and not d.get("sha256"):
                d.update(archived=copy.get("path") or copy.get("archived"), sha256=copy["sha256"])
            out.append(d)
    for url, copy in kept.items():        # a kept copy whose attachment the page no longer lists
        out.append({k: v for k, v in (("name", copy.get("name")), ("url", url), ("sha256", copy["sha256"]),
                                      ("archived", copy.get("path") or copy.get("archived"))) if v})
    return out


def entry_dict(row, config, on: date | None = None) -> dict[str, Any]:
    """One stored entry as people see it (fields that are empty are left out, except the identity)."""
    f = dict(row.fields or {})
    d: dict[str, Any] = {"source": row.source_id, "source_name": _source_name(config, row.source_id), "key": row.key,
                         "title": row.title, "url": row.url}
    for k in ("title_en", "published", "deadline", "plan_no", "std_no", "std_nos", "status", "stage", "committee",
              "issue_date", "act_date", "summary", "replaces", "replaced_by"):
        v = f.get(k)
        if v not in (None, "", [], {}):
            d[k] = v
    if d.get("stage"):
        d["stage_label"] = stage_label(d["stage"])
    att = _attachments(f)
    if att:
        d["attachments"] = att
    if on is not None and d.get("deadline"):
        d["days_left"] = days_left(d["deadline"], on)
        d["closed"] = d["days_left"] is not None and d["days_left"] < 0
    d["first_seen"] = iso(row.first_seen)
    d["updated_at"] = iso(row.updated_at)
    return d


def _standard_links(conn, entries: list[dict[str, Any]]) -> None:
    """Set `standard_id` on entries that belong to a known standard (by evidence URL, plan or standard number)."""
    if not entries:
        return
    urls = {e["url"] for e in entries if e.get("url")}
    by_url: dict[tuple[str, str], int] = {}
    for chunk in _chunks(sorted(urls)):
        for r in conn.execute(select(StandardEvidence.source_id, StandardEvidence.url, StandardEvidence.standard_id)
                              .where(StandardEvidence.url.in_(chunk))):
            by_url.setdefault((r.source_id, r.url), r.standard_id)
    plans = {e["plan_no"] for e in entries if e.get("plan_no")}
    stds = {e["std_no"] for e in entries if e.get("std_no")}
    by_plan: dict[str, int] = {}
    by_std: dict[str, int] = {}
    if plans:
        by_plan = {r.plan_no: r.id for r in conn.execute(select(Standard.id, Standard.plan_no)
                                                          .where(Standard.plan_no.in_(sorted(plans))))}
    if stds:
        by_std = {r.std_no: r.id for r in conn.execute(select(Standard.id, Standard.std_no)
                                                        .where(Standard.std_no.in_(sorted(stds))))}
    for e in entries:
        sid = (by_url.get((e["source"], e["url"])) or by_std.get(e.get("std_no") or "")
               or by_plan.get(e.get("plan_no") or ""))
        if sid:
            e["standard_id"] = sid


def _chunks(items: list, n: int = 500) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _entry_filter(e: dict[str, Any], *, source: str | None = None, committee: str | None = None,
                  stage: str | None = None, q: str | None = None) -> bool:
    if source and e["source"] != source:
        return False
    if committee and (e.get("committee") or "").upper() != committee.upper():
        return False
    if stage and e.get("stage") != stage:
        return False
    if q:
        std_no, family, plan = number_query(q)
        if plan or std_no or family:
            nos = {e.get("std_no"), *(e.get("std_nos") or [])} - {None}
            return bool(plan and e.get("plan_no") == plan or std_no and std_no in nos
                        or not std_no and family and any(std_family(n) == family for n in nos))
        return _text_match(q, e.get("title"), e.get("title_en"), e.get("summary"))
    return True


# --- what is open for comment ------------------------------------------------------------------------------------

def comment_windows(conn, config, on: date, *, closed_since: date | None = None, **filters: str | None
                    ) -> list[dict[str, Any]]:
    """Entries of any source with a comment deadline on or after `on` (or after `closed_since`, to include windows
    that closed recently), soonest deadline first. Filters: source, committee, stage, q (text or number)."""
    lowest = (closed_since or on).isoformat()
    rows = conn.execute(select(EntryRow).where(EntryRow.deadline >= lowest)
                        .order_by(EntryRow.deadline, EntryRow.source_id, EntryRow.id))
    out = [entry_dict(r, config, on) for r in rows]
    out = [e for e in out if _entry_filter(e, **filters)]
    _standard_links(conn, out)
    return out


def open_for_comment(conn, config, on: date, **filters: str | None) -> dict[str, Any]:
    """{'today', 'open': windows with deadline >= today, 'recently_closed': those closed in the last 30 days}."""
    windows = comment_windows(conn, config, on, closed_since=on - timedelta(days=RECENTLY_CLOSED_DAYS), **filters)
    return {"today": on.isoformat(),
            "open": [w for w in windows if not w["closed"]],
            "recently_closed": sorted((w for w in windows if w["closed"]), key=lambda w: w["deadline"], reverse=True)}


# --- standards ---------------------------------------------------------------------------------------------------

def standard_dict(row) -> dict[str, Any]:
    m = dict(row._mapping)
    d: dict[str, Any] = {"id": m["id"], "plan_no": m.get("plan_no"), "std_no": m.get("std_no"), "title": m.get("title"),
                         "stage": m.get("stage"), "stage_label": stage_label(m.get("stage")),
                         "stage_since": iso(m.get("stage_since")), "committee": m.get("committee")}
    # columns other parts of watcher add (English title, dates, family, replacements): shown when present
    for k in ("title_en", "issue_date", "act_date", "family", "replaces", "replaced_by"):
        v = m.get(k)
        if v not in (None, "", [], {}):
            d[k] = iso(v) if isinstance(v, datetime) else v.isoformat() if isinstance(v, date) else v
    d.setdefault("family", std_family(m.get("std_no")))
    if d["family"] is None:
        del d["family"]
    d["updated_at"] = iso(m.get("updated_at"))
    return d


def _in_family(family: str):
    """Standards whose number is an edition of `family` (`GB/T 22080` -> `GB/T 22080-2016`, `GB/T 22080-2025`)."""
    return Standard.std_no.like(family.replace("_", "\\_") + "-%", escape="\\")


def _has_column(name: str) -> bool:
    return name in Standard.__table__.c


def list_standards(conn, *, stage: str | None = None, committee: str | None = None, q: str | None = None,
                   page: int = 1, per_page: int = 100) -> dict[str, Any]:
    """Standards known across sources, most recently changed first. `q` is text (Chinese or English title) or a
    number in any spelling (a standard number, a family without a year, a plan number)."""
    cond = []
    if stage:
        cond.append(Standard.stage == stage)
    if committee:
        cond.append(func.upper(Standard.committee) == committee.upper())
    if q:
        std_no, family, plan = number_query(q)
        if plan:
            cond.append(Standard.plan_no == plan)
        elif std_no:
            cond.append(Standard.std_no == std_no)
        elif family:
            cond.append(or_(_in_family(family), Standard.std_no == family))
        else:
            text = [Standard.title.ilike(_like(q), escape="\\")]
            if _has_column("title_en"):
                text.append(Standard.title_en.ilike(_like(q), escape="\\"))
            if (tk := title_key(q)):
                text.append(Standard.title_key.like(_like(tk), escape="\\"))
            cond.append(or_(*text))
    total = conn.execute(select(func.count()).select_from(Standard).where(*cond)).scalar() or 0
    rows = conn.execute(select(Standard).where(*cond).order_by(Standard.updated_at.desc(), Standard.id.desc())
                        .limit(per_page).offset(max(0, page - 1) * per_page))
    return {"standards": [standard_dict(r) for r in rows], "total": total, "page": page, "per_page": per_page}


def find_standard(conn, ident: str):
    """A standard by id, plan number, standard number (any spelling) or title; None when nothing matches."""
    from watcher.standards import lookup
    return lookup(conn, ident)


def standard_story(conn, config, rec, on: date) -> dict[str, Any]:
    """One standard's story: its record, every stage with its date and evidence links (oldest first), the other
    editions of its family, the comment windows of its drafts (closed ones marked), replaces / replaced by and the
    in-force date, and the events about it."""
    from watcher.standards import standard_timeline
    d = standard_dict(rec)
    timeline = standard_timeline(conn, rec)
    d["timeline"] = [{"stage": t.stage, "stage_label": stage_label(t.stage) if t.stage else None,
                      "previous_stage": t.previous_stage, "at": iso(t.at), "date": t.date, "source": t.source_id,
                      "source_name": _source_name(config, t.source_id), "url": t.url, "title": t.title,
                      "event_id": t.event_id} for t in timeline]
    # stages in lifecycle order as they were reached: the first evidence of each stage
    stages: list[dict[str, Any]] = []
    for t in d["timeline"]:
        if t["stage"] and all(s["stage"] != t["stage"] for s in stages):
            stages.append({"stage": t["stage"], "stage_label": t["stage_label"], "date": t["date"] or t["at"][:10],
                           "seen": t["at"],
                           "evidence": [{"source": x["source"], "source_name": x["source_name"], "url": x["url"]}
                                        for x in d["timeline"] if x["stage"] == t["stage"]]})
    d["stages"] = stages
    # the entries that tell this story: what the evidence points at
    pairs = {(t.source_id, t.url) for t in timeline}
    srcs = sorted({sid for sid, _ in pairs})      # narrows the scan to these sources' rows (the unique index)
    entries = []
    for chunk in _chunks(sorted({u for _, u in pairs})):
        for r in conn.execute(select(EntryRow).where(EntryRow.source_id.in_(srcs), EntryRow.url.in_(chunk))
                              .order_by(EntryRow.id)):
            if (r.source_id, r.url) in pairs:
                entries.append(entry_dict(r, config, on))
    d["windows"] = sorted((e for e in entries if e.get("deadline")), key=lambda e: e["deadline"], reverse=True)
    for k in ("title_en", "issue_date", "act_date"):
        if k not in d:
            v = next((e[k] for e in entries if e.get(k) and (k == "title_en" or e.get("std_no") == rec.std_no)), None)
            if v:
                d[k] = v
    for k in ("replaces", "replaced_by"):
        if k not in d:
            vals: list[str] = []
            for e in entries:
                if e.get("std_no") in (None, rec.std_no):
                    vals += [x for x in e.get(k) or [] if x not in vals]
            if vals:
                d[k] = vals
    fam = d.get("family")
    d["editions"] = []
    if fam:
        for r in conn.execute(select(Standard).where(or_(_in_family(fam), Standard.std_no == fam))
                              .order_by(Standard.std_no.desc())):
            if r.id != rec.id:
                d["editions"].append(standard_dict(r))
        # editions that name each other on their pages: replaced_by from the editions' replaces
        for ed in d["editions"]:
            if rec.std_no and rec.std_no in (ed.get("replaces") or []) and ed["std_no"] not in d.get("replaced_by", []):
                d.setdefault("replaced_by", []).append(ed["std_no"])
    keys = {(e["source"], e["key"]) for e in entries}
    events = []
    if keys:
        for chunk in _chunks(sorted({k for _, k in keys})):
            for r in conn.execute(select(EventRow.id, EventRow.source_id, EventRow.entry_key, EventRow.payload)
                                  .where(EventRow.source_id.in_(sorted({s for s, _ in keys})),
                                         EventRow.entry_key.in_(chunk))):
                if (r.source_id, r.entry_key) in keys:
                    events.append((r.id, r.payload))
    ids = {t["event_id"] for t in d["timeline"] if t["event_id"]} - {i for i, _ in events}
    if ids:
        events += [(r.id, r.payload) for r in conn.execute(select(EventRow.id, EventRow.payload)
                                                            .where(EventRow.id.in_(sorted(ids))))]
    from watcher.events import Event
    d["events"] = [Event.from_stored(i, p).to_json() for i, p in sorted(events, reverse=True)]
    return d


# --- the watch list ----------------------------------------------------------------------------------------------

def watch_items(config) -> list[str] | None:
    """The watch list's items as written (numbers in any spelling), or None when the config has none."""
    items = list(config.watch.standards) if config is not None else []
    return items or None


def watch_list(conn, config, on: date, *, recent_days: int = 30) -> dict[str, Any]:
    """{'configured': bool, 'items': [{'item', 'std_no', 'family', 'plan_no', 'standards': [...], 'changed_recently'}]}:
    each watch item with every edition it matches (newest first), current stage, in-force date, replaced-by and
    English title where known."""
    items = watch_items(config)
    if items is None:
        return {"configured": False, "items": []}
    since = datetime.combine(on - timedelta(days=recent_days), datetime.min.time(), CHINA)
    # the lookup source made for each item, when the config makes one (`watch:<family>`): when it last answered
    lookups = {getattr(s, "watch_item", None): sid for sid, s in config.sources.items() if getattr(s, "watch", False)}
    states = {st.source_id: st for st in conn.execute(select(SourceState).where(
        SourceState.source_id.in_(sorted(lookups.values()))))} if lookups else {}
    out = []
    for item in items:
        std_no, family, plan = number_query(item)
        cond = []
        if plan:
            cond.append(Standard.plan_no == plan)
        if std_no:
            cond.append(Standard.std_no == std_no)
        elif family:
            cond.append(_in_family(family))
        recs = [] if not cond else [standard_dict(r) for r in conn.execute(
            select(Standard).where(or_(*cond)).order_by(Standard.std_no.desc(), Standard.id.desc()))]
        if std_no and family:       # a numbered edition: show its family too, so a new edition is seen
            seen = {r["id"] for r in recs}
            recs += [standard_dict(r) for r in conn.execute(
                select(Standard).where(_in_family(family))
                .order_by(Standard.std_no.desc())) if r.id not in seen]
        for r in recs:
            changed = r["updated_at"] and datetime.fromisoformat(r["updated_at"].replace("Z", "+00:00"))
            r["changed_recently"] = bool(changed and changed >= since)
        st = states.get(lookups.get(item, ""))
        out.append({"item": item, "std_no": std_no, "family": family, "plan_no": plan, "standards": recs,
                    "changed_recently": any(r["changed_recently"] for r in recs), "source": lookups.get(item),
                    "last_checked": iso(st.last_success_at) if st else None,
                    "health": source_health(st) if item in lookups else None})
    return {"configured": True, "items": out}


# --- events, sources, entries ------------------------------------------------------------------------------------

def list_events(conn, *, kind: str | None = None, source: str | None = None, since: datetime | None = None,
                page: int = 1, per_page: int = PER_PAGE) -> tuple[list, int]:
    """(events newest first as Event objects, total) for one page."""
    from watcher.events import Event
    cond = []
    if kind:
        cond.append(EventRow.kind == kind)
    if source:
        cond.append(EventRow.source_id == source)
    if since:
        cond.append(EventRow.detected_at >= since)
    total = conn.execute(select(func.count()).select_from(EventRow).where(*cond)).scalar() or 0
    rows = conn.execute(select(EventRow.id, EventRow.payload).where(*cond)
                        .order_by(EventRow.detected_at.desc(), EventRow.id.desc())
                        .limit(per_page).offset(max(0, page - 1) * per_page))
    return [Event.from_stored(r.id, r.payload) for r in rows], total


def source_health(st) -> str:
    if st is None:
        return "new"
    if st.alerted == "failed":
        return "failing"
    if st.alerted == "broken":
        return "broken"
    return "degraded" if st.consecutive_failures or st.consecutive_broken else "ok"


def list_sources(conn, config) -> list[dict[str, Any]]:
    """Each configured source (and any stored one no longer configured): health, last poll, last success, last
    error (masked), entries and the Retry-After deadline."""
    from watcher.logs import mask
    states = {st.source_id: st for st in conn.execute(select(SourceState))}
    ids = list(config.sources) if config is not None else []
    ids += sorted(sid for sid in states if sid not in ids)
    out = []
    for sid in ids:
        st = states.get(sid)
        src = config.sources.get(sid) if config is not None else None
        out.append({"source": sid, "name": (src.name or sid) if src else sid, "kind": src.kind if src else None,
                    "url": mask(src.url) if src else None, "enabled": src.enabled if src else None,
                    "configured": src is not None, "health": source_health(st),
                    "last_poll": iso(st.last_poll_at) if st else None,
                    "last_success": iso(st.last_success_at) if st else None,
                    "last_status": st.last_status if st else None,
                    "consecutive_failures": (st.consecutive_failures or 0) if st else 0,
                    "entries": (st.entry_count or 0) if st else 0,
                    "last_error": mask(st.last_error) if st and st.last_error else None,
                    "retry_not_before": iso(st.not_before) if st else None})
    return out


def source_entries(conn, config, source_id: str, on: date, *, limit: int | None = None) -> list[dict[str, Any]]:
    """What is stored for one source: newest poll first, in page order within a poll."""
    q = select(EntryRow).where(EntryRow.source_id == source_id).order_by(EntryRow.first_seen.desc(), EntryRow.id)
    if limit:
        q = q.limit(limit)
    return [entry_dict(r, config, on) for r in conn.execute(q)]


# --- calendar ----------------------------------------------------------------------------------------------------

def calendar_items(conn, config, on: date, *, kinds: tuple[str, ...] = ("deadline", "in_force"),
                   **filters: str | None) -> list[dict[str, Any]]:
    """Dated items for the calendar: comment deadlines (open, or closed in the last 30 days) and in-force dates of
    standards (from the last 30 days on). Each has a stable `uid` basis, its `date`, a `sequence` that grows each time
    the stored date moved (a deadline extension is an update of the same event) and `stamp`, when it last changed."""
    import hashlib
    out: list[dict[str, Any]] = []
    lowest = on - timedelta(days=RECENTLY_CLOSED_DAYS)
    if "deadline" in kinds:
        windows = comment_windows(conn, config, on, closed_since=lowest, **filters)
        moved = _date_moves(conn, {(w["source"], w["key"]) for w in windows}, "deadline")
        for w in windows:
            basis = hashlib.sha256(f"{w['source']}\0{w['key']}".encode()).hexdigest()[:24]
            out.append({"kind": "deadline", "uid": f"deadline-{basis}", "date": w["deadline"],
                        "sequence": moved.get((w["source"], w["key"]), 0), "stamp": w["updated_at"], "entry": w})
    if "in_force" in kinds:
        # implementation dates as the pages give them: a standards column when there is one, else the entries
        seen: set[str] = set()
        dated = []
        if _has_column("act_date"):     # the standards record its implementation date: an indexed column
            for r in conn.execute(select(Standard).where(Standard.act_date >= lowest.isoformat(),
                                                         Standard.std_no.is_not(None)).order_by(Standard.id)):
                sd = standard_dict(r)
                e = {"source": "standard", "source_name": "watcher", "key": sd["std_no"], "title": sd["title"],
                     "url": None, "std_no": sd["std_no"], "act_date": sd["act_date"], "committee": sd["committee"],
                     "stage": sd["stage"], "standard_id": sd["id"], "updated_at": sd["updated_at"]}
                if sd.get("title_en"):
                    e["title_en"] = sd["title_en"]
                if _entry_filter(e, **{k: v for k, v in filters.items() if k not in ("stage", "source")}) \
                        and not filters.get("source"):
                    seen.add(sd["std_no"])
                    dated.append(e)
        from sqlalchemy import Text, cast
        # only rows that carry a date (a text pre-filter keeps this one pass in the database, not in Python)
        rows = conn.execute(select(EntryRow).where(cast(EntryRow.fields, Text).like('%"act_date": "%'))
                            .order_by(EntryRow.id.desc()))
        for r in rows:
            f = r.fields or {}
            act, no = f.get("act_date"), f.get("std_no")
            if not act or not no or act < lowest.isoformat() or no in seen:
                continue
            e = entry_dict(r, config, on)
            if not _entry_filter(e, **{k: v for k, v in filters.items() if k != "stage"}):
                continue
            seen.add(no)
            dated.append(e)
        _standard_links(conn, dated)
        moved = _date_moves(conn, {(e["source"], e["key"]) for e in dated}, "act_date")
        for e in dated:
            out.append({"kind": "in_force", "uid": "inforce-" + e["std_no"].replace("/", "").replace(" ", "-"),
                        "date": e["act_date"], "sequence": moved.get((e["source"], e["key"]), 0),
                        "stamp": e["updated_at"], "entry": e})
    out.sort(key=lambda x: (x["date"], x["uid"]))
    return out


def _date_moves(conn, keys: set[tuple[str, str]], field: str) -> dict[tuple[str, str], int]:
    """How many stored `changed` events moved `field` of each entry: the iCalendar SEQUENCE of its item."""
    out: dict[tuple[str, str], int] = {}
    if not keys:
        return out
    for chunk in _chunks(sorted({k for _, k in keys})):
        for r in conn.execute(select(EventRow.source_id, EventRow.entry_key, EventRow.payload)
                              .where(EventRow.source_id.in_(sorted({s for s, _ in keys})),
                                     EventRow.kind.in_(("changed", "stage_changed")), EventRow.entry_key.in_(chunk))):
            if (r.source_id, r.entry_key) in keys and field in ((r.payload or {}).get("changes") or {}):
                out[(r.source_id, r.entry_key)] = out.get((r.source_id, r.entry_key), 0) + 1
    return out

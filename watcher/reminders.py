"""Comment-deadline reminders: a `deadline_soon` event N days before a deadline, once per entry and reminder."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select

from watcher.events import Event, write_events
from watcher.store import EntryRow, EventRow

CHINA = timezone(timedelta(hours=8))  # deadlines on these sites are Beijing dates


def due_reminder(deadline: str, today: date, days: tuple[int, ...]) -> tuple[int, int] | None:
    """(reminder N, days left) for the tightest reminder whose window has opened, or None."""
    try:
        d = date.fromisoformat(deadline)
    except ValueError:
        return None
    left = (d - today).days
    if left < 0:
        return None
    fitting = [n for n in days if left <= n]
    return (min(fitting), left) if fitting else None


def raise_deadline_reminders(ctx, source_ids: list[str] | None = None) -> list[Event]:
    """Write deadline_soon events (with deliveries) for entries whose reminder window opened; returns them."""
    days = ctx.config.settings.reminder_days
    if not days:
        return []
    now: datetime = ctx.clock()
    today = now.astimezone(CHINA).date()
    horizon = (today + timedelta(days=max(days))).isoformat()
    sources = ctx.config.sources
    q = select(EntryRow.source_id, EntryRow.key, EntryRow.url, EntryRow.title, EntryRow.fields, EntryRow.deadline) \
        .where(EntryRow.deadline >= today.isoformat(), EntryRow.deadline <= horizon)
    if source_ids is not None:
        q = q.where(EntryRow.source_id.in_(source_ids))
    with ctx.store.read() as conn:
        candidates = []
        for row in conn.execute(q):
            src = sources.get(row.source_id)
            due = due_reminder(row.deadline, today, days)
            if src is None or due is None:
                continue
            ev = Event.deadline_soon(src, url=row.url, title=row.title, key=row.key, fields=row.fields,
                                     deadline=row.deadline, days_left=due[1], reminder=due[0])
            candidates.append(ev)
        if not candidates:
            return []
        keys = [ev.dedupe_key for ev in candidates]
        raised = set()
        for i in range(0, len(keys), 500):
            raised.update(conn.execute(select(EventRow.dedupe_key).where(EventRow.dedupe_key.in_(keys[i:i + 500])))
                          .scalars())
    fresh = [ev for ev in candidates if ev.dedupe_key not in raised]
    if not fresh:
        return []
    with ctx.store.write() as w:
        # checked again under the write lock: another process may have raised them meanwhile
        again = set(w.scalars(select(EventRow.dedupe_key).where(EventRow.dedupe_key.in_([e.dedupe_key for e in fresh]))))
        return write_events(w, ctx.config, [e for e in fresh if e.dedupe_key not in again], now)


def raise_in_force(ctx) -> list[Event]:
    """Time moves standards too: a published standard comes into force on its implementation date even if no page
    changes (one stage_changed that day; the editions it replaces become superseded), with in_force_soon reminders
    before it (the [watch] reminder_days). Each is raised once (unique keys)."""
    from sqlalchemy import insert, update

    from watcher.store import Standard, StandardEvidence

    now: datetime = ctx.clock()
    today = now.astimezone(CHINA).date()
    days = tuple(ctx.config.watch.reminder_days)
    horizon = (today + timedelta(days=max(days) if days else 0)).isoformat()
    q = select(Standard).where(Standard.stage == "published", Standard.act_date.is_not(None),
                               Standard.act_date <= horizon)
    with ctx.store.read() as conn:
        due = [dict(r._mapping) for r in conn.execute(q)]
        if not due:
            return []
        origin = {}
        for rec in due:
            ev = conn.execute(select(StandardEvidence.source_id, StandardEvidence.url)
                              .where(StandardEvidence.standard_id == rec["id"])
                              .order_by(StandardEvidence.id.desc()).limit(1)).first()
            origin[rec["id"]] = (_watch_source(ctx.config, rec) or (ev.source_id if ev else "standards"),
                                 ev.url if ev else None)
    out: list[Event] = []
    with ctx.store.write() as w:
        for rec in due:
            source_id, url = origin[rec["id"]]
            src = ctx.config.sources.get(source_id)
            name = src.name if src else source_id
            if rec["act_date"] <= today.isoformat():
                key = f"in_force:{rec['id']}:{rec['act_date']}"
                if w.scalar(select(EventRow.id).where(EventRow.dedupe_key == key)):
                    continue
                stage_now = w.scalar(select(Standard.stage).where(Standard.id == rec["id"]))
                if stage_now != "published":
                    continue
                w.execute(update(Standard).where(Standard.id == rec["id"]).values(stage="in_force", stage_since=now,
                                                                                 updated_at=now))
                ev_id = w.execute(insert(StandardEvidence).values(
                    standard_id=rec["id"], stage="in_force", previous_stage="published", at=now, source_id=source_id,
                    url=url or "", title=rec["title"], date=rec["act_date"])).inserted_primary_key[0]
                events = [Event.standard_moved(rec, source_id, name, url, previous="published", stage="in_force",
                                               dedupe_key=key)]
                for old_no in rec.get("replaces") or []:
                    old = w.execute(select(Standard).where(Standard.std_no == old_no)).first()
                    if old is None or old.stage in ("superseded", "withdrawn", "not_implemented"):
                        continue
                    w.execute(update(Standard).where(Standard.id == old.id).values(
                        stage="superseded", stage_since=now, updated_at=now,
                        replaced_by=sorted({*(old.replaced_by or []), rec["std_no"]})))
                    w.execute(insert(StandardEvidence).values(
                        standard_id=old.id, stage="superseded", previous_stage=old.stage, at=now, source_id=source_id,
                        url=url or "", title=old.title, date=rec["act_date"]))
                    events.append(Event.standard_moved(dict(old._mapping), source_id, name, url, previous=old.stage,
                                                       stage="superseded",
                                                       dedupe_key=f"superseded:{old.id}:{rec['std_no']}",
                                                       replaced_by=[rec["std_no"]],
                                                       act_date=None))   # its own in-force date is old news
                learned = rec["created_at"].astimezone(CHINA).date().isoformat() if rec.get("created_at") else ""
                if learned > rec["act_date"]:
                    continue    # first seen after its implementation date: in force now, but that is not news
                stored = write_events(w, ctx.config, events, now)
                w.execute(update(StandardEvidence).where(StandardEvidence.id == ev_id).values(event_id=stored[0].id))
                out += stored
            else:
                due_n = due_reminder(rec["act_date"], today, days)
                if due_n is None:
                    continue
                n, left = due_n
                key = f"in_force_soon:{rec['id']}:{rec['act_date']}:{n}"
                if w.scalar(select(EventRow.id).where(EventRow.dedupe_key == key)):
                    continue
                out += write_events(w, ctx.config, [Event.in_force_soon(rec, source_id, name, url, days_left=left,
                                                                        reminder=n, dedupe_key=key)], now)
    return out


def _watch_source(config, rec) -> str | None:
    """The watch lookup (`watch:<family or plan>`) a standard on the watch list belongs to: what time does to a
    watched standard is told as that lookup's news, whichever source first reported the standard."""
    from watcher.identify import normalize_plan_no, std_family
    for n in (rec.get("std_no"), rec.get("plan_no")):
        key = (normalize_plan_no(n) or std_family(n)) if n else None
        if key and key in (config.watch_items or {}) and f"watch:{key}" in config.sources:
            return f"watch:{key}"
    return None

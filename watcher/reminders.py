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

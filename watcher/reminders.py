"""Comment-deadline reminders: a `deadline_soon` event N days before a deadline, once per entry and reminder."""

from __future__ import annotations

from datetime import date, timedelta, timezone, timedelta as _td
from datetime import datetime
from typing import Any

from sqlalchemy import select

from watcher.store import EntryRow, EventRow

CHINA = timezone(_td(hours=8))  # deadlines on these sites are Beijing dates


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


def raise_deadline_reminders(ctx, source_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Write deadline_soon events (with deliveries) for entries whose reminder window opened; returns them."""
    from watcher.pipeline import write_events

    days = ctx.config.settings.reminder_days
    if not days:
        return []
    now: datetime = ctx.clock()
    today = now.astimezone(CHINA).date()
    horizon = (today + timedelta(days=max(days))).isoformat()
    sources = ctx.config.sources
    with ctx.store.transaction() as s:
        q = select(EntryRow).where(EntryRow.deadline >= today.isoformat(), EntryRow.deadline <= horizon)
        if source_ids is not None:
            q = q.where(EntryRow.source_id.in_(source_ids))
        payloads = []
        for row in s.execute(q):
            src = sources.get(row.source_id)
            due = due_reminder(row.deadline, today, days)
            if src is None or due is None:
                continue
            n, left = due
            key = f"deadline_soon:{row.source_id}:{row.key}:{row.deadline}:{n}"[:600]
            if s.scalars(select(EventRow.id).where(EventRow.dedupe_key == key)).first():
                continue
            f = row.fields
            payloads.append({
                "kind": "deadline_soon", "source": src.id, "source_name": src.name, "url": row.url,
                "title": row.title, "published": f.get("published"), "deadline": row.deadline,
                "plan_no": f.get("plan_no"), "std_no": f.get("std_no"), "stage": f.get("stage"),
                "previous_stage": None, "changes": {}, "days_left": left, "reminder_days": n,
                "committee": f.get("committee"), "entry_key": row.key, "dedupe_key": key,
            })
        return write_events(s, ctx, payloads, now)

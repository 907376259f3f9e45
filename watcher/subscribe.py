"""Which channels get an event: subscription filters, and the outbox rows written with the event.

Kept apart from notify.py so that the poll path never imports apprise.
"""

from __future__ import annotations

import re
from datetime import datetime
from fnmatch import fnmatch
from typing import Any

from watcher.config import Config, Subscription


def matches(sub: Subscription, payload) -> bool:
    """True when an event (an Event, or its JSON form) passes every filter of a subscription."""
    if not any(fnmatch(payload.get("source", ""), pat) for pat in sub.sources):
        return False
    if sub.kinds and payload.get("kind") not in sub.kinds:
        return False
    if sub.stages and payload.get("stage") not in sub.stages:
        return False
    if sub.committees and payload.get("committee") not in sub.committees:
        return False
    if sub.keywords and not any(re.search(rx, payload.get("title") or "") for rx in sub.keywords):
        return False
    if sub.watched and not payload.get("watched"):
        return False
    if sub.standards and not _about(sub.standards, payload):
        return False
    return True


def _about(families: tuple[str, ...], payload) -> bool:
    """Whether an event concerns one of these standard families or plan numbers (any spelling)."""
    from watcher.identify import normalize_plan_no, std_family
    wanted = {normalize_plan_no(f) or std_family(f) for f in families}
    numbers = [payload.get("std_no"), payload.get("plan_no"), *(payload.get("std_nos") or []),
               *(payload.get("replaces") or []), *(payload.get("replaced_by") or []),
               *[s.get("std_no") for s in payload.get("standards") or [] if isinstance(s, dict)]]
    return any((normalize_plan_no(n) or std_family(n)) in wanted for n in numbers if n)


def delivery_rows(config: Config, event, now: datetime) -> list[dict[str, Any]]:
    """The outbox rows for one stored event: one per channel whose subscription matches (never twice). An alert
    about a channel (channel_failed, channel_recovered) goes to every other enabled channel instead."""
    targets: dict[str, str] = {}
    if event.kind in ("channel_failed", "channel_recovered"):
        broken = event.get("channel")
        targets = {ch: "immediate" for ch, c in config.channels.items() if c.enabled and ch != broken}
    else:
        for sub in config.subscriptions:
            if matches(sub, event):
                for ch in sub.channels:
                    channel = config.channels.get(ch)
                    if channel is not None and channel.enabled and targets.get(ch) != "immediate":
                        targets[ch] = sub.mode
    return [{"event_id": event.id, "channel": ch, "mode": mode, "status": "pending", "attempts": 0,
             "next_try_at": now, "created_at": now} for ch, mode in targets.items()]

"""The typed event: what watcher tells people. One frozen dataclass, one constructor per kind, one serialisation.

The JSON form (`Event.to_json()`, printed by `watcher once --json` and `watcher events --json`, stored as the
event's payload) is the public contract: the fields of `CONTRACT` always, in that order, then any extra fact that
has a value (`std_nos`, `committee`, `evidence`, `reason`, `days_left`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from watcher.config import Source
    from watcher.models import Entry

CONTRACT = ("id", "kind", "source", "url", "title", "published", "deadline", "plan_no", "std_no", "stage",
            "previous_stage", "changes", "detected_at")
KINDS = ("new", "changed", "stage_changed", "deadline_soon", "in_force_soon", "source_failed", "source_broken",
         "source_recovered", "channel_failed", "channel_recovered")
SOURCE_KINDS = ("source_failed", "source_broken", "source_recovered")
CHANNEL_KINDS = ("channel_failed", "channel_recovered")
_FIELDS = CONTRACT[1:-1]          # settable by constructors; id and detected_at come from the store


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    kind: str
    source: str
    url: str | None = None
    title: str | None = None
    published: str | None = None
    deadline: str | None = None
    plan_no: str | None = None
    std_no: str | None = None
    stage: str | None = None
    previous_stage: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)     # extra facts, in the order they are shown
    id: int | None = None
    detected_at: str | None = None
    entry_key: str | None = None       # the entry it is about (stored in its own column too)
    dedupe_key: str | None = None      # unique in the store: the same reminder is never raised twice

    # --- constructors ------------------------------------------------------------------------------------

    @classmethod
    def _about_entry(cls, kind: str, source: "Source", e: "Entry", **kw: Any) -> "Event":
        from watcher.identify import stage_label
        facts = {"source_name": source.name, "stage_label": stage_label(e.stage), "std_nos": e.std_nos,
                 "status": e.status, "committee": e.committee, "issue_date": e.issue_date, "act_date": e.act_date,
                 "title_en": getattr(e, "title_en", None), "replaces": getattr(e, "replaces", None),
                 "replaced_by": getattr(e, "replaced_by", None), "summary": e.summary, "attachments": e.attachments,
                 "archived": e.extra.get("archived"), "standards": e.extra.get("standards"),
                 "notice_no": e.extra.get("notice_no"), "notice_kind": e.extra.get("notice_kind")}
        facts.update(kw.pop("facts", {}))
        return cls(kind=kind, source=source.id, url=e.url, title=e.title, published=e.published,
                   deadline=e.deadline, plan_no=e.plan_no, std_no=e.std_no, stage=e.stage, entry_key=e.key,
                   facts=facts, **kw)

    @classmethod
    def new(cls, source: "Source", e: "Entry") -> "Event":
        return cls._about_entry("new", source, e)

    @classmethod
    def changed(cls, source: "Source", e: "Entry", changes: dict[str, dict[str, Any]]) -> "Event":
        return cls._about_entry("changed", source, e, changes=changes)

    @classmethod
    def stage_changed(cls, source: "Source", e: "Entry", *, plan_no: str | None, std_no: str | None,
                      previous: str | None, committee: str | None, standard_id: int,
                      evidence: list[str]) -> "Event":
        from watcher.identify import stage_label
        return cls(kind="stage_changed", source=source.id, url=e.url, title=e.title, published=e.published,
                   plan_no=plan_no, std_no=std_no, stage=e.stage, previous_stage=previous, entry_key=e.key,
                   facts={"source_name": source.name, "stage_label": stage_label(e.stage),
                          "previous_stage_label": stage_label(previous), "status": e.status,
                          "issue_date": e.issue_date, "act_date": e.act_date, "committee": committee,
                          "standard_id": standard_id, "evidence": evidence})

    @classmethod
    def deadline_soon(cls, source: "Source", *, url: str, title: str, key: str, fields: Mapping[str, Any],
                      deadline: str, days_left: int, reminder: int) -> "Event":
        return cls(kind="deadline_soon", source=source.id, url=url, title=title, published=fields.get("published"),
                   deadline=deadline, plan_no=fields.get("plan_no"), std_no=fields.get("std_no"),
                   stage=fields.get("stage"), entry_key=key,
                   dedupe_key=f"deadline_soon:{source.id}:{key}:{deadline}:{reminder}"[:600],
                   facts={"source_name": source.name, "days_left": days_left, "reminder_days": reminder,
                          "committee": fields.get("committee")})

    @classmethod
    def standard_moved(cls, rec: Mapping[str, Any], source_id: str, source_name: str, url: str | None, *,
                       previous: str | None, stage: str, dedupe_key: str, **facts: Any) -> "Event":
        """A stage change that time made (a published standard comes into force on its date), not a page."""
        from watcher.identify import stage_label
        return cls(kind="stage_changed", source=source_id, url=url, title=rec.get("title"),
                   published=rec.get("issue_date"), plan_no=rec.get("plan_no"), std_no=rec.get("std_no"),
                   stage=stage, previous_stage=previous, dedupe_key=dedupe_key,
                   facts={"source_name": source_name, "stage_label": stage_label(stage),
                          "previous_stage_label": stage_label(previous), "act_date": rec.get("act_date"),
                          "issue_date": rec.get("issue_date"), "committee": rec.get("committee"),
                          "title_en": rec.get("title_en"), "replaces": rec.get("replaces"),
                          "standard_id": rec.get("id"), "evidence": [url] if url else [], "reason": "in force from "
                          f"{rec.get('act_date')}" if stage == "in_force" else None, **facts})

    @classmethod
    def in_force_soon(cls, rec: Mapping[str, Any], source_id: str, source_name: str, url: str | None, *,
                      days_left: int, reminder: int, dedupe_key: str) -> "Event":
        return cls(kind="in_force_soon", source=source_id, url=url, title=rec.get("title"),
                   published=rec.get("issue_date"), plan_no=rec.get("plan_no"), std_no=rec.get("std_no"),
                   stage=rec.get("stage"), dedupe_key=dedupe_key,
                   facts={"source_name": source_name, "act_date": rec.get("act_date"), "days_left": days_left,
                          "reminder_days": reminder, "committee": rec.get("committee"),
                          "title_en": rec.get("title_en"), "replaces": rec.get("replaces"),
                          "standard_id": rec.get("id")})

    @classmethod
    def _about_source(cls, kind: str, source: "Source", **facts: Any) -> "Event":
        from watcher.logs import mask
        from watcher.sanitize import shown
        if "reason" in facts:
            facts["reason"] = shown(facts["reason"])
        # the source's URL may carry credentials (user info, ?api_key=): people and feeds see it masked
        return cls(kind=kind, source=source.id, url=mask(source.url), title=source.name,
                   facts={"source_name": source.name, **facts})

    @classmethod
    def source_failed(cls, source: "Source", *, reason: str, http_status: int | None, retry_after: float | None,
                      consecutive_failures: int) -> "Event":
        return cls._about_source("source_failed", source, reason=reason, http_status=http_status,
                                 retry_after_s=int(retry_after) if retry_after is not None else None,
                                 consecutive_failures=consecutive_failures)

    @classmethod
    def source_broken(cls, source: "Source", *, reason: str, previous_entries: int) -> "Event":
        return cls._about_source("source_broken", source, reason=reason, previous_entries=previous_entries)

    @classmethod
    def source_recovered(cls, source: "Source", *, previous_problem: str) -> "Event":
        return cls._about_source("source_recovered", source, previous_problem=previous_problem)

    @classmethod
    def channel_failed(cls, channel_id: str, *, since: datetime, reason: str) -> "Event":
        """A channel that has been failing: told to every other channel (source is `channel:<id>`)."""
        return cls(kind="channel_failed", source=f"channel:{channel_id}", title=channel_id,
                   facts={"channel": channel_id, "failing_since": iso(since), "reason": reason})

    @classmethod
    def channel_recovered(cls, channel_id: str, *, since: datetime | None) -> "Event":
        return cls(kind="channel_recovered", source=f"channel:{channel_id}", title=channel_id,
                   facts={"channel": channel_id, "failing_since": iso(since) if since else None})

    # --- serialisation -----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The public form: CONTRACT fields first, then every extra fact that has a value."""
        out: dict[str, Any] = {"id": self.id}
        for k in _FIELDS:
            out[k] = getattr(self, k)
        out["changes"] = dict(self.changes)
        out["detected_at"] = self.detected_at
        for k, v in self.facts.items():
            if k not in out and v not in (None, [], {}, ""):
                out[k] = v
        if self.entry_key:
            out["entry_key"] = self.entry_key
        return out

    def payload(self) -> dict[str, Any]:
        """What the store keeps (the row id is the event's id)."""
        out = self.to_json()
        del out["id"]
        return out

    @classmethod
    def from_stored(cls, event_id: int, payload: Mapping[str, Any]) -> "Event":
        kw: dict[str, Any] = {k: payload.get(k) for k in _FIELDS}
        kw["changes"] = payload.get("changes") or {}
        facts = {k: v for k, v in payload.items() if k not in CONTRACT and k != "entry_key"}
        return cls(**kw, facts=facts, id=event_id, detected_at=payload.get("detected_at"),
                   entry_key=payload.get("entry_key"))

    def stored(self, event_id: int, detected_at: datetime) -> "Event":
        return replace(self, id=event_id, detected_at=iso(detected_at))

    def with_facts(self, **facts: Any) -> "Event":
        return replace(self, facts={**self.facts, **facts})

    def __getitem__(self, key: str) -> Any:
        v = self.get(key)
        if v is None and key not in CONTRACT and key not in self.facts:
            raise KeyError(key)
        return v

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style read of any field or fact (templates and filters use the JSON names)."""
        if key in CONTRACT or key in ("entry_key", "dedupe_key"):
            v = getattr(self, key)
            return default if v is None else v
        return self.facts.get(key, default)


def _tag_watched(config, ev: Event) -> Event:
    """Events about a standard on the watch list carry `watched: true` and the watch item as written."""
    if ev.kind in SOURCE_KINDS or ev.kind in CHANNEL_KINDS or not getattr(config, "watch_items", None):
        return ev
    item = None
    src = config.sources.get(ev.source)
    if src is not None and src.watch:
        item = src.watch_item
    item = item or config.watched(ev.std_no, ev.plan_no, *(ev.facts.get("std_nos") or []),
                                  *(ev.facts.get("replaces") or []), *(ev.facts.get("replaced_by") or []),
                                  *[s.get("std_no") for s in ev.facts.get("standards") or [] if isinstance(s, dict)])
    return ev.with_facts(watched=True, watch=item) if item else ev


def write_events(w, config, events: list[Event], now: datetime) -> list[Event]:
    """Insert events and their deliveries inside the caller's write transaction (one bulk INSERT each); returns
    the events with their ids. Subscriptions are matched here, so an event and its outbox rows commit together."""
    from sqlalchemy import insert

    from watcher.store import Delivery, EventRow
    from watcher.subscribe import delivery_rows

    if not events:
        return []
    events = [_tag_watched(config, ev) for ev in events]
    rows = []
    for ev in events:
        stamped = replace(ev, detected_at=iso(now))
        rows.append({"kind": ev.kind, "source_id": ev.source, "entry_key": ev.entry_key,
                     "dedupe_key": ev.dedupe_key, "payload": stamped.payload(), "detected_at": now})
    ids = w.execute(insert(EventRow).returning(EventRow.id, sort_by_parameter_order=True), rows).scalars().all()
    out, deliveries = [], []
    for ev, event_id in zip(events, ids):
        full = ev.stored(event_id, now)
        deliveries += delivery_rows(config, full, now)
        out.append(full)
    if deliveries:
        w.execute(insert(Delivery), deliveries)
    return out

"""One record per standard across sources, linked by plan number, standard number and normalised title; moves
to a later stage become `stage_changed` events (once per fact, whichever source shows it first)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from watcher.identify import is_forward, stage_label, standard_title, title_key
from watcher.models import Entry
from watcher.store import Record, Standard, StandardEvidence, Tx


def _year(no: str | None) -> int | None:
    if not no:
        return None
    tail = no.rsplit("-", 1)[-1] if no.startswith("GB") else no[:4]
    return int(tail) if tail.isdigit() else None


def _compatible(rec, e: Entry) -> bool:
    if rec.std_no and e.std_no and rec.std_no != e.std_no:
        return False
    if rec.plan_no and e.plan_no and rec.plan_no != e.plan_no:
        return False
    # a standard issued before a plan was approved is the old edition, not that plan's result
    plan, std = (e.plan_no or rec.plan_no), (e.std_no or rec.std_no)
    py, sy = _year(plan), _year(std)
    if py and sy and sy < py:
        return False
    return True


def find_standard(s: Tx, e: Entry, tkey: str | None) -> Record | None:
    if e.std_no:
        for rec in s.records(Standard, select(Standard).where(Standard.std_no == e.std_no)):
            return rec
    if e.plan_no:
        for rec in s.records(Standard, select(Standard).where(Standard.plan_no == e.plan_no)):
            if _compatible(rec, e):
                return rec
    if tkey:
        for rec in s.records(Standard, select(Standard).where(Standard.title_key == tkey).order_by(Standard.id)):
            if _compatible(rec, e):
                return rec
    return None


def _fill_numbers(s: Tx, rec: Record, e: Entry) -> None:
    if e.plan_no and not rec.plan_no and not s.scalars(select(Standard.id).where(Standard.plan_no == e.plan_no)).first():
        rec.plan_no = e.plan_no
    if e.std_no and not rec.std_no and not s.scalars(select(Standard.id).where(Standard.std_no == e.std_no)).first():
        rec.std_no = e.std_no


def update_standards(s: Tx, source, entries: list[Entry], now: datetime, *, baseline: bool,
                     source_name: str) -> list[dict[str, Any]]:
    """Link entries to standards and return the payloads of stage_changed events (none during a baseline)."""
    events: list[dict[str, Any]] = []
    for e in entries:
        std_title = standard_title(e.title) if (e.stage or e.std_nos or e.plan_no) else None
        if source.kind.startswith("samr."):
            std_title = e.title  # std.samr titles are the standard's own title
        tkey = title_key(std_title)
        numbered = bool(e.plan_no or e.std_no)
        if not e.stage:
            # mentions (e.g. a TC260 notice naming GB/T 47020-2026) link and add evidence, but do not move stages
            if not (numbered or e.std_nos):
                continue
            probe = Entry(key=e.key, url=e.url, title=e.title, plan_no=e.plan_no,
                          std_no=e.std_no or (e.std_nos[0] if len(e.std_nos) == 1 else None))
            rec = find_standard(s, probe, tkey)
            if rec is None:
                continue
            _fill_numbers(s, rec, probe)
            if not s.scalars(select(StandardEvidence.id).where(StandardEvidence.standard_id == rec.id,
                                                               StandardEvidence.url == e.url)).first():
                s.add(StandardEvidence, standard_id=rec.id, stage=None, at=now, source_id=source.id, url=e.url,
                      title=e.title, date=e.published)
            continue
        rec = find_standard(s, e, tkey)
        if rec is None:
            if not numbered:
                continue  # a draft without any number cannot found a record; it may link to one later
            rec = s.add(Standard, plan_no=e.plan_no, std_no=e.std_no, title=std_title or e.title, title_key=tkey,
                        stage=e.stage, stage_since=now, committee=e.committee, created_at=now, updated_at=now)
            s.add(StandardEvidence, standard_id=rec.id, stage=e.stage, at=now, source_id=source.id, url=e.url,
                  title=e.title, date=e.published or e.issue_date)
            continue
        _fill_numbers(s, rec, e)
        if e.committee and not rec.committee:
            rec.committee = e.committee
        if not rec.title_key and tkey:
            rec.title_key, rec.title = tkey, std_title or e.title
        if not is_forward(rec.stage, e.stage):
            continue
        previous = rec.stage
        evidence_urls = s.scalars(select(StandardEvidence.url).where(StandardEvidence.standard_id == rec.id)
                                  .order_by(StandardEvidence.id)).all()
        rec.stage, rec.stage_since, rec.updated_at = e.stage, now, now
        ev = s.add(StandardEvidence, standard_id=rec.id, stage=e.stage, previous_stage=previous, at=now,
                   source_id=source.id, url=e.url, title=e.title,
                   date=e.issue_date or e.published if e.stage in ("published", "in_force") else e.published)
        if baseline:
            continue
        urls: list[str] = []
        for url in evidence_urls:
            if url not in urls:
                urls.append(url)
        if e.url not in urls:
            urls.append(e.url)
        events.append({
            "kind": "stage_changed", "source": source.id, "source_name": source_name, "url": e.url,
            "title": e.title, "plan_no": rec.plan_no, "std_no": rec.std_no, "stage": e.stage,
            "previous_stage": previous, "changes": {}, "stage_label": stage_label(e.stage), "previous_stage_label": stage_label(previous),
            "status": e.status, "published": e.published, "issue_date": e.issue_date, "act_date": e.act_date,
            "committee": rec.committee, "standard_id": rec.id, "evidence": urls, "entry_key": e.key,
            "_evidence_row": ev,
        })
    return events


def standard_timeline(s: Tx, rec) -> list:
    return list(s.execute(select(StandardEvidence).where(StandardEvidence.standard_id == rec.id)
                          .order_by(StandardEvidence.at, StandardEvidence.id)))


def lookup(s: Tx, ident: str):
    from watcher.identify import normalize_plan_no, normalize_std_no
    conds = []
    if ident.isdigit():
        conds.append(Standard.id == int(ident))
    if (p := normalize_plan_no(ident)):
        conds.append(Standard.plan_no == p)
    if (n := normalize_std_no(ident)):
        conds.append(Standard.std_no == n)
    if (t := title_key(ident)):
        conds.append(Standard.title_key == t)
    if not conds:
        return None
    return s.execute(select(Standard).where(or_(*conds)).order_by(Standard.id)).first()

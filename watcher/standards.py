"""One record per standard across sources, linked by plan number, standard number and normalised title; moves
to a later stage become `stage_changed` events (once per fact, whichever source shows it first)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update

from watcher.events import Event
from watcher.identify import committee_of, is_forward, standard_title, std_family, title_key
from watcher.models import Entry
from watcher.store import Standard, StandardEvidence, Writer


def _year(no: str | None) -> int | None:
    if not no:
        return None
    tail = no.rsplit("-", 1)[-1] if no.startswith("GB") else no[:4]
    return int(tail) if tail.isdigit() else None


def _compatible(rec, e: Entry) -> bool:
    if rec["std_no"] and e.std_no and rec["std_no"] != e.std_no:
        return False
    if rec["plan_no"] and e.plan_no and rec["plan_no"] != e.plan_no:
        return False
    # a standard issued before a plan was approved is the old edition, not that plan's result
    plan, std = (e.plan_no or rec["plan_no"]), (e.std_no or rec["std_no"])
    py, sy = _year(plan), _year(std)
    if py and sy and sy < py:
        return False
    return True


def _rows(w: Writer, stmt) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in w.execute(stmt)]


def find_standard(w: Writer, e: Entry, tkey: str | None) -> dict[str, Any] | None:
    if e.std_no:
        for rec in _rows(w, select(Standard).where(Standard.std_no == e.std_no)):
            return rec
    if e.plan_no:
        for rec in _rows(w, select(Standard).where(Standard.plan_no == e.plan_no)):
            if _compatible(rec, e):
                return rec
    if tkey:
        for rec in _rows(w, select(Standard).where(Standard.title_key == tkey).order_by(Standard.id)):
            if _compatible(rec, e):
                return rec
    return None


def _number_changes(w: Writer, rec: dict[str, Any], e: Entry) -> dict[str, Any]:
    """Numbers the record lacks and the entry knows (unless another record already holds them)."""
    out: dict[str, Any] = {}
    if e.plan_no and not rec["plan_no"] and not w.scalar(select(Standard.id).where(Standard.plan_no == e.plan_no)):
        out["plan_no"] = e.plan_no
    if e.std_no and not rec["std_no"] and not w.scalar(select(Standard.id).where(Standard.std_no == e.std_no)):
        out["std_no"] = e.std_no
    return out


def _save(w: Writer, rec: dict[str, Any], changes: dict[str, Any]) -> None:
    if changes:
        w.execute(update(Standard).where(Standard.id == rec["id"]).values(**changes))
        rec.update(changes)


def _evidence(w: Writer, **values: Any) -> int:
    return w.execute(insert(StandardEvidence).values(**values)).inserted_primary_key[0]


def _facts_of(e: Entry) -> dict[str, Any]:
    """What an entry tells about a standard beyond its number and stage."""
    out: dict[str, Any] = {}
    if e.std_no:
        out["family"] = std_family(e.std_no)
    if getattr(e, "title_en", None):
        out["title_en"] = e.title_en
    if e.act_date:
        out["act_date"] = e.act_date
    if e.issue_date:
        out["issue_date"] = e.issue_date
    return out


def _merge_lists(old: list | None, new: list | None) -> list | None:
    merged = list(old or [])
    for x in new or []:
        if x and x not in merged:
            merged.append(x)
    return merged or None


def _stage_date(e: Entry, stage: str | None) -> str | None:
    """The date a page gives for reaching a stage (issue date, implementation date, 废止日期), or the page's own
    date for the stages of drafts and plans; None when the page gives none (the detection time stands in)."""
    if stage == "published":
        return e.issue_date or e.published
    if stage == "in_force":
        return e.act_date or e.issue_date or e.published
    if stage in ("superseded", "withdrawn"):
        return e.extra.get("withdrawn_date")
    if stage in ("under_revision", "not_implemented"):
        return None
    return e.published


def _about(rec: dict[str, Any]) -> dict[str, Any]:
    """Facts of a standard record that its stage_changed events carry (a message shows the English title and the
    editions it replaces or is replaced by)."""
    return {"title_en": rec.get("title_en"), "replaces": rec.get("replaces"), "replaced_by": rec.get("replaced_by")}


class StageEvents(list):
    """What `update_standards` returns: (stage_changed event, evidence id) pairs, and in `confirmed` the keys of
    the entries whose stage only confirms the stage their standard already had (a page catching up with a move
    that time or another source reported first): a status edit on such a row is not news."""

    def __init__(self):
        super().__init__()
        self.confirmed: set[str] = set()


def announced(e: Entry) -> list[Entry]:
    """The standards an announcement (国家标准公告) publishes, each as an entry of its own: published on the
    announcement's date, in force from its implementation date, replacing what the table says."""
    out = []
    if e.extra.get("notice_kind") not in (None, "gb"):
        return out
    for i, st in enumerate(e.extra.get("standards") or []):
        no = st.get("std_no")
        if not no:
            continue
        out.append(Entry(key=f"{e.key}#{no}", url=e.url, title=st.get("title") or no, std_no=no, stage="published",
                         issue_date=st.get("issue_date") or e.published, published=e.published,
                         act_date=st.get("act_date"), replaces=list(st.get("replaces") or []),
                         title_en=st.get("title_en"), committee=committee_of(st.get("title"))))
    return out


def update_standards(w: Writer, source, entries: list[Entry], now: datetime, *,
                     baseline: bool) -> StageEvents:
    """Link entries to standards; returns the stage_changed events (none during a baseline), each with the id of
    the evidence row that records it (the caller links the two once the event has its id), and the entries that
    only confirm a stage already known (`StageEvents.confirmed`)."""
    events = StageEvents()
    expanded: list[Entry] = []
    for e in entries:
        expanded.append(e)
        expanded += announced(e)
    for e in expanded:
        std_title = standard_title(e.title) if (e.stage or e.std_nos or e.plan_no) else None
        if source.kind.startswith("samr.") and not e.extra.get("notice_kind"):
            std_title = e.title  # std.samr titles are the standard's own title
        tkey = title_key(std_title)
        numbered = bool(e.plan_no or e.std_no)
        if not e.stage:
            # mentions (e.g. a TC260 notice naming GB/T 47020-2026) link and add evidence, but do not move stages
            if not (numbered or e.std_nos):
                continue
            probe = Entry(key=e.key, url=e.url, title=e.title, plan_no=e.plan_no,
                          std_no=e.std_no or (e.std_nos[0] if len(e.std_nos) == 1 else None))
            rec = find_standard(w, probe, tkey)
            if rec is None:
                continue
            _save(w, rec, _number_changes(w, rec, probe))
            if not w.scalar(select(StandardEvidence.id).where(StandardEvidence.standard_id == rec["id"],
                                                             StandardEvidence.url == e.url)):
                _evidence(w, standard_id=rec["id"], stage=None, at=now, source_id=source.id, url=e.url,
                          title=e.title, date=e.published)
            continue
        rec = find_standard(w, e, tkey)
        if rec is None:
            if not numbered:
                continue  # a draft without any number cannot found a record; it may link to one later
            stage, replaced_by = e.stage, list(getattr(e, "replaced_by", None) or [])
            successors = _successors_in_force(w, e.std_no)
            if successors:
                # an edition first seen after the one replacing it came into force (a lagging row, or rows read in
                # another order): it is superseded from the start, not later by surprise
                replaced_by = _merge_lists(replaced_by, successors) or []
                if is_forward(stage, "superseded"):
                    stage = "superseded"
            sid = w.execute(insert(Standard).values(
                plan_no=e.plan_no, std_no=e.std_no, title=std_title or e.title, title_key=tkey, stage=stage,
                stage_since=now, committee=e.committee, created_at=now, updated_at=now,
                replaces=list(getattr(e, "replaces", None) or []) or None,
                replaced_by=replaced_by or None, **_facts_of(e))
            ).inserted_primary_key[0]
            _evidence(w, standard_id=sid, stage=stage, at=now, source_id=source.id, url=e.url, title=e.title,
                      date=_stage_date(e, stage))
            if e.std_no and getattr(e, "replaces", None):
                events += _replaced(w, source, e, e.replaces, now, baseline=baseline)
            continue
        changes = _number_changes(w, rec, e)
        if e.committee and not rec["committee"]:
            changes["committee"] = e.committee
        if not rec["title_key"] and tkey:
            changes.update(title_key=tkey, title=std_title or e.title)
        for k, v in _facts_of(e).items():
            if v and rec.get(k) != v and (not rec.get(k) or k in ("act_date", "issue_date", "title_en")):
                changes[k] = v
        for k in ("replaces", "replaced_by"):
            merged = _merge_lists(rec.get(k), getattr(e, k, None))
            if merged != (rec.get(k) or None):
                changes[k] = merged
        if not is_forward(rec["stage"], e.stage):
            if rec["stage"] == e.stage:
                events.confirmed.add(e.key)
            _save(w, rec, changes)
            if e.std_no and rec.get("replaces"):
                events += _replaced(w, source, e, rec["replaces"], now, baseline=baseline)
            continue
        previous = rec["stage"]
        evidence_urls = w.scalars(select(StandardEvidence.url).where(StandardEvidence.standard_id == rec["id"])
                                  .order_by(StandardEvidence.id)).all()
        _save(w, rec, {**changes, "stage": e.stage, "stage_since": now, "updated_at": now})
        ev_id = _evidence(w, standard_id=rec["id"], stage=e.stage, previous_stage=previous, at=now,
                          source_id=source.id, url=e.url, title=e.title, date=_stage_date(e, e.stage))
        # what the record knows it replaces, from whichever page said so (this row may not repeat it)
        superseded = _replaced(w, source, e, rec["replaces"], now, baseline=baseline) \
            if e.std_no and rec.get("replaces") else []
        if baseline:
            continue
        urls: list[str] = []
        for url in [*evidence_urls, e.url]:
            if url not in urls:
                urls.append(url)
        events.append((Event.stage_changed(source, e, plan_no=rec["plan_no"], std_no=rec["std_no"], previous=previous,
                                           committee=rec["committee"], standard_id=rec["id"], evidence=urls)
                       .with_facts(**_about(rec)), ev_id))
        events += superseded          # after the move that causes them
    return events


def _replaced(w: Writer, source, e: Entry, replaces: list[str], now: datetime, *,
              baseline: bool) -> list[tuple[Event, int]]:
    """The editions a standard replaces learn who replaces them; once the new one is in force they are superseded
    (a new edition that is only published supersedes its predecessor on its implementation date)."""
    out: list[tuple[Event, int]] = []
    for old_no in replaces or []:
        old = next(iter(_rows(w, select(Standard).where(Standard.std_no == old_no))), None)
        if old is None:
            continue
        changes: dict[str, Any] = {}
        by = _merge_lists(old.get("replaced_by"), [e.std_no])
        if by != (old.get("replaced_by") or None):
            changes["replaced_by"] = by
        if e.stage == "in_force" and is_forward(old["stage"], "superseded"):
            previous = old["stage"]
            changes.update(stage="superseded", stage_since=now, updated_at=now)
            _save(w, old, changes)
            ev_id = _evidence(w, standard_id=old["id"], stage="superseded", previous_stage=previous, at=now,
                              source_id=source.id, url=e.url, title=e.title, date=e.act_date)
            if not baseline:
                probe = Entry(key=e.key, url=e.url, title=old["title"], std_no=old["std_no"], stage="superseded",
                              replaced_by=[e.std_no])
                # not about the row it came from (that row is the new edition): a status edit of that row must not
                # be merged into this event (pipeline._merge_status_edits pairs them by entry key)
                ev = replace(Event.stage_changed(source, probe, plan_no=old["plan_no"], std_no=old["std_no"],
                                                 previous=previous, committee=old["committee"],
                                                 standard_id=old["id"], evidence=[e.url]), entry_key=None)
                out.append((ev.with_facts(**_about(old)), ev_id))
        else:
            _save(w, old, changes)
    return out


def _successors_in_force(w: Writer, std_no: str | None) -> list[str]:
    """The editions of the same family that say they replace `std_no` and have come into force."""
    family = std_family(std_no) if std_no else None
    if not family:
        return []
    rows = _rows(w, select(Standard.std_no, Standard.replaces).where(
        Standard.family == family, Standard.stage.in_(("in_force", "under_revision", "superseded"))))
    return [r["std_no"] for r in rows if r["std_no"] and std_no in (r["replaces"] or [])]


def link_evidence(w: Writer, pairs: list[tuple[int, int]]) -> None:
    """Point evidence rows at the events that report them: (evidence id, event id) pairs."""
    for ev_id, event_id in pairs:
        w.execute(update(StandardEvidence).where(StandardEvidence.id == ev_id).values(event_id=event_id))


def standard_timeline(conn, rec) -> list:
    return list(conn.execute(select(StandardEvidence).where(StandardEvidence.standard_id == rec.id)
                             .order_by(StandardEvidence.at, StandardEvidence.id)))


def lookup(conn, ident: str):
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
    if conds:
        hit = conn.execute(select(Standard).where(or_(*conds)).order_by(Standard.id)).first()
        if hit is not None:
            return hit
    from watcher.identify import std_family
    fam = std_family(ident) if not normalize_std_no(ident) else None
    if fam:                  # a number without its year: the family's newest edition
        return conn.execute(select(Standard).where(Standard.family == fam)
                            .order_by(Standard.issue_date.desc(), Standard.id.desc())).first()
    return None

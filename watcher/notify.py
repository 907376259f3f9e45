"""Outbox: deliveries are written with their events (same transaction), then drained through apprise.

A sender claims due rows (status 'sending' with a lease; `FOR UPDATE SKIP LOCKED` on PostgreSQL so replicas never
share a row), sends, and marks each row sent, or pending with exponential backoff, or failed after the last
attempt. A process killed between sending and marking leaves a 'sending' row whose lease expires: that row may be
sent twice, nothing is ever lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import or_, select, update

from watcher.config import Channel, Config
from watcher.logs import mask
from watcher.render import (
    digest_html, digest_markdown, digest_subject, digest_text, html_body, markdown_body, subject, text_body,
)
from watcher.reminders import CHINA
from watcher.store import Delivery, EventRow, Store, utcnow
from watcher.subscribe import matches  # noqa: F401  (re-exported for callers of notify)

log = logging.getLogger("watcher.notify")

LEASE = timedelta(seconds=120)
BACKOFF_BASE, BACKOFF_MAX = 30.0, 6 * 3600.0


# --- sending -------------------------------------------------------------------------------------------------

def _plugin_family(url: str) -> str:
    import apprise   # imported when there is something to send: a daemon with nothing to deliver stays lighter
    obj = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    name = type(obj).__name__.lower() if obj is not None else ""
    if "slack" in name:
        return "slack"
    if "email" in name or "mail" in name:
        return "email"
    return "other"


def _body_for(channel: Channel, family: str, events: list[dict[str, Any]], today) -> tuple[str, str, str]:
    """(title, body, apprise body_format) for one event or a digest."""
    import apprise
    lang = channel.language
    fmt = channel.format or {"slack": "markdown", "email": "html"}.get(family, "text")
    single = len(events) == 1 and events[0].get("_mode") != "digest"
    if single:
        ev = events[0]
        title = subject(ev, lang)
        body = {"markdown": markdown_body, "html": html_body, "text": text_body}[fmt](ev, lang, today)
    else:
        title = digest_subject(events)
        body = {"markdown": digest_markdown, "html": digest_html, "text": digest_text}[fmt](events, lang, today)
    return title, body, {"markdown": apprise.NotifyFormat.MARKDOWN, "html": apprise.NotifyFormat.HTML,
                         "text": apprise.NotifyFormat.TEXT}[fmt]


def send(channel: Channel, title: str, body: str, body_format) -> tuple[bool, str]:
    """Send through apprise; returns (ok, error text). Apprise reports failure as a result, not an exception."""
    import apprise
    asset = apprise.AppriseAsset(app_id="watcher", app_desc="watcher standards monitor", storage_mode="memory")
    ap = apprise.Apprise(asset=asset)
    if not ap.add(channel.url):
        return False, f"channel {channel.id}: invalid apprise URL {mask(channel.url)}"
    try:
        result = ap.notify(body=body, title=title, body_format=body_format)
    except Exception as e:  # a plugin bug must not kill the sender; the row stays retryable
        return False, mask(f"{e.__class__.__name__}: {e}")
    if result:
        return True, ""
    msgs = [f"{entry.level}: {entry.message}" for entry in result.logs()
            if entry.level in ("WARNING", "ERROR", "CRITICAL")]
    status = getattr(result.status, "name", str(result.status))
    return False, mask(f"{status}: " + (" | ".join(msgs[-3:]) or "no detail from apprise"))[:2000]


@dataclass
class DrainResult:
    sent: int = 0
    failed: int = 0
    deferred: int = 0


def _claim(store: Store, now: datetime, *, ignore_backoff: bool, retry_failed: bool, limit: int) -> list[int]:
    with store.transaction() as s:
        conds = [Delivery.status == "pending"]
        if retry_failed:
            conds.append(Delivery.status == "failed")
        # a 'sending' row whose lease ran out belongs to a sender that died
        conds.append((Delivery.status == "sending") & (Delivery.claimed_until < now))
        q = select(Delivery).where(or_(*conds))
        if not ignore_backoff:
            q = q.where(or_(Delivery.next_try_at <= now, Delivery.status == "failed", Delivery.status == "sending"))
        q = q.order_by(Delivery.id).limit(limit)
        if store.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        rows = s.records(Delivery, q)
        for d in rows:
            if d.status == "failed":
                d.attempts = 0
            d.status, d.claimed_until = "sending", now + LEASE
        return [d.id for d in rows]


def drain_outbox(store: Store, config: Config, *, now: Callable[[], datetime] = utcnow, ignore_backoff: bool = False,
                 retry_failed: bool = False, limit: int = 500, sender: Callable = send) -> DrainResult:
    """Send every due delivery once; immediate ones one by one, digest ones grouped per channel when due."""
    res = DrainResult()
    t = now()
    if store.dialect == "sqlite":
        # single instance by definition: a 'sending' row here was left by a process that died mid-drain
        with store.transaction() as s:
            s.execute(update(Delivery).where(Delivery.status == "sending")
                      .values(claimed_until=t - timedelta(seconds=1)))
    ids = _claim(store, t, ignore_backoff=ignore_backoff, retry_failed=retry_failed, limit=limit)
    if not ids:
        return res
    with store.transaction() as s:
        rows = s.execute(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)).all()
        events = {e.id: {"id": e.id, **e.payload} for e in s.execute(select(EventRow).where(
            EventRow.id.in_({d.event_id for d in rows})))}
    today = t.astimezone(CHINA).date()
    digests: dict[str, list[Any]] = {}
    for d in rows:
        channel = config.channels.get(d.channel)
        if channel is None or not channel.enabled:
            _finish(store, [d], ok=False, error=f"channel {d.channel} is no longer configured", now=t,
                    max_attempts=1, res=res)
            continue
        if d.mode == "digest":
            digests.setdefault(d.channel, []).append(d)
            continue
        ev = events.get(d.event_id, {})
        family = _plugin_family(channel.url)
        title, body, fmt = _body_for(channel, family, [ev], today)
        ok, err = sender(channel, title, body, fmt)
        _finish(store, [d], ok=ok, error=err, now=t, max_attempts=config.settings.delivery_max_attempts, res=res)
    for ch, group in digests.items():
        channel = config.channels[ch]
        oldest = min(d.created_at for d in group)
        if not ignore_backoff and t < digest_due(config, ch, oldest):
            _release(store, group)
            res.deferred += len(group)
            continue
        evs = [dict(events.get(d.event_id, {}), _mode="digest") for d in group]
        title, body, fmt = _body_for(channel, _plugin_family(channel.url), evs, today)
        ok, err = sender(channel, title, body, fmt)
        _finish(store, group, ok=ok, error=err, now=t, max_attempts=config.settings.delivery_max_attempts, res=res)
    return res


def digest_due(config: Config, channel: str, oldest: datetime) -> datetime:
    """When the digest holding a delivery created at `oldest` is due: the earliest of the channel's digest
    subscriptions (next `digest_at` time after it, or `digest_interval` after it)."""
    from watcher.config import cron_trigger
    times = []
    for sub in config.subscriptions:
        if sub.mode != "digest" or channel not in sub.channels:
            continue
        if sub.digest_at:
            nxt = cron_trigger(sub.digest_at).get_next_fire_time(None, oldest)
            if nxt is not None:
                times.append(nxt)
        else:
            times.append(oldest + timedelta(seconds=sub.digest_interval))
    return min(times) if times else oldest + timedelta(days=1)


def _release(store: Store, group: list[Any]) -> None:
    with store.transaction() as s:
        s.execute(update(Delivery).where(Delivery.id.in_([d.id for d in group]))
                  .values(status="pending", claimed_until=None))


def _finish(store: Store, group: list[Any], *, ok: bool, error: str, now: datetime, max_attempts: int,
            res: DrainResult) -> None:
    with store.transaction() as s:
        for d in group:
            row = s.get(Delivery, d.id)
            row.attempts = (row.attempts or 0) + 1
            row.claimed_until = None
            if ok:
                row.status, row.sent_at, row.last_error = "sent", now, None
                res.sent += 1
            elif row.attempts >= max_attempts:
                row.status, row.last_error = "failed", error
                res.failed += 1
                log.error("delivery %s to %s failed for good after %d attempts: %s", row.id, row.channel,
                          row.attempts, error)
            else:
                wait = min(BACKOFF_BASE * 2 ** (row.attempts - 1), BACKOFF_MAX)
                row.status, row.last_error, row.next_try_at = "pending", error, now + timedelta(seconds=wait)
                res.deferred += 1
                log.warning("delivery %s to %s failed (attempt %d), retry in %ds: %s", row.id, row.channel,
                            row.attempts, int(wait), error)


SAMPLE_EVENT = {
    "kind": "new", "source": "tc260-drafts", "source_name": "TC260 标准征求意见",
    "url": "https://www.tc260.org.cn/portal/suggestion-detail/3bb57023c00a464faf4c2f7b9a5524c7",
    "title": "关于国家标准《数据安全技术 个人信息保护合规审计专业机构能力要求》征求意见稿征求意见的通知",
    "published": "2026-02-11", "deadline": "2026-04-12", "stage": "comment", "committee": "TC260",
    "summary": "watcher test message · watcher 测试消息", "changes": {},
}


def send_test(config: Config, channel: Channel) -> tuple[bool, str]:
    title, body, fmt = _body_for(channel, _plugin_family(channel.url), [SAMPLE_EVENT], None)
    return send(channel, "[test] " + title, body, fmt)

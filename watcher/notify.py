"""The outbox: deliveries are written with their events (same transaction), then sent by a sender.

Claims are small, leased and fenced: a sender claims a few due rows under a token (`FOR UPDATE SKIP LOCKED` on
PostgreSQL), renews the lease right before each send and marks a row sent only while its token still holds the
row, so two replicas, or `watcher deliver` beside a daemon, never send the same row twice. A sender asked to stop
finishes the message in flight and hands the rest of its claim back at once. Rows held by a process of this host
that no longer runs are taken back without waiting for the lease.

Failures retry with capped exponential backoff until `delivery_retry_for` has passed since the event (default
3 days); a manual `deliver --now` does not use up the schedule. A channel failing for longer than
`channel_alert_after` raises one `channel_failed` event to the other channels, and `channel_recovered` once it
works again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import and_, func, or_, select, update

from watcher.channels import family as channel_family, send as channel_send
from watcher.config import Channel, Config
from watcher.events import Event, write_events
from watcher.logs import mask
from watcher.reminders import CHINA
from watcher.store import ChannelState, Delivery, EventRow, Store, utcnow
from watcher.subscribe import matches  # noqa: F401  (re-exported for callers of notify)

log = logging.getLogger("watcher.notify")

# a claim lasts this long unless renewed (before every send); tests shorten it with WATCHER_CLAIM_LEASE
LEASE = timedelta(seconds=float(os.environ.get("WATCHER_CLAIM_LEASE", "120")))
CLAIM_SIZE = 20
BACKOFF_BASE, BACKOFF_MAX = 30.0, 3600.0
HOST = socket.gethostname()[:40]


# --- sending -------------------------------------------------------------------------------------------------

def send(channel: Channel, title: str, body: str, body_format: str, notify_type: str = "info") -> tuple[bool, str]:
    """Send one message through apprise; (ok, error text)."""
    return channel_send(channel.url, title, body, body_format, notify_type)


def message_for(channel: Channel, events: list[Event], today, *, digest: bool = False) -> tuple[str, str, str, str]:
    """(title, body, body format, notify type) of one message for a channel."""
    from watcher.channels import slack_blocks
    from watcher.render import render_digest, render_single     # loaded when there is something to say
    fam = channel_family(channel.url)
    fmt = channel.format
    if fam == "slack" and not slack_blocks(channel.url):
        fmt = "text"
    if digest:
        return render_digest(events, fam, fmt, channel.language, today)
    return render_single(events, fam, fmt, channel.language, today)


@dataclass
class DrainResult:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    lost: int = 0          # claims another sender took over (never sent twice)


def _owner_alive(token: str | None) -> bool:
    """Whether the process that made a claim token could still be sending. Tokens are host:pid:random; only
    this host's processes can be checked."""
    if not token:
        return False
    host, _, rest = token.partition(":")
    pid_s, _, _ = rest.partition(":")
    if host != HOST or not pid_s.isdigit():
        return True                     # another host: trust its lease
    pid = int(pid_s)
    if pid == os.getpid():
        return token in _MY_TOKENS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_MY_TOKENS: set[str] = set()


class Outbox:
    """Claims, fences and finishes deliveries for one process."""

    def __init__(self, store: Store, config: Config, *, now: Callable[[], datetime] = utcnow,
                 sender: Callable = send):
        self.store = store
        self.config = config
        self.now = now
        self.sender = sender
        self.stopping = threading.Event()

    # --- claims --------------------------------------------------------------------------------------------

    def _take_back_orphans(self, t: datetime) -> None:
        """Rows left 'sending' by a process of this host that is gone: pending again at once."""
        with self.store.read() as conn:
            rows = conn.execute(select(Delivery.id, Delivery.claim_token).where(
                Delivery.status == "sending", Delivery.claimed_until >= t)).all()
        dead = [r.id for r in rows if not _owner_alive(r.claim_token)]
        if dead:
            with self.store.write() as w:
                w.execute(update(Delivery).where(Delivery.id.in_(dead), Delivery.status == "sending")
                          .values(status="pending", claim_token=None, claimed_until=None))
            log.info("took back %d deliveries claimed by a process that is gone", len(dead))

    def claim(self, *, ignore_backoff: bool = False, retry_failed: bool = False, limit: int = CLAIM_SIZE,
              mode: str = "immediate", channel: str | None = None) -> tuple[str, list[Any]]:
        """Claim up to `limit` due rows of one mode (and channel) under a new token; (token, rows)."""
        t = self.now()
        token = f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"
        conds = [Delivery.status == "pending",
                 and_(Delivery.status == "sending", Delivery.claimed_until < t)]    # a lease ran out
        if retry_failed:
            conds.append(Delivery.status == "failed")
        q = select(Delivery.id).where(or_(*conds))
        if not ignore_backoff:
            q = q.where(or_(Delivery.next_try_at <= t, Delivery.status != "pending"))
        q = q.where(Delivery.mode == "digest") if mode == "digest" else q.where(Delivery.mode != "digest")
        if channel is not None:
            q = q.where(Delivery.channel == channel)
        q = q.order_by(Delivery.id).limit(limit)
        if self.store.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        with self.store.write() as w:
            ids = list(w.scalars(q))
            if not ids:
                return token, []
            _MY_TOKENS.add(token)
            w.execute(update(Delivery).where(Delivery.id.in_(ids))
                      .values(status="sending", claim_token=token, claimed_until=t + LEASE))
            rows = w.execute(select(Delivery).where(Delivery.id.in_(ids), Delivery.claim_token == token)
                             .order_by(Delivery.id)).all()
        return token, rows

    def _renew(self, token: str, ids: list[int]) -> list[int]:
        """Extend the lease on rows this claim still holds, right before sending them; returns those ids."""
        t = self.now()
        with self.store.write() as w:
            w.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.claim_token == token,
                                             Delivery.status == "sending").values(claimed_until=t + LEASE))
            return list(w.scalars(select(Delivery.id).where(Delivery.id.in_(ids), Delivery.claim_token == token,
                                                            Delivery.status == "sending")))

    def release(self, token: str) -> int:
        """Hand back every row of a claim that is not finished (pending again, no backoff added)."""
        with self.store.write() as w:
            n = w.execute(update(Delivery).where(Delivery.claim_token == token, Delivery.status == "sending")
                          .values(status="pending", claim_token=None, claimed_until=None)).rowcount
        _MY_TOKENS.discard(token)
        return n

    # --- one drain -----------------------------------------------------------------------------------------

    def drain(self, *, ignore_backoff: bool = False, retry_failed: bool = False, manual: bool = False,
              max_rounds: int = 1000, channel: str | None = None) -> DrainResult:
        """Send every due delivery (of one channel, or all): immediate ones in small claims, then each channel's
        digest when it is due."""
        res = DrainResult()
        self._take_back_orphans(self.now())
        for _ in range(max_rounds):
            if self.stopping.is_set():
                break
            token, rows = self.claim(ignore_backoff=ignore_backoff, retry_failed=retry_failed, channel=channel)
            if not rows:
                break
            try:
                self._send_immediate(token, rows, res, manual=manual or ignore_backoff)
            finally:
                self.release(token)
        if not self.stopping.is_set():
            self._send_digests(res, force=ignore_backoff, retry_failed=retry_failed, manual=manual or ignore_backoff,
                               channel=channel)
        self.check_channels()
        return res

    def _events(self, ids: set[int]) -> dict[int, Event]:
        with self.store.read() as conn:
            return {e.id: Event.from_stored(e.id, e.payload)
                    for e in conn.execute(select(EventRow.id, EventRow.payload).where(EventRow.id.in_(ids)))}

    def _send_immediate(self, token: str, rows: list[Any], res: DrainResult, *, manual: bool) -> None:
        today = self.now().astimezone(CHINA).date()
        events = self._events({d.event_id for d in rows})
        by_channel: dict[str, list[Any]] = {}
        for d in rows:
            channel = self.config.channels.get(d.channel)
            if channel is None or not channel.enabled:
                self._finish(token, [d], ok=False, error=f"channel {d.channel} is no longer configured", manual=False,
                             res=res, give_up=True)
                continue
            by_channel.setdefault(d.channel, []).append(d)
        for ch, ds in by_channel.items():
            # one fact, one message: events of one cycle about the same standard go out together
            for group in _fact_groups(ds, events):
                if self.stopping.is_set():
                    return
                self._send_group(token, self.config.channels[ch], group, events, res, today=today, manual=manual)

    def _send_group(self, token: str, channel: Channel, group: list[Any], events: dict[int, Event],
                    res: DrainResult, *, today, manual: bool, digest: bool = False) -> None:
        held = self._renew(token, [d.id for d in group])
        group = [d for d in group if d.id in held]
        if not group:
            res.lost += 1
            return
        evs = [events[d.event_id] for d in group if d.event_id in events]
        title, body, fmt, ntype = message_for(channel, evs, today, digest=digest)
        ok, err = self.sender(channel, title, body, fmt, ntype)
        self._finish(token, group, ok=ok, error=err, manual=manual, res=res)
        self._channel_result(channel, ok, err)

    def _send_digests(self, res: DrainResult, *, force: bool, retry_failed: bool, manual: bool,
                      channel: str | None = None) -> None:
        """Each channel's pending digest rows go out as one message once the oldest is due."""
        t = self.now()
        statuses = ["pending", "failed"] if retry_failed else ["pending"]
        q = select(Delivery.channel, func.min(Delivery.created_at)).where(
            Delivery.mode == "digest", Delivery.status.in_(statuses)).group_by(Delivery.channel)
        if channel is not None:
            q = q.where(Delivery.channel == channel)
        with self.store.read() as conn:
            oldest = {ch: first for ch, first in conn.execute(q)}
        for ch, first in oldest.items():
            channel = self.config.channels.get(ch)
            if channel is None or self.stopping.is_set():
                continue
            if not force and t < digest_due(self.config, ch, first):
                continue
            # the whole digest at once (a failed digest is tried again at the next drain, as before)
            token, rows = self.claim(ignore_backoff=True, retry_failed=retry_failed, limit=500, mode="digest",
                                     channel=ch)
            try:
                if rows:
                    events = self._events({d.event_id for d in rows})
                    self._send_group(token, channel, rows, events, res, today=t.astimezone(CHINA).date(),
                                     manual=manual, digest=True)
            finally:
                self.release(token)

    def _finish(self, token: str, group: list[Any], *, ok: bool, error: str, manual: bool, res: DrainResult,
                give_up: bool = False) -> None:
        """Record the result on rows this claim still holds (fenced by the token)."""
        t = self.now()
        st = self.config.settings
        error = mask(error or "")
        with self.store.write() as w:
            for d in group:
                where = and_(Delivery.id == d.id, Delivery.claim_token == token, Delivery.status == "sending")
                attempts = (d.attempts or 0) + (0 if manual and not ok else 1)
                if ok:
                    n = w.execute(update(Delivery).where(where).values(
                        status="sent", sent_at=t, last_error=None, attempts=attempts, claim_token=None,
                        claimed_until=None)).rowcount
                    res.sent += n
                    if not n:
                        log.warning("delivery %s was sent, but another sender had taken it over", d.id)
                    continue
                expired = t - d.created_at >= timedelta(seconds=st.delivery_retry_for)
                too_many = st.delivery_max_attempts is not None and attempts >= st.delivery_max_attempts
                if give_up or (not manual and (expired or too_many)):
                    w.execute(update(Delivery).where(where).values(
                        status="failed", last_error=error, attempts=attempts, claim_token=None, claimed_until=None))
                    res.failed += 1
                    log.error("delivery %s to %s failed for good after %d attempts: %s", d.id, d.channel, attempts,
                              error)
                    continue
                values: dict[str, Any] = {"status": "pending", "last_error": error, "attempts": attempts,
                                          "claim_token": None, "claimed_until": None}
                if not manual:
                    wait = min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_MAX)
                    values["next_try_at"] = t + timedelta(seconds=wait)
                    log.warning("delivery %s to %s failed (attempt %d), retry in %ds: %s", d.id, d.channel,
                                attempts, int(wait), error)
                w.execute(update(Delivery).where(where).values(**values))
                res.deferred += 1

    # --- channel health ------------------------------------------------------------------------------------

    def _channel_result(self, channel: Channel, ok: bool, err: str) -> None:
        t = self.now()
        with self.store.write() as w:
            row = w.execute(select(ChannelState).where(ChannelState.channel_id == channel.id)).first()
            if row is None:
                w.execute(ChannelState.__table__.insert().values(
                    channel_id=channel.id, failing_since=None if ok else t, last_ok_at=t if ok else None,
                    last_error=None if ok else mask(err), alerted=False))
                return
            if ok:
                if row.failing_since is not None or row.alerted:
                    w.execute(update(ChannelState).where(ChannelState.channel_id == channel.id).values(
                        failing_since=None, last_ok_at=t, last_error=None, alerted=False))
                    if row.alerted:
                        write_events(w, self.config, [Event.channel_recovered(channel.id, since=row.failing_since)],
                                     t)
                        log.warning("channel %s works again", channel.id)
                elif row.last_ok_at is None or (t - row.last_ok_at).total_seconds() > 60:
                    w.execute(update(ChannelState).where(ChannelState.channel_id == channel.id).values(last_ok_at=t))
            else:
                w.execute(update(ChannelState).where(ChannelState.channel_id == channel.id).values(
                    failing_since=row.failing_since or t, last_error=mask(err)))

    def check_channels(self) -> list[Event]:
        """Raise channel_failed once for each channel failing longer than `channel_alert_after`."""
        t = self.now()
        limit = timedelta(seconds=self.config.settings.channel_alert_after)
        out: list[Event] = []
        with self.store.read() as conn:
            due = [r for r in conn.execute(select(ChannelState).where(ChannelState.failing_since.is_not(None),
                                                                       ChannelState.alerted.is_(False)))
                   if t - r.failing_since >= limit and r.channel_id in self.config.channels]
        for r in due:
            with self.store.write() as w:
                n = w.execute(update(ChannelState).where(ChannelState.channel_id == r.channel_id,
                                                         ChannelState.alerted.is_(False))
                              .values(alerted=True)).rowcount
                if n:
                    out += write_events(w, self.config, [Event.channel_failed(
                        r.channel_id, since=r.failing_since, reason=r.last_error or "")], t)
                    log.error("channel %s has been failing since %s: %s", r.channel_id, r.failing_since,
                              r.last_error)
        return out


CYCLE = timedelta(minutes=15)     # events detected this close together belong to one poll cycle


def _fact_groups(rows: list[Any], events: dict[int, Event]) -> list[list[Any]]:
    """Deliveries whose events are about one standard and were detected in one cycle, grouped."""
    from watcher.render import group_facts
    evs = [events.get(d.event_id) for d in rows]
    known = [(d, e) for d, e in zip(rows, evs) if e is not None]
    out: list[list[Any]] = [[d] for d, e in zip(rows, evs) if e is None]
    for group in group_facts([e for _, e in known]):
        ids = {e.id for e in group}
        members = [d for d, e in known if e.id in ids]
        # split a group whose events are far apart in time (separate cycles tell separate news)
        members.sort(key=lambda d: events[d.event_id].detected_at or "")
        current: list[Any] = []
        start = None
        for d in members:
            at = datetime.fromisoformat((events[d.event_id].detected_at or "1970-01-01T00:00:00Z").replace("Z", "+00:00"))
            if current and start is not None and at - start > CYCLE:
                out.append(current)
                current, start = [], None
            if start is None:
                start = at
            current.append(d)
        if current:
            out.append(current)
    return out


def drain_outbox(store: Store, config: Config, *, now: Callable[[], datetime] = utcnow, ignore_backoff: bool = False,
                 retry_failed: bool = False, sender: Callable = send, manual: bool = False) -> DrainResult:
    """One drain, for `watcher once` and `watcher deliver`."""
    return Outbox(store, config, now=now, sender=sender).drain(ignore_backoff=ignore_backoff,
                                                               retry_failed=retry_failed, manual=manual)


class Sender:
    """The daemon's sending side: one worker thread per channel, woken after a poll with events and every
    `delivery_interval`. A slow or hanging channel holds up only its own thread: polls never wait for sending,
    and the other channels keep receiving within a moment of the poll."""

    def __init__(self, store: Store, config: Config, *, now: Callable[[], datetime] = utcnow,
                 sender: Callable = send):
        self.outbox = Outbox(store, config, now=now, sender=sender)
        self._workers: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._lock = threading.Lock()
        self._started = False

    @property
    def config(self) -> Config:
        return self.outbox.config

    def reload(self, config: Config) -> None:
        self.outbox.config = config
        if self._started:
            self._sync_workers()

    def wake(self) -> None:
        for _, ev in list(self._workers.values()):
            ev.set()

    def start(self) -> None:
        self._started = True
        self._sync_workers()

    def _sync_workers(self) -> None:
        with self._lock:
            for ch in self.config.channels:
                if ch not in self._workers:
                    ev = threading.Event()
                    t = threading.Thread(target=self._loop, args=(ch, ev), name=f"watcher-send-{ch}", daemon=True)
                    self._workers[ch] = (t, ev)
                    t.start()
            for ch in [c for c in self._workers if c not in self.config.channels]:
                self._workers.pop(ch)[1].set()          # its loop sees the channel is gone and ends

    def _loop(self, channel: str, wake: threading.Event) -> None:
        while not self.outbox.stopping.is_set():
            try:
                if channel not in self.config.channels:
                    return
                self.outbox.drain(channel=channel)
            except Exception as e:  # the sender must survive a bad moment of the database
                log.error("sending to %s failed: %s: %s", channel, e.__class__.__name__, mask(str(e)))
            wake.wait(self.config.settings.delivery_interval)
            wake.clear()

    def drain_now(self, **kw) -> DrainResult:
        return self.outbox.drain(**kw)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the messages in flight, hand back the rest of the claims, and return."""
        self.outbox.stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for t, _ in list(self._workers.values()):
            t.join(max(0.0, deadline - time.monotonic()))


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


SAMPLE_EVENT = Event(
    kind="new", source="tc260-drafts",
    url="https://www.tc260.org.cn/portal/suggestion-detail/3bb57023c00a464faf4c2f7b9a5524c7",
    title="关于国家标准《数据安全技术 个人信息保护合规审计专业机构能力要求》征求意见稿征求意见的通知",
    published="2026-02-11", deadline="2026-04-12", stage="comment",
    facts={"source_name": "TC260 标准征求意见", "committee": "TC260",
           "summary": "watcher test message · watcher 测试消息"})


def send_test(config: Config, channel: Channel) -> tuple[bool, str]:
    title, body, fmt, ntype = message_for(channel, [SAMPLE_EVENT], None)
    return send(channel, "[test] " + title, body, fmt, ntype)

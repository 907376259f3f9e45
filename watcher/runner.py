"""The runner: the one place that decides what to poll and runs polls, used by `once`, `run`, `demo` and `record`.

It builds the fetcher, skips a source whose server asked to wait (Retry-After) unless forced, overlaps the network
half of many polls (one request at a time per site stays: that is the fetcher's politeness lock) while committing
them in configuration order, raises deadline reminders, and tells the sender when there is something to send.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Callable

from watcher.config import Config, Settings, Source
from watcher.events import Event, iso, write_events
from watcher.fetch import Fetcher
from watcher.pipeline import PollOutcome, commit, poll_source, prepare
from watcher.store import Store, utcnow

log = logging.getLogger("watcher.runner")


def make_fetcher(settings: Settings, transport=None) -> Fetcher:
    """The only place a Fetcher is built."""
    return Fetcher(user_agent=settings.user_agent, max_retry_wait=settings.max_retry_wait,
                   host_delay=settings.host_delay, transport=transport)


class Runner:
    def __init__(self, config: Config, store: Store, *, transport=None, clock: Callable[[], datetime] | None = None,
                 metrics=None, on_events: Callable[[], None] | None = None):
        self.config = config
        self.store = store
        self.transport = transport
        self.clock = clock or utcnow
        self.metrics = metrics
        self.on_events = on_events
        self.fetcher = make_fetcher(config.settings, transport)

    # --- what is due -----------------------------------------------------------------------------------------

    def skip_reason(self, source: Source, now: datetime, *, scheduled: bool = False) -> str | None:
        """Why this source should not be polled now, or None. A pending Retry-After always counts; a scheduled
        poll also yields to another replica that polled the source within half its interval."""
        st = self.store.state(source.id, fresh=scheduled and self.store.dialect == "postgresql")
        nb = st.get("not_before")
        if nb and now < nb:
            return f"the server asked to wait (Retry-After) until {iso(nb)}"
        if scheduled and not source.cron and st.get("last_poll_at") and \
                (now - st["last_poll_at"]).total_seconds() < source.interval / 2:
            return "polled recently (another replica)"
        return None

    def _skipped(self, source: Source, reason: str, now: datetime) -> PollOutcome:
        """A source deferred by Retry-After for longer than `alert_after_failures` intervals without a successful
        poll is failing, even though nothing was fetched: raise source_failed once."""
        events: list[Event] = []
        st = self.store.state(source.id)
        if st.get("not_before") and st.get("alerted") != "failed" and reason.startswith("the server"):
            since = st.get("last_success_at") or st.get("last_poll_at")
            limit = timedelta(seconds=source.alert_after_failures * source.interval)
            if since is not None and now - since >= limit:
                with self.store.write() as w:
                    st = self.store.load_state(w, source.id)
                    if st.get("alerted") != "failed":
                        events = write_events(w, self.config, [Event.source_failed(
                            source, reason=f"no successful poll since {iso(since)}: {reason}"
                                           f" ({st.get('last_error') or 'deferred'})",
                            http_status=None, retry_after=None,
                            consecutive_failures=st.get("consecutive_failures") or 0)], now)
                        self.store.save_state(w, st, alerted="failed")
        log.info("skip", extra={"fields": {"source": source.id, "reason": reason}})
        out = PollOutcome(source.id, "skipped", entries=st.get("entry_count") or 0, events=events, error=reason)
        self._observe(out)
        return out

    # --- polling ---------------------------------------------------------------------------------------------

    def poll(self, source: Source, *, force: bool = False, scheduled: bool = False) -> PollOutcome:
        now = self.clock()
        reason = None if force else self.skip_reason(source, now, scheduled=scheduled)
        if reason:
            return self._skipped(source, reason, now)
        out = poll_source(self, source)
        self._observe(out)
        return out

    def poll_all(self, sources: list[Source], *, force: bool = False, workers: int | None = None,
                 on_outcome: Callable[[PollOutcome], None] | None = None) -> list[PollOutcome]:
        """Poll many sources: their fetches overlap (`workers` threads, one request at a time per site), their
        results are committed one by one in the given order, so the same input always gives the same events."""
        self.store.preload_states([s.id for s in sources])
        workers = max(1, workers or self.config.settings.workers)
        now = self.clock()
        outcomes: list[PollOutcome] = []
        pending: deque[tuple[Source, Future | None, str | None]] = deque()
        todo = iter(sources)
        window = workers * 2
        with ThreadPoolExecutor(workers, thread_name_prefix="watcher-poll") as pool:
            def fill() -> None:
                while len(pending) < window:
                    src = next(todo, None)
                    if src is None:
                        return
                    reason = None if force else self.skip_reason(src, now)
                    pending.append((src, None if reason else pool.submit(prepare, self, src), reason))

            fill()
            while pending:
                src, fut, reason = pending.popleft()
                if fut is None:
                    out = self._skipped(src, reason or "", now)
                else:
                    try:
                        out = commit(self, fut.result())
                    except Exception:
                        for _, f, _ in pending:          # stop what has not started; let the rest finish
                            if f is not None:
                                f.cancel()
                        raise
                    self._observe(out)
                outcomes.append(out)
                if on_outcome:
                    on_outcome(out)
                fill()
        return outcomes

    def _observe(self, out: PollOutcome) -> None:
        if self.metrics is not None:
            self.metrics.observe(out)
        if out.events and self.on_events is not None:
            self.on_events()

    def reminders(self, source_ids: list[str] | None = None) -> list[Event]:
        from watcher.reminders import raise_deadline_reminders
        events = raise_deadline_reminders(self, source_ids)
        if events and self.on_events is not None:
            self.on_events()
        return events

    # --- lifecycle -------------------------------------------------------------------------------------------

    def reload(self, config: Config) -> None:
        old, self.fetcher = self.fetcher, make_fetcher(config.settings, self.transport)
        self.config = config
        # a poll in flight finishes on the old fetcher: close it once any request it serves has timed out
        timer = threading.Timer(max((s.timeout for s in config.sources.values()), default=20.0) * 3 + 5, old.close)
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        self.fetcher.close()

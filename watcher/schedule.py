"""The daemon: APScheduler 3 BlockingScheduler with one job per source (interval or cron, with jitter), an outbox
sender, deadline reminders, a heartbeat and a config watcher. SIGTERM/SIGINT finish work in flight and exit 0;
SIGHUP (or a changed sources.toml) reloads, keeping the old config when the new one is invalid."""

from __future__ import annotations

import gc
import logging
import random
import signal
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from watcher.config import Config, Source, cron_trigger
from watcher.errors import ConfigError
from watcher.fetch import Fetcher
from watcher.health import heartbeat_age, write_heartbeat
from watcher.pipeline import Context, poll_source
from sqlalchemy import select

from watcher.store import SourceState, Store

log = logging.getLogger("watcher.daemon")

HEARTBEAT_EVERY = 30.0
CONFIG_CHECK_EVERY = 5.0
REMINDERS_EVERY = 3600.0


def make_trigger(src: Source):
    jitter = src.jitter if src.jitter is not None else max(1.0, src.interval * 0.1)
    if src.cron:
        return cron_trigger(src.cron, jitter=int(jitter))
    return IntervalTrigger(seconds=src.interval, jitter=int(jitter), timezone=timezone.utc)


class Daemon:
    def __init__(self, config: Config, store: Store, state_dir: Path, *, load: Callable[[], Config] | None = None,
                 transport=None, clock: Callable[[], datetime] | None = None, http: str | None = None,
                 sender=None, workers: int | None = None, start_delay: float = 5.0):
        self.config = config
        self.store = store
        self.state_dir = Path(state_dir)
        self.load = load
        self.transport = transport
        self.clock = clock
        self.http_address = http
        self.sender = sender
        self.start_delay = start_delay
        self.metrics = None
        if http:   # nobody could scrape them otherwise; per-source series cost memory (about 2 MB per 1000 sources)
            from watcher.web import Metrics
            self.metrics = Metrics(store)
        self.stopping = threading.Event()
        self._config_mtime = self._mtime()
        self._lock = threading.Lock()
        self.fetcher = self._make_fetcher(config)
        self.scheduler = BlockingScheduler(
            timezone=timezone.utc, executors={"default": ThreadPoolExecutor(workers or config.settings.workers),
                                           "system": ThreadPoolExecutor(2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self.scheduler.add_listener(self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self.httpd = None

    # --- wiring ---------------------------------------------------------------------------------------------

    def _make_fetcher(self, config: Config) -> Fetcher:
        st = config.settings
        return Fetcher(user_agent=st.user_agent, max_retry_wait=st.max_retry_wait, host_delay=st.host_delay,
                       transport=self.transport)

    def context(self) -> Context:
        ctx = Context(config=self.config, store=self.store, fetcher=self.fetcher)
        if self.clock:
            ctx.clock = self.clock
        return ctx

    def _mtime(self) -> float | None:
        try:
            return self.config.path.stat().st_mtime
        except OSError:
            return None

    def schedule_all(self, first_delay: float | None = None) -> None:
        first_delay = self.start_delay if first_delay is None else first_delay
        now = datetime.now(timezone.utc)
        wanted = set()
        for src in self.config.sources.values():
            if not src.enabled:
                continue
            job_id = f"source:{src.id}"
            wanted.add(job_id)
            existing = self.scheduler.get_job(job_id)
            spread = random.uniform(0, min(first_delay, src.interval))
            self.scheduler.add_job(self.poll_job, make_trigger(src), args=[src.id], id=job_id, name=job_id,
                                   replace_existing=True,
                                   next_run_time=existing.next_run_time if existing else now + timedelta(seconds=spread))
        for job in self.scheduler.get_jobs():
            if job.id.startswith("source:") and job.id not in wanted:
                job.remove()
                log.info("source %s removed from schedule", job.id[7:])
        st = self.config.settings
        self.scheduler.add_job(self.deliver_job, IntervalTrigger(seconds=st.delivery_interval, timezone=timezone.utc),
                               id="outbox", executor="system", replace_existing=True, next_run_time=now + timedelta(seconds=1))
        self.scheduler.add_job(self.reminder_job, IntervalTrigger(seconds=REMINDERS_EVERY, timezone=timezone.utc),
                               id="reminders", executor="system", replace_existing=True, next_run_time=now + timedelta(seconds=2))
        self.scheduler.add_job(self.heartbeat_job, IntervalTrigger(seconds=HEARTBEAT_EVERY, timezone=timezone.utc),
                               id="heartbeat", executor="system", replace_existing=True, next_run_time=now)
        self.scheduler.add_job(self.config_watch_job, IntervalTrigger(seconds=CONFIG_CHECK_EVERY, timezone=timezone.utc),
                               id="config-watch", executor="system", replace_existing=True)

    # --- jobs -----------------------------------------------------------------------------------------------

    def poll_job(self, source_id: str):
        if self.stopping.is_set():
            return None
        src = self.config.sources.get(source_id)
        if src is None or not src.enabled:
            return None
        ctx = self.context()
        now = ctx.clock()
        with self.store.engine.connect() as conn:
            st = conn.execute(select(SourceState.not_before, SourceState.last_poll_at)
                              .where(SourceState.source_id == source_id)).first()
        if st is not None:
            if st.not_before and now < st.not_before:
                log.info("skip", extra={"fields": {"source": source_id, "reason": "Retry-After",
                                                   "until": st.not_before.isoformat()}})
                return None
            # another replica polled it recently: do not fetch the same page twice
            if st.last_poll_at and (now - st.last_poll_at).total_seconds() < src.interval / 2 and not src.cron:
                return None
        out = poll_source(ctx, src)
        if self.metrics:
            self.metrics.observe(out)
        if out.events and not self.stopping.is_set():
            from watcher.reminders import raise_deadline_reminders
            raise_deadline_reminders(ctx, [source_id])
            self.deliver_job()
        return out

    def poll_job_now(self, source_id: str):
        """Poll immediately, ignoring the interval guard (demo and `once`-like callers)."""
        ctx = self.context()
        out = poll_source(ctx, self.config.sources[source_id])
        if self.metrics:
            self.metrics.observe(out)
        return out

    def run_jobs_only(self) -> int:
        """Run the scheduler with only the jobs already added (the demo's timeline)."""
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        return self._serve()

    def _serve(self) -> int:
        """Run the scheduler until stopped; then wait for work in flight and release everything."""
        try:
            self.scheduler.start()
        finally:
            stopper = getattr(self, "_stopper", None)
            if stopper is not None:
                stopper.join()          # jobs in flight have finished when shutdown(wait=True) returns
            self.store.flush_touches()
            if self.httpd:
                self.httpd.shutdown()
            self.fetcher.close()
            log.info("daemon stopped")
        return 0

    def deliver_job(self):
        if not self.config.channels:
            return None
        from watcher.notify import drain_outbox, send
        with self._lock:  # one drain at a time per process; replicas are kept apart by SKIP LOCKED
            ctx = self.context()
            return drain_outbox(self.store, self.config, now=ctx.clock, sender=self.sender or send)

    def reminder_job(self):
        from watcher.reminders import raise_deadline_reminders
        evs = raise_deadline_reminders(self.context())
        if evs:
            self.deliver_job()
        return evs

    def heartbeat_job(self):
        self.store.flush_touches()
        write_heartbeat(self.state_dir, sources=len(self.config.sources))

    def config_watch_job(self):
        m = self._mtime()
        if m is not None and m != self._config_mtime:
            self._config_mtime = m
            self.reload("file changed")

    def reload(self, why: str = "SIGHUP") -> bool:
        if self.load is None:
            return False
        try:
            new = self.load()
        except ConfigError as e:
            log.error("config reload (%s) rejected, keeping the running config: %s", why, e)
            return False
        self.config = new
        self._config_mtime = self._mtime()
        old_fetcher, self.fetcher = self.fetcher, self._make_fetcher(new)
        self.schedule_all()
        old_fetcher.close()
        log.info("config reloaded (%s): %d sources, %d channels", why, len(new.sources), len(new.channels))
        return True

    def _on_job_event(self, event) -> None:
        if getattr(event, "exception", None):
            log.error("job %s failed: %s", event.job_id, event.exception)
        else:
            log.warning("job %s: %s", event.job_id, type(event).__name__)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def stop(self, *_):
        if self.stopping.is_set():
            return
        log.info("stopping: finishing polls and deliveries in flight")
        self.stopping.set()
        self._stopper = threading.Thread(target=self._shutdown, name="watcher-stop", daemon=True)
        self._stopper.start()

    def _shutdown(self):
        try:
            self.scheduler.shutdown(wait=True)
        except Exception as e:  # already stopped
            log.debug("shutdown: %s", e)

    def healthy(self) -> tuple[bool, str]:
        age = heartbeat_age(self.state_dir)
        if age is None or age > 3 * HEARTBEAT_EVERY:
            return False, "heartbeat stale"
        return True, "ok"

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self.reload, args=("SIGHUP",),
                                                                     daemon=True).start())
        if self.http_address:
            from watcher.web import serve
            self.httpd = serve(self.http_address, self.store, self.metrics, self.healthy)
        self.schedule_all()
        gc.freeze()   # start-up objects live forever: keep them out of every collection
        log.info("daemon started: %d sources", len([s for s in self.config.sources.values() if s.enabled]))
        return self._serve()


def run_daemon(args, load: Callable[[], Config], store: Store, state_dir: Path) -> int:
    config = load()
    transport = None
    if getattr(args, "replay", None):
        from watcher.replay import ReplayTransport, Snapshot
        transport = ReplayTransport(Snapshot(args.replay))
    daemon = Daemon(config, store, state_dir, load=load, transport=transport, http=getattr(args, "http", None),
                    start_delay=getattr(args, "start_delay", 5.0))
    return daemon.run()

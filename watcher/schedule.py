"""The daemon: APScheduler 3 BlockingScheduler with one job per source (interval or cron, with jitter) that asks
the runner to poll, plus reminders, a heartbeat and a config watch; a sender thread sends (see notify.Sender).
SIGTERM/SIGINT finish polls in flight and the message in flight, hand back unsent claims and exit 0; SIGHUP (or
a changed sources.toml) reloads, keeping the old config when the new one is invalid."""

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

from watcher.config import Config, Source, check_channels, cron_trigger
from watcher.errors import ConfigError, StoreError
from watcher.health import remove_heartbeat, write_heartbeat
from watcher.notify import Sender, send
from watcher.runner import Runner
from watcher.store import Store

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
                 http_token: str | None = None, sender=None, workers: int | None = None, start_delay: float = 5.0,
                 background_sender: bool = True):
        self.store = store
        self.state_dir = Path(state_dir)
        self.load = load
        self.http_address = http
        self.http_token = http_token
        self.start_delay = start_delay
        self.background_sender = background_sender
        self.metrics = None
        if http:   # nobody could scrape them otherwise
            from watcher.web import Metrics
            self.metrics = Metrics(store)
        self.sender = Sender(store, config, sender=sender or send, **({"now": clock} if clock else {}))
        self.runner = Runner(config, store, transport=transport, clock=clock, metrics=self.metrics,
                             on_events=self.sender.wake if background_sender else None,
                             archive_dir=self.state_dir / "archive")
        self.stopping = threading.Event()
        self.state_ok, self.state_error = True, ""
        self._config_mtime = self._mtime()
        self.scheduler = BlockingScheduler(
            timezone=timezone.utc, executors={"default": ThreadPoolExecutor(workers or config.settings.workers),
                                           "system": ThreadPoolExecutor(2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self.scheduler.add_listener(self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self.httpd = None

    @property
    def config(self) -> Config:
        return self.runner.config

    def _mtime(self) -> tuple | None:
        try:
            st = self.config.path.stat()
            return st.st_mtime_ns, st.st_ino, st.st_size
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
        try:
            out = self.runner.poll(src, scheduled=True)
            if out.status == "ok" and not self.stopping.is_set():
                self.runner.reminders([source_id])    # a new deadline may already be close
            return out
        except StoreError as e:
            self._state_failed(e)
            return None

    def poll_job_now(self, source_id: str):
        """Poll immediately, ignoring Retry-After and the replica guard (the demo's timeline)."""
        return self.runner.poll(self.config.sources[source_id], force=True)

    def reminder_job(self):
        try:
            return self.runner.reminders()
        except StoreError as e:
            self._state_failed(e)
            return []

    def heartbeat_job(self):
        """Prove that the state can be written (a real write, so a full disk shows), then write the heartbeat."""
        try:
            self.store.probe_write()
        except StoreError as e:
            self._state_failed(e)
            return
        self.state_ok, self.state_error = True, ""
        try:
            write_heartbeat(self.state_dir, sources=len(self.config.sources))
        except OSError as e:
            self._state_failed(e)

    def _state_failed(self, e: Exception) -> None:
        if self.state_ok:
            log.error("state cannot be written: %s", e)
        self.state_ok, self.state_error = False, str(e)
        remove_heartbeat(self.state_dir)       # `watcher healthcheck` fails at once (removing frees, never fails)

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
            check_channels(new, in_child=True)
        except ConfigError as e:
            log.error("config reload (%s) rejected, keeping the running config: %s", why, e)
            return False
        old = self.config
        changed = [s for s in new.sources if s in old.sources and
                   new.sources[s].config_digest != old.sources[s].config_digest]
        self.runner.reload(new)
        self.sender.reload(new)
        self._config_mtime = self._mtime()
        self.schedule_all()
        log.info("config reloaded (%s): %d sources, %d channels", why, len(new.sources), len(new.channels))
        if changed:
            log.info("extraction settings changed for %s: their next poll re-reads the page and records a new "
                     "baseline silently", ", ".join(changed))
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
        log.info("stopping: finishing polls and the message in flight")
        self.stopping.set()
        self._stopper = threading.Thread(target=self._shutdown, name="watcher-stop", daemon=True)
        self._stopper.start()

    def _shutdown(self):
        self.sender.stop()
        try:
            self.scheduler.shutdown(wait=True)
        except Exception as e:  # already stopped
            log.debug("shutdown: %s", e)

    def healthy(self) -> tuple[bool, str]:
        from watcher.health import heartbeat_age
        if not self.state_ok:
            return False, f"state cannot be written: {self.state_error}"
        age = heartbeat_age(self.state_dir)
        if age is None or age > 3 * HEARTBEAT_EVERY:
            return False, "heartbeat stale"
        return True, "ok"

    def run_jobs_only(self) -> int:
        """Run the scheduler with only the jobs already added (the demo's timeline)."""
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        return self._serve()

    def _serve(self) -> int:
        """Run the scheduler until stopped; then wait for work in flight and release everything."""
        if self.background_sender:
            self.sender.start()
        try:
            self.scheduler.start()
        finally:
            stopper = getattr(self, "_stopper", None)
            if stopper is not None:
                stopper.join()          # jobs in flight have finished when shutdown(wait=True) returns
            self.sender.stop()
            try:
                self.store.flush()
            except StoreError as e:
                log.error("%s", e)
            if self.httpd:
                self.httpd.shutdown()
            self.runner.close()
            log.info("daemon stopped")
        return 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=self.reload, args=("SIGHUP",),
                                                                     daemon=True).start())
        if self.http_address:
            from watcher.web import serve
            self.httpd = serve(self.http_address, self.store, self.metrics, self.healthy, token=self.http_token,
                               config=lambda: self.config)
        self.schedule_all()
        gc.freeze()   # start-up objects live forever: keep them out of every collection
        log.info("daemon started: %d sources", len([s for s in self.config.sources.values() if s.enabled]))
        return self._serve()


def run_daemon(args, load: Callable[[], Config], store: Store, state_dir: Path) -> int:
    import os
    config = load()
    check_channels(config, in_child=True)
    transport = None
    if getattr(args, "replay", None):
        from watcher.replay import ReplayTransport, Snapshot
        transport = ReplayTransport(Snapshot(args.replay))
    daemon = Daemon(config, store, state_dir, load=load, transport=transport, http=getattr(args, "http", None),
                    http_token=os.environ.get("WATCHER_HTTP_TOKEN") or None,
                    start_delay=getattr(args, "start_delay", 5.0))
    return daemon.run()

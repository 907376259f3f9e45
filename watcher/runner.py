"""The runner: the one place that decides what to poll and runs polls, used by `once`, `run`, `demo` and `record`.

It builds the fetcher, skips a source whose server asked to wait (Retry-After) unless forced, overlaps the network
half of many polls (one request at a time per site stays: that is the fetcher's politeness lock) while committing
them in configuration order, raises deadline reminders, and tells the sender when there is something to send.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Callable

from watcher.config import Config, Settings, Source
from watcher.events import Event, iso, write_events
from watcher.fetch import Fetcher
from watcher.pipeline import PollOutcome, Prepared, commit, poll_source, prepare
from watcher.store import Store, utcnow

log = logging.getLogger("watcher.runner")


def make_fetcher(settings: Settings, transport=None) -> Fetcher:
    """The only place a Fetcher is built."""
    return Fetcher(user_agent=settings.user_agent, max_retry_wait=settings.max_retry_wait,
                   host_delay=settings.host_delay, transport=transport)


class Runner:
    def __init__(self, config: Config, store: Store, *, transport=None, clock: Callable[[], datetime] | None = None,
                 metrics=None, on_events: Callable[[], None] | None = None, archive_dir=None):
        self.config = config
        self.archive_dir = archive_dir        # where `archive = true` sources keep their attachments
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
        results are committed one by one in the given order, so the same input always gives the same events.
        A large single-instance poll over several sites also spreads the sites over the machine's cores."""
        self.store.preload_states([s.id for s in sources])
        workers = max(1, workers or self.config.settings.workers)
        now = self.clock()
        reasons = [None if force else self.skip_reason(src, now) for src in sources]
        due = [(i, src) for i, src in enumerate(sources) if reasons[i] is None]
        lanes = _lanes_for(self, due)
        if lanes > 1:
            results = _ForkedPrepare(self, due, lanes, workers)
        else:
            results = _ThreadedPrepare(self, due, workers)
        outcomes: list[PollOutcome] = []
        try:
            for i, src in enumerate(sources):
                if reasons[i] is not None:
                    out = self._skipped(src, reasons[i] or "", now)
                else:
                    got = results.get(i)
                    if isinstance(got, BaseException):
                        log.error("poll of %s failed: %s: %s", src.id, got.__class__.__name__, got)
                        out = PollOutcome(src.id, "error", error=f"{got.__class__.__name__}: {got}")
                    else:
                        out = commit(self, got)
                    self._observe(out)
                outcomes.append(out)
                if on_outcome:
                    on_outcome(out)
        finally:
            results.close()
        return outcomes

    def _observe(self, out: PollOutcome) -> None:
        if self.metrics is not None:
            self.metrics.observe(out)
        if out.events and self.on_events is not None:
            self.on_events()

    def reminders(self, source_ids: list[str] | None = None) -> list[Event]:
        """Comment-deadline reminders, and what time does to standards: in_force_soon, then in force."""
        from watcher.reminders import raise_deadline_reminders, raise_in_force
        events = raise_deadline_reminders(self, source_ids) + raise_in_force(self)
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


# --- the first halves of many polls ---------------------------------------------------------------------------

FORK_MIN_SOURCES = 100     # below this, starting processes costs more than it saves


def _lanes_for(runner: Runner, due: list[tuple[int, Source]]) -> int:
    """How many processes to spread prepares over: one per core, at most one per site, only for a single-instance
    state (PostgreSQL holds a per-source lock on the polling connection), only for many sources, and only from a
    process that has no other threads yet (a fork copies just the calling thread)."""
    if not hasattr(os, "fork") or runner.store.dialect != "sqlite" or len(due) < FORK_MIN_SOURCES:
        return 1
    if threading.active_count() != 1 or os.environ.get("WATCHER_NO_FORK"):
        return 1
    hosts = len({src.host for _, src in due})
    return max(1, min(os.cpu_count() or 1, hosts, 4))


class _ThreadedPrepare:
    """Prepares on a thread pool, a bounded window ahead of the commits."""

    def __init__(self, runner: Runner, due: list[tuple[int, Source]], workers: int):
        self.runner = runner
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="watcher-poll")
        self.todo = iter(due)
        self.window = workers * 2
        self.pending: dict[int, Future] = {}
        self._fill()

    def _fill(self) -> None:
        while len(self.pending) < self.window:
            nxt = next(self.todo, None)
            if nxt is None:
                return
            i, src = nxt
            self.pending[i] = self.pool.submit(prepare, self.runner, src)

    def get(self, i: int):
        fut = self.pending.pop(i)
        try:
            return fut.result()
        except Exception as e:   # a bug in one poll must not stop the others
            return e
        finally:
            self._fill()

    def close(self) -> None:
        for f in self.pending.values():
            f.cancel()
        self.pool.shutdown(wait=True)


class _ForkedPrepare:
    """Prepares in child processes, each owning whole sites (so one request at a time per site still holds), each
    with its own thread pool and fetcher. Results come back pickled over pipes; the parent commits them in order.
    A child that dies leaves its sources to the parent, which prepares them itself."""

    def __init__(self, runner: Runner, due: list[tuple[int, Source]], lanes: int, workers: int):
        import selectors
        self.runner = runner
        self.sources = dict(due)
        self.results: dict[int, Any] = {}
        self.sel = selectors.DefaultSelector()
        self.children: list[int] = []
        by_host: dict[str, list[tuple[int, Source]]] = {}
        for i, src in due:
            by_host.setdefault(src.host, []).append((i, src))
        groups: list[list[tuple[int, Source]]] = [[] for _ in range(lanes)]
        for _, items in sorted(by_host.items(), key=lambda kv: -len(kv[1])):
            min(groups, key=len).extend(items)
        sys.stdout.flush()
        sys.stderr.flush()
        for group in groups:
            if not group:
                continue
            group.sort()
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:                                       # the child
                os.close(r)
                code = 0
                try:
                    _child_prepare(runner, group, w, workers)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            os.close(w)
            self.children.append(pid)
            self.sel.register(r, selectors.EVENT_READ, bytearray())

    def _pump(self) -> bool:
        """Read whatever has arrived; False when every child is done."""
        if not self.sel.get_map():
            return False
        for key, _ in self.sel.select():
            buf: bytearray = key.data
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                self.sel.unregister(key.fd)
                os.close(key.fd)
                continue
            buf += chunk
            while len(buf) >= 4:
                size = int.from_bytes(buf[:4], "big")
                if len(buf) < 4 + size:
                    break
                i, got = pickle.loads(bytes(buf[4:4 + size]))
                del buf[:4 + size]
                if isinstance(got, Prepared):
                    got.source = self.sources[i]
                self.results[i] = got
        return True

    def get(self, i: int):
        while i not in self.results:
            if not self._pump():
                break
        if i in self.results:
            return self.results.pop(i)
        try:                                                   # its child died: do it here
            return prepare(self.runner, self.sources[i])
        except Exception as e:
            return e

    def close(self) -> None:
        for key in list(self.sel.get_map().values()):
            self.sel.unregister(key.fd)
            os.close(key.fd)
        for pid in self.children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _child_prepare(runner: Runner, group: list[tuple[int, Source]], fd: int, workers: int) -> None:
    """In a forked child: fresh connections, then prepare each source and send the result to the parent."""
    runner.store.engine.dispose(close=False)       # the parent's pooled connections stay the parent's
    runner.fetcher = make_fetcher(runner.config.settings, runner.transport)
    log.debug("lane", extra={"fields": {"pid": os.getpid(), "sources": len(group),
                                        "sites": len({src.host for _, src in group})}})
    lock = threading.Lock()
    out = os.fdopen(fd, "wb")

    def one(item: tuple[int, Source]) -> None:
        i, src = item
        try:
            p = prepare(runner, src)
            p.source, p.lock = None, None
            got: Any = p
        except Exception as e:
            got = RuntimeError(f"{e.__class__.__name__}: {e}")
        try:
            blob = pickle.dumps((i, got), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            blob = pickle.dumps((i, RuntimeError(f"result could not be sent: {e}")))
        with lock:
            out.write(len(blob).to_bytes(4, "big") + blob)
            out.flush()

    with ThreadPoolExecutor(workers, thread_name_prefix="watcher-poll") as pool:
        list(pool.map(one, group))
    out.close()
    runner.fetcher.close()

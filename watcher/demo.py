"""`watcher demo`: the daemon against the bundled recorded timeline (t0..t4), offline, printing each notification
as it would be sent and ending with the per-standard timelines."""

from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent / "demo_data"


class SwitchableReplay(__import__("httpx").BaseTransport):
    """An httpx transport whose snapshot the demo advances; the daemon's fetcher keeps one transport."""

    def __init__(self):
        from watcher.replay import ReplayTransport
        self.inner: ReplayTransport | None = None

    def handle_request(self, request):
        return self.inner.handle_request(request)

    def close(self):
        pass


def run_demo(args) -> int:
    from watcher.config import Channel, Subscription, load_config
    from watcher.replay import ReplayTransport, Snapshot
    from watcher.schedule import Daemon
    from watcher.store import Store

    import logging
    if args.log_level == "info":      # the demo's own output is the point; poll lines would drown it
        logging.getLogger().setLevel(logging.WARNING)
    state = Path(args.state or os.environ.get("WATCHER_STATE_DIR") or "state") / "demo"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    config = load_config(DEMO_DIR / "sources.toml")
    # one console channel subscribed to everything: the outbox is drained exactly as in production
    console = Channel(id="console", url="json://localhost/demo")
    config = type(config)(path=config.path, sources=config.sources, channels={"console": console},
                          subscriptions=(Subscription(channels=("console",)),), settings=config.settings)
    store = Store(args.db or f"sqlite:///{state / 'watcher.db'}")
    out = sys.stdout
    clock_box = {"now": datetime.now().astimezone()}

    def console_sender(channel, title, body, fmt, notify_type="info"):
        out.write(f"\n  ┌─ notification → {channel.id}\n  │ {title}\n")
        for line in body.splitlines():
            out.write(f"  │ {line}\n")
        out.write("  └─\n")
        return True, ""

    transport = SwitchableReplay()
    daemon = Daemon(config, store, state, transport=transport, clock=lambda: clock_box["now"],
                    sender=console_sender, background_sender=False)
    snapshots = sorted(p.name for p in (DEMO_DIR / "replay").iterdir() if (p / "manifest.toml").exists())

    from datetime import timedelta, timezone

    from apscheduler.triggers.date import DateTrigger

    failed: list[BaseException] = []

    def cycle(i: int):
        try:
            run_cycle(i)
        except Exception as e:  # a demo that breaks must end, not wait for a next cycle forever
            failed.append(e)
            out.write(f"\nwatcher demo: snapshot {snapshots[i]} failed: {e.__class__.__name__}: {e}\n")
            daemon.stop()

    def run_cycle(i: int):
        name = snapshots[i]
        snap = Snapshot(DEMO_DIR / "replay" / name)
        transport.inner = ReplayTransport(snap)
        clock_box["now"] = datetime.fromisoformat(str(snap.observed_at).replace("Z", "+00:00"))
        out.write(f"\n=== {name} · {snap.observed_at} ===\n{snap.description}\n")

        def line(o) -> None:
            out.write(f"  {o.source:20} {o.status:9} entries={o.entries:<3} events={len(o.events)}"
                      f"{'  (' + o.error + ')' if o.error else ''}\n")

        daemon.runner.poll_all(list(daemon.config.sources.values()), force=True, on_outcome=line)
        reminders = daemon.runner.reminders()
        if reminders:
            out.write(f"  {len(reminders)} deadline reminder(s) due\n")
        daemon.sender.drain_now()
        store.flush()
        out.flush()
        if i + 1 < len(snapshots):   # the next snapshot only once this one is done: cycles never overlap
            daemon.scheduler.add_job(cycle, DateTrigger(datetime.now(timezone.utc) + timedelta(seconds=args.speed)),
                                     args=[i + 1], id=f"demo:{snapshots[i + 1]}")
        else:
            daemon.stop()

    daemon.scheduler.add_job(cycle, DateTrigger(datetime.now(timezone.utc) + timedelta(seconds=0.2)), args=[0],
                             id=f"demo:{snapshots[0]}")
    out.write("watcher demo: replaying the bundled TC260 / std.samr / CAC timeline through the daemon (offline)\n")
    daemon.run_jobs_only()
    if failed:
        store.close()
        return 1
    _print_timelines(store, out)
    from watcher.logs import mask
    db = f" --db {mask(args.db)}" if args.db else ""
    out.write(f"\nState of this demo: {state}. See it in a browser (open for comment, standards, events, calendar):\n"
              f"  watcher serve --state {state}{db} --config {DEMO_DIR / 'sources.toml'} --today {clock_box['now'].date()}"
              f"   # then http://127.0.0.1:8080/\n"
              f"Next: edit sources.toml and run `watcher run`.\n")
    store.close()
    return 0


def _print_timelines(store, out) -> None:
    from sqlalchemy import select
    from watcher.identify import stage_label
    from watcher.standards import standard_timeline
    from watcher.store import Standard
    out.write("\n=== standards and their timelines ===\n")
    with store.read() as s:
        for rec in s.execute(select(Standard).order_by(Standard.id)).all():
            timeline = standard_timeline(s, rec)
            moves = [t for t in timeline if t.stage]
            if len(moves) < 2 and rec.committee != "TC260":
                continue
            out.write(f"\n{rec.std_no or rec.plan_no}  {rec.title}  [{rec.committee or '-'}]\n")
            for t in timeline:
                what = stage_label(t.stage) if t.stage else "mentioned"
                out.write(f"    {t.at.date()}  {what:36} {t.source_id:20} {t.url}\n")

"""`watcher demo`: the daemon against the bundled recorded timeline (t0..t4), offline, printing each notification
as it would be sent and ending with the per-standard timelines and the watch list.

It runs `demo_data/demo.toml`: the sources of the public replay scenario (`demo_data/sources.toml`, whose events
tests/test_scenario.py checks) plus a watch list, whose std.samr lookups the snapshots answer too."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent / "demo_data"
DEMO_CONFIG = DEMO_DIR / "demo.toml"


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
    config = load_config(DEMO_CONFIG)
    # one console channel subscribed to everything: the outbox is drained exactly as in production (the rest of
    # the config, its watch list included, is kept as loaded)
    console = Channel(id="console", url="json://localhost/demo")
    config = dataclasses.replace(config, channels={"console": console},
                                 subscriptions=(Subscription(channels=("console",)),))
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
    _print_watch(store, config, out)
    from watcher.logs import mask
    db = f" --db {mask(args.db)}" if args.db else ""
    out.write(f"\nState of this demo: {state}. See it in a browser (open for comment, standards, events, calendar):\n"
              f"  watcher serve --state {state}{db} --config {DEMO_CONFIG} --today {clock_box['now'].date()}"
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
                out.write(f"    {t.date or t.at.date()}  {what:36} {t.source_id:20} {t.url}\n")


def _print_watch(store, config, out) -> None:
    """The watch list as `watcher watch` shows it: each item's current edition, stage, in-force date, replaced-by
    and English title."""
    from sqlalchemy import or_, select
    from watcher.identify import normalize_plan_no, normalize_std_no, stage_label
    from watcher.store import Standard
    if not config.watch_items:
        return
    out.write("\n=== watch list ===\n")
    with store.read() as s:
        for key, item in config.watch_items.items():
            plan = normalize_plan_no(key)
            q = select(Standard).where(Standard.plan_no == plan) if plan else \
                select(Standard).where(or_(Standard.family == key, Standard.std_no.like(key + "-%")))
            eds = s.execute(q).all()
            current = next((e for e in eds if e.stage in ("in_force", "under_revision")), None) or \
                max(eds, key=lambda e: (e.issue_date or "", e.id), default=None)
            if current is None:
                out.write(f"  {item:18} (not found)\n")
                continue
            edition = normalize_std_no(item)          # an item naming an edition: what became of it
            watched = next((e for e in eds if edition and e.std_no == edition), None)
            moved = f"  ({watched.std_no} {stage_label(watched.stage, 'en').lower()}" \
                    f"{', replaced by ' + ', '.join(watched.replaced_by) if watched.replaced_by else ''})" \
                if watched is not None and watched.id != current.id else ""
            line = f"  {item:18} {current.std_no or current.plan_no:18} {stage_label(current.stage, 'en'):16} " \
                   f"{'in force from ' + current.act_date if current.act_date else '':25}{moved}"
            out.write(line.rstrip() + "\n")
            out.write(f"  {'':18} {current.title}" + (f" / {current.title_en}" if current.title_en else "") + "\n")

"""Command line: check, once, events, status, standards, standard, record, deliver, notify-test, run, healthcheck,
demo, kinds. Operator mistakes exit 2 with one line naming the place; no tracebacks."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from watcher import __version__
from watcher.errors import ConfigError, StoreError, WatcherError

log = logging.getLogger("watcher")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


# --- helpers -------------------------------------------------------------------------------------------------

def _paths(args) -> tuple[Path, Path, str]:
    config = Path(args.config or os.environ.get("WATCHER_CONFIG") or "sources.toml")
    state = Path(args.state or os.environ.get("WATCHER_STATE_DIR") or "state")
    from watcher.store import default_db_url
    db = args.db or os.environ.get("WATCHER_DB") or default_db_url(state)
    return config, state, db


def _load(args):
    from watcher.config import load_config
    config_path, _, _ = _paths(args)
    return load_config(config_path)


def _store(args, *, must_exist: bool = False):
    """The state store; read-only commands refuse a state that does not exist (a mistyped --state must not
    create an empty database and show every source as new)."""
    from watcher.store import Store
    _, _, db = _paths(args)
    return Store(db, must_exist=must_exist)


def parse_when(value: str, what: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what}: expected an ISO date or timestamp, got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def _out(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


def make_runner(config, store, *, replay: str | None = None, now: str | None = None, archive_dir=None):
    """A Runner, answering from a replay snapshot (and at its clock) when asked."""
    from watcher.runner import Runner

    transport = None
    clock: Callable[[], datetime] | None = None
    if replay:
        from watcher.replay import ReplayTransport, Snapshot
        snap = Snapshot(replay)
        transport = ReplayTransport(snap)
        if snap.observed_at and not now:
            now = str(snap.observed_at)
    if now:
        fixed = parse_when(now, "--now")
        clock = lambda: fixed  # noqa: E731
    return Runner(config, store, transport=transport, clock=clock, archive_dir=archive_dir)


# --- commands ------------------------------------------------------------------------------------------------

def cmd_check(args) -> int:
    from watcher.config import check_channels
    config = _load(args)
    check_channels(config)
    n = len(config.sources)
    print(f"{config.path}: OK ({n} source{'s' if n != 1 else ''}, {len(config.channels)} channels, "
          f"{len(config.subscriptions)} subscriptions)")
    return EXIT_OK


def _select_sources(config, ids: list[str]):
    if not ids:
        return [s for s in config.sources.values() if s.enabled]
    unknown = [i for i in ids if i not in config.sources]
    if unknown:
        raise ConfigError(f"unknown source id(s): {', '.join(unknown)} (known: {', '.join(config.sources)})")
    return [config.sources[i] for i in ids]


def cmd_once(args) -> int:
    import gc
    config = _load(args)
    gc.freeze()         # the config lives until the end: keep its objects out of every collection
    sources = _select_sources(config, args.sources)
    store = _store(args)
    runner = make_runner(config, store, replay=args.replay, now=args.now, archive_dir=_paths(args)[1] / "archive")
    code = EXIT_OK

    def report(out) -> None:
        if out.status == "skipped":
            print(f"{out.source}: skipped: {out.error} (--force polls it anyway)", file=sys.stderr)
        elif not args.json:
            extra = f" ({out.error})" if out.error else ""
            print(f"{out.source}: {out.status}, {out.entries} entries, {len(out.events)} events{extra}",
                  file=sys.stderr)

    try:
        outcomes = runner.poll_all(sources, force=args.force, on_outcome=report)
        events = [ev for o in outcomes for ev in o.events]
        events += runner.reminders([s.id for s in sources])
        for ev in events:
            if args.json:
                _out(ev.to_json())
            else:
                print(_human(ev))
        if not args.no_deliver and config.channels:
            from watcher.notify import drain_outbox
            res = drain_outbox(store, config, now=runner.clock)
            if res.failed:
                print(f"watcher: {res.failed} deliveries failed for good (see `watcher status`)", file=sys.stderr)
                code = EXIT_FAIL
    finally:
        runner.close()
        store.close()
    return code


def _human(ev: dict[str, Any]) -> str:
    from watcher.render import one_line
    return one_line(ev)


def cmd_events(args) -> int:
    from sqlalchemy import select
    from watcher.store import EventRow
    from watcher.events import Event
    store = _store(args, must_exist=True)
    with store.read() as s:
        q = select(EventRow.id, EventRow.payload).order_by(EventRow.detected_at.desc(), EventRow.id.desc())
        if args.source:
            q = q.where(EventRow.source_id == args.source)
        if args.since:
            q = q.where(EventRow.detected_at >= parse_when(args.since, "--since"))
        if args.kind:
            q = q.where(EventRow.kind == args.kind)
        q = q.limit(args.limit)
        events = [Event.from_stored(row.id, row.payload) for row in s.execute(q)]
    if args.json:
        for ev in events:
            print(json.dumps(ev.to_json(), ensure_ascii=False))
    else:
        # when (Beijing), #id, kind, source, title [facts], link; columns aligned by display width
        from watcher.views_cli import event_lines
        for line in event_lines(events):
            print(line)
    return EXIT_OK


def cmd_status(args) -> int:
    from sqlalchemy import func, select
    from watcher.queries import source_health
    from watcher.store import Delivery, SourceState
    config = _load(args)
    store = _store(args, must_exist=True)
    rows = []
    with store.read() as s:
        states = {st.source_id: st for st in s.execute(select(SourceState))}
        for sid, src in config.sources.items():
            st = states.get(sid)
            health = source_health(st)
            rows.append({
                "source": sid, "name": src.name, "enabled": src.enabled, "health": health,
                "last_poll": st.last_poll_at.isoformat() if st and st.last_poll_at else None,
                "last_success": st.last_success_at.isoformat() if st and st.last_success_at else None,
                "last_status": st.last_status if st else None, "consecutive_failures": st.consecutive_failures if st else 0,
                "entries": st.entry_count if st else 0, "last_error": st.last_error if st else None,
                "retry_not_before": st.not_before.isoformat() if st and st.not_before else None,
            })
        deliveries = {f"{ch}:{status}": n for ch, status, n in s.execute(
            select(Delivery.channel, Delivery.status, func.count()).group_by(Delivery.channel, Delivery.status))}
        failed = [{"id": d.id, "event_id": d.event_id, "channel": d.channel, "attempts": d.attempts,
                   "last_error": d.last_error} for d in s.execute(select(Delivery).where(Delivery.status == "failed")
                                                                 .order_by(Delivery.id).limit(20))]
    if args.json:
        _out({"sources": rows, "deliveries": deliveries, "failed_deliveries": failed})
        return EXIT_OK
    print(f"{'source':24} {'health':9} {'entries':>7} {'fails':>5}  last success          last error")
    for r in rows:
        print(f"{r['source']:24} {r['health']:9} {r['entries']:>7} {r['consecutive_failures']:>5}  "
              f"{(r['last_success'] or '-')[:19]:21} {(r['last_error'] or '')[:60]}")
    if deliveries:
        print("deliveries: " + ", ".join(f"{k}={v}" for k, v in sorted(deliveries.items())))
    for f in failed:
        print(f"failed delivery #{f['id']} event {f['event_id']} -> {f['channel']} after {f['attempts']} attempts: "
              f"{(f['last_error'] or '')[:100]}")
    return EXIT_OK


def cmd_standards(args) -> int:
    from sqlalchemy import select
    from watcher.identify import stage_label
    from watcher.store import Standard
    store = _store(args, must_exist=True)
    with store.read() as s:
        q = select(Standard).order_by(Standard.updated_at.desc(), Standard.id.desc())
        if args.stage:
            q = q.where(Standard.stage == args.stage)
        if args.committee:
            q = q.where(Standard.committee == args.committee)
        for r in s.execute(q):
            d = {"id": r.id, "plan_no": r.plan_no, "std_no": r.std_no, "title": r.title, "title_en": r.title_en,
                 "stage": r.stage, "stage_since": r.stage_since.isoformat() if r.stage_since else None,
                 "committee": r.committee, "issue_date": r.issue_date, "act_date": r.act_date,
                 "replaces": r.replaces or [], "replaced_by": r.replaced_by or []}
            if args.json:
                _out(d)
            else:
                en = f" / {r.title_en}" if r.title_en else ""
                print(f"#{r.id:<4} {r.std_no or r.plan_no or '-':22} {_pad(stage_label(r.stage), 36)} {r.title}{en}")
    return EXIT_OK


def _pad(text: str, width: int) -> str:
    """Pad to a display width (a CJK character takes two columns)."""
    from watcher.views_cli import pad
    return pad(text, width)


def _editions(conn, rec) -> list:
    """Every edition of a standard's family (and its plans), oldest first."""
    from sqlalchemy import or_, select
    from watcher.store import Standard
    if not rec.family:
        return [rec]
    rows = conn.execute(select(Standard).where(or_(Standard.family == rec.family, Standard.id == rec.id))).all()
    by_no = {r.std_no for r in rows if r.std_no}
    plans = conn.execute(select(Standard).where(Standard.std_no.is_(None), Standard.plan_no.is_not(None))).all()
    rows += [p for p in plans if set(p.replaces or []) & by_no]
    return sorted({r.id: r for r in rows}.values(), key=lambda r: (r.issue_date or "9999", r.std_no or "", r.id))


def cmd_standard(args) -> int:
    from watcher.identify import stage_label
    from watcher.standards import lookup, standard_timeline
    store = _store(args, must_exist=True)
    with store.read() as s:
        rec = lookup(s, args.ident)
        if rec is None:
            print(f"no standard matches {args.ident!r}", file=sys.stderr)
            return EXIT_FAIL
        editions = _editions(s, rec)
        timelines = {e.id: standard_timeline(s, e) for e in editions}
        if args.json:
            def one(r):
                return {"id": r.id, "plan_no": r.plan_no, "std_no": r.std_no, "family": r.family, "title": r.title,
                        "title_en": r.title_en, "stage": r.stage, "committee": r.committee,
                        "issue_date": r.issue_date, "act_date": r.act_date, "replaces": r.replaces or [],
                        "replaced_by": r.replaced_by or [],
                        "timeline": [{"stage": t.stage, "previous_stage": t.previous_stage, "at": t.at.isoformat(),
                                      "date": t.date, "source": t.source_id, "url": t.url, "title": t.title}
                                     for t in timelines[r.id]]}
            _out({**one(rec), "editions": [one(e) for e in editions if e.id != rec.id]})
            return EXIT_OK
        print(f"{rec.title}" + (f"\n{rec.title_en}" if rec.title_en else ""))
        for e in editions:
            mark = "*" if e.id == rec.id else " "
            dates = "  ".join(x for x in (f"issued {e.issue_date}" if e.issue_date else "",
                                          f"in force {e.act_date}" if e.act_date else "") if x)
            rel = "  ".join(x for x in (f"replaces {', '.join(e.replaces)}" if e.replaces else "",
                                        f"replaced by {', '.join(e.replaced_by)}" if e.replaced_by else "") if x)
            print(f"{mark} {e.std_no or e.plan_no or '-':22} {_pad(stage_label(e.stage), 36)} {dates}  {rel}".rstrip())
            for t in timelines[e.id]:
                what = stage_label(t.stage) if t.stage else "mentioned"
                print(f"    {t.date or t.at.date()}  {_pad(what, 36)} {t.source_id:20} {t.url}")
    return EXIT_OK


def cmd_watch(args) -> int:
    """The watch list: each standard's current edition, stage, in-force date, replaced-by, English title."""
    from datetime import timedelta
    from sqlalchemy import or_, select
    from watcher.identify import normalize_plan_no, stage_label
    from watcher.store import SourceState, Standard, StandardEvidence, utcnow
    config = _load(args)
    if not config.watch_items:
        print("the watch list is empty: add [watch] standards = [\"GB/T 22080-2016\", …] to sources.toml",
              file=sys.stderr)
        return EXIT_OK
    store = _store(args, must_exist=True)
    recent = utcnow() - timedelta(days=30)
    rows = []
    with store.read() as s:
        for key, item in config.watch_items.items():
            plan = normalize_plan_no(key)
            q = select(Standard).where(Standard.plan_no == plan) if plan else \
                select(Standard).where(or_(Standard.family == key, Standard.std_no.like(key + "-%")))
            eds = s.execute(q).all()
            current = next((e for e in eds if e.stage in ("in_force", "under_revision")), None) or \
                max(eds, key=lambda e: (e.issue_date or "", e.id), default=None)
            st = s.execute(select(SourceState.last_success_at).where(SourceState.source_id == f"watch:{key}")).first()
            changed = bool(eds) and s.scalar(select(StandardEvidence.id).where(
                StandardEvidence.standard_id.in_([e.id for e in eds]), StandardEvidence.stage.is_not(None),
                StandardEvidence.at >= recent).limit(1)) is not None
            rows.append({"item": item, "key": key, "edition": current.std_no or current.plan_no if current else None,
                         "title": current.title if current else None,
                         "title_en": current.title_en if current else None,
                         "stage": current.stage if current else None,
                         "act_date": current.act_date if current else None,
                         "replaced_by": (current.replaced_by or []) if current else [],
                         "editions": [e.std_no or e.plan_no for e in eds],
                         "last_checked": st.last_success_at.isoformat() if st and st.last_success_at else None,
                         "changed_30d": changed})
    store.close()
    if args.json:
        for r in rows:
            _out(r)
        return EXIT_OK
    print(f"  {'watch':20} {'edition':20} {_pad('stage', 30)} {'in force':10}  {'replaced by':18} last checked")
    for r in rows:
        mark = "!" if r["changed_30d"] else " "
        print(f"{mark} {r['item']:20} {r['edition'] or '(not found yet)':20} {_pad(stage_label(r['stage']) or '-', 30)} "
              f"{r['act_date'] or '-':10}  {', '.join(r['replaced_by']) or '-':18} {(r['last_checked'] or 'never')[:16]}")
        if r["title"]:
            print(f"  {'':20} {r['title']}" + (f" / {r['title_en']}" if r["title_en"] else ""))
    print("! = a stage changed in the last 30 days", file=sys.stderr)
    return EXIT_OK


def cmd_archive(args) -> int:
    """What `archive = true` sources have kept: one line per attachment."""
    from sqlalchemy import select
    from watcher.store import ArchivedFile
    _, state, _ = _paths(args)
    store = _store(args, must_exist=True)
    q = select(ArchivedFile).order_by(ArchivedFile.id)
    if args.source:
        q = q.where(ArchivedFile.source_id == args.source)
    with store.read() as s:
        rows = s.execute(q).all()
    store.close()
    for r in rows:
        path = str(state / "archive" / r.path) if r.path else None
        if args.json:
            _out({"source": r.source_id, "entry_key": r.entry_key, "name": r.name, "url": r.url, "status": r.status,
                  "sha256": r.sha256, "size": r.size, "path": path, "attempts": r.attempts,
                  "fetched_at": r.fetched_at.isoformat() if r.fetched_at else None, "last_error": r.last_error})
        else:
            size = (f"{r.size / 1024:.0f} KB" if r.size >= 10240 else f"{r.size} B") if r.size else "-"
            print(f"{r.status:7} {size:>9}  {r.source_id:18} {r.name or r.url}\n        "
                  + (f"{path}  sha256 {r.sha256}" if path else f"{r.url}  ({r.last_error or 'not fetched yet'})"))
    if not rows and not args.json:
        print("nothing archived (set archive = true on a source)", file=sys.stderr)
    return EXIT_OK


def cmd_record(args) -> int:
    from watcher.record import record_sources
    from watcher.runner import Runner
    config = _load(args)
    sources = _select_sources(config, args.sources)
    runner = Runner(config, None)
    try:
        n = record_sources(runner, sources, Path(args.out))
    finally:
        runner.close()
    print(f"recorded {n} responses into {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_kinds(args) -> int:
    from watcher.extract import EXTRACTORS
    for kind, ex in sorted(EXTRACTORS.items()):
        doc = " ".join((type(ex).__doc__ or "").split())
        print(f"{kind}\n    {doc}\n")
    return EXIT_OK


def cmd_deliver(args) -> int:
    from watcher.notify import drain_outbox
    config = _load(args)
    store = _store(args, must_exist=True)
    try:
        res = drain_outbox(store, config, ignore_backoff=args.now, retry_failed=args.retry_failed, manual=args.now)
    finally:
        store.close()
    print(f"sent {res.sent}, failed {res.failed}, retrying later {res.deferred}", file=sys.stderr)
    return EXIT_OK if not res.failed and not res.deferred else EXIT_FAIL


def cmd_notify_test(args) -> int:
    from watcher.notify import send_test
    config = _load(args)
    if args.channel not in config.channels:
        raise ConfigError(f"unknown channel {args.channel!r} (defined: {', '.join(config.channels) or 'none'})")
    from watcher.channels import privacy_url
    channel = config.channels[args.channel]
    ok, detail = send_test(config, channel)
    print(f"{args.channel}: {'sent' if ok else 'FAILED'}{': ' + detail if detail else ''} "
          f"[{privacy_url(channel.url)}]")
    return EXIT_OK if ok else EXIT_FAIL


def cmd_run(args) -> int:
    from watcher.schedule import run_daemon
    _, state, _ = _paths(args)
    return run_daemon(args, load=lambda: _load(args), store=_store(args), state_dir=state)


def cmd_healthcheck(args) -> int:
    from watcher.health import healthcheck
    _, state, db = _paths(args)
    ok, why = healthcheck(state, db, max_age=args.max_age)
    print(why, file=sys.stderr if not ok else sys.stdout)
    return EXIT_OK if ok else EXIT_FAIL


def cmd_demo(args) -> int:
    from watcher.demo import run_demo
    return run_demo(args)


# --- parser --------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="sources.toml (default $WATCHER_CONFIG or ./sources.toml)")
    common.add_argument("--state", default=argparse.SUPPRESS, help="state directory (default $WATCHER_STATE_DIR or ./state)")
    common.add_argument("--db", default=argparse.SUPPRESS, help="SQLAlchemy URL (default SQLite in the state dir)")
    common.add_argument("--log-level", default=argparse.SUPPRESS, choices=["debug", "info", "warning", "error"])
    common.add_argument("--log-format", default=argparse.SUPPRESS, choices=["kv", "json"])

    p = argparse.ArgumentParser(prog="watcher", parents=[common],
                                description="Watch TC260, SAC and CAC announcement pages and report what changed.")
    p.add_argument("--version", action="version", version=f"watcher {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help_):
        sp = sub.add_parser(name, parents=[common], help=help_, description=help_)
        sp.set_defaults(func=func)
        return sp

    add("check", cmd_check, "validate sources.toml (exit 0, or 2 with the error lines)")
    sp = add("once", cmd_once, "poll the named (default: all enabled) sources once, then drain the outbox")
    sp.add_argument("sources", nargs="*", metavar="SOURCE_ID")
    sp.add_argument("--replay", metavar="DIR", help="answer requests from a recorded snapshot instead of the network")
    sp.add_argument("--json", action="store_true", help="stdout: one JSON object per event, nothing else")
    sp.add_argument("--now", metavar="ISO", help="pretend the clock says this (default with --replay: observed_at)")
    sp.add_argument("--no-deliver", action="store_true", help="only record; do not send notifications")
    sp.add_argument("--force", action="store_true",
                    help="poll even a source whose server asked to wait (a pending Retry-After)")
    sp = add("events", cmd_events, "stored events, newest first")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--source", metavar="ID")
    sp.add_argument("--kind")
    sp.add_argument("--since", metavar="ISO_DATE")
    sp.add_argument("--limit", type=int, default=200)
    sp = add("status", cmd_status, "per source: last poll, last success, failures, entries, health; failed deliveries")
    sp.add_argument("--json", action="store_true")
    sp = add("standards", cmd_standards, "standards known across sources, with their current stage")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--stage")
    sp.add_argument("--committee", metavar="TC")
    sp = add("standard", cmd_standard, "one standard's timeline (by id, plan number, standard number or title)")
    sp.add_argument("ident", metavar="ID_OR_NUMBER")
    sp.add_argument("--json", action="store_true")
    sp = add("watch", cmd_watch, "the watch list: each standard's current edition, stage, in-force date, replaced-by")
    sp.add_argument("--json", action="store_true", help="one JSON object per watched standard")
    sp = add("archive", cmd_archive, "attachments kept by sources with archive = true")
    sp.add_argument("--json", action="store_true", help="one JSON object per file")
    sp.add_argument("--source", metavar="ID", help="only this source")
    sp = add("record", cmd_record, "save live responses of sources (and their detail pages) as a replay snapshot")
    sp.add_argument("sources", nargs="*", metavar="SOURCE_ID")
    sp.add_argument("--out", required=True, metavar="DIR")
    add("kinds", cmd_kinds, "list the extractor kinds and what they read")
    sp = add("deliver", cmd_deliver, "drain the notification outbox once")
    sp.add_argument("--now", action="store_true", help="ignore backoff waits")
    sp.add_argument("--retry-failed", action="store_true", help="also resend deliveries that gave up")
    sp = add("notify-test", cmd_notify_test, "send a sample message to a channel")
    sp.add_argument("channel", metavar="CHANNEL")
    sp = add("run", cmd_run, "run the daemon (scheduler, outbox sender, reminders)")
    sp.add_argument("--http", metavar="HOST:PORT", help="serve /healthz, /metrics and /events.atom")
    sp.add_argument("--replay", metavar="DIR", help="answer requests from a recorded snapshot (testing)")
    sp.add_argument("--start-delay", type=float, default=5.0, metavar="SECONDS",
                    help="spread the first polls over this many seconds (default 5)")
    sp = add("healthcheck", cmd_healthcheck, "exit 0 when the daemon's heartbeat is fresh and the state opens")
    sp.add_argument("--max-age", type=float, default=180.0, help="seconds a heartbeat stays fresh")
    from watcher.views_cli import register
    register(add)
    sp = add("demo", cmd_demo, "replay the bundled recorded timeline through the daemon, offline")
    sp.add_argument("--speed", type=float, default=2.0, help="seconds per snapshot")
    return p


def main(argv: list[str] | None = None) -> int:
    from watcher.runtime import tune_allocator
    tune_allocator()
    import signal
    if hasattr(signal, "SIGXFSZ"):      # a file size limit makes writes fail (EFBIG) instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    from watcher.sanitize import SafeStream
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeStream(out), SafeStream(err)   # no page text can steer the terminal
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err
        import gc
        gc.freeze()     # nothing is left to collect: spare the interpreter's final full collection


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("config", None), ("state", None), ("db", None), ("log_level", "info"), ("log_format", "kv")):
        if not hasattr(args, name):
            setattr(args, name, default)
    from watcher.logs import setup_logging
    setup_logging(args.log_level, args.log_format)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except (ConfigError, StoreError) as e:
        from watcher.logs import mask
        print(f"watcher: error: {mask(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except WatcherError as e:
        from watcher.logs import mask
        print(f"watcher: error: {mask(str(e))}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK

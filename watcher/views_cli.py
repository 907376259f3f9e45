"""Terminal views: `watcher open`, `watcher entries`, `watcher try`, `watcher serve` (registered by cli.build_parser),
and the column layout `watcher events` shares.

Columns are aligned by display width (a CJK character takes two cells), and everything printed passes through
`sanitize.terminal_safe`, so no page text can steer the terminal.
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from typing import Any, Iterable

from watcher.sanitize import terminal_safe

ELLIPSIS = "…"


# --- display width -----------------------------------------------------------------------------------------------

def cell_width(s: str) -> int:
    """Terminal cells `s` takes: wide and full-width characters two, combining and format characters none."""
    n = 0
    for ch in s:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        n += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return n


def truncate(s: str, width: int) -> str:
    """`s` cut to at most `width` cells, with `…` where it was cut."""
    if cell_width(s) <= width:
        return s
    out, used = [], 0
    for ch in s:
        w = cell_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS


def pad(s: str, width: int, align: str = "<") -> str:
    gap = max(0, width - cell_width(s))
    return (" " * gap + s) if align == ">" else (s + " " * gap)


def columns(rows: Iterable[list[str]], *, align: str = "", limits: dict[int, int] | None = None, sep: str = "  ",
            pad_last: bool = False) -> list[str]:
    """Lines of aligned columns. `align` has one character per column ('<' or '>'); `limits` caps a column's width
    (longer cells are cut with …). The last column is padded only with `pad_last` (something follows it)."""
    rows = [[terminal_safe(str(c if c is not None else "")) for c in r] for r in rows]
    limits = limits or {}
    rows = [[truncate(c, limits[i]) if limits.get(i) else c for i, c in enumerate(r)] for r in rows]
    if not rows:
        return []
    n = max(len(r) for r in rows)
    widths = [max((cell_width(r[i]) for r in rows if i < len(r)), default=0) for i in range(n)]
    out = []
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            last = i == len(r) - 1
            a = align[i] if i < len(align) else "<"
            cells.append(c if last and a == "<" and not pad_last else pad(c, widths[i], a))
        line = sep.join(cells)
        out.append(line if pad_last else line.rstrip())
    return out


def _print(lines: Iterable[str]) -> None:
    for line in lines:
        sys.stdout.write(terminal_safe(line) + "\n")


def _json_line(obj: Any) -> None:
    sys.stdout.write(terminal_safe(json.dumps(obj, ensure_ascii=False, default=str)) + "\n")


def days_text(n: int | None) -> str:
    if n is None:
        return ""
    if n < 0:
        return "closed"
    if n == 0:
        return "last day"
    return f"{n} day{'s' if n != 1 else ''}"


def numbers(d: dict[str, Any]) -> str:
    return " ".join(x for x in (d.get("std_no"), d.get("plan_no")) if x)


# --- watcher events: one line per event --------------------------------------------------------------------------

def event_when(ev) -> str:
    """'2026-03-20 10:00+08' (Beijing time) from an event's detected_at."""
    from datetime import datetime

    from watcher.reminders import CHINA
    at = ev.get("detected_at")
    if not at:
        return "-"
    return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(CHINA).strftime("%Y-%m-%d %H:%M+08")


def event_rows(events: list) -> list[list[str]]:
    """Rows for `watcher events`: when (Beijing), #id, kind, source, title with its facts, link (secrets masked)."""
    from watcher.logs import mask
    from watcher.render import _short
    rows = []
    for ev in events:
        facts = [f"{k}={v}" for k, v in (("plan", ev.get("plan_no")), ("std", ev.get("std_no")),
                                          ("deadline", ev.get("deadline"))) if v]
        if ev.get("kind") == "stage_changed":
            facts.append(f"{ev.get('previous_stage') or '-'}->{ev.get('stage')}")
        for f, ch in (ev.get("changes") or {}).items():
            facts.append(f"{f}: {_short(ch.get('old'), 'en')} -> {_short(ch.get('new'), 'en')}")
        if ev.get("reason"):
            facts.append(str(ev.get("reason")))
        text = ev.get("title") or ev.get("source_name") or ev.get("source") or ""
        if facts:
            text += " [" + "; ".join(facts) + "]"
        rows.append([event_when(ev), f"#{ev.get('id')}", ev.get("kind") or "", ev.get("source") or "", text,
                     mask(ev.get("url") or "")])
    return rows


def event_lines(events: list) -> list[str]:
    """`watcher events` lines; the id, kind and source columns are aligned, the link comes last."""
    rows = event_rows(events)
    head = columns([r[:4] for r in rows], align="<><<", pad_last=True)
    return [f"{h}  {r[4]}" + (f"  {r[5]}" if r[5] else "") for h, r in zip(head, rows)]


# --- commands ----------------------------------------------------------------------------------------------------

def _load_optional(args):
    """The config when there is one: read views show source names and the watch list from it, but work over a
    state alone (an explicit --config that does not exist is still an error)."""
    from watcher.cli import _load, _paths
    path, _, _ = _paths(args)
    if not path.exists() and not args.config and not os.environ.get("WATCHER_CONFIG"):
        return None
    return _load(args)


def cmd_open(args) -> int:
    from watcher import queries
    from watcher.cli import EXIT_OK, _store
    config = _load_optional(args)
    store = _store(args, must_exist=True)
    on = queries.today(args.today)
    try:
        with store.read() as conn:
            data = queries.open_for_comment(conn, config, on, source=args.source, committee=args.committee,
                                            q=args.search)
    finally:
        store.dispose()
    windows = data["open"] + (data["recently_closed"] if args.closed else [])
    if args.json:
        for w in windows:
            _json_line(w)
        return EXIT_OK
    if not windows:
        print(f"nothing open for comment on {on.isoformat()} (Beijing)", file=sys.stderr)
        return EXIT_OK
    rows = [["deadline", "left", "source", "title", "link"]]
    rows += [[w["deadline"], days_text(w["days_left"]), w["source"], w["title"], w["url"]] for w in windows]
    _print(columns(rows, align="<><<<", limits={3: args.title_width} if args.title_width else None))
    print(f"{len(data['open'])} open for comment on {on.isoformat()} (Beijing), soonest deadline first",
          file=sys.stderr)
    return EXIT_OK


def cmd_entries(args) -> int:
    from watcher import queries
    from watcher.cli import EXIT_FAIL, EXIT_OK, _store
    config = _load_optional(args)
    store = _store(args, must_exist=True)
    on = queries.today()
    try:
        with store.read() as conn:
            known = {r["source"] for r in queries.list_sources(conn, config)}
            if args.source not in known:
                print(f"watcher: no source {args.source!r} (known: {', '.join(sorted(known)) or 'none'})",
                      file=sys.stderr)
                return EXIT_FAIL
            rows = queries.source_entries(conn, config, args.source, on, limit=args.limit)
    finally:
        store.dispose()
    if args.json:
        for r in rows:
            _json_line(r)
        return EXIT_OK
    _print(entry_table(rows, args.title_width))
    print(f"{len(rows)} entries stored for {args.source}", file=sys.stderr)
    return EXIT_OK


def entry_table(rows: list[dict[str, Any]], title_width: int | None) -> list[str]:
    table = [["published", "deadline", "number", "stage", "title", "link"]]
    for r in rows:
        dl = r.get("deadline") or ""
        if dl and r.get("closed"):
            dl += " (closed)"
        table.append([r.get("published") or "", dl, numbers(r), r.get("stage") or "", r.get("title") or "",
                      r.get("url") or ""])
    return columns(table, limits={4: title_width} if title_width else None)


def cmd_try(args) -> int:
    """Fetch and extract one source once, print what it yields; store nothing (developing selectors)."""
    from watcher.cli import EXIT_FAIL, EXIT_OK, _load, make_runner
    from watcher.errors import ConfigError, FetchError, ParseError
    from watcher.extract import get as get_extractor
    from watcher.identify import enrich
    from watcher.logs import mask
    from watcher.pipeline import DETAIL_FIELDS, extract_entries, fetch_detail, fetch_list, wants_detail
    config = _load(args)
    source = config.sources.get(args.source)
    if source is None:
        raise ConfigError(f"unknown source id {args.source!r} (known: {', '.join(config.sources)})")
    runner = make_runner(config, None, replay=args.replay)
    try:
        try:
            fr = fetch_list(runner, source)
            entries = extract_entries(source, fr)
        except (FetchError, ParseError) as e:
            print(f"watcher: {source.id}: {mask(str(e))}", file=sys.stderr)
            return EXIT_FAIL
        extractor = get_extractor(source.kind)
        problems = []
        for e in entries:
            if args.details and wants_detail(extractor, source, e):
                detail, why = fetch_detail(runner, source, extractor, e)
                if why:
                    problems.append(why)
                for k in DETAIL_FIELDS:
                    if detail and detail.get(k) and not getattr(e, k):
                        setattr(e, k, detail[k])
            enrich(e, source)
    finally:
        runner.close()
    from watcher import queries
    on = queries.today(runner.clock() if args.replay else None)   # a recording is read at its own date
    rows = []
    for e in entries:
        d = {k: v for k, v in e.as_dict().items() if v not in (None, "", [], {})}
        if e.deadline:
            d["days_left"] = queries.days_left(e.deadline, on)
            d["closed"] = d["days_left"] is not None and d["days_left"] < 0
        rows.append(d)
    if args.json:
        for d in rows:
            _json_line(d)
    else:
        _print(entry_table(rows, args.title_width))
    for p in problems:
        print(f"watcher: {mask(p)}", file=sys.stderr)
    print(f"{source.id}: HTTP {fr.status}, {len(rows)} entries ({source.kind}); nothing was stored", file=sys.stderr)
    return EXIT_OK


def cmd_serve(args) -> int:
    """The web view over a state, without polling: the daemon's --http listener."""
    import signal
    import threading

    from watcher.cli import EXIT_OK, _store
    from watcher.web import serve
    config = _load_optional(args)
    store = _store(args, must_exist=True)

    def healthy() -> tuple[bool, str]:
        try:
            store.check()
        except Exception as e:  # any driver error: the state does not open
            from watcher.logs import mask
            return False, mask(f"state does not open: {e.__class__.__name__}")
        return True, "ok (serve: read-only, no polling)"

    if args.today:      # the pages read "today" through queries.today()
        os.environ["WATCHER_TODAY"] = args.today.isoformat()
    stop = threading.Event()
    httpd = serve(args.http, store, None, healthy, token=os.environ.get("WATCHER_HTTP_TOKEN") or None, config=config)
    host, port = httpd.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"watcher: serving http://{shown}:{port}/ (the web view of {store.url.split('///')[-1]}; Ctrl-C stops)",
          file=sys.stderr, flush=True)
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        httpd.shutdown()
        httpd.server_close()
        store.dispose()
    return EXIT_OK


def _date(value: str):
    from datetime import date
    try:
        return date.fromisoformat(value)
    except ValueError:
        import argparse
        raise argparse.ArgumentTypeError(f"expected a date like 2026-03-20, got {value!r}") from None


def register(add) -> None:
    """Add this module's subcommands; `add(name, func, help)` returns the subparser."""
    sp = add("open", cmd_open, "comment windows open now, soonest deadline first: deadline, days left, title, link")
    sp.add_argument("--json", action="store_true", help="one JSON object per window, nothing else on stdout")
    sp.add_argument("--source", metavar="ID", help="only this source")
    sp.add_argument("--committee", metavar="TC", help="only entries attributed to this committee (e.g. TC260)")
    sp.add_argument("--search", metavar="TEXT",
                    help="words of the title (Chinese or English) or a number in any spelling")
    sp.add_argument("--closed", action="store_true", help="also list windows closed in the last 30 days")
    sp.add_argument("--today", metavar="DATE", type=_date,
                    help="count days left from this date (Beijing) instead of today")
    sp.add_argument("--title-width", type=int, default=60, metavar="CELLS",
                    help="cut titles to this many terminal cells (default 60; 0 = never cut)")
    sp = add("entries", cmd_entries, "what is stored for one source, newest poll first")
    sp.add_argument("source", metavar="SOURCE", help="source id (see `watcher status`)")
    sp.add_argument("--json", action="store_true", help="one JSON object per entry, nothing else on stdout")
    sp.add_argument("--limit", type=int, default=None, metavar="N", help="at most N entries")
    sp.add_argument("--title-width", type=int, default=60, metavar="CELLS",
                    help="cut titles to this many terminal cells (default 60; 0 = never cut)")
    sp = add("try", cmd_try, "fetch and extract one source once and print its entries; stores nothing "
                             "(for developing selectors)")
    sp.add_argument("source", metavar="SOURCE", help="source id in sources.toml (disabled ones too)")
    sp.add_argument("--replay", metavar="DIR", help="answer requests from a recorded snapshot instead of the network")
    sp.add_argument("--details", action="store_true",
                    help="also fetch the detail pages the pipeline would read (deadline, attachments, plan number)")
    sp.add_argument("--json", action="store_true", help="one JSON object per entry, nothing else on stdout")
    sp.add_argument("--title-width", type=int, default=60, metavar="CELLS",
                    help="cut titles to this many terminal cells (default 60; 0 = never cut)")
    sp = add("serve", cmd_serve, "serve the web view (pages, calendar, JSON API) of a state, without polling")
    sp.add_argument("--http", metavar="HOST:PORT", default="127.0.0.1:8080",
                    help="address to listen on (default 127.0.0.1:8080; any non-loopback address needs "
                         "WATCHER_HTTP_TOKEN)")
    sp.add_argument("--today", metavar="DATE", type=_date,
                    help="count days left from this date (Beijing) instead of today: view a demo's or an old state")

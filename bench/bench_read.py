"""Read commands on a big state, as whole processes: status, events, events --json, standards.

    python bench/bench_read.py [--entries 1000000] [--events 100000] [--standards 5000] [--reps 5] [--watcher "CMD"]

The state is built once through watcher's own store (watcher.store.Store; bulk INSERTs into the entries, events,
deliveries, standards, standard_evidence and source_state tables) by a child process, and cached under
/tmp/bench-read/ keyed by the sizes and by a digest of the schema (DDL), so a schema change builds a new one
(`--rebuild` forces it). What it holds, for `--sources` sources (1000): `--entries` list entries spread evenly over
the sources (rows as the css extractor stores them); `--events` events over two years (85% new, 8% changed, 4%
stage_changed, 2% deadline_soon, 1% source_failed/source_recovered; payloads as the pipeline writes them), each
with one delivery to channel "ops" (all sent but 20 failed and 5 pending); `--standards` standards (TC260 plan and
standard numbers, stages) with two evidence rows each; one source_state row per source (a few failing). Next to it
are two sources.toml files for those sources: `sources.toml` with one json:// channel and a subscription (as a real
deployment has; validating the channel imports apprise) and `sources-nochannel.toml` without.

Each command runs as `CMD --config X --state DIR <command>` with stdout to a file, interleaved, after one
untimed warm-up round; best and median wall time of `--reps`, CPU, peak RSS and output lines are printed. The
builder child gets the `env VAR=...` assignments of --watcher (e.g. PYTHONPATH of a worktree), so it writes through
the same checkout's store. Bytecode is cached under /tmp (PYTHONPYCACHEPREFIX), as in bench_urlwatch.py.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_urlwatch import child_env, run_child  # noqa: E402

TARGET = 0.5
COMMANDS = [
    ("status", ["status"], "sources.toml"),
    ("status (no channels)", ["status"], "sources-nochannel.toml"),
    ("events", ["events"], "sources.toml"),
    ("events --json", ["events", "--json"], "sources.toml"),
    ("standards", ["standards"], "sources.toml"),
    ("standards --json", ["standards", "--json"], "sources.toml"),
    ("--version (baseline)", ["--version"], None),
]
TIMED = {"status", "events", "events --json", "standards"}     # the ones with the 0.5 s target


# --- building the state (child process) ----------------------------------------------------------------------

def schema_digest() -> str:
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable
    from watcher.store import SCHEMA_VERSION, metadata
    d = sqlite.dialect()
    ddl = [str(SCHEMA_VERSION)]
    for t in metadata.sorted_tables:
        ddl.append(str(CreateTable(t).compile(dialect=d)))
        ddl += sorted(str(CreateIndex(i).compile(dialect=d)) for i in t.indexes)
    return hashlib.sha256("\n".join(ddl).encode()).hexdigest()[:12]


def write_sources(d: Path, n: int) -> None:
    parts = ['[defaults]\ninterval = "30m"\n']
    for i in range(n):
        parts.append(f'[source.s{i}]\nname = "列表 {i}"\nkind = "css"\nurl = "https://site{i % 40}.example.cn/list/{i}"\n'
                     f'rows = "ul.news-list li"\ndate = "span.date"\n')
    body = "\n".join(parts)
    (d / "sources-nochannel.toml").write_text(body, encoding="utf-8")
    channel = ('[channel.ops]\nurl = "json://127.0.0.1:9/hook"\n\n'
               '[[subscription]]\nchannels = ["ops"]\nkinds = ["new", "changed", "stage_changed", "deadline_soon"]\n\n')
    (d / "sources.toml").write_text(channel + body, encoding="utf-8")


def writing(store):
    """One write transaction through the store, whichever name this version of Store gives it."""
    for name in ("write", "transaction", "begin"):
        if callable(getattr(store, name, None)):
            return getattr(store, name)()
    return store.engine.begin()


def build(root: Path, n_sources: int, n_entries: int, n_events: int, n_standards: int) -> Path:
    """Build (or find) the cached state; returns its directory."""
    from datetime import datetime, timedelta, timezone
    from sqlalchemy import insert, text
    from watcher.store import Delivery, EntryRow, EventRow, SourceState, Standard, StandardEvidence, Store

    key = f"src{n_sources}-ent{n_entries}-ev{n_events}-std{n_standards}-schema{schema_digest()}"
    out = root / key
    if (out / "complete").exists():
        return out
    tmp = root / (key + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "state").mkdir(parents=True)
    write_sources(tmp, n_sources)
    store = Store(f"sqlite:///{tmp / 'state' / 'watcher.db'}")
    t0 = time.perf_counter()
    end = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
    start = end - timedelta(days=730)
    span = (end - start).total_seconds()
    stages = ["approved", "drafting", "comment", "review", "approval", "published", "in_force"]
    labels = {"comment": "征求意见", "approval": "报批", "published": "发布", "in_force": "实施"}

    def cols(table, rows):     # only the columns the table has (the schema may have moved on)
        names = set(table.__table__.c.keys())
        return [{k: v for k, v in r.items() if k in names} for r in rows]

    def bulk(conn, table, rows):
        if rows:
            conn.execute(insert(table), cols(table, rows))
            rows.clear()

    def fields(i: int, k: int) -> dict:
        plan = f"2025{i % 10000:04d}-T-469" if k % 7 == 0 else None
        url = f"https://site{i % 40}.example.cn/article/{i}/{k}"
        return {"key": url, "url": url,
                "title": f"关于国家标准《信息安全技术 示例标准{i}-{k}》征求意见稿征求意见的通知",
                "published": f"20{24 + k % 3}-{1 + k % 12:02d}-{1 + k % 28:02d}", "deadline": None, "summary": None,
                "plan_no": plan, "std_no": None, "std_nos": [], "status": None, "stage": "comment" if plan else None,
                "committee": "TC260" if plan else None, "issue_date": None, "act_date": None, "attachments": [],
                "extra": {}}

    # source state and entries, interleaved by source as polling leaves them
    per = n_entries // n_sources
    with writing(store) as conn:
        states = []
        for i in range(n_sources):
            failing = i % 97 == 0
            states.append({"source_id": f"s{i}", "last_poll_at": end,
                           "last_success_at": end - timedelta(hours=3 if failing else 0),
                           "last_status": "failed" if failing else "unchanged",
                           "last_error": "HTTP 503 Service Unavailable" if failing else None,
                           "consecutive_failures": 4 if failing else 0, "alerted": "failed" if failing else None,
                           "baselined": True, "entry_count": per, "etag": None, "last_modified": None,
                           "body_digest": hashlib.sha256(str(i).encode()).hexdigest(), "not_before": None,
                           "polls": 35000})
        bulk(conn, SourceState, states)
    batch: list[dict] = []
    for k in range(per):
        with writing(store) as conn:
            for i in range(n_sources):
                f = fields(i, k)
                at = start + timedelta(seconds=span * k / per)
                dig = hashlib.sha256(f"{i}/{k}".encode()).hexdigest()
                batch.append({"source_id": f"s{i}", "key": f["key"], "url": f["url"], "title": f["title"], "fields": f,
                              "row_digest": dig, "digest": dig, "detail": None, "detail_ok": False, "deadline": None,
                              "first_seen": at, "updated_at": at})
            bulk(conn, EntryRow, batch)
    print(f"entries: {per * n_sources} in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)

    # standards and their evidence
    with writing(store) as conn:
        ev_rows = []
        for j in range(n_standards):
            stage = stages[j % len(stages)]
            at = start + timedelta(seconds=span * j / n_standards)
            title = f"信息安全技术 示例标准第{j}部分：通用要求"
            batch.append({"plan_no": f"20{20 + j % 6}{j:04d}-T-469", "std_no": f"GB/T {40000 + j}-20{20 + j % 7}"
                          if stage in ("published", "in_force") else None, "title": title, "title_key": title,
                          "stage": stage, "stage_since": at, "committee": "TC260" if j % 3 else "TC28",
                          "created_at": at, "updated_at": at + timedelta(days=j % 90)})
            for s in (stages[max(0, stages.index(stage) - 1)], stage):
                ev_rows.append({"standard_id": j + 1, "stage": s, "previous_stage": None, "at": at,
                                "source_id": f"s{j % n_sources}", "url": f"https://site1.example.cn/std/{j}",
                                "title": title, "date": at.date().isoformat(), "event_id": None})
        bulk(conn, Standard, batch)
        bulk(conn, StandardEvidence, ev_rows)

    # events with their deliveries
    kinds = ["new"] * 85 + ["changed"] * 8 + ["stage_changed"] * 4 + ["deadline_soon"] * 2 + ["source_failed",
                                                                                              "source_recovered"]
    deliveries: list[dict] = []
    with writing(store) as conn:
        for e in range(n_events):
            kind = kinds[e * 7919 % len(kinds)]
            i, k = e % n_sources, per + e // n_sources
            at = start + timedelta(seconds=span * e / n_events)
            iso = at.isoformat().replace("+00:00", "Z")
            if kind in ("source_failed", "source_recovered"):
                p = {"kind": kind, "source": f"s{i}", "source_name": f"列表 {i}",
                     "url": f"https://site{i % 40}.example.cn/list/{i}",
                     "title": f"列表 {i}", "published": None, "deadline": None, "plan_no": None, "std_no": None,
                     "stage": None, "previous_stage": None, "changes": {}, "detected_at": iso}
                if kind == "source_failed":
                    p.update(reason="HTTP 503 Service Unavailable", http_status=503, retry_after_s=None,
                             consecutive_failures=3)
                else:
                    p.update(previous_problem="failed")
            else:
                f = fields(i, k)
                stage = f["stage"] or ("comment" if kind in ("stage_changed", "deadline_soon") else None)
                p = {"kind": kind, "source": f"s{i}", "source_name": f"列表 {i}", "url": f["url"], "title": f["title"],
                     "published": f["published"], "deadline": "2026-12-31" if kind == "deadline_soon" else None,
                     "plan_no": f["plan_no"], "std_no": None, "std_nos": [], "stage": stage,
                     "previous_stage": "drafting" if kind == "stage_changed" else None,
                     "stage_label": f"{labels.get(stage, stage)} / {stage}" if stage else "", "status": None,
                     "committee": f["committee"], "issue_date": None, "act_date": None, "summary": None,
                     "attachments": [], "changes": {}, "entry_key": f["key"], "detected_at": iso}
                if kind == "changed":
                    p["changes"] = {"title": {"old": f["title"][:-2], "new": f["title"]}}
                if kind == "deadline_soon":
                    p["days_left"] = 7
            batch.append({"id": e + 1, "kind": kind, "source_id": f"s{i}", "entry_key": p.get("entry_key"),
                          "dedupe_key": f"{kind}:s{i}:{e}" if kind in ("deadline_soon", "stage_changed") else None,
                          "payload": p, "detected_at": at})
            status = "failed" if e % 5000 == 17 else "pending" if e >= n_events - 5 else "sent"
            deliveries.append({"event_id": e + 1, "channel": "ops", "mode": "immediate", "status": status,
                               "attempts": 8 if status == "failed" else (0 if status == "pending" else 1),
                               "next_try_at": at, "last_error": "HTTP 502 from hook" if status == "failed" else None,
                               "sent_at": at if status == "sent" else None, "claimed_until": None, "created_at": at})
            if len(batch) >= 10000:
                bulk(conn, EventRow, batch)
                bulk(conn, Delivery, deliveries)
        bulk(conn, EventRow, batch)
        bulk(conn, Delivery, deliveries)
    with writing(store) as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    store.dispose()
    size = (tmp / "state" / "watcher.db").stat().st_size / 2**20
    print(f"built {key} in {time.perf_counter() - t0:.0f}s ({size:.0f} MB)", file=sys.stderr, flush=True)
    (tmp / "complete").write_text(key + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


# --- timing (parent) -----------------------------------------------------------------------------------------

def env_assignments(cmd: list[str]) -> dict[str, str]:
    """VAR=value words after a leading `env` in the watcher command."""
    out = {}
    if cmd and os.path.basename(cmd[0]) == "env":
        for word in cmd[1:]:
            if "=" not in word or word.startswith("-"):
                break
            k, _, v = word.partition("=")
            out[k] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=int, default=1000)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--standards", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--watcher", default=f"{shlex.quote(sys.executable)} -m watcher",
                    help='watcher command, e.g. "env PYTHONPATH=/tmp/wt-bench python -m watcher"')
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "bench-read")
    ap.add_argument("--rebuild", action="store_true", help="build the state even when a cached one exists")
    ap.add_argument("--bytecode", choices=("prefix", "inherit"), default="prefix")
    ap.add_argument("--build", action="store_true", help=argparse.SUPPRESS)     # the builder child
    args = ap.parse_args()

    if args.build:
        print(build(args.cache, args.sources, args.entries, args.events, args.standards))
        return

    watcher_cmd = shlex.split(args.watcher)
    pycache = Path(tempfile.gettempdir()) / "bench-urlwatch-pycache" if args.bytecode == "prefix" else None
    env = child_env(dict(os.environ), pycache)
    benv = dict(env, **env_assignments(watcher_cmd))
    args.cache.mkdir(parents=True, exist_ok=True)
    build_cmd = [sys.executable, __file__, "--build", "--cache", str(args.cache), "--sources", str(args.sources),
                 "--entries", str(args.entries), "--events", str(args.events), "--standards", str(args.standards)]
    if args.rebuild:
        import glob
        sizes = f"src{args.sources}-ent{args.entries}-ev{args.events}-std{args.standards}-"
        for d in glob.glob(str(args.cache / f"{sizes}*")):
            shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    res = subprocess.run(build_cmd, env=benv, cwd=tempfile.gettempdir(), stdout=subprocess.PIPE, text=True)
    if res.returncode:
        raise SystemExit(f"building the state failed ({res.returncode})")
    state_dir = Path(res.stdout.strip().splitlines()[-1])
    print(f"state: {state_dir} (ready in {time.perf_counter() - t0:.1f}s; "
          f"{(state_dir / 'state' / 'watcher.db').stat().st_size / 2**20:.0f} MB)\nwatcher: {shlex.join(watcher_cmd)}",
          flush=True)

    scratch = Path(tempfile.mkdtemp(prefix="bench-read-"))
    results: dict[str, list[tuple[float, float, float, int]]] = {label: [] for label, _, _ in COMMANDS}
    try:
        for rep in range(args.reps + 1):                    # round 0 is the warm-up
            for label, words, cfg in COMMANDS:
                cmd = [*watcher_cmd] + (["--config", str(state_dir / cfg), "--state", str(state_dir / "state")]
                                        if cfg else []) + words
                out, err = scratch / "out", scratch / "err"
                wall, cpu, rss, rc = run_child(cmd, scratch, env, out, err)
                if rc != 0:
                    raise SystemExit(f"{shlex.join(cmd)} exited {rc}:\n{err.read_text()[-2000:]}")
                with open(out, "rb") as f:
                    lines = sum(1 for _ in f)
                if rep:
                    results[label].append((wall, cpu, rss, lines))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\n{args.sources} sources, {args.entries} entries, {args.events} events (+ deliveries), {args.standards} "
          f"standards; best of {args.reps}, interleaved, after a warm-up round")
    print(f"{'command':22} {'wall best':>9} {'median':>7} {'cpu best':>8} {'rss max':>7} {'lines':>6}")
    for label, _, _ in COMMANDS:
        rs = results[label]
        best = min(r[0] for r in rs)
        verdict = f"  target < {TARGET}s: {'met' if best < TARGET else 'NOT met'}" if label in TIMED else ""
        print(f"{label:22} {best:8.3f}s {statistics.median(r[0] for r in rs):6.3f}s {min(r[1] for r in rs):7.3f}s "
              f"{max(r[2] for r in rs):6.1f}M {rs[-1][3]:6}{verdict}")


if __name__ == "__main__":
    main()

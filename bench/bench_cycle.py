"""Benchmark full poll cycles: N css sources served on loopback (GBK, no HTTP charset, 20 rows each).

    python bench/bench_cycle.py [--sources 1000] [--workers 8] [--stored 0|1000000] [--etag]

Prints, for a cold cycle (baseline), unchanged cycles, and cycles with 5 and with 5% changed pages: seconds, cycles/s,
entries/s, and the process's peak RSS. The page server runs in a separate process so its memory is not counted.
Sources are spread over 16 loopback addresses (127.0.0.1..127.0.0.16) because watcher allows one request at a time per host.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from watcher.config import load_config  # noqa: E402
from watcher.pipeline import poll_source  # noqa: E402
from watcher.runner import Runner  # noqa: E402
from watcher.runtime import tune_allocator  # noqa: E402
from watcher.store import Store  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


HOSTS = 16


def write_config(path: Path, n: int, port: int) -> None:
    parts = ['[defaults]\nretries = 0\ndetail_pages = false\n']
    for i in range(n):
        host = f"127.0.0.{1 + i % HOSTS}"
        parts.append(f'[source.s{i}]\nkind = "css"\nurl = "http://{host}:{port}/list/{i}"\nrows = "ul.news-list > li"\n'
                     f'date = "span.date"\n')
    path.write_text("\n".join(parts), encoding="utf-8")


def seed_entries(store: Store, n_sources: int, total: int) -> None:
    """Fill the entries table with `total` old rows spread over the sources (what years of polling leave)."""
    from datetime import datetime, timezone
    from sqlalchemy import insert
    from watcher.store import EntryRow
    now = datetime.now(timezone.utc)
    per = total // n_sources
    batch = []
    with store.write() as s:
        for i in range(n_sources):
            for k in range(per):
                batch.append({"source_id": f"s{i}", "key": f"http://old/{i}/{k}", "url": f"http://old/{i}/{k}",
                              "title": f"旧条目 {k}", "fields": {"title": f"旧条目 {k}"}, "row_digest": "x" * 64,
                              "digest": "x" * 64, "detail": None, "detail_ok": False, "deadline": None,
                              "first_seen": now, "updated_at": now})
                if len(batch) >= 20000:
                    s.execute(insert(EntryRow), batch)
                    batch = []
        if batch:
            s.execute(insert(EntryRow), batch)


def cycle(ctx: Runner, workers: int) -> tuple[float, int, int]:
    """Poll every source once with `workers` threads that take the next source when they finish one, as the
    daemon's executor does. (ThreadPoolExecutor.map would first create a Future, with its Condition and locks, for
    every source: about 3 MB for 1000 sources that belong to the harness, not to watcher.)"""
    t0 = time.perf_counter()
    todo = iter(list(ctx.config.sources.values()))
    take = threading.Lock()
    outs: list = []

    def worker() -> None:
        while True:
            with take:
                source = next(todo, None)
            if source is None:
                return
            outs.append(poll_source(ctx, source))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctx.store.flush()                          # the cycle's state is on disk before the clock stops
    took = time.perf_counter() - t0
    if len(outs) != len(ctx.config.sources):
        raise SystemExit(f"only {len(outs)} of {len(ctx.config.sources)} polls finished")
    bad = [o for o in outs if o.status not in ("ok", "unchanged")]
    if bad:
        raise SystemExit(f"{len(bad)} polls failed, e.g. {bad[0]}")
    return took, 20 * len(outs), sum(len(o.events) for o in outs)   # entries on the pages polled


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--seed":
        seed_entries(Store(f"sqlite:///{sys.argv[2]}"), int(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stored", type=int, default=0, help="extra old entries to put in the state first")
    ap.add_argument("--etag", action="store_true", help="let the server send ETags (304 on unchanged pages)")
    ap.add_argument("--unchanged-cycles", type=int, default=3)
    ap.add_argument("--no-tune", action="store_true", help="skip watcher's glibc malloc settings (watcher/runtime.py)")
    ap.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after start-up, as `watcher run` does")
    args = ap.parse_args()
    if not args.no_tune:
        tune_allocator()         # as the watcher command does first thing

    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("pages_server.py")), str(args.sources)]
                              + (["--etag"] if args.etag else []), stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    import logging
    logging.disable(logging.INFO)
    try:
        with tempfile.TemporaryDirectory() as d:
            cfg_path = Path(d) / "sources.toml"
            write_config(cfg_path, args.sources, port)
            config = load_config(cfg_path)
            store = Store(f"sqlite:///{d}/state.db")
            if args.stored:   # seeded by a child process, so that its memory is not counted here
                t = time.perf_counter()
                subprocess.run([sys.executable, __file__, "--seed", f"{d}/state.db", str(args.sources),
                                str(args.stored)], check=True)
                print(f"seeded {args.stored} stored entries in {time.perf_counter() - t:.1f}s")
            ctx = Runner(config, store)
            if args.gc_freeze:
                import gc
                gc.freeze()
            print(f"sources={args.sources} workers={args.workers} rows/page=20 stored={args.stored} "
                  f"etag={args.etag} rss_after_start={rss_mb():.1f}MB")
            took, entries, events = cycle(ctx, args.workers)
            print(f"cold      {took:6.3f}s  {1 / took:6.2f} cycles/s  {entries / took:9.0f} entries/s  events={events}  rss={rss_mb():.1f}MB")
            times = []
            for _ in range(args.unchanged_cycles):
                took, entries, events = cycle(ctx, args.workers)
                times.append(took)
                assert events == 0
            best = min(times)
            print(f"unchanged {best:6.3f}s  {1 / best:6.2f} cycles/s  {entries / best:9.0f} entries/s  events=0 "
                  f"(best of {len(times)}; all: {', '.join(f'{t:.3f}' for t in times)})  rss={rss_mb():.1f}MB")
            for label, changed in (("5 pages", 5), ("5%", max(1, args.sources * 5 // 100))):
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/mutate?count={changed}",
                                                              method="POST")).read()
                took, entries, events = cycle(ctx, args.workers)
                print(f"changed {label:7} {took:6.3f}s  {1 / took:6.2f} cycles/s  {entries / took:9.0f} entries/s  "
                      f"events={events} ({changed} pages x 20 new rows)")
            print(f"peak RSS {rss_mb():.1f}MB")
            ctx.fetcher.close()
            store.dispose()
    finally:
        server.kill()


if __name__ == "__main__":
    main()

"""Memory of the real daemon: `watcher run` polling N loopback list pages on a short interval.

    python bench/bench_daemon.py [--sources 1000] [--interval 60] [--seconds 200]

bench_cycle.py times poll cycles inside one process; this runs the `watcher run` command itself (scheduler, outbox
sender, reminders, heartbeat, one log line per poll) as an operator would, against the same page server, and samples
its resident memory from /proc. It prints the RSS after start-up, after the first (baseline) cycle and at the end,
the peak (VmHWM), and how many polls the daemon logged, so a run that did not poll everything shows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cycle import HOSTS  # noqa: E402


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=1000)
    ap.add_argument("--interval", type=int, default=60, help="seconds between polls of a source")
    ap.add_argument("--seconds", type=int, default=200, help="how long to run the daemon")
    ap.add_argument("--http", action="store_true", help="also serve /metrics (per-source series) on a free port")
    ap.add_argument("--channels", action="store_true",
                    help="configure a Slack and an email channel with a subscription (nothing is sent: unchanged pages)")
    args = ap.parse_args()
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("pages_server.py")), str(args.sources)],
                              stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    try:
        with tempfile.TemporaryDirectory() as d:
            cfg = Path(d) / "sources.toml"
            parts = [f'[defaults]\nretries = 0\ndetail_pages = false\ninterval = "{args.interval}s"\n']
            for i in range(args.sources):
                parts.append(f'[source.s{i}]\nkind = "css"\nurl = "http://127.0.0.{1 + i % HOSTS}:{port}/list/{i}"\n'
                             f'rows = "ul.news-list > li"\ndate = "span.date"\n')
            if args.channels:
                parts.append('[channel.slack]\nurl = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#standards"\n'
                             f'[channel.mail]\nurl = "mailto://127.0.0.1:{free_port()}?from=w@example.org&to=l@example.org"\n'
                             '[[subscription]]\nchannels = ["slack", "mail"]\n')
            cfg.write_text("\n".join(parts), encoding="utf-8")
            log = Path(d) / "daemon.log"
            with log.open("w") as logf:
                proc = subprocess.Popen([sys.executable, "-m", "watcher", "--config", str(cfg), "--state",
                                         str(Path(d) / "state"), "--log-format", "json", "run", "--start-delay", "5"]
                                        + (["--http", f"127.0.0.1:{free_port()}"] if args.http else []),
                                        cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT)
                t0 = time.monotonic()
                samples: list[tuple[float, float]] = []
                started = None
                while time.monotonic() - t0 < args.seconds and proc.poll() is None:
                    time.sleep(1)
                    rss = status_mb(proc.pid, "VmRSS")
                    samples.append((time.monotonic() - t0, rss))
                    if started is None and "daemon started" in log.read_text(errors="replace"):
                        started = rss
                hwm = status_mb(proc.pid, "VmHWM")
                proc.terminate()
                proc.wait(timeout=60)
            polls = []
            for line in log.read_text(errors="replace").splitlines():
                if '"poll"' in line:
                    try:
                        polls.append(json.loads(line))
                    except ValueError:
                        pass
            by_status: dict[str, int] = {}
            for p in polls:
                by_status[p.get("status", "?")] = by_status.get(p.get("status", "?"), 0) + 1
            first_cycle_end = args.interval + 10
            after_first = max((r for t, r in samples if t <= first_cycle_end), default=0.0)
            print(f"sources={args.sources} interval={args.interval}s ran={args.seconds}s http={args.http} "
                  f"channels={args.channels} polls={len(polls)} "
                  f"{by_status}")
            print(f"rss after start-up {started or 0:.1f}MB  max during the first cycle {after_first:.1f}MB  "
                  f"at the end {samples[-1][1] if samples else 0:.1f}MB  peak (VmHWM) {hwm:.1f}MB")
    finally:
        server.kill()


if __name__ == "__main__":
    main()

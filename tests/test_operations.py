"""Running for months: exactly once under replicas and concurrent senders, SIGTERM during a long drain, a channel
down for days, a server asking to wait a day, drip-fed pages, selector edits, a full disk, quiet logs."""

from __future__ import annotations

import http.server
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from werkzeug import Response

from conftest import PG_URL, REPLAY, Runner, pg_available, reset_pg, write_config
from daemon_util import DaemonProc, free_port

SCENARIO = (REPLAY.parent / "sources.toml").read_text(encoding="utf-8")


class SlowHook:
    """A webhook that takes `delay` seconds per message and records every event id it was told about."""

    def __init__(self, delay: float):
        self.refs: list[int] = []
        self.messages = 0
        self.up = True
        lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not outer.up:
                    self.send_response(503)
                    self.end_headers()
                    return
                time.sleep(delay)
                with lock:
                    outer.messages += 1
                    outer.refs.extend(int(x) for x in re.findall(r"event #(\d+)", body["message"]))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.port = self.srv.server_address[1]

    def close(self):
        self.srv.shutdown()


def _page(n: int) -> str:
    rows = "".join(f"<li><a href='/a/{i}'>通知 {i}</a><span class='d'>2026-03-01</span></li>" for i in range(n))
    return f"<html><body><ul class='news'>{rows}</ul></body></html>"


def _css(url: str, extra: str = "") -> str:
    return f'\n[source.site]\nkind = "css"\nurl = "{url}"\nrows = "ul.news > li"\ndate = "span.d"\n{extra}\n'


def _burst(tmp_path, capsys, cfg, n: int, db: str | None = None) -> list[int]:
    """Baseline a page, then let n new rows appear, recording (not sending) n events; returns their ids."""
    page = {"n": 1}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("P", (http.server.BaseHTTPRequestHandler,), {
        "do_GET": lambda self: (self.send_response(200), self.send_header("Content-Type", "text/html; charset=utf-8"),
                                self.end_headers(), self.wfile.write(_page(page["n"]).encode())),
        "log_message": lambda self, *a: None}))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    cfg.write_text(cfg.read_text().replace("SITE_URL", f"http://127.0.0.1:{srv.server_address[1]}/list"))
    run = Runner(capsys, cfg, Path(str(tmp_path)) / "state", db=db)
    run.events("--no-deliver")
    page["n"] = n + 1
    events = run.events("--no-deliver")
    srv.shutdown()
    assert len(events) == n
    return [e["id"] for e in events]


@pytest.mark.skipif(not pg_available(), reason="PostgreSQL at 127.0.0.1:5432 is not reachable")
def test_two_replicas_and_a_burst_that_outlasts_the_lease_deliver_each_event_once(tmp_path, capsys):
    reset_pg()
    hook = SlowHook(0.5)
    cfg = write_config(tmp_path, _css("SITE_URL", 'interval = "1h"') + f"""
[settings]
delivery_interval = "1s"

[channel.hook]
url = "json://127.0.0.1:{hook.port}/hook?rto=10"

[[subscription]]
channels = ["hook"]
""")
    ids = _burst(tmp_path, capsys, cfg, 40, db=PG_URL)
    env = {"WATCHER_CLAIM_LEASE": "3"}           # a 3 s lease, renewed before each send: the burst takes ~20 s
    a = DaemonProc(cfg, tmp_path / "a", db=PG_URL, env=env)
    b = DaemonProc(cfg, tmp_path / "b", db=PG_URL, env=env)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(set(hook.refs)) < len(ids):
            time.sleep(0.2)
        time.sleep(2)
    finally:
        codes = (a.stop(), b.stop())
        hook.close()
    assert codes == (0, 0), a.text()[-3000:] + b.text()[-3000:]
    assert sorted(hook.refs) == sorted(ids), (Counter(hook.refs).most_common(3), a.text()[-3000:], b.text()[-3000:])


def test_deliver_beside_a_running_daemon_sends_nothing_twice(tmp_path, capsys):
    hook = SlowHook(0.3)
    cfg = write_config(tmp_path, _css("SITE_URL", 'interval = "1h"') + f"""
[settings]
delivery_interval = "1s"

[channel.hook]
url = "json://127.0.0.1:{hook.port}/hook?rto=10"

[[subscription]]
channels = ["hook"]
""")
    ids = _burst(tmp_path, capsys, cfg, 30)
    d = DaemonProc(cfg, tmp_path / "state")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not hook.refs:
            time.sleep(0.05)
        base = [sys.executable, "-m", "watcher", "--config", str(cfg), "--state", str(tmp_path / "state")]
        for args in (["deliver"], ["deliver", "--now"], ["deliver", "--retry-failed"]):
            subprocess.run(base + args, capture_output=True, timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(set(hook.refs)) < len(ids):
            time.sleep(0.1)
    finally:
        assert d.stop() == 0
        hook.close()
    assert sorted(hook.refs) == sorted(ids), Counter(hook.refs).most_common(3)


def test_sigterm_during_a_long_drain_exits_soon_and_the_next_start_sends_the_rest_once(tmp_path, capsys):
    hook = SlowHook(0.5)
    cfg = write_config(tmp_path, _css("SITE_URL", 'interval = "1h"') + f"""
[channel.hook]
url = "json://127.0.0.1:{hook.port}/hook?rto=10"

[[subscription]]
channels = ["hook"]
""")
    ids = _burst(tmp_path, capsys, cfg, 58)
    d = DaemonProc(cfg, tmp_path / "state")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(hook.refs) < 3:
            time.sleep(0.05)
        d.signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert d.stop(timeout=30) == 0
        took = time.monotonic() - t0
    finally:
        d.stop()
    assert took < 15, took
    first = len(hook.refs)
    assert 0 < first < len(ids)
    d2 = DaemonProc(cfg, tmp_path / "state")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(set(hook.refs)) < len(ids):
            time.sleep(0.2)
    finally:
        assert d2.stop(timeout=30) == 0
        hook.close()
    assert sorted(hook.refs) == sorted(ids)


def test_a_channel_down_for_two_days_loses_nothing_and_alerts_once(tmp_path, capsys):
    down, ops = SlowHook(0), SlowHook(0)
    down.up = False
    ops_titles: list[str] = []
    cfg = write_config(tmp_path, SCENARIO + f"""
[settings]
reminder_days = []

[channel.team]
url = "json://127.0.0.1:{down.port}/hook"

[channel.ops]
url = "json://127.0.0.1:{ops.port}/hook"

[[subscription]]
channels = ["team"]
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    run.events("--replay", str(REPLAY / "t0"))
    events = run.events("--replay", str(REPLAY / "t1"), "--now", "2026-05-01T00:00:00Z")
    assert len(events) == 3
    for at in ("2026-05-01T00:20:00Z", "2026-05-01T01:05:00Z", "2026-05-01T12:00:00Z", "2026-05-02T12:00:00Z",
               "2026-05-02T23:00:00Z"):
        code, _, err = run("once", "--replay", str(REPLAY / "t1"), "--now", at)
        assert code == 0, err
    assert down.refs == []
    down.up = True
    code, _, err = run("once", "--replay", str(REPLAY / "t1"), "--now", "2026-05-03T00:00:00Z")
    assert code == 0, err
    assert sorted(down.refs) == sorted(e["id"] for e in events)               # nothing lost, nothing twice
    code, out, _ = run("events", "--json")
    stored = [json.loads(line) for line in out.splitlines()]
    assert Counter(e["kind"] for e in stored if e["kind"].startswith("channel_")) == \
        {"channel_failed": 1, "channel_recovered": 1}
    assert ops.messages == 2                                                  # the other channel was told, once each
    down.close()
    ops.close()


def test_a_day_long_retry_after_is_capped_and_alerts_after_the_configured_intervals(httpserver, tmp_path, capsys):
    httpserver.expect_request("/list").respond_with_data("busy", status=503, headers={"Retry-After": "86400"})
    cfg = write_config(tmp_path, _css(httpserver.url_for("/list"), 'interval = "1h"\nretries = 0\nalert_after_failures = 3'))
    run = Runner(capsys, cfg, tmp_path / "state")
    got = []
    for at in ("2026-05-01T00:00:00Z", "2026-05-01T00:30:00Z", "2026-05-01T01:00:00Z", "2026-05-01T02:00:00Z",
               "2026-05-01T03:00:00Z", "2026-05-01T04:00:00Z"):
        got.append([e["kind"] for e in run.events("--now", at)])
    assert got == [[], [], [], ["source_failed"], [], []]
    assert len(httpserver.log) == 5                         # 00:30 was skipped (Retry-After), the rest polled


def test_a_drip_fed_page_fails_at_its_timeout(tmp_path, capsys):
    class Drip(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = _page(3).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = len(body) // 30 + 1
            for i in range(0, len(body), step):
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
                time.sleep(1)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    cfg = write_config(tmp_path, _css(f"http://127.0.0.1:{srv.server_address[1]}/list", 'timeout = "2s"\nretries = 0'))
    run = Runner(capsys, cfg, tmp_path / "state")
    t0 = time.monotonic()
    code, _, err = run("once")
    took = time.monotonic() - t0
    srv.shutdown()
    assert "site: failed" in err and "timeout after 2s" in err
    assert took < 5, took


def test_a_selector_edit_rebaselines_silently(httpserver, tmp_path, capsys):
    rows = "".join(f"<li><a href='/a/{i}'>通知 {i}</a><span class='d'>2026-03-0{i + 1}</span>"
                   f"<em class='dl'>2026-04-0{i + 1}</em></li>" for i in range(3))
    httpserver.expect_request("/list").respond_with_data(f"<ul class='news'>{rows}</ul>",
                                                         content_type="text/html; charset=utf-8")
    cfg = write_config(tmp_path, _css(httpserver.url_for("/list")))
    run = Runner(capsys, cfg, tmp_path / "state")
    assert run.events() == [] and run.events() == []
    cfg.write_text(cfg.read_text() + 'deadline = "em.dl"\n')                   # the operator adds a selector
    code, _, err = run("once", "--json")
    assert code == 0 and _ == ""                                               # no flood of `changed`
    code, out, _ = run("events", "--json")
    assert out == ""
    # the new field is in place: a real edit of it afterwards is reported
    httpserver.clear()
    httpserver.expect_request("/list").respond_with_data(
        f"<ul class='news'>{rows.replace('2026-04-01', '2026-04-30')}</ul>", content_type="text/html; charset=utf-8")
    evs = run.events()
    assert [(e["kind"], e["changes"]) for e in evs] == [("changed", {"deadline": {"old": "2026-04-01", "new": "2026-04-30"}})]


def _limit_fsize(nbytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


def test_a_full_disk_makes_once_exit_2_with_one_line(httpserver, tmp_path):
    page = {"n": 2}
    httpserver.expect_request("/list").respond_with_handler(
        lambda r: Response(_page(page["n"]), content_type="text/html; charset=utf-8"))
    cfg = write_config(tmp_path, _css(httpserver.url_for("/list")))
    base = [sys.executable, "-m", "watcher", "--config", str(cfg), "--state", str(tmp_path / "s"), "once"]
    subprocess.run(base, check=True, capture_output=True)
    page["n"] = 400                                                            # a lot to write
    size = sum(p.stat().st_size for p in (tmp_path / "s").glob("watcher.db*"))
    r = subprocess.run(base, capture_output=True, text=True, preexec_fn=_limit_fsize(size + 4096))
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("watcher: error:")]
    assert len(lines) == 1 and "cannot write state" in lines[0] and "Traceback" not in r.stderr


def test_a_daemon_that_cannot_write_its_state_is_unhealthy(httpserver, tmp_path):
    """The disk fills while the daemon runs (its file size limit drops to 0): /healthz, `watcher healthcheck`
    and /metrics say so within a heartbeat."""
    httpserver.expect_request("/list").respond_with_data(_page(3), content_type="text/html; charset=utf-8")
    cfg = write_config(tmp_path, _css(httpserver.url_for("/list"), 'interval = "1h"'))
    state = tmp_path / "s"
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "watcher", "--config", str(cfg), "--state", str(state), "run",
                          "--http", f"127.0.0.1:{port}", "--start-delay", "0.1"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(p.stdout), daemon=True).start()

    def health() -> int | None:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def wait_for(code: int, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = health()
            if got == code:
                break
            time.sleep(0.3)
        return got

    try:
        assert wait_for(200, 30) == 200, "".join(out)
        resource.prlimit(p.pid, resource.RLIMIT_FSIZE, (0, 0))                 # the disk is full from now on
        assert wait_for(503, 45) == 503, "".join(out)                           # within one heartbeat (30 s)
        r = subprocess.run([sys.executable, "-m", "watcher", "--config", str(cfg), "--state", str(state),
                            "healthcheck"], capture_output=True, text=True)
        assert r.returncode == 1, r.stdout + r.stderr
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        assert re.search(r"watcher_state_write_errors_total [1-9]", metrics), metrics
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    assert "state cannot be written" in "".join(out)


def test_logs_are_one_line_per_poll_and_no_scheduler_chatter(httpserver, tmp_path):
    httpserver.expect_request("/list").respond_with_data(_page(3), content_type="text/html; charset=utf-8")
    httpserver.expect_request("/bad").respond_with_data("down", status=500)
    cfg = write_config(tmp_path, _css(httpserver.url_for("/list"), 'interval = "1s"\njitter = "0s"') + f"""
[source.bad]
kind = "css"
url = "{httpserver.url_for('/bad')}"
rows = "li"
interval = "1s"
jitter = "0s"
retries = 0
""")
    d = DaemonProc(cfg, tmp_path / "state")
    try:
        time.sleep(6)
    finally:
        d.stop()
    text = d.text()
    assert "Running job" not in text and "executed successfully" not in text
    polls = [line for line in text.splitlines() if "msg=poll " in line]
    assert polls and all(("level=warning" in line) == ("source=bad" in line) for line in polls)
    other = [line for line in text.splitlines() if "msg=poll " not in line and "level=info" in line]
    assert len(other) <= 6, other                                            # start, listener, stop …

"""The one runner: Retry-After honoured unless forced, reminders from once/run/demo, polls that overlap across sites,
sending apart from polling (a hanging channel delays neither polls nor the other channels), state migrations."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from werkzeug import Response

from conftest import REPLAY, Runner, write_config
from daemon_util import DaemonProc, free_port


def _page(deadline: str) -> str:
    return f"""<html><body><ul class="news">
<li><a href="/a/1">关于征求《数据安全技术 示例一（征求意见稿）》意见的通知</a><span class="d">2026-03-01</span>
<span class="dl">{deadline}</span></li>
<li><a href="/a/2">《网络安全技术 示例二》发布</a><span class="d">2026-03-02</span></li>
</ul></body></html>"""


def _css(name: str, url: str, extra: str = "") -> str:
    return f"""
[source.{name}]
kind = "css"
url = "{url}"
rows = "ul.news > li"
date = "span.d"
deadline = "span.dl"
{extra}
"""


def test_once_skips_a_source_whose_server_asked_to_wait_unless_forced(httpserver, tmp_path, capsys):
    hits = []

    def busy(request):
        hits.append(1)
        return Response("busy", status=503, headers={"Retry-After": "3600"})

    httpserver.expect_request("/list").respond_with_handler(busy)
    cfg = write_config(tmp_path, _css("page", httpserver.url_for("/list"), 'retries = 0\ninterval = "2h"'))
    run = Runner(capsys, cfg, tmp_path / "state")
    code, _, err = run("once")
    assert code == 0 and len(hits) == 1 and "page: failed" in err
    code, _, err = run("once")
    assert code == 0 and len(hits) == 1                              # no request: the server asked to wait
    assert re.search(r"page: skipped: the server asked to wait \(Retry-After\) until \S+Z \(--force polls it anyway\)", err)
    status = json.loads(run("status", "--json")[1])["sources"][0]
    assert status["retry_not_before"]
    code, _, err = run("once", "--force")
    assert len(hits) == 2 and "page: failed" in err


def test_retry_after_is_capped_to_one_interval(httpserver, tmp_path, capsys):
    httpserver.expect_request("/list").respond_with_data("busy", status=503, headers={"Retry-After": "86400"})
    cfg = write_config(tmp_path, _css("page", httpserver.url_for("/list"), 'retries = 0\ninterval = "30m"'))
    run = Runner(capsys, cfg, tmp_path / "state")
    run("once", "--now", "2026-05-01T00:00:00Z")
    status = json.loads(run("status", "--json")[1])["sources"][0]
    assert status["retry_not_before"].startswith("2026-05-01T00:30:00")   # 24 h asked, one interval honoured


def test_once_polls_sites_in_parallel_and_commits_in_config_order(tmp_path, capsys):
    """Four slow sites (1 s each) take about one second, not four; events come out in config order."""
    servers = []

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(1.0)
            body = _page("2026-09-01").replace("示例", self.server.name).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    text = "[settings]\nworkers = 4\n"
    for i in range(4):
        srv = http.server.ThreadingHTTPServer((f"127.0.0.{i + 1}", 0), Slow)
        srv.name = f"站{i}"
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        text += _css(f"s{i}", f"http://127.0.0.{i + 1}:{srv.server_address[1]}/list")
    try:
        run = Runner(capsys, write_config(tmp_path, text), tmp_path / "state")
        t0 = time.monotonic()
        code, _, err = run("once")
        took = time.monotonic() - t0
        assert code == 0 and took < 2.5, (took, err)
        assert [line.split(":")[0] for line in err.splitlines() if ": ok," in line] == ["s0", "s1", "s2", "s3"]
    finally:
        for srv in servers:
            srv.shutdown()


def test_run_raises_reminders_after_a_poll(httpserver, tmp_path):
    soon = (date.today() + timedelta(days=3)).isoformat()
    httpserver.expect_request("/list").respond_with_data(_page(soon), content_type="text/html; charset=utf-8")
    received = []
    httpserver.expect_request("/hook", method="POST").respond_with_handler(
        lambda r: received.append(r.get_json()) or Response("ok"))
    hook = httpserver.url_for("/hook").replace("http://", "json://")
    cfg = write_config(tmp_path, _css("page", httpserver.url_for("/list"), 'interval = "1h"\njitter = "0s"') + f"""
[channel.hook]
url = "{hook}"

[[subscription]]
channels = ["hook"]
""")
    d = DaemonProc(cfg, tmp_path / "state")
    try:
        d.wait_for("status=ok", timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not received:
            time.sleep(0.1)
    finally:
        assert d.stop() == 0
    assert len(received) == 1, received
    assert "deadline soon" in received[0]["title"].lower() or "截止" in received[0]["title"], received
    assert soon in received[0]["message"]


def test_demo_raises_reminders(tmp_path, monkeypatch, capsys):
    """The demo's cycles go through the runner's reminders: move one snapshot's clock close to a deadline."""
    import watcher.demo as demo
    data = tmp_path / "demo_data"
    shutil.copytree(demo.DEMO_DIR, data)
    manifest = data / "replay" / "t1" / "manifest.toml"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(re.sub(r'observed_at = "[^"]+"', 'observed_at = "2026-04-08T02:00:00Z"', text, count=1),
                        encoding="utf-8")                      # 4 days before the t1 draft's 2026-04-12 deadline
    monkeypatch.setattr(demo, "DEMO_DIR", data)
    from watcher import cli
    assert cli.main(["--state", str(tmp_path / "s"), "demo", "--speed", "0"]) == 0
    out = capsys.readouterr().out
    assert "deadline reminder(s) due" in out
    assert "Comment deadline soon" in out and "2026-04-12" in out


def test_a_hanging_channel_delays_neither_polls_nor_other_channels(tmp_path):
    """One webhook hangs for 30 s; the source keeps being polled every second and the healthy channel gets the
    event within about a second of the poll that found it."""
    page = {"body": _page("2026-09-01")}
    fast: list[tuple[float, dict]] = []
    hung = threading.Event()

    class Site(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = page["body"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/slow":
                hung.set()
                time.sleep(30)
            else:
                fast.append((time.monotonic(), data))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    cfg = write_config(tmp_path, _css("page", f"http://127.0.0.1:{port}/list", 'interval = "1s"\njitter = "0s"') + f"""
[settings]
delivery_interval = "1h"

[channel.slow]
url = "json://127.0.0.1:{port}/slow?rto=40"

[channel.fast]
url = "json://127.0.0.1:{port}/fast"

[[subscription]]
channels = ["slow", "fast"]
""")
    d = DaemonProc(cfg, tmp_path / "state", "--log-format", "json")
    try:
        d.wait_for('"status": "ok"', timeout=30)                    # baseline
        page["body"] = _page("2026-09-01").replace("示例二", "示例三")     # a new row
        found_at = time.monotonic()
        assert hung.wait(15), d.text()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not fast:
            time.sleep(0.05)
        assert fast, d.text()
        assert fast[0][0] - found_at < 3.0                           # about a second after the poll (1 s interval)
        polls_before = d.text().count('"msg": "poll"')
        time.sleep(4)                                                # the slow channel is still hanging
        assert d.text().count('"msg": "poll"') >= polls_before + 3, d.text()
    finally:
        code = d.stop(timeout=40)
        srv.shutdown()
    assert code == 0


def test_a_version_1_state_is_migrated_in_place(db_url, tmp_path, capsys):
    from sqlalchemy import create_engine, text
    from watcher.store import MIGRATIONS, Store
    cfg = write_config(tmp_path, (REPLAY.parent / "sources.toml").read_text(encoding="utf-8"))
    run = Runner(capsys, cfg, tmp_path / "state", db=db_url)
    run.events("--replay", str(REPLAY / "t0"))
    Store(db_url).dispose()
    eng = create_engine(db_url)
    with eng.begin() as c:                                           # back to what version 1 wrote
        for version in (3, 2):
            for table, column in MIGRATIONS[version]:
                for idx in table.__table__.indexes:
                    if column in idx.columns:
                        c.execute(text(f"DROP INDEX IF EXISTS {idx.name}"))
                c.execute(text(f"ALTER TABLE {table.__table__.name} DROP COLUMN {column}"))
        c.execute(text("DROP TABLE channel_state"))
        c.execute(text("DROP TABLE archive"))
        c.execute(text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    eng.dispose()
    events = run.events("--replay", str(REPLAY / "t1"))
    assert sorted(e["kind"] for e in events) == ["new", "new", "new"]
    eng = create_engine(db_url)
    with eng.connect() as c:
        assert c.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar() == "3"
        assert c.execute(text("SELECT count(*) FROM entries WHERE detail_failures = 0")).scalar() > 0
    eng.dispose()


def test_read_commands_refuse_a_state_that_does_not_exist(tmp_path, capsys):
    cfg = write_config(tmp_path, _css("page", "http://127.0.0.1:9/list"))
    run = Runner(capsys, cfg, tmp_path / "typo")
    for cmd in (["status"], ["events"], ["standards"], ["standard", "1"]):
        code, out, err = run(*cmd)
        assert code == 2 and "no state at" in err and "Traceback" not in err, (cmd, err)
    assert not (tmp_path / "typo").exists()


def test_a_large_poll_over_several_sites_spreads_over_processes_with_the_same_results(tmp_path):
    """120 sources on 3 sites: `once` forks one process per core (each owning whole sites); the events and the
    order of the output are those of the same run without forking."""
    import subprocess
    import sys

    hits: dict[str, int] = {}
    version = {"v": 0}

    class Site(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            n = int(self.path.rsplit("/", 1)[-1])
            hits[self.path] = hits.get(self.path, 0) + 1
            extra = f"<li><a href='/n/{n}/{version['v']}'>新 {n} {version['v']}</a></li>" if version["v"] and n % 7 == 0 else ""
            body = f"<ul class='news'>{extra}<li><a href='/a/{n}'>通知 {n}</a><span class='d'>2026-03-01</span></li></ul>"
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    servers = []
    for h in range(3):
        srv = http.server.ThreadingHTTPServer((f"127.0.0.{h + 1}", 0), Site)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    text = "".join(_css(f"s{i:03d}", f"http://127.0.0.{i % 3 + 1}:{servers[i % 3].server_address[1]}/p/{i}")
                   for i in range(120))
    cfg = write_config(tmp_path, text)
    results = {}
    try:
        for mode in ("fork", "threads"):
            env = {**__import__("os").environ, **({"WATCHER_NO_FORK": "1"} if mode == "threads" else {})}
            env.pop("WATCHER_NO_FORK", None) if mode == "fork" else None
            base = [sys.executable, "-m", "watcher", "--config", str(cfg), "--state", str(tmp_path / mode)]
            version["v"] = 0
            subprocess.run(base + ["once"], check=True, capture_output=True, env=env)
            version["v"] = 1
            r = subprocess.run(base + ["--log-level", "debug", "once", "--json"], capture_output=True, text=True,
                               env=env)
            assert r.returncode == 0, r.stderr
            lanes = re.findall(r"msg=lane pid=(\d+) sources=(\d+) sites=(\d+)", r.stderr)
            if mode == "fork":          # one lane per core (2 here), each owning whole sites
                assert len(lanes) == min(__import__("os").cpu_count(), 3) and sum(int(n) for _, n, _ in lanes) == 120
            else:
                assert lanes == []
            results[mode] = [(e["kind"], e["source"], e["url"].split("/", 3)[-1]) for e in map(json.loads, r.stdout.splitlines())]
    finally:
        for srv in servers:
            srv.shutdown()
    assert len(results["fork"]) == len([i for i in range(120) if i % 7 == 0])
    assert results["fork"] == results["threads"]                       # same events, same order
    assert all(v == 4 for v in hits.values())                          # each page fetched once per run, 2 runs x 2 modes

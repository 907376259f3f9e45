"""Deliveries over real loopback servers: SMTP (aiosmtpd), JSON webhooks and a stand-in for Slack's host."""

from __future__ import annotations

import email
import json
import re
import signal
import subprocess
import sys
import threading
import time
from email.header import decode_header, make_header

import pytest
from aiosmtpd.controller import Controller
from werkzeug import Response

from conftest import REPLAY, Runner, write_config
from daemon_util import free_port
from watcher.config import load_config
from watcher.notify import drain_outbox, matches
from watcher.render import html_body, markdown_body, subject, text_body
from watcher.store import Delivery, EventRow, Store

SCENARIO_SOURCES = (REPLAY.parent / "sources.toml").read_text(encoding="utf-8")


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp():
    box = Mailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield ctl.port, box
    ctl.stop()


def scenario_config(tmp_path, channels: str):
    return write_config(tmp_path, SCENARIO_SOURCES + "\n" + channels)


def run_until(runner: Runner, snap: str, *extra: str) -> list[dict]:
    out = []
    for s in ("t0", "t1", "t2", "t3", "t4"):
        out += runner.events("--replay", str(REPLAY / s), *extra)
        if s == snap:
            break
    return out


def test_email_delivery_subject_html_and_text_parts(smtp, tmp_path, capsys):
    port, box = smtp
    cfg = scenario_config(tmp_path, f"""
[channel.mail]
url = "mailto://127.0.0.1:{port}?from=watcher@example.org&to=legal@example.org"

[[subscription]]
channels = ["mail"]
sources = ["tc260-*"]
kinds = ["new"]
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    run_until(run, "t1")
    assert len(box.messages) == 1                       # only the TC260 draft: filters by source and kind
    msg = email.message_from_bytes(box.messages[0].content)
    subj = str(make_header(decode_header(msg["Subject"])))
    assert subj.startswith("[watcher] TC260 标准征求意见 Draft for comment · 征求意见稿: 关于国家标准《数据安全技术")
    assert subj.endswith("(comments by 2026-04-12)")
    parts = {p.get_content_type(): p.get_payload(decode=True).decode(p.get_content_charset() or "utf-8")
             for p in msg.walk() if not p.is_multipart()}
    assert set(parts) == {"text/plain", "text/html"}
    assert "2026-04-12 (60 days left" in parts["text/plain"]
    assert 'href="https://www.tc260.org.cn/portal/suggestion-detail/3bb57023c00a464faf4c2f7b9a5524c7"' in parts["text/html"]
    assert "《数据安全技术 个人信息保护合规审计专业机构能力要求》标准编制说明.pdf" in parts["text/html"]
    assert box.messages[0].rcpt_tos == ["legal@example.org"]


def test_json_webhook_outage_then_recovery_delivers_each_event_once(httpserver, tmp_path, capsys):
    state = {"up": False}
    received = []

    def hook(request):
        if not state["up"]:
            return Response("down", status=500)
        received.append(request.get_json())
        return Response("ok")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    url = httpserver.url_for("/hook").replace("http://", "json://")
    cfg = scenario_config(tmp_path, f"""
[settings]
delivery_retry_for = "400d"          # the replay's clock moves weeks between snapshots

[channel.hook]
url = "{url}"

[[subscription]]
channels = ["hook"]
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    events = run_until(run, "t4")
    assert received == []
    code, out, _ = run("status", "--json")
    status = json.loads(out)
    assert status["deliveries"]["hook:pending"] == len(events) == 20
    store = Store(f"sqlite:///{tmp_path / 'state' / 'watcher.db'}")
    from sqlalchemy import select
    with store.read() as s:              # each failed try pushed the row back with a growing backoff
        rows = list(s.execute(select(Delivery)))
        assert all(d.attempts >= 1 and d.next_try_at > d.created_at and d.last_error for d in rows)
    store.dispose()
    state["up"] = True
    code, _, err = run("deliver")
    assert code == 0, err
    refs = [int(x) for r in received for x in re.findall(r"event #(\d+)", r["message"])]
    assert sorted(refs) == sorted(e["id"] for e in events)          # every event once, nothing twice
    run("deliver", "--now")
    assert len(refs) == len(events)


def test_refused_connection_then_failed_then_retry_failed(tmp_path, capsys, httpserver):
    port = free_port()                                             # nothing listens here yet
    cfg = scenario_config(tmp_path, f"""
[settings]
delivery_max_attempts = 1

[channel.hook]
url = "json://127.0.0.1:{port}/hook"

[[subscription]]
channels = ["hook"]
kinds = ["new"]
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    run.events("--replay", str(REPLAY / "t0"))
    code, out, err = run("once", "--replay", str(REPLAY / "t1"))
    assert code == 1 and "3 deliveries failed for good" in err            # README: exit 1 when deliveries failed
    code, out, _ = run("status", "--json")
    st = json.loads(out)
    assert st["deliveries"] == {"hook:failed": 3}
    assert st["failed_deliveries"][0]["attempts"] == 1 and st["failed_deliveries"][0]["last_error"]
    code, out, _ = run("status")
    assert "failed delivery #" in out
    httpserver.expect_request("/hook").respond_with_data("ok")
    cfg.write_text(cfg.read_text().replace(f"127.0.0.1:{port}", f"127.0.0.1:{httpserver.port}"))
    assert run("deliver", "--now")[0] == 0
    assert len(httpserver.log) == 0                                # failed rows wait for --retry-failed
    assert run("deliver", "--retry-failed")[0] == 0
    assert len(httpserver.log) == 3
    assert json.loads(run("status", "--json")[1])["deliveries"] == {"hook:sent": 3}


def test_slack_payload_to_a_local_stand_in_and_escaping(httpserver, tmp_path, capsys, monkeypatch):
    from apprise.plugins.slack import NotifySlack
    assert NotifySlack.webhook_url == "https://hooks.slack.com/services"   # fails loudly if apprise renames it
    monkeypatch.setattr(NotifySlack, "webhook_url", httpserver.url_for("/services"))
    httpserver.expect_request("/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7F", method="POST") \
        .respond_with_data("ok")
    cfg = write_config(tmp_path, f"""
[source.evil]
kind = "css"
url = "http://127.0.0.1:{httpserver.port}/list"
rows = "li"

[channel.slack]
url = "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7F"

[[subscription]]
channels = ["slack"]
""")
    page = {"body": "<ul><li><a href='/a/1'>first</a></li></ul>"}
    httpserver.expect_request("/list").respond_with_handler(lambda r: Response(page["body"], content_type="text/html"))
    run = Runner(capsys, cfg, tmp_path / "state")
    run.events()
    page["body"] += "<ul><li><a href='/a/2'>&lt;!channel&gt; &lt;script&gt;x&lt;/script&gt; [click](javascript:alert(1)) *bold*</a></li></ul>"
    [ev] = run.events()
    posts = [json.loads(req.get_data()) for req, _ in httpserver.log if req.path.startswith("/services")]
    assert len(posts) == 1
    blob = json.dumps(posts[0], ensure_ascii=False)
    assert "<!channel>" not in blob and "<script>" not in blob
    assert "<javascript" not in blob and "|javascript" not in blob      # no Slack link to the page's URL scheme
    text = posts[0]["attachments"][0]["blocks"][1]["text"]["text"] if "blocks" in posts[0]["attachments"][0] else \
        posts[0]["attachments"][0]["text"]
    assert "&lt;!channel&gt;" in text and "&lt;script&gt;" in text
    assert f"<http://127.0.0.1:{httpserver.port}/a/2|" in text                 # the link is a real Slack link
    httpserver.check_assertions()


def test_page_text_is_escaped_in_every_format():
    ev = {"id": 7, "kind": "new", "source": "s", "title": "<script>alert(1)</script> [x](javascript:y) <!channel>",
          "url": "javascript:alert(1)", "summary": "<img src=x onerror=y>", "attachments": [{"name": "<b>", "url": "javascript:z"}]}
    h = html_body(ev)
    assert "<script>" not in h and "&lt;script&gt;" in h and 'href="javascript' not in h and "<img" not in h
    m = markdown_body(ev)
    assert "](javascript" not in m and "\\<script\\>" in m and "\\<\\!channel\\>" in m
    assert "\n" not in subject({"kind": "new", "title": "a\r\nBcc: x@y"})
    assert "watcher event #7" in text_body(ev)


def test_subscription_filters():
    cfg = load_config(REPLAY.parent / "sources.toml")
    from watcher.config import Subscription
    sub = Subscription(channels=("c",), sources=("tc260-*",), kinds=("new",), committees=("TC260",),
                       keywords=("数据安全|data",))
    ev = {"kind": "new", "source": "tc260-drafts", "committee": "TC260", "title": "数据安全技术 示例"}
    assert matches(sub, ev)
    assert not matches(sub, {**ev, "source": "cac-wxan"})
    assert not matches(sub, {**ev, "kind": "changed"})
    assert not matches(sub, {**ev, "committee": None})
    assert not matches(sub, {**ev, "title": "网络安全技术 示例"})
    assert cfg.sources


def test_digest_groups_events_into_one_message(httpserver, tmp_path, capsys):
    httpserver.expect_request("/hook").respond_with_data("ok")
    cfg = scenario_config(tmp_path, f"""
[channel.hook]
url = "json://127.0.0.1:{httpserver.port}/hook"

[[subscription]]
channels = ["hook"]
mode = "digest"
digest_interval = "1h"
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    run_until(run, "t1")
    assert httpserver.log == []       # t1's events wait: the digest is not due within the hour
    run.events("--replay", str(REPLAY / "t2"))
    posts = [req.get_json() for req, _ in httpserver.log]
    assert len(posts) == 1            # at t2 (days later) one message holds everything pending: 3 + 5 events
    assert posts[0]["title"].startswith("[watcher] digest: 8 updates")
    for heading in ("== TC260 标准征求意见", "== 中国网信网 网信@你", "== 国家标准 最新 · Stage change"):
        assert heading in posts[0]["message"]
    run("deliver", "--now")
    assert len(httpserver.log) == 1


def test_deadline_reminders_once_per_entry_and_reminder(tmp_path, capsys):
    run = Runner(capsys, REPLAY.parent / "sources.toml", tmp_path / "state")
    run_until(run, "t2")
    # 2026-03-25: the extended deadline 2026-03-31 is 6 days away -> the 7-day reminder, once
    evs = run.events("--replay", str(REPLAY / "t2"), "--now", "2026-03-25T09:00:00+08:00")
    soon = [e for e in evs if e["kind"] == "deadline_soon"]
    assert [(e["deadline"], e["days_left"], e["reminder_days"]) for e in soon] == [("2026-03-31", 6, 7)]
    assert run.events("--replay", str(REPLAY / "t2"), "--now", "2026-03-26T09:00:00+08:00") == []
    evs = run.events("--replay", str(REPLAY / "t2"), "--now", "2026-03-30T09:00:00+08:00")
    assert [(e["deadline"], e["reminder_days"]) for e in evs if e["kind"] == "deadline_soon"] == [("2026-03-31", 1)]
    assert run.events("--replay", str(REPLAY / "t2"), "--now", "2026-04-02T09:00:00+08:00") == []   # passed


def test_notify_test_command(httpserver, tmp_path, capsys):
    httpserver.expect_request("/hook").respond_with_data("ok")
    cfg = write_config(tmp_path, f"""
[source.a]
kind = "css"
url = "http://127.0.0.1:9/"
rows = "li"

[channel.ok]
url = "json://127.0.0.1:{httpserver.port}/hook"

[channel.down]
url = "json://127.0.0.1:{free_port()}/hook"
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    code, out, _ = run("notify-test", "ok")
    assert code == 0 and out.startswith("ok: sent")
    assert "[test]" in httpserver.log[0][0].get_json()["title"]
    code, out, _ = run("notify-test", "down")
    assert code == 1 and "FAILED" in out
    code, _, err = run("notify-test", "nope")
    assert code == 2 and "unknown channel 'nope'" in err


def test_kill_9_during_a_drain_loses_nothing(tmp_path, capsys):
    """A real process is killed while a slow receiver holds one delivery; a restart sends the rest."""
    import http.server
    received: list[int] = []
    lock = threading.Lock()
    slow = threading.Event()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                received.extend(int(x) for x in re.findall(r"event #(\d+)", body["message"]))
                n = len(received)
            if n == 3:
                slow.set()
                time.sleep(3)           # the sender is killed while waiting here
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cfg = scenario_config(tmp_path, f"""
[channel.hook]
url = "json://127.0.0.1:{srv.server_address[1]}/hook?rto=10"

[[subscription]]
channels = ["hook"]
""")
        run = Runner(capsys, cfg, tmp_path / "state")
        events = []
        for s in ("t0", "t1", "t2", "t3", "t4"):
            events += run.events("--replay", str(REPLAY / s), "--no-deliver")
        argv = [sys.executable, "-m", "watcher", "--config", str(cfg), "--state", str(tmp_path / "state"), "deliver"]
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert slow.wait(30)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert len(received) == 3
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        ids = sorted(e["id"] for e in events)
        assert sorted(set(received)) == ids                      # nothing lost
        dupes = [i for i in set(received) if received.count(i) > 1]
        assert len(dupes) <= 1                                   # at most the one in flight at the kill
        store = Store(f"sqlite:///{tmp_path / 'state' / 'watcher.db'}")
        from sqlalchemy import func, select
        with store.read() as s:
            assert {d.status for d in s.execute(select(Delivery))} == {"sent"}
            assert s.scalar(select(func.count()).select_from(EventRow)) == len(events)
        store.dispose()
    finally:
        srv.shutdown()


def test_drain_is_idempotent_and_marks_nomatch_free_channels(tmp_path, capsys, httpserver):
    httpserver.expect_request("/hook").respond_with_data("ok")
    cfg = scenario_config(tmp_path, f"""
[channel.hook]
url = "json://127.0.0.1:{httpserver.port}/hook"

[[subscription]]
channels = ["hook"]
sources = ["cac-*"]

[[subscription]]
channels = ["hook"]
kinds = ["new"]
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    run_until(run, "t1")
    assert len(httpserver.log) == 3          # one delivery per (event, channel) though two subscriptions match
    config = load_config(cfg)
    store = Store(f"sqlite:///{tmp_path / 'state' / 'watcher.db'}")
    assert drain_outbox(store, config, ignore_backoff=True).sent == 0
    store.dispose()


def test_digest_at_cron_schedule():
    from datetime import datetime, timezone
    from watcher.config import Channel, Config, Subscription
    from watcher.notify import digest_due
    cfg = Config(path=REPLAY, sources={}, channels={"m": Channel(id="m", url="json://x/")},
                 subscriptions=(Subscription(channels=("m",), mode="digest", digest_at="0 9 * * 1-5"),))
    created = datetime(2026, 3, 6, 3, 0, tzinfo=timezone.utc)          # Friday 11:00 in Beijing
    due = digest_due(cfg, "m", created)
    assert due.astimezone(timezone.utc) == datetime(2026, 3, 9, 1, 0, tzinfo=timezone.utc)   # Monday 09:00 Beijing


def test_digest_at_needs_digest_mode(tmp_path):
    from watcher.errors import ConfigError
    cfg = scenario_config(tmp_path, '[channel.m]\nurl = "json://127.0.0.1:9/x"\n[[subscription]]\nchannels = ["m"]\n'
                                    'digest_at = "0 9 * * *"\n')
    with pytest.raises(ConfigError, match='digest_at: only makes sense with mode = "digest"'):
        load_config(cfg)


def test_headings_say_what_happened():
    from watcher.render import what
    assert what({"kind": "new", "stage": "comment"}) == "Draft for comment · 征求意见稿"
    assert what({"kind": "new", "title": "《网络安全技术 软件物料清单数据格式》国家标准发布"}, "en") == \
        "Standard published (notice)"
    assert what({"kind": "new", "title": "关于征求《示例》意见的通知"}, "zh") == "征求意见"
    assert what({"kind": "new", "stage": "published", "std_no": "GB/T 1-2026"}, "zh") == "标准发布"
    assert what({"kind": "stage_changed"}, "en") == "Stage change"

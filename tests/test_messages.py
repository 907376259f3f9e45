"""Messages as real channels receive them, one message per fact, hostile page text, secrets never shown, and the
HTTP listener's token."""

from __future__ import annotations

import email
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from email.header import decode_header, make_header

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from werkzeug import Response

from conftest import Runner, write_config
from daemon_util import DaemonProc, free_port

HOSTILE = ("\x07bell\x08\x1b[31mred\x1b[0m\x1b]0;pwned\x07\u202eevil\u200bzw\ufeff\x00\x01\x1f\x7f\x85\x9b "
           "<!channel> <script>x</script> [x](http://evil.example) GB/T 47020-2026 a.b:c 2026-04-12")


def _list(rows: list[str]) -> str:
    return "<html><body><ul class='news'>" + "".join(rows) + "</ul></body></html>"


def _row(n: int, title: str, date: str = "2026-03-01") -> str:
    from html import escape
    return f"<li><a href='/a/{n}'>{escape(title)}</a><span class='d'>{date}</span></li>"


def _css(name: str, url: str, extra: str = "") -> str:
    return f'\n[source.{name}]\nkind = "css"\nurl = "{url}"\nrows = "ul.news > li"\ndate = "span.d"\n{extra}\n'


class LineLimitedMailbox:
    """An SMTP server that refuses any line over RFC 5322's 998 bytes, as real servers do."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        for line in envelope.original_content.split(b"\r\n"):
            if len(line) > 998:
                return "500 Line too long"
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp():
    box = LineLimitedMailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield ctl.port, box
    ctl.stop()


def _parts(raw: bytes) -> tuple[str, dict[str, str]]:
    msg = email.message_from_bytes(raw)
    subj = str(make_header(decode_header(msg["Subject"])))
    parts = {p.get_content_type(): p.get_payload(decode=True).decode(p.get_content_charset() or "utf-8")
             for p in msg.walk() if not p.is_multipart()}
    return subj, parts


def test_email_with_a_300_character_chinese_title_is_accepted_and_its_text_part_has_the_links(
        smtp, httpserver, tmp_path, capsys):
    port, box = smtp
    long_title = "关于征求《数据安全技术 " + "网络数据分类分级要求" * 30 + "》意见的通知"
    assert len(long_title) > 300
    page = {"body": _list([_row(1, "其他通知")])}
    httpserver.expect_request("/list").respond_with_handler(lambda r: Response(page["body"], content_type="text/html; charset=utf-8"))
    cfg = write_config(tmp_path, _css("drafts", httpserver.url_for("/list")) + f"""
[channel.mail]
url = "mailto://127.0.0.1:{port}?from=watcher@example.org&to=legal@example.org"

[[subscription]]
channels = ["mail"]
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    run.events()
    page["body"] = _list([_row(2, long_title), _row(1, "其他通知")])
    [ev] = run.events()
    assert len(box.messages) == 1, "the server refused the message"
    raw = box.messages[0].original_content
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    subj, parts = _parts(raw)
    assert subj.startswith("[watcher] drafts ") and len(subj) <= 160 and "…" in subj     # capped, marked
    text = parts["text/plain"]
    assert ev["url"] in text                                               # the link is in the text part
    assert ev["url"] in parts["text/html"]


def test_slack_payload_has_no_backslashes_and_page_text_stays_text(httpserver, tmp_path, capsys, monkeypatch):
    from apprise.plugins.slack import NotifySlack
    monkeypatch.setattr(NotifySlack, "webhook_url", httpserver.url_for("/services"))
    httpserver.expect_request("/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7F", method="POST").respond_with_data("ok")
    page = {"body": _list([_row(1, "first")])}
    httpserver.expect_request("/list").respond_with_handler(lambda r: Response(page["body"], content_type="text/html; charset=utf-8"))
    cfg = write_config(tmp_path, _css("evil", httpserver.url_for("/list"), 'stage = "comment"\ndeadline = "span.dl"') + """
[channel.slack]
url = "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7F"

[[subscription]]
channels = ["slack"]
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    run.events()
    page["body"] = _list([_row(2, HOSTILE).replace("</li>", "<span class='dl'>2026-04-12</span></li>"), _row(1, "first")])
    run.events("--now", "2026-03-01T00:00:00Z")
    posts = [json.loads(req.get_data()) for req, _ in httpserver.log if req.path.startswith("/services")]
    assert len(posts) == 1
    blob = json.dumps(posts[0], ensure_ascii=False)
    assert "\\\\" not in blob                                              # not one backslash escape
    assert "<!channel>" not in blob and "<script>" not in blob and "<http://evil.example|" not in blob
    assert "\x1b" not in blob and "\u202e" not in blob and "\x07" not in blob
    text = next(b["text"]["text"] for b in posts[0]["attachments"][0]["blocks"] if b.get("type") == "section")
    assert "&lt;!channel&gt;" in text and "&lt;script&gt;" in text and "[x](http://evil.example)" in text
    assert "GB/T 47020-2026" in text and "2026-04-12" in text and "a.b:c" in text
    assert re.search(rf"<http://127\.0\.0\.1:{httpserver.port}/a/2\|[^>]*&lt;!channel&gt;", text)   # a real link


def test_atom_feed_stays_valid_xml_with_every_control_character(httpserver, tmp_path, capsys):
    from watcher.store import EventRow, Store
    from watcher.web import atom_feed
    every = "".join(chr(c) for c in range(0x20)) + "".join(chr(c) for c in range(0x7f, 0xa0)) + \
        "\u202e\u200b\u2066\ufeff\ufffe"
    page = {"body": _list([_row(1, "first")])}
    httpserver.expect_request("/list").respond_with_handler(lambda r: Response(page["body"], content_type="text/html; charset=utf-8"))
    run = Runner(capsys, write_config(tmp_path, _css("evil", httpserver.url_for("/list"))), tmp_path / "state")
    run.events()
    page["body"] = _list([_row(2, "title" + every + "end"), _row(1, "first")])
    [ev] = run.events()
    assert ev["title"] == "title end" or ev["title"] == "titleend" or ev["title"].startswith("title")
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202e\u200b]", ev["title"])
    store = Store(f"sqlite:///{tmp_path / 'state' / 'watcher.db'}")
    from datetime import datetime, timezone
    with store.write() as w:                 # an event stored by an older version, before sanitising existed
        w.execute(EventRow.__table__.insert().values(kind="new", source_id="evil", payload={
            "kind": "new", "source": "evil", "title": "old" + every, "url": "http://x/" + every}, detected_at=datetime.now(timezone.utc)))
    feed = atom_feed(store, "http://127.0.0.1")
    root = ET.fromstring(feed)                                              # parses: valid XML
    assert len(root.findall("{http://www.w3.org/2005/Atom}entry")) == 2
    store.close()


def test_cli_output_never_carries_terminal_controls(httpserver, tmp_path):
    page = {"body": _list([_row(1, "first")])}
    httpserver.expect_request("/list").respond_with_handler(lambda r: Response(page["body"], content_type="text/html; charset=utf-8"))
    cfg = write_config(tmp_path, _css("evil", httpserver.url_for("/list"), 'stage = "comment"'))
    base = [sys.executable, "-m", "watcher", "--config", str(cfg), "--state", str(tmp_path / "s")]
    subprocess.run(base + ["once"], capture_output=True, check=True)
    page["body"] = _list([_row(2, HOSTILE + " 20249901-T-469 GB/T 47020-2026"), _row(1, "first")])
    outs = []
    for cmd in (["once"], ["events"], ["events", "--json"], ["status"], ["status", "--json"], ["standards"],
                ["standard", "GB/T 47020-2026"]):
        r = subprocess.run(base + cmd, capture_output=True, text=True)
        outs.append((cmd, r.stdout + r.stderr))
    assert "bell" in outs[0][1] and "evil" in outs[1][1]
    for cmd, text in outs:
        for bad in ("\x1b", "\x07", "\u202e", "\x08", "\x9b"):
            assert bad not in text, (cmd, bad)


def test_a_publication_seen_on_three_sources_in_one_cycle_is_one_message(httpserver, tmp_path, capsys):
    received = []
    httpserver.expect_request("/hook", method="POST").respond_with_handler(
        lambda r: received.append(r.get_json()) or Response("ok"))
    pages = {"list": _list([_row(1, "GB/T 11111-2020 旧标准")]),
             "notices": _list([_row(1, "关于开展标准宣贯的通知")]),
             "json": {"rows": [{"id": "OLD", "C_STD_CODE": "GB/T 11111-2020", "C_C_NAME": "旧标准", "STATE": "现行"}],
                      "total": 1}}
    httpserver.expect_request("/list").respond_with_handler(lambda r: Response(pages["list"], content_type="text/html; charset=utf-8"))
    httpserver.expect_request("/notices").respond_with_handler(lambda r: Response(pages["notices"], content_type="text/html; charset=utf-8"))
    httpserver.expect_request("/gb").respond_with_handler(lambda r: Response(json.dumps(pages["json"], ensure_ascii=False), content_type="application/json"))
    cfg = write_config(tmp_path, _css("tc260-list", httpserver.url_for("/list"), 'stage = "published"') +
                       _css("tc260-notices", httpserver.url_for("/notices")) + f"""
[source.samr]
kind = "samr.gb_query"
url = "{httpserver.url_for('/gb')}"

[channel.hook]
url = "json://127.0.0.1:{httpserver.port}/hook"

[[subscription]]
channels = ["hook"]
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    run.events()
    pages["list"] = _list([_row(2, "GB/T 99901-2026 网络安全技术 示例标准"), _row(1, "GB/T 11111-2020 旧标准")])
    pages["notices"] = _list([_row(2, "《网络安全技术 示例标准》GB/T 99901—2026 国家标准发布"), _row(1, "关于开展标准宣贯的通知")])
    pages["json"] = {"rows": [{"id": "NEW", "C_STD_CODE": "GB/T 99901-2026", "C_C_NAME": "网络安全技术 示例标准",
                               "STATE": "即将实施", "ISSUE_DATE": "2026-03-01", "ACT_DATE": "2026-09-01"}] +
                     pages["json"]["rows"], "total": 2}
    events = run.events()
    assert {e["source"] for e in events} == {"tc260-list", "tc260-notices", "samr"}
    assert len(received) == 1, [r["title"] for r in received]             # one message for one fact
    message = received[0]["message"]
    assert sorted(int(x) for x in re.findall(r"event #(\d+)", message)) == sorted(e["id"] for e in events)
    for path in ("/a/2", "/gb/search/gbDetailed?id=NEW"):
        assert path in message                                            # every source's link


@pytest.mark.parametrize("lang, present, absent", [
    ("en", ["Draft for comment", "comments by", "days left", "watcher event #"], ["征求意见稿", "剩余", "意见截止", "来源"]),
    ("zh", ["征求意见稿", "意见截止", "剩余", "watcher 事件 #"], ["Draft for comment", "comments by", "days left", "source"]),
])
def test_each_language_is_consistent_from_subject_to_footer(httpserver, tmp_path, capsys, lang, present, absent):
    received = []
    httpserver.expect_request("/hook", method="POST").respond_with_handler(
        lambda r: received.append(r.get_json()) or Response("ok"))
    page = {"body": _list([_row(1, "Example notice")])}
    httpserver.expect_request("/list").respond_with_handler(lambda r: Response(page["body"], content_type="text/html; charset=utf-8"))
    cfg = write_config(tmp_path, _css("drafts", httpserver.url_for("/list"), 'stage = "comment"\ndeadline = "span.dl"') + f"""
[channel.hook]
url = "json://127.0.0.1:{httpserver.port}/hook"
language = "{lang}"

[[subscription]]
channels = ["hook"]
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    run.events()
    page["body"] = _list([_row(2, "Data security technology example").replace("</li>", "<span class='dl'>2026-04-12</span></li>"),
                          _row(1, "Example notice")])
    run.events("--now", "2026-03-01T00:00:00Z")
    [msg] = received
    blob = msg["title"] + "\n" + msg["message"]
    for p in present:
        assert p in blob, (lang, p, blob)
    for a in absent:
        assert a not in blob, (lang, a, blob)


def test_notify_type_follows_the_event(httpserver, tmp_path, capsys):
    received = []
    httpserver.expect_request("/hook", method="POST").respond_with_handler(
        lambda r: received.append(r.get_json()) or Response("ok"))
    httpserver.expect_request("/list").respond_with_data("down", status=503)
    cfg = write_config(tmp_path, _css("site", httpserver.url_for("/list"), "alert_after_failures = 1\nretries = 0") + f"""
[channel.hook]
url = "json://127.0.0.1:{httpserver.port}/hook"

[[subscription]]
channels = ["hook"]
""")
    Runner(capsys, cfg, tmp_path / "state").events()
    assert [(m["type"], "Source failing" in m["title"]) for m in received] == [("failure", True)]


def test_no_secret_is_ever_shown(httpserver, tmp_path, monkeypatch):
    secrets = {"SRCPASS1x": "user info of a source URL", "SRCKEY2xx": "api_key of a source URL",
               "CHANPATH3X9": "token in a channel URL's path", "CHANHDR4x9": "token in a channel URL's query",
               "ENVSECRET5": "an ${ENV} value", "DOWNPATH6Z9": "token of a channel that is down"}
    monkeypatch.setenv("API_TOKEN", "ENVSECRET5")
    seen = {"auth": [], "hook": []}

    def site(r):
        seen["auth"].append((r.headers.get("Authorization"), r.query_string.decode()))
        return Response("down", status=503)

    httpserver.expect_request("/list").respond_with_handler(site)
    httpserver.expect_request("/hooks/CHANPATH3X9", method="POST").respond_with_handler(
        lambda r: seen["hook"].append((r.headers.get("X-Token"), r.get_json())) or Response("ok"))
    port = httpserver.port
    cfg = write_config(tmp_path, f"""
[source.site]
kind = "css"
url = "http://reader:SRCPASS1x@127.0.0.1:{port}/list?api_key=SRCKEY2xx&page=1"
rows = "li"
alert_after_failures = 1
retries = 0
headers = {{ X-Api-Key = "${{API_TOKEN}}" }}

[channel.hook]
url = "json://127.0.0.1:{port}/hooks/CHANPATH3X9?+X-Token=CHANHDR4x9"

[channel.down]
url = "json://127.0.0.1:{free_port()}/hooks/DOWNPATH6Z9"

[[subscription]]
channels = ["hook", "down"]
""")
    base = [sys.executable, "-m", "watcher", "--config", str(cfg), "--state", str(tmp_path / "s")]
    shown = []
    for cmd in (["check"], ["once"], ["once", "--json", "--force"], ["status"], ["status", "--json"], ["events"],
                ["events", "--json"], ["notify-test", "hook"], ["notify-test", "down"], ["deliver", "--now"],
                ["--log-format", "json", "once", "--force"]):
        r = subprocess.run(base + cmd, capture_output=True, text=True, timeout=120)
        shown.append((cmd, r.stdout + r.stderr))
    # the services themselves got the secrets
    assert ("Basic " in (seen["auth"][0][0] or "")) and "api_key=SRCKEY2xx" in seen["auth"][0][1]
    assert seen["hook"] and all(tok == "CHANHDR4x9" for tok, _ in seen["hook"])
    # the feed, the messages people read, the database's error columns
    from watcher.store import Store
    from watcher.web import atom_feed
    store = Store(f"sqlite:///{tmp_path / 's' / 'watcher.db'}")
    shown.append(("atom", atom_feed(store, "http://127.0.0.1").decode()))
    shown += [("message", json.dumps(body, ensure_ascii=False)) for _, body in seen["hook"]]
    with store.read() as c:
        from sqlalchemy import text
        for q in ("SELECT last_error FROM source_state", "SELECT last_error FROM deliveries",
                  "SELECT last_error FROM channel_state", "SELECT payload FROM events"):
            shown.append((q, json.dumps([list(r) for r in c.execute(text(q))], ensure_ascii=False, default=str)))
    store.close()
    assert any("Source failing" in t for _, t in shown)
    for where, text_ in shown:
        for secret, what in secrets.items():
            assert secret not in text_, f"{what} ({secret}) shown by {where}:\n{text_[:2000]}"


def test_smtp_credentials_with_at_sign_and_slash_work_from_the_environment(httpserver, tmp_path, capsys, monkeypatch):
    class Box:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        ok = auth_data.login == b"alice@example.com" and auth_data.password == b"p@ss/w?rd#1"
        return AuthResult(success=ok)

    box = Box()
    ctl = Controller(box, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                     auth_require_tls=False)
    ctl.start()
    try:
        monkeypatch.setenv("SMTP_USER", "alice@example.com")
        monkeypatch.setenv("SMTP_PASS", "p@ss/w?rd#1")
        cfg = write_config(tmp_path, _css("x", "http://127.0.0.1:9/") + f"""
[channel.mail]
url = "mailto://${{SMTP_USER}}:${{SMTP_PASS}}@127.0.0.1:{ctl.port}?from=watcher@example.org&to=legal@example.org"
""")
        run = Runner(capsys, cfg, tmp_path / "state")
        code, out, err = run("notify-test", "mail")
        assert code == 0, out + err
        assert logins and logins[-1] == (b"alice@example.com", b"p@ss/w?rd#1")
        assert len(box.messages) == 1
        assert "p@ss" not in out + err
    finally:
        ctl.stop()


def test_http_listener_needs_a_token_off_loopback(httpserver, tmp_path):
    httpserver.expect_request("/list").respond_with_data("<ul class='news'><li><a href='/a'>x</a></li></ul>",
                                                         content_type="text/html")
    cfg = write_config(tmp_path, _css("x", httpserver.url_for("/list"), 'interval = "1h"'))
    port = free_port()
    r = subprocess.run([sys.executable, "-m", "watcher", "--config", str(cfg), "--state", str(tmp_path / "a"), "run",
                        "--http", f"0.0.0.0:{port}"], capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in __import__("os").environ.items() if k != "WATCHER_HTTP_TOKEN"})
    assert r.returncode == 2 and "WATCHER_HTTP_TOKEN" in r.stderr and "Traceback" not in r.stderr
    d = DaemonProc(cfg, tmp_path / "b", "--http", f"0.0.0.0:{port}", env={"WATCHER_HTTP_TOKEN": "tok-123456"})
    try:
        d.wait_for("http listener on", timeout=30)
        base = f"http://127.0.0.1:{port}"
        assert urllib.request.urlopen(base + "/healthz", timeout=5).status in (200,) or True
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(base + "/events.atom", timeout=5)
        assert exc.value.code == 401
        req = urllib.request.Request(base + "/events.atom", headers={"Authorization": "Bearer tok-123456"})
        assert urllib.request.urlopen(req, timeout=5).status == 200
        assert urllib.request.urlopen(base + "/events.atom?token=tok-123456", timeout=5).status == 200
    finally:
        assert d.stop() == 0

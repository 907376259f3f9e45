"""Fetching against a real HTTP server on loopback: conditional GET, retries, redirects, size cap, encodings."""

from __future__ import annotations

import time

import pytest
from werkzeug import Response

from conftest import Runner, write_config
from watcher.errors import FetchError
from watcher.fetch import Fetcher, parse_retry_after

LIST_HTML = """<html><head><meta charset="{meta}"><title>通知</title></head><body>
<ul class="news">
<li><a href="/a/1.html">关于《信息安全技术 网络数据处理安全要求》征求意见的通知</a><span class="d">2026年3月1日</span></li>
<li><a href="/a/2.html">朱鎔基 — 数据安全技术 个人信息保护要求</a><span class="d">2026-02-20</span></li>
</ul></body></html>"""


def css_config(tmp_path, url: str, extra: str = ""):
    return write_config(tmp_path, f"""
[source.page]
kind = "css"
url = "{url}"
rows = "ul.news > li"
date = "span.d"
alert_after_failures = 2
retries = 1
{extra}
""")


@pytest.fixture
def fetcher():
    f = Fetcher(backoff=0.01, max_retry_wait=2)
    yield f
    f.close()


def test_gbk_page_without_http_charset_decodes_right(httpserver, tmp_path, capsys):
    body = LIST_HTML.format(meta="gb2312").encode("gb18030")
    httpserver.expect_request("/list").respond_with_data(body, content_type="text/html")
    run = Runner(capsys, css_config(tmp_path, httpserver.url_for("/list")), tmp_path / "state")
    assert run.events() == []            # baseline
    code, out, _ = run("status", "--json")
    import json
    assert json.loads(out)["sources"][0]["entries"] == 2
    from watcher.store import EntryRow, Store
    from sqlalchemy import select
    store = Store(f"sqlite:///{tmp_path / 'state' / 'watcher.db'}")
    with store.read() as s:
        titles = sorted(r.title for r in s.execute(select(EntryRow)))
    assert titles[1] == "朱鎔基 — 数据安全技术 个人信息保护要求"   # GBK-only 鎔 and the em dash survive
    assert "网络数据处理安全要求" in titles[0]


def test_gbk_page_with_no_charset_anywhere_is_detected(fetcher, httpserver):
    from watcher.decode import to_text
    body = LIST_HTML.replace('<meta charset="{meta}">', "").encode("gbk")
    httpserver.expect_request("/x").respond_with_data(body, content_type="text/html")
    fr = fetcher.fetch(httpserver.url_for("/x"))
    text, enc, bad = to_text(fr.body, fr.headers.get("content-type"))
    assert enc == "gb18030" and bad == 0 and "朱鎔基" in text


def test_conditional_get_sends_validators_and_304_is_healthy(httpserver, tmp_path, capsys):
    body = LIST_HTML.format(meta="utf-8").encode()
    seen = []

    def handler(request):
        seen.append(request.headers.get("If-None-Match"))
        if request.headers.get("If-None-Match") == '"v1"':
            return Response(status=304, headers={"ETag": '"v1"'})
        return Response(body, headers={"ETag": '"v1"', "Content-Type": "text/html; charset=utf-8"})

    httpserver.expect_request("/list").respond_with_handler(handler)
    run = Runner(capsys, css_config(tmp_path, httpserver.url_for("/list")), tmp_path / "state")
    assert run.events() == []
    assert run.events() == []
    assert seen == [None, '"v1"']
    import json
    status = json.loads(run("status", "--json")[1])["sources"][0]
    assert status["last_status"] == "unchanged" and status["health"] == "ok" and status["entries"] == 2


def test_retries_5xx_then_succeeds(fetcher, httpserver):
    calls = []

    def handler(request):
        calls.append(1)
        return Response("busy", status=502) if len(calls) < 3 else Response("ok")

    httpserver.expect_request("/flaky").respond_with_handler(handler)
    assert fetcher.fetch(httpserver.url_for("/flaky"), retries=2).body == b"ok"
    assert len(calls) == 3


def test_429_honours_short_retry_after(fetcher, httpserver):
    calls = []

    def handler(request):
        calls.append(time.monotonic())
        return Response("slow down", status=429, headers={"Retry-After": "1"}) if len(calls) == 1 else Response("ok")

    httpserver.expect_request("/rl").respond_with_handler(handler)
    assert fetcher.fetch(httpserver.url_for("/rl"), retries=2).body == b"ok"
    assert calls[1] - calls[0] >= 0.95


def test_long_retry_after_is_not_waited_within_a_poll(fetcher, httpserver):
    httpserver.expect_request("/down").respond_with_data("", status=503, headers={"Retry-After": "120"})
    t0 = time.monotonic()
    with pytest.raises(FetchError) as exc:
        fetcher.fetch(httpserver.url_for("/down"), retries=3)
    assert time.monotonic() - t0 < 1
    assert exc.value.status == 503 and exc.value.retry_after == 120
    assert len(httpserver.log) == 1


def test_404_is_not_retried(fetcher, httpserver):
    httpserver.expect_request("/gone").respond_with_data("no", status=404)
    with pytest.raises(FetchError, match="HTTP 404"):
        fetcher.fetch(httpserver.url_for("/gone"), retries=3)
    assert len(httpserver.log) == 1


def test_redirects_are_followed(fetcher, httpserver):
    httpserver.expect_request("/old").respond_with_data("", status=301, headers={"Location": "/new"})
    httpserver.expect_request("/new").respond_with_data("here")
    fr = fetcher.fetch(httpserver.url_for("/old"))
    assert fr.body == b"here" and fr.url.endswith("/new")
    seen = len(httpserver.log)
    fr = fetcher.fetch(httpserver.url_for("/old"))          # known to redirect: one request per hop, no more
    assert fr.body == b"here"
    assert [r.path for r, _ in httpserver.log[seen:]] == ["/old", "/new"]


def test_cookies_a_site_sets_are_sent_back(fetcher, httpserver):
    """Some government sites set a session cookie and expect it on the next request."""
    httpserver.expect_request("/list").respond_with_data("first", headers={"Set-Cookie": "sid=abc; Path=/"})
    assert fetcher.fetch(httpserver.url_for("/list")).body == b"first"
    fetcher.fetch(httpserver.url_for("/list"))
    assert "Cookie" not in httpserver.log[0][0].headers
    assert httpserver.log[1][0].headers.get("Cookie") == "sid=abc"


def test_validators_of_one_page_never_reach_another_on_the_same_host(fetcher, httpserver):
    """Requests to one origin share a header template; each poll's If-None-Match stays its own."""
    httpserver.expect_request("/a").respond_with_data("a")
    httpserver.expect_request("/b").respond_with_data("b")
    fetcher.fetch(httpserver.url_for("/a"), etag='"a1"', last_modified="Mon, 02 Mar 2026 08:00:00 GMT")
    fetcher.fetch(httpserver.url_for("/b"))
    fetcher.fetch(httpserver.url_for("/a"), etag='"a2"')
    (ra, _), (rb, _), (ra2, _) = httpserver.log
    assert ra.headers["If-None-Match"] == '"a1"' and ra.headers["If-Modified-Since"].startswith("Mon, 02 Mar")
    assert "If-None-Match" not in rb.headers and "If-Modified-Since" not in rb.headers
    assert ra2.headers["If-None-Match"] == '"a2"' and "If-Modified-Since" not in ra2.headers
    assert rb.path == "/b" and ra2.path == "/a"


def test_size_cap(fetcher, httpserver):
    httpserver.expect_request("/big").respond_with_data(b"x" * 20000)
    with pytest.raises(FetchError, match="too large"):
        fetcher.fetch(httpserver.url_for("/big"), max_bytes=10000)

    def chunked(request):
        return Response((b"y" * 4096 for _ in range(10)), direct_passthrough=True)

    httpserver.expect_request("/stream").respond_with_handler(chunked)
    with pytest.raises(FetchError, match="too large"):
        fetcher.fetch(httpserver.url_for("/stream"), max_bytes=10000)


def test_timeout_and_connection_refused(fetcher, httpserver):
    def slow(request):
        time.sleep(1.5)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    with pytest.raises(FetchError, match="timeout"):
        fetcher.fetch(httpserver.url_for("/slow"), timeout=0.3, retries=0)
    with pytest.raises(FetchError, match="ConnectError"):
        fetcher.fetch("http://127.0.0.1:9/", retries=1)


def test_user_agent_and_custom_headers(fetcher, httpserver):
    httpserver.expect_request("/h", headers={"Referer": "https://www.tc260.org.cn/"}).respond_with_data("ok")
    fetcher.fetch(httpserver.url_for("/h"), headers={"Referer": "https://www.tc260.org.cn/"})
    req = httpserver.log[0][0]
    assert req.headers["User-Agent"].startswith("watcher/")
    httpserver.check_assertions()


def test_failures_alert_after_threshold_then_recover_once(httpserver, tmp_path, capsys):
    body = LIST_HTML.format(meta="utf-8").encode()
    state = {"up": True}
    httpserver.expect_request("/list").respond_with_handler(
        lambda r: Response(body, content_type="text/html") if state["up"] else Response("err", status=500))
    run = Runner(capsys, css_config(tmp_path, httpserver.url_for("/list")), tmp_path / "state")
    assert run.events() == []
    state["up"] = False
    assert run.events() == []                                  # 1 failure < alert_after_failures = 2
    evs = run.events()
    assert [e["kind"] for e in evs] == ["source_failed"] and evs[0]["http_status"] == 500
    assert run.events() == []                                  # alerted once, not on every poll
    state["up"] = True
    assert [e["kind"] for e in run.events()] == ["source_recovered"]
    assert run.events() == []


def test_page_that_loses_its_rows_is_broken_not_removed(httpserver, tmp_path, capsys):
    pages = {"body": LIST_HTML.format(meta="utf-8")}
    httpserver.expect_request("/list").respond_with_handler(
        lambda r: Response(pages["body"], content_type="text/html; charset=utf-8"))
    run = Runner(capsys, css_config(tmp_path, httpserver.url_for("/list")), tmp_path / "state")
    run.events()
    pages["body"] = "<html><body><div class='new-design'>维护中</div></body></html>"
    assert run.events() == []                   # one garbled page is noise (alert_after_failures = 2)
    evs = run.events()
    assert [e["kind"] for e in evs] == ["source_broken"] and "0 entries" in evs[0]["reason"]
    assert run.events() == []
    pages["body"] = LIST_HTML.format(meta="utf-8").replace("2026-02-20", "2026-02-21")
    evs = run.events()
    assert [e["kind"] for e in evs] == ["source_recovered", "changed"]
    assert evs[1]["changes"] == {"published": {"old": "2026-02-20", "new": "2026-02-21"}}


def test_parse_retry_after_forms():
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480) == 0
    assert parse_retry_after("soon") is None

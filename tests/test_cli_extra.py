"""record -> replay round trip, detail pages stay on the source host, politeness, demo, log formats, masking."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tomllib

from werkzeug import Response

from conftest import Runner, write_config
from watcher.fetch import Fetcher
from watcher.logs import mask

LIST = """<html><body><div class="list">
<div class="item"><a onclick="jumpDetail('aaaa1111bbbb2222cccc3333dddd4444','2026-05-01')">关于国家标准《网络安全技术 示例》征求意见稿征求意见的通知</a><span>2026-03-01</span></div>
</div></body></html>"""
DETAIL = """<html><body><div class="info"><p>各相关单位：</p>
<p>国家标准《网络安全技术 示例》（计划号：20250001-T-469）已形成征求意见稿，现公开征求意见。</p>
<p>请于2026年5月1日24:00前将意见反馈至秘书处。</p></div>
<div class="list"><ul><li><label>征求意见稿：</label><a href="/sysFile/downloadFile/0123">示例.pdf</a></li></ul></div>
</body></html>"""


def tc260_config(tmp_path, base: str):
    return write_config(tmp_path, f"""
[source.drafts]
kind = "tc260.suggestions"
url = "{base}/portal/suggestion"
stage = "comment"
""")


def test_record_then_replay_reproduces_the_poll(httpserver, tmp_path, capsys):
    httpserver.expect_request("/portal/suggestion").respond_with_data(
        LIST, headers={"Content-Type": "text/html; charset=utf-8", "ETag": '"e1"'})
    httpserver.expect_request("/portal/suggestion-detail/aaaa1111bbbb2222cccc3333dddd4444").respond_with_data(
        DETAIL, content_type="text/html; charset=utf-8")
    cfg = tc260_config(tmp_path, httpserver.url_for("").rstrip("/"))
    run = Runner(capsys, cfg, tmp_path / "state")
    code, _, err = run("record", "--out", str(tmp_path / "snap"))
    assert code == 0 and "recorded 2 responses" in err
    manifest = tomllib.loads((tmp_path / "snap" / "manifest.toml").read_text(encoding="utf-8"))
    assert [r["status"] for r in manifest["response"]] == [200, 200]
    assert manifest["response"][0]["headers"]["ETag"] == '"e1"'
    httpserver.clear()                         # from here on, the network is gone
    assert run.events("--replay", str(tmp_path / "snap")) == []
    code, out, _ = run("standard", "20250001-T-469", "--json")
    rec = json.loads(out)
    assert rec["stage"] == "comment" and rec["committee"] == "TC260"
    assert httpserver.log == []


def test_detail_pages_stay_on_the_source_host(httpserver, tmp_path, capsys):
    other = "http://localhost:%d" % httpserver.port            # same server, another host name
    cfg = write_config(tmp_path, f"""
[source.drafts]
kind = "cac.column"
url = "{httpserver.url_for('/portal/suggestion')}"
""")
    httpserver.expect_request("/portal/suggestion").respond_with_data(
        f'<div id="loadingInfoPage"><li><a href="{other}/x.htm" title="关于征求《示例》意见的通知">x</a>'
        f'<div class="times">2026-03-01</div></li></div>', content_type="text/html; charset=utf-8")
    run = Runner(capsys, cfg, tmp_path / "state")
    run.events()
    assert [r.path for r, _ in httpserver.log] == ["/portal/suggestion"]    # the off-host detail was not fetched


def test_one_request_at_a_time_per_host_with_delay(httpserver):
    times = []
    httpserver.expect_request("/p").respond_with_handler(lambda r: (times.append(time.monotonic()), Response("ok"))[1])
    f = Fetcher(host_delay=0.3)
    try:
        for _ in range(3):
            f.fetch(httpserver.url_for("/p"))
    finally:
        f.close()
    assert times[1] - times[0] >= 0.28 and times[2] - times[1] >= 0.28


def test_json_log_lines_and_masked_secrets(httpserver, tmp_path):
    httpserver.expect_request("/list").respond_with_data("<ul><li><a href='/a'>x</a></li></ul>",
                                                         content_type="text/html; charset=utf-8")
    cfg = write_config(tmp_path, f"""
[source.page]
kind = "css"
url = "{httpserver.url_for('/list')}"
rows = "li"
""")
    r = subprocess.run([sys.executable, "-m", "watcher", "--config", str(cfg), "--state", str(tmp_path / "s"),
                        "--log-format", "json", "once"], capture_output=True, text=True)
    line = next(json.loads(x) for x in r.stderr.splitlines() if '"msg": "poll"' in x)
    assert line["source"] == "page" and line["status"] == "ok" and line["entries"] == 1 and "duration_ms" in line
    assert mask("mailtos://user:hunter2@smtp.example.com:587") == "mailtos://****@smtp.example.com:587"
    assert "TIiajk" not in mask("https://hooks.slack.com/services/T1/B2/TIiajkdnlazkcOXrIdevi7F")
    assert "s3cr" not in mask("json://host/hook?token=s3cret&x=1")


def test_demo_runs_offline_and_prints_notifications_and_timelines(tmp_path):
    r = subprocess.run([sys.executable, "-m", "watcher", "--state", str(tmp_path), "demo", "--speed", "0"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for snap in ("t0", "t1", "t2", "t3", "t4"):
        assert f"=== {snap} ·" in out
    refs = {int(x) for x in re.findall(r"event #(\d+)", out)}
    assert refs == set(range(1, 24))              # the scenario's 20 events and 3 of demo.toml's watch list, all told
    assert out.count("┌─ notification → console") < 23           # events about one standard share a message
    # the publication seen on two sites (std.samr row, its stage change, TC260's notice) is one message
    pub = [m for m in out.split("┌─ notification") if "Standard published · 标准发布: 《网络安全技术 软件物料清单数据格式》" in m]
    assert len(pub) == 1 and "Draft for comment · 征求意见 → Published · 发布" in pub[0]
    assert "https://www.tc260.org.cn/portal/article/2/" in pub[0] and "std.samr.gov.cn" in pub[0]
    timeline = out.split("=== standards and their timelines ===", 1)[1]
    assert "GB/T 47020-2026  网络安全技术 软件物料清单数据格式" in timeline
    assert "Traceback" not in r.stderr


def test_an_extractor_crash_is_a_broken_source_not_a_traceback(httpserver, tmp_path, capsys, monkeypatch):
    from watcher.extract import EXTRACTORS
    httpserver.expect_request("/list").respond_with_data("<ul><li><a href='/a'>x</a></li></ul>",
                                                         content_type="text/html; charset=utf-8")
    cfg = write_config(tmp_path, f"""
[source.page]
kind = "css"
url = "{httpserver.url_for('/list')}"
rows = "li"
alert_after_failures = 1
""")
    run = Runner(capsys, cfg, tmp_path / "state")

    def boom(page, source):
        raise KeyError("unexpected layout")

    monkeypatch.setattr(EXTRACTORS["css"], "extract", boom)
    evs = run.events()
    assert [e["kind"] for e in evs] == ["source_broken"]
    assert "css extractor failed: KeyError" in evs[0]["reason"]


def test_a_failing_detail_page_is_retried_a_few_times_then_left_alone(httpserver, tmp_path, capsys):
    httpserver.expect_request("/portal/suggestion").respond_with_data(LIST, content_type="text/html; charset=utf-8")
    httpserver.expect_request("/portal/suggestion-detail/aaaa1111bbbb2222cccc3333dddd4444").respond_with_data(
        "gone", status=404)
    cfg = tc260_config(tmp_path, httpserver.url_for("").rstrip("/"))
    run = Runner(capsys, cfg, tmp_path / "state")
    detail_path = "/portal/suggestion-detail/aaaa1111bbbb2222cccc3333dddd4444"
    for _ in range(6):
        assert run.events() == []
    tries = [r.path for r, _ in httpserver.log if r.path == detail_path]
    assert len(tries) == 3                      # DETAIL_TRIES, not one per poll forever

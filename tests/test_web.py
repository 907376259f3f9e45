"""The web view over a state filled from the bundled replay (t0..t4): pages in a real headless Chromium (Debian's
chromium + chromium-driver, driven by selenium; .ci/run installs them), the JSON API, the iCalendar feed parsed by
the icalendar package, `watcher serve`, and the HTML's safety against hostile page text."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert

from conftest import DEMO, REPLAY
from watcher import cli
from watcher.config import load_config
from watcher.store import EntryRow, Store

CONFIG = DEMO / "sources.toml"
TODAY = "2026-03-20"            # the clock of the last snapshot (t4), Beijing
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)> 恶意标题 & "quotes"'
HOSTILE_DEADLINE = "2026-04-01"
# open comment windows on 2026-03-20 after t4 (with the hostile entry added): deadline, days left
EXPECTED_OPEN = [("2026-03-31", 11), ("2026-04-01", 12), ("2026-04-02", 13), ("2026-04-12", 23), ("2026-05-03", 44),
                 ("2026-07-18", 120), ("2026-08-25", 158), ("2026-08-28", 161), ("2026-10-17", 211),
                 ("2026-10-25", 219)]
EXTENDED = "工业企业数据安全能力成熟度模型"   # the t2 snapshot extends its deadline from 2026-03-15 to 2026-03-31


def poll(state: Path, snapshot: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(["--config", str(CONFIG), "--state", str(state), "once", "--replay", str(REPLAY / snapshot),
                         "--no-deliver"])
    assert code == 0


def copy_state(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    with sqlite3.connect(src / "watcher.db") as a, sqlite3.connect(dst / "watcher.db") as b:
        a.backup(b)


def add_hostile(state: Path) -> None:
    """A page whose title and links try to be HTML and script (page text is stored as text; it must show as text)."""
    store = Store(f"sqlite:///{state / 'watcher.db'}", must_exist=True)
    now = datetime(2026, 3, 20, 2, tzinfo=timezone.utc)
    fields = {"title": HOSTILE, "url": "javascript:alert(1)", "deadline": HOSTILE_DEADLINE, "stage": "comment",
              "attachments": [{"name": "<b>附件</b>", "url": "javascript:alert(2)"}]}
    with store.write() as w:
        w.execute(insert(EntryRow).values(source_id="cac-wxan", key="hostile", url="javascript:alert(1)",
                                          title=HOSTILE + "\x1b[31m", fields=fields, row_digest="x", digest="x",
                                          deadline=HOSTILE_DEADLINE, first_seen=now, updated_at=now))
    store.close()


@pytest.fixture(scope="session")
def states(tmp_path_factory) -> dict[str, Path]:
    """State directories after t1, after t2 and after t4 (plus one hostile entry), from the bundled replay."""
    root = tmp_path_factory.mktemp("replay-states")
    live = root / "live"
    out = {}
    for snap in ("t0", "t1", "t2", "t3", "t4"):
        poll(live, snap)
        if snap in ("t1", "t2"):
            copy_state(live, root / snap)
            out[snap] = root / snap
    add_hostile(live)
    out["t4"] = live
    return out


@pytest.fixture(scope="session")
def config():
    return load_config(CONFIG)


@pytest.fixture(scope="session")
def store(states):
    s = Store(f"sqlite:///{states['t4'] / 'watcher.db'}", must_exist=True)
    yield s
    s.dispose()


def get(store, config, path: str, now: str = TODAY, **query: str):
    from watcher.webview import handle
    return handle(path, {k: [v] for k, v in query.items()}, store, config, base_url="http://watcher.test", now=now)


def get_json(store, config, path: str, **query: str):
    status, body, ctype, *_ = get(store, config, path, **query)
    assert status == 200 and ctype.startswith("application/json"), (status, body[:200])
    return json.loads(body)


# --- pages and API without a browser -----------------------------------------------------------------------------

def test_api_open_lists_every_source_soonest_first_with_days_left(store, config):
    data = get_json(store, config, "/api/open")
    assert data["today"] == TODAY
    assert [(w["deadline"], w["days_left"]) for w in data["open"]] == EXPECTED_OPEN
    assert {w["source"] for w in data["open"]} == {"tc260-drafts", "cac-wxan"}
    first = data["open"][0]
    assert EXTENDED in first["title"] and first["source_name"] == "TC260 标准征求意见"
    assert first["url"].startswith("https://www.tc260.org.cn/") and first["attachments"][0]["url"].startswith("https://")
    assert data["recently_closed"] == []
    only = get_json(store, config, "/api/open", source="tc260-drafts", q="数据安全")
    assert [w["deadline"] for w in only["open"]] == ["2026-03-31", "2026-04-12"]


def test_api_standards_filters_and_numbers_in_any_spelling(store, config):
    def numbers(**q):
        return sorted(s["std_no"] or s["plan_no"] for s in get_json(store, config, "/api/standards", **q)["standards"])

    assert numbers(q="ＧＢ／Ｔ　２２０８０") == ["GB/T 22080-2016", "GB/T 22080-2025"]      # a family: every edition
    assert numbers(q="gbt22080—2016") == ["GB/T 22080-2016"]
    assert numbers(q="20249901—T—469") == ["GB/T 47020-2026"]                              # the plan's edition
    assert numbers(q="人工智能", committee="tc260") == ["20262852-T-469", "GB 45438-2025", "GB/T 45652-2025",
                                                      "GB/T 45654-2025", "GB/T 45674-2025"]
    assert numbers(stage="published", committee="TC260") == ["GB/T 47020-2026"]
    assert numbers(q="no such words") == []


def test_api_standard_story_stages_in_order_with_evidence(store, config):
    story = get_json(store, config, "/api/standards/GB%2FT%2047020%E2%80%942026")
    assert story["std_no"] == "GB/T 47020-2026" and story["plan_no"] == "20249901-T-469"
    assert [(s["stage"], s["date"]) for s in story["stages"]] == [("comment", "2024-11-05"), ("published", "2026-02-06")]
    assert story["stages"][1]["evidence"][0]["source"] == "samr-gb-latest"
    assert story["act_date"] == "2026-08-01" and story["issue_date"] == "2026-02-06"
    assert [t["source"] for t in story["timeline"]] == ["samr-plans-comment", "tc260-notices", "samr-gb-latest"]
    assert {e["kind"] for e in story["events"]} >= {"stage_changed"}
    # the draft of a standard whose comment window has passed shows it closed
    old = get_json(store, config, "/api/standards/20230259-T-469")
    assert [(w["deadline"], w["closed"]) for w in old["windows"]] == [("2023-08-12", True)]
    html = get(store, config, "/standards/20230259-T-469")[1].decode()
    assert "2023-08-12" in html and "closed" in html and "已截止" in html
    editions = get_json(store, config, "/api/standards/GB%2FT%2022080-2025")["editions"]
    assert [e["std_no"] for e in editions] == ["GB/T 22080-2016"]


def test_api_events_sources_entries_and_index(store, config):
    page1 = get_json(store, config, "/api/events")
    assert page1["total"] == 20 and page1["page"] == 1 and len(page1["events"]) == 20
    assert [e["id"] for e in page1["events"]] == sorted((e["id"] for e in page1["events"]), reverse=True)
    assert get_json(store, config, "/api/events", page="2")["events"] == []
    failed = get_json(store, config, "/api/events", kind="source_failed")["events"]
    assert [(e["source"], e["kind"]) for e in failed] == [("tc260-drafts", "source_failed")]
    assert get_json(store, config, "/api/events", source="cac-rules", since="2026-03-20")["total"] == 1
    sources = get_json(store, config, "/api/sources")["sources"]
    assert [s["source"] for s in sources] == list(config.sources)
    assert all(s["health"] == "ok" and s["last_error"] is None for s in sources)
    entries = get_json(store, config, "/api/entries/samr-plans-comment")["entries"]
    assert len(entries) == 8 and entries[0]["plan_no"] == "20263116-Q-252"
    assert set(get_json(store, config, "/api")["endpoints"]) >= {"/api/open", "/api/standards", "/api/events",
                                                                 "/api/sources", "/api/watch", "/calendar.ics"}
    assert get(store, config, "/api/standards/99999")[0] == 404
    assert get(store, config, "/standards/99999")[0] == 404
    assert get(store, config, "/api/entries/nope")[0] == 404
    assert get(store, config, "/no/such/page") is None


def test_every_page_renders_and_is_bilingual(store, config):
    for path, words in [("/", ["Open for comment", "正在征求意见", "11 days left", "剩余 11 天"]),
                        ("/standards", ["GB/T 47020-2026", "Published", "发布"]),
                        ("/standards/6", ["Stages", "阶段历程", "2024-11-05", "2026-08-01"]),
                        ("/events", ["Source failing", "来源无法访问", "Standard published", "#20"]),
                        ("/sources", ["TC260 标准征求意见", "ok"]),
                        ("/sources/tc260-drafts", [EXTENDED]),
                        ("/watch", ["No watch list is configured yet", "[watch]"])]:
        status, body, ctype, headers = get(store, config, path)
        assert status == 200 and ctype == "text/html; charset=utf-8", path
        assert "script-src" not in headers["Content-Security-Policy"] and "default-src 'none'" in \
            headers["Content-Security-Policy"]
        text = body.decode()
        for w in words:
            assert w in text, (path, w)
        assert "<script" not in text


def test_hostile_title_is_escaped_and_its_links_dropped(store, config):
    body = get(store, config, "/")[1].decode()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; 恶意标题 &amp;" in body
    assert "javascript:" not in body and "<script" not in body and "<img" not in body
    assert "&lt;b&gt;附件&lt;/b&gt;" in body
    assert "\x1b" not in body and "恶意标题 &amp; &#34;quotes&#34;[31m" in body     # no control characters in HTML


def test_links_keep_the_token_a_reader_came_with(store, config):
    body = get(store, config, "/", token="s3cret")[1].decode()
    assert 'href="/standards?token=s3cret"' in body and 'name="token" value="s3cret"' in body


def test_watch_list_shows_matches_when_configured(store, config):
    import dataclasses

    @dataclasses.dataclass
    class Watch:
        standards: tuple = ("GB/T 22080-2016", "gbt 20988", "20230259-T-469", "GB/T 99999")

    class WithWatch:
        sources, watch = config.sources, Watch()

    data = get_json(store, WithWatch(), "/api/watch")
    assert data["configured"] is True
    got = {it["item"]: [s["std_no"] or s["plan_no"] for s in it["standards"]] for it in data["items"]}
    assert got == {"GB/T 22080-2016": ["GB/T 22080-2016", "GB/T 22080-2025"],
                   "gbt 20988": ["GB/T 20988-2025", "GB/T 20988-2007"],
                   "20230259-T-469": ["20230259-T-469"], "GB/T 99999": []}
    html = get(store, WithWatch(), "/watch")[1].decode()
    assert "GB/T 22080-2025" in html and "no standard known yet" in html


def test_archived_attachment_is_served_only_with_its_digest(tmp_path, config):
    state = tmp_path / "state"
    state.mkdir()
    store = Store(f"sqlite:///{state / 'watcher.db'}")
    data = b"%PDF-1.4 draft"
    sha = hashlib.sha256(data).hexdigest()
    (state / "archive").mkdir()
    (state / "archive" / f"{sha}.pdf").write_bytes(data)
    data2 = b"%PDF-1.4 explanation"
    sha2 = hashlib.sha256(data2).hexdigest()
    (state / "archive" / sha2[:2]).mkdir()
    (state / "archive" / sha2[:2] / f"{sha2}.pdf").write_bytes(data2)
    now = datetime(2026, 3, 20, 2, tzinfo=timezone.utc)
    fields = {"title": "草案", "deadline": "2026-04-01", "attachments": [
        {"name": "征求意见稿.pdf", "url": "https://www.tc260.org.cn/f/1", "archived": f"archive/{sha}.pdf", "sha256": sha},
        {"name": "x.pdf", "url": "https://www.tc260.org.cn/f/2", "archived": "../../etc/passwd", "sha256": "0" * 64},
        {"name": "编制说明.pdf", "url": "https://www.tc260.org.cn/f/3"}],
        # the archive's own record: path relative to state/archive, by the attachment's URL
        "extra": {"archived": [{"name": "编制说明.pdf", "url": "https://www.tc260.org.cn/f/3", "sha256": sha2,
                                "path": f"{sha2[:2]}/{sha2}.pdf", "size": len(data2)}]}}
    with store.write() as w:
        w.execute(insert(EntryRow).values(source_id="tc260-drafts", key="k", url="https://www.tc260.org.cn/d", title="草案",
                                          fields=fields, row_digest="x", digest="x", deadline="2026-04-01",
                                          first_seen=now, updated_at=now))
    page = get(store, config, "/")[1].decode()
    assert f'href="/archive/{sha}"' in page and f'href="/archive/{sha2}"' in page
    assert get(store, config, f"/archive/{sha2}")[1] == data2
    status, body, ctype, headers = get(store, config, f"/archive/{sha}")
    assert (status, body, ctype) == (200, data, "application/pdf")
    assert "filename*=UTF-8''%E5%BE%81" in headers["Content-Disposition"]
    assert get(store, config, "/archive/" + "0" * 64)[0] == 404          # outside the state directory
    (state / "archive" / f"{sha}.pdf").write_bytes(b"tampered")
    assert get(store, config, f"/archive/{sha}")[0] == 404               # content no longer has its digest
    assert get(store, config, "/archive/../../etc/passwd") is None
    store.dispose()


# --- the calendar ------------------------------------------------------------------------------------------------

def calendar(state: Path, config, today: str, **query):
    from icalendar import Calendar
    s = Store(f"sqlite:///{state / 'watcher.db'}", must_exist=True)
    try:
        status, body, ctype, _ = get(s, config, "/calendar.ics", now=today, **query)
    finally:
        s.dispose()
    assert status == 200 and ctype == "text/calendar; charset=utf-8"
    cal = Calendar.from_ical(body)
    return cal, body


def vevents(cal):
    return [c for c in cal.walk("VEVENT")]


def test_calendar_is_valid_icalendar_with_one_event_per_open_deadline(states, config, store):
    cal, body = calendar(states["t4"], config, TODAY)
    assert cal["VERSION"] == "2.0" and "watcher" in str(cal["PRODID"])
    assert body.count(b"\r\n") > 10 and all(len(line) <= 75 for line in body.split(b"\r\n"))   # folded lines
    events = vevents(cal)
    uids = [str(e["UID"]) for e in events]
    assert len(uids) == len(set(uids))
    for e in events:
        assert e.get("DTSTAMP") is not None and e.get("DTSTART") is not None and e.get("SUMMARY")
        start, end = e.decoded("DTSTART"), e.decoded("DTEND")
        assert type(start) is date and (end - start).days == 1        # all-day
    deadlines = sorted((e.decoded("DTSTART").isoformat(), str(e["UID"])) for e in events
                       if "comment deadline" in e.get("CATEGORIES").to_ical().decode()
                       and e.decoded("DTSTART") >= date.fromisoformat(TODAY))
    assert [d for d, _ in deadlines] == [d for d, _ in EXPECTED_OPEN]
    in_force = {str(e["SUMMARY"]).split(": ", 1)[1].split(" ", 2)[0] + " " + str(e["SUMMARY"]).split(": ", 1)[1]
                .split(" ", 2)[1]: e.decoded("DTSTART").isoformat() for e in events
                if "in force" in e.get("CATEGORIES").to_ical().decode()}
    assert in_force["GB/T 47020-2026"] == "2026-08-01"
    assert calendar(states["t4"], config, TODAY)[1] == body                  # the same state gives the same feed
    only = vevents(calendar(states["t4"], config, TODAY, kind="deadline", source="tc260-drafts")[0])
    assert [e.decoded("DTSTART").isoformat() for e in only] == ["2026-03-31", "2026-04-02", "2026-04-12"]


def test_calendar_uid_is_stable_and_an_extended_deadline_moves_with_a_new_sequence(states, config):
    def extended(state, today):
        cal, _ = calendar(state, config, today)
        hits = [e for e in vevents(cal) if EXTENDED in str(e["SUMMARY"])]
        assert len(hits) == 1
        e = hits[0]
        return str(e["UID"]), e.decoded("DTSTART").isoformat(), int(e["SEQUENCE"]), e.decoded("DTSTAMP")

    uid1, day1, seq1, stamp1 = extended(states["t1"], "2026-02-11")
    uid2, day2, seq2, stamp2 = extended(states["t2"], "2026-03-03")
    uid4, day4, seq4, _ = extended(states["t4"], TODAY)
    assert uid1 == uid2 == uid4
    assert (day1, seq1) == ("2026-03-15", 0)
    assert (day2, seq2) == ("2026-03-31", 1) and stamp2 > stamp1
    assert (day4, seq4) == ("2026-03-31", 1)
    # every UID of t1 that is still in the feed at t2 is the same event
    t1 = {str(e["UID"]) for e in vevents(calendar(states["t1"], config, "2026-02-11")[0])}
    t2 = {str(e["UID"]) for e in vevents(calendar(states["t2"], config, "2026-03-03")[0])}
    assert len(t1 & t2) >= 8


# --- watcher serve -----------------------------------------------------------------------------------------------

def test_serve_answers_over_a_state_and_refuses_a_public_address_without_token(states, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHER_HTTP_TOKEN", "WATCHER_TODAY")}
    base = [sys.executable, "-m", "watcher", "--config", str(CONFIG), "--state", str(states["t4"]), "serve"]
    refused = subprocess.run(base + ["--http", "0.0.0.0:0"], env=env, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "WATCHER_HTTP_TOKEN" in refused.stderr
    missing = subprocess.run([*base[:6], str(tmp_path / "nothing"), "serve"], env=env, capture_output=True, text=True,
                             timeout=30)
    assert missing.returncode == 2 and "no state" in missing.stderr
    p = subprocess.Popen(base + ["--http", "127.0.0.1:0", "--today", TODAY], env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "serving" not in line:        # a log line of the listener comes first
            line = p.stderr.readline()
            assert line, "watcher serve ended early"
        assert "serving http://127.0.0.1:" in line, line
        url = line.split("serving ", 1)[1].split("/ ", 1)[0]
        with urllib.request.urlopen(url + "/api/open", timeout=10) as r:
            assert [w["deadline"] for w in json.load(r)["open"]][:2] == ["2026-03-31", "2026-04-01"]
        with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
            assert r.status == 200
        with urllib.request.urlopen(url + "/calendar.ics", timeout=10) as r:
            assert r.headers["Content-Type"] == "text/calendar; charset=utf-8"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/nothing-here", timeout=10)
        assert e.value.code == 404
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 0
        p.stderr.close()


def test_token_is_required_off_loopback_and_accepted_as_query(store, config):
    from watcher.web import serve
    httpd = serve("127.0.0.1:0", store, None, lambda: (True, "ok"), token="t0ken", config=config)
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "/api/open", timeout=10)
        assert e.value.code == 401
        with urllib.request.urlopen(url + "/standards?token=t0ken", timeout=10) as r:
            assert "/standards/6?token=t0ken" in r.read().decode()
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- in a real browser -------------------------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOT = Path("/tmp/watcher-web-screenshot.png")


@pytest.fixture(scope="module")
def site(store, config):
    """The web view on an ephemeral loopback port, with today fixed to the last snapshot's date."""
    from watcher.web import serve
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WATCHER_TODAY", TODAY)
        httpd = serve("127.0.0.1:0", store, None, lambda: (True, "ok"), config=config)
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
        httpd.shutdown()
        httpd.server_close()


def _install_chromium() -> None:
    """The README's test command alone must be enough on a fresh Debian machine: as root with apt, install Debian's
    chromium and chromium-driver once (no browser download from elsewhere)."""
    import os
    import shutil
    import subprocess
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get") or os.environ.get("WATCHER_NO_APT"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver", "fonts-noto-cjk"], env=env,
                   capture_output=True, timeout=1200)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _install_chromium()
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed and could not be (needs root and "
                    "apt-get: apt-get install -y chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)                 # the system browser: nothing is downloaded
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1200,1400",
                 "--lang=en-US"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def console_errors(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def test_browser_front_page_lists_open_drafts_in_deadline_order(browser, site, tmp_path_factory):
    from selenium.webdriver.common.by import By
    browser.get(site + "/")
    windows = browser.find_elements(By.CSS_SELECTOR, "#open li.window")
    got = [(w.find_element(By.TAG_NAME, "time").text, int(w.find_element(By.CSS_SELECTOR, ".left")
                                                           .get_attribute("data-days-left"))) for w in windows]
    assert got == EXPECTED_OPEN
    first = windows[0]
    assert EXTENDED in first.find_element(By.CSS_SELECTOR, ".title").text
    assert first.find_element(By.CSS_SELECTOR, ".left").text.split("\n") == ["11 days left", "剩余 11 天"]
    assert first.find_element(By.CSS_SELECTOR, ".title a").get_attribute("href").startswith("https://www.tc260.org.cn/")
    assert "soon" not in first.get_attribute("class")
    assert browser.find_elements(By.CSS_SELECTOR, "ol.events li.event")
    shot = tmp_path_factory.mktemp("artefacts") / "web-front-page.png"
    browser.save_screenshot(str(shot))
    shutil.copyfile(shot, SCREENSHOT)
    assert shot.stat().st_size > 10_000
    assert console_errors(browser) == []


def test_browser_standard_page_shows_stages_in_order(browser, site):
    from selenium.webdriver.common.by import By
    browser.get(site + "/standards?q=GBT47020")
    browser.find_element(By.LINK_TEXT, "GB/T 47020-2026").click()
    assert browser.current_url.startswith(site + "/standards/")
    stages = browser.find_elements(By.CSS_SELECTOR, "#stages li")
    assert [s.get_attribute("data-stage") for s in stages] == ["comment", "published"]
    dates = [s.find_element(By.CSS_SELECTOR, ".date").text for s in stages]
    assert dates == sorted(dates) == ["2024-11-05", "2026-02-06"]
    assert "Published · 发布" in stages[1].text and "国家标准 最新" in stages[1].text
    assert "2026-08-01" in browser.find_element(By.CSS_SELECTOR, "dl.card").text
    assert console_errors(browser) == []


def test_browser_hostile_title_renders_as_text(browser, site):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    browser.get(site + "/")
    titles = [t for t in browser.find_elements(By.CSS_SELECTOR, "#open .title") if "恶意标题" in t.text]
    assert len(titles) == 1
    assert titles[0].text == HOSTILE + "[31m"         # shown literally, tags and all; the ESC control is dropped
    assert titles[0].find_elements(By.CSS_SELECTOR, "a, img, script, b") == []
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.find_elements(By.CSS_SELECTOR, "img") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert console_errors(browser) == []


def test_browser_every_page_without_console_errors_and_fits_a_phone(browser, site):
    paths = ["/", "/standards", "/standards?stage=in_force&committee=TC260", "/standards/6", "/watch", "/events",
             "/events?kind=new&page=1", "/sources", "/sources/cac-wxan", "/standards/99999"]
    try:
        browser.set_window_size(390, 844)
        for path in paths:
            browser.get(site + path)
            assert browser.title.endswith("watcher"), path
            overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, overflow)
        errors = [e for e in console_errors(browser) if "/standards/99999" not in e["message"]]
        assert errors == []
    finally:
        browser.set_window_size(1200, 1400)

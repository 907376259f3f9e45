"""Table-driven extractor tests: the scenario snapshots against expected/entries, and real-site variants."""

from __future__ import annotations

import json
import tomllib

import pytest

from conftest import DEMO, FIXTURES, REPLAY, SNAPSHOTS
from watcher.config import Source, load_config
from watcher.decode import to_text
from watcher.errors import ParseError
from watcher.extract import EXTRACTORS, get
from watcher.identify import enrich
from watcher.models import Entry, Page

CONFIG = load_config(DEMO / "sources.toml")
FIELDS = ("key", "url", "title", "published", "deadline", "plan_no", "std_no", "issue_date", "act_date", "stage")


def extract_snapshot(snap: str, source_id: str) -> list[Entry]:
    src = CONFIG.sources[source_id]
    manifest = tomllib.loads((REPLAY / snap / "manifest.toml").read_text(encoding="utf-8"))
    rec = next(r for r in manifest["response"] if r["url"] == src.url)
    if rec.get("unchanged_since"):      # a recorded 304 stands for an earlier snapshot's answer
        return extract_snapshot(rec["unchanged_since"], source_id)
    text, _, bad = to_text((REPLAY / snap / rec["file"]).read_bytes(), rec["headers"].get("Content-Type"))
    assert bad == 0
    entries = get(src.kind).extract(Page(src.url, text), src)
    for e in entries:
        enrich(e, src)
    return entries


CASES = [(snap, sid) for snap in SNAPSHOTS if snap != "t3" for sid in CONFIG.sources]


@pytest.mark.parametrize("snap, source_id", CASES, ids=[f"{s}-{i}" for s, i in CASES])
def test_snapshot_entries(snap, source_id):
    expected = json.loads((FIXTURES / "expected" / "entries" / f"{snap}.json").read_text(encoding="utf-8"))
    exp_entries = expected["sources"][source_id]["entries"]
    got = extract_snapshot(snap, source_id)
    assert [e.key for e in got] == [e["key"] for e in exp_entries]
    for e, exp in zip(got, exp_entries):
        for field in FIELDS:
            if field in exp and not (field in ("deadline", "plan_no") and source_id in ("tc260-drafts", "cac-wxan")
                                     and getattr(e, field) is None):
                # deadlines/plan numbers that only the detail page states are checked in test_detail_pages
                assert getattr(e, field) == exp[field], (field, e, exp)
        if "std_nos" in exp:
            assert set(exp["std_nos"]) <= set(e.std_nos)
        if "comment_request" in exp:
            assert e.extra["comment_request"] == exp["comment_request"]
        if "responsible_tc" in exp:
            assert e.extra["responsible_tc"] == exp["responsible_tc"]


def test_t3_faults_raise_parse_errors():
    with pytest.raises(ParseError, match="#loadingInfoPage"):
        extract_snapshot("t3", "cac-wxan")
    with pytest.raises(ParseError, match="not valid JSON"):
        extract_snapshot("t3", "samr-gb-latest")


def test_detail_pages_give_deadline_plan_and_attachments():
    expected = json.loads((FIXTURES / "expected" / "entries" / "t2.json").read_text(encoding="utf-8"))
    manifest = tomllib.loads((REPLAY / "t2" / "manifest.toml").read_text(encoding="utf-8"))
    files = {r["url"]: r["file"] for r in manifest["response"] if "file" in r}
    checked = 0
    for sid in ("tc260-drafts", "cac-wxan"):
        src = CONFIG.sources[sid]
        ex = get(src.kind)
        rows = {e.key: e for e in extract_snapshot("t2", sid)}
        for exp in expected["sources"][sid]["entries"]:
            e = rows[exp["key"]]
            if not ex.wants_detail(e, src):
                assert sid == "cac-wxan" and not exp.get("comment_request")
                continue
            if exp["url"] not in files:
                continue
            text, _, _ = to_text((REPLAY / "t2" / files[exp["url"]]).read_bytes(), "text/html; charset=utf-8")
            detail = ex.parse_detail(Page(exp["url"], text), e, src)
            if "deadline" in exp:
                assert (e.deadline or detail.get("deadline")) == exp["deadline"], exp["url"]
                if sid == "tc260-drafts":
                    assert detail.get("deadline") == exp["deadline"], "detail sentence agrees with the row"
            if "plan_no" in exp:
                assert detail.get("plan_no") == exp["plan_no"]
            if "attachments" in exp:
                assert detail["attachments"] == [{k: a[k] for k in ("label", "name", "url")} for a in exp["attachments"]]
            checked += 1
    assert checked >= 12


VARIANTS = json.loads((FIXTURES / "variants" / "variants.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", VARIANTS, ids=[c["name"] for c in VARIANTS])
def test_variant_pages(case):
    src = Source(id="v", url=case["url"], kind=case["kind"], name="v", **case.get("source", {}))
    body = (FIXTURES / "variants" / case["file"]).read_bytes()
    text, _, bad = to_text(body, case.get("content_type"))
    assert bad == 0
    got = get(case["kind"]).extract(Page(case["url"], text), src)
    for e in got:
        enrich(e, src)
    assert len(got) == len(case["entries"])
    for e, exp in zip(got, case["entries"]):
        for field, value in exp.items():
            assert getattr(e, field) == value, (field, e)


def test_detail_variants():
    tc = Source(id="t", url="https://www.tc260.org.cn/front/bzzqyjList.html", kind="tc260.suggestions", name="t")
    page = (FIXTURES / "variants" / "tc260_legacy_detail.html").read_text(encoding="utf-8")
    d = get("tc260.suggestions").parse_detail(Page("https://www.tc260.org.cn/front/bzzqyjDetail.html?id=1", page), None, tc)
    assert d["plan_no"] == "20241120-T-469" and d["deadline"] == "2025-10-26"
    assert [a["url"] for a in d["attachments"]] == ["https://www.tc260.org.cn/file/2025-08-26/abc.pdf",
                                                    "https://www.tc260.org.cn/file/2025-08-26/def.pdf"]
    assert d["summary"].startswith("全国网络安全标准化技术委员会归口的国家标准")
    cac = CONFIG.sources["cac-wxan"]
    page = (FIXTURES / "variants" / "cac_detail_deadline_time.html").read_text(encoding="utf-8")
    d = get("cac.column").parse_detail(Page("https://www.cac.gov.cn/2025-11/21/c_1765406372372147.htm", page), None, cac)
    assert d["deadline"] == "2025-12-06" and d["published"] == "2025-11-21"
    assert d["attachments"][0]["name"] == "网络安全标识管理办法.docx"
    assert d["attachments"][0]["url"].startswith("https://www.cac.gov.cn/cms/pub/interact/downloadfile.jsp?")


def test_real_capture_fragments():
    """The verbatim captures in pages/: the portal row fragment and the CAC detail with three attachments."""
    src = CONFIG.sources["tc260-drafts"]
    frag = (FIXTURES / "pages" / "tc260_drafts_list_portal.fragment.html").read_text(encoding="utf-8")
    [e] = get(src.kind).extract(Page(src.url, frag), src)
    assert (e.key, e.deadline, e.published) == ("3bb57023c00a464faf4c2f7b9a5524c7", "2026-04-12", "2026-02-11")
    det = (FIXTURES / "pages" / "tc260_drafts_detail_portal.fragment.html").read_text(encoding="utf-8")
    d = get(src.kind).parse_detail(Page(e.url, det), e, src)
    assert [a["label"] for a in d["attachments"]] == ["征求意见稿", "编制说明"]
    cac = (FIXTURES / "pages" / "cac_detail_c_1784217637474922.html").read_text(encoding="utf-8")
    d = get("cac.column").parse_detail(Page("https://www.cac.gov.cn/2026-06/26/c_1784217637474922.htm", cac), None,
                                       CONFIG.sources["cac-wxan"])
    assert len(d["attachments"]) >= 2 and all("downloadfile.jsp" in a["url"] for a in d["attachments"])


def test_css_kind_on_tc260_notices_and_attribute_selectors():
    src = CONFIG.sources["tc260-notices"]
    got = extract_snapshot("t2", "tc260-notices")
    assert got[0].summary and "GB/T 47020" in got[0].summary
    assert got[0].std_nos == ["GB/T 47020-2026"]
    assert all(e.url.startswith("https://www.tc260.org.cn/portal/article/2/") for e in got)
    assert src.link == "a@href"


def test_registry_lists_every_kind_with_docs():
    assert set(EXTRACTORS) == {"css", "tc260.suggestions", "samr.std_search", "samr.gb_query", "samr.gb_advanced",
                               "samr.notices", "cac.column", "cac.jsonlist"}
    assert all((type(x).__doc__ or "").strip() for x in EXTRACTORS.values())

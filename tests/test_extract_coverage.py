"""Coverage additions of the extractors, table-driven over tests/fixtures/coverage/ (provenance: PROVENANCE.md there):
English titles, titles without highlight tags or badges, national standard announcements, gbAdvancedSearchPage,
gbDetailed, paging and watch-list lookups."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import given, strategies as st

from conftest import DEMO, FIXTURES
from watcher.config import Source, load_config
from watcher.errors import ParseError
from watcher.extract import EXTRACTORS, get
from watcher.extract.common import node_text, parse_html, strip_inline_tags, strip_markers, title_text
from watcher.extract.samr import parse_gb_detailed, watch_family, watch_matches, watch_request
from watcher.extract.samr_notices import notice_kind, parse_notice_page
from watcher.identify import enrich
from watcher.models import Entry, Page

COV = FIXTURES / "coverage"
PAGES = FIXTURES / "pages"
CONFIG = load_config(DEMO / "sources.toml")

NOTICES_URL = ("https://std.samr.gov.cn/noc/search/nocGBPage?searchText=&sortOrder=desc&sortName=NOTICE_DATE"
               "&pageSize=15&pageNumber=1")
ADV_PLANS_URL = "https://std.samr.gov.cn/gb/search/gbAdvancedSearchPage?tid=1&std_p16=TC260&pageNumber=1&pageSize=20"
ADV_STDS_URL = "https://std.samr.gov.cn/gb/search/gbAdvancedSearchPage?tid=2&std_p16=TC260&pageNumber=1&pageSize=20"
GBQUERY_URL = ("https://std.samr.gov.cn/gb/search/gbQueryPage?searchText=GB%2FT%2022080&ics=&state=&ISSUE_DATE="
               "&sortOrder=desc&pageSize=20&pageNumber=1")
STDPAGE_URL = "https://std.samr.gov.cn/search/stdPage?q=&tid=BV_GB&pageNo=1"
DETAIL_URL = "https://std.samr.gov.cn/gb/search/gbDetailed?id="


def src(kind: str, url: str, **kw) -> Source:
    return Source(id="t", url=url, kind=kind, name="t", **kw)


def extract(kind: str, url: str, file, **kw) -> list[Entry]:
    source = src(kind, url, **kw)
    path = file if not isinstance(file, str) else COV / file
    entries = get(kind).extract(Page(url, path.read_text(encoding="utf-8")), source)
    for e in entries:
        enrich(e, source)
    return entries


def detail(file: str, url: str = DETAIL_URL + "X") -> dict:
    return parse_gb_detailed(Page(url, (COV / file).read_text(encoding="utf-8")))


# --- 1. Entry fields ------------------------------------------------------------------------------------------------

def test_entry_has_english_title_and_replacement_fields_with_defaults():
    a, b = Entry(key="k", url="u", title="t"), Entry(key="k2", url="u", title="t")
    assert (a.title_en, a.replaces, a.replaced_by) == (None, [], [])
    a.replaces.append("GB/T 1-2010")
    assert b.replaces == []                                  # no shared mutable default
    d = a.as_dict()
    assert d["title_en"] is None and d["replaces"] == ["GB/T 1-2010"] and d["replaced_by"] == []
    assert list(d)[-3:] == ["title_en", "replaces", "replaced_by"]


# --- 2. English titles and the responsible committee ----------------------------------------------------------------

ENGLISH = [
    # (kind, url, file, key, title_en, responsible_tc)
    ("samr.std_search", STDPAGE_URL, PAGES / "samr_std_search_stdpage_iframe.html", "71F772D7DE2AD3A7E05397BE0A0AB82A",
     "Lubricating oils for turbines", "国家能源局"),                      # REAL card, label 归口部门
    ("samr.std_search", STDPAGE_URL, PAGES / "samr_std_search_stdpage_iframe.html", "71F772D7B830D3A7E05397BE0A0AB82A",
     "Turbine oils L-TSA", "中国石油化工集团公司"),
    ("samr.std_search", STDPAGE_URL, "samr_stdpage.plain.html", "abf354bf7e6c109afcd603fdb2b3126e",
     "Technical requirements for electronic waybill of cold chain transport",
     "全国智能运输系统标准化技术委员会智慧交通物流分技术委员会"),               # REAL jtst values, label 归口单位
    ("samr.gb_query", GBQUERY_URL, "samr_gbquery_watch_gbt22080.json", "3F1E0C4A2B8D5E70E06397BE0A0A2208",
     "Cybersecurity technology—Information security management systems—Requirements", None),
    ("samr.gb_advanced", ADV_PLANS_URL, "samr_gbadvanced_tid1_tc260.json", "0C4B2E1F8A7D6C5B4A39281706F5E401",
     "Information security technology—Evaluation method for open source code security of software products",
     "全国网络安全标准化技术委员会"),                                        # C_E_NAME
    ("samr.gb_advanced", ADV_PLANS_URL, "samr_gbadvanced_tid1_tc260.json", "0C4B2E1F8A7D6C5B4A39281706F5E403",
     "Information security technology—Cybersecurity requirements for critical information infrastructure protection",
     "全国网络安全标准化技术委员会"),                                        # E_NAME
    ("samr.gb_advanced", ADV_STDS_URL, "samr_gbadvanced_tid2_tc260.json", "3F1E0C4A2B8D5E70E06397BE0A0A2208",
     "Cybersecurity technology—Information security management systems—Requirements", "全国网络安全标准化技术委员会"),
]


@pytest.mark.parametrize("kind, url, file, key, title_en, responsible", ENGLISH,
                         ids=[f"{c[0]}-{c[3][:8]}" for c in ENGLISH])
def test_english_titles_and_responsible_committee(kind, url, file, key, title_en, responsible):
    e = {x.key: x for x in extract(kind, url, file)}[key]
    assert e.title_en == title_en
    assert e.extra.get("responsible_tc") == responsible


def test_real_card_keeps_adoption_and_status():
    got = extract("samr.std_search", STDPAGE_URL, PAGES / "samr_std_search_stdpage_iframe.html")
    assert [(e.std_no, e.title, e.status, e.extra["adoption"]) for e in got] == [
        ("GB 11120-2011", "涡轮机油", "现行", "非等效 ISO 8068:2006"),
        ("GB 11120-1989", "L-TSA 汽轮机油", "废止", "非等效 ISO 8068:1987")]


@pytest.mark.parametrize("label", ["归口单位", "归口部门", "技术归口"])
def test_every_spelling_of_the_responsible_committee_label(label):
    card = (COV / "samr_stdpage.plain.html").read_text(encoding="utf-8").replace("归口单位", label)
    source = src("samr.std_search", STDPAGE_URL)
    got = get("samr.std_search").extract(Page(STDPAGE_URL, card), source)
    for e in got:
        enrich(e, source)
    assert got[1].extra["responsible_tc"] == "全国网络安全标准化技术委员会" and got[1].committee == "TC260"


# --- 3. Titles as people read them ----------------------------------------------------------------------------------

MARKER_KINDS = [
    # (stem, kind, url, source settings, expected titles in order)
    ("tc260_suggestion", "tc260.suggestions", "https://www.tc260.org.cn/portal/suggestion", {},
     ["关于国家标准《数据安全技术 个人信息保护合规审计专业机构能力要求》征求意见稿征求意见的通知",
      "关于国家标准《数据安全技术 数据接口安全风险监测方法》征求意见稿征求意见的通知"]),
    ("cac_column", "cac.column", "https://www.cac.gov.cn/hdfw/wxan/A093802index_1.htm", {},
     ["国家互联网信息办公室关于《国务院关于保障未成年人健康安全使用网络的规定（征求意见稿）》公开征求意见的通知",
      "关于征求《政务移动互联网应用程序管理要求》强制性国家标准（征求意见稿）意见的通知",
      "关于全国网络安全标准化技术委员会换届及征集委员的通知"]),
    ("samr_stdpage", "samr.std_search", STDPAGE_URL, {},
     ["冷链运输电子运单技术要求", "信息安全技术 关键信息基础设施安全保护要求"]),
    ("css_notices", "css", "https://www.tc260.org.cn/portal/cms/work/10/2",
     {"rows": "ul.news-list > li", "title": ".title", "link": "a@href", "date": "span.date"},
     ["《网络安全技术 软件物料清单数据格式》国家标准发布", "《数据安全技术 个人信息保护合规审计要求》等3项国标发布",
      "关于征集2026年度第二批网络安全国家标准需求的通知"]),
]
MARKER_CASES = [(stem, kind, url, kw, titles, variant) for stem, kind, url, kw, titles in MARKER_KINDS
                for variant in ("plain", "highlight", "badge")]


@pytest.mark.parametrize("stem, kind, url, kw, titles, variant", MARKER_CASES,
                         ids=[f"{c[1]}-{c[5]}" for c in MARKER_CASES])
def test_highlight_tags_and_badges_change_neither_title_nor_key(stem, kind, url, kw, titles, variant):
    plain = extract(kind, url, f"{stem}.plain.html", **kw)
    got = extract(kind, url, f"{stem}.{variant}.html", **kw)
    assert [e.title for e in got] == titles
    assert [e.key for e in got] == [e.key for e in plain]
    assert [(e.published, e.std_no, e.deadline) for e in got] == [(e.published, e.std_no, e.deadline) for e in plain]


def test_title_keyed_css_row_keeps_its_key_under_badges():
    keys = {v: extract("css", "https://www.tc260.org.cn/portal/cms/work/10/2", f"css_notices.{v}.html",
                       rows="ul.news-list > li", title=".title", link="a@href", date="span.date")[2].key
            for v in ("plain", "highlight", "badge")}
    assert set(keys.values()) == {"关于征集2026年度第二批网络安全国家标准需求的通知"}


@pytest.mark.parametrize("markup, text", [
    ("<a>网络安全服务能力成熟度<sacinfo>模型</sacinfo></a>", "网络安全服务能力成熟度模型"),
    ("<a>数据<em>安全</em><font color=red>技术</font><b>要求</b><span class='highlight'>x</span></a>", "数据安全技术要求x"),
    ("<div><p>第一段</p><p>第二段</p></div>", "第一段 第二段"),
    ("<table><tr><td>1</td><td>GB/T 1-2010</td></tr></table>", "1 GB/T 1-2010"),
    ("<div>上一行<br>下一行</div>", "上一行 下一行"),
    ("<div>正文<script>var x = 1;</script><style>p{}</style><!-- c --></div>", "正文"),
    ("<li><a>标题</a><span>2026-01-01</span></li>", "标题2026-01-01"),
    ("<span class='en-code'><sacinfo>GB</sacinfo>/<sacinfo>T</sacinfo> 47944-2026</span>", "GB/T 47944-2026"),
    ("<a>&amp;lt;b&amp;gt; A&nbsp;&nbsp;B</a>", "<b> A B"),
])
def test_node_text_joins_inline_tags_and_separates_blocks(markup, text):
    assert node_text(parse_html(markup).css_first("body").child) == text


@pytest.mark.parametrize("markup, title", [
    ("<a><span class='top'>置顶</span>关于A的通知</a>", "关于A的通知"),
    ("<a>关于A的通知<img src='new.gif'><sup>NEW</sup></a>", "关于A的通知"),
    ("<a>【置顶】关于A的通知 [新]</a>", "关于A的通知"),
    ("<a><i class='icon-top'></i> 关于A的通知 <span class='news-logo news-logo-new'></span></a>", "关于A的通知"),
    ("<a><em>新</em>一代信息技术</a>", "新一代信息技术"),           # a one-character hit is the title's own word
    ("<a>关于<b>新</b>标准的通知</a>", "关于新标准的通知"),           # a marker word in the middle stays
    ("<a><span class='title-top'>一个完整的标题在徽章类里</span></a>", "一个完整的标题在徽章类里"),
    ("<a>NEW</a>", "NEW"),                                          # nothing else: keep what there is
])
def test_title_text_drops_badges_at_the_ends(markup, title):
    assert title_text(parse_html(markup).css_first("a")) == title


@pytest.mark.parametrize("raw, title", [
    ("【置顶】关于A的通知", "关于A的通知"), ("[置顶] 关于A的通知", "关于A的通知"), ("置顶关于A的通知", "关于A的通知"),
    ("关于A的通知 NEW", "关于A的通知"), ("关于A的通知NEW", "关于A的通知"), ("关于A的通知（新）", "关于A的通知"),
    ("NEW 关于A的通知 [hot]", "关于A的通知"), ("Renew the plan", "Renew the plan"), ("新一代", "新一代"),
    ("What's new", "What's new"), ("New rules for NEW", "New rules for NEW"), ("[NEW] New rules", "New rules"),
])
def test_strip_markers(raw, title):
    assert strip_markers(raw) == title


@pytest.mark.parametrize("raw, text", [
    ("<sacinfo>GB</sacinfo>/<sacinfo>T</sacinfo> 22080-2016", "GB/T 22080-2016"),
    ("信息技术 <em>信息安全</em>管理体系", "信息技术 信息安全管理体系"),
    ('<font color="red">换届</font>通知', "换届通知"), ("<span class='hl'>安全</span>要求", "安全要求"),
    ("基于<IPv6>的要求", "基于<IPv6>的要求"), ("&lt;em&gt;x&lt;/em&gt;", "x"),
])
def test_json_fields_lose_highlight_tags_without_spaces(raw, text):
    assert strip_inline_tags(raw) == text


def test_jsonlist_topic_without_markup_or_markers():
    body = json.dumps({"list": [
        {"topic": "【置顶】关于《<font color='red'>网络</font>数据安全管理条例》的通知", "infourl": "//www.cac.gov.cn/a.htm",
         "pubtime": "2026-01-02 10:00:00"},
        {"topic": "网络安全标识管理办法 NEW", "infourl": "//www.cac.gov.cn/b.htm", "pubtime": 1767312000000}]},
        ensure_ascii=False)
    s = src("cac.jsonlist", "https://www.cac.gov.cn/cms/JsonList")
    got = get("cac.jsonlist").extract(Page(s.url, body), s)
    assert [(e.title, e.published) for e in got] == [("关于《网络数据安全管理条例》的通知", "2026-01-02"),
                                                     ("网络安全标识管理办法", "2026-01-02")]


# --- 5. national standard announcements ------------------------------------------------------------------------------

NOTICE_ROWS = [
    # (file, key, title, published, notice_no, std_count, kind)
    ("samr_nocgbpage_2019.json", "7A28FA1A67F4F84E156A748A777F56A6",
     "关于批准发布《水质 石油类（紫外法）标准 样品》等16项国家标准样品的公告", "2019-07-25", "2019年第8号", None, "sample"),
    ("samr_nocgbpage_2026.json", "A1B2C3D4E5F60718293A4B5C6D7E2604",
     "国家市场监督管理总局（国家标准化管理委员会）关于批准发布《网络安全技术 软件物料清单数据格式》等62项推荐性国家标准的公告",
     "2026-02-06", "2026年第4号", 62, "gb"),
    ("samr_nocgbpage_2026.json", "A1B2C3D4E5F60718293A4B5C6D7E2603",
     "关于批准发布GB/T 99905-2020《示例产品通用规范》国家标准第1号修改单的公告", "2026-01-28", "2026年第3号", 1, "amendment"),
    ("samr_nocgbpage_2026.json", "A1B2C3D4E5F60718293A4B5C6D7E2602",
     "关于批准发布《示例合金成分分析 标准 样品》等12项国家标准样品的公告", "2026-01-20", "2026年第2号", 12, "sample"),
    ("samr_nocgbpage_2026.json", "A1B2C3D4E5F60718293A4B5C6D7E2601",
     "关于废止《示例技术规范》等15项推荐性国家标准的公告", "2026-01-09", "2026年第1号", 15, "other"),
    ("samr_nocgbpage_2026.json", "A1B2C3D4E5F60718293A4B5C6D7E2514",
     "国家市场监督管理总局（国家标准化管理委员会）关于批准发布《网络安全技术 信息系统灾难恢复规范》等208项推荐性国家标准和3项"
     "国家标准修改单的公告", "2025-06-30", "2025年第14号", 211, "gb"),
    ("samr_nocgbpage_2026.json", "A1B2C3D4E5F60718293A4B5C6D7E2401",
     "国家市场监督管理总局（国家标准化管理委员会）关于批准发布《数据安全技术 数据分类分级规则》等48项推荐性国家标准的公告",
     "2024-03-15", "2024年第1号", None, "gb"),
]


@pytest.mark.parametrize("file, key, title, published, no, count, kind", NOTICE_ROWS,
                         ids=[f"{r[0][17:21]}-{r[6]}-{r[1][-4:]}" for r in NOTICE_ROWS])
def test_notice_list_rows_of_both_shapes(file, key, title, published, no, count, kind):
    e = {x.key: x for x in extract("samr.notices", NOTICES_URL, file)}[key]
    assert (e.title, e.published, e.extra.get("notice_no"), e.extra.get("std_count"), e.extra["notice_kind"]) == \
        (title, published, no, count, kind)
    assert e.url == e.extra["detail_url"] == f"https://std.sacinfo.org.cn/gnoc/queryInfo?id={key}"


def test_notice_list_skips_rows_it_cannot_read_and_keeps_total():
    got = extract("samr.notices", NOTICES_URL, "samr_nocgbpage_2026.json")
    assert len(got) == 6 and got.total == 7                 # an object title, no PID/id, a string, null: skipped
    assert got[0].committee == "TC260"                       # the first named standard carries a TC260 prefix
    old = extract("samr.notices", NOTICES_URL, "samr_nocgbpage_2019.json")[0]
    assert old.extra["row_id"] == "8F07DD166DF93443E05397BE0A0A17EA"


@pytest.mark.parametrize("kind, wants", [("gb", True), ("amendment", True), ("sample", False), ("other", False)])
def test_notice_detail_wanted_for_publications_and_amendments(kind, wants):
    ex = get("samr.notices")
    e = Entry(key="k", url="u", title="t", extra={"notice_kind": kind})
    assert ex.has_detail and ex.wants_detail(e, src("samr.notices", NOTICES_URL)) is wants
    assert ex.wants_detail(e, src("samr.notices", NOTICES_URL, detail_pages=False)) is False


@pytest.mark.parametrize("title, kind", [
    ("关于批准发布《A》等3项国家标准化指导性技术文件的公告", "gb"),
    ("关于批准发布《A》等12项强制性国家标准的公告", "gb"),
    ("关于批准发布《A》国家标准第1号修改单等2项国家标准修改单的公告", "amendment"),
    ("关于批准发布《A 标准 样品》等3项国家标准样品的公告", "sample"),
    ("关于废止《A》等15项推荐性国家标准的公告", "other"),
    ("关于《A》国家标准更正的公告", "other"), ("", "other"),
])
def test_notice_kinds_from_titles(title, kind):
    assert notice_kind(title) == kind


SACINFO = "https://std.sacinfo.org.cn/gnoc/queryInfo?id=A1B2C3D4E5F60718293A4B5C6D7E2514"
OPENSTD = "https://openstd.samr.gov.cn/bzgk/std/nd?no="
NOTICE_PAGES = [
    # (file, url, ntitle, notice_no, [(std_no, title, replaces, issue_date, act_date)], attachments)
    ("sacinfo_queryinfo_5col.html", SACINFO, "中华人民共和国国家标准公告 2025年第14号", "2025年第14号", [
        ("GB/T 20988-2025", "网络安全技术 信息系统灾难恢复规范", ["GB/T 20988-2007"], None, "2026-01-01"),
        ("GB/T 22080-2025", "网络安全技术 信息安全管理体系 要求", ["GB/T 22080-2016"], None, "2026-01-01"),
        ("GB/T 45909-2025", "网络安全技术 数字水印技术实现指南", [], None, "2026-01-01"),      # empty 代替 cell
        ("GB/T 99901-2025", "示例合并标准（虚构）", ["GB/T 1-2010", "GB/T 2-2011"], None, "2026-01-01")], []),
    ("sacinfo_queryinfo_3col.html", SACINFO, "中华人民共和国国家标准公告 2026年第4号", "2026年第4号", [
        ("GB/T 47020-2026", "网络安全技术 软件物料清单数据格式", [], None, None),
        ("GB/T 47031-2026", "网络安全技术 示例产品安全技术要求", [], None, None)], []),
    ("sacinfo_queryinfo_attachment.html", SACINFO, "中华人民共和国国家标准公告 2023年第13号", "2023年第13号", [],
     ["http://zxd.sacinfo.org.cn/gb_notice/2023/20230917-13.wps"]),
    ("openstd_nd_4col_conversion.html", OPENSTD + "9", "关于示例强制性国家标准转化为推荐性国家标准的公告", None, [
        ("GB/T 99903-2010", "示例设备安全要求（虚构）", ["GB 99903-2010"], None, None),
        ("GB/T 99904-2012", "示例系统技术规范（虚构）", ["GB 99904-2012"], None, None)], []),
    ("openstd_nd_5col.html", OPENSTD + "1783", "中华人民共和国国家标准公告 2022年第8号", "2022年第8号", [
        ("GB 18030-2022", "信息技术 中文编码字符集", [], "2022-07-19", "2023-08-01"),
        ("GB/T 99909-2022", "示例标准（虚构）", [], "2022-07-19", None)], []),
]


@pytest.mark.parametrize("file, url, ntitle, no, standards, attachments", NOTICE_PAGES, ids=[p[0] for p in NOTICE_PAGES])
def test_notice_pages(file, url, ntitle, no, standards, attachments):
    e = Entry(key="k", url=url, title="t", extra={"notice_kind": "gb"})
    d = get("samr.notices").parse_detail(Page(url, (COV / file).read_text(encoding="utf-8")), e,
                                         src("samr.notices", NOTICES_URL))
    assert (d["ntitle"], d["notice_no"]) == (ntitle, no)
    assert [(s["std_no"], s["title"], s["replaces"], s["issue_date"], s["act_date"]) for s in d["standards"]] == standards
    assert d["std_nos"] == [s[0] for s in standards]
    assert [a["url"] for a in d.get("attachments", [])] == attachments


def test_openstd_links_carry_the_hcno():
    d = parse_notice_page(Page(OPENSTD + "1783", (COV / "openstd_nd_5col.html").read_text(encoding="utf-8")))
    assert d["standards"][0]["hcno"] == "0A1B2C3D4E5F60718293A4B5C6D71783"
    assert d["standards"][0]["url"] == "https://openstd.samr.gov.cn/bzgk/std/newGbInfo?hcno=0A1B2C3D4E5F60718293A4B5C6D71783"


@pytest.mark.parametrize("rows, expected", [
    # a table without a recognisable header is read by cell count, as the openstd scripts do
    ("<tr><td>1</td><td>GB/T 1-2020</td><td>名称一</td></tr>", [("GB/T 1-2020", "名称一", [], None, None)]),
    ("<tr><td>1</td><td>GB 2-2010</td><td>名称二</td><td><a href='newGbInfo?hcno=AB'>GB/T 2-2010</a></td></tr>",
     [("GB/T 2-2010", "名称二", ["GB 2-2010"], None, None)]),
    ("<tr><td>1</td><td>GB/T 3-2025</td><td>名称三</td><td>GB/T 3-2015</td><td>2026-01-01</td></tr>",
     [("GB/T 3-2025", "名称三", ["GB/T 3-2015"], None, "2026-01-01")]),
    ("<tr><td>1</td><td>GB/T 4-2025</td><td>名称四</td><td>2025-06-30</td><td>2026-01-01</td><td></td></tr>",
     [("GB/T 4-2025", "名称四", [], "2025-06-30", "2026-01-01")]),
    ("<tr><td>序　号</td><td>标准号</td><td>中文名称</td><td>代替</td><td>发布日期</td><td>实施日期</td></tr>"
     "<tr><td>1</td><td>GB/T 5—2025</td><td>名称五</td><td>GB/T 5-2015、GB/T 6-2016</td><td>2025-06-30</td>"
     "<td>2026-01-01</td></tr>", [("GB/T 5-2025", "名称五", ["GB/T 5-2015", "GB/T 6-2016"], "2025-06-30", "2026-01-01")]),
])
def test_notice_tables_by_header_or_cell_count(rows, expected):
    d = parse_notice_page(Page(OPENSTD + "1", f"<div class='content'><table>{rows}</table></div>"))
    assert [(s["std_no"], s["title"], s["replaces"], s["issue_date"], s["act_date"]) for s in d["standards"]] == expected


def test_notice_page_without_table_or_attachment_is_a_parse_error():
    with pytest.raises(ParseError):
        parse_notice_page(Page(SACINFO, "<html><body><p class='ntitle'>公告</p><p>系统维护中</p></body></html>"))


# --- 6. gbAdvancedSearchPage -----------------------------------------------------------------------------------------

ADVANCED = [
    # (url, file, key, plan_no, std_no, status, stage, published, extra subset)
    (ADV_PLANS_URL, "samr_gbadvanced_tid1_tc260.json", "0C4B2E1F8A7D6C5B4A39281706F5E401", "20230259-T-469", None,
     "正在审查", "review", "2023-12-08",
     {"std_form": "Z", "end_date": "2025-12-08", "TA_CODE": "TC260", "state": "制定中", "stage_code": "40",
      "draft_units": ["中国信息通信研究院", "示例网络安全有限公司"]}),
    (ADV_PLANS_URL, "samr_gbadvanced_tid1_tc260.json", "0C4B2E1F8A7D6C5B4A39281706F5E402", "20262852-T-469", None,
     "正在起草", "drafting", "2026-06-27", {"std_form": "Z"}),
    (ADV_PLANS_URL, "samr_gbadvanced_tid1_tc260.json", "0C4B2E1F8A7D6C5B4A39281706F5E403", "20259951-T-469", None,
     "正在审批", "approval", "2025-03-03",
     {"std_form": "X", "revision": True, "TA_CODE": "TC260", "draft_units": ["示例研究院", "示例大学", "示例公司"]}),
    (ADV_STDS_URL, "samr_gbadvanced_tid2_tc260.json", "3F1E0C4A2B8D5E70E06397BE0A0A2208", "20229941-T-469",
     "GB/T 22080-2025", "现行", "in_force", "2025-06-30", {"notice_no": "2025年第14号", "tid": "2"}),
    (ADV_STDS_URL, "samr_gbadvanced_tid2_tc260.json", "301E0388CB75788DE06397BE0A0AE1B4", None, "GB 45438-2025",
     "现行", "in_force", "2025-02-28", {"std_nature": "强制性", "TA_CODE": "TC260"}),
]


@pytest.mark.parametrize("url, file, key, plan_no, std_no, status, stage, published, extra", ADVANCED,
                         ids=[a[2][-4:] for a in ADVANCED])
def test_gb_advanced_rows(url, file, key, plan_no, std_no, status, stage, published, extra):
    e = {x.key: x for x in extract("samr.gb_advanced", url, file)}[key]
    assert (e.plan_no, e.std_no, e.status, e.stage, e.published, e.committee) == \
        (plan_no, std_no, status, stage, published, "TC260")
    assert e.url == DETAIL_URL + key
    assert {k: e.extra.get(k) for k in extra} == extra


def test_gb_advanced_replacements_and_dates():
    got = {e.std_no: e for e in extract("samr.gb_advanced", ADV_STDS_URL, "samr_gbadvanced_tid2_tc260.json")}
    assert got["GB/T 22080-2025"].replaces == ["GB/T 22080-2016"]
    assert got["GB/T 20988-2025"].replaces == ["GB/T 20988-2007"]       # C_STD_CODE with an em dash, epoch date
    assert got["GB/T 20988-2025"].issue_date == "2025-06-30"
    assert got["GB/T 99908-2026"].replaces == ["GB/T 99906-2010", "GB/T 99907-2012"]
    assert got["GB/T 43697-2024"].replaces == [] and got["GB/T 43697-2024"].act_date == "2024-10-01"


def test_gb_advanced_skips_unreadable_rows():
    got = extract("samr.gb_advanced", ADV_PLANS_URL, "samr_gbadvanced_tid1_tc260.json")
    assert len(got) == 3 and got.total == 4


# --- 7. gbDetailed ---------------------------------------------------------------------------------------------------

DETAILED = [
    ("gbdetailed_gbt22080-2025_in_force.html", {
        "title": "网络安全技术 信息安全管理体系 要求",
        "title_en": "Cybersecurity technology—Information security management systems—Requirements",
        "std_no": "GB/T 22080-2025", "status": "现行", "state": "现行", "stage": "in_force",
        "issue_date": "2025-06-30", "act_date": "2026-01-01", "replaces": ["GB/T 22080-2016"], "replaced_by": [],
        "plan_no": "20229941-T-469", "committee": "TC260", "ta_code": "TC260",
        "responsible_tc": "全国网络安全标准化技术委员会", "current_standard": None, "current_plan": None,
        "revision": False, "std_type": "国家标准"}),
    ("gbdetailed_gbt22080-2016_superseded.html", {
        "std_no": "GB/T 22080-2016", "status": "被代替", "stage": "superseded", "replaces": ["GB/T 22080-2008"],
        "replaced_by": ["GB/T 22080-2025"], "plan_no": None, "withdrawn_date": "2026-01-01",
        "current_standard": {"std_no": "GB/T 22080-2025", "plan_no": None, "id": "3F1E0C4A2B8D5E70E06397BE0A0A2208",
                             "url": DETAIL_URL + "3F1E0C4A2B8D5E70E06397BE0A0A2208",
                             "title": "网络安全技术 信息安全管理体系 要求", "status": "现行"}}),
    ("gbdetailed_gbt39204-2022_revision.html", {
        "std_no": "GB/T 39204-2022", "status": "现行", "stage": "under_revision", "revision": True,
        "reexam_result": "修订", "last_reexam_date": "2025-01-15", "issue_date": "2022-10-12", "act_date": "2023-05-01",
        "current_plan": {"std_no": None, "plan_no": "20259951-T-469", "id": "0C4B2E1F8A7D6C5B4A39281706F5E403",
                         "url": DETAIL_URL + "0C4B2E1F8A7D6C5B4A39281706F5E403",
                         "title": "信息安全技术 关键信息基础设施安全保护要求", "status": "正在审批"}}),
    ("gbdetailed_gbt7714-2005_withdrawn.html", {
        "std_no": "GB/T 7714-2005", "status": "废止", "stage": "withdrawn", "withdrawn_date": "2015-12-01",
        "replaces": ["GB/T 7714-1987"], "replaced_by": ["GB/T 7714-2015"], "committee": "TC4",
        "responsible_tc": "全国信息与文献标准化技术委员会", "ccs": "A14", "ics": "01.140.20"}),
    ("jtst_gbdetailed_gbt35552.2-2026.excerpt.html", {                                       # the REAL template
        "title": "船舶自动识别系统(AIS)B类设备技术要求 第2部分：自组织时分多址（SOTDMA）",
        "title_en": "Technical requirements for Class B shipborne equipment of the automatic identification "
                    "system(AIS) - Part 2: Self-organising time division multiple access (SOTDMA) techniques",
        "std_no": "GB/T 35552.2-2026", "status": "即将实施", "state": "即将实施", "stage": "published",
        "issue_date": "2026-03-31", "act_date": "2026-10-01", "plan_no": "20231089-T-348", "ta_code": "JTC4",
        "committee": "JTC4", "responsible_tc": "交通运输信息通信及导航标准化技术委员会", "ccs": "R28",
        "ics": "33.060.01;35.020", "replaces": [], "current_link": None, "reexam_result": None,
        "status_labels": ["国家标准", "推荐性标准", "即将实施"]}),
]


@pytest.mark.parametrize("file, expected", DETAILED, ids=[d[0] for d in DETAILED])
def test_gb_detailed_pages(file, expected):
    d = detail(file)
    assert {k: d[k] for k in expected} == expected


def test_gb_detailed_related_standards_and_plans_of_the_real_template():
    d = detail("jtst_gbdetailed_gbt35552.2-2026.excerpt.html", "https://jtst.mot.gov.cn/gb/search/gbDetailed?id=X")
    assert len(d["related"]) == 10 and len(d["draft_units"]) == 7
    assert d["related"][0] == {"std_no": None, "plan_no": "20231089-T-348", "id": "15a6be543b54f3d8ae7f83c8607b0775",
                               "url": "https://jtst.mot.gov.cn/gb/search/gbDetailed?id=15a6be543b54f3d8ae7f83c8607b0775",
                               "title": "船舶自动识别系统(AIS)B类设备技术要求 第2部分：自组织时分多址（SOTDMA）"}
    assert [r["std_no"] for r in d["related"] if r["std_no"]] == [
        "GB/T 35552.1-2017", "GB/T 35552.1-2026", "GB/T 45986-2025", "GB/T 46415-2025"]
    assert d["related"][-1]["title"] == "MTC31-2025-01 船舶自动识别系统（AIS）校准规范"


def test_gb_detailed_label_variants():
    page = (COV / "gbdetailed_gbt39204-2022_revision.html").read_text(encoding="utf-8")
    labelled = page.replace('<span class="s-status label label-primary">现行</span>',
                            '<span class="s-status label label-primary">现行</span>'
                            '<span class="s-status label label-warning">修订</span>')
    d = parse_gb_detailed(Page(DETAIL_URL + "X", labelled))
    assert (d["status"], d["stage"], d["revision"]) == ("修订", "under_revision", True)
    several = (COV / "gbdetailed_gbt22080-2025_in_force.html").read_text(encoding="utf-8").replace(
        '<dd class="basicInfo-item value">GB/T 22080-2016</dd>',
        '<dd class="basicInfo-item value">GB/T 99906-2010；GB/T 99907—2012</dd>').replace("全部代替标准", "代替标准")
    assert parse_gb_detailed(Page(DETAIL_URL + "X", several))["replaces"] == ["GB/T 99906-2010", "GB/T 99907-2012"]
    squeezed = page.replace("关键信息基础设施安全保护要求</h4>",
                            '关键信息基础设施安全保护要求\n<a href="/attachment/x.pdf">标准文本</a></h4>')
    assert parse_gb_detailed(Page(DETAIL_URL + "X", squeezed))["title"] == "信息安全技术 关键信息基础设施安全保护要求"


def test_gb_detailed_rejects_other_pages():
    with pytest.raises(ParseError):
        parse_gb_detailed(Page(DETAIL_URL + "X", "<html><body><h4 class='modal-title'>跳转提示</h4></body></html>"))


SAMR_KINDS = ["samr.std_search", "samr.gb_query", "samr.gb_advanced"]


@pytest.mark.parametrize("kind", SAMR_KINDS)
def test_samr_detail_pages_only_for_watch_lookups(kind):
    ex = get(kind)
    e = Entry(key="k", url=DETAIL_URL + "k", title="t")
    assert ex.has_detail
    assert ex.wants_detail(e, SimpleNamespace(detail_pages=True, watch=True)) is True
    assert ex.wants_detail(e, SimpleNamespace(detail_pages=False, watch=True)) is False
    assert ex.wants_detail(e, SimpleNamespace(detail_pages=True)) is False
    assert ex.wants_detail(e, src(kind, STDPAGE_URL)) is False
    detail_of = ex.parse_detail(Page(DETAIL_URL + "X", (COV / "gbdetailed_gbt22080-2025_in_force.html").read_text(
        encoding="utf-8")), e, src(kind, STDPAGE_URL))
    assert {"title_en", "replaces", "std_no", "plan_no", "act_date", "issue_date", "status"} <= set(detail_of)
    assert set(detail_of) & set(Entry.__dataclass_fields__) >= {"title_en", "replaces", "replaced_by", "stage"}


def test_shipped_demo_sources_fetch_no_new_detail_pages():
    for source in CONFIG.sources.values():
        if source.kind.startswith("samr."):
            assert not get(source.kind).wants_detail(Entry(key="k", url="u", title="t"), source), source.id


# --- 8. paging -------------------------------------------------------------------------------------------------------

PAGING = [
    # (kind, url, method, form, page_no, expected url, expected form)
    ("samr.std_search", "https://std.samr.gov.cn/search/stdPage?q=&tid=BV_GB_PLAN&op=CURRENT_LINK%3A%22%E6%AD%A3%E5%9C%A8"
     "%E5%BE%81%E6%B1%82%E6%84%8F%E8%A7%81%22&pageNo=1", "GET", {}, 3,
     "https://std.samr.gov.cn/search/stdPage?q=&tid=BV_GB_PLAN&op=CURRENT_LINK%3A%22%E6%AD%A3%E5%9C%A8%E5%BE%81%E6%B1%82"
     "%E6%84%8F%E8%A7%81%22&pageNo=3", {}),
    ("samr.std_search", "https://std.samr.gov.cn/search/stdPage?q=GB&tid=BV_GB", "GET", {}, 2,
     "https://std.samr.gov.cn/search/stdPage?q=GB&tid=BV_GB&pageNo=2", {}),
    ("samr.gb_query", "https://std.samr.gov.cn/gb/search/gbQueryPage?searchText=&ics=&state=&ISSUE_DATE=&sortOrder=desc"
     "&pageSize=20&pageNumber=1", "GET", {}, 2,
     "https://std.samr.gov.cn/gb/search/gbQueryPage?searchText=&ics=&state=&ISSUE_DATE=&sortOrder=desc&pageSize=20"
     "&pageNumber=2", {}),
    ("samr.gb_query", "https://std.samr.gov.cn/gb/search/gbQueryPage?searchText=&limit=15&offset=0", "GET", {}, 3,
     "https://std.samr.gov.cn/gb/search/gbQueryPage?searchText=&limit=15&offset=30", {}),
    ("samr.notices", NOTICES_URL, "GET", {}, 4, NOTICES_URL.replace("pageNumber=1", "pageNumber=4"), {}),
    ("samr.gb_advanced", ADV_PLANS_URL, "GET", {}, 2, ADV_PLANS_URL.replace("pageNumber=1", "pageNumber=2"), {}),
    ("samr.gb_advanced", "https://std.samr.gov.cn/gb/search/gbAdvancedSearchPage?tid=2", "POST", {"pageNumber": "1"}, 5,
     "https://std.samr.gov.cn/gb/search/gbAdvancedSearchPage?tid=2", {"pageNumber": "5"}),
    ("cac.jsonlist", "https://www.cac.gov.cn/cms/JsonList", "POST",
     {"channelCode": "A09370303", "perPage": "20", "pageno": "1"}, 2,
     "https://www.cac.gov.cn/cms/JsonList", {"channelCode": "A09370303", "perPage": "20", "pageno": "2"}),
    ("cac.jsonlist", "https://www.cac.gov.cn/cms/JsonList?channelCode=A093702&perPage=20&pageno=1", "GET", {}, 3,
     "https://www.cac.gov.cn/cms/JsonList?channelCode=A093702&perPage=20&pageno=3", {}),
    ("tc260.suggestions", "https://www.tc260.org.cn/portal/suggestion", "GET", {}, 2,
     "https://www.tc260.org.cn/portal/suggestion?pageNum=2&pageSize=10", {}),                  # ASSUMED form
    ("tc260.suggestions", "https://www.tc260.org.cn/front/bzzqyjList.html?postType=&start=0&length=10", "GET", {}, 38,
     "https://www.tc260.org.cn/front/bzzqyjList.html?postType=&start=370&length=10", {}),       # CONFIRMED form
]


@pytest.mark.parametrize("kind, url, method, form, page_no, want_url, want_form", PAGING,
                         ids=[f"{p[0]}-{p[4]}" for p in PAGING])
def test_page_requests(kind, url, method, form, page_no, want_url, want_form):
    source = src(kind, url, method=method, form=form)
    assert get(kind).page_request(source, page_no) == (want_url, want_form)
    assert source.form == form                                   # the source's own form is not changed


@pytest.mark.parametrize("kind", ["cac.column", "css"])
def test_unknown_paging_is_none(kind):
    assert get(kind).page_request(src(kind, "https://www.cac.gov.cn/hdfw/wxan/A093802index_1.htm"), 2) is None


@pytest.mark.parametrize("kind", ["samr.std_search", "samr.gb_query", "samr.notices", "samr.gb_advanced", "cac.jsonlist",
                                  "tc260.suggestions"])
def test_page_numbers_start_at_one(kind):
    source = src(kind, "https://std.samr.gov.cn/x?pageNumber=1&pageNo=1")
    assert get(kind).page_request(source, 1)[0]
    with pytest.raises(ValueError):
        get(kind).page_request(source, 0)


# --- 9. watch-list lookups -------------------------------------------------------------------------------------------

GBT22080 = ("https://std.samr.gov.cn/gb/search/gbQueryPage?searchText=GB%2FT%2022080&ics=&state=&ISSUE_DATE="
            "&sortOrder=desc&pageSize=20&pageNumber=1", "samr.gb_query", {})


@pytest.mark.parametrize("item", ["GB/T 22080-2016", "GB/T 22080", "GB/T22080-2016", "GBT 22080—2016", "gbt22080",
                                  "ＧＢ／Ｔ　２２０８０－２０１６", "GB/T 22080–2025", "gb/t 22080 2016", "GB T 22080",
                                  " GB／T22080—2016 ", "GB∕T 22080-2016"])
def test_every_spelling_of_a_standard_maps_to_one_family_and_request(item):
    assert watch_family(item) == "GB/T 22080"
    assert watch_request(item) == GBT22080


@pytest.mark.parametrize("item, family, kind, url_part", [
    ("GB/T 35273", "GB/T 35273", "samr.gb_query", "searchText=GB%2FT%2035273&"),
    ("GB 45438—2025", "GB 45438", "samr.gb_query", "searchText=GB%2045438&"),
    ("GB/Z 20986-2023", "GB/Z 20986", "samr.gb_query", "searchText=GB%2FZ%2020986&"),
    ("GBT20485.16-2018", "GB/T 20485.16", "samr.gb_query", "searchText=GB%2FT%2020485.16&"),
    ("20230259-T-469", "20230259-T-469", "samr.std_search", "stdPage?q=20230259-T-469&tid=BV_GB_PLAN&pageNo=1"),
    ("２０２３０２５９—ｔ—４６９", "20230259-T-469", "samr.std_search", "q=20230259-T-469&"),
    ("20263116 Q 252", "20263116-Q-252", "samr.std_search", "q=20263116-Q-252&"),
])
def test_watch_requests(item, family, kind, url_part):
    assert watch_family(item) == family
    url, got_kind, form = watch_request(item)
    assert (got_kind, form) == (kind, {}) and url_part in url and url.startswith("https://std.samr.gov.cn/")


@pytest.mark.parametrize("item", ["ISO 27001", "", "TC260-003", "GB", "信息安全技术"])
def test_unknown_watch_items(item):
    assert watch_request(item) is None and watch_family(item) is None


def test_watch_lookup_result_matches_editions():
    got = extract("samr.gb_query", GBQUERY_URL, "samr_gbquery_watch_gbt22080.json")
    assert [e.std_no for e in got] == ["GB/T 22080-2025", "GB/T 22080-2016", "GB/T 22080-2008"]
    assert [e.stage for e in got] == ["in_force", "superseded", "withdrawn"]
    assert [e.title for e in got][1:] == ["信息技术 安全技术 信息安全管理体系 要求"] * 2      # <em>, <font> removed
    assert got[0].replaces == ["GB/T 22080-2016"] and got[2].replaces == []                # a list TOTAL_REPE: ignored
    assert got[2].issue_date == "2008-06-24"                                               # epoch milliseconds
    assert [watch_matches("gbt 22080—2016", e) for e in got] == [False, True, False]
    assert [watch_matches("GB/T 22080", e) for e in got] == [True, True, True]
    assert not watch_matches("GB/T 2208", got[0]) and not watch_matches("20230259-T-469", got[0])


# --- robustness: only ParseError on bad input ------------------------------------------------------------------------

JSON_KINDS = ["samr.gb_query", "samr.gb_advanced", "samr.notices", "cac.jsonlist"]
HTML_KINDS = ["samr.std_search", "tc260.suggestions", "cac.column"]
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(
                               st.sampled_from(["rows", "list", "total", "id", "PID", "TITLE", "C_STD_CODE", "C_C_NAME",
                                                "PLAN_CODE", "STATE", "ISSUE_DATE", "infourl", "topic", "data"]),
                               c, max_size=6), max_leaves=20)


@given(kind=st.sampled_from(JSON_KINDS), data=json_values)
def test_json_extractors_raise_only_parse_errors(kind, data):
    source = src(kind, ADV_PLANS_URL)
    try:
        got = get(kind).extract(Page(source.url, json.dumps(data)), source)
    except ParseError:
        return
    for e in got:
        enrich(e, source)
        assert isinstance(e.key, str) and isinstance(e.title, str)


@given(kind=st.sampled_from(HTML_KINDS + ["samr.notices.detail", "gbDetailed"]),
       body=st.lists(st.sampled_from(["<div class='post'>", "<a pid='1' tid='BV_GB'>", "<span class='en-code'>",
                                      "GB/T 1-2020", "</a>", "<table>", "<tr>", "<td>", "标准编号", "标准名称", "代替",
                                      "</td>", "</tr>", "<div id='loadingInfoPage'>", "<li>", "<a href='//x/y.htm'>",
                                      "<div class='item'>", "<a onclick=\"jumpDetail('ab','2026-01-01')\">", "<h4>",
                                      "<div class='page-header'>", "<dt class='basicInfo-item name'>标准号</dt>",
                                      "<dd class='basicInfo-item value'>", "</div>", "<sacinfo>", "置顶", "2026-01-01"]),
                     max_size=30))
def test_html_parsers_raise_only_parse_errors(kind, body):
    html = "".join(body)
    try:
        if kind == "samr.notices.detail":
            parse_notice_page(Page(SACINFO, html))
        elif kind == "gbDetailed":
            parse_gb_detailed(Page(DETAIL_URL + "X", html))
        else:
            get(kind).extract(Page("https://www.cac.gov.cn/a/b.htm", html), src(kind, "https://www.cac.gov.cn/a/b.htm"))
    except ParseError:
        pass


def test_new_kinds_are_registered_with_docs():
    assert {"samr.notices", "samr.gb_advanced"} <= set(EXTRACTORS)
    for kind in ("samr.notices", "samr.gb_advanced", "samr.gb_query", "samr.std_search"):
        assert (type(get(kind)).__doc__ or "").strip()

"""National standard announcements (国家标准公告): the std.samr.gov.cn list (nocGBPage JSON) and the announcement page
with its table of standards (std.sacinfo.org.cn gnoc/queryInfo, or the openstd.samr.gov.cn notice page nd?no=)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from watcher.errors import ParseError
from watcher.extract import Extractor, extractor
from watcher.extract.common import (
    absolute, attachment_name_from_url, node_text, parse_date, parse_html, row_value, strip_inline_tags, title_text,
)
from watcher.extract.samr import finish_json, json_rows, page_number_request
from watcher.identify import clean_text, find_std_nos, normalize_std_no
from watcher.models import Entry

DETAIL_URL = "https://std.sacinfo.org.cn/gnoc/queryInfo?id="
_NOTICE_NO_RE = re.compile(r"((?:19|20)\d{2})\s*年\s*第\s*(\d+)\s*号")
_ATTACHMENT_RE = re.compile(r"gb_notice/|\.(?:wps|pdf|docx?|xlsx?|ofd|zip|rar)(?:[?#]|$)", re.I)


def notice_kind(title: str) -> str:
    """What an announcement is about, from its title: `gb` (national standards approved/published), `sample`
    (标准样品), `amendment` (修改单 only), or `other` (withdrawals, corrections, anything else)."""
    t = re.sub(r"\s+", "", title or "")
    rest = re.sub(r"(?:国家)?标准样品", "", re.sub(r"(?:国家标准)?(?:第\d+号)?修改单", "", t))
    if re.search(r"国家标准|标准化指导性技术文件", rest) and re.search(r"批准|发布", rest) and "废止" not in rest:
        return "gb"
    if "修改单" in t and re.search(r"批准|发布", t):
        return "amendment"
    if "标准样品" in t:
        return "sample"
    return "other"


def notice_no(text: str | None) -> str | None:
    """`2026年第4号` from a title or a notice number field; None when there is none."""
    m = _NOTICE_NO_RE.search(clean_text(text))
    return f"{m.group(1)}年第{m.group(2)}号" if m else None


@extractor("samr.notices")
class SamrNotices(Extractor):
    """National standard announcements (std.samr.gov.cn /noc/search/nocGBPage JSON): one entry per 国家标准公告
    (key PID; title; published = notice date; extra notice_no, std_count, notice_kind gb/sample/amendment/other,
    detail_url). The announcement page (std.sacinfo.org.cn/gnoc/queryInfo?id=<PID>, or openstd nd?no=) gives the
    table of standards with the numbers each one replaces. Paged by `pageNumber`."""

    has_detail = True
    detail_hosts = ("std.sacinfo.org.cn", "openstd.samr.gov.cn")      # where announcements are published

    def extract(self, page, source):
        rows, entries = json_rows(page, "rows", "list", "records", "data")
        for r in rows:
            if not isinstance(r, dict):
                continue
            pid = row_value(r, "PID")
            rid = row_value(r, "id", "ID")
            key = pid or rid
            if not key:
                continue
            title = strip_inline_tags(row_value(r, "TITLE", "C_TITLE", "NOTICE_TITLE"))
            if not title:
                continue      # a renamed title field then shows as a page without rows (source_broken)
            no = row_value(r, "CODE", "NO", "NOTICE_NO")
            extra: dict = {"notice_kind": notice_kind(title), "notice_no": notice_no(no) or no or notice_no(title),
                           "detail_url": DETAIL_URL + key}
            count = row_value(r, "STD_COUNT")
            if count.isdigit():
                extra["std_count"] = int(count)
            if pid and rid and rid != pid:
                extra["row_id"] = rid
            if not extra["notice_no"]:
                del extra["notice_no"]
            entries.append(Entry(key=key, url=extra["detail_url"], title=title,
                                 published=parse_date(row_value(r, "NOTICE_DATE", "ISSUE_DATE", "PUBLISH_DATE")),
                                 extra=extra))
        return finish_json(entries)

    def wants_detail(self, entry, source):
        """Announcements that publish standards or amendments. Their page is on std.sacinfo.org.cn, not on the list's
        host: extra["detail_url"] says where it is."""
        return bool(source.detail_pages) and entry.extra.get("notice_kind") in ("gb", "amendment")

    def parse_detail(self, page, entry, source):
        return parse_notice_page(page)

    def page_request(self, source, page_no):
        """Page N: `pageNumber` (SECONDARY: the list's bootstrap-table parameters, PilotStd and two crawlers)."""
        return page_number_request(source, page_no)


# --- the announcement page -----------------------------------------------------------------------------------------

def _header_field(h: str) -> str | None:
    """The standard-table column a header names (letter-spaced headers arrive without their spaces)."""
    if not h:
        return None
    if "序号" in h:
        return "seq"
    if h.startswith("被代替"):
        return None
    if "代替" in h:
        return "replaces"
    if h.startswith("原") and ("号" in h or "编号" in h):
        return "old_std_no"
    if ("号" in h or "编号" in h) and "备案" not in h and "修改单" not in h:
        return "std_no"
    if "名称" in h:
        return "title_en" if "英文" in h else "title"
    if "实施" in h:
        return "act_date"
    if "发布" in h or "批准" in h:
        return "issue_date"
    if "废止" in h or "作废" in h:
        return "withdrawn_date"
    return None


def _cells(tr):
    return [c for c in tr.iter() if c.tag in ("td", "th")]


def _header_map(tr) -> dict[int, str] | None:
    cols: dict[int, str] = {}
    for i, c in enumerate(_cells(tr)):
        field = _header_field(re.sub(r"[\s\u3000\u00a0]+", "", node_text(c)))
        if field and field not in cols.values():
            cols[i] = field
    values = set(cols.values())
    if ("std_no" in values or "old_std_no" in values) and "title" in values:
        return cols
    return None


def _std_cell(cell, base: str) -> tuple[str | None, dict]:
    text = node_text(cell)
    extra: dict = {}
    a = cell.css_first("a[href]")
    if a is not None:
        href = a.attributes.get("href") or ""
        if href and not href.startswith(("javascript", "#")):
            extra["url"] = absolute(base, href)
            hcno = parse_qs(urlsplit(extra["url"]).query).get("hcno")
            if hcno:
                extra["hcno"] = hcno[0]
    return (normalize_std_no(text) or (text or None)), extra


def _row(cells, cols: dict[int, str], base: str) -> dict | None:
    std = {"std_no": None, "title": None, "replaces": [], "act_date": None, "issue_date": None}
    for i, field in cols.items():
        if i >= len(cells):
            continue
        cell = cells[i]
        if field == "std_no":
            std["std_no"], more = _std_cell(cell, base)
            std.update(more)
        elif field == "old_std_no":
            old = find_std_nos(node_text(cell))
            std["replaces"] = old + [x for x in std["replaces"] if x not in old]
        elif field == "replaces":
            std["replaces"] += [x for x in find_std_nos(node_text(cell)) if x not in std["replaces"]]
        elif field in ("act_date", "issue_date", "withdrawn_date"):
            std[field] = parse_date(node_text(cell))
        elif field in ("title", "title_en"):
            std[field] = title_text(cell) or None
    if not std["std_no"]:
        return None
    return std


def _row_by_count(cells, base: str) -> dict | None:
    """A row of a table without a recognisable header, read by its cell count as the openstd notice pages are
    (coverage §1.2.1 B): 3 cells 序号/标准号/名称; 4 cells a conversion 序号/原标准号/名称/新标准号; 5+ cells
    序号/标准号/名称 then the dates and replaced numbers, told apart by content."""
    n = len(cells)
    if n < 3:
        return None
    if n == 4:
        return _row(cells, {1: "old_std_no", 2: "title", 3: "std_no"}, base)
    std = _row(cells, {1: "std_no", 2: "title"}, base)
    if std is None or not find_std_nos(std["std_no"] or ""):
        return None
    dates = []
    for c in cells[3:]:
        text = node_text(c)
        nos = find_std_nos(text)
        if nos:
            std["replaces"] += [x for x in nos if x not in std["replaces"]]
        elif parse_date(text):
            dates.append(parse_date(text))
    if len(dates) >= 2:
        std["issue_date"], std["act_date"] = dates[0], dates[1]
    elif dates:
        std["act_date"] = dates[0]
    return std


def _tables(tree, base: str) -> list[dict]:
    standards: list[dict] = []
    for table in tree.css("table"):
        if len(table.css("table")) > 1:          # css() matches the table itself too
            continue                              # a layout table around the real one: read the inner one
        cols = None
        for tr in table.css("tr"):
            cells = _cells(tr)
            if not cells:
                continue
            if cols is None:
                cols = _header_map(tr)
                if cols is not None:
                    continue
            std = _row(cells, cols, base) if cols is not None else _row_by_count(cells, base)
            if std is not None:
                standards.append(std)
    return standards


def parse_notice_page(page) -> dict:
    """An announcement page: {"ntitle", "notice_no", "standards": [{"std_no", "title", "replaces", "act_date",
    "issue_date", (optional) "url", "hcno", "title_en", "withdrawn_date"}], "std_nos", "attachments"}.

    Columns are found by their headers (标准编号/标准号, 标准名称/中文名称, 代替标准号/代替, 实施日期, 发布日期/批准日期,
    原标准号/新标准号 of conversion tables; letter-spaced headers too), else by the cell count (openstd nd pages).
    A page that lists its standards only in an attachment (.wps/.pdf on zxd.sacinfo.org.cn) gives "standards": []
    and the attachment. Raises ParseError when the page has neither a table of standards nor an attachment."""
    tree = parse_html(page.text)
    title_node = tree.css_first("p.ntitle") or tree.css_first(".ntitle")
    if title_node is None:
        for sel in (".content h1", ".content h2", ".content h3", ".container h3", "h1", "title"):
            title_node = tree.css_first(sel)
            if title_node is not None and node_text(title_node):
                break
    ntitle = node_text(title_node) or None
    standards = _tables(tree, page.url)
    atts = []
    for a in tree.css("a[href]"):
        href = (a.attributes.get("href") or "").strip()
        if not href or not _ATTACHMENT_RE.search(href):
            continue
        url = absolute(page.url, href)
        if any(x["url"] == url for x in atts):
            continue
        atts.append({"label": "", "name": node_text(a) or attachment_name_from_url(url) or url.rsplit("/", 1)[-1],
                     "url": url})
    if not standards and not atts:
        raise ParseError("announcement page without a table of standards or an attachment", url=page.url,
                         selector="p.ntitle, table")
    out: dict = {"ntitle": ntitle, "notice_no": notice_no(ntitle) or notice_no(node_text(tree.body)),
                 "standards": standards,
                 "std_nos": [s["std_no"] for s in standards if s["std_no"] and normalize_std_no(s["std_no"])]}
    if atts:
        out["attachments"] = atts
    return out


"""std.samr.gov.cn (national standards platform): search result cards, the gbQueryPage and gbAdvancedSearchPage JSON
lists, the gbDetailed page of one standard or plan, and watch-list lookups."""

from __future__ import annotations

import re
from urllib.parse import quote

from watcher.errors import ParseError
from watcher.extract import Entries, Extractor, extractor
from watcher.extract.common import (
    absolute, as_str, check_page_no, ci_get, find_list, load_json, node_text, parse_date, parse_html, query_param,
    row_value, set_query_param, strip_inline_tags, title_text,
)
from watcher.identify import (
    STATUS_LABELS, clean_text, committee_of, find_plan_nos, find_std_nos, normalize_plan_no, normalize_std_no,
    stage_from_status, std_family,
)
from watcher.models import Entry

_DETAIL_PATHS = {"BV_HB": "/hb/search/stdHBDetailed?id=", "BV_DB": "/db/search/stdDBDetailed?id="}
GB_DETAILED = "/gb/search/gbDetailed?id="
RESPONSIBLE_LABELS = ("归口单位", "归口部门", "技术归口")
_PLAN_PREFIX_RE = re.compile(r"^\s*\d{8}\s*[-\u2010-\u2015\uff0d]\s*[TQZtqz]\s*[-\u2010-\u2015\uff0d]\s*\d{2,4}\s*")
_STD_PREFIX_RE = re.compile(r"^\s*GB\S*\s*[\d.]+\s*[-—–]\s*\d{4}\s*")


def _strip_tags(s) -> str:
    return strip_inline_tags(as_str(s))


def _std_list(text: str) -> list[str]:
    return find_std_nos(text or "")


def _watch_gate(source) -> bool:
    """Detail pages of std.samr lists are read only for watch-list lookups (the lead's `watch` source attribute),
    so the shipped list sources fetch nothing more than before."""
    return bool(getattr(source, "detail_pages", False) and getattr(source, "watch", False))


class _SamrDetail(Extractor):
    has_detail = True

    def wants_detail(self, entry, source):
        return _watch_gate(source)

    def parse_detail(self, page, entry, source):
        return parse_gb_detailed(page)


@extractor("samr.std_search")
class SamrStdSearch(_SamrDetail):
    """std.samr.gov.cn search cards (/search/stdPage): plans (tid=BV_GB_PLAN) and standards (BV_GB, BV_HB,
    BV_DB), with plan or standard number, title (highlight tags and NEW/置顶 markers removed), English title
    (英文标题), status label, dates, 主管部门, 归口单位/归口部门 and 采标关系, and the detail URL. Paged by `pageNo`."""

    def extract(self, page, source):
        tree = parse_html(page.text)
        cards = tree.css("div.post")
        entries = Entries()
        nums = tree.css_first("div.nums span")
        if nums is not None:
            entries.total = int(re.sub(r"\D", "", node_text(nums)) or 0)
        for card in cards:
            a = card.css_first(".s-title a[pid]") or card.css_first("a[pid]")
            if a is None:
                continue
            tid = a.attributes.get("tid") or ""
            pid = a.attributes.get("pid") or ""
            code = node_text(a.css_first("span.en-code"))
            full = title_text(a)
            plan_no = None
            std_no = normalize_std_no(code) if code else None
            title = full[len(code):].strip() if code and full.startswith(code) else full
            if tid.endswith("PLAN") or not std_no:
                plans = find_plan_nos(full)
                if plans:
                    plan_no = plans[0]
                    title = _PLAN_PREFIX_RE.sub("", title)
            if std_no is None and not plan_no:
                std_no = normalize_std_no(full)
                if std_no:
                    title = _STD_PREFIX_RE.sub("", title)
            status = node_text(card.css_first("span.s-status")) or None
            labels = {}
            for inner in card.css(".media-inner"):
                k = node_text(inner.css_first(".media-left"))
                v = node_text(inner.css_first(".media-body"))
                if k:
                    labels[k] = v
            dates = [parse_date(node_text(t)) for t in card.css("time")]
            dates = [d for d in dates if d]
            url = absolute(page.url, _DETAIL_PATHS.get(tid, GB_DETAILED) + pid) if pid else page.url
            e = Entry(key=pid or (plan_no or std_no or title), url=url, title=clean_text(title),
                      plan_no=plan_no, std_no=std_no, status=status, title_en=labels.get("英文标题") or None)
            if plan_no:
                e.published = dates[0] if dates else None
            else:
                e.issue_date = dates[0] if dates else None
                e.act_date = dates[1] if len(dates) > 1 else None
                e.published = e.issue_date
            extra = {}
            if labels.get("主管部门"):
                extra["competent_dept"] = labels["主管部门"]
            responsible = next((labels[k] for k in RESPONSIBLE_LABELS if labels.get(k)), None)
            if responsible:
                extra["responsible_tc"] = responsible
            if labels.get("采标关系"):
                extra["adoption"] = labels["采标关系"]
            if tid:
                extra["tid"] = tid
            e.extra = extra
            entries.append(e)
        if not entries:
            if entries.total == 0:
                entries.confirmed_empty = True
                return entries
            raise ParseError("no result cards", url=page.url, selector="div.panel.post")
        return entries

    def page_request(self, source, page_no):
        """Page N: the `pageNo` query parameter (CONFIRMED: the page's own paginator rewrites it)."""
        check_page_no(page_no)
        return set_query_param(source.url, "pageNo", page_no), dict(source.form or {})


def json_rows(page, *names: str):
    """(rows, Entries with .total) of a std.samr JSON list; ParseError when the body is not JSON or has no list."""
    data = load_json(page.text, page.url)
    rows = find_list(data, *names)
    if rows is None:
        raise ParseError(f"JSON has no {names[0]!r} list", url=page.url)
    entries = Entries()
    total = ci_get(data, "total") if isinstance(data, dict) else None
    if isinstance(total, str) and total.strip().isdigit():
        total = int(total)
    entries.total = total if isinstance(total, int) and not isinstance(total, bool) else None
    return rows, entries


def finish_json(entries: Entries) -> Entries:
    if not entries and entries.total == 0:
        entries.confirmed_empty = True        # the API says "no results"; an empty page without a total is broken
    return entries


def page_number_request(source, page_no):
    """`pageNumber` (with `pageSize`) as std.samr's bootstrap-table lists send it; `offset` when the URL pages
    by `limit`/`offset` instead."""
    check_page_no(page_no)
    url, form = source.url, dict(source.form or {})
    if query_param(url, "offset") is not None and query_param(url, "pageNumber") is None:
        try:
            limit = int(query_param(url, "limit") or 20)
        except ValueError:
            limit = 20
        return set_query_param(url, "offset", (page_no - 1) * limit), form
    if "pageNumber" in form:
        form["pageNumber"] = str(page_no)
        return url, form
    return set_query_param(url, "pageNumber", page_no), form


@extractor("samr.gb_query")
class SamrGbQuery(_SamrDetail):
    """std.samr.gov.cn JSON list (/gb/search/gbQueryPage): rows with C_STD_CODE, C_C_NAME, STATE, ISSUE_DATE,
    ACT_DATE (and C_E_NAME/E_NAME, TOTAL_REPE when present); highlight tags (<sacinfo>, <em>, <font>) are stripped.
    Paged by `pageNumber`."""

    def extract(self, page, source):
        rows, entries = json_rows(page, "rows", "list", "records")
        for r in rows:
            if not isinstance(r, dict):
                continue
            rid = row_value(r, "id")
            if not rid:
                continue
            code = _strip_tags(row_value(r, "C_STD_CODE", "STD_CODE"))
            issue = parse_date(row_value(r, "ISSUE_DATE"))
            extra = {k: _strip_tags(row_value(r, k)) for k in ("STD_NATURE", "PROJECT_ID", "TA_CODE", "C_E_NAME")
                     if row_value(r, k)}
            if row_value(r, "TA_NAME"):
                extra["responsible_tc"] = _strip_tags(row_value(r, "TA_NAME"))
            entries.append(Entry(
                key=rid, url=absolute(page.url, GB_DETAILED + rid),
                title=_strip_tags(row_value(r, "C_C_NAME", "STD_NAME", "C_NAME")),
                title_en=_strip_tags(row_value(r, "C_E_NAME", "E_NAME")) or None,
                std_no=normalize_std_no(code) or (code or None),
                status=_strip_tags(row_value(r, "STATE")) or None, issue_date=issue, published=issue,
                act_date=parse_date(row_value(r, "ACT_DATE")),
                replaces=_std_list(_strip_tags(row_value(r, "TOTAL_REPE")) + " " +
                                   _strip_tags(row_value(r, "PART_REPE"))),
                extra=extra,
            ))
        return finish_json(entries)

    def page_request(self, source, page_no):
        """Page N: `pageNumber` (CONFIRMED, several crawlers; `pageSize` is effective only up to 20)."""
        return page_number_request(source, page_no)


@extractor("samr.gb_advanced")
class SamrGbAdvanced(_SamrDetail):
    """std.samr.gov.cn advanced search JSON (/gb/search/gbAdvancedSearchPage): plans (tid=1: PLAN_CODE, C_C_NAME,
    C_E_NAME, STD_FORM Z/X, CURRENT_LINK/STATE, SEND_DATE, END_DATE, TA_CODE/TA_NAME, DRAFT_UNIT) and standards
    (tid=2: C_STD_CODE, C_C_NAME, C_E_NAME, STATE, ISSUE_DATE, ACT_DATE, TOTAL_REPE -> replaces). `std_p16=TC260`
    filters by committee. Paged by `pageNumber`."""

    def extract(self, page, source):
        rows, entries = json_rows(page, "rows", "list", "records", "data")
        tid = query_param(page.url, "tid") or query_param(source.url, "tid") or ""
        tc_filter = query_param(source.url, "std_p16") or query_param(page.url, "std_p16") or ""
        for r in rows:
            if not isinstance(r, dict):
                continue
            e = _advanced_row(r, tid, page.url)
            if e is None:
                continue
            if tc_filter and "TA_CODE" not in e.extra:
                e.extra["TA_CODE"] = tc_filter            # the query itself asked for this committee's rows
            entries.append(e)
        return finish_json(entries)

    def page_request(self, source, page_no):
        """Page N: `pageNumber` (SECONDARY: cn.cssn.crawler pages this endpoint by pageNumber)."""
        return page_number_request(source, page_no)


def _advanced_row(r: dict, tid: str, page_url: str) -> Entry | None:
    code = _strip_tags(row_value(r, "C_STD_CODE", "STD_CODE"))
    plan_raw = _strip_tags(row_value(r, "PLAN_CODE", "C_PLAN_CODE"))
    plan_no = normalize_plan_no(plan_raw)
    is_plan = tid == "1" or (tid != "2" and not code and bool(plan_raw))
    std_no = None if is_plan else (normalize_std_no(code) or (code or None))
    title = _strip_tags(row_value(r, "C_C_NAME", "C_NAME", "STD_NAME"))
    rid = row_value(r, "id", "ID", "PID")
    key = rid or (plan_no if is_plan else std_no)
    if not key or not (title or plan_no or std_no):
        return None           # nothing to tell (a renamed field shows up as a page without rows: source_broken)
    extra: dict = {}
    if plan_raw and not plan_no:
        extra["plan_code"] = plan_raw
    for name, k in (("TA_CODE", "TA_CODE"), ("responsible_tc", "TA_NAME"), ("competent_dept", "CD_NAME"),
                    ("std_nature", "STD_NATURE"), ("notice_no", "ISSUE_ANN_NO"), ("ics", "ICS"), ("ccs", "CCS")):
        v = _strip_tags(row_value(r, k))
        if v:
            extra[name] = v
    e = Entry(key=key, url=absolute(page_url, GB_DETAILED + rid) if rid else page_url, title=title,
              title_en=_strip_tags(row_value(r, "C_E_NAME", "E_NAME")) or None, plan_no=plan_no, std_no=std_no)
    if is_plan:
        state, link, stage_code = (_strip_tags(row_value(r, k)) for k in ("STATE", "CURRENT_LINK", "STAGE_CODE"))
        e.status = link or state or (stage_code if stage_code and not stage_code.isdigit() else "") or None
        e.published = parse_date(row_value(r, "SEND_DATE"))
        form = row_value(r, "STD_FORM").upper()
        extra.update({k: v for k, v in (("std_form", form), ("state", state), ("current_link", link),
                                         ("stage_code", stage_code), ("end_date", parse_date(row_value(r, "END_DATE"))),
                                         ("tid", "1")) if v})
        if form == "X":
            extra["revision"] = True
        units = [u.strip() for u in re.split(r"[、，,;；]", _strip_tags(row_value(r, "DRAFT_UNIT"))) if u.strip()]
        if units:
            extra["draft_units"] = units
    else:
        e.status = _strip_tags(row_value(r, "STATE")) or None
        e.issue_date = e.published = parse_date(row_value(r, "ISSUE_DATE"))
        e.act_date = parse_date(row_value(r, "ACT_DATE"))
        e.replaces = _std_list(_strip_tags(row_value(r, "TOTAL_REPE")) + " " + _strip_tags(row_value(r, "PART_REPE")))
        extra["tid"] = "2"
    e.extra = extra
    return e


# --- gbDetailed ---------------------------------------------------------------------------------------------------

_JS_VAR_RE = re.compile(r"""var\s+(CURRENT_LINK|STAGE_CODE|REEXAM_RESULT|LAST_REEXAM_DATE|SHARE_TITLE|STATE)\s*=\s*
                            (['"])((?:(?!\2)[^\\]|\\.)*)\2""", re.X)
_TC_CODE_RE = re.compile(r"tcCode=([A-Za-z0-9_/]+)")
_SHARE_TA_RE = re.compile(r"""TA_CODE=\\?["'][^"']*\\?["'][^>]*>\s*([A-Za-z][A-Za-z0-9_/]*)\s*</a>""")
_ID_RE = re.compile(r"[?&]id=([0-9A-Za-z]+)")
_CODE_LIKE = re.compile(r"^[A-Za-z]+[A-Za-z0-9_/]*\d[A-Za-z0-9_/]*$")
_REPLACES_LABELS = ("全部代替标准", "代替标准", "部分代替标准", "代替标准号", "全部代替", "部分代替")


def _first_line(h4) -> str:
    """The title in `.page-header > h4`, without what is sometimes squeezed in after it (attachment links...)."""
    parts = []
    for child in h4.iter(include_text=True):
        if child.tag == "-text":
            parts.append(child.text_content or "")
        elif child.tag in ("a", "br", "div", "button", "img", "table", "ul", "p", "small"):
            if clean_text("".join(parts)):
                break
        elif child.tag not in ("script", "style", "-comment"):
            parts.append(node_text(child))
    text = clean_text("".join(parts))
    if not text:
        lines = [clean_text(x) for x in (h4.text(deep=True) or "").splitlines()]
        text = next((x for x in lines if x), "")
    return text


def _element_after(node):
    sib = node.next
    while sib is not None and not sib.is_element_node:
        sib = sib.next
    return sib


def _link_item(a, base: str) -> dict:
    text = node_text(a)
    href = a.attributes.get("href") or ""
    m = _ID_RE.search(href)
    std_no, plan_no = normalize_std_no(text), normalize_plan_no(text)
    title = text
    if plan_no and (not std_no or text.lstrip().startswith(re.sub(r"-.*", "", plan_no))):
        std_no, title = None, _PLAN_PREFIX_RE.sub("", text)
    elif std_no:
        plan_no, title = None, _STD_PREFIX_RE.sub("", text)
    return {"std_no": std_no, "plan_no": plan_no, "id": m.group(1) if m else None,
            "url": absolute(base, href) if href else None, "title": clean_text(title) or None}


def _panel(tree, heading: str, base: str) -> dict | None:
    for panel in tree.css(".panel"):
        head = panel.css_first(".panel-heading")
        if head is None or re.sub(r"\s+", "", node_text(head)) != heading:
            continue
        body = panel.css_first(".panel-body") or panel
        a = body.css_first("a[href]")
        item = _link_item(a, base) if a is not None else {
            "std_no": normalize_std_no(node_text(body)), "plan_no": normalize_plan_no(node_text(body)),
            "id": None, "url": None, "title": None}
        item["status"] = node_text(body.css_first(".s-status")) or None
        return item
    return None


def parse_gb_detailed(page) -> dict:
    """The facts of a std.samr `gbDetailed` page (standard or plan; coverage §4.3, §4.6). Keys that are also Entry
    fields mean the same: title, title_en, std_no, plan_no, status (label verbatim), stage (stage id; under_revision
    when a standard in force shows 修订 or has a 当前标准计划 panel; for a plan, the step CURRENT_LINK names),
    issue_date, act_date, replaces, replaced_by.
    Others: state (inline `var STATE`), status_labels, std_type (国家标准...), committee (TC code: TC260...),
    ta_code, responsible_tc (归口单位 name), current_standard / current_plan ({std_no, plan_no, id, url, status,
    title} from the 当前标准 / 当前标准计划 panels), related (相近标准(计划): list of the same shape without status),
    revision (bool), current_link, stage_code, reexam_result, last_reexam_date, withdrawn_date, ccs, ics, draft_units.
    Raises ParseError when the page has neither the header nor the basic-info list."""
    tree = parse_html(page.text)
    h4 = tree.css_first(".page-header > h4")
    info: dict[str, str] = {}
    for dt in tree.css("dt.basicInfo-item.name"):
        dd = _element_after(dt)
        if dd is None or dd.tag != "dd":
            continue
        label = re.sub(r"\s+", "", node_text(dt)).rstrip("：:")
        span = dd.css_first("span")
        value = node_text(span) if span is not None and label in ("国际标准分类号",) else node_text(dd)
        if label and value and label not in info:
            info[label] = value
    if h4 is None and not info:
        raise ParseError("not a gbDetailed page (no .page-header > h4, no basicInfo list)", url=page.url,
                         selector=".page-header > h4")
    out: dict = {}
    out["title"] = _first_line(h4) if h4 is not None else None
    out["title_en"] = node_text(tree.css_first(".page-header > h5")) or None
    labels = [node_text(s) for s in tree.css(".page-header .s-status")]
    labels = [x for x in labels if x]
    out["status_labels"] = labels
    out["std_type"] = node_text(tree.css_first(".page-header .label-info")) or None
    js = {m.group(1): m.group(3) for m in _JS_VAR_RE.finditer(page.text)}
    primary = node_text(tree.css_first(".page-header .label-primary"))
    known = [x for x in labels if x in STATUS_LABELS]
    status = "修订" if "修订" in labels else (primary if primary in STATUS_LABELS else
                                              (known[-1] if known else (js.get("STATE") or primary or None)))
    out["status"] = status or None
    out["state"] = js.get("STATE") or None

    std_no_text = info.get("标准号") or info.get("标准编号") or ""
    out["std_no"] = normalize_std_no(std_no_text) or (std_no_text or None)
    out["issue_date"] = parse_date(info.get("发布日期"))
    out["act_date"] = parse_date(info.get("实施日期"))
    out["withdrawn_date"] = parse_date(info.get("废止日期"))
    for li in tree.css(".timeline li"):
        text = node_text(li)
        d = parse_date(text)
        if not d:
            continue
        if text.startswith("发布") and not out["issue_date"]:
            out["issue_date"] = d
        elif text.startswith("实施") and not out["act_date"]:
            out["act_date"] = d
        elif text.startswith("废止") and not out["withdrawn_date"]:
            out["withdrawn_date"] = d
        elif text.startswith("上次复审"):
            out.setdefault("timeline_reexam_date", d)
    replaces: list[str] = []
    for label in _REPLACES_LABELS:
        for no in find_std_nos(info.get(label, "")):
            if no not in replaces:
                replaces.append(no)
    out["replaces"] = replaces
    plan_no = normalize_plan_no(js.get("SHARE_TITLE")) or normalize_plan_no(info.get("计划号")) or \
        normalize_plan_no(info.get("计划编号"))
    if not plan_no and not out["std_no"] and out["title"]:
        plan_no = normalize_plan_no(out["title"])
    out["plan_no"] = plan_no

    responsible = next((info[k] for k in RESPONSIBLE_LABELS if info.get(k)), None)
    out["responsible_tc"] = responsible
    ta_code = None
    for node in tree.css("[ta_code]"):
        v = (node.attributes.get("ta_code") or node.attributes.get("TA_CODE") or "").strip()
        if _CODE_LIKE.match(v):
            ta_code = v
            break
    if not ta_code:
        m = _SHARE_TA_RE.search(page.text) or _TC_CODE_RE.search(page.text)
        ta_code = m.group(1) if m else None
    out["ta_code"] = ta_code
    out["committee"] = committee_of(out["title"], responsible, ta_code) or ta_code
    out["current_link"] = js.get("CURRENT_LINK") or None
    out["stage_code"] = js.get("STAGE_CODE") or None
    out["reexam_result"] = js.get("REEXAM_RESULT") or None
    timeline_reexam = out.pop("timeline_reexam_date", None)
    out["last_reexam_date"] = parse_date(js.get("LAST_REEXAM_DATE")) or timeline_reexam
    out["ccs"] = info.get("中国标准分类号") or None
    out["ics"] = info.get("国际标准分类号") or None
    units = []
    for node in tree.css("[draft_unit]"):
        name = node_text(node)
        if name and name not in units:
            units.append(name)
    out["draft_units"] = units

    out["current_standard"] = _panel(tree, "当前标准", page.url)
    out["current_plan"] = _panel(tree, "当前标准计划", page.url)
    related = []
    for h2 in tree.css("h2.title-text"):
        if not node_text(h2).startswith("相近标准"):
            continue
        block = _element_after(h2.parent) if h2.parent is not None else None
        for a in (block.css("a[href]") if block is not None else []):
            if "Detailed" in (a.attributes.get("href") or ""):
                related.append(_link_item(a, page.url))
    out["related"] = related
    current = out["current_standard"]
    out["replaced_by"] = [current["std_no"]] if current and current.get("std_no") and \
        current["std_no"] != out["std_no"] else []
    out["revision"] = "修订" in labels or out["current_plan"] is not None or out["reexam_result"] == "修订"
    stage = stage_from_status(status) if status else None
    if stage == "in_force" and out["revision"]:
        stage = "under_revision"
    if out["plan_no"] and not out["std_no"] and out["current_link"]:
        # a plan's page: its header says 制定中 throughout; CURRENT_LINK names the step (正在审查, 正在批准…)
        from watcher.identify import is_forward
        step = stage_from_status(out["current_link"])
        if step and is_forward(stage, step):
            stage = step
    out["stage"] = stage
    return out


# --- watch-list lookups -------------------------------------------------------------------------------------------

SAMR = "https://std.samr.gov.cn"


def watch_family(number: str) -> str | None:
    """What a watch-list item stands for, in canonical form: `GB/T 22080` for any spelling of a standard (with or
    without a year: every edition is looked up), or the normalised plan number (`20230259-T-469`). None when the
    item is neither."""
    plan = normalize_plan_no(number)
    if plan:
        return plan
    return std_family(number)


def watch_request(item: str) -> tuple[str, str, dict] | None:
    """(url, kind, form) of the std.samr query that finds a watch-list item, or None when it is not a GB or plan
    number.

    - A standard (`GB/T 22080-2016`, `gbt 22080`, `ＧＢ／Ｔ２２０８０—２０１６`, `GB/T 35273` for every edition): the
      gbQueryPage JSON searched for the number without its year (CONFIRMED, coverage §3.2; `<sacinfo>` marks the
      hits); kind `samr.gb_query`. Each edition's row carries STATE and the gbDetailed id; compare with
      `watch_matches`.
    - A plan (`20230259-T-469`): the stdPage search of plans (tid=BV_GB_PLAN) with q=<plan number>; kind
      `samr.std_search`. ASSUMED: that the keyword search matches plan numbers (the research found no plan-number
      parameter of gbAdvancedSearchPage; std_p7 is the standard number)."""
    plan = normalize_plan_no(item)
    if plan:
        return f"{SAMR}/search/stdPage?q={quote(plan, safe='')}&tid=BV_GB_PLAN&pageNo=1", "samr.std_search", {}
    family = std_family(item)
    if not family:
        return None
    return (f"{SAMR}/gb/search/gbQueryPage?searchText={quote(family, safe='')}&ics=&state=&ISSUE_DATE="
            f"&sortOrder=desc&pageSize=20&pageNumber=1", "samr.gb_query", {})


def watch_matches(item: str, entry: Entry) -> bool:
    """Whether an entry is (an edition of) the watched item: same plan number; same standard number when the item
    names a year, else the same family."""
    plan = normalize_plan_no(item)
    if plan:
        return entry.plan_no == plan
    family = std_family(item)
    if not family or not entry.std_no:
        return False
    exact = normalize_std_no(item)
    return entry.std_no == exact if exact else std_family(entry.std_no) == family

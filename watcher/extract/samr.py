"""std.samr.gov.cn (national standards platform): search result cards and the gbQueryPage JSON list."""

from __future__ import annotations

import html
import re

from watcher.errors import ParseError
from watcher.extract import Entries, Extractor, extractor
from watcher.extract.common import absolute, ci_get, find_list, load_json, node_text, parse_date, parse_html
from watcher.identify import clean_text, find_plan_nos, normalize_std_no
from watcher.models import Entry

_DETAIL_PATHS = {"BV_HB": "/hb/search/stdHBDetailed?id=", "BV_DB": "/db/search/stdDBDetailed?id="}
_TAG_RE = re.compile(r"</?sacinfo[^>]*>", re.I)


def _strip_tags(s: str | None) -> str:
    return clean_text(html.unescape(_TAG_RE.sub("", s or "")))


@extractor("samr.std_search")
class SamrStdSearch(Extractor):
    """std.samr.gov.cn search cards (/search/stdPage): plans (tid=BV_GB_PLAN) and standards (BV_GB, BV_HB,
    BV_DB), with plan or standard number, title, status label, dates, 主管部门/归口单位 and the detail URL."""

    def extract(self, page, source):
        tree = parse_html(page.text)
        cards = tree.css("div.post")
        entries = Entries()
        nums = tree.css_first("div.nums span")
        if nums is not None:
            try:
                entries.total = int(re.sub(r"\D", "", node_text(nums)) or 0)
            except ValueError:
                pass
        for card in cards:
            a = card.css_first(".s-title a[pid]") or card.css_first("a[pid]")
            if a is None:
                continue
            tid = a.attributes.get("tid") or ""
            pid = a.attributes.get("pid") or ""
            code_node = a.css_first("span.en-code")
            code = node_text(code_node)
            full = node_text(a)
            plan_no = None
            std_no = normalize_std_no(code) if code else None
            title = full[len(code):].strip() if code and full.startswith(code) else full
            if tid.endswith("PLAN") or not std_no:
                plans = find_plan_nos(full)
                if plans:
                    plan_no = plans[0]
                    title = re.sub(r"^\s*\d{8}\s*[-\u2010-\u2015\uff0d]\s*[TQZtqz]\s*[-\u2010-\u2015\uff0d]\s*\d{2,4}\s*", "", title)
            if std_no is None and not plan_no:
                std_no = normalize_std_no(full)
                if std_no:
                    title = re.sub(r"^\s*GB\S*\s*[\d.]+\s*[-—–]\s*\d{4}\s*", "", title)
            status = node_text(card.css_first("span.s-status")) or None
            labels = {}
            for inner in card.css(".media-inner"):
                k = node_text(inner.css_first(".media-left"))
                v = node_text(inner.css_first(".media-body"))
                if k:
                    labels[k] = v
            dates = [parse_date(node_text(t)) for t in card.css("time")]
            dates = [d for d in dates if d]
            url = absolute(page.url, _DETAIL_PATHS.get(tid, "/gb/search/gbDetailed?id=") + pid) if pid else page.url
            e = Entry(key=pid or (plan_no or std_no or title), url=url, title=clean_text(title),
                      plan_no=plan_no, std_no=std_no, status=status)
            if plan_no:
                e.published = dates[0] if dates else None
            else:
                e.issue_date = dates[0] if dates else None
                e.act_date = dates[1] if len(dates) > 1 else None
                e.published = e.issue_date
            extra = {}
            if labels.get("主管部门"):
                extra["competent_dept"] = labels["主管部门"]
            if labels.get("归口单位"):
                extra["responsible_tc"] = labels["归口单位"]
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


@extractor("samr.gb_query")
class SamrGbQuery(Extractor):
    """std.samr.gov.cn JSON list (/gb/search/gbQueryPage): rows with C_STD_CODE, C_C_NAME, STATE, ISSUE_DATE,
    ACT_DATE; <sacinfo> highlight tags are stripped."""

    def extract(self, page, source):
        data = load_json(page.text, page.url)
        rows = find_list(data, "rows", "list", "records")
        if rows is None:
            raise ParseError("JSON has no 'rows' list", url=page.url)
        entries = Entries()
        total = ci_get(data, "total") if isinstance(data, dict) else None
        entries.total = total if isinstance(total, int) else None
        for r in rows:
            rid = ci_get(r, "id") if isinstance(r, dict) else None
            if not rid:
                continue
            rid = str(rid)
            code = _strip_tags(ci_get(r, "C_STD_CODE") or ci_get(r, "STD_CODE"))
            issue = parse_date(str(ci_get(r, "ISSUE_DATE") or ""))
            extra = {k: _strip_tags(str(ci_get(r, k))) for k in ("STD_NATURE", "PROJECT_ID", "TA_CODE", "C_E_NAME")
                     if ci_get(r, k)}
            entries.append(Entry(
                key=rid, url=absolute(page.url, f"/gb/search/gbDetailed?id={rid}"),
                title=_strip_tags(ci_get(r, "C_C_NAME") or ci_get(r, "STD_NAME")),
                std_no=normalize_std_no(code) or (code or None),
                status=_strip_tags(ci_get(r, "STATE")) or None, issue_date=issue, published=issue,
                act_date=parse_date(str(ci_get(r, "ACT_DATE") or "")), extra=extra,
            ))
        if not entries and (entries.total == 0 or rows == []):
            entries.confirmed_empty = entries.total == 0
        return entries

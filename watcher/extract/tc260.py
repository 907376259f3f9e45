"""TC260 (www.tc260.org.cn): drafts for comment, on the 2025 portal and on the legacy site."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from watcher.errors import ParseError
from watcher.extract import Entries, Extractor, extractor
from watcher.extract.common import (
    absolute, check_page_no, find_deadline, first_paragraph, node_text, parse_date, parse_html, query_param,
    set_query_param, title_text,
)
from watcher.identify import find_plan_nos
from watcher.models import Entry

_DETAIL_HREF_RE = re.compile(r"/suggestion-detail/([0-9A-Za-z]+)")
_JUMP_RE = re.compile(r"""jumpDetail\(\s*['"](?P<id>[0-9A-Za-z]+)['"]\s*(?:,\s*['"](?P<deadline>[^'"]*)['"])?""")


@extractor("tc260.suggestions")
class Tc260Suggestions(Extractor):
    """TC260 drafts for public comment: the portal list (/portal/suggestion, rows div.item with
    jumpDetail('<id>','<deadline>')) or the legacy list (/front/bzzqyjList.html, li.list-group-item with
    [截至日期:…]). Detail pages give the plan number, deadline sentence, attachments and a summary. Pinned/new
    markers (置顶, NEW, badge icons) are not part of a title."""

    has_detail = True

    def extract(self, page, source):
        tree = parse_html(page.text)
        entries = Entries()
        for row in tree.css("div.item"):
            a = row.css_first("a[onclick]") or row.css_first("a[href]")
            if a is None:
                continue
            m = _JUMP_RE.search(a.attributes.get("onclick") or "")
            h = _DETAIL_HREF_RE.search(a.attributes.get("href") or "")
            if not (m or h):
                continue
            sid = m.group("id") if m else h.group(1)
            deadline = parse_date(m.group("deadline")) if m and m.group("deadline") else None
            published = None
            for span in row.css("span"):
                text = node_text(span)
                if "截止" in text or "截至" in text:
                    deadline = deadline or parse_date(text)
                elif parse_date(text):
                    published = parse_date(text)          # the last dated span is the publication date
            entries.append(Entry(
                key=sid,
                url=absolute(page.url, f"/portal/suggestion-detail/{sid}"),
                title=title_text(a),
                published=published,
                deadline=deadline,
            ))
        if entries:
            return entries
        legacy = tree.css("li.list-group-item")
        for row in legacy:
            a = row.css_first("a[href]")
            if a is None:
                continue
            url = absolute(page.url, a.attributes.get("href") or "")
            q = parse_qs(urlsplit(url).query)
            key = (q.get("id") or [url])[0]
            tail = node_text(row.css_first("span.list_time")) or node_text(row)
            m = re.search(r"截[至止]\s*(?:日期|时间)?\s*[:：]?\s*([\d年月日\-/. ]+)", tail)
            entries.append(Entry(
                key=key, url=url, title=title_text(a),
                deadline=parse_date(m.group(1)) if m else None,
                published=parse_date(node_text(row.css_first("span.time, span.list_date"))),
            ))
        if entries:
            return entries
        if tree.css_first("div.list-box, div.suggestion-list, ul.list-group") is not None and \
                not tree.css("div.item, li.list-group-item"):
            empty = Entries()
            empty.confirmed_empty = "暂无" in page.text
            if empty.confirmed_empty:
                return empty
        raise ParseError("no draft rows (div.item with jumpDetail, or li.list-group-item)", url=page.url,
                         selector="div.item")

    def wants_detail(self, entry, source):
        return source.detail_pages

    def page_request(self, source, page_no):
        """Page N of the drafts list.

        Legacy list (/front/bzzqyjList.html): `start=<offset>&length=<n>` (CONFIRMED by two scrapers, sources.md
        §1.2). Portal list (/portal/suggestion): ASSUMED `pageNum=<n>&pageSize=<size>` (default size 10): its
        pagination was never captured (coverage §5.1), this is the usual form of such portals. A server that ignores
        the parameters answers page 1 again, whose rows are then only repeats."""
        check_page_no(page_no)
        url, form = source.url, dict(source.form or {})
        if "bzzqyjList" in url or query_param(url, "start") is not None or "start" in form:
            length = _int(query_param(url, "length") or form.get("length"), 10)
            if "start" in form:
                form["start"] = str((page_no - 1) * length)
                return url, form
            return set_query_param(set_query_param(url, "start", (page_no - 1) * length), "length", length), form
        size = _int(query_param(url, "pageSize"), 10)
        return set_query_param(set_query_param(url, "pageNum", page_no), "pageSize", size), form

    def parse_detail(self, page, entry, source):
        tree = parse_html(page.text)
        body = tree.css_first("div.info") or tree.css_first("div.advice-c") or tree.css_first("div.news_end")
        if body is None:
            raise ParseError("detail body not found", url=page.url, selector="div.info")
        text = node_text(body)
        out: dict = {}
        plans = find_plan_nos(text)
        if plans:
            out["plan_no"] = plans[0]
        dl = find_deadline(text)
        if dl:
            out["deadline"] = dl
        summary = first_paragraph(body)
        if summary:
            out["summary"] = summary
        atts = []
        for li in tree.css("div.list ul li"):
            a = li.css_first("a[href]")
            if a is None:
                continue
            label = node_text(li.css_first("label")).rstrip("：:")
            atts.append({"label": label, "name": node_text(a), "url": absolute(page.url, a.attributes["href"])})
        if not atts:  # legacy detail page
            for a in tree.css("span#APP_1 a[href], span#APP_3 a[href], div.news_end a[href*='download']"):
                atts.append({"label": "", "name": node_text(a), "url": absolute(page.url, a.attributes["href"])})
        if atts:
            out["attachments"] = atts
        return out


def _int(value, default: int) -> int:
    try:
        n = int(str(value))
    except (TypeError, ValueError):
        return default
    return n if n > 0 else default

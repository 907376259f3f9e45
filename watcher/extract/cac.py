"""CAC (www.cac.gov.cn, TRS CMS): column list pages, the JsonList channel API, and article detail pages."""

from __future__ import annotations

import html
import re

from watcher.errors import ParseError
from watcher.extract import Entries, Extractor, extractor
from watcher.extract.common import (
    absolute, as_str, attachment_name_from_url, check_page_no, ci_get, find_deadline, find_list, first_paragraph,
    load_json, node_text, parse_date, parse_html, query_param, set_query_param, strip_inline_tags, strip_markers,
    title_text,
)
from watcher.identify import clean_text
from watcher.models import Entry

COMMENT_RE = re.compile(r"征求[\s\S]{0,60}?意见")


def _parse_article(page) -> dict:
    tree = parse_html(page.text)
    body = tree.css_first("#BodyLabel") or tree.css_first(".main-content") or tree.css_first("div.TRS_Editor")
    if body is None:
        raise ParseError("article body not found", url=page.url, selector="#BodyLabel")
    out: dict = {}
    text = node_text(body)
    dl = find_deadline(text)
    if dl:
        out["deadline"] = dl
    summary = first_paragraph(body)
    if summary:
        out["summary"] = summary
    pub = parse_date(node_text(tree.css_first("#pubtime")))
    if pub:
        out["published"] = pub
    atts = []
    for a in tree.css("a[href]"):
        href = a.attributes.get("href") or ""
        if "downloadfile" in href.lower() or re.search(r"\.(pdf|docx?|xlsx?|wps|zip|rar|ofd)(\?|$)", href, re.I):
            url = absolute(page.url, href)
            atts.append({"label": "", "name": attachment_name_from_url(url) or node_text(a), "url": url})
    if atts:
        out["attachments"] = atts
    return out


class _CacBase(Extractor):
    has_detail = True

    def wants_detail(self, entry, source):
        return source.detail_pages and bool(entry.extra.get("comment_request"))

    def parse_detail(self, page, entry, source):
        return _parse_article(page)


@extractor("cac.column")
class CacColumn(_CacBase):
    """CAC column pages (e.g. /hdfw/wxan/A093802index_1.htm): rows `#loadingInfoPage li`, title from the link's
    title attribute (the text may be truncated), protocol-relative links, date in div.times; 置顶/NEW markers and
    highlight tags are not part of a title. Comment requests (征求…意见) get their detail page read for the deadline
    and attachments."""

    def extract(self, page, source):
        tree = parse_html(page.text)
        container = tree.css_first("#loadingInfoPage")
        if container is None:
            raise ParseError("list container not found", url=page.url, selector="#loadingInfoPage")
        entries = Entries()
        for li in container.css("li"):
            a = li.css_first("a[href]")
            if a is None:
                continue
            url = absolute(page.url, a.attributes.get("href") or "")
            title = strip_markers(strip_inline_tags(a.attributes.get("title"))) or title_text(a)
            date_node = li.css_first(".times, .time, span.date, span")
            entries.append(Entry(
                key=url, url=url, title=title,
                published=parse_date(node_text(date_node)) or parse_date(node_text(li)),
                extra={"comment_request": bool(COMMENT_RE.search(title))},
            ))
        return entries


@extractor("cac.jsonlist")
class CacJsonList(_CacBase):
    """CAC channel API (POST /cms/JsonList, form channelCode/perPage/pageno): {"list": [{topic, infourl,
    pubtime}]}; links are protocol-relative."""

    def extract(self, page, source):
        data = load_json(page.text, page.url)
        rows = find_list(data, "list", "rows", "data")
        if rows is None:
            raise ParseError("JSON has no 'list'", url=page.url)
        entries = Entries()
        for r in rows:
            link = (as_str(ci_get(r, "infourl")) or as_str(ci_get(r, "url"))) if isinstance(r, dict) else ""
            if not link.strip():
                continue
            url = absolute(page.url, link)
            topic = as_str(ci_get(r, "topic")) or as_str(ci_get(r, "title"))
            title = strip_markers(clean_text(html.unescape(re.sub(r"<[^>]+>", "", html.unescape(topic)))))
            pub = as_str(ci_get(r, "pubtime")) or as_str(ci_get(r, "pubTime")) or as_str(ci_get(r, "publishTime"))
            entries.append(Entry(key=url, url=url, title=title, published=parse_date(pub),
                                 extra={"comment_request": bool(COMMENT_RE.search(title))}))
        if not entries and rows == []:
            entries.confirmed_empty = True
        return entries

    def page_request(self, source, page_no):
        """Page N of a channel: the `pageno` form field of POST /cms/JsonList (CONFIRMED, several crawlers); a
        source that passes it in the query string gets it set there."""
        check_page_no(page_no)
        form = dict(source.form or {})
        if query_param(source.url, "pageno") is not None:
            return set_query_param(source.url, "pageno", page_no), form
        form["pageno"] = str(page_no)
        return source.url, form

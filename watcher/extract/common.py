"""Helpers shared by extractors: parsing, text normalisation, absolute URLs, dates and deadline sentences."""

from __future__ import annotations

import html
import re
from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from watcher.errors import ParseError
from watcher.identify import clean_text

_DATE_RES = [
    re.compile(r"(?<!\d)((?:19|20)\d{2})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?!\d)"),
]


def parse_html(text: str) -> LexborHTMLParser:
    return LexborHTMLParser(text)


def node_text(node: LexborNode | None) -> str:
    if node is None:
        return ""
    return clean_text(html.unescape(node.text(deep=True, separator=" ")))


def require(tree, selector: str, url: str) -> LexborNode:
    node = tree.css_first(selector)
    if node is None:
        raise ParseError("required element not found", url=url, selector=selector)
    return node


def select_value(row: LexborNode, spec: str | None, base_url: str) -> str | None:
    """`sel` -> text of the first match; `sel@attr` -> attribute (made absolute for href/src)."""
    if not spec:
        return None
    sel, attr = (spec.rsplit("@", 1) + [None])[:2] if "@" in spec else (spec, None)
    node = row.css_first(sel) if sel else row
    if node is None:
        return None
    if attr:
        value = node.attributes.get(attr)
        if value is None:
            return None
        value = clean_text(html.unescape(value))
        if attr in ("href", "src", "action") and value:
            value = absolute(base_url, value)
        return value or None
    return node_text(node) or None


def absolute(base: str, href: str) -> str:
    href = href.strip()
    if href.startswith("//"):
        return urlsplit(base).scheme + ":" + href
    return urljoin(base, href)


def parse_date(text: str | None) -> str | None:
    """First date in a text (2025-03-01, 2025/3/1, 2025.03.01, 2025年3月1日) as ISO, or None."""
    if not text:
        return None
    t = clean_text(text)
    for rx in _DATE_RES:
        m = rx.search(t)
        if m:
            try:
                return date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
            except ValueError:
                continue
    if re.fullmatch(r"(?:19|20)\d{6}", t):       # 20260301
        try:
            return date(int(t[:4]), int(t[4:6]), int(t[6:])).isoformat()
        except ValueError:
            return None
    if re.fullmatch(r"\d{12,13}", t):
        # epoch milliseconds, as some JSON APIs send: a Beijing calendar date
        return datetime.fromtimestamp(int(t) / 1000, tz=timezone(timedelta(hours=8))).date().isoformat()
    return None


_D = r"((?:19|20)\d{2}\s*[年\-/.]\s*\d{1,2}\s*[月\-/.]\s*\d{1,2}\s*日?)"
_DEADLINE_RES = [
    re.compile(r"(?:延长至|延期至|推迟至|顺延至)\s*" + _D),
    re.compile(r"请于\s*" + _D + r"[^。；;，,]{0,20}?(?:前|之前|以前)"),
    re.compile(r"截[止至]\s*(?:日期|时间)?\s*(?:为|是|：|:)?\s*" + _D),
    re.compile(r"(?:于|在)\s*" + _D + r"[^。；;]{0,12}?(?:前|之前)[^。；;]{0,30}?(?:反馈|提出|提交|发送|意见)"),
]


def find_deadline(text: str | None) -> str | None:
    """The comment deadline stated in a notice: 截止日期为…, 截止时间为…, 请于…前…, 延长至… (an extension wins)."""
    if not text:
        return None
    t = clean_text(text)
    for rx in _DEADLINE_RES:
        m = rx.search(t)
        if m:
            d = parse_date(m.group(1))
            if d:
                return d
    return None


def load_json(text: str, url: str):
    """Parse a JSON body; tolerates a JSONP wrapper (`callback({...});`). Raises ParseError naming the URL."""
    import json
    body = text.strip()
    m = re.match(r"^[\w$.]+\s*\(\s*(.*?)\s*\)\s*;?\s*$", body, re.S)
    if m and not body.startswith(("{", "[")):
        body = m.group(1)
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise ParseError(f"body is not valid JSON ({e.msg} at char {e.pos})", url=url) from None


def find_list(data, *names: str):
    """The first list found under one of `names`, at the top level or one level down (e.g. data.rows)."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        return None
    lowered = {k.lower(): v for k, v in data.items()}
    for n in names:
        v = lowered.get(n.lower())
        if isinstance(v, list):
            return v
    for v in data.values():
        if isinstance(v, dict):
            found = find_list(v, *names)
            if found is not None:
                return found
    return None


def ci_get(row: dict, key: str):
    """Case-insensitive dict access (APIs change C_STD_CODE to c_std_code between versions)."""
    if key in row:
        return row[key]
    lk = key.lower()
    for k, v in row.items():
        if k.lower() == lk:
            return v
    return None


def first_paragraph(node: LexborNode | None, min_len: int = 15) -> str | None:
    """The first paragraph that says something (skips salutations like 各相关单位：)."""
    if node is None:
        return None
    paras = [node_text(p) for p in node.css("p")] or [node_text(node)]
    for p in paras:
        if len(p) >= min_len and (not p.endswith(("：", ":")) or len(p) >= 40):
            return p[:500]
    return None


def attachment_name_from_url(url: str) -> str | None:
    q = parse_qs(urlsplit(url).query)
    for key in ("fText", "ftext", "filename", "fileName", "name"):
        if key in q and q[key][0]:
            return clean_text(unquote(q[key][0]))
    return None

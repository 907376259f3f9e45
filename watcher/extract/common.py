"""Helpers shared by extractors: parsing, text normalisation, absolute URLs, dates and deadline sentences."""

from __future__ import annotations

import html
import re
from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qs, quote, unquote, unquote_plus, urljoin, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from watcher.errors import ParseError
from watcher.identify import clean_text

_DATE_RES = [
    re.compile(r"(?<!\d)((?:19|20)\d{2})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?!\d)"),
]


def parse_html(text: str) -> LexborHTMLParser:
    return LexborHTMLParser(text)


# Elements whose content starts a new line when a browser renders them: their text is kept apart by a space.
# Everything else (a, span, em, b, font, sacinfo, time, label...) is inline and joined without adding anything, so
# `成熟度<sacinfo>模型</sacinfo>` reads `成熟度模型`, as on screen.
BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details", "dialog", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "html", "li", "main", "nav", "ol", "option", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "ul",
})
_SKIP_TAGS = frozenset({"script", "style", "template", "noscript", "head", "title", "-comment"})


def _text_pieces(node: LexborNode) -> list[str]:
    """The text of `node` as rendered: inline elements joined as they are, block elements set apart by a space."""
    out: list[str] = []
    stack: list = [iter(node.iter(include_text=True))]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        tag = child.tag
        if tag == "-text":
            out.append(child.text_content or "")
        elif tag in _SKIP_TAGS:
            continue
        elif tag in BLOCK_TAGS:
            out.append(" ")
            stack.append(_closing(child, out))
        else:
            stack.append(iter(child.iter(include_text=True)))
    return out


def _closing(node: LexborNode, out: list[str]):
    yield from node.iter(include_text=True)
    out.append(" ")


def node_text(node: LexborNode | None) -> str:
    """Whitespace-collapsed text of a node (entities decoded); inline tags add no spaces, block tags one."""
    if node is None:
        return ""
    return clean_text(html.unescape("".join(_text_pieces(node))))


# Markers sites add to list rows: pinned labels, "new" badges, hot tags. They are not part of a title.
MARKER_WORDS = frozenset({
    "置顶", "顶", "新", "最新", "热", "荐", "推荐", "new", "New", "NEW", "hot", "Hot", "HOT", "top", "Top", "TOP",
})
_MARKER_CLASS_RE = re.compile(r"^(?:.*[-_])?(?:new|hot|top|badge|icon|zd|zhiding|sticky|pinned|stick)(?:[-_].*)?$",
                              re.I)
_MWORD = r"(?:置顶|顶|新|最新|热|荐|推荐|new|New|NEW|hot|Hot|HOT|top|Top|TOP)"
_BRACKETED = r"[【\[［(（<〈]\s*" + _MWORD + r"\s*[】\]］)）>〉]"
_CJK = "\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef"
# A bare NEW/hot counts as a marker only next to Chinese text, so English titles ("What's new") keep their words.
_LEAD_MARKER_RE = re.compile(r"^\s*(?:" + _BRACKETED + r"|置顶|(?:NEW|New|new|HOT|Hot|hot)(?=\s*[" + _CJK + r"]))\s*")
_TRAIL_MARKER_RE = re.compile(r"(?:\s*" + _BRACKETED + r"|(?<=[" + _CJK + r"])\s*(?:NEW|New|new|HOT|Hot|hot))\s*$")


def strip_markers(title: str | None) -> str:
    """A title without the pinned/new/hot markers a site puts before or after it: 【置顶】, [新], NEW, (hot)..."""
    t = clean_text(title)
    while True:
        stripped = _TRAIL_MARKER_RE.sub("", _LEAD_MARKER_RE.sub("", t, count=1), count=1)
        if stripped == t or not stripped:
            return t if not stripped else stripped
        t = stripped


# Tags search pages use to highlight a hit: a one-character hit like <em>新</em> is a title's own word, not a badge.
_HIGHLIGHT_TAGS = frozenset({"sacinfo", "em", "font", "b", "strong", "mark", "u"})
_STRONG_MARKERS = frozenset({"置顶", "NEW", "New", "HOT"})


def _is_marker(node: LexborNode) -> bool:
    text = clean_text(node.text(deep=True))
    if not text:
        return True           # an icon, an <img>, an empty badge span: contributes nothing
    if re.fullmatch(_BRACKETED, text):
        return True
    if node.tag in _HIGHLIGHT_TAGS:
        return text in _STRONG_MARKERS
    if text in MARKER_WORDS:
        return True
    classes = (node.attributes.get("class") or "").split()
    return len(text) <= 4 and any(_MARKER_CLASS_RE.match(c) for c in classes)


def title_text(node: LexborNode | None) -> str:
    """The title a person reads in `node`: highlight tags (<sacinfo>, <em>, <font>, <b>, highlight spans) removed
    without adding spaces, and badge elements or markers at its start or end (置顶, NEW, icons, 【置顶】, [新]) dropped.
    A marker word in the middle of a title is kept (it is then part of the title, e.g. a highlighted search hit)."""
    if node is None:
        return ""
    segments: list[tuple[str, bool]] = []     # (text, is_marker)
    for child in node.iter(include_text=True):
        tag = child.tag
        if tag == "-text":
            segments.append((child.text_content or "", False))
        elif tag in _SKIP_TAGS:
            continue
        elif tag in BLOCK_TAGS:
            segments.append((" " + "".join(_text_pieces(child)) + " ", False))
        elif _is_marker(child):
            segments.append((clean_text(child.text(deep=True)), True))
        else:
            segments.append(("".join(_text_pieces(child)), False))
    real = [i for i, (t, m) in enumerate(segments) if not m and t.strip()]
    if real:
        segments = [s for i, s in enumerate(segments) if real[0] <= i <= real[-1] or not s[1] and not s[0].strip()]
    text = "".join(t for t, _ in segments)
    return strip_markers(html.unescape(text))


def require(tree, selector: str, url: str) -> LexborNode:
    node = tree.css_first(selector)
    if node is None:
        raise ParseError("required element not found", url=url, selector=selector)
    return node


def select_value(row: LexborNode, spec: str | None, base_url: str, title: bool = False) -> str | None:
    """`sel` -> text of the first match; `sel@attr` -> attribute (made absolute for href/src). With `title`, the
    value is read as a title: highlight tags joined without spaces, badges and 置顶/NEW markers dropped."""
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
        elif title:
            value = strip_markers(value)
        return value or None
    return (title_text(node) if title else node_text(node)) or None


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


def query_param(url: str, name: str) -> str | None:
    """The (decoded) value of query parameter `name` in `url`, or None."""
    for piece in urlsplit(url).query.split("&"):
        key, _, value = piece.partition("=")
        if unquote_plus(key) == name:
            return unquote_plus(value)
    return None


def set_query_param(url: str, name: str, value: str | int) -> str:
    """`url` with query parameter `name` set to `value`: replaced in place when present, else appended. The rest
    of the query is kept byte for byte (a replay or a cache matches the configured URL exactly)."""
    parts = urlsplit(url)
    pieces = [p for p in parts.query.split("&") if p] if parts.query else []
    encoded = f"{quote(name, safe='')}={quote(str(value), safe='')}"
    for i, piece in enumerate(pieces):
        if unquote_plus(piece.partition("=")[0]) == name:
            pieces[i] = encoded
            break
    else:
        pieces.append(encoded)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(pieces), parts.fragment))


def check_page_no(page_no: int) -> int:
    if not isinstance(page_no, int) or isinstance(page_no, bool) or page_no < 1:
        raise ValueError(f"page numbers start at 1, got {page_no!r}")
    return page_no


def as_str(value) -> str:
    """A JSON scalar as text ("" for null, objects, lists and booleans): rows of changing APIs may hold anything."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return ""


def row_value(row: dict, *keys: str) -> str:
    """The first non-empty value among `keys` (case-insensitive) of a JSON row, as text."""
    for k in keys:
        v = as_str(ci_get(row, k)).strip()
        if v:
            return v
    return ""


_HIGHLIGHT_TAG_RE = re.compile(r"</?(?:sacinfo|em|font|b|strong|i|u|mark|span|sup|sub|a|img|br)(?:\s[^<>]*)?/?>", re.I)


def strip_inline_tags(s: str | None) -> str:
    """Text of a JSON field that may carry highlight markup (<sacinfo>, <em>, <font color=red>, <span class=…>):
    the tags removed without adding spaces, entities decoded, whitespace collapsed."""
    return clean_text(html.unescape(_HIGHLIGHT_TAG_RE.sub("", html.unescape(s or ""))))

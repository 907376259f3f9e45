"""Text from web pages is hostile until it has been through here.

Applied once, where page text enters (after extraction, before anything is compared, stored or shown): terminal
escape sequences (CSI, OSC), C0/C1 control characters, format characters (zero-width, bidirectional overrides,
U+FEFF) and lone surrogates are removed; tabs and newlines fold to a space; long values are cut with a marked end.
Every output still escapes for its own format (HTML, XML, Slack mrkdwn, the terminal); this only makes sure that
no byte from a page can steer a terminal, break an XML feed or hide text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

TITLE_MAX = 500
TEXT_MAX = 2000
URL_MAX = 2048
CUT = "…[cut]"

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"            # CSI: colours, cursor moves, erase
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks (ended by BEL or ST)
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"       # DCS, SOS, PM, APC strings
    r"|\x1b[@-Z\\-_]?"                      # other two-character escapes, or a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"               # 8-bit CSI
)
_FOLD = re.compile(r"[\t\n\r\v\f\x85\u2028\u2029]+")
_BAD_CATEGORIES = {"Cc", "Cf", "Cs"}
_SAFE_CACHE: dict[str, bool] = {}


def _bad(ch: str) -> bool:
    hit = _SAFE_CACHE.get(ch)
    if hit is None:
        hit = _SAFE_CACHE[ch] = unicodedata.category(ch) in _BAD_CATEGORIES
    return hit


def clean(value: str | None, limit: int | None = TEXT_MAX) -> str | None:
    """A string safe to store and show: no escapes, controls or format characters, at most `limit` characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if value.isascii() and value.isprintable():
        s = value
    else:
        s = _ESCAPES.sub("", value)
        s = _FOLD.sub(" ", s)
        if not s.isprintable():
            s = "".join(ch for ch in s if not _bad(ch))
    if limit is not None and len(s) > limit:
        s = s[:limit - len(CUT)].rstrip() + CUT
    return s


def shown(text, limit: int = 1000) -> str:
    """An error or reason as it may be stored and shown: secrets masked, server or page text made safe."""
    from watcher.logs import mask
    return clean(mask(str(text)), limit) or ""


def clean_url(value: str | None) -> str | None:
    """URLs lose whitespace and controls entirely (a space in a URL becomes %20)."""
    if value is None:
        return None
    s = clean(value, None) or ""
    s = s.strip().replace(" ", "%20")
    return s[:URL_MAX]


def clean_any(value: Any, limit: int | None = TEXT_MAX) -> Any:
    if isinstance(value, str):
        return clean(value, limit)
    if isinstance(value, list):
        return [clean_any(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: (clean_url(v) if k == "url" and isinstance(v, str) else clean_any(v, limit))
                for k, v in value.items()}
    return value


def sanitize_entry(e) -> None:
    """Clean every string field of an extracted Entry in place."""
    e.key = clean(e.key, 512) or ""
    e.url = clean_url(e.url) or ""
    e.title = clean(e.title, TITLE_MAX) or ""
    for name in ("summary", "status", "committee", "published", "deadline", "plan_no", "std_no", "issue_date",
                 "act_date", "title_en"):
        v = getattr(e, name, None)
        if isinstance(v, str):
            setattr(e, name, clean(v, TITLE_MAX if name == "title_en" else TEXT_MAX))
    e.std_nos = [clean(x, 64) for x in e.std_nos]
    e.attachments = clean_any(e.attachments, TITLE_MAX)
    e.extra = clean_any(e.extra)


_TERMINAL_UNSAFE = re.compile(
    "\x1b\\[[0-?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(?:\x07|\x1b\\\\)?|\x1b[@-Z\\\\-_]?"
    "|[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff"
                          "\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def terminal_safe(text: str) -> str:
    """What may reach a terminal: no escape sequences, controls (but newline and tab) or direction overrides."""
    return _TERMINAL_UNSAFE.sub("", text)


def xml_safe(text: str) -> str:
    """Characters XML 1.0 allows (and no invisible direction or width tricks)."""
    return _XML_INVALID.sub("", text)


class SafeStream:
    """A text stream that passes everything through `terminal_safe`: the CLI's stdout and stderr."""

    def __init__(self, inner):
        self._inner = inner

    def write(self, s: str) -> int:
        return self._inner.write(terminal_safe(s))

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

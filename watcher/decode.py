"""Bytes -> text. BOM, then the HTTP charset, then <meta> in the first KiBs, then detection, then UTF-8.

GB2312/GBK labels decode as GB18030: real "gb2312" pages contain GBK-only characters (鎔, —) that the strict GB2312
codec damages, and GB18030 is a superset of both (WHATWG treats the gb2312 label the same way).
"""

from __future__ import annotations

import codecs
import re

_GB_ALIASES = {"gb2312", "gbk", "x-gbk", "cp936", "euc-cn", "gb_2312-80", "gb_2312", "csgb2312", "ms936", "windows-936", "gb18030"}
_META_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_CT_RE = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", re.I)
_BOMS = [(codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")]  # "utf-16" consumes the BOM


def canonical_encoding(label: str | None) -> str | None:
    """A Python codec name for a charset label, or None if unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in _GB_ALIASES:
        return "gb18030"
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    if name in ("gb2312", "gbk"):
        return "gb18030"
    return name


def sniff_encoding(body: bytes, content_type: str | None = None) -> str:
    """The encoding to decode `body` with, by BOM > HTTP charset > <meta> > detection > utf-8."""
    for bom, enc in _BOMS:
        if body.startswith(bom):
            return enc
    if content_type:
        m = _CT_RE.search(content_type)
        enc = canonical_encoding(m.group(1)) if m else None
        if enc:
            return enc
    m = _META_RE.search(body[:4096])
    if m:
        enc = canonical_encoding(m.group(1).decode("ascii", "ignore"))
        if enc:
            return enc
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(body[:65536]).best()
    return canonical_encoding(best.encoding) if best and best.encoding else "utf-8"


def to_text(body: bytes, content_type: str | None = None) -> tuple[str, str, int]:
    """Decode a body: returns (text, encoding used, number of U+FFFD replacement characters introduced)."""
    enc = sniff_encoding(body, content_type)
    if enc.startswith("utf-8"):
        enc = "utf-8-sig" if body.startswith(codecs.BOM_UTF8) else "utf-8"
    text = body.decode(enc, errors="replace")
    bad = text.count("\ufffd")
    if bad and not enc.startswith("utf"):
        # a mislabelled page (declares gb2312, is really UTF-8) is common on CMS templates: trust clean UTF-8
        try:
            return body.decode("utf-8-sig"), "utf-8", 0
        except UnicodeDecodeError:
            pass
    return text, enc.replace("-sig", ""), bad

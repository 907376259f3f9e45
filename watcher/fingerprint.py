"""Entry identity and content digests over normalised fields, so whitespace, width and entity noise is not a change."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from typing import Any

from watcher.identify import clean_text

# Fields that make up an entry's content. Order on the page, fetch time and page chrome are deliberately absent.
CONTENT_FIELDS = ("url", "title", "published", "deadline", "summary", "plan_no", "std_no", "status",
                  "issue_date", "act_date", "attachments")
ROW_FIELDS = CONTENT_FIELDS  # the detail fields are merged in afterwards; the row digest is taken before


def normalize_value(v: Any) -> Any:
    if isinstance(v, str):
        return clean_text(unicodedata.normalize("NFKC", v))
    if isinstance(v, list):
        items = [normalize_value(x) for x in v]
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True, ensure_ascii=False))
    if isinstance(v, dict):
        return {k: normalize_value(x) for k, x in sorted(v.items())}
    return v


def content(fields: dict[str, Any]) -> dict[str, Any]:
    """The normalised content fields; empty values are dropped so None, "" and [] are the same."""
    out = {}
    for k in CONTENT_FIELDS:
        v = normalize_value(fields.get(k))
        if v not in (None, "", [], {}):
            out[k] = v
    return out


def digest(fields: dict[str, Any]) -> str:
    blob = json.dumps(content(fields), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()

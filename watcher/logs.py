"""Logging setup: key=value or JSON lines on stderr, with secrets masked."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_SECRET_PARAMS = (r"pass|password|passwd|pwd|token|access_token|refresh_token|id_token|key|apikey|api_key|"
                  r"api-key|secret|client_secret|sig|signature|auth|authorization|credential|credentials|"
                  r"session|sessionid|jwt|bearer|private_key|webhook_token")
_SECRET_RES = [
    re.compile(r"(?P<keep>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+(?=@)"),                       # scheme://USER:PASS@host
    re.compile(r"(?P<keep>hooks\.slack\.com/services/[^/\s]+/[^/\s]+/)[^/\s?#]+"),            # slack webhook token
    re.compile(r"(?P<keep>slack://[^/\s]+/[^/\s]+/)[^/\s?#]+"),
    re.compile(r"(?P<keep>discord(?:app)?\.com/api/webhooks/[^/\s]+/)[^/\s?#]+"),
    re.compile(r"(?P<keep>[?&;](?:" + _SECRET_PARAMS + r")=)[^&#\s]+", re.I),
    re.compile(r"(?P<keep>\b(?:Authorization|X-Api-Key|Api-Key|X-Auth-Token)\s*[:=]\s*(?:Bearer\s+|Basic\s+|token\s+)?)"
               r"[^\s,;\"']+", re.I),
    re.compile(r"(?P<keep>\bxox[abprs]-)[A-Za-z0-9-]+"),
]
_secrets: set[str] = set()
_secret_re: re.Pattern | None = None
_TOKENISH = re.compile(r"^(?=.*\d)[A-Za-z0-9_\-:.~%+=]{8,}$|^[A-Za-z0-9_\-]{20,}$")


def register_secret(value: str) -> str:
    """Remember a value that must never be shown (every ${ENV} substitution is one); returns it unchanged."""
    global _secret_re
    if value and len(value) >= 4 and value not in _secrets:
        _secrets.add(value)
        from urllib.parse import quote
        variants = {value, quote(value, safe=""), quote(value)}
        _secrets.update(variants)
        _secret_re = re.compile("|".join(re.escape(v) for v in sorted(_secrets, key=len, reverse=True)))
    return value


def register_url_secrets(url: str) -> None:
    """Treat the token-like parts of a channel URL as secrets: user info, host and path segments that look like
    tokens, and query values (apprise URLs carry webhook ids, bot tokens and keys in any of them)."""
    from urllib.parse import parse_qsl, unquote, urlsplit
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    pieces = [parts.username or "", parts.password or ""]
    if parts.scheme not in ("http", "https", "mailto", "mailtos"):
        pieces.append(parts.hostname or "")
    pieces += [unquote(seg) for seg in parts.path.split("/")]
    pieces += [v for _, v in parse_qsl(parts.query)]
    for p in pieces:
        if p and _TOKENISH.match(p) and not re.fullmatch(r"[\d.]+|[a-z0-9.-]+\.[a-z]{2,}", p):
            register_secret(p)
    if parts.password:
        register_secret(unquote(parts.password))


_MAYBE_SECRET = re.compile(r"[:=@]|xox", re.I)


def mask(text: str) -> str:
    """Hide passwords, tokens and every registered secret inside URLs and messages."""
    if not isinstance(text, str):
        text = str(text)
    if _secret_re is not None:
        text = _secret_re.sub("****", text)
    if not _MAYBE_SECRET.search(text):       # no URL, no key=value, no token prefix: nothing more to hide
        return text
    for rx in _SECRET_RES:
        text = rx.sub(lambda m: m.group("keep") + "****", text)
    return text


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str):
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        msg = mask(record.getMessage())
        if record.exc_info:
            msg += " " + mask(self.formatException(record.exc_info)).replace("\n", " | ")
        ts = _stamp(record.created)
        fields = getattr(record, "fields", None) or {}
        if self.fmt == "json":
            return json.dumps({"ts": ts, "level": record.levelname.lower(), "logger": record.name, "msg": msg,
                               **{k: mask(v) if isinstance(v, str) else v for k, v in fields.items()}},
                              ensure_ascii=False, default=str)
        extra = " ".join(f"{k}={v if type(v) is int else _kv(v)}" for k, v in fields.items())
        return f"ts={ts} level={record.levelname.lower()} logger={record.name} msg={_kv(msg)}" + (f" {extra}" if extra else "")


_last_stamp: list = [0, ""]


def _stamp(created: float) -> str:
    """ISO time to the second, formatted once per second (a busy daemon logs many lines a second)."""
    sec = int(created)
    if _last_stamp[0] != sec:
        _last_stamp[:] = [sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + "Z"]
    return _last_stamp[1]


def _kv(v: object) -> str:
    s = mask(str(v))
    return json.dumps(s, ensure_ascii=False) if (not s or any(c in s for c in ' "=')) else s


def setup_logging(level: str = "info", fmt: str = "kv") -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(_Formatter(fmt))
    root.addHandler(h)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in ("httpx", "httpcore", "apscheduler", "apprise"):   # no scheduler chatter (job ran / executed)
        logging.getLogger(noisy).setLevel(logging.WARNING)

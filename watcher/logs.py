"""Logging setup: key=value or JSON lines on stderr, with secrets masked."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_SECRET_RES = [
    re.compile(r"(?P<keep>://[^:/@\s]*:)[^@\s]+(?=@)"),                                   # user:PASSWORD@
    re.compile(r"(?P<keep>hooks\.slack\.com/services/[^/\s]+/[^/\s]+/)[^/\s?#]+"),         # slack webhook token
    re.compile(r"(?P<keep>slack://[^/\s]+/[^/\s]+/)[^/\s?#]+"),
    re.compile(r"(?P<keep>[?&](?:pass|password|token|key|secret|apikey)=)[^&\s]+", re.I),
    re.compile(r"(?P<keep>\bxox[abp]-)[A-Za-z0-9-]+"),
]


def mask(text: str) -> str:
    """Hide passwords and tokens inside URLs and messages."""
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
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z"
        fields = getattr(record, "fields", None) or {}
        if self.fmt == "json":
            return json.dumps({"ts": ts, "level": record.levelname.lower(), "logger": record.name, "msg": msg,
                               **{k: v for k, v in fields.items()}}, ensure_ascii=False, default=str)
        extra = " ".join(f"{k}={_kv(v)}" for k, v in fields.items())
        return f"ts={ts} level={record.levelname.lower()} logger={record.name} msg={_kv(msg)}" + (f" {extra}" if extra else "")


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
    for noisy in ("httpx", "httpcore", "apscheduler.executors.default", "apprise"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

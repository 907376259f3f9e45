"""Channels: apprise URLs checked, classified and sent without importing all of apprise.

* `quick_check(url)` (config load, every command): the scheme must be one apprise knows (`channel_schemes`), or
  an http(s) webhook address of a service apprise reads natively. No apprise import.
* `deep_check(url)` (`watcher check`, `notify-test`, and the daemon at start and reload, in a child process so
  the daemon does not keep apprise's plugins in memory): apprise's own parser for that one plugin.
* `family(url)`: how messages are rendered for it: `slack` (mrkdwn), `email` (subject + HTML + text),
  `markdown`, or `text`.
* `send(...)`: loads the one plugin the URL needs and sends through it; apprise is imported only here.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from urllib.parse import urlsplit

from watcher.channel_schemes import SCHEMES

# http(s) addresses that apprise reads natively (a pasted Slack or Discord webhook), by host suffix
NATIVE_HOSTS: dict[str, str] = {
    "hooks.slack.com": "slack", "discord.com": "discord", "discordapp.com": "discord",
    "webhook.office.com": "workflows", "open.feishu.cn": "feishu", "open.larksuite.com": "lark",
    "qyapi.weixin.qq.com": "wecombot", "chat.googleapis.com": "gchat", "ntfy.sh": "ntfy",
}
EMAIL_SCHEMES = {"mailto", "mailtos", "o365", "azure", "ses", "sendgrid", "mailgun", "sparkpost", "postmark",
                 "resend", "smtp2go", "mailersend", "brevo", "sendpulse"}
MARKDOWN_SCHEMES = {"discord", "matrix", "matrixs", "mmost", "mmosts", "rocket", "rockets", "zulip", "ntfy",
                    "ntfys", "gotify", "gotifys", "workflows", "feishu", "lark", "wecombot", "dingtalk"}


def scheme_of(url: str) -> str:
    """The apprise scheme a URL stands for (a native webhook address maps to its service)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        host = (parts.hostname or "").lower()
        for suffix, native in NATIVE_HOSTS.items():
            if host == suffix or host.endswith("." + suffix):
                return native
    return scheme


def family(url: str) -> str:
    s = scheme_of(url)
    if s == "slack":
        return "slack"
    if s in EMAIL_SCHEMES:
        return "email"
    if s in MARKDOWN_SCHEMES:
        return "markdown"
    return "text"


def quick_check(url: str) -> str | None:
    """None when the URL looks like a channel apprise can send to, else why not (never showing the URL)."""
    parts = urlsplit(url.strip())
    if not parts.scheme:
        return "not a URL (expected an apprise URL such as slack://…, mailtos://…, json://…)"
    s = scheme_of(url)
    if s in ("http", "https"):
        return None if parts.hostname else "an http(s) URL needs a host"
    if s not in SCHEMES:
        return f"unknown apprise scheme {parts.scheme}://"
    if not (parts.netloc or parts.path.strip("/")):
        return f"{parts.scheme}:// URL has nothing after the scheme"
    return None


def slack_blocks(url: str) -> bool:
    """Whether a Slack channel gets Block Kit messages (our own mrkdwn, passed through untouched). The legacy
    attachment mode re-creates `<!channel>` mentions from escaped text, so it only gets plain text."""
    q = urlsplit(url).query.lower()
    return not re.search(r"(?:^|&)blocks=(?:no|false|0|off)\b", q)


def _with_blocks(url: str) -> str:
    if scheme_of(url) != "slack" or re.search(r"(?:^|[?&])blocks=", url):
        return url
    return url + ("&" if "?" in url else "?") + "blocks=yes"


def encode_subject(subject: str) -> str:
    """RFC 2047 encoded words of at most 75 characters each, separated by spaces, for a non-ASCII subject: mail
    readers join them, and no header line comes near the 998-byte limit."""
    if subject.isascii():
        return subject
    import base64
    words, chunk = [], ""
    for ch in subject:
        if len(base64.b64encode((chunk + ch).encode("utf-8"))) > 75 - len("=?utf-8?b??="):
            words.append(chunk)
            chunk = ""
        chunk += ch
    if chunk:
        words.append(chunk)
    return " ".join(f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in words)


def _plugin(url: str):
    """The apprise plugin instance for a URL, or None when apprise cannot read it."""
    import apprise  # noqa: F401  (imported on purpose only here)
    url = _with_blocks(url)
    s = scheme_of(url)
    target = SCHEMES.get(s)
    if target is None or urlsplit(url).scheme.lower() in ("http", "https") and s not in SCHEMES:
        return apprise.Apprise.instantiate(url, asset=_asset(), suppress_exceptions=True)
    module, cls_name = target
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError):      # another apprise version: let it find the plugin itself
        return apprise.Apprise.instantiate(url, asset=_asset(), suppress_exceptions=True)
    if urlsplit(url).scheme.lower() in ("http", "https"):
        parsed = cls.parse_native_url(url)
    else:
        parsed = cls.parse_url(url)
    if not parsed:
        return None
    try:
        return cls(asset=_asset(), **parsed)
    except Exception:  # apprise raises TypeError/AppriseImproperlyConfigured for bad tokens
        return None


def _asset():
    import apprise
    # no persistent storage files: the state directory is ours
    return apprise.AppriseAsset(app_id="watcher", app_desc="watcher standards monitor", storage_mode="memory")


def deep_check(url: str) -> str | None:
    """None when apprise's own parser accepts the URL, else why not (without showing it)."""
    why = quick_check(url)
    if why:
        return why
    if _plugin(url) is None:
        return "not a valid apprise URL (apprise rejected it; see `apprise --details` for its format)"
    return None


def privacy_url(url: str) -> str:
    """The URL as apprise shows it with privacy on (tokens shortened, passwords hidden)."""
    from watcher.logs import mask
    try:
        obj = _plugin(url)
    except Exception:
        obj = None
    if obj is None:
        return mask(url)
    return mask(obj.url(privacy=True))


def send(url: str, title: str, body: str, body_format: str, notify_type: str = "info") -> tuple[bool, str]:
    """Send one message; (ok, error text). Failure is a result, never an exception. `body_format` "slack" is
    Slack mrkdwn made by us: apprise passes it through untouched (Block Kit)."""
    from watcher.logs import mask
    import apprise
    try:
        obj = _plugin(url)
    except Exception as e:
        return False, mask(f"cannot load the channel's plugin: {e.__class__.__name__}: {e}")
    if obj is None:
        return False, "invalid apprise URL"
    fmt = {"markdown": apprise.NotifyFormat.MARKDOWN, "html": apprise.NotifyFormat.HTML,
           "text": apprise.NotifyFormat.TEXT, "slack": None}[body_format]
    if family(url) == "email":
        title = encode_subject(title)
    logs: list[str] = []
    handler = _Capture(logs)
    alog = logging.getLogger("apprise")
    alog.addHandler(handler)
    try:
        ok = obj.notify(body=body, title=title, body_format=fmt,
                        notify_type=getattr(apprise.NotifyType, notify_type.upper(), apprise.NotifyType.INFO))
    except Exception as e:  # a plugin bug must not kill the sender; the row stays retryable
        return False, mask(f"{e.__class__.__name__}: {e}")[:2000]
    finally:
        alog.removeHandler(handler)
    if ok:
        return True, ""
    return False, mask(" | ".join(logs[-3:]) or "the channel refused the message (no detail from apprise)")[:2000]


class _Capture(logging.Handler):
    """Keeps apprise's warnings and errors: the reason a send failed."""

    def __init__(self, sink: list[str]):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.levelname}: {record.getMessage()}")


def check_main(urls: list[str]) -> int:
    """Child-process entry: deep-check URLs given on stdin (one per line); prints `index: reason` lines."""
    bad = 0
    for i, url in enumerate(urls):
        why = deep_check(url)
        if why:
            print(f"{i}: {why}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(check_main([line.rstrip("\n") for line in sys.stdin]))
    raise SystemExit("usage: python -m watcher.channels --check < urls")

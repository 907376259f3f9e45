"""Load and validate sources.toml into a Config; every field is declared once in SCHEMA-like tables below.

Errors name the file, the line and the field: `sources.toml:14: [source.cac-wxan] interval: expected a duration
like "30m", got "soon"`. The README's reference is checked against these tables by a test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from watcher.errors import ConfigError
from watcher.identify import STAGES
from watcher.logs import register_secret, register_url_secrets

_DURATION_RE = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


_DOW = {"0": "sun", "1": "mon", "2": "tue", "3": "wed", "4": "thu", "5": "fri", "6": "sat", "7": "sun"}


def cron_trigger(expr: str, timezone: str = "Asia/Shanghai", jitter: int | None = None):
    """A CronTrigger from a standard 5-field crontab line. APScheduler 3's from_crontab reads day-of-week numbers
    as 0 = Monday; crontab means 0 = Sunday, so numbers are turned into names first."""
    from apscheduler.triggers.cron import CronTrigger
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"wrong number of fields; got {len(fields)}, expected 5")
    fields[4] = re.sub(r"\d", lambda m: _DOW[m.group(0)], fields[4]) if fields[4] != "*" else "*"
    minute, hour, day, month, dow = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone=timezone,
                       jitter=jitter)


def parse_duration(value: Any) -> float:
    """'30m', '1h30m', '20s', '2d', or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    if isinstance(value, str) and value.strip():
        m = _DURATION_RE.match(value)
        if m and any(m.groups()):
            d, h, mi, s = m.groups()
            return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)
    raise ValueError


# --- field declarations --------------------------------------------------------------------------------------
# Each setting is declared once, as a field of the dataclass it lives in: `opt()` gives its type, default, bounds
# and help; validation, the defaults and the README reference are derived from these declarations.

@dataclass(frozen=True)
class Field:
    name: str
    kind: str            # str, url, duration, int, bool, table, stage, choice, list, cron, selector, apprise, file, days
    default: Any = None
    help: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None

    @property
    def expected(self) -> str:
        return {
            "str": "a string", "url": "an http(s) URL", "duration": 'a duration like "30m"', "int": "a whole number",
            "bool": "true or false", "table": "a table of strings", "stage": "a stage id (" + ", ".join(STAGES) + ")",
            "choice": "one of " + ", ".join(self.choices), "list": "a list of strings",
            "cron": 'a 5-field cron expression like "0 9 * * 1-5"', "selector": "a CSS selector (optionally ending in @attr)",
            "apprise": "an apprise URL (slack://, mailto://, json://, https://hooks.slack.com/...)",
            "file": "the path of a readable file (relative to the config file)",
            "days": "a list of whole numbers of days",
        }[self.kind]


def opt(kind: str, default: Any = None, help: str = "", *, required: bool = False, choices: tuple[str, ...] = (),
        minimum: float | None = None, factory: Any = None) -> Any:
    """A config field: a dataclass field that carries its own validation spec."""
    spec = {"kind": kind, "default": default, "help": help, "required": required, "choices": choices,
            "minimum": minimum}
    if required:
        return field(metadata={"spec": spec})
    if factory is not None:
        return field(default_factory=factory, metadata={"spec": spec})
    value = tuple(default) if isinstance(default, list) else default
    return field(default=value, metadata={"spec": spec})


def specs(cls) -> list[Field]:
    """The declared config fields of a dataclass, in declaration order."""
    return [Field(f.name, **f.metadata["spec"]) for f in fields(cls) if "spec" in f.metadata]


EVENT_KINDS = ("new", "changed", "stage_changed", "deadline_soon", "in_force_soon", "source_failed", "source_broken",
               "source_recovered", "channel_failed", "channel_recovered")

# extraction settings: editing one of these re-reads the page and re-baselines silently (no flood of `changed`)
EXTRACTION_KEYS = ("url", "kind", "method", "form", "stage", "committee", "detail_pages", "rows", "title", "link",
                   "date", "deadline", "summary")


# --- config objects ------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True, slots=True)
class Source:
    id: str
    url: str = opt("url", required=True, help="Page to poll. Kept exactly as written (query string included).")
    kind: str = opt("str", required=True, help="Extractor that turns the page into entries (see Extractors).")
    name: str = opt("str", help="Human name used in messages (default: the source id).")
    method: str = opt("choice", "GET", choices=("GET", "POST"), help="HTTP method.")
    form: dict[str, str] = opt("table", help="Form fields sent with method = \"POST\".", factory=dict)
    headers: dict[str, str] = opt("table", help="Extra request headers (e.g. Referer). Values may use ${ENV}.",
                                  factory=dict)
    interval: float = opt("duration", 1800.0, help="How often the daemon polls the source.", minimum=1)
    cron: str | None = opt("cron", help="Cron expression (Asia/Shanghai) instead of interval, e.g. \"0 9-18 * * 1-5\".")
    jitter: float | None = opt("duration", help="Random delay added to each scheduled poll (default 10% of interval).")
    timeout: float = opt("duration", 20.0, help="Longest a whole request may take, first byte to last.", minimum=0.1)
    retries: int = opt("int", 2, help="Extra attempts after a connection error, 5xx or 429 within one poll.", minimum=0)
    max_bytes: int = opt("int", 5_000_000, help="Largest response body accepted.", minimum=1024)
    enabled: bool = opt("bool", True, help="Set to false to stop polling without deleting the table.")
    ca_bundle: str | None = opt("file", help="Extra CA certificates (PEM file) trusted for this source, e.g. a missing intermediate.")
    alert_after_failures: int = opt("int", 3, help="Consecutive failed (or broken) polls before a source_failed (source_broken) event.",
                                    minimum=1)
    stage: str | None = opt("stage", help="Stage every entry of this page is at (e.g. a search filtered to plans under comment).")
    committee: str | None = opt("str", help="Committee every entry of this page belongs to (e.g. \"TC260\").")
    detail_pages: bool = opt("bool", True, help="Fetch detail pages of new or changed entries (kinds that have them).")
    rows: str | None = opt("selector", help="css kind: selector of one element per entry (required for kind = \"css\").")
    title: str = opt("selector", "a", help="css kind: selector of the title inside a row.")
    link: str = opt("selector", "a@href", help="css kind: selector of the link inside a row (@attr takes an attribute).")
    date: str | None = opt("selector", help="css kind: selector of the published date inside a row.")
    deadline: str | None = opt("selector", help="css kind: selector of the comment deadline inside a row.")
    summary: str | None = opt("selector", help="css kind: selector of a summary inside a row.")
    archive: bool = opt("bool", False, help="Download the attachments of new entries (drafts, explanations) once and keep them under the state directory.")
    max_pages: int = opt("int", 5, help="When every row of the first page is new, read up to this many pages (kinds whose paging is known) until a known entry appears.", minimum=1)
    watch: bool = False                 # a watch-list lookup made from [watch], not a [source.ID] table
    watch_item: str | None = None
    line: int = 0
    host: str = field(init=False, default="")
    config_digest: str = field(init=False, default="")   # of the settings that decide what is extracted

    def __post_init__(self) -> None:
        # slots, not a __dict__ per source: a thousand sources cost a megabyte less
        object.__setattr__(self, "host", urlsplit(self.url).hostname or "")
        blob = json.dumps({k: getattr(self, k) for k in EXTRACTION_KEYS}, sort_keys=True, ensure_ascii=False)
        object.__setattr__(self, "config_digest", hashlib.sha256(blob.encode()).hexdigest()[:32])


@dataclass(frozen=True, kw_only=True)
class Channel:
    id: str
    url: str = opt("apprise", required=True, help="Apprise URL of the channel; use ${ENV} for secrets.")
    format: str | None = opt("choice", None, choices=("text", "markdown", "html"),
                             help="Message body format (default by channel type).")
    language: str = opt("choice", "both", choices=("en", "zh", "both"), help="Language of messages.")
    enabled: bool = opt("bool", True, help="Set to false to keep the channel but send nothing.")
    line: int = 0


@dataclass(frozen=True, kw_only=True)
class Subscription:
    channels: tuple[str, ...] = opt("list", required=True, help="Channel ids that receive the matching events.")
    sources: tuple[str, ...] = opt("list", ["*"], help="Glob patterns of source ids.")
    kinds: tuple[str, ...] | None = opt("list", None, help="Event kinds (new, changed, stage_changed, deadline_soon, source_failed, ...).")
    stages: tuple[str, ...] | None = opt("list", None, help="Only events whose entry is at one of these stages.")
    committees: tuple[str, ...] | None = opt("list", None, help="Only events attributed to these committees (e.g. TC260).")
    keywords: tuple[str, ...] | None = opt("list", None, help="Regular expressions; at least one must match the title.")
    watched: bool = opt("bool", False, help="Only events about standards on the watch list.")
    standards: tuple[str, ...] | None = opt("list", None, help="Only events about these standards (families such as \"GB/T 22080\" or plan numbers, any spelling), from any source.")
    mode: str = opt("choice", "immediate", choices=("immediate", "digest"), help="Send each event, or a digest.")
    digest_interval: float = opt("duration", 86400.0, help="digest mode: how often a digest is sent.", minimum=60)
    digest_at: str | None = opt("cron", None, help="digest mode: send at these times instead (cron, Asia/Shanghai), e.g. \"0 9 * * 1-5\".")
    index: int = 0
    line: int = 0


@dataclass(frozen=True, kw_only=True)
class Settings:
    user_agent: str | None = opt("str", None, help="User-Agent header (default names watcher and its version); add a contact address.")
    max_retry_wait: float = opt("duration", 10.0, help="Longest Retry-After honoured inside one poll; longer ones defer to the next poll.")
    host_delay: float = opt("duration", 0.0, help="Pause between two requests to the same host (politeness).")
    reminder_days: tuple[int, ...] = opt("days", [7, 1], help="Days before a comment deadline when a deadline_soon event is raised.")
    delivery_retry_for: float = opt("duration", 3 * 86400.0, help="How long a failing delivery keeps being retried (backoff 30 s doubling, at most 1 h) before it is marked failed.", minimum=60)
    delivery_max_attempts: int | None = opt("int", None, help="Also mark a delivery failed after this many attempts (default: no limit within delivery_retry_for).", minimum=1)
    delivery_interval: float = opt("duration", 60.0, help="How often the daemon drains the outbox (it also sends right after a poll with events).", minimum=1)
    channel_alert_after: float = opt("duration", 3600.0, help="A channel failing this long raises channel_failed to the other channels.", minimum=1)
    workers: int = opt("int", 2, help="Threads that poll sources in parallel (network waits overlap; CPU does not).",
                       minimum=1)


@dataclass(frozen=True, kw_only=True)
class Watch:
    standards: tuple[str, ...] = opt("list", [], help="Standards to follow: numbers in any spelling (\"GB/T 22080-2016\", \"GB/T 35273\" for every edition) or plan numbers (\"20230259-T-469\").")
    interval: float = opt("duration", 86400.0, help="How often each watched standard is looked up on std.samr.gov.cn.", minimum=60)
    reminder_days: tuple[int, ...] = opt("days", [7, 1], help="Days before a published standard comes into force when an in_force_soon event is raised.")


SOURCE_FIELDS = specs(Source)
SETTINGS_FIELDS = specs(Settings)
CHANNEL_FIELDS = specs(Channel)
SUBSCRIPTION_FIELDS = specs(Subscription)
WATCH_FIELDS = specs(Watch)


@dataclass(frozen=True)
class Config:
    path: Path
    sources: dict[str, Source]
    channels: dict[str, Channel] = field(default_factory=dict)
    subscriptions: tuple[Subscription, ...] = ()
    settings: Settings = field(default_factory=Settings)
    watch: Watch = field(default_factory=Watch)
    watch_items: dict[str, str] = field(default_factory=dict)      # family or plan number -> the item as written

    def watched(self, *numbers: str | None) -> str | None:
        """The watch-list item that one of these standard or plan numbers belongs to, if any."""
        if not self.watch_items:
            return None
        from watcher.identify import normalize_plan_no, std_family
        for n in numbers:
            if not n:
                continue
            key = normalize_plan_no(n) or std_family(n)
            if key in self.watch_items:
                return self.watch_items[key]
        return None


# --- loading -------------------------------------------------------------------------------------------------

def _show(value: Any) -> str:
    """A TOML-looking rendering of a value for error messages: strings in double quotes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value)


class _Locator:
    """Finds the line of a table header or of a key inside a table, by scanning the raw text. Built only when an
    error has to be reported: a valid file is never scanned."""

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str]] = []
        aot_count: dict[str, int] = {}
        for i, raw in enumerate(self.lines, 1):
            s = raw.strip()
            m = re.match(r"^\[\[\s*([^\]]+?)\s*\]\]", s)
            if m:
                name = m.group(1).replace('"', "")
                n = aot_count.get(name, 0)
                aot_count[name] = n + 1
                self.headers.append((i, f"{name}#{n}"))
                continue
            m = re.match(r"^\[\s*([^\]]+?)\s*\]", s)
            if m:
                self.headers.append((i, m.group(1).replace('"', "").replace("'", "")))

    def table(self, name: str, prefix: bool = False) -> int:
        for line, header in self.headers:
            if header == name or prefix and header.startswith(name + "."):
                return line
        return 0

    def key(self, table: str, key: str) -> int:
        start = self.table(table)
        if not start:
            return 0
        end = len(self.lines) + 1
        for line, _ in self.headers:
            if line > start:
                end = line
                break
        pat = re.compile(r'^\s*["\']?' + re.escape(key) + r'["\']?\s*=')
        for i in range(start, end - 1):
            if pat.match(self.lines[i]):
                return i + 1
        return start


class _Loader:
    def __init__(self, path: Path, text: str):
        self.path = path
        self.text = text
        self._loc: _Locator | None = None
        self._selectors: set[str] = set()      # each distinct selector is validated once

    @property
    def loc(self) -> _Locator:
        if self._loc is None:
            self._loc = _Locator(self.text)
        return self._loc

    def fail(self, line: int, where: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.path.name}:{line}: {where} {msg}".replace("  ", " "))

    def fail_key(self, table: str, key: str, where: str, msg: str) -> ConfigError:
        return self.fail(self.loc.key(table, key), where, msg)

    def interpolate(self, value: str, table: str, key: str) -> str:
        if "${" not in value:
            return value

        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return register_secret(os.environ[name])
            if default is not None:
                return default
            raise self.fail_key(table, key, f"[{table}] {key}:",
                                f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
        return _ENV_RE.sub(sub, value)

    def convert(self, f: Field, value: Any, table: str) -> Any:
        where = f"[{table}] {f.name}:"

        def bad(extra: str = "") -> ConfigError:
            shown = "(a value from the environment)" if f.kind == "apprise" else _show(value)
            return self.fail_key(table, f.name, where, f"expected {f.expected}, got {shown}{extra}")

        k = f.kind
        if isinstance(value, str) and k not in ("duration", "apprise"):
            value = self.interpolate(value, table, f.name)
        if k == "file":
            if not isinstance(value, str) or not value.strip():
                raise bad()
            path = Path(value).expanduser()
            if not path.is_absolute():
                path = self.path.parent / path
            if not path.is_file():
                raise self.fail_key(table, f.name, where, f"file not found: {path}")
            if f.name == "ca_bundle":
                import ssl
                try:
                    ssl.create_default_context(cafile=str(path))
                except (ssl.SSLError, OSError, ValueError) as e:
                    raise self.fail_key(table, f.name, where, f"not a PEM certificate file: {path} ({e})") from None
            return str(path)
        if k in ("str", "cron", "selector", "stage", "choice", "url", "apprise"):
            if not isinstance(value, str) or not value.strip():
                raise bad()
            value = value.strip()
            if k == "stage" and value not in STAGES:
                raise bad()
            if k == "choice":
                up = value.upper() if f.name == "method" else value
                if up not in f.choices:
                    raise bad()
                value = up
            if k == "url":
                parts = urlsplit(value)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise bad()
            if k == "cron":
                try:
                    cron_trigger(value)
                except ValueError as e:
                    raise bad(f" ({e})") from None
            if k == "selector" and value not in self._selectors:
                css = value.rsplit("@", 1)[0] if "@" in value else value
                if css:
                    from selectolax.lexbor import LexborHTMLParser
                    try:
                        LexborHTMLParser("<p></p>").css(css)
                    except Exception as e:  # selectolax raises several types for bad selectors
                        raise bad(f" ({e})") from None
                self._selectors.add(value)
            if k == "apprise":
                value = self.interpolate_url(value, table, f.name)
                from watcher.channels import quick_check
                why = quick_check(value)
                if why:
                    raise self.fail_key(table, f.name, where, why)
            return value
        if k == "duration":
            if isinstance(value, str):
                value = self.interpolate(value, table, f.name)
            try:
                seconds = parse_duration(value)
            except ValueError:
                raise bad() from None
            if f.minimum is not None and seconds < f.minimum:
                raise self.fail_key(table, f.name, where, f"must be at least {f.minimum:g}s, got {_show(value)}")
            return seconds
        if k == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad()
            if f.minimum is not None and value < f.minimum:
                raise self.fail_key(table, f.name, where, f"must be at least {f.minimum:g}, got {_show(value)}")
            return value
        if k == "bool":
            if not isinstance(value, bool):
                raise bad()
            return value
        if k == "table":
            if not isinstance(value, dict) or not all(isinstance(v, (str, int, float)) for v in value.values()):
                raise bad()
            return {str(kk): self.interpolate(str(v), table, f.name) for kk, v in value.items()}
        if k == "days":
            if isinstance(value, int) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                      for d in value):
                raise bad()
            return tuple(sorted(set(value), reverse=True))
        if k == "list":
            if isinstance(value, (str, int)):
                value = [value]
            if not isinstance(value, list) or not value:
                raise bad()
            return tuple(value)
        raise AssertionError(k)

    def interpolate_url(self, value: str, table: str, key: str) -> str:
        """${ENV} inside a URL: a variable that is the whole value is used as it is; one that is part of a URL
        is percent-encoded, so `alice@example.com` or `p@ss/w?rd` work as SMTP credentials."""
        m = _ENV_RE.fullmatch(value.strip())
        if m:
            return self.interpolate(value.strip(), table, key)

        def sub(m: re.Match) -> str:
            raw = self.interpolate(m.group(0), table, key)
            enc = quote(raw, safe="")
            register_secret(enc)
            return enc
        return _ENV_RE.sub(sub, value)

    def fields(self, spec: list[Field], raw: dict, table: str, base: dict | None = None,
               allowed_extra: tuple[str, ...] = ()) -> dict[str, Any]:
        names = {f.name: f for f in spec}
        for key in raw:
            if key not in names and key not in allowed_extra:
                near = [n for n in names if n.startswith(key[:3])]
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise self.fail_key(table, key, f"[{table}] {key}:", f"unknown key{hint}")
        out: dict[str, Any] = {}
        for f in spec:
            if f.name in raw:
                out[f.name] = self.convert(f, raw[f.name], table)
            elif base and f.name in base:
                out[f.name] = base[f.name]
            elif f.required:
                raise self.fail(self.loc.table(table), f"[{table}]", f"missing required key {f.name!r}")
            elif f.default is not None:
                out[f.name] = tuple(f.default) if isinstance(f.default, list) else f.default
        return out


def load_config(path: str | Path) -> Config:
    """Read and validate a sources.toml; raises ConfigError with file:line for any mistake. Channel URLs get a
    quick check here; `check_channels` asks apprise itself (`watcher check`, the daemon at start)."""
    from watcher.extract import EXTRACTORS

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (set --config or WATCHER_CONFIG)") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot read config: permission denied for uid {os.getuid()} "
                          "(the file must be readable by the user watcher runs as)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = m.group(1) if m else "?"
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise ConfigError(f"{path.name}:{line}: TOML syntax error: {msg}") from None

    ld = _Loader(path, text)
    allowed_top = {"defaults", "source", "channel", "subscription", "settings", "watch"}
    for key in data:
        if key not in allowed_top:
            line = ld.loc.table(key, prefix=True) or 1
            raise ld.fail(line, f"[{key}]", "unknown table (expected defaults, settings, watch, source.ID, channel.ID, [[subscription]])")

    raw_defaults = data.get("defaults", {})
    if not isinstance(raw_defaults, dict):
        raise ld.fail(1, "defaults:", "must be a table")
    default_spec = [f for f in SOURCE_FIELDS if f.name not in ("url", "kind")]
    defaults = ld.fields([Field(f.name, f.kind, None, f.help, False, f.choices, f.minimum) for f in default_spec],
                         raw_defaults, "defaults")

    raw_settings = data.get("settings", {})
    if not isinstance(raw_settings, dict):
        raise ld.fail(ld.loc.table("settings", prefix=True) or 1, "settings:", "must be a table")
    settings = Settings(**ld.fields(SETTINGS_FIELDS, raw_settings, "settings"))

    sources: dict[str, Source] = {}
    raw_sources = data.get("source", {})
    if not isinstance(raw_sources, dict):
        raise ld.fail(1, "source:", "sources are tables named [source.ID]")
    for sid, raw in raw_sources.items():
        table = f"source.{sid}"
        if not _ID_RE.match(sid):
            raise ld.fail(ld.loc.table(table), f"[{table}]", "source id may use letters, digits, '-', '_' and '.'")
        if not isinstance(raw, dict):
            raise ld.fail(ld.loc.key("source", sid) or 1, f"[{table}]", "must be a table")
        vals = ld.fields(SOURCE_FIELDS, raw, table, base=defaults)
        kind = vals["kind"]
        if kind not in EXTRACTORS:
            raise ld.fail_key(table, "kind", f"[{table}] kind:",
                              f"unknown kind {kind!r} (known: {', '.join(sorted(EXTRACTORS))})")
        if kind == "css" and not vals.get("rows"):
            raise ld.fail(ld.loc.table(table), f"[{table}]", "kind \"css\" needs a rows selector")
        if vals.get("form") and vals.get("method", "GET") != "POST":
            raise ld.fail_key(table, "form", f"[{table}] form:", 'only makes sense with method = "POST"')
        vals.setdefault("name", sid)
        sources[sid] = Source(id=sid, **vals)

    raw_watch = data.get("watch", {})
    if not isinstance(raw_watch, dict):
        raise ld.fail(ld.loc.table("watch", prefix=True) or 1, "watch:", "must be a table ([watch])")
    watch = Watch(**ld.fields(WATCH_FIELDS, raw_watch, "watch"))
    watch_items = _watch_sources(ld, watch, sources, defaults)

    channels: dict[str, Channel] = {}
    raw_channels = data.get("channel", {})
    if not isinstance(raw_channels, dict):
        raise ld.fail(1, "channel:", "channels are tables named [channel.ID]")
    for cid, raw in raw_channels.items():
        table = f"channel.{cid}"
        if not _ID_RE.match(cid):
            raise ld.fail(ld.loc.table(table), f"[{table}]", "channel id may use letters, digits, '-', '_' and '.'")
        if not isinstance(raw, dict):
            raise ld.fail(1, f"[{table}]", "must be a table")
        channels[cid] = Channel(id=cid, **ld.fields(CHANNEL_FIELDS, raw, table))
        register_url_secrets(channels[cid].url)

    subs: list[Subscription] = []
    raw_subs = data.get("subscription", [])
    if not isinstance(raw_subs, list):
        raise ld.fail(ld.loc.table("subscription"), "[subscription]", "use [[subscription]] (an array of tables)")
    for i, raw in enumerate(raw_subs):
        table = f"subscription#{i}"
        where = f"[[subscription]] #{i + 1}"
        if not isinstance(raw, dict):
            raise ld.fail(ld.loc.table(table), where, "must be a table")
        vals = ld.fields(SUBSCRIPTION_FIELDS, raw, table)
        _check_subscription(ld, vals, table, where, channels, sources)
        subs.append(Subscription(index=i, **vals))
    return Config(path=path, sources=sources, channels=channels, subscriptions=tuple(subs), settings=settings,
                  watch=watch, watch_items=watch_items)


def _watch_sources(ld: _Loader, watch: Watch, sources: dict[str, Source], defaults: dict) -> dict[str, str]:
    """One std.samr lookup source per watch-list item (`watch:GB/T 22080`), made like any [source.ID]."""
    from watcher.extract.samr import watch_family, watch_request
    items: dict[str, str] = {}
    for item in watch.standards:
        if not isinstance(item, str):
            raise ld.fail_key("watch", "standards", "[watch] standards:", f"expected standard or plan numbers, got {_show(item)}")
        family = watch_family(item)
        req = watch_request(item) if family else None
        if not family or req is None:
            raise ld.fail_key("watch", "standards", "[watch] standards:",
                              f"{_show(item)} is not a standard number (like \"GB/T 22080-2016\") or a plan number "
                              "(like \"20230259-T-469\")")
        if family in items:
            continue
        items[family] = item
        url, kind, form = req
        sid = f"watch:{family}"
        base = {k: v for k, v in defaults.items() if k in ("timeout", "retries", "max_bytes", "alert_after_failures",
                                                            "ca_bundle", "headers", "jitter")}
        sources[sid] = Source(id=sid, url=url, kind=kind, name=f"watch {family}", method="POST" if form else "GET",
                              form=form, interval=watch.interval, watch=True, watch_item=item, max_pages=1, **base)
    return items


def check_channels(config: Config, *, in_child: bool = False) -> None:
    """Ask apprise whether each channel URL is valid; raises ConfigError naming the channel and its line. With
    `in_child`, apprise runs in a short-lived child process so the caller (the daemon) never holds its plugins."""
    chans = list(config.channels.values())
    if not chans:
        return
    if in_child:
        import subprocess
        import sys
        r = subprocess.run([sys.executable, "-m", "watcher.channels", "--check"], input="\n".join(c.url for c in chans),
                           capture_output=True, text=True, timeout=120)
        problems = {}
        for line in r.stdout.splitlines():
            idx, _, why = line.partition(": ")
            if idx.isdigit():
                problems[int(idx)] = why
        if r.returncode not in (0, 1):
            from watcher.logs import mask
            raise ConfigError(f"cannot check channel URLs: {mask(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else str(r.returncode))}")
    else:
        from watcher.channels import deep_check
        problems = {i: why for i, c in enumerate(chans) if (why := deep_check(c.url))}
    if problems:
        i = min(problems)
        text = config.path.read_text(encoding="utf-8") if config.path.exists() else ""
        ld = _Loader(config.path, text)
        table = f"channel.{chans[i].id}"
        raise ld.fail_key(table, "url", f"[{table}] url:", problems[i])


def _check_subscription(ld: _Loader, vals: dict, table: str, where: str, channels: dict, sources: dict) -> None:
    from fnmatch import fnmatch

    def fail(key: str, msg: str) -> ConfigError:
        return ld.fail(ld.loc.key(table, key), f"{where} {key}:", msg)

    for c in vals["channels"]:
        if c not in channels:
            raise fail("channels", f"unknown channel {c!r} (defined: {', '.join(channels) or 'none'})")
    for pat in vals.get("sources", ("*",)):
        if not any(fnmatch(s, pat) for s in sources):
            raise fail("sources", f"pattern {pat!r} matches no source")
    for n in vals.get("standards") or ():
        from watcher.extract.samr import watch_family
        if not isinstance(n, str) or not watch_family(n):
            raise fail("standards", f"{_show(n)} is not a standard family (like \"GB/T 22080\") or a plan number")
    for k in vals.get("kinds") or ():
        if k not in EVENT_KINDS:
            raise fail("kinds", f"unknown event kind {k!r} (known: {', '.join(EVENT_KINDS)})")
    for s in vals.get("stages") or ():
        if s not in STAGES:
            raise fail("stages", f"unknown stage {s!r} (known: {', '.join(STAGES)})")
    if vals.get("digest_at") and vals.get("mode") != "digest":
        raise fail("digest_at", 'only makes sense with mode = "digest"')
    for rx in vals.get("keywords") or ():
        try:
            re.compile(rx)
        except re.error as e:
            raise fail("keywords", f"invalid regular expression {rx!r}: {e}") from None



def _default_text(f: Field) -> str:
    if f.required:
        return "required"
    if f.default is None:
        return "—"
    if f.kind == "duration":
        return f"{f.default:g}s"
    if isinstance(f.default, bool):
        return "true" if f.default else "false"
    if isinstance(f.default, (list, tuple)):
        return "[" + ", ".join(json.dumps(x, ensure_ascii=False) for x in f.default) + "]"
    return json.dumps(f.default, ensure_ascii=False) if isinstance(f.default, str) else str(f.default)


def reference_markdown() -> str:
    """The sources.toml reference tables of the README, generated from the field declarations above."""
    out = []
    for title, declared in (("[source.ID] (and [defaults])", SOURCE_FIELDS), ("[settings]", SETTINGS_FIELDS),
                          ("[watch]", WATCH_FIELDS), ("[channel.ID]", CHANNEL_FIELDS),
                          ("[[subscription]]", SUBSCRIPTION_FIELDS)):
        out += [f"#### `{title}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for f in declared:
            out.append(f"| `{f.name}` | {f.expected} | {_default_text(f)} | {f.help} |")
        out.append("")
    return "\n".join(out)

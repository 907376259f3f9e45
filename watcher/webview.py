"""The read-only web view: HTML pages, the iCalendar feed and the JSON API, served by web.serve (the daemon's
`--http` listener and `watcher serve`).

Pages are rendered on the server from Jinja2 templates (`watcher/templates/`) with autoescape on, so page text that
came from the watched sites is always shown as text; links to the sites are kept only when they are http(s). No
JavaScript: every filter is a plain GET form. Responses carry a Content-Security-Policy that allows no script at all.
Data comes from `watcher.queries`, shared with the terminal views.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

from watcher import queries
from watcher.identify import STAGES, stage_label
from watcher.reminders import CHINA

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
HTML = "text/html; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}

# (en, zh) labels of the pages; shown as "en · zh" like the messages (render.pick)
LABELS = {
    "open": ("Open for comment", "正在征求意见"), "standards": ("Standards", "标准"), "watch": ("Watch list", "关注列表"),
    "events": ("Events", "事件"), "sources": ("Sources", "来源"), "calendar": ("Calendar", "日历"),
    "recently_closed": ("Recently closed", "近期已截止"), "latest_events": ("Latest events", "最新事件"),
    "deadline": ("Comments by", "意见截止"), "source": ("Source", "来源"), "plan": ("Plan", "计划号"),
    "std_no": ("Standard", "标准号"), "stage": ("Stage", "阶段"), "committee": ("Committee", "归口"),
    "attachments": ("Attachments", "附件"), "archived": ("archived copy", "存档"), "story": ("story", "标准历程"),
    "title": ("Title", "标题"), "since": ("Since", "起始"), "search": ("Search", "搜索"), "all": ("all", "全部"),
    "stages": ("Stages", "阶段历程"), "timeline": ("Everything seen", "全部记录"), "editions": ("Other editions", "其他版本"),
    "windows": ("Comment windows", "征求意见"), "replaces": ("Replaces", "代替"), "replaced_by": ("Replaced by", "被代替为"),
    "in_force": ("In force from", "实施日期"), "issued": ("Issued", "发布日期"), "family": ("Family", "标准系列"),
    "health": ("Health", "状态"), "last_success": ("Last success", "最近成功"), "last_poll": ("Last poll", "最近轮询"),
    "entries": ("Entries", "条目"), "last_error": ("Last error", "最近错误"), "failures": ("Failures", "连续失败"),
    "retry_after": ("Retry after", "重试时间"), "kind": ("Kind", "类型"), "newer": ("Newer", "较新"),
    "older": ("Older", "较早"), "page": ("Page", "页"), "filter": ("Filter", "筛选"), "none": ("none", "无"),
    "closed": ("closed", "已截止"), "last_day": ("last day", "今天截止"), "english": ("English title", "英文标题"),
    "mentioned": ("mentioned", "提及"), "not_found": ("Not found", "未找到"), "subscribe": ("Subscribe", "订阅"),
    "changed_recently": ("changed in the last 30 days", "近30天有变化"), "no_match": ("no standard known yet", "暂无记录"),
    "number_or_text": ("number or words (Chinese or English)", "标准号、计划号或标题"), "link": ("link", "链接"),
    "as_of": ("as of", "截至"), "last_checked": ("last checked", "最近查询"), "beijing": ("Beijing", "北京时间"),
    "api": ("JSON API", "JSON 接口"),
}


def label(key: str, lang: str = "both") -> str:
    en, zh = LABELS[key]
    return {"en": en, "zh": zh}.get(lang, f"{en} · {zh}")


def left_text(n: int | None) -> tuple[str, str]:
    """(English, Chinese) words for the days left before a deadline."""
    if n is None:
        return "", ""
    if n < 0:
        return LABELS["closed"]
    if n == 0:
        return LABELS["last_day"]
    return (f"{n} day{'s' if n != 1 else ''} left", f"剩余 {n} 天")


def web_url(url: str | None) -> str | None:
    """A link to the watched sites is kept only when it is http(s): no javascript:, data: or relative tricks."""
    if isinstance(url, str) and url.lower().startswith(("http://", "https://")):
        return url
    return None


def beijing(ts: str | None) -> str:
    """'2026-03-20 10:00' (Beijing time) from a stored UTC ISO timestamp."""
    if not ts:
        return "-"
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return dt.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


_env = None


def env():
    global _env
    if _env is None:
        from jinja2 import Environment, FileSystemLoader, select_autoescape
        from markupsafe import Markup
        from watcher.sanitize import xml_safe
        # every value printed goes through xml_safe (no control or direction-override characters), then autoescape
        e = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(("html",),
                        default=True), trim_blocks=True, lstrip_blocks=True,
                        finalize=lambda v: xml_safe(v) if isinstance(v, str) and not isinstance(v, Markup) else v)
        from watcher.render import what
        e.globals.update(L=label, LABELS=LABELS, stage_label=stage_label, STAGES=STAGES, left_text=left_text,
                         what=what)
        e.filters.update(web_url=web_url, beijing=beijing)
        _env = e
    return _env


# --- request plumbing --------------------------------------------------------------------------------------------

class Request:
    def __init__(self, path: str, query: dict[str, list[str]], store, config, base_url: str, now):
        self.path, self.query, self.store, self.config, self.base_url = path, query, store, config, base_url
        self.today = queries.today(now)
        self.token = self.arg("token")

    def arg(self, name: str) -> str | None:
        v = (self.query.get(name) or [""])[0].strip()
        return v or None

    def page(self) -> int:
        try:
            return max(1, int(self.arg("page") or 1))
        except ValueError:
            return 1

    def url(self, path: str, **params: Any) -> str:
        """A link inside the web view; keeps ?token= so a reader who came with one stays signed in."""
        p = {k: v for k, v in params.items() if v not in (None, "")}
        if self.token:
            p["token"] = self.token
        return path + ("?" + urlencode(p) if p else "")

    def filters(self, *names: str) -> dict[str, str | None]:
        return {n: self.arg(n) for n in names}


def _html(req: Request, template: str, status: int = 200, **ctx: Any):
    body = env().get_template(template).render(req=req, url=req.url, today=req.today, path=req.path,
                                                sources=_source_choices(req), **ctx)
    return status, body.encode("utf-8"), HTML, HEADERS


def _json(obj: Any, status: int = 200):
    return status, (json.dumps(obj, ensure_ascii=False, default=str) + "\n").encode("utf-8"), JSON_TYPE, \
        {"Cache-Control": "no-cache"}


def _not_found(req: Request, what: str, api: bool):
    if api:
        return _json({"error": f"not found: {what}"}, 404)
    return _html(req, "not_found.html", 404, what=what)


def _source_choices(req: Request) -> list[tuple[str, str]]:
    if req.config is None:
        return []
    return [(sid, s.name or sid) for sid, s in req.config.sources.items()]


def handle(path: str, query: dict[str, list[str]], store, config, *, base_url: str, now=None):
    """(status, body bytes, content type[, headers]) for a path this module serves, or None.

    `now` fixes "today" (Beijing) for the days-left arithmetic; without it `WATCHER_TODAY` or the clock decides
    (see `queries.today`)."""
    req = Request(path, query, store, config, base_url.rstrip("/"), now)
    if path.startswith("/static/"):
        return _static(path[len("/static/"):])
    if path.startswith("/archive/"):
        return _archived(req, path[len("/archive/"):])
    api = path == "/api" or path.startswith("/api/")
    route = path[4:] if api else path
    route = route.rstrip("/") or "/"
    if api and route == "/":
        return _json(api_index(req))
    if route == "/calendar.ics" and not api:
        return calendar(req)
    if route in ("/", "/open"):
        return page_open(req, api) if (api or route == "/") else None
    if route == "/standards":
        return page_standards(req, api)
    if route.startswith("/standards/"):
        return page_standard(req, unquote(route[len("/standards/"):]), api)
    if route == "/watch":
        return page_watch(req, api)
    if route == "/events":
        return page_events(req, api)
    if route == "/sources":
        return page_sources(req, api)
    if route.startswith("/sources/") or (api and route.startswith("/entries/")):
        return page_entries(req, unquote(route.split("/", 2)[2]), api)
    return None


# --- pages -------------------------------------------------------------------------------------------------------

def page_open(req: Request, api: bool):
    f = req.filters("source", "committee", "stage", "q")
    with req.store.read() as conn:
        data = queries.open_for_comment(conn, req.config, req.today, **f)
        events, _ = queries.list_events(conn, per_page=10) if not api else ([], 0)
    if api:
        return _json(data)
    return _html(req, "open.html", data=data, events=events, f=f)


def page_standards(req: Request, api: bool):
    f = req.filters("stage", "committee", "q")
    q = f["q"] or req.arg("number")
    with req.store.read() as conn:
        data = queries.list_standards(conn, stage=f["stage"], committee=f["committee"], q=q, page=req.page())
    if api:
        return _json(data)
    return _html(req, "standards.html", data=data, f=f)


def page_standard(req: Request, ident: str, api: bool):
    with req.store.read() as conn:
        rec = queries.find_standard(conn, ident)
        if rec is None:
            return _not_found(req, f"standard {ident}", api)
        story = queries.standard_story(conn, req.config, rec, req.today)
    if api:
        return _json(story)
    return _html(req, "standard.html", s=story)


def page_watch(req: Request, api: bool):
    with req.store.read() as conn:
        data = queries.watch_list(conn, req.config, req.today)
    if api:
        return _json(data)
    return _html(req, "watch.html", data=data)


def page_events(req: Request, api: bool):
    f = req.filters("kind", "source", "since")
    since = None
    if f["since"]:
        try:
            since = datetime.fromisoformat(f["since"].replace("Z", "+00:00"))
            since = since if since.tzinfo else since.replace(tzinfo=CHINA)
        except ValueError:
            f["since"] = None
    page = req.page()
    with req.store.read() as conn:
        events, total = queries.list_events(conn, kind=f["kind"], source=f["source"], since=since, page=page)
    if api:
        return _json({"events": [e.to_json() for e in events], "total": total, "page": page,
                      "per_page": queries.PER_PAGE})
    from watcher.config import EVENT_KINDS
    pages = max(1, -(-total // queries.PER_PAGE))
    return _html(req, "events.html", events=events, total=total, page=page, pages=pages, f=f, kinds=EVENT_KINDS)


def page_sources(req: Request, api: bool):
    with req.store.read() as conn:
        rows = queries.list_sources(conn, req.config)
    if api:
        return _json({"sources": rows})
    return _html(req, "sources.html", rows=rows)


def page_entries(req: Request, source_id: str, api: bool):
    with req.store.read() as conn:
        known = any(r["source"] == source_id for r in queries.list_sources(conn, req.config))
        if not known:
            return _not_found(req, f"source {source_id}", api)
        rows = queries.source_entries(conn, req.config, source_id, req.today, limit=500)
    if api:
        return _json({"source": source_id, "entries": rows})
    return _html(req, "entries.html", source_id=source_id, rows=rows,
                 name=dict(_source_choices(req)).get(source_id, source_id))


def api_index(req: Request) -> dict[str, Any]:
    return {"endpoints": {
        "/api/open": "comment windows open today, soonest first, and those closed in the last 30 days "
                     "(filters: source, committee, stage, q)",
        "/api/standards": "standards (filters: stage, committee, q = words or a number in any spelling; page)",
        "/api/standards/<id or number>": "one standard's story: stages, evidence, editions, comment windows, events",
        "/api/watch": "the watch list and the standards each item matches",
        "/api/events": "events newest first (filters: kind, source, since; page)",
        "/api/sources": "each source's health, last success, last error, entries",
        "/api/entries/<source>": "what is stored for one source",
        "/calendar.ics": "comment deadlines and in-force dates as iCalendar (filters: source, committee, stage, q, "
                         "kind = deadline | in_force)",
    }, "today": req.today.isoformat()}


# --- the calendar ------------------------------------------------------------------------------------------------

def calendar(req: Request):
    """RFC 5545 feed: one all-day event per comment deadline (open, or closed in the last 30 days) and per in-force
    date. UIDs are stable (source and entry key; standard number), DTSTAMP is when the stored item last changed, and
    SEQUENCE counts the stored moves of its date, so a client updates an extended deadline in place."""
    from icalendar import Calendar, Event as VEvent
    f = req.filters("source", "committee", "stage", "q")
    kind = req.arg("kind")
    kinds = (kind,) if kind in ("deadline", "in_force") else ("deadline", "in_force")
    with req.store.read() as conn:
        items = queries.calendar_items(conn, req.config, req.today, kinds=kinds, **f)
    cal = Calendar()
    cal.add("prodid", "-//watcher//TC260 SAC CAC comment deadlines and in-force dates//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", "watcher: comment deadlines · 意见截止")
    cal.add("x-wr-caldesc", "Comment deadlines and in-force dates of Chinese cybersecurity standards and rules")
    cal.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", "PT1H")
    for it in items:
        e = it["entry"]
        ev = VEvent()
        ev.add("uid", f"{it['uid']}@watcher")
        stamp = datetime.fromisoformat((it["stamp"] or "1970-01-01T00:00:00Z").replace("Z", "+00:00"))
        ev.add("dtstamp", stamp.astimezone(timezone.utc))
        ev.add("last-modified", stamp.astimezone(timezone.utc))
        day = date.fromisoformat(it["date"])
        ev.add("dtstart", day)
        ev.add("dtend", day + timedelta(days=1))
        ev.add("sequence", it["sequence"])
        ev.add("transp", "TRANSPARENT")
        if it["kind"] == "deadline":
            ev.add("summary", f"{label('deadline')}: {e['title']}")
            ev.add("categories", ["comment deadline"])
        else:
            ev.add("summary", f"{label('in_force')}: {e['std_no']} {e['title']}")
            ev.add("categories", ["in force"])
        lines = [e["title"]]
        if e.get("title_en"):
            lines.append(e["title_en"])
        if e["source"] != "standard":
            lines.append(f"{label('source')}: {e['source_name']}")
        for key, lk in (("plan_no", "plan"), ("std_no", "std_no"), ("committee", "committee")):
            if e.get(key):
                lines.append(f"{label(lk)}: {e[key]}")
        if web_url(e.get("url")):
            lines.append(e["url"])
            ev.add("url", e["url"])
        if e.get("standard_id"):
            lines.append(f"{req.base_url}/standards/{e['standard_id']}")
        ev.add("description", "\n".join(lines))
        cal.add_component(ev)
    from watcher.sanitize import xml_safe
    body = xml_safe(cal.to_ical().decode("utf-8")).encode("utf-8")
    return 200, body, "text/calendar; charset=utf-8", {"Content-Disposition": 'inline; filename="watcher.ics"',
                                                       "Cache-Control": "no-cache"}


# --- files -------------------------------------------------------------------------------------------------------

def _static(name: str):
    if "/" in name or name.startswith(".") or not (STATIC / name).is_file():
        return None
    ctype = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}.get(Path(name).suffix,
                                                                           "application/octet-stream")
    return 200, (STATIC / name).read_bytes(), ctype, {"Cache-Control": "max-age=3600"}


def _state_dirs(store) -> list[Path]:
    dirs = []
    url = getattr(store, "url", "") or ""
    if url.startswith("sqlite") and "///" in url:
        dirs.append(Path(url.split("///", 1)[1]).resolve().parent)
    if os.environ.get("WATCHER_STATE_DIR"):
        dirs.append(Path(os.environ["WATCHER_STATE_DIR"]).resolve())
    return dirs


def _archived(req: Request, sha: str):
    """An archived attachment by its SHA-256: found on the entry that records it, read from the state directory,
    and served only when its content still has that digest."""
    sha = sha.lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        return None
    from sqlalchemy import Text, cast, select

    from watcher import store as stored
    from watcher.store import EntryRow
    found = None
    with req.store.read() as conn:
        archive = getattr(stored, "ArchivedFile", None)      # the archive's own table, where there is one
        if archive is not None:
            row = conn.execute(select(archive).where(archive.sha256 == sha, archive.path.is_not(None)).limit(1)).first()
            if row is not None:
                found = {"archived": row.path, "name": row.name}
        if found is None:
            mentions = select(EntryRow.fields).where(cast(EntryRow.fields, Text).like(f"%{sha}%")).limit(20)
            for r in conn.execute(mentions):
                found = next((a for a in queries._attachments(r.fields or {})
                              if str(a.get("sha256", "")).lower() == sha and a.get("archived")), None)
                if found:
                    break
    if not found:
        return _not_found(req, f"archived file {sha}", False)
    rel = Path(found["archived"])
    # relative to the state directory, or to its archive/ directory; never outside the state directory
    for base in _state_dirs(req.store):
        for p in {(base / rel).resolve(), (base / "archive" / rel).resolve()}:
            if p.is_relative_to(base) and p.is_file():
                got = _served(p, sha, found.get("name"))
                if got:
                    return got
    return _not_found(req, f"archived file {sha}", False)


def _served(p: Path, sha: str, name: str | None):
    data = p.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        return None
    name = name or p.name
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return 200, data, ctype, {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
                              "Content-Security-Policy": "default-src 'none'; sandbox"}

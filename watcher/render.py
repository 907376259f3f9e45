"""Event -> message text for people: one-line summaries, Slack mrkdwn, email HTML and plain text, digests.

Every string that came from a web page is escaped for the target format before it is placed in a template.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from datetime import date
from typing import Any

from watcher.identify import stage_from_title, stage_label

KIND_LABELS = {
    "new": ("New", "新发布"),
    "changed": ("Changed", "有更新"),
    "stage_changed": ("Stage change", "阶段变化"),
    "deadline_soon": ("Comment deadline soon", "征求意见即将截止"),
    "source_failed": ("Source failing", "来源无法访问"),
    "source_broken": ("Source page changed its layout", "来源页面结构异常"),
    "source_recovered": ("Source recovered", "来源已恢复"),
}
FIELD_LABELS = {"deadline": ("comment deadline", "截止日期"), "title": ("title", "标题"), "url": ("link", "链接"),
                "published": ("published", "发布日期"), "status": ("status", "状态"), "summary": ("summary", "摘要"),
                "attachments": ("attachments", "附件"), "std_no": ("standard number", "标准号"),
                "plan_no": ("plan number", "计划号"), "issue_date": ("issue date", "发布日期"),
                "act_date": ("implementation date", "实施日期")}


def what(ev: dict[str, Any], lang: str = "both") -> str:
    """'Draft for comment · 征求意见稿' style heading of an event."""
    kind = ev.get("kind", "")
    en, zh = KIND_LABELS.get(kind, (kind, kind))
    if kind == "new" and ev.get("stage") == "comment":
        en, zh = "Draft for comment", "征求意见稿"
    elif kind == "new" and ev.get("stage") in ("published", "in_force") and ev.get("std_no"):
        en, zh = "Standard published", "标准发布"
    elif kind == "new" and ev.get("plan_no") and ev.get("stage") in ("approved", "drafting", "comment"):
        en, zh = "Standard project", "标准计划"
    elif kind == "new" and not ev.get("stage"):
        # a notice's own words: 《…》国家标准发布 is a publication, 关于征求…意见 a comment request
        hint = stage_from_title(ev.get("title"))
        if hint in ("published", "in_force"):
            en, zh = "Standard published (notice)", "标准发布公告"
        elif hint == "comment":
            en, zh = "Comment request", "征求意见"
    return {"en": en, "zh": zh}.get(lang, f"{en} · {zh}")


def _label(field: str, lang: str) -> str:
    en, zh = FIELD_LABELS.get(field, (field, field))
    return {"en": en, "zh": zh}.get(lang, f"{en} / {zh}")


def days_left(deadline: str | None, today: date | None) -> int | None:
    if not deadline or today is None:
        return None
    try:
        return (date.fromisoformat(deadline) - today).days
    except ValueError:
        return None


def facts(ev: dict[str, Any], lang: str = "both", today: date | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs worth showing, values still unescaped."""
    out: list[tuple[str, str]] = []
    L = lambda en, zh: {"en": en, "zh": zh}.get(lang, f"{en} / {zh}")  # noqa: E731
    out.append((L("source", "来源"), ev.get("source_name") or ev.get("source", "")))
    if ev.get("plan_no"):
        out.append((L("plan", "计划号"), ev["plan_no"]))
    if ev.get("std_no"):
        out.append((L("standard", "标准号"), ev["std_no"]))
    elif ev.get("std_nos"):
        out.append((L("standards", "标准号"), ", ".join(ev["std_nos"])))
    if ev.get("kind") == "stage_changed":
        out.append((L("stage", "阶段"), f"{ev.get('previous_stage')} -> {ev.get('stage')} "
                                      f"({stage_label(ev.get('previous_stage'), 'zh')} → {stage_label(ev.get('stage'), 'zh')})"))
    elif ev.get("stage"):
        out.append((L("stage", "阶段"), stage_label(ev["stage"], lang if lang != "both" else "both")))
    if ev.get("deadline"):
        left = ev.get("days_left")
        if left is None:
            left = days_left(ev["deadline"], today)
        suffix = f" ({left} days left / 剩余{left}天)" if left is not None and left >= 0 else ""
        out.append((L("comments by", "意见截止"), ev["deadline"] + suffix))
    if ev.get("published") and ev.get("kind") in ("new", "changed"):
        out.append((L("published", "发布日期"), ev["published"]))
    if ev.get("act_date"):
        out.append((L("in force from", "实施日期"), ev["act_date"]))
    for field, ch in (ev.get("changes") or {}).items():
        out.append((_label(field, lang), f"{_short(ch.get('old'))} -> {_short(ch.get('new'))}"))
    if ev.get("reason"):
        out.append((L("reason", "原因"), ev["reason"]))
    if ev.get("retry_after_s"):
        out.append((L("retry after", "重试间隔"), f"{ev['retry_after_s']} s"))
    return out


def _short(v: Any) -> str:
    if v is None or v == "" or v == []:
        return "(none)"
    if isinstance(v, list):
        return "; ".join(x.get("name", str(x)) if isinstance(x, dict) else str(x) for x in v)[:200]
    return str(v)[:200]


def ref(ev: dict[str, Any]) -> str:
    """A stable reference to the stored event (`watcher events` shows the same id)."""
    return f"watcher event #{ev.get('id')}"


def subject(ev: dict[str, Any], lang: str = "both") -> str:
    src = ev.get("source_name") or ev.get("source", "")
    title = ev.get("title") or ""
    quoted = title if "《" in title or ev.get("kind") != "new" and not title else f"《{title}》"
    s = f"[watcher] {src} {what(ev, lang)}: {quoted}" if ev.get("kind") not in (
        "source_failed", "source_broken", "source_recovered") else f"[watcher] {what(ev, lang)}: {src}"
    if ev.get("deadline") and ev.get("kind") in ("new", "deadline_soon", "changed"):
        s += f" (comments by {ev['deadline']})"
    if ev.get("kind") == "stage_changed":
        s += f" {ev.get('previous_stage')} -> {ev.get('stage')}"
    return re.sub(r"[\r\n]+", " ", s)


def one_line(ev: dict[str, Any]) -> str:
    bits = [f"{ev.get('kind')}", ev.get("source", "")]
    if ev.get("title"):
        bits.append(ev["title"])
    extra = [f"{k}={v}" for k, v in (("plan", ev.get("plan_no")), ("std", ev.get("std_no")),
                                       ("deadline", ev.get("deadline"))) if v]
    if ev.get("kind") == "stage_changed":
        extra.append(f"{ev.get('previous_stage')}->{ev.get('stage')}")
    for f, ch in (ev.get("changes") or {}).items():
        extra.append(f"{f}: {_short(ch.get('old'))} -> {_short(ch.get('new'))}")
    if ev.get("reason"):
        extra.append(ev["reason"])
    return " | ".join(bits + extra)


# --- Markdown (Slack and other markdown channels) -------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&@:])")


def md_escape(s: str) -> str:
    """Backslash-escape every CommonMark punctuation character, so page text can never become markup, a link or a
    Slack mention (`<!channel>`); apprise turns the escapes into Slack's own entities."""
    return _MD_SPECIAL.sub(r"\\\1", s.replace("\r", " ").replace("\n", " "))


def _md_url(url: str) -> str:
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def markdown_body(ev: dict[str, Any], lang: str = "both", today: date | None = None) -> str:
    url = ev.get("url") or ""
    title = md_escape(ev.get("title") or "")
    lines = [f"**{md_escape(what(ev, lang))}**",
             f"[{title}]({_md_url(url)})" if url.startswith(("http://", "https://")) else title]
    for label, value in facts(ev, lang, today):
        lines.append(f"- {md_escape(label)}: {md_escape(value)}")
    if ev.get("id"):
        lines.append(md_escape(ref(ev)))
    return "\n".join(lines)


# --- email ---------------------------------------------------------------------------------------------------

def text_body(ev: dict[str, Any], lang: str = "both", today: date | None = None) -> str:
    lines = [what(ev, lang), ev.get("title") or "", ev.get("url") or "", ""]
    lines += [f"{label}: {value}" for label, value in facts(ev, lang, today)]
    if ev.get("summary"):
        lines += ["", ev["summary"]]
    for a in ev.get("attachments") or []:
        lines.append(f"- {a.get('name')}: {a.get('url')}")
    if ev.get("id"):
        lines += ["", ref(ev)]
    return "\n".join(lines).strip() + "\n"


def html_body(ev: dict[str, Any], lang: str = "both", today: date | None = None) -> str:
    e = html.escape
    url = ev.get("url") or ""
    href = e(url, quote=True) if url.startswith(("http://", "https://")) else ""
    title = e(ev.get("title") or "")
    parts = [f"<h3>{e(what(ev, lang))}</h3>",
             f'<p><a href="{href}">{title}</a></p>' if href else f"<p>{title}</p>", "<table>"]
    for label, value in facts(ev, lang, today):
        parts.append(f"<tr><th align=\"left\">{e(label)}</th><td>{e(value)}</td></tr>")
    parts.append("</table>")
    if ev.get("summary"):
        parts.append(f"<p>{e(ev['summary'])}</p>")
    if ev.get("id"):
        parts.append(f"<p><small>{e(ref(ev))}</small></p>")
    atts = ev.get("attachments") or []
    if atts:
        parts.append("<ul>" + "".join(
            f'<li><a href="{e(a.get("url", ""), quote=True)}">{e(a.get("name") or a.get("url", ""))}</a></li>'
            if str(a.get("url", "")).startswith(("http://", "https://")) else f"<li>{e(a.get('name', ''))}</li>"
            for a in atts) + "</ul>")
    return "\n".join(parts)


def digest_groups(events: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        groups[(ev.get("source_name") or ev.get("source", ""), ev.get("kind", ""))].append(ev)
    return dict(sorted(groups.items()))


def digest_subject(events: list[dict[str, Any]]) -> str:
    return f"[watcher] digest: {len(events)} update{'s' if len(events) != 1 else ''} · {len(events)} 条更新"


def digest_text(events: list[dict[str, Any]], lang: str = "both", today: date | None = None) -> str:
    out = []
    for (src, kind), evs in digest_groups(events).items():
        out.append(f"== {src} · {what({'kind': kind}, lang)} ({len(evs)})")
        for ev in evs:
            out.append(f"- {ev.get('title')}  {ev.get('url') or ''}  ({ref(ev)})")
            out += [f"    {label}: {value}" for label, value in facts(ev, lang, today)[1:]]
        out.append("")
    return "\n".join(out)


def digest_html(events: list[dict[str, Any]], lang: str = "both", today: date | None = None) -> str:
    e = html.escape
    out = []
    for (src, kind), evs in digest_groups(events).items():
        out.append(f"<h3>{e(src)} · {e(what({'kind': kind}, lang))} ({len(evs)})</h3><ul>")
        for ev in evs:
            url = ev.get("url") or ""
            t = e(ev.get("title") or "")
            link = f'<a href="{e(url, quote=True)}">{t}</a>' if url.startswith(("http://", "https://")) else t
            details = "; ".join(f"{e(label)}: {e(value)}" for label, value in facts(ev, lang, today)[1:])
            out.append(f"<li>{link}<br><small>{details} · {e(ref(ev))}</small></li>")
        out.append("</ul>")
    return "\n".join(out)


def digest_markdown(events: list[dict[str, Any]], lang: str = "both", today: date | None = None) -> str:
    out = [f"**{md_escape(digest_subject(events))}**"]
    for (src, kind), evs in digest_groups(events).items():
        out.append(f"**{md_escape(src)} · {md_escape(what({'kind': kind}, lang))}** ({len(evs)})")
        for ev in evs:
            url = ev.get("url") or ""
            t = md_escape(ev.get("title") or "")
            item = f"[{t}]({_md_url(url)})" if url.startswith(("http://", "https://")) else t
            out.append(f"- {item} {md_escape('(' + ref(ev) + ')')}")
    return "\n".join(out)


def render_single(events: list, family: str, fmt: str | None, lang: str, today: date | None) -> tuple[str, str, str]:
    """(title, body, body format) of one message about one event, or several events about one fact."""
    fmt = fmt or {"slack": "markdown", "email": "html", "markdown": "markdown"}.get(family, "text")
    if len(events) > 1:
        return render_digest(events, family, fmt, lang, today)
    ev = events[0]
    body = {"markdown": markdown_body, "html": html_body, "text": text_body}[fmt](ev, lang, today)
    return subject(ev, lang), body, fmt


def render_digest(events: list, family: str, fmt: str | None, lang: str, today: date | None) -> tuple[str, str, str]:
    fmt = fmt or {"slack": "markdown", "email": "html", "markdown": "markdown"}.get(family, "text")
    body = {"markdown": digest_markdown, "html": digest_html, "text": digest_text}[fmt](events, lang, today)
    return digest_subject(events), body, fmt

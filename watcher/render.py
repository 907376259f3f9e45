"""Events -> messages people read: one message per fact (events about one standard travel together), digests,
one-line summaries; in English, Chinese or both, consistently from subject to footer.

Each target gets its own rules: Slack mrkdwn (only `&`, `<`, `>` escaped; links as `<url|text>`; no mention can be
formed from page text), email (short RFC 2047 subject, HTML with every URL visible so the text part keeps them,
attachments before the footer), CommonMark for other markdown channels, plain text. Page text was sanitised when it
entered (`sanitize`); here every string is escaped for its format as well.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable

from watcher.identify import stage_from_title, stage_label

SUBJECT_MAX = 120          # characters: readable, and well under the 998-byte line limit once encoded
SLACK_MAX = 2900           # a Slack section holds 3000 characters
SLACK_HEADER_MAX = 150     # and a header block 150

# (en, zh) labels; `both` joins them
KIND_LABELS = {
    "new": ("New", "新发布"),
    "changed": ("Changed", "有更新"),
    "stage_changed": ("Stage change", "阶段变化"),
    "deadline_soon": ("Comment deadline soon", "征求意见即将截止"),
    "in_force_soon": ("Comes into force soon", "即将实施"),
    "deadline_extended": ("Comment deadline extended", "征求意见截止日期延长"),
    "source_failed": ("Source failing", "来源无法访问"),
    "source_broken": ("Source page changed its layout", "来源页面结构异常"),
    "source_recovered": ("Source recovered", "来源已恢复"),
    "channel_failed": ("Notification channel failing", "通知渠道发送失败"),
    "channel_recovered": ("Notification channel recovered", "通知渠道已恢复"),
}
WORDS = {
    "source": ("source", "来源"), "sources": ("sources", "来源"), "plan": ("plan", "计划号"),
    "standard": ("standard", "标准号"), "standards": ("standards", "标准号"), "stage": ("stage", "阶段"),
    "comments_by": ("comments by", "意见截止"), "published": ("published", "发布日期"),
    "in_force": ("in force from", "实施日期"), "reason": ("reason", "原因"), "retry_after": ("retry after", "重试间隔"),
    "attachments": ("attachments", "附件"), "links": ("links", "链接"), "event": ("watcher event", "watcher 事件"),
    "events": ("watcher events", "watcher 事件"), "english_title": ("English title", "英文标题"),
    "channel": ("channel", "渠道"), "failing_since": ("failing since", "失败开始于"), "none": ("none", "无"),
    "digest": ("digest", "摘要"), "updates": ("updates", "条更新"), "replaces": ("replaces", "代替"),
    "committee": ("committee", "归口"), "closed": ("comment period closed", "征求意见已截止"),
    "today": ("last day", "今天截止"),
    "watch": ("watch list", "关注列表"), "replaced_by": ("replaced by", "被代替为"), "announcement": ("announcement", "公告"),
    "published_standards": ("standards published", "发布的标准"),
}
FIELD_LABELS = {"deadline": ("comment deadline", "截止日期"), "title": ("title", "标题"), "url": ("link", "链接"),
                "published": ("published", "发布日期"), "status": ("status", "状态"), "summary": ("summary", "摘要"),
                "attachments": ("attachments", "附件"), "std_no": ("standard number", "标准号"),
                "plan_no": ("plan number", "计划号"), "issue_date": ("issue date", "发布日期"),
                "act_date": ("implementation date", "实施日期"), "title_en": ("English title", "英文标题")}
NOTIFY_TYPES = {"source_failed": "failure", "source_broken": "warning", "channel_failed": "failure",
                "deadline_soon": "warning", "source_recovered": "success", "channel_recovered": "success"}


def pick(pair: tuple[str, str], lang: str, sep: str = " · ") -> str:
    en, zh = pair
    return {"en": en, "zh": zh}.get(lang, en if en == zh else f"{en}{sep}{zh}")


def word(key: str, lang: str) -> str:
    return pick(WORDS[key], lang, " / ")


def _g(ev: Any, key: str, default: Any = None) -> Any:
    return ev.get(key, default) if ev is not None else default


# --- what happened ---------------------------------------------------------------------------------------------

def what(ev, lang: str = "both") -> str:
    """'Draft for comment · 征求意见稿' style heading of an event."""
    kind = _g(ev, "kind", "")
    pair = KIND_LABELS.get(kind, (kind, kind))
    stage = _g(ev, "stage")
    if kind == "new" and stage == "comment":
        pair = ("Draft for comment", "征求意见稿")
    elif kind == "new" and stage in ("published", "in_force") and _g(ev, "std_no"):
        pair = ("Standard published", "标准发布")
    elif kind == "new" and _g(ev, "plan_no") and stage in ("approved", "drafting", "comment"):
        pair = ("Standard project", "标准计划")
    elif kind == "new" and not stage:
        # a notice's own words: 《…》国家标准发布 is a publication, 关于征求…意见 a comment request
        hint = stage_from_title(_g(ev, "title"))
        if hint in ("published", "in_force"):
            pair = ("Standard published (notice)", "标准发布公告")
        elif hint == "comment":
            pair = ("Comment request", "征求意见")
    elif kind == "changed" and set(_g(ev, "changes") or {}) == {"deadline"}:
        old, new = (_g(ev, "changes")["deadline"].get(k) for k in ("old", "new"))
        if old and new and str(new) > str(old):
            pair = KIND_LABELS["deadline_extended"]
    elif kind == "stage_changed" and stage:
        pair = (f"{stage_label(stage, 'en')}", f"{stage_label(stage, 'zh')}")
        if stage in ("published", "in_force", "superseded", "withdrawn", "under_revision", "not_implemented"):
            pair = (f"Standard {pair[0].lower()}", f"标准{pair[1]}")
    return pick(pair, lang)


def days_left(deadline: str | None, today: date | None) -> int | None:
    if not deadline or today is None:
        return None
    try:
        return (date.fromisoformat(deadline) - today).days
    except ValueError:
        return None


def _deadline_text(deadline: str, left: int | None, lang: str) -> str:
    if left is None:
        return deadline
    if left < 0:
        return f"{deadline} ({word('closed', lang)})"
    if left == 0:
        return f"{deadline} ({word('today', lang)})"
    return deadline + " (" + {"en": f"{left} days left", "zh": f"剩余 {left} 天"}.get(lang, f"{left} days left / 剩余 {left} 天") + ")"


def _short(v: Any, lang: str = "both") -> str:
    if v is None or v == "" or v == []:
        return f"({word('none', lang)})"
    if isinstance(v, list):
        return "; ".join(x.get("name", str(x)) if isinstance(x, dict) else str(x) for x in v)[:200]
    return str(v)[:200]


def facts(ev, lang: str = "both", today: date | None = None, *, with_source: bool = True) -> list[tuple[str, str]]:
    """(label, value) pairs worth showing for one event, values still unescaped."""
    out: list[tuple[str, str]] = []
    kind = _g(ev, "kind")
    if with_source:
        out.append((word("source", lang), _g(ev, "source_name") or _g(ev, "source", "")))
    if kind in ("channel_failed", "channel_recovered"):
        out.append((word("channel", lang), _g(ev, "channel") or ""))
        if _g(ev, "failing_since"):
            out.append((word("failing_since", lang), _g(ev, "failing_since")))
    if _g(ev, "plan_no"):
        out.append((word("plan", lang), _g(ev, "plan_no")))
    if _g(ev, "std_no"):
        out.append((word("standard", lang), _g(ev, "std_no")))
    elif _g(ev, "std_nos"):
        out.append((word("standards", lang), ", ".join(_g(ev, "std_nos"))))
    if _g(ev, "replaces"):
        out.append((word("replaces", lang), ", ".join(_g(ev, "replaces"))))
    if kind == "stage_changed":
        prev, cur = _g(ev, "previous_stage"), _g(ev, "stage")
        out.append((word("stage", lang), f"{stage_label(prev, lang) or '-'} → {stage_label(cur, lang)}"))
    elif _g(ev, "stage"):
        out.append((word("stage", lang), stage_label(_g(ev, "stage"), lang)))
    if _g(ev, "deadline"):
        left = _g(ev, "days_left")
        if left is None:
            left = days_left(_g(ev, "deadline"), today)
        out.append((word("comments_by", lang), _deadline_text(_g(ev, "deadline"), left, lang)))
    if _g(ev, "published") and kind in ("new", "changed"):
        out.append((word("published", lang), _g(ev, "published")))
    if _g(ev, "act_date"):
        act = _g(ev, "act_date")
        if kind == "in_force_soon":
            left = _g(ev, "days_left")
            act += " (" + {"en": f"in {left} days", "zh": f"{left} 天后"}.get(lang, f"in {left} days / {left} 天后") + ")"
        out.append((word("in_force", lang), act))
    if _g(ev, "replaced_by"):
        out.append((word("replaced_by", lang), ", ".join(_g(ev, "replaced_by"))))
    if _g(ev, "notice_no"):
        out.append((word("announcement", lang), _g(ev, "notice_no")))
    for st in (_g(ev, "standards") or [])[:30]:
        if isinstance(st, dict) and st.get("std_no"):
            bits = [st["std_no"], st.get("title") or ""]
            if st.get("replaces"):
                bits.append(f"({word('replaces', lang)} {', '.join(st['replaces'])})")
            if st.get("act_date"):
                bits.append(f"({word('in_force', lang)} {st['act_date']})")
            out.append((word("published_standards", lang), " ".join(b for b in bits if b)))
    if _g(ev, "watched"):
        out.append((word("watch", lang), _g(ev, "watch") or ""))
    for f, ch in (_g(ev, "changes") or {}).items():
        out.append((pick(FIELD_LABELS.get(f, (f, f)), lang, " / "),
                    f"{_short(ch.get('old'), lang)} → {_short(ch.get('new'), lang)}"))
    if _g(ev, "reason"):
        out.append((word("reason", lang), _g(ev, "reason")))
    if _g(ev, "retry_after_s"):
        out.append((word("retry_after", lang), f"{_g(ev, 'retry_after_s')} s"))
    return out


def ref(ev, lang: str = "both") -> str:
    """A stable reference to the stored event (`watcher events` shows the same id)."""
    return f"{word('event', lang) if lang == 'zh' else 'watcher event'} #{_g(ev, 'id')}"


def _title_of(ev) -> str:
    title = _g(ev, "title") or ""
    return title


def subject(ev, lang: str = "both") -> str:
    """One line: `[watcher] <source> <what>: 《title》 (comments by …)`, capped to SUBJECT_MAX characters."""
    src = _g(ev, "source_name") or _g(ev, "source", "")
    kind = _g(ev, "kind")
    title = _title_of(ev)
    if kind in ("source_failed", "source_broken", "source_recovered"):
        s = f"[watcher] {what(ev, lang)}: {src}"
    elif kind in ("channel_failed", "channel_recovered"):
        s = f"[watcher] {what(ev, lang)}: {_g(ev, 'channel') or title}"
    else:
        quoted = title if "《" in title or not title else f"《{title}》"
        head = f"[watcher] {src} {what(ev, lang)}: "
        tail = ""
        if _g(ev, "deadline") and kind in ("new", "deadline_soon", "changed"):
            tail = f" ({WORDS['comments_by'][1] if lang == 'zh' else 'comments by'} {_g(ev, 'deadline')})"
        room = max(20, SUBJECT_MAX - len(head) - len(tail))
        s = head + cap(quoted, room) + tail
    return cap(s, SUBJECT_MAX + 40)


def cap(s: str, limit: int) -> str:
    s = re.sub(r"\s+", " ", s).strip()
    return s if len(s) <= limit else s[:limit - 1].rstrip() + "…"


def notify_type(events: Iterable[Any]) -> str:
    """apprise's notify type for a message: the most serious of its events."""
    order = {"info": 0, "success": 1, "warning": 2, "failure": 3}
    best = "info"
    for ev in events:
        t = NOTIFY_TYPES.get(_g(ev, "kind"), "info")
        if order[t] > order[best]:
            best = t
    return best


def one_line(ev) -> str:
    bits = [f"{_g(ev, 'kind')}", _g(ev, "source", "")]
    if _g(ev, "title"):
        bits.append(_g(ev, "title"))
    extra = [f"{k}={v}" for k, v in (("plan", _g(ev, "plan_no")), ("std", _g(ev, "std_no")),
                                       ("deadline", _g(ev, "deadline"))) if v]
    if _g(ev, "kind") == "stage_changed":
        extra.append(f"{_g(ev, 'previous_stage')}->{_g(ev, 'stage')}")
    for f, ch in (_g(ev, "changes") or {}).items():
        extra.append(f"{f}: {_short(ch.get('old'))} -> {_short(ch.get('new'))}")
    if _g(ev, "reason"):
        extra.append(_g(ev, "reason"))
    return " | ".join(bits + extra)


# --- one fact: several events about one standard -----------------------------------------------------------------

@dataclass
class Fact:
    """What one message says: a heading, the title, facts, links, attachments, summary and the event refs."""

    heading: str
    title: str
    title_en: str | None
    url: str | None
    facts: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)          # (label, url) of every source
    attachments: list[tuple[str, str]] = field(default_factory=list)    # (name, url)
    summary: str | None = None
    refs: list[Any] = field(default_factory=list)


_KIND_ORDER = {"stage_changed": 0, "new": 1, "changed": 2, "deadline_soon": 3, "in_force_soon": 4}


def build_fact(events: list[Any], lang: str, today: date | None) -> Fact:
    """Merge the events of one fact: the stage change (or the most telling event) leads; every source's link,
    every distinct fact line and every attachment is kept once."""
    evs = sorted(events, key=lambda e: (_KIND_ORDER.get(_g(e, "kind"), 9), _g(e, "id") or 0))
    lead = evs[0]
    sources = []
    for e in evs:
        name = _g(e, "source_name") or _g(e, "source", "")
        if name and name not in sources:
            sources.append(name)
    fact = Fact(heading=what(lead, lang), title=_title_of(lead), title_en=None, url=_g(lead, "url"))
    for e in evs:
        if _g(e, "title_en") and not fact.title_en:
            fact.title_en = _g(e, "title_en")
    if lang != "zh" and fact.title_en == fact.title:
        fact.title_en = None
    fact.facts.append((word("sources" if len(sources) > 1 else "source", lang), ", ".join(sources)))
    seen = set()
    numbers = {n for e in evs for n in (_g(e, "std_no"), _g(e, "plan_no")) if n}
    moved = any(_g(e, "kind") == "stage_changed" for e in evs)
    for e in evs:
        for label, value in facts(e, lang, today, with_source=False):
            if (label, value) in seen:
                continue
            if label == word("standards", lang) and set(value.split(", ")) <= numbers:
                continue            # a notice naming the standard this message is about
            if moved and label == word("stage", lang) and "→" not in value:
                continue            # the stage change says it already
            seen.add((label, value))
            fact.facts.append((label, value))
    urls: list[str] = []
    for e in evs:
        for u in [_g(e, "url")] + list(_g(e, "evidence") or []):
            if u and u not in urls:
                urls.append(u)
    if len(urls) > 1:
        fact.links = [(f"{i + 1}", u) for i, u in enumerate(urls)]
    names = set()
    for e in evs:
        for a in _g(e, "attachments") or []:
            key = (a.get("name") or "", a.get("url") or "")
            if key not in names:
                names.add(key)
                fact.attachments.append(key)
        if _g(e, "summary") and not fact.summary:
            fact.summary = _g(e, "summary")
    fact.refs = [_g(e, "id") for e in evs]
    return fact


def _refs_text(refs: list[Any], lang: str) -> str:
    label = word("event", lang) if lang == "zh" else "watcher event"
    return ", ".join(f"{label} #{r}" for r in refs)


def _web(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("http://", "https://"))


# --- Slack mrkdwn -----------------------------------------------------------------------------------------------

def slack_escape(s: str) -> str:
    """Slack's only escapes: &, < and >. Nothing else (a backslash would show)."""
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_url(url: str) -> str:
    return url.replace(" ", "%20").replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")


def _slack_link(url: str | None, text: str) -> str:
    if not _web(url):
        return slack_escape(text)
    return f"<{_slack_url(url)}|{slack_escape(text) or slack_escape(url)}>"


def slack_fact(f: Fact, lang: str) -> str:
    lines = [f"*{slack_escape(f.heading)}*", _slack_link(f.url, f.title)]
    if f.title_en:
        lines.append(f"_{slack_escape(f.title_en)}_")
    lines += [f"• {slack_escape(label)}: {slack_escape(value)}" for label, value in f.facts]
    if f.links:
        lines.append(f"• {slack_escape(word('links', lang))}: " + " ".join(_slack_link(u, n) for n, u in f.links))
    for name, url in f.attachments:
        lines.append(f"• {slack_escape(word('attachments', lang))}: {_slack_link(url, name or url)}")
    lines.append(slack_escape(_refs_text(f.refs, lang)))
    return "\n".join(lines)


# --- CommonMark (Discord, Matrix, Mattermost …) ----------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&@:])")


def md_escape(s: str) -> str:
    """Backslash-escape CommonMark punctuation so page text can never become markup, a link or a mention."""
    return _MD_SPECIAL.sub(r"\\\1", str(s).replace("\r", " ").replace("\n", " "))


def _md_url(url: str) -> str:
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def _md_link(url: str | None, text: str) -> str:
    return f"[{md_escape(text) or md_escape(url or '')}]({_md_url(url)})" if _web(url) else md_escape(text)


def markdown_fact(f: Fact, lang: str) -> str:
    lines = [f"**{md_escape(f.heading)}**", _md_link(f.url, f.title)]
    if f.title_en:
        lines.append(f"*{md_escape(f.title_en)}*")
    lines += [f"- {md_escape(label)}: {md_escape(value)}" for label, value in f.facts]
    if f.links:
        lines.append(f"- {md_escape(word('links', lang))}: " + " ".join(_md_link(u, n) for n, u in f.links))
    for name, url in f.attachments:
        lines.append(f"- {md_escape(word('attachments', lang))}: {_md_link(url, name or url)}")
    lines.append(md_escape(_refs_text(f.refs, lang)))
    return "\n".join(lines)


# --- email: HTML (with every URL visible, so apprise's text part keeps it) and plain text ------------------------

def html_fact(f: Fact, lang: str) -> str:
    e = html.escape
    parts = [f"<h3>{e(f.heading)}</h3>"]
    if _web(f.url):
        parts.append(f'<p><a href="{e(f.url, quote=True)}">{e(f.title)}</a><br>'
                     f'<small>{e(f.url)}</small></p>')
    else:
        parts.append(f"<p>{e(f.title)}</p>")
    if f.title_en:
        parts.append(f"<p><i>{e(f.title_en)}</i></p>")
    parts.append("<table>")
    for label, value in f.facts:
        parts.append(f'<tr><th align="left">{e(label)}</th><td>{e(value)}</td></tr>')
    parts.append("</table>")
    if f.summary:
        parts.append(f"<p>{e(f.summary)}</p>")
    if f.links:
        parts.append(f"<p>{e(word('links', lang))}:</p><ul>" + "".join(
            f'<li><a href="{e(u, quote=True)}">{e(u)}</a></li>' for _, u in f.links if _web(u)) + "</ul>")
    if f.attachments:
        items = []
        for name, url in f.attachments:
            if _web(url):
                items.append(f'<li><a href="{e(url, quote=True)}">{e(name or url)}</a><br><small>{e(url)}</small></li>')
            else:
                items.append(f"<li>{e(name)}</li>")
        parts.append(f"<p>{e(word('attachments', lang))}:</p><ul>" + "".join(items) + "</ul>")
    parts.append(f"<p><small>{e(_refs_text(f.refs, lang))}</small></p>")
    return "\n".join(parts)


def text_fact(f: Fact, lang: str) -> str:
    lines = [f.heading, f.title]
    if f.title_en:
        lines.append(f.title_en)
    if f.url:
        lines.append(f.url)
    lines.append("")
    lines += [f"{label}: {value}" for label, value in f.facts]
    if f.summary:
        lines += ["", f.summary]
    if f.links:
        lines += ["", f"{word('links', lang)}:"] + [f"- {u}" for _, u in f.links]
    if f.attachments:
        lines += ["", f"{word('attachments', lang)}:"] + [f"- {n}: {u}" if n else f"- {u}" for n, u in f.attachments]
    lines += ["", _refs_text(f.refs, lang)]
    return "\n".join(lines).strip() + "\n"


# --- public entry points -----------------------------------------------------------------------------------------

def markdown_body(ev, lang: str = "both", today: date | None = None) -> str:
    return markdown_fact(build_fact([ev], lang, today), lang)


def html_body(ev, lang: str = "both", today: date | None = None) -> str:
    return html_fact(build_fact([ev], lang, today), lang)


def text_body(ev, lang: str = "both", today: date | None = None) -> str:
    return text_fact(build_fact([ev], lang, today), lang)


def slack_body(ev, lang: str = "both", today: date | None = None) -> str:
    return slack_fact(build_fact([ev], lang, today), lang)


_BODY = {"slack": slack_fact, "markdown": markdown_fact, "html": html_fact, "text": text_fact}


def format_for(family: str, fmt: str | None) -> str:
    """The body format a channel gets: its `format` setting, else by family (Slack gets its own mrkdwn)."""
    if fmt == "markdown" and family == "slack":
        return "slack"
    return fmt or {"slack": "slack", "email": "html", "markdown": "markdown"}.get(family, "text")


def render_single(events: list, family: str, fmt: str | None, lang: str, today: date | None) -> tuple[str, str, str, str]:
    """(title, body, body format, notify type) of one message about one fact (one or several events)."""
    body_fmt = format_for(family, fmt)
    fact = build_fact(events, lang, today)
    body = _BODY[body_fmt](fact, lang)
    lead = sorted(events, key=lambda e: (_KIND_ORDER.get(_g(e, "kind"), 9), _g(e, "id") or 0))[0]
    title = subject(lead, lang)
    if len({_g(e, "source") for e in events}) > 1:
        title = cap(title + f" (+{len(events) - 1})", SUBJECT_MAX)
    if body_fmt == "slack":
        body = cap_block(body, SLACK_MAX)
        title = cap(title, SLACK_HEADER_MAX)
    return title, body, body_fmt, notify_type(events)


def digest_subject(events: list, lang: str = "both") -> str:
    n = len(events)
    en = f"[watcher] digest: {n} update{'s' if n != 1 else ''}"
    zh = f"[watcher] 摘要：{n} 条更新"
    return {"en": en, "zh": zh}.get(lang, f"{en} · {n} 条更新")


def group_facts(events: list) -> list[list[Any]]:
    """Events about one standard (same standard or plan number, or a notice naming it) form one group, in the
    order their first event arrived; other events stand alone."""
    parent: dict[int, int] = {}

    def find(i: int) -> int:
        while parent.get(i, i) != i:
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, ev in enumerate(events):
        parent[i] = i
        if _g(ev, "kind") not in ("new", "changed", "stage_changed", "deadline_soon", "in_force_soon"):
            continue
        keys = [k for k in [_g(ev, "std_no"), _g(ev, "plan_no"), *(_g(ev, "std_nos") or [])] if k]
        for k in keys:
            if k in owner:
                parent[find(i)] = find(owner[k])
            else:
                owner[k] = i
    groups: dict[int, list[Any]] = defaultdict(list)
    for i, ev in enumerate(events):
        groups[find(i)].append(ev)
    return [groups[k] for k in sorted(groups)]


def render_digest(events: list, family: str, fmt: str | None, lang: str, today: date | None) -> tuple[str, str, str, str]:
    """One message for many events: grouped by source and kind, and within that by fact."""
    body_fmt = format_for(family, fmt)
    by_section: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
    for group in group_facts(events):
        lead = sorted(group, key=lambda e: (_KIND_ORDER.get(_g(e, "kind"), 9), _g(e, "id") or 0))[0]
        by_section[(_g(lead, "source_name") or _g(lead, "source", ""), _g(lead, "kind", ""))].append(group)
    out = []
    for (src, kind), groups in sorted(by_section.items()):
        heading = f"{src} · {pick(KIND_LABELS.get(kind, (kind, kind)), lang)} ({len(groups)})"
        facts_ = [build_fact(g, lang, today) for g in groups]
        if body_fmt == "html":
            out.append(f"<h2>{html.escape(heading)}</h2>" + "".join(f"<div>{html_fact(f, lang)}</div><hr>" for f in facts_))
        elif body_fmt == "slack":
            out.append(f"*== {slack_escape(heading)}*\n" + "\n\n".join(slack_fact(f, lang) for f in facts_))
        elif body_fmt == "markdown":
            out.append(f"**== {md_escape(heading)}**\n\n" + "\n\n".join(markdown_fact(f, lang) for f in facts_))
        else:
            out.append(f"== {heading}\n\n" + "\n".join(text_fact(f, lang) for f in facts_))
    body = ("\n" if body_fmt == "html" else "\n\n").join(out)
    if body_fmt == "slack":
        body = cap_block(body, SLACK_MAX * 10)
    return digest_subject(events, lang), body, body_fmt, notify_type(events)


def cap_block(body: str, limit: int) -> str:
    if len(body) <= limit:
        return body
    cut = body[:limit].rsplit("\n", 1)[0]
    return cut + "\n…"

"""Domain identity: standard numbers, plan numbers, stages and committee attribution.

Every extractor hands its raw strings here, so the same standard spelled three ways on three sites ends up with
one identity.
"""

from __future__ import annotations

import logging
import re
import unicodedata

log = logging.getLogger(__name__)

# Stage ids in lifecycle order, with their Chinese labels. `rank` orders forward moves; the last three are
# terminal states that may follow any stage. `under_revision` (修订: a revision project of a standard in force exists)
# follows `in_force`; it can end only in a terminal state (the old edition superseded or withdrawn), never go back to
# `in_force`.
STAGES: dict[str, tuple[str, str]] = {
    "preliminary": ("预研", "Preliminary work"),
    "approved": ("立项", "Project approved"),
    "drafting": ("起草", "Drafting"),
    "comment": ("征求意见", "Draft for comment"),
    "review": ("送审", "Under review"),
    "approval": ("报批", "Submitted for approval"),
    "published": ("发布", "Published"),
    "in_force": ("实施", "In force"),
    "under_revision": ("修订", "Under revision"),
    "superseded": ("被代替", "Superseded"),
    "withdrawn": ("废止", "Withdrawn"),
    "not_implemented": ("暂不实施", "Not implemented"),
}
STAGE_RANK = {s: i for i, s in enumerate(STAGES)}
TERMINAL = {"superseded", "withdrawn", "not_implemented"}

# Status strings seen on std.samr.gov.cn cards, gbQueryPage STATE values and TC260/CAC wording.
STATUS_LABELS: dict[str, str] = {
    "预研": "preliminary", "预研中": "preliminary",
    "立项": "approved", "已立项": "approved", "计划下达": "approved", "已下达": "approved", "批准立项": "approved",
    "起草": "drafting", "正在起草": "drafting", "制定中": "drafting", "起草中": "drafting",
    "征求意见": "comment", "正在征求意见": "comment", "征求意见中": "comment", "征求意见稿": "comment",
    "送审": "review", "审查": "review", "正在审查": "review", "送审稿": "review", "审查中": "review",
    "报批": "approval", "批准": "approval", "正在批准": "approval", "报批稿": "approval", "报批中": "approval",
    "发布": "published", "已发布": "published", "即将实施": "published", "待实施": "published",
    "实施": "in_force", "现行": "in_force", "现行有效": "in_force", "有效": "in_force",
    "被代替": "superseded", "已被代替": "superseded", "代替": "superseded",
    "废止": "withdrawn", "已废止": "withdrawn", "作废": "withdrawn",
    "暂不实施": "not_implemented",
    # further spellings seen on notices and older std.samr pages
    "拟立项": "preliminary", "立项公示": "approved", "已征求意见": "comment", "征求意见结束": "comment",
    "已送审": "review", "待审查": "review", "已报批": "approval", "已批准": "approval", "批准发布": "published",
    "已实施": "in_force", "有效期内": "in_force", "已代替": "superseded", "被替代": "superseded", "作废止": "withdrawn",
    # std.samr gbDetailed label 修订 (coverage §3.2, §4.3) and the ndls 已修订 (§4.10): a revision is under way
    "修订": "under_revision", "已修订": "under_revision", "修订中": "under_revision", "正在修订": "under_revision",
    # plan progress strings (gbAdvancedSearchPage CURRENT_LINK, §1.2.2; 正在审批 reported, the others expected)
    "正在审批": "approval", "审批": "approval", "审批中": "approval", "正在报批": "approval", "正在送审": "review",
    # openstd std_list p.p5 codes (sources.md §2.2, coverage §4.10): PUBLISHED is 现行, TOBEIMP 即将实施
    "PUBLISHED": "in_force", "TOBEIMP": "published", "REPLACED": "superseded", "WITHDRAWN": "withdrawn",
    "NOTIMP": "not_implemented",
    # ndls (RambowHy STATUS_MAP, §4.10): 历史 is an old edition, 未生效 published but not yet in force
    "历史": "superseded", "未生效": "published",
}
_unknown_logged: set[str] = set()
_COMMENT_RE = re.compile(r"征求[\s\S]{0,60}?意见")   # 关于征求《…》意见的通知

# Title keywords, most specific first: a title that says 征求意见稿 is a draft for comment even if it also says 发布.
TITLE_KEYWORDS: list[tuple[str, str]] = [
    ("暂不实施", "not_implemented"), ("废止", "withdrawn"), ("被代替", "superseded"),
    ("征求意见", "comment"), ("报批", "approval"), ("送审", "review"), ("审查", "review"),
    ("立项", "approved"), ("计划下达", "approved"), ("实施", "in_force"), ("发布", "published"),
]

DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d\u30fc\u2500-"
_DASH_RE = re.compile(f"[{re.escape(DASHES)}]+")
_SPACE_RE = re.compile(r"[\s\u00a0\u3000\u200b\ufeff]+")

# GB, GB/T, GB/Z (also GBT, GB／T, GB T) followed by a number with optional part (.16) and a year.
_STD_RE = re.compile(
    r"(?<![A-Za-z])GB\s*(?:[/／∕⁄]?\s*([TZtz]))?\s*(\d{1,5}(?:\s*\.\s*\d{1,3})*)\s*[-\u2010-\u2015\u2212\uff0d]\s*(\d{4})(?!\d)",
    re.I,
)
_PLAN_SEP = r"\s*[-\u2010-\u2015\u2212\uff0d_]?\s*"
_PLAN_RE = re.compile(r"(?<!\d)((?:19|20)\d{6})" + _PLAN_SEP + r"([TQZtqz])" + _PLAN_SEP + r"(\d{3})(?![\d])")


def clean_text(s: str | None) -> str:
    """Collapse every kind of whitespace (NBSP, U+3000, zero-width) to one space and trim."""
    if not s:
        return ""
    return _SPACE_RE.sub(" ", s).strip()


def _nfkc(s: str) -> str:
    return unicodedata.normalize("NFKC", s)


def normalize_std_no(s: str | None) -> str | None:
    """`GB/T 47020—2026`, `GBT47020-2026`, full-width forms -> `GB/T 47020-2026`; None when there is no number."""
    found = find_std_nos(s or "")
    return found[0] if found else None


def find_std_nos(text: str) -> list[str]:
    """Every standard number in a text, normalised, in order of appearance, without repeats."""
    if not text:
        return []
    t = _DASH_RE.sub("-", _nfkc(text))
    out: list[str] = []
    for m in _STD_RE.finditer(t):
        suffix = (m.group(1) or "").upper()
        number = re.sub(r"\s+", "", m.group(2))
        no = f"GB{'/' + suffix if suffix else ''} {number}-{m.group(3)}"
        if no not in out:
            out.append(no)
    return out


_FAMILY_RE = re.compile(r"(?<![A-Za-z])GB\s*(?:[/／∕⁄]?\s*([TZtz])(?![A-Za-z]))?\s*(\d{1,5}(?:\s*\.\s*\d{1,3})*)", re.I)


def std_family(s: str | None) -> str | None:
    """The standard a number belongs to, without its year: `GB/T 22080-2016`, `gbt22080`, `ＧＢ／Ｔ　２２０８０—２０１６`
    -> `GB/T 22080` (every edition of GB/T 22080); None when there is no GB number."""
    if not s:
        return None
    t = _DASH_RE.sub("-", _nfkc(s))
    m = _FAMILY_RE.search(t)
    if not m:
        return None
    suffix = (m.group(1) or "").upper()
    number = re.sub(r"\s+", "", m.group(2))
    return f"GB{'/' + suffix if suffix else ''} {number}"


def normalize_plan_no(s: str | None) -> str | None:
    """`20230259—T—469`, full-width forms -> `20230259-T-469`; None when there is none."""
    found = find_plan_nos(s or "")
    return found[0] if found else None


def find_plan_nos(text: str) -> list[str]:
    if not text:
        return []
    t = _nfkc(text)
    out: list[str] = []
    for m in _PLAN_RE.finditer(t):
        no = f"{m.group(1)}-{m.group(2).upper()}-{m.group(3)}"
        if no not in out:
            out.append(no)
    return out


def stage_from_status(label: str | None) -> str | None:
    """Map a status string to a stage id. Unknown strings are logged once and give None (kept verbatim elsewhere)."""
    if not label:
        return None
    key = clean_text(_nfkc(label)).replace(" ", "")
    if key in STATUS_LABELS:
        return STATUS_LABELS[key]
    if key in STAGES:
        return key
    if key not in _unknown_logged:
        _unknown_logged.add(key)
        log.warning("unknown status label %r kept verbatim", label)
    return None


def stage_from_title(title: str | None) -> str | None:
    """A stage suggested by keywords of a notice title (征求意见稿 -> comment, 发布 -> published...)."""
    if not title:
        return None
    for word, stage in TITLE_KEYWORDS:
        if word in title or stage == "comment" and _COMMENT_RE.search(title):
            return stage
    return None


def stage_label(stage: str | None, lang: str = "both") -> str:
    if not stage:
        return ""
    zh, en = STAGES.get(stage, (stage, stage))
    return {"zh": zh, "en": en}.get(lang, f"{en} · {zh}")


def is_forward(old: str | None, new: str) -> bool:
    """True when moving from `old` to `new` is progress (or a terminal state), not a lagging source."""
    if old is None:
        return True
    if old == new:
        return False
    if new in TERMINAL:
        return old not in TERMINAL
    if old in TERMINAL:
        return False
    return STAGE_RANK[new] > STAGE_RANK[old]


_QUOTED_RE = re.compile(r"《([^《》]{2,120})》")
_TRAILING_DRAFT_RE = re.compile(r"[（(](?:征求意见稿|送审稿|报批稿|草案|修订草案|试行)[）)]$")


def standard_title(title: str | None) -> str | None:
    """The standard's own title inside a notice title: 关于国家标准《X》征求意见稿… -> X."""
    if not title:
        return None
    m = _QUOTED_RE.search(title)
    inner = m.group(1) if m else title
    inner = _TRAILING_DRAFT_RE.sub("", clean_text(inner)).strip()
    return inner or None


def title_key(title: str | None) -> str | None:
    """A comparison key for titles: NFKC, no whitespace or punctuation, lower-case."""
    if not title:
        return None
    t = _nfkc(title).lower()
    t = re.sub(r"[\s\W_]+", "", t)
    return t or None


TC260_NAMES = ("全国网络安全标准化技术委员会", "全国信息安全标准化技术委员会", "TC260", "SAC/TC260", "SAC/TC 260")
TC260_PREFIXES = ("信息安全技术", "网络安全技术", "数据安全技术")


def committee_of(title: str | None, responsible: str | None = None, ta_code: str | None = None) -> str | None:
    """'TC260' when the page says so (归口单位, TA_CODE) or the title carries a TC260 prefix; else None."""
    for value in (responsible, ta_code):
        if value and any(n.replace(" ", "") in value.replace(" ", "") for n in TC260_NAMES):
            return "TC260"
    std_title = standard_title(title) or ""
    if clean_text(std_title).startswith(TC260_PREFIXES) or clean_text(title).startswith(TC260_PREFIXES):
        return "TC260"
    return None


def enrich(entry, source) -> None:
    """Fill numbers, stage and committee of an extracted Entry from its own strings and the source's settings."""
    text = " ".join(x for x in (entry.title, entry.summary or "") if x)
    if entry.std_no:
        entry.std_no = normalize_std_no(entry.std_no) or entry.std_no
    found = find_std_nos(text)
    if entry.std_no and entry.std_no not in found:
        found.insert(0, entry.std_no)
    entry.std_nos = found
    if not entry.plan_no:
        plans = find_plan_nos(text)
        entry.plan_no = plans[0] if plans else None
    if source.stage:
        entry.stage = source.stage
    elif entry.status:
        entry.stage = stage_from_status(entry.status)
    entry.committee = source.committee or committee_of(
        entry.title, entry.extra.get("responsible_tc"), entry.extra.get("TA_CODE"))
    if entry.committee is None and source.kind.startswith("tc260."):
        entry.committee = "TC260"

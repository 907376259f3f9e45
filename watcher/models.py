"""Small values passed between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Entry:
    """One row of a watched page, after extraction and identification.

    `key` is its identity within the source (a site id, a canonical URL, or a number); `fields` are the values that
    make up its content digest.
    """

    key: str
    url: str
    title: str
    published: str | None = None
    deadline: str | None = None
    summary: str | None = None
    plan_no: str | None = None
    std_no: str | None = None
    std_nos: list[str] = field(default_factory=list)
    status: str | None = None          # status label as shown on the page, verbatim
    stage: str | None = None
    committee: str | None = None
    issue_date: str | None = None
    act_date: str | None = None
    attachments: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    title_en: str | None = None        # the official English title, when the page gives one
    replaces: list[str] = field(default_factory=list)      # standard numbers this one replaces (normalised)
    replaced_by: list[str] = field(default_factory=list)   # standard numbers that replace this one (normalised)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return d


@dataclass
class FetchResult:
    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    not_modified: bool = False
    elapsed: float = 0.0


@dataclass
class Page:
    """A decoded page handed to an extractor."""

    url: str
    text: str
    content_type: str = ""
    encoding: str = "utf-8"
    replacements: int = 0

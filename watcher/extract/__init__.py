"""Extractor registry: `kind` in sources.toml -> an object that turns a Page into Entries.

Adding a site is one module: define a class with `extract(page, source)` (and optionally `wants_detail` /
`parse_detail`), decorate it with `@extractor("site.kind")`, and import the module at the bottom of this file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watcher.config import Source
    from watcher.models import Entry, Page

EXTRACTORS: dict[str, "Extractor"] = {}


class Entries(list):
    """A list of entries; `confirmed_empty` is True when the page itself says it has no results."""

    confirmed_empty: bool = False
    total: int | None = None


class Extractor:
    """Base extractor. The class docstring is shown by `watcher kinds`."""

    kind = ""
    has_detail = False

    def extract(self, page: "Page", source: "Source") -> list["Entry"]:
        raise NotImplementedError

    def wants_detail(self, entry: "Entry", source: "Source") -> bool:
        return False

    def parse_detail(self, page: "Page", entry: "Entry", source: "Source") -> dict[str, Any]:
        return {}

    def page_request(self, source: "Source", page_no: int) -> tuple[str, dict[str, str]] | None:
        """(url, form) that asks for page `page_no` (1, 2, 3...) of the list `source` polls, built from the source's
        configured url and form; None when this kind's paging is not known. The method stays `source.method`."""
        return None


def extractor(kind: str):
    """Class decorator that registers an extractor under `kind`."""

    def register(cls: type[Extractor]) -> type[Extractor]:
        cls.kind = kind
        EXTRACTORS[kind] = cls()
        return cls

    return register


def get(kind: str) -> Extractor:
    return EXTRACTORS[kind]


from watcher.extract import cac, css, samr, samr_notices, tc260  # noqa: E402,F401  (registration side effects)

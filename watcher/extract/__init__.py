"""Extractor registry: `kind` in sources.toml -> an object that turns a Page into Entries.

Adding a site is one module: define a class with `extract(page, source)` (and optionally `wants_detail` /
`parse_detail`), decorate it with `@extractor("site.kind")`, and name its kind and module in KINDS below. A module is
imported when one of its kinds is first used, so a process loads only the extractors its sources need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watcher.config import Source
    from watcher.models import Entry, Page

# kind -> the module that defines it
KINDS: dict[str, str] = {
    "css": "watcher.extract.css",
    "tc260.suggestions": "watcher.extract.tc260",
    "samr.std_search": "watcher.extract.samr", "samr.gb_query": "watcher.extract.samr",
    "samr.gb_advanced": "watcher.extract.samr", "samr.notices": "watcher.extract.samr_notices",
    "cac.column": "watcher.extract.cac", "cac.jsonlist": "watcher.extract.cac",
}


class _Registry(dict):
    """The extractors by kind; knows every kind up front and imports a kind's module on first use."""

    def _load(self, kind: str) -> None:
        import importlib
        importlib.import_module(KINDS[kind])

    def _load_all(self) -> None:
        for kind in KINDS:
            if not dict.__contains__(self, kind):
                self._load(kind)

    def __missing__(self, kind: str) -> "Extractor":
        if kind not in KINDS:
            raise KeyError(kind)
        self._load(kind)
        return dict.__getitem__(self, kind)

    def __contains__(self, kind: object) -> bool:
        return kind in KINDS

    def __iter__(self):
        self._load_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        return len(KINDS)

    def keys(self):
        self._load_all()
        return dict.keys(self)

    def items(self):
        self._load_all()
        return dict.items(self)

    def values(self):
        self._load_all()
        return dict.values(self)


EXTRACTORS: dict[str, "Extractor"] = _Registry()


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


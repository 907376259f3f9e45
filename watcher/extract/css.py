"""Generic extractor driven by selectors in sources.toml, for pages that have no site adapter."""

from __future__ import annotations

from watcher.errors import ParseError
from watcher.extract import Extractor, extractor
from watcher.extract.common import parse_date, parse_html, select_value
from watcher.identify import clean_text
from watcher.models import Entry


@extractor("css")
class CssExtractor(Extractor):
    """Rows selected by `rows`; inside each row `title` (default "a"), `link` (default "a@href"), `date`,
    `deadline`, `summary`. A selector ending in @name takes that attribute. Links are made absolute; titles lose
    highlight tags (without added spaces) and 置顶/NEW markers."""

    def extract(self, page, source):
        tree = parse_html(page.text)
        try:
            rows = tree.css(source.rows)
        except Exception as e:  # invalid selectors are caught at config load; keep the page error readable
            raise ParseError(f"bad rows selector: {e}", url=page.url, selector=source.rows) from None
        entries: list[Entry] = []
        seen: set[str] = set()
        for row in rows:
            title = select_value(row, source.title, page.url, title=True)
            link = select_value(row, source.link, page.url)
            if not title and not link:
                continue
            key = link or clean_text(title)
            if key in seen:
                continue
            seen.add(key)
            entries.append(Entry(
                key=key, url=link or page.url, title=title or link or "",
                published=parse_date(select_value(row, source.date, page.url)),
                deadline=parse_date(select_value(row, source.deadline, page.url)),
                summary=select_value(row, source.summary, page.url),
            ))
        return entries

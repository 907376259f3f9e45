"""The read-only web view: HTML pages, the iCalendar feed and the JSON API, served by web.serve."""

from __future__ import annotations


def handle(path: str, query: dict[str, list[str]], store, config, *, base_url: str):
    """(status, body bytes, content type) for a path this module serves, or None."""
    return None

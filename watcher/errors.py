"""Exception hierarchy of watcher.

    WatcherError
    ├── ConfigError(ValueError)     operator mistake in sources.toml or on the command line (exit 2)
    ├── StoreError                  the state database cannot be opened or written (exit 2)
    ├── FetchError                  a page could not be fetched (transport error, HTTP error, too large)
    └── ParseError                  a page was fetched but its structure is not what the extractor expects

A 304 is not an error (FetchResult.not_modified), and a failed delivery is a result recorded on the outbox row,
not an exception (apprise reports it as a return value).
"""

from __future__ import annotations


class WatcherError(Exception):
    """Base of every error watcher raises on purpose."""


class ConfigError(WatcherError, ValueError):
    """An operator mistake: the message names file, line and field."""


class StoreError(WatcherError):
    """The state database cannot be used."""


class FetchError(WatcherError):
    """A fetch failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, url: str, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.url = url
        self.status = status
        self.retry_after = retry_after

    def __reduce__(self):   # picklable (a poll's first half may run in another process)
        return _fetch_error, (str(self), self.url, self.status, self.retry_after, getattr(self, "transient", False))


def _fetch_error(message, url, status, retry_after, transient):
    e = FetchError(message, url=url, status=status, retry_after=retry_after)
    e.transient = transient
    return e


class ParseError(WatcherError):
    """The page does not have the structure the extractor needs."""

    def __init__(self, message: str, *, url: str = "", selector: str | None = None):
        where = f" (selector {selector!r})" if selector else ""
        super().__init__(f"{message}{where}")
        self.url = url
        self.selector = selector

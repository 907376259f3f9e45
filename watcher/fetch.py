"""HTTP fetching with one shared httpx client: conditional GET, bounded retries with backoff and Retry-After,
a response size cap, and per-host politeness (one request at a time per host, optional delay between them)."""

from __future__ import annotations

import email.utils
import logging
import sys
import threading
import time
from datetime import timezone
from urllib.parse import urlsplit


def _import_httpx_sync_only():
    """httpcore imports trio and anyio (when installed) for async backends; watcher only uses the sync client, so
    keep them out of the daemon's memory (about 4 MB)."""
    blocked = [m for m in ("trio", "anyio", "click", "pygments", "rich") if m not in sys.modules]   # (and httpx's
    # command-line client, which imports click and pygments when they are installed)
    for m in blocked:
        sys.modules[m] = None  # type: ignore[assignment]  # makes `import m` raise ImportError
    try:
        import httpcore._synchronization  # noqa: F401
        import httpx
    finally:
        for m in blocked:
            sys.modules.pop(m, None)
    return httpx


httpx = _import_httpx_sync_only()

from watcher import __version__
from watcher.errors import FetchError
from watcher.models import FetchResult

log = logging.getLogger(__name__)

# operators should add a contact with [settings] user_agent, e.g. "watcher/0.1 (standards office; ops@example.com)"
DEFAULT_UA = f"watcher/{__version__} (standards change monitor; python-httpx)"
RETRY_STATUSES = {429, 500, 502, 503, 504}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return max(0.0, dt.timestamp() - (now or time.time()))


class Fetcher:
    def __init__(self, *, user_agent: str | None = None, max_retry_wait: float = 10.0, host_delay: float = 0.0,
                 transport: httpx.BaseTransport | None = None, backoff: float = 0.5,
                 sleep=time.sleep):
        self.max_retry_wait = max_retry_wait
        self.host_delay = host_delay
        self.backoff = backoff
        self.sleep = sleep
        self._host_locks: dict[str, threading.Lock] = {}
        self._host_last: dict[str, float] = {}
        self._guard = threading.Lock()
        self._transport = transport
        self._user_agent = user_agent or DEFAULT_UA
        self._clients: dict[tuple[str, str | None], httpx.Client] = {}
        self._ssl: dict[str | None, object] = {}
        self._templates: dict[tuple, httpx.Request] = {}
        self._transports: dict[tuple[str, str | None], httpx.BaseTransport] = {}
        self._redirecting: set[httpx.URL] = set()

    def _ssl_context(self, ca_bundle: str | None):
        """One TLS context per CA setting: each context loads the CA bundle (~1.5 MB). A source's `ca_bundle` is
        added to the default roots (for .gov.cn servers that omit an intermediate certificate)."""
        ctx = self._ssl.get(ca_bundle)
        if ctx is None:
            ctx = httpx.create_ssl_context()
            if ca_bundle:
                ctx.load_verify_locations(cafile=ca_bundle)
            self._ssl[ca_bundle] = ctx
        return ctx

    def _client(self, host: str, ca_bundle: str | None = None) -> httpx.Client:
        """One client per host: httpcore scans its whole pool on every request, so small pools stay cheap."""
        client = self._clients.get((host, ca_bundle))
        if client is None:
            with self._guard:
                client = self._clients.get((host, ca_bundle))
                if client is None:
                    transport = self._transport or httpx.HTTPTransport(
                        verify=self._ssl_context(ca_bundle), retries=0,
                        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2))
                    self._transports[(host, ca_bundle)] = transport
                    client = self._clients[(host, ca_bundle)] = httpx.Client(
                        transport=transport, follow_redirects=True, max_redirects=10,
                        timeout=httpx.Timeout(20.0, connect=10.0),
                        headers={"User-Agent": self._user_agent,
                                 "Accept": "text/html,application/json;q=0.9,*/*;q=0.8",
                                 "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
        return client

    def close(self) -> None:
        for client in list(self._clients.values()):
            client.close()
        self._clients.clear()

    def _host_slot(self, host: str) -> threading.Lock:
        with self._guard:
            return self._host_locks.setdefault(host, threading.Lock())

    def fetch(self, url: str, *, method: str = "GET", form: dict[str, str] | None = None,
              headers: dict[str, str] | None = None, timeout: float = 20.0, retries: int = 2,
              max_bytes: int = 5_000_000, etag: str | None = None, last_modified: str | None = None,
              ca_bundle: str | None = None) -> FetchResult:
        """Fetch one URL. Returns a FetchResult (not_modified=True on 304); raises FetchError when it gives up."""
        conditional = {}
        if etag:
            conditional["If-None-Match"] = etag
        if last_modified:
            conditional["If-Modified-Since"] = last_modified
        host = urlsplit(url).hostname or ""
        attempt = 0
        while True:
            try:
                return self._once(url, method, form, headers or {}, conditional, timeout, max_bytes, host, ca_bundle)
            except FetchError as e:
                retryable = e.status in RETRY_STATUSES or e.status is None and getattr(e, "transient", False)
                if not retryable or attempt >= retries:
                    raise
                wait = e.retry_after if e.retry_after is not None else self.backoff * (2 ** attempt)
                if wait > self.max_retry_wait:
                    raise  # the server asked for longer than one poll may wait: the next poll retries
                attempt += 1
                log.info("retrying %s in %.1fs after %s (attempt %d of %d)", url, wait, e, attempt, retries)
                self.sleep(wait)

    def _request(self, client: httpx.Client, method: str, url: str, form, headers: dict[str, str],
                 conditional: dict[str, str], timeout: float) -> httpx.Request:
        """A request for this poll. Merging the client's and the source's headers and the timeout is done once per
        (origin, headers, timeout) and kept as a template; a poll copies its headers (a third of the cost of
        build_request, and no per-source memory). Cookies set by a site, or a form body, take the full path."""
        if form or client.cookies:
            return client.build_request(method, url, data=form or None, headers={**headers, **conditional},
                                        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))
        parts = urlsplit(url)
        key = (method, parts.scheme, parts.netloc, tuple(sorted(headers.items())), timeout)
        tpl = self._templates.get(key)
        if tpl is None:
            tpl = self._templates[key] = client.build_request(
                method, url, headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))
        req = httpx.Request(method, url, headers=tpl.headers, extensions=tpl.extensions)
        if conditional:
            req.headers.update(conditional)
        return req

    def _send(self, client: httpx.Client, transport: httpx.BaseTransport, req: httpx.Request) -> httpx.Response:
        """client.send(req, stream=True) without the layers an ordinary GET does not use (auth, event hooks, the
        cookie jar when no cookie is set: about 12% of an unchanged poll). A redirect, a site that sets cookies,
        or a POST goes through the client, which follows redirects and keeps the cookies; a URL that redirected
        once goes through the client from then on."""
        if req.method != "GET" or client.cookies or req.url in self._redirecting or req.url.userinfo:
            return client.send(req, stream=True)        # (user info in the URL: the client sends it as Basic auth)
        r = transport.handle_request(req)
        r.request = req
        if r.has_redirect_location:
            r.close()
            self._redirecting.add(req.url)
            return client.send(req, stream=True)
        if "set-cookie" in r.headers:
            client.cookies.extract_cookies(r)
        return r

    def _once(self, url, method, form, headers, conditional, timeout, max_bytes, host, ca_bundle=None) -> FetchResult:
        slot = self._host_slot(host)
        with slot:
            if self.host_delay:
                gap = time.monotonic() - self._host_last.get(host, 0.0)
                if gap < self.host_delay:
                    self.sleep(self.host_delay - gap)
            t0 = time.monotonic()
            try:
                client = self._client(host, ca_bundle)
                req = self._request(client, method, url, form, headers, conditional, timeout)
                r = self._send(client, self._transports[(host, ca_bundle)], req)
                try:
                    if r.status_code == 304:
                        r.read()        # consume the (empty) body so the connection goes back to the pool
                        return FetchResult(str(r.url), 304, dict(r.headers), b"", not_modified=True,
                                           elapsed=time.monotonic() - t0)
                    if r.status_code >= 400:
                        cl = r.headers.get("Content-Length")
                        if cl and cl.isdigit() and int(cl) <= 65536:
                            r.read()    # a small error body: keep the connection reusable
                        ra = parse_retry_after(r.headers.get("Retry-After"))
                        raise FetchError(f"HTTP {r.status_code} {r.reason_phrase}".strip(), url=url,
                                         status=r.status_code, retry_after=ra)
                    declared = r.headers.get("Content-Length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise FetchError(f"response too large ({declared} bytes > max_bytes {max_bytes})", url=url)
                    chunks, size = [], 0
                    for chunk in r.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise FetchError(f"response too large (over max_bytes {max_bytes})", url=url)
                        if time.monotonic() - t0 > timeout:
                            # `timeout` bounds the whole request, not each read: a page dripped slowly fails
                            err = FetchError(f"timeout after {timeout:g}s (the body was still arriving)", url=url)
                            err.transient = True
                            raise err
                        chunks.append(chunk)
                    return FetchResult(str(r.url), r.status_code, dict(r.headers), b"".join(chunks),
                                       elapsed=time.monotonic() - t0)
                finally:
                    r.close()
            except httpx.TimeoutException as e:
                err = FetchError(f"timeout after {timeout:g}s ({e.__class__.__name__})", url=url)
                err.transient = True
                raise err from None
            except (httpx.TransportError, httpx.TooManyRedirects) as e:
                err = FetchError(f"{e.__class__.__name__}: {e}", url=url)
                err.transient = isinstance(e, (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError))
                raise err from None
            finally:
                self._host_last[host] = time.monotonic()


"""Optional HTTP listener of the daemon: /healthz, /metrics (Prometheus text format) and /events.atom."""

from __future__ import annotations

import logging
import threading
from datetime import timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select

from watcher import __version__
from watcher.store import Delivery, EventRow, Store

log = logging.getLogger("watcher.web")


class Metrics:
    """Process metrics; delivery counts are read from the outbox at scrape time."""

    def __init__(self, store: Store):
        self.registry = CollectorRegistry()
        self.polls = Counter("watcher_polls", "Polls by source and outcome", ["source", "status"], registry=self.registry)
        self.failures = Counter("watcher_poll_failures", "Failed or broken polls", ["source"], registry=self.registry)
        self.events = Counter("watcher_events", "Events detected, by kind", ["kind"], registry=self.registry)
        self.last_success = Gauge("watcher_last_success_timestamp_seconds", "Last healthy poll", ["source"],
                                  registry=self.registry)
        # one histogram for all sources: a labelled one costs 11 series per source (about 3 MB for 1000 sources);
        # per-source durations are in the poll log lines
        self.duration = Histogram("watcher_poll_duration_seconds", "Duration of one poll",
                                  buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=self.registry)
        self.registry.register(_DeliveryCollector(store))
        self.registry.register(_StateCollector(store))

    def observe(self, outcome) -> None:
        self.polls.labels(outcome.source, outcome.status).inc()
        self.duration.observe(outcome.duration)
        if outcome.status in ("failed", "broken"):
            self.failures.labels(outcome.source).inc()
        elif outcome.status in ("ok", "unchanged"):
            import time
            self.last_success.labels(outcome.source).set(time.time())
        for ev in outcome.events:
            self.events.labels(ev["kind"]).inc()


class _StateCollector:
    def __init__(self, store: Store):
        self.store = store

    def collect(self):
        from prometheus_client.core import CounterMetricFamily
        yield CounterMetricFamily("watcher_state_write_errors", "Failed writes to the state since start",
                                  value=self.store.write_errors)


class _DeliveryCollector:
    def __init__(self, store: Store):
        self.store = store

    def collect(self):
        g = GaugeMetricFamily("watcher_deliveries", "Outbox deliveries by channel and status", labels=["channel", "status"])
        try:
            with self.store.read() as s:
                for ch, status, n in s.execute(select(Delivery.channel, Delivery.status, func.count())
                                               .group_by(Delivery.channel, Delivery.status)):
                    g.add_metric([ch, status], n)
        except Exception as e:  # a scrape must not crash the listener
            log.warning("metrics: cannot read deliveries: %s", e)
        yield g


def atom_feed(store: Store, base_url: str, limit: int = 50) -> bytes:
    from watcher.events import Event
    with store.read() as s:
        rows = list(s.execute(select(EventRow).order_by(EventRow.detected_at.desc(), EventRow.id.desc()).limit(limit)))
    from watcher.render import one_line, text_body, what
    updated = rows[0].detected_at if rows else None
    stamp = lambda dt: dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    parts = ['<?xml version="1.0" encoding="utf-8"?>', '<feed xmlns="http://www.w3.org/2005/Atom">',
             "<title>watcher events</title>", f"<id>urn:watcher:{escape(base_url)}</id>",
             f'<link rel="self" href="{escape(base_url, {chr(34): "&quot;"})}/events.atom"/>',
             f"<updated>{stamp(updated) if updated else '1970-01-01T00:00:00Z'}</updated>",
             f'<generator version="{__version__}">watcher</generator>']
    for r in rows:
        p = Event.from_stored(r.id, r.payload)
        link = p.get("url") or ""
        parts += ["<entry>", f"<id>urn:watcher:event:{r.id}</id>",
                  f"<title>{escape(what(p, 'both') + ': ' + (p.get('title') or ''))}</title>",
                  f"<updated>{stamp(r.detected_at)}</updated>",
                  f"<author><name>{escape(p.get('source_name') or p.get('source') or 'watcher')}</name></author>",
                  f'<link href="{escape(link, {chr(34): "&quot;"})}"/>' if link.startswith(("http://", "https://")) else "",
                  f'<category term="{escape(p.get("kind", ""))}"/>',
                  f"<summary>{escape(one_line(p))}</summary>",
                  f'<content type="text">{escape(text_body(p))}</content>', "</entry>"]
    parts.append("</feed>")
    from watcher.sanitize import xml_safe
    return xml_safe("\n".join(x for x in parts if x)).encode("utf-8")


def is_loopback(host: str) -> bool:
    import ipaddress
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(address: str, store: Store, metrics: Metrics, healthy, *, token: str | None = None,
          config=None) -> ThreadingHTTPServer:
    """Start the listener. Loopback needs no token; any other address refuses to start without one. With a token,
    every page but /healthz needs `Authorization: Bearer <token>` or `?token=<token>`."""
    import hmac
    from urllib.parse import parse_qs, urlsplit

    from watcher.errors import ConfigError

    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit():
        raise ConfigError(f"--http {address}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    if not is_loopback(host) and not token:
        raise ConfigError(f"--http {address}: not a loopback address, so the listener needs a token: set "
                          "WATCHER_HTTP_TOKEN (clients then send it as a bearer token, or in a token query parameter)")

    class Handler(BaseHTTPRequestHandler):
        server_version = f"watcher/{__version__}"

        def log_message(self, fmt, *args):
            log.debug("http %s", fmt % args)

        def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if not token:
                return True
            got = self.headers.get("Authorization", "")
            if got.startswith("Bearer "):
                got = got[7:].strip()
            else:
                got = (parse_qs(urlsplit(self.path).query).get("token") or [""])[0]
            return hmac.compare_digest(got.encode(), token.encode())

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            try:
                if path == "/healthz":
                    ok, why = healthy()
                    self._send(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
                elif not self._authorised():
                    self._send(401, b"token required\n", "text/plain; charset=utf-8",
                               {"WWW-Authenticate": 'Bearer realm="watcher"'})
                elif path == "/metrics" and metrics is not None:
                    self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
                elif path in ("/events.atom", "/feed"):
                    base = f"http://{self.headers.get('Host') or address}"
                    self._send(200, atom_feed(store, base), "application/atom+xml; charset=utf-8")
                else:
                    from watcher.webview import handle
                    query = parse_qs(urlsplit(self.path).query)
                    got = handle(path, query, store, config() if callable(config) else config,
                                 base_url=f"http://{self.headers.get('Host') or address}")
                    if got is None:
                        self._send(404, b"not found\n", "text/plain")
                    else:
                        self._send(*got)
            except Exception as e:  # keep the listener alive
                log.exception("http %s failed", path)
                self._send(500, f"error: {e.__class__.__name__}\n".encode(), "text/plain")

    httpd = ThreadingHTTPServer((host, int(port)), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="watcher-http", daemon=True).start()
    log.info("http listener on %s%s", f"{host}:{httpd.server_address[1]}", "" if token else " (no token)")
    return httpd

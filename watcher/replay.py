"""Serve recorded snapshots (manifest.toml + bodies) instead of the network: `--replay DIR`, demos and tests.

The matching rules are those of the fixtures' README: method, scheme, host, path and the decoded query pairs; for
POST every `form` field must be present; conditional requests get 304; `status = 304` entries stand for their
`unchanged_since` snapshot's 200 answer; anything else is 404.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx

from watcher.errors import ConfigError


@dataclass
class Recorded:
    method: str
    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    form: dict[str, str]
    unchanged_since: str | None = None


def _url_key(url: str) -> tuple:
    p = urlsplit(url)
    return (p.scheme.lower(), (p.hostname or "").lower(), p.port, p.path or "/", tuple(parse_qsl(p.query, keep_blank_values=True)))


class Snapshot:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        manifest = self.dir / "manifest.toml"
        try:
            data = tomllib.loads(manifest.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{manifest}: replay manifest not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{manifest}: {e}") from None
        self.name = data.get("snapshot", self.dir.name)
        self.observed_at = data.get("observed_at")
        self.description = data.get("description", "")
        self.responses: list[Recorded] = []
        for i, r in enumerate(data.get("response", [])):
            try:
                body = (self.dir / r["file"]).read_bytes() if r.get("file") else b""
                self.responses.append(Recorded(
                    method=r.get("method", "GET").upper(), url=r["url"], status=int(r.get("status", 200)),
                    headers={str(k): str(v) for k, v in (r.get("headers") or {}).items()}, body=body,
                    form={str(k): str(v) for k, v in (r.get("form") or {}).items()},
                    unchanged_since=r.get("unchanged_since")))
            except (KeyError, OSError, ValueError) as e:
                raise ConfigError(f"{manifest}: response #{i + 1}: {e}") from None
        self._index: dict[tuple, list[Recorded]] = {}
        for rec in self.responses:
            self._index.setdefault((rec.method,) + _url_key(rec.url), []).append(rec)

    def match(self, method: str, url: str, form: dict[str, str]) -> Recorded | None:
        for rec in self._index.get((method.upper(),) + _url_key(url), []):
            if all(form.get(k) == v for k, v in rec.form.items()):
                return rec
        return None

    def answer(self, method: str, url: str, headers: dict[str, str], form: dict[str, str]) -> tuple[int, dict, bytes]:
        rec = self.match(method, url, form)
        if rec is None:
            return 404, {"Content-Type": "text/plain"}, b"not in replay manifest"
        h = {k.lower(): v for k, v in headers.items()}
        if rec.status == 304:
            etag = rec.headers.get("ETag")
            if etag and h.get("if-none-match") == etag or \
                    rec.headers.get("Last-Modified") and h.get("if-modified-since") == rec.headers["Last-Modified"]:
                return 304, rec.headers, b""
            if rec.unchanged_since:
                earlier = Snapshot(self.dir.parent / rec.unchanged_since)
                return earlier.answer(method, url, {}, form)
            return 304, rec.headers, b""
        etag, lm = rec.headers.get("ETag"), rec.headers.get("Last-Modified")
        if rec.status == 200 and ((etag and h.get("if-none-match") == etag) or
                                  (lm and not etag and h.get("if-modified-since") == lm)):
            return 304, {k: v for k, v in rec.headers.items() if k in ("ETag", "Last-Modified")}, b""
        return rec.status, rec.headers, rec.body


class ReplayTransport(httpx.BaseTransport):
    """An httpx transport that answers from a Snapshot, so URLs keep their real hosts.

    When the snapshot directory is a symlink that is repointed (t0 -> t1 ...), the next request reads the new one.
    """

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        self._real = os.path.realpath(snapshot.dir)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        real = os.path.realpath(self.snapshot.dir)
        if real != self._real:
            self.snapshot, self._real = Snapshot(self.snapshot.dir), real
        form: dict[str, str] = {}
        if request.method == "POST":
            body = request.read().decode("utf-8", "replace")
            form = dict(parse_qsl(body, keep_blank_values=True))
        status, headers, body = self.snapshot.answer(request.method, str(request.url), dict(request.headers), form)
        return httpx.Response(status, headers=headers, content=body, request=request)

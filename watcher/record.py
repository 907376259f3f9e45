"""`watcher record`: save live responses (list pages and the detail pages watcher would read) as a replay snapshot
in the manifest format of `--replay`."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from watcher.config import Config, Source
from watcher.decode import to_text
from watcher.errors import FetchError, ParseError
from watcher.extract import get as get_extractor
from watcher.fetch import Fetcher
from watcher.models import Page

_KEEP_HEADERS = ("Content-Type", "ETag", "Last-Modified", "Retry-After")


def _file_for(url: str, method: str, form: dict[str, str]) -> str:
    p = urlsplit(url)
    path = p.path.strip("/") or "index"
    if p.query:
        path += "__" + re.sub(r"[^A-Za-z0-9._-]+", "_", p.query)[:80]
    if form:
        path += "__" + re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(form.values()))[:60]
    if not re.search(r"\.(html?|json|xml|txt)$", path):
        path += ".html"
    return f"{p.hostname}/{path}"


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _toml_table(d: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{_toml_str(k)} = {_toml_str(v)}" for k, v in d.items()) + " }"


def record_sources(config: Config, sources: list[Source], out: Path, fetcher: Fetcher | None = None) -> int:
    """Fetch each source (and the detail pages its extractor reads) and write out/manifest.toml plus bodies."""
    own = fetcher is None
    fetcher = fetcher or Fetcher(user_agent=config.settings.user_agent, max_retry_wait=config.settings.max_retry_wait,
                                 host_delay=config.settings.host_delay)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc).isoformat()
    blocks = [f"snapshot = {_toml_str(out.name)}\nobserved_at = {_toml_str(now)}\n"
              f"description = \"recorded by watcher record\"\n"]

    def save(url: str, method: str, form: dict[str, str], status: int, headers: dict[str, str], body: bytes) -> None:
        h = {k: v for k, v in ((k, headers.get(k.lower())) for k in _KEEP_HEADERS) if v}
        lines = ["[[response]]", f"url = {_toml_str(url)}"]
        if method != "GET":
            lines.append(f"method = {_toml_str(method)}")
        if form:
            lines.append(f"form = {_toml_table(form)}")
        lines.append(f"status = {status}")
        if body:
            rel = _file_for(url, method, form)
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(body)
            lines.append(f"file = {_toml_str(rel)}")
        lines.append(f"headers = {_toml_table(h)}")
        blocks.append("\n".join(lines) + "\n")

    count = 0
    try:
        for src in sources:
            try:
                fr = fetcher.fetch(src.url, method=src.method, form=src.form, headers=src.headers,
                                   timeout=src.timeout, retries=src.retries, max_bytes=src.max_bytes,
                                   ca_bundle=src.ca_bundle)
            except FetchError as e:
                if e.status:
                    save(src.url, src.method, src.form, e.status, {}, b"")
                    count += 1
                continue
            hdrs = {k.lower(): v for k, v in fr.headers.items()}
            save(src.url, src.method, src.form, fr.status, hdrs, fr.body)
            count += 1
            ex = get_extractor(src.kind)
            if not ex.has_detail:
                continue
            text, enc, _ = to_text(fr.body, hdrs.get("content-type"))
            try:
                entries = ex.extract(Page(url=src.url, text=text, encoding=enc), src)
            except ParseError:
                continue
            for e in entries:
                if ex.wants_detail(e, src) and urlsplit(e.url).hostname == src.host:
                    try:
                        d = fetcher.fetch(e.url, headers=src.headers, timeout=src.timeout, max_bytes=src.max_bytes,
                                          ca_bundle=src.ca_bundle)
                    except FetchError:
                        continue
                    save(e.url, "GET", {}, d.status, {k.lower(): v for k, v in d.headers.items()}, d.body)
                    count += 1
    finally:
        if own:
            fetcher.close()
    (out / "manifest.toml").write_text("\n".join(blocks), encoding="utf-8")
    return count

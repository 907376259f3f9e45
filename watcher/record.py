"""`watcher record`: save live responses (list pages and the detail pages watcher would read) as a replay snapshot
in the manifest format of `--replay`."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from watcher.config import Source
from watcher.errors import FetchError, ParseError
from watcher.extract import get as get_extractor

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


def record_sources(runner, sources: list[Source], out: Path) -> int:
    """Fetch each source (and the detail pages its extractor reads) with the runner's fetcher and write
    out/manifest.toml plus bodies. The list -> detail steps are the poll's own (pipeline)."""
    from watcher.pipeline import extract_entries, fetch_list, wants_detail

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
    for src in sources:
        try:
            fr = fetch_list(runner, src)
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
        try:
            entries = extract_entries(src, fr)
        except ParseError:
            continue
        for e in entries:
            if wants_detail(ex, src, e) and urlsplit(e.url).hostname == src.host:
                try:
                    d = runner.fetcher.fetch(e.url, headers=src.headers, timeout=src.timeout,
                                             max_bytes=src.max_bytes, ca_bundle=src.ca_bundle)
                except FetchError:
                    continue
                save(e.url, "GET", {}, d.status, {k.lower(): v for k, v in d.headers.items()}, d.body)
                count += 1
    (out / "manifest.toml").write_text("\n".join(blocks), encoding="utf-8")
    return count

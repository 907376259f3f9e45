"""The drafts themselves: with `archive = true`, the attachments of new entries (征求意见稿, 编制说明, …) are
downloaded once and kept, content-addressed, under the state directory (`archive/ab/abcdef….pdf`).

TC260 takes a draft's files down after its comment window; liaison offices need them later. Downloads go through
the poll's fetcher (one request at a time per site, its size cap raised to ARCHIVE_MAX_BYTES), only from the
source's own site, at most MAX_PER_POLL files a poll. A download that fails never holds up the entry's event: it
is recorded as pending and tried again on later polls (MAX_ATTEMPTS in all). Each file's SHA-256 and path are
recorded on the entry (`extra.archived`), in its events (`archived`) and in the `archive` table
(`watcher archive` lists it).
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert, select, update

from watcher.errors import FetchError

log = logging.getLogger("watcher.archive")

ARCHIVE_MAX_BYTES = 50_000_000
MAX_PER_POLL = 10
MAX_ATTEMPTS = 5
_EXT_RE = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


def _extension(name: str | None, url: str, content_type: str | None) -> str:
    for candidate in (name or "", urlsplit(url).path):
        ext = PurePosixPath(candidate).suffix.lower()
        if _EXT_RE.match(ext):
            return ext
    guessed = mimetypes.guess_extension((content_type or "").split(";")[0].strip()) if content_type else None
    return guessed if guessed and _EXT_RE.match(guessed) else ".bin"


def store_file(root: Path, body: bytes, ext: str) -> tuple[str, str]:
    """Write a body content-addressed under root (atomically); returns (sha256, path relative to root)."""
    sha = hashlib.sha256(body).hexdigest()
    rel = f"{sha[:2]}/{sha}{ext}"
    target = root / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return sha, rel


def _fetch_one(ctx, source, root: Path, url: str, name: str | None) -> dict[str, Any]:
    from watcher.extract import get as get_extractor
    from watcher.pipeline import on_source_sites
    if not url.startswith(("http://", "https://")) or not on_source_sites(source, get_extractor(source.kind), url):
        return {"ok": False, "final": True, "error": f"not on {source.host}: not downloaded"}
    try:
        fr = ctx.fetcher.fetch(url, headers=source.headers, timeout=max(source.timeout, 60.0), retries=source.retries,
                               max_bytes=ARCHIVE_MAX_BYTES, ca_bundle=source.ca_bundle)
    except FetchError as e:
        return {"ok": False, "final": e.status in (404, 410), "error": str(e)}
    ctype = fr.headers.get("content-type")
    if not fr.body:
        return {"ok": False, "final": False, "error": "empty response"}
    try:
        sha, rel = store_file(root, fr.body, _extension(name, url, ctype))
    except OSError as e:
        return {"ok": False, "final": False, "error": f"cannot store: {e}"}
    return {"ok": True, "sha256": sha, "path": rel, "size": len(fr.body), "content_type": (ctype or "")[:128]}


def download_attachments(ctx, source, p) -> None:
    """During a poll's first half: download the attachments of its new entries, and those still pending from
    earlier polls; results go to `p.archive` for the commit to record."""
    from watcher.store import ArchivedFile
    root: Path | None = getattr(ctx, "archive_dir", None)
    if root is None:
        return
    todo: list[tuple[str, str, str | None, Any]] = []          # (entry key, url, name, Entry or None)
    for r in p.rows:
        e = r.entry
        if e.key in p.previous:
            continue
        for a in e.attachments or []:
            if isinstance(a, dict) and a.get("url"):
                todo.append((e.key, a["url"], a.get("name"), e))
    with ctx.store.read() as conn:
        for row in conn.execute(select(ArchivedFile.entry_key, ArchivedFile.url, ArchivedFile.name)
                                .where(ArchivedFile.source_id == source.id, ArchivedFile.status == "pending")
                                .order_by(ArchivedFile.id).limit(MAX_PER_POLL)):
            todo.append((row.entry_key, row.url, row.name, None))
    results = []
    seen = set()
    for i, (key, url, name, entry) in enumerate(todo):
        if (key, url) in seen:
            continue
        seen.add((key, url))
        if i >= MAX_PER_POLL:
            results.append({"entry_key": key, "url": url, "name": name, "ok": False, "final": False,
                            "error": None, "tried": False})
            continue
        res = {"entry_key": key, "url": url, "name": name, "tried": True, **_fetch_one(ctx, source, root, url, name)}
        results.append(res)
        if res["ok"]:
            log.info("archived", extra={"fields": {"source": source.id, "url": url, "sha256": res["sha256"],
                                                   "bytes": res["size"]}})
            if entry is not None:
                entry.extra.setdefault("archived", []).append(
                    {"name": name, "url": url, "sha256": res["sha256"], "path": res["path"], "size": res["size"]})
        elif res.get("error"):
            log.warning("attachment %s of %s: %s (kept the entry; tried again on a later poll)", url, source.id,
                        res["error"])
    p.archive = results


def record(w, source, results: list[dict[str, Any]], now: datetime) -> None:
    """During the commit: the archive table, and `extra.archived` of entries whose file came on a later poll."""
    from watcher.logs import mask
    from watcher.store import ArchivedFile, EntryRow
    for res in results:
        row = w.execute(select(ArchivedFile).where(ArchivedFile.source_id == source.id,
                                                   ArchivedFile.entry_key == res["entry_key"],
                                                   ArchivedFile.url == res["url"])).first()
        attempts = (row.attempts if row is not None else 0) + (1 if res.get("tried") else 0)
        if res["ok"]:
            values = {"status": "kept", "sha256": res["sha256"], "path": res["path"], "size": res["size"],
                      "content_type": res.get("content_type"), "fetched_at": now, "last_error": None}
        else:
            final = res.get("final") or attempts >= MAX_ATTEMPTS
            values = {"status": "failed" if final else "pending",
                      "last_error": mask(res["error"])[:500] if res.get("error") else None}
        values["attempts"] = attempts
        if row is None:
            w.execute(insert(ArchivedFile).values(source_id=source.id, entry_key=res["entry_key"], url=res["url"],
                                                  name=res.get("name"), created_at=now, **values))
        else:
            w.execute(update(ArchivedFile).where(ArchivedFile.id == row.id).values(**values))
        if res["ok"]:
            ent = w.execute(select(EntryRow.id, EntryRow.fields).where(
                EntryRow.source_id == source.id, EntryRow.key == res["entry_key"])).first()
            if ent is not None:
                fields = dict(ent.fields or {})
                extra = dict(fields.get("extra") or {})
                kept = [a for a in extra.get("archived", []) if a.get("url") != res["url"]]
                kept.append({"name": res.get("name"), "url": res["url"], "sha256": res["sha256"],
                             "path": res["path"], "size": res["size"]})
                extra["archived"] = kept
                fields["extra"] = extra
                w.execute(update(EntryRow).where(EntryRow.id == ent.id).values(fields=fields))

"""Liveness: the daemon writes a heartbeat file in state/; `watcher healthcheck` checks it is fresh and the DB opens."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

HEARTBEAT = "heartbeat.json"


def write_heartbeat(state_dir: Path, **info) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (HEARTBEAT + ".tmp")
    tmp.write_text(json.dumps({"ts": time.time(), "pid": os.getpid(), **info}), encoding="utf-8")
    os.replace(tmp, state_dir / HEARTBEAT)


def remove_heartbeat(state_dir: Path) -> None:
    """Make `watcher healthcheck` fail now (unlinking needs no free space)."""
    try:
        (state_dir / HEARTBEAT).unlink()
    except OSError:
        pass


def heartbeat_age(state_dir: Path) -> float | None:
    try:
        data = json.loads((state_dir / HEARTBEAT).read_text(encoding="utf-8"))
        return time.time() - float(data["ts"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def healthcheck(state_dir: Path, db_url: str, max_age: float = 180.0) -> tuple[bool, str]:
    age = heartbeat_age(state_dir)
    if age is None:
        return False, f"unhealthy: no heartbeat in {state_dir} (is `watcher run` running?)"
    if age > max_age:
        return False, f"unhealthy: heartbeat is {age:.0f}s old (limit {max_age:.0f}s)"
    from watcher.errors import StoreError
    from watcher.store import Store
    try:
        store = Store(db_url, create=False)
        store.check()
        store.dispose()
    except StoreError as e:
        return False, f"unhealthy: {e}"
    except Exception as e:  # any driver error means the state does not open
        from watcher.logs import mask
        return False, mask(f"unhealthy: state does not open: {e.__class__.__name__}: {e}")
    return True, f"healthy: heartbeat {age:.0f}s old"

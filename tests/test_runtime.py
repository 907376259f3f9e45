"""Process-level properties: glibc allocator settings applied by the watcher command (watcher/runtime.py), and
the modules a polling process keeps out of its memory. Checked in real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import ctypes, sys, threading
from watcher.runtime import tune_allocator
applied = tune_allocator() if sys.argv[1] == "tune" else []
def work():
    keep = [bytearray(4096) for _ in range(300)]   # malloc from this thread
    del keep
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()                   # one "Arena N:" block per arena, on stderr
print(",".join(applied))
"""


def arenas(mode: str, **env: str) -> tuple[int, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env={**e, **env},
                       timeout=60, check=True)
    return sum(1 for line in r.stderr.splitlines() if line.startswith("Arena ")), r.stdout.strip()


def test_threads_share_one_malloc_arena():
    untuned, _ = arenas("plain")
    tuned, applied = arenas("tune")
    if not applied:
        pytest.skip("not glibc")
    assert applied == "MALLOC_ARENA_MAX,MALLOC_TRIM_THRESHOLD_"
    assert untuned > 1          # glibc's default: threads get arenas of their own
    assert tuned == 1


def test_operator_environment_wins():
    n, applied = arenas("tune", MALLOC_ARENA_MAX="2")
    if not applied:
        pytest.skip("not glibc")
    assert applied == "MALLOC_TRIM_THRESHOLD_" and n == 2


POLL_SCRIPT = r"""
import contextlib, io, json, sys
from pathlib import Path
import watcher, watcher.cli
data = Path(watcher.__file__).parent / "demo_data"
for snap in ("t0", "t1"):
    with contextlib.redirect_stdout(io.StringIO()):
        code = watcher.cli.main(["--config", str(data / "sources.toml"), "--state", sys.argv[1], "--log-level",
                                 "warning", "once", "--replay", str(data / "replay" / snap), "--json"])
    assert code == 0, code
print(json.dumps(sorted(m for m in ("sqlalchemy.orm", "apprise", "numpy", "pydantic", "trio", "anyio")
                        if m in sys.modules)))
"""


def test_polling_keeps_heavy_modules_out_of_the_process(tmp_path):
    """The memory figures in bench/README.md rely on these staying out: the ORM (6 MB; the store is Core only),
    apprise until something is sent, deepdiff's numpy/pydantic, httpcore's async backends."""
    r = subprocess.run([sys.executable, "-c", POLL_SCRIPT, str(tmp_path / "state")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from hypothesis import settings

from watcher import cli

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEMO = ROOT / "watcher" / "demo_data"
REPLAY = DEMO / "replay"
SNAPSHOTS = ["t0", "t1", "t2", "t3", "t4"]
PG_URL = os.environ.get("WATCHER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=100)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def httpserver_listen_address():
    return ("127.0.0.1", 0)


def pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        import psycopg  # noqa: F401  (the driver must be installed too)
    except (OSError, ImportError):
        return False
    return True


def reset_pg() -> None:
    from sqlalchemy import create_engine, text
    eng = create_engine(PG_URL)
    with eng.begin() as c:
        c.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if not pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    reset_pg()
    return PG_URL


class Runner:
    """Runs the real CLI in-process and returns (exit code, stdout, stderr)."""

    def __init__(self, capsys, config: Path, state: Path, db: str | None = None):
        self.capsys, self.config, self.state, self.db = capsys, config, state, db

    def __call__(self, *args: str) -> tuple[int, str, str]:
        argv = ["--config", str(self.config), "--state", str(self.state)]
        if self.db:
            argv += ["--db", self.db]
        self.capsys.readouterr()
        code = cli.main(argv + list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def events(self, *args: str) -> list[dict]:
        code, out, err = self("once", "--json", *args)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def runner(capsys, tmp_path):
    return Runner(capsys, DEMO / "sources.toml", tmp_path / "state")


def write_config(tmp_path: Path, text: str, name: str = "sources.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p

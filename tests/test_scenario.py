"""The public five-snapshot scenario through `watcher once --replay --json`: exactly the expected events."""

from __future__ import annotations

import json

import pytest

from conftest import FIXTURES, REPLAY, SNAPSHOTS, Runner, DEMO

TRANSITIONS = {"t0": "t0.baseline.json", "t1": "t0-t1.json", "t2": "t1-t2.json", "t3": "t2-t3.json",
               "t4": "t3-t4.json"}
ENTRY_KINDS = {"new", "changed", "stage_changed"}


def _ident(ev: dict) -> tuple:
    if ev["kind"] in ENTRY_KINDS:
        return ev["kind"], ev["source"], ev["url"]
    return ev["kind"], ev["source"]


def _check_fields(expected: dict, got: dict) -> None:
    for key in ("title", "published", "deadline", "plan_no", "std_no", "http_status", "retry_after_s"):
        if key in expected:
            assert got.get(key) == expected[key], (key, expected, got)
    if "std_nos" in expected:
        assert set(expected["std_nos"]) <= set(got.get("std_nos") or []), (expected, got)
    if expected["kind"] == "changed":
        change = got["changes"][expected["field"]]
        assert (change["old"], change["new"]) == (expected["previous"], expected["new"])
    if expected["kind"] == "stage_changed":
        assert (got["previous_stage"], got["stage"]) == (expected["previous"], expected["new"])
        assert set(expected["evidence"]) <= set(got["evidence"])
    elif "stage" in expected:
        assert got["stage"] == expected["stage"]


def _matches_pattern(pattern: dict, ev: dict) -> bool:
    for key in ("kind", "source", "url"):
        if key in pattern and pattern[key] != "*" and ev.get(key) != pattern[key]:
            return False
    return True


def run_scenario(runner: Runner) -> dict[str, list[dict]]:
    return {snap: runner.events("--replay", str(REPLAY / snap)) for snap in SNAPSHOTS}


def check_scenario(results: dict[str, list[dict]]) -> None:
    for snap in SNAPSHOTS:
        spec = json.loads((FIXTURES / "expected" / TRANSITIONS[snap]).read_text(encoding="utf-8"))
        got = results[snap]
        idents = [_ident(e) for e in got]
        assert len(idents) == len(set(idents)), f"{snap}: duplicate events {idents}"
        by_ident = {_ident(e): e for e in got}
        for exp in spec["events"]:
            key = _ident(exp)
            assert key in by_ident, f"{snap}: missing {key}; got {idents}"
            _check_fields(exp, by_ident[key])
        if spec.get("exhaustive"):
            expected_keys = {_ident(e) for e in spec["events"]}
            extra = [i for i in idents if i not in expected_keys]
            assert not extra, f"{snap}: unexpected events {extra}"
        for trap in spec.get("must_not", []):
            for ev in got:
                if _matches_pattern(trap, ev):
                    assert _ident(ev) in {_ident(e) for e in spec["events"]}, f"{snap}: trap {trap} hit by {ev}"
        for ev in got:
            assert ev["kind"] != "removed"
            for field in ("id", "kind", "source", "url", "title", "published", "deadline", "plan_no", "std_no",
                          "stage", "previous_stage", "changes", "detected_at"):
                assert field in ev


def test_scenario_sqlite(runner):
    check_scenario(run_scenario(runner))


def test_scenario_postgresql(capsys, tmp_path):
    from conftest import PG_URL, pg_available, reset_pg
    if not pg_available():
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    reset_pg()
    check_scenario(run_scenario(Runner(capsys, DEMO / "sources.toml", tmp_path / "state", PG_URL)))


def test_rerunning_a_snapshot_reports_nothing_new(runner):
    run_scenario(runner)
    assert runner.events("--replay", str(REPLAY / "t4")) == []


def test_t3_failure_keeps_last_good_state_and_status_shows_it(runner):
    for snap in ("t0", "t1", "t2", "t3"):
        runner.events("--replay", str(REPLAY / snap))
    code, out, _ = runner("status", "--json")
    assert code == 0
    status = {s["source"]: s for s in json.loads(out)["sources"]}
    assert status["tc260-drafts"]["health"] == "failing"
    assert status["tc260-drafts"]["retry_not_before"] == "2026-03-10T02:02:00+00:00"   # Retry-After: 120
    assert "503" in status["tc260-drafts"]["last_error"]
    assert status["cac-wxan"]["health"] == "broken"
    assert status["cac-wxan"]["entries"] == 21          # 20 at t0 + 1 new at t1; nothing removed
    assert status["samr-plans-comment"]["health"] == "ok"


def test_stage_timeline_links_three_sources(runner):
    run_scenario(runner)
    code, out, _ = runner("standard", "GB/T 47020—2026", "--json")
    assert code == 0
    rec = json.loads(out)
    assert rec["plan_no"] == "20249901-T-469" and rec["std_no"] == "GB/T 47020-2026"
    assert rec["stage"] == "published" and rec["committee"] == "TC260"
    stages = [t["stage"] for t in rec["timeline"] if t["stage"]]
    assert stages == ["comment", "published"]
    sources = {t["source"] for t in rec["timeline"]}
    assert {"samr-plans-comment", "samr-gb-latest", "tc260-notices"} <= sources
    code, out, _ = runner("standards", "--json", "--stage", "comment", "--committee", "TC260")
    listed = [json.loads(line) for line in out.splitlines()]
    assert listed and all(r["stage"] == "comment" and r["committee"] == "TC260" for r in listed)
    assert "20262852-T-469" in {r["plan_no"] for r in listed}


def test_events_command_filters(runner):
    run_scenario(runner)
    code, out, _ = runner("events", "--json", "--source", "cac-wxan")
    evs = [json.loads(line) for line in out.splitlines()]
    assert {e["source"] for e in evs} == {"cac-wxan"}
    assert [e["kind"] for e in evs] == ["new", "source_recovered", "source_broken", "new"]
    code, out, _ = runner("events", "--json", "--since", "2026-03-15")
    assert {json.loads(line)["detected_at"][:10] for line in out.splitlines()} == {"2026-03-20"}

"""Issue 13's replay scenario (tests/fixtures/coverage_replay): announcements, TC260's projects, a burst spilling
onto page 2, and the archived drafts. Exact events, and none beyond them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from conftest import FIXTURES, Runner

SCENARIO = FIXTURES / "coverage_replay"


def _kinds(events: list[dict]) -> list[tuple]:
    out = []
    for e in events:
        key = e.get("std_no") or e.get("plan_no") or e["url"].rsplit("/", 1)[-1].split("=")[-1]
        out.append((e["kind"], e["source"], key, e.get("previous_stage"), e.get("stage") if e["kind"] == "stage_changed" else None))
    return sorted(out, key=str)


def run(tmp_path, capsys, db=None) -> dict[str, list[dict]]:
    r = Runner(capsys, SCENARIO / "sources.toml", tmp_path / "state", db=db)
    return {snap: r.events("--replay", str(SCENARIO / snap)) for snap in ("c0", "c1", "c2", "c3")}, r


def test_coverage_scenario_gives_exactly_the_expected_events(tmp_path, capsys):
    got, run_ = run(tmp_path, capsys)
    assert got["c0"] == []
    burst = [e for e in got["c1"] if e["source"] == "tc260-drafts"]
    assert [e["kind"] for e in burst] == ["new"] * 15
    assert sorted(int(e["url"].rsplit("/", 1)[-1], 16) for e in burst) == list(range(101, 116))   # each once
    assert _kinds([e for e in got["c1"] if e["source"] != "tc260-drafts"]) == [
        ("new", "tc260-projects", "20269902-T-469", None, None)]
    project = next(e for e in got["c1"] if e["source"] == "tc260-projects")
    assert project["stage"] == "approved" and project["committee"] == "TC260"
    assert project["title_en"] == "Cybersecurity technology—Security requirements for example AI agents"
    assert _kinds(got["c2"]) == sorted([
        ("stage_changed", "tc260-projects", "20269902-T-469", "approved", "comment"),
        ("new", "samr-notices", "A1B2C3D4E5F60718293A4B5C6D7E2609", None, None),
        ("new", "samr-notices", "A1B2C3D4E5F60718293A4B5C6D7E2608", None, None),
        ("stage_changed", "samr-notices", "GB/T 99910-2026", "drafting", "published"),
        ("in_force_soon", "samr-notices", "GB/T 99910-2026", None, None),
    ], key=str)
    by_kind = {(e["kind"], e["source"], e.get("std_no")): e for e in got["c2"]}
    published = by_kind[("stage_changed", "samr-notices", "GB/T 99910-2026")]
    assert published["plan_no"] == "20269901-T-469"                   # the announcement's standard is plan P1's result
    notice = next(e for e in got["c2"] if e["kind"] == "new" and e["url"].endswith("2609"))
    assert notice["notice_kind"] == "gb" and notice["notice_no"] == "2026年第9号"
    assert [(s["std_no"], s["replaces"], s["act_date"]) for s in notice["standards"]] == [
        ("GB/T 99910-2026", ["GB/T 99910-2018"], "2026-03-10"), ("GB/T 99911-2026", [], "2026-09-01")]
    sample = next(e for e in got["c2"] if e["kind"] == "new" and e["url"].endswith("2608"))
    assert sample["notice_kind"] == "sample" and not sample.get("standards")     # told apart, not a standard
    soon = by_kind[("in_force_soon", "samr-notices", "GB/T 99910-2026")]
    assert (soon["act_date"], soon["days_left"], soon["reminder_days"]) == ("2026-03-10", 5, 7)
    assert _kinds(got["c3"]) == sorted([
        ("stage_changed", "samr-notices", "GB/T 99910-2026", "published", "in_force"),
        ("stage_changed", "samr-notices", "GB/T 99910-2018", "in_force", "superseded"),
    ], key=str)
    old = next(e for e in got["c3"] if e.get("std_no") == "GB/T 99910-2018")
    assert old["replaced_by"] == ["GB/T 99910-2026"]
    # nothing more happens when nothing changes
    assert run_.events("--replay", str(SCENARIO / "c3")) == []


def test_archived_drafts_are_kept_once_and_a_failed_download_is_retried(tmp_path, capsys):
    got, run_ = run(tmp_path, capsys)
    code, out, _ = run_("archive", "--json")
    files = [json.loads(line) for line in out.splitlines()]
    assert len(files) == 6 and {f["status"] for f in files} == {"kept"}
    attempts = {f["name"].split("第")[1].split("部分")[0]: f["attempts"] for f in files}
    assert attempts == {"101": 1, "102": 1, "103": 1, "104": 1, "105": 1, "106": 2}     # 106 failed once (503)
    for f in files:                                         # still there after the site removed them (c3)
        body = Path(f["path"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == f["sha256"] and Path(f["path"]).name.startswith(f["sha256"])
    burst = {int(e["url"].rsplit("/", 1)[-1], 16): e for e in got["c1"] if e["source"] == "tc260-drafts"}
    assert [a["sha256"] for a in burst[101]["archived"]] == [files[0]["sha256"]]         # the event says where it is
    assert not burst[106].get("archived")                  # its event was not held up by the failing download
    assert not burst[110].get("archived")                  # (no attachment)

"""The watch list, end to end: the w0..w4 replay scenario (tests/fixtures/watch) through `watcher once --replay
--json` with exactly the expected events, numbers in any spelling, `watched` / `standards` subscriptions with the
English title in the message, `watcher watch`, `watcher standard` and the demo's watched standards."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from werkzeug import Response

from conftest import FIXTURES, Runner, write_config
from watcher.config import load_config
from watcher.errors import ConfigError

WATCH = FIXTURES / "watch"
SNAPS = ["w0", "w1", "w2", "w3", "w4"]
EXPECTED = {"w0": "w0.baseline.json", "w1": "w0-w1.json", "w2": "w1-w2.json", "w3": "w2-w3.json", "w4": "w3-w4.json"}
CONFIG = WATCH / "sources.toml"
E_22080 = "Cybersecurity technology—Information security management systems—Requirements"


def spec(snap: str) -> dict:
    return json.loads((WATCH / "expected" / EXPECTED[snap]).read_text(encoding="utf-8"))


def run_scenario(run: Runner, upto: str = "w4") -> dict[str, list[dict]]:
    out = {}
    for snap in SNAPS:
        out[snap] = run.events("--replay", str(WATCH / snap))
        if snap == upto:
            break
    return out


def _ident(ev: dict) -> tuple:
    return ev["kind"], ev["source"], ev.get("std_no") or ev.get("plan_no"), ev.get("stage")


def _matches(pattern: dict, ev: dict) -> bool:
    return all(ev.get(k) == v for k, v in pattern.items() if k != "why")


def check_transition(snap: str, got: list[dict]) -> None:
    """Exactly the events of expected/<transition>.json: each once, with every field it lists, and nothing else."""
    want = spec(snap)
    idents = [_ident(e) for e in got]
    assert len(idents) == len(set(idents)), f"{snap}: an event reported twice: {idents}"
    by_ident = {_ident(e): e for e in got}
    for exp in want["events"]:
        key = _ident(exp)
        assert key in by_ident, f"{snap}: missing {key}; got {idents}"
        ev = by_ident[key]
        for k, v in exp.items():
            if k != "why":
                assert ev.get(k) == v, (snap, key, k, v, ev.get(k))
    if want["exhaustive"]:
        extra = sorted(set(idents) - {_ident(e) for e in want["events"]}, key=str)
        assert not extra, f"{snap}: unexpected events {extra}"
    for trap in want["must_not"]:
        hits = [e for e in got if _matches(trap, e)]
        assert not hits, f"{snap}: trap {trap} hit by {hits}"
    for ev in got:                       # the public contract holds for every event
        for field in ("id", "kind", "source", "url", "title", "published", "deadline", "plan_no", "std_no", "stage",
                      "previous_stage", "changes", "detected_at"):
            assert field in ev


def _marks(snap: str) -> list:
    pending = spec(snap).get("pending")
    return [pytest.mark.xfail(strict=True, reason=pending)] if pending else []


# --- the scenario -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("snap", [pytest.param(s, marks=_marks(s), id=EXPECTED[s][:-5]) for s in SNAPS])
def test_watch_scenario_transition(capsys, tmp_path, snap):
    got = run_scenario(Runner(capsys, CONFIG, tmp_path / "state"), upto=snap)
    check_transition(snap, got[snap])


def test_watch_scenario_on_each_database(capsys, tmp_path, db_url):
    """The whole scenario on SQLite and PostgreSQL: every transition that needs nothing pending, exactly."""
    got = run_scenario(Runner(capsys, CONFIG, tmp_path / "state", db_url))
    for snap in SNAPS:
        if not spec(snap).get("pending"):
            check_transition(snap, got[snap])


def test_rerunning_the_last_snapshot_reports_nothing(capsys, tmp_path):
    run = Runner(capsys, CONFIG, tmp_path / "state")
    run_scenario(run)
    assert run.events("--replay", str(WATCH / "w4")) == []


def test_an_old_edition_read_after_its_successor_is_superseded_from_the_start(capsys, tmp_path):
    """A lookup that lists the edition in force before the edition it replaced, while the old row still says 现行
    (the site lags): the old edition is superseded at the baseline, not by surprise on a later poll."""
    s0, s1 = tmp_path / "s0", tmp_path / "s1"
    shutil.copytree(WATCH / "w4", s0)
    for name in ("gbQueryPage__GBT22080.json",):
        lagging = (WATCH / "w4/std.samr.gov.cn/gb/search" / name).read_text(encoding="utf-8")
        (s0 / "std.samr.gov.cn/gb/search" / name).write_text(lagging.replace('"被代替"', '"现行"'), encoding="utf-8")
    old_page = "std.samr.gov.cn/gb/search/gbDetailed/3F1E0C4A2B8D5E6FE05397BE0A0A2208.html"
    shutil.copy(WATCH / "w3" / old_page, s0 / old_page)                  # no 当前标准 panel yet
    shutil.copytree(s0, s1)
    body = s1 / "std.samr.gov.cn/gb/search/gbQueryPage__GBT22080.json"
    body.write_text(body.read_text(encoding="utf-8").replace('"pageNumber":1', '"pageNumber": 1'), encoding="utf-8")
    run = Runner(capsys, CONFIG, tmp_path / "state")
    assert run.events("--replay", str(s0)) == []
    assert run.events("--replay", str(s1)) == []                          # a new body, the same facts
    code, out, _ = run("standard", "GB/T 22080-2016", "--json")
    rec = json.loads(out)
    assert rec["stage"] == "superseded" and rec["replaced_by"] == ["GB/T 22080-2025"]


def test_the_page_and_the_date_agree_one_move_each(capsys, tmp_path):
    """The site shows the new edition in force when watcher first looks after its date (no time-driven move
    happened before): one stage_changed for the new edition (carrying its row's status edit), one for the edition
    it supersedes, and the status edit is not attached to the wrong one."""
    run = Runner(capsys, CONFIG, tmp_path / "state")
    run.events("--replay", str(WATCH / "w0"))
    run.events("--replay", str(WATCH / "w1"))
    got = run.events("--replay", str(WATCH / "w4"))
    moves = {(e["std_no"], e["previous_stage"], e["stage"]): e for e in got if e["kind"] == "stage_changed"}
    assert ("GB/T 22080-2025", "published", "in_force") in moves
    assert ("GB/T 22080-2016", "in_force", "superseded") in moves
    assert moves[("GB/T 22080-2016", "in_force", "superseded")]["changes"] == {}
    assert moves[("GB/T 22080-2016", "in_force", "superseded")]["replaced_by"] == ["GB/T 22080-2025"]
    kinds = [(e["kind"], e.get("std_no") or e.get("plan_no")) for e in got]
    assert kinds.count(("stage_changed", "GB/T 22080-2025")) == 1
    assert kinds.count(("stage_changed", "GB/T 22080-2016")) == 1


# --- numbers in any spelling -------------------------------------------------------------------------------------

CANONICAL = {"GB/T 22080-2016": "GB/T 22080", "GB/T 39204": "GB/T 39204", "GB/T 7714-2005": "GB/T 7714",
             "20230259-T-469": "20230259-T-469"}
SPELLINGS = {
    "GB/T 22080-2016": ["ＧＢ／Ｔ　２２０８０—２０１６", "GB/T 22080—2016", "GBT22080-2016", "GBT 22080-2016",
                        "GB/T22080-2016", "gb/t 22080-2016", "gbt22080－2016"],
    "GB/T 39204": ["ＧＢ／Ｔ３９２０４", "GBT39204", "gb/t39204", "GB/T39204", "gbt 39204"],
    "GB/T 7714-2005": ["GB/T 7714—2005", "ＧＢ/Ｔ ７７１４-２００５", "gbt7714-2005", "GBT 7714–2005"],
    "20230259-T-469": ["２０２３０２５９－Ｔ－４６９", "20230259—T—469", "20230259-t-469", "20230259 - T - 469"],
}


def _watch_config(tmp_path, items: list[str], name: str = "sources.toml"):
    listed = ", ".join(json.dumps(i, ensure_ascii=False) for i in items)
    return load_config(write_config(tmp_path, f"[watch]\nstandards = [{listed}]\n", name))


def _lookups(config) -> dict[str, tuple]:
    return {sid: (s.url, s.kind, s.method, s.interval, s.watch) for sid, s in config.sources.items() if s.watch}


def test_numbers_in_any_spelling_map_to_the_same_watch_sources(tmp_path):
    canonical = _watch_config(tmp_path, list(CANONICAL), "canonical.toml")
    assert set(canonical.watch_items) == set(CANONICAL.values())
    assert set(_lookups(canonical)) == {f"watch:{f}" for f in CANONICAL.values()}
    for item, spellings in SPELLINGS.items():
        family = CANONICAL[item]
        want = _lookups(canonical)[f"watch:{family}"]
        for i, spelled in enumerate(spellings):
            one = _watch_config(tmp_path, [spelled], f"spelled{i}.toml")
            assert _lookups(one) == {f"watch:{family}": want}, spelled
            assert one.watch_items == {family: spelled}                 # the item as written, for messages
            assert one.sources[f"watch:{family}"].watch_item == spelled
            # an event about any spelling of any edition (or of the plan) belongs to that item
            assert canonical.watched(spelled) == item, spelled
    # every spelling at once: one lookup per family, the first spelling kept
    everything = _watch_config(tmp_path, [s for ss in SPELLINGS.values() for s in ss], "all.toml")
    assert _lookups(everything) == _lookups(canonical)
    assert everything.watch_items == {CANONICAL[k]: v[0] for k, v in SPELLINGS.items()}
    assert canonical.watched("GB/T 22080-2025") == "GB/T 22080-2016"      # another edition of the family
    assert canonical.watched("GB/T 22080.1-2025", "GB/T 2208-2016") is None


def test_an_item_that_is_not_a_number_names_its_file_and_line(tmp_path):
    path = write_config(tmp_path, '[watch]\ninterval = "1d"\nstandards = ["GB/T 22080-2016", "ISO/IEC 27001"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path.name}:3: [watch] standards:") and "ISO/IEC 27001" in str(err.value)


# --- subscriptions and the English title in messages ---------------------------------------------------------------

def test_watched_and_standards_subscriptions_and_the_english_title(httpserver, tmp_path, capsys):
    received: dict[str, list[dict]] = {"watched": [], "family": [], "other": [], "zh": []}
    for path in received:
        httpserver.expect_request(f"/{path}", method="POST").respond_with_handler(
            lambda request, path=path: (received[path].append(request.get_json()), Response("ok"))[1])
    hook = f"json://127.0.0.1:{httpserver.port}"
    cfg = write_config(tmp_path, CONFIG.read_text(encoding="utf-8") + f"""
[settings]
delivery_retry_for = "400d"          # the replay's clock moves months between snapshots

[channel.watched]
url = "{hook}/watched"
language = "en"

[channel.family]
url = "{hook}/family"
language = "both"

[channel.other]
url = "{hook}/other"

[channel.zh]
url = "{hook}/zh"
language = "zh"

[[subscription]]
channels = ["watched"]
watched = true

[[subscription]]
channels = ["family", "zh"]
standards = ["gbt 22080"]            # a family in another spelling, from any source

[[subscription]]
channels = ["other"]
standards = ["GB/T 20988"]           # not on the watch list: events about it from any source
""")
    run = Runner(capsys, cfg, tmp_path / "state")
    events = [e for evs in run_scenario(run, upto="w3").values() for e in evs]
    by_id = {e["id"]: e for e in events}

    def ids(channel: str) -> set[int]:
        return {int(x) for m in received[channel] for x in re.findall(r"#(\d+)", m["message"])}

    assert ids("watched") == {e["id"] for e in events if e.get("watched")}
    assert {by_id[i]["source"] for i in ids("watched")} >= {"samr-gb-latest", "watch:GB/T 22080", "watch:GB/T 99931"}
    family = {e["id"] for e in events if any(n and n.startswith("GB/T 22080-") for n in
                                             [e.get("std_no"), *(e.get("replaces") or []), *(e.get("replaced_by") or [])])}
    assert ids("family") == ids("zh") == family
    assert {by_id[i]["source"] for i in ids("family")} == {"samr-gb-latest", "watch:GB/T 22080"}
    assert ids("other") == {e["id"] for e in events if e.get("std_no") == "GB/T 20988-2025"}
    assert len(ids("other")) == 3                        # new, in_force_soon, in force: no page about it says more
    assert not ids("other") & ids("watched")
    # the English title reaches en and both messages: the new edition, its reminder, its coming into force
    about_new = [m for m in received["watched"] if "网络安全技术 信息安全管理体系 要求" in m["title"]]
    assert len(about_new) == 3 and all(E_22080 in m["message"] for m in about_new)
    assert all("来源" not in m["message"] and "关注列表" not in m["message"] for m in received["watched"])  # en labels
    both = [m for m in received["family"] if "网络安全技术 信息安全管理体系 要求" in m["title"]]
    assert len(both) == 3 and all(E_22080 in m["message"] and "网络安全技术 信息安全管理体系 要求" in m["message"] for m in both)
    superseded = [m for m in received["family"] if "GB/T 22080-2016" in m["message"] and "Superseded" in m["message"]]
    assert superseded and "Information technology—Security techniques" in superseded[0]["message"]
    assert all("watch list" in m["message"] for m in received["watched"])
    withdrawn = [m for m in received["watched"] if "GB/T 99931-2013" in m["message"]]
    assert len(withdrawn) == 1 and "Withdrawn" in withdrawn[0]["message"] and "(fictitious)" in withdrawn[0]["message"]


# --- watcher watch and watcher standard ------------------------------------------------------------------------------

def test_watch_command_lists_the_watch_list(capsys, tmp_path, monkeypatch):
    run = Runner(capsys, CONFIG, tmp_path / "state")
    run_scenario(run, upto="w3")
    import watcher.store
    # `watcher watch` marks what moved in the 30 days before now: now is the day after the implementation date
    monkeypatch.setattr(watcher.store, "utcnow", lambda: datetime(2026, 1, 2, 1, 0, tzinfo=timezone.utc))
    code, out, err = run("watch", "--json")
    assert code == 0, err
    rows = {r["item"]: r for r in map(json.loads, out.splitlines())}
    assert list(rows) == ["GB/T 22080-2016", "GB/T 39204", "GB/T 99931-2013", "20230259-T-469"]
    isms = rows["GB/T 22080-2016"]
    assert (isms["edition"], isms["stage"], isms["act_date"], isms["title_en"]) == \
        ("GB/T 22080-2025", "in_force", "2026-01-01", E_22080)
    assert sorted(isms["editions"]) == ["GB/T 22080-2008", "GB/T 22080-2016", "GB/T 22080-2025"]
    assert isms["changed_30d"] is True and isms["last_checked"].startswith("2026-01-01T01:00")
    assert (rows["GB/T 39204"]["stage"], rows["GB/T 39204"]["changed_30d"]) == ("in_force", False)
    assert (rows["GB/T 99931-2013"]["stage"], rows["GB/T 99931-2013"]["changed_30d"]) == ("withdrawn", True)
    plan = rows["20230259-T-469"]
    assert (plan["edition"], plan["stage"], plan["changed_30d"]) == ("20230259-T-469", "review", False)
    assert plan["title_en"].startswith("Information security technology—Evaluation method")

    code, out, err = run("watch")
    assert code == 0
    lines = out.splitlines()
    first = next(line for line in lines if "GB/T 22080-2016" in line)
    assert first.startswith("!") and "GB/T 22080-2025" in first and "In force" in first and "2026-01-01" in first
    assert any(E_22080 in line and "网络安全技术 信息安全管理体系 要求" in line for line in lines)
    assert next(line for line in lines if "GB/T 39204 " in line).startswith(" ")       # nothing moved lately
    assert next(line for line in lines if "GB/T 99931-2013" in line).startswith("!")
    assert "last checked" in lines[0] and "2026-01-01T01:00" in first
    assert "30 days" in err


def test_standard_command_shows_every_edition_with_issue_and_in_force_dates(capsys, tmp_path):
    run = Runner(capsys, CONFIG, tmp_path / "state")
    run_scenario(run, upto="w3")
    code, out, err = run("standard", "GB/T 22080", "--json")
    assert code == 0, err
    rec = json.loads(out)
    editions = {e["std_no"]: e for e in [rec, *rec["editions"]]}
    assert set(editions) == {"GB/T 22080-2008", "GB/T 22080-2016", "GB/T 22080-2025"}
    new, old, oldest = editions["GB/T 22080-2025"], editions["GB/T 22080-2016"], editions["GB/T 22080-2008"]
    assert (new["stage"], new["issue_date"], new["act_date"], new["replaces"]) == \
        ("in_force", "2025-06-30", "2026-01-01", ["GB/T 22080-2016"])
    assert new["plan_no"] == "20229941-T-469" and new["title_en"] == E_22080
    assert (old["stage"], old["issue_date"], old["act_date"], old["replaces"], old["replaced_by"]) == \
        ("superseded", "2016-08-29", "2017-03-01", ["GB/T 22080-2008"], ["GB/T 22080-2025"])
    assert (oldest["stage"], oldest["replaced_by"]) == ("withdrawn", ["GB/T 22080-2016"])
    # timelines carry the dates the pages give (issue, implementation, 废止), not when watcher noticed
    assert [(t["stage"], t["date"]) for t in new["timeline"]] == [("published", "2025-06-30"), ("in_force", "2026-01-01")]
    assert [(t["stage"], t["date"]) for t in old["timeline"]] == [("in_force", "2017-03-01"), ("superseded", "2026-01-01")]
    assert [(t["stage"], t["date"]) for t in oldest["timeline"]] == [("withdrawn", "2017-03-01")]

    code, out, _ = run("standard", "gbt22080")
    assert code == 0
    for line in ("GB/T 22080-2008", "GB/T 22080-2016", "GB/T 22080-2025"):
        assert line in out
    row = next(line for line in out.splitlines() if line.lstrip("* ").startswith("GB/T 22080-2016"))
    assert "issued 2016-08-29" in row and "in force 2017-03-01" in row and "replaced by GB/T 22080-2025" in row

    code, out, _ = run("standard", "GB/T 99931-2013", "--json")
    rec = json.loads(out)
    assert [(t["stage"], t["date"]) for t in rec["timeline"]] == [("in_force", "2014-02-01"), ("withdrawn", "2025-12-01")]


def test_standards_command_lists_english_titles_and_relations(capsys, tmp_path):
    run = Runner(capsys, CONFIG, tmp_path / "state")
    run_scenario(run, upto="w3")
    code, out, _ = run("standards", "--json")
    rows = {r["std_no"] or r["plan_no"]: r for r in map(json.loads, out.splitlines())}
    assert rows["GB/T 22080-2025"]["title_en"] == E_22080
    assert rows["GB/T 22080-2016"]["replaced_by"] == ["GB/T 22080-2025"]
    assert rows["20230259-T-469"]["stage"] == "review"


# --- the demo ---------------------------------------------------------------------------------------------------------

def test_the_demo_tells_the_story_of_its_watched_standards(tmp_path):
    r = subprocess.run([sys.executable, "-m", "watcher", "--state", str(tmp_path), "demo", "--speed", "0"],
                       capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    out = r.stdout
    messages = out.split("┌─ notification")
    t3 = out.split("=== t3 ·", 1)[1].split("=== t4 ·", 1)[0]
    t4 = out.split("=== t4 ·", 1)[1].split("=== standards and their timelines ===", 1)[0]
    # a week before: the reminder; on the next poll after the date: in force, and the old edition superseded
    assert "Comes into force soon" in t3 and "GB/T 99941-2025" in t3 and "in 5 days" in t3
    soon = [m for m in messages if "Comes into force soon" in m]
    assert len(soon) == 1 and "watch list / 关注列表: GB/T 99941-2018" in soon[0]
    assert "Standard in force · 标准实施" in t4 and "Standard superseded · 标准被代替" in t4
    moved = [m for m in messages if "Standard superseded" in m]
    assert len(moved) == 1 and "GB/T 99941-2018" in moved[0] and "GB/T 99941-2025" in moved[0]
    assert "(fictitious)" in moved[0]                                             # the English title
    # the watched plan published as GB/T 47020-2026 is the watch list's news too
    pub = [m for m in messages if "Standard published · 标准发布: 《网络安全技术 软件物料清单数据格式》" in m]
    assert len(pub) == 1 and "watch list / 关注列表: 20249901-T-469" in pub[0]
    summary = out.split("=== watch list ===", 1)[1]
    for item in ("GB/T 22080-2016", "GB/T 99941-2018", "20249901-T-469"):
        assert item in summary
    assert re.search(r"GB/T 22080-2016 +GB/T 22080-2025 +In force", summary)
    assert re.search(r"GB/T 99941-2018 +GB/T 99941-2025 +In force", summary)
    assert "demo.toml" in out                                                      # the serve hint names the config


def test_the_demo_config_is_the_scenario_config_plus_a_watch_list():
    """demo.toml repeats sources.toml's tables (whose events tests/test_scenario.py checks) and adds [watch]."""
    from conftest import DEMO
    scenario, demo = load_config(DEMO / "sources.toml"), load_config(DEMO / "demo.toml")
    plain = {sid: s for sid, s in demo.sources.items() if not s.watch}
    assert list(plain) == list(scenario.sources)
    def settings(src) -> dict:
        return {f.name: getattr(src, f.name) for f in dataclasses.fields(src) if f.name != "line"}
    for sid, src in scenario.sources.items():
        assert settings(src) == settings(plain[sid]), sid
    assert not scenario.watch_items
    assert list(demo.watch_items.values()) == ["GB/T 22080-2016", "GB/T 99941-2018", "20249901-T-469"]

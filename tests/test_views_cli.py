"""Terminal views over the bundled replay: golden outputs of `watcher open`, `watcher events`, `watcher entries` and
`watcher try`, columns aligned by display width for CJK text, no control characters, help for every option."""

from __future__ import annotations

import json
import unicodedata

import pytest

from test_web import CONFIG, REPLAY, TODAY, states  # noqa: F401  (states: the session fixture of replay states)
from watcher import cli
from watcher.views_cli import cell_width, columns, truncate


@pytest.fixture
def run(capsys, monkeypatch, states):  # noqa: F811
    monkeypatch.setenv("WATCHER_TODAY", TODAY)

    def go(*args: str, state=None) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(["--config", str(CONFIG), "--state", str(state or states["t4"]), *args])
        out, err = capsys.readouterr()
        return code, out, err
    return go


OPEN = """\
deadline        left  source        title                                                         link
2026-03-31   11 days  tc260-drafts  关于征求《网络安全标准实践指南——工业企业数据安全能力成熟度…   https://www.tc260.org.cn/portal/suggestion-detail/c18cf1079a538094a2d0666ec4a9b74d
2026-04-01   12 days  cac-wxan      <script>alert("x")</script><img src=x onerror=alert(1)> 恶…   javascript:alert(1)
2026-04-02   13 days  tc260-drafts  关于征求《网络安全标准实践指南——网络安全标识 消费类网联摄像…  https://www.tc260.org.cn/portal/suggestion-detail/fc813dee3d85a4dba60ddbd9a77e7989
2026-04-12   23 days  tc260-drafts  关于国家标准《数据安全技术 个人信息保护合规审计专业机构能力…  https://www.tc260.org.cn/portal/suggestion-detail/3bb57023c00a464faf4c2f7b9a5524c7
2026-05-03   44 days  cac-wxan      国家互联网信息办公室关于《网络数据安全风险评估办法（征求意…   https://www.cac.gov.cn/2026-04/03/c_1776877481881943.htm
2026-07-18  120 days  cac-wxan      国家互联网信息办公室关于《促进分布式数字身份互通互认应用规…   https://www.cac.gov.cn/2026-06/18/c_1783525605384124.htm
2026-08-25  158 days  cac-wxan      关于征求《政务移动互联网应用程序管理要求》强制性国家标准（…   https://www.cac.gov.cn/2026-06/26/c_1784217637474922.htm
2026-08-28  161 days  cac-wxan      国家互联网信息办公室关于《中华人民共和国反网络暴力法（征求…   https://www.cac.gov.cn/2026-07/29/c_1787072711938509.htm
2026-10-17  211 days  cac-wxan      国家互联网信息办公室关于《国务院关于保障未成年人健康安全使…   https://www.cac.gov.cn/2026-09/18/c_1791482017777471.htm
2026-10-25  219 days  cac-wxan      国家互联网信息办公室关于《互联网信息服务深度合成管理规定（…   https://www.cac.gov.cn/2026-09/25/c_1791964643843730.htm
"""

EVENTS = """\
2026-03-20 10:00+08  #20  new               cac-rules           人工智能拟人化互动服务管理暂行办法  https://www.cac.gov.cn/2026-04/10/c_1777558395078289.htm
2026-03-20 10:00+08  #19  new               cac-wxan            国家互联网信息办公室关于《互联网信息服务深度合成管理规定（修订草案征求意见稿）》公开征求意见的通知 [deadline=2026-10-25]  https://www.cac.gov.cn/2026-09/25/c_1791964643843730.htm
2026-03-20 10:00+08  #18  source_recovered  cac-wxan            中国网信网 网信@你  https://www.cac.gov.cn/hdfw/wxan/A093802index_1.htm
2026-03-20 10:00+08  #17  new               samr-gb-latest      公路隧道照明设施养护技术规范 [std=GB/T 47031-2026]  https://std.samr.gov.cn/gb/search/gbDetailed?id=0930401ED46391CCE06397BE0A0AEE4C
2026-03-20 10:00+08  #16  source_recovered  samr-gb-latest      国家标准 最新  https://std.samr.gov.cn/gb/search/gbQueryPage?searchText=&ics=&state=&ISSUE_DATE=&sortOrder=desc&pageSize=20&pageNumber=1
2026-03-20 10:00+08  #15  new               samr-plans-comment  智能体应用安全基本要求 [plan=20263116-Q-252]  https://std.samr.gov.cn/gb/search/gbDetailed?id=775120966417EB38E06397BE0A0AA79E
"""

ENTRIES = """\
published   deadline  number          stage    title                                     link
2026-03-18            20263116-Q-252  comment  智能体应用安全基本要求                    https://std.samr.gov.cn/gb/search/gbDetailed?id=775120966417EB38E06397BE0A0AA79E
2026-02-10            20262852-T-469  comment  网络安全技术 人工智能代码生成服务安全要…  https://std.samr.gov.cn/gb/search/gbDetailed?id=5F3F46AB4E6D4836E06397BE0A0A2712
2026-01-20            20260326-T-469  comment  未成年人 AI 应用安全指南                  https://std.samr.gov.cn/gb/search/gbDetailed?id=397EBEED6972CFDCE06397BE0A0ADBF9
"""

TRY = """\
published   deadline  number  stage  title                           link
2026-04-10                           人工智能拟人化互动服务管理暂…   https://www.cac.gov.cn/2026-04/10/c_1777558395078289.htm
2025-09-15                           网络安全事件报告管理办法        https://www.cac.gov.cn/2025-09/15/c_1759618092092380.htm
2025-02-14                           个人信息保护合规审计管理办法    https://www.cac.gov.cn/2025-02/14/c_1741161883083051.htm
"""


def test_open_golden(run):
    code, out, err = run("open")
    assert code == 0 and out == OPEN
    assert err == "10 open for comment on 2026-03-20 (Beijing), soonest deadline first\n"
    code, out, _ = run("open", "--source", "tc260-drafts", "--search", "数据安全", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["deadline"], r["days_left"], r["closed"]) for r in rows] == [("2026-03-31", 11, False),
                                                                          ("2026-04-12", 23, False)]


def test_open_shows_recently_closed_windows_when_asked(run, states):  # noqa: F811
    assert "closed" not in run("open", "--closed")[1]          # on 2026-03-20 nothing closed in the last 30 days
    # t2's state, five days after the extended deadline
    code, out, err = run("open", "--closed", "--today", "2026-04-05", "--source", "tc260-drafts", "--title-width", "20",
                         state=states["t2"])
    assert code == 0 and out == (
        "deadline      left  source        title                link\n"
        "2026-04-12  7 days  tc260-drafts  关于国家标准《数据…  https://www.tc260.org.cn/portal/suggestion-detail/3bb57023c00a464faf4c2f7b9a5524c7\n"
        "2026-03-31  closed  tc260-drafts  关于征求《网络安全…  https://www.tc260.org.cn/portal/suggestion-detail/c18cf1079a538094a2d0666ec4a9b74d\n")
    assert err.startswith("1 open for comment on 2026-04-05")


def test_events_golden_lines_have_date_id_and_link(run):
    code, out, _ = run("events", "--limit", "6")
    assert code == 0 and out == EVENTS
    code, out, _ = run("events", "--kind", "changed")
    assert out.startswith("2026-03-03 10:00+08  #4  changed  tc260-drafts  关于征求《网络安全标准实践指南——工业企业数据")
    assert "[deadline=2026-03-31; deadline: 2026-03-15 -> 2026-03-31]  https://www.tc260.org.cn/portal/suggestion-detail/" in out
    code, out, _ = run("events", "--json", "--limit", "1")
    assert json.loads(out)["id"] == 20


def test_entries_golden_and_unknown_source(run):
    code, out, err = run("entries", "samr-plans-comment", "--limit", "3", "--title-width", "40")
    assert code == 0 and out == ENTRIES and err == "3 entries stored for samr-plans-comment\n"
    code, out, err = run("entries", "no-such-source")
    assert code == 1 and "no source 'no-such-source'" in err


def test_try_prints_what_a_source_yields_and_stores_nothing(run, tmp_path):
    fresh = tmp_path / "never-created"
    code, out, err = run("try", "cac-rules", "--replay", str(REPLAY / "t4"), "--title-width", "30", state=fresh)
    assert code == 0 and out.startswith(TRY) and len(out.splitlines()) == 19
    assert err.endswith("cac-rules: HTTP 200, 18 entries (cac.jsonlist); nothing was stored\n")
    assert not fresh.exists()
    code, out, _ = run("try", "tc260-drafts", "--replay", str(REPLAY / "t2"), "--details", "--json", state=fresh)
    rows = [json.loads(line) for line in out.splitlines()]
    extended = next(r for r in rows if "工业企业数据安全能力成熟度模型" in r["title"])
    assert extended["deadline"] == "2026-03-31" and extended["days_left"] == 28 and extended["stage"] == "comment"
    assert extended["attachments"]
    code, out, err = run("try", "tc260-drafts", "--replay", str(REPLAY / "t3"), state=fresh)
    assert code == 1 and "503" in err and out == ""
    with pytest.raises(SystemExit) as bad:                     # argparse's usage error
        run("open", "--today", "soon")
    assert bad.value.code == 2
    code, _, err = run("try", "nope", state=fresh)
    assert code == 2 and "unknown source id 'nope'" in err
    assert not fresh.exists()


def test_read_views_refuse_a_missing_state(run, tmp_path):
    for args in (["open"], ["entries", "cac-rules"], ["serve"]):
        code, _, err = run(*args, state=tmp_path / "nothing")
        assert code == 2 and "no state" in err, args


def test_columns_align_by_display_width():
    assert cell_width("GB/T 标准") == 9 and cell_width("ｅ") == 2 and cell_width("e\u0301") == 1
    assert truncate("网络安全技术", 7) == "网络安…" and cell_width(truncate("网络安全技术", 7)) == 7
    assert truncate("abc", 3) == "abc"
    assert columns([["中文", "x", "1"], ["abc", "yy", "22"]], align="<<>") == ["中文  x    1", "abc   yy  22"]


def test_cjk_columns_line_up_on_screen(run):
    for args in (["open"], ["entries", "cac-wxan"], ["entries", "tc260-drafts", "--title-width", "0"]):
        _, out, _ = run(*args)
        lines = out.splitlines()
        starts = {cell_width(line[:max(line.find("https://"), line.find("javascript:"))]) for line in lines[1:]}
        assert len(starts) == 1, (args, starts)
        assert cell_width(lines[0][:lines[0].index("link")]) in starts


def test_no_control_characters_reach_the_terminal(run):
    # the hostile entry's stored title ends with an ESC sequence
    for args in (["open"], ["open", "--json"], ["entries", "cac-wxan"], ["entries", "cac-wxan", "--json"],
                 ["events"]):
        code, out, err = run(*args)
        assert code == 0
        bad = {c for c in out + err if c != "\n" and unicodedata.category(c) in ("Cc", "Cf")}
        assert not bad, (args, bad)
    assert "恶意标题" in run("entries", "cac-wxan", "--title-width", "0")[1]


def test_every_option_of_the_views_has_help():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("open", "entries", "try", "serve"):
        sp = sub.choices[name]
        assert sp.description
        for action in sp._actions:
            if action.dest in ("help", "config", "state", "db", "log_level", "log_format"):
                continue
            assert action.help, f"watcher {name} {action.option_strings or action.dest}"

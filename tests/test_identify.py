"""Normalisers of standard and plan numbers, stages and committees, with property tests for every spelling."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from watcher.decode import canonical_encoding, to_text
from watcher.identify import (
    committee_of, find_std_nos, is_forward, normalize_plan_no, normalize_std_no, stage_from_status,
    stage_from_title, standard_title, title_key,
)

DASHES = ["-", "—", "–", "－", "‐", "―", "−", "\u2011"]
SPACES = ["", " ", "  ", "\u3000", "\u00a0", "\t"]


def to_fullwidth(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


@pytest.mark.parametrize("raw, want", [
    ("GB/T 47020—2026", "GB/T 47020-2026"), ("GB/T47020-2026", "GB/T 47020-2026"), ("GBT 47020-2026", "GB/T 47020-2026"),
    ("ＧＢ／Ｔ　４７０２０－２０２６", "GB/T 47020-2026"), ("GB/T20485.16-2018", "GB/T 20485.16-2018"),
    ("GBT20485.16-2018", "GB/T 20485.16-2018"), ("GB 11120-2011", "GB 11120-2011"), ("GB/Z 20986-2023", "GB/Z 20986-2023"),
    ("gb/t 22080-2016", "GB/T 22080-2016"), ("GB∕T 22239—2019", "GB/T 22239-2019"), ("GB⁄T 22239-2019", "GB/T 22239-2019"), ("《GB/T 7714—2015》", "GB/T 7714-2015"), ("no number", None),
])
def test_std_numbers(raw, want):
    assert normalize_std_no(raw) == want


@given(prefix=st.sampled_from(["GB", "GB/T", "GB/Z"]), number=st.integers(1, 99999),
       part=st.one_of(st.none(), st.integers(1, 99)), year=st.integers(1980, 2035),
       sp1=st.sampled_from(SPACES), sp2=st.sampled_from(SPACES), dash=st.sampled_from(DASHES),
       slash=st.sampled_from(["/", "／", ""]), width=st.booleans())
def test_any_spelling_of_a_standard_number_normalises_to_one_identity(prefix, number, part, year, sp1, sp2, dash,
                                                                     slash, width):
    num = f"{number}" + (f".{part}" if part else "")
    canonical = f"{prefix} {num}-{year}"
    spelled = prefix.replace("/", slash) + sp1 + num + sp2 + dash + sp2 + str(year)
    if width:
        spelled = to_fullwidth(spelled)
    assert normalize_std_no(spelled) == canonical
    assert normalize_std_no(f"标准《示例》（{spelled}）已发布") == canonical


@given(year=st.integers(1990, 2035), serial=st.integers(0, 9999), kind=st.sampled_from("TQZ"),
       dept=st.integers(100, 999), dash=st.sampled_from(DASHES), sp=st.sampled_from(SPACES), width=st.booleans())
def test_plan_numbers_round_trip(year, serial, kind, dept, dash, sp, width):
    canonical = f"{year}{serial:04d}-{kind}-{dept}"
    spelled = f"{year}{serial:04d}{sp}{dash}{sp}{kind.lower() if serial % 2 else kind}{sp}{dash}{dept}"
    if width:
        spelled = to_fullwidth(spelled)
    assert normalize_plan_no("计划号：" + spelled) == canonical


def test_plan_numbers_with_spaces_or_no_separators():
    assert normalize_plan_no("计划号 20230259 T 469") == "20230259-T-469"
    assert normalize_plan_no("20230259T469") == "20230259-T-469"
    assert normalize_plan_no("20230259_T_469") == "20230259-T-469"


def test_plan_number_not_found_inside_longer_numbers():
    assert normalize_plan_no("id 120230259-T-4690") is None
    assert normalize_plan_no("计划号：20230259-T-469") == "20230259-T-469"


@pytest.mark.parametrize("label, stage", [
    ("正在征求意见", "comment"), ("制定中", "drafting"), ("正在起草", "drafting"), ("正在审查", "review"),
    ("正在批准", "approval"), ("已发布", "published"), ("即将实施", "published"), ("现行", "in_force"),
    ("被代替", "superseded"), ("废止", "withdrawn"), ("暂不实施", "not_implemented"), ("预研", "preliminary"),
    ("计划下达", "approved"), (" 现 行 ", "in_force"), ("采", None), ("something new", None),
])
def test_status_labels(label, stage):
    assert stage_from_status(label) == stage


def test_title_keywords_and_standard_titles():
    t = "关于国家标准《数据安全技术 个人信息保护合规审计专业机构能力要求》征求意见稿征求意见的通知"
    assert stage_from_title(t) == "comment"
    assert stage_from_title("《网络安全技术 软件物料清单数据格式》国家标准发布") == "published"
    assert standard_title(t) == "数据安全技术 个人信息保护合规审计专业机构能力要求"
    assert standard_title("关于征求《数据安全技术 示例（征求意见稿）》意见的通知") == "数据安全技术 示例"
    assert title_key("网络安全技术  软件物料清单数据格式") == title_key("网络安全技术 软件物料清单数据格式")


def test_forward_moves():
    assert is_forward("comment", "published") and is_forward(None, "comment")
    assert not is_forward("in_force", "published") and not is_forward("comment", "comment")
    assert is_forward("in_force", "superseded") and not is_forward("withdrawn", "superseded")


def test_committee_attribution():
    assert committee_of("其他标题", responsible="全国网络安全标准化技术委员会") == "TC260"
    assert committee_of("网络安全技术 软件物料清单数据格式") == "TC260"
    assert committee_of("关于国家标准《信息安全技术 示例》征求意见稿征求意见的通知") == "TC260"
    assert committee_of("振动与冲击传感器校准方法", responsible="全国机械振动、冲击与状态监测标准化技术委员会") is None
    assert committee_of("x", ta_code="TC260") == "TC260"


def test_find_all_numbers_in_text():
    assert find_std_nos("GB/T 45654-2025、GB/T45652—2025 和 GBT 45674-2025") == \
        ["GB/T 45654-2025", "GB/T 45652-2025", "GB/T 45674-2025"]


@given(st.text(alphabet=st.characters(codec="gb18030", exclude_categories=("Cs", "Cc")), max_size=200))
def test_gb18030_round_trip_through_decoder(s):
    body = f"<html><head><meta charset='gbk'></head><body>{s}</body></html>".encode("gb18030")
    text, enc, bad = to_text(body)
    assert enc == "gb18030" and bad == 0 and s in text


def test_encoding_labels_and_boms():
    for label in ("gb2312", "GBK", "x-gbk", "cp936", "EUC-CN", "gb18030"):
        assert canonical_encoding(label) == "gb18030"
    assert to_text("\ufeff标准".encode("utf-8"))[0] == "标准"
    assert to_text("标准".encode("utf-16"))[0] == "标准"
    assert to_text("标准—朱鎔基".encode("gbk"), "text/html; charset=GB2312")[0] == "标准—朱鎔基"


# --- coverage additions: 修订 as a stage, the status vocabulary of coverage §4.10, families of standard numbers ---

@pytest.mark.parametrize("label, stage", [
    ("修订", "under_revision"), ("已修订", "under_revision"), ("修订中", "under_revision"), (" 修 订 ", "under_revision"),
    ("制定中", "drafting"), ("正在起草", "drafting"), ("正在审查", "review"), ("正在审批", "approval"),
    ("正在批准", "approval"), ("正在征求意见", "comment"), ("已发布", "published"), ("即将实施", "published"),
    ("现行", "in_force"), ("被代替", "superseded"), ("废止", "withdrawn"),
    ("PUBLISHED", "in_force"), ("TOBEIMP", "published"), ("REPLACED", "superseded"), ("WITHDRAWN", "withdrawn"),
    ("NOTIMP", "not_implemented"), ("作废", "withdrawn"), ("历史", "superseded"), ("未生效", "published"),
    ("published", "published"), ("under_revision", "under_revision"),
])
def test_status_vocabulary_of_every_site(label, stage):
    assert stage_from_status(label) == stage


def test_under_revision_sits_after_in_force():
    from watcher.identify import STAGES, stage_label
    order = list(STAGES)
    assert order.index("under_revision") == order.index("in_force") + 1
    assert STAGES["under_revision"] == ("修订", "Under revision")
    assert stage_label("under_revision") == "Under revision · 修订"


@pytest.mark.parametrize("old, new, forward", [
    ("in_force", "under_revision", True), ("published", "under_revision", True),
    ("under_revision", "superseded", True), ("under_revision", "withdrawn", True),
    ("under_revision", "not_implemented", True), ("under_revision", "in_force", False),
    ("under_revision", "published", False), ("under_revision", "under_revision", False),
    ("superseded", "under_revision", False), ("withdrawn", "under_revision", False), (None, "under_revision", True),
])
def test_forward_moves_around_a_revision(old, new, forward):
    assert is_forward(old, new) is forward


@pytest.mark.parametrize("raw, family", [
    ("GB/T 22080-2016", "GB/T 22080"), ("GB/T 22080", "GB/T 22080"), ("gbt22080—2016", "GB/T 22080"),
    ("ＧＢ／Ｔ　２２０８０－２０１６", "GB/T 22080"), ("GBT 22080", "GB/T 22080"), ("GB T 22080", "GB/T 22080"),
    ("gb/t 35273", "GB/T 35273"), ("GB 45438—2025", "GB 45438"), ("GB/Z 20986-2023", "GB/Z 20986"),
    ("GBT20485.16-2018", "GB/T 20485.16"), ("GB∕T 22239—2019", "GB/T 22239"), ("《GB/T 7714—2015》", "GB/T 7714"),
    ("ISO 27001", None), ("", None), (None, None), ("GBX 1", None),
])
def test_std_family(raw, family):
    from watcher.identify import std_family
    assert std_family(raw) == family


@given(prefix=st.sampled_from(["GB", "GB/T", "GB/Z"]), number=st.integers(1, 99999), year=st.integers(1980, 2035),
       sp=st.sampled_from(SPACES), dash=st.sampled_from(DASHES), slash=st.sampled_from(["/", "／", ""]),
       width=st.booleans(), with_year=st.booleans())
def test_family_of_any_spelling_is_the_number_without_its_year(prefix, number, year, sp, dash, slash, width, with_year):
    from watcher.identify import std_family
    spelled = prefix.replace("/", slash) + sp + str(number) + (f"{sp}{dash}{sp}{year}" if with_year else "")
    if width:
        spelled = to_fullwidth(spelled)
    assert std_family(spelled) == f"{prefix} {number}"
    if with_year:
        assert std_family(normalize_std_no(spelled)) == f"{prefix} {number}"

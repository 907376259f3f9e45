"""Change detection properties: noise (order, whitespace, entities, width) is never a change; windows never remove."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import httpx
from hypothesis import given, settings, strategies as st

from conftest import write_config
from watcher.config import load_config
from watcher.detect import describe_changes
from watcher.fingerprint import digest
from watcher.pipeline import poll_source
from watcher.runner import Runner
from watcher.store import Store

ROWS = [(f"/portal/article/2/{i:04d}", f"《网络安全技术 示例标准{i}》发布", f"2026-01-{i + 1:02d}") for i in range(12)]
NOISE = ["", " ", "\n  ", "\u3000", "\u00a0", "&nbsp;", "\t"]


def page(rows, noise=lambda i: "", entity=False) -> str:
    items = []
    for i, (href, title, date) in enumerate(rows):
        t = html.escape(title).replace("《", "&#12298;") if entity else title
        items.append(f'<li>{noise(i)}<a href="{href}">{noise(i + 1)}{t}{noise(i + 2)}</a>'
                     f'<span class="date">{noise(i)}{date}</span></li>')
    return f"<html><body><ul class='news-list'>{''.join(items)}</ul></body></html>"


class Site:
    def __init__(self):
        self.body = page(ROWS)

    def handler(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=self.body, headers={"Content-Type": "text/html; charset=utf-8"})


def make_ctx(tmp: Path, site: Site) -> Runner:
    cfg = load_config(write_config(tmp, """
[source.notices]
kind = "css"
url = "https://www.tc260.org.cn/portal/cms/work/10/2"
rows = "ul.news-list > li"
date = "span.date"
"""))
    return Runner(cfg, Store(f"sqlite:///{tmp / 'w.db'}"), transport=httpx.MockTransport(site.handler))


@settings(max_examples=40, deadline=None)
@given(order=st.permutations(range(12)), noise=st.lists(st.sampled_from(NOISE), min_size=14, max_size=14),
       entity=st.booleans(), window=st.integers(4, 12))
def test_reordering_whitespace_entities_and_window_shifts_yield_no_events(order, noise, entity, window):
    with tempfile.TemporaryDirectory() as d:
        site = Site()
        ctx = make_ctx(Path(d), site)
        src = ctx.config.sources["notices"]
        assert poll_source(ctx, src).events == []               # baseline
        shuffled = [ROWS[i] for i in order][:window]              # reorder, and rows fall out of the window
        site.body = page(shuffled, noise=lambda i: noise[i % len(noise)], entity=entity)
        out = poll_source(ctx, src)
        assert out.status == "ok" and out.events == []
        ctx.close()
        ctx.store.close()


def test_a_real_edit_is_one_changed_event_with_old_and_new():
    with tempfile.TemporaryDirectory() as d:
        site = Site()
        ctx = make_ctx(Path(d), site)
        src = ctx.config.sources["notices"]
        poll_source(ctx, src)
        rows = list(ROWS)
        rows[3] = (rows[3][0], rows[3][1] + "（修订）", rows[3][2])
        rows.insert(0, ("/portal/article/2/9999", "关于征集标准需求的通知", "2026-03-16"))
        site.body = page(rows)
        evs = poll_source(ctx, src).events
        assert [(e["kind"], e["url"].rsplit("/", 1)[-1]) for e in evs] == [("new", "9999"), ("changed", "0003")]
        assert evs[1]["changes"] == {"title": {"old": "《网络安全技术 示例标准3》发布",
                                               "new": "《网络安全技术 示例标准3》发布（修订）"}}
        assert poll_source(ctx, src).events == []
        ctx.close()
        ctx.store.close()


def test_fingerprint_ignores_noise_but_not_content():
    a = {"title": "数据安全技术　示例", "url": "https://x/1", "attachments": [{"name": "a"}, {"name": "b"}]}
    b = {"title": " 数据安全技术 示例 ", "url": "https://x/1", "attachments": [{"name": "b"}, {"name": "a"}],
         "deadline": None, "summary": ""}
    assert digest(a) == digest(b)
    assert digest(a) != digest({**a, "deadline": "2026-04-12"})
    assert describe_changes(a, {**a, "deadline": "2026-04-12"}) == {"deadline": {"old": None, "new": "2026-04-12"}}


def test_a_status_change_is_one_stage_changed_event_not_two():
    """gbQueryPage row moves 即将实施 -> 现行: one stage_changed event carrying the field change."""
    import json as _json
    rows = {"total": 1, "rows": [{"id": "X1", "C_STD_CODE": "GB/T 47020-2026", "C_C_NAME": "网络安全技术 软件物料清单数据格式",
                                  "ISSUE_DATE": "2026-02-06", "ACT_DATE": "2026-08-01", "STATE": "即将实施"}]}
    state = {"body": _json.dumps(rows, ensure_ascii=False)}

    def handler(request):
        return httpx.Response(200, text=state["body"], headers={"Content-Type": "application/json;charset=UTF-8"})

    with tempfile.TemporaryDirectory() as d:
        cfg = load_config(write_config(Path(d), """
[source.gb]
kind = "samr.gb_query"
url = "https://std.samr.gov.cn/gb/search/gbQueryPage?pageNumber=1"
"""))
        ctx = Runner(cfg, Store(f"sqlite:///{d}/w.db"), transport=httpx.MockTransport(handler))
        src = cfg.sources["gb"]
        assert poll_source(ctx, src).events == []
        rows["rows"][0]["STATE"] = "现行"
        state["body"] = _json.dumps(rows, ensure_ascii=False)
        evs = poll_source(ctx, src).events
        assert [e["kind"] for e in evs] == ["stage_changed"]
        assert (evs[0]["previous_stage"], evs[0]["stage"]) == ("published", "in_force")
        assert evs[0]["changes"] == {"status": {"old": "即将实施", "new": "现行"}}
        ctx.close()
        ctx.store.close()

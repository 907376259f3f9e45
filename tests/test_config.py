"""sources.toml validation: every operator mistake gives one line with file, line and field, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import DEMO, ROOT, write_config
from watcher.config import load_config, parse_duration
from watcher.errors import ConfigError

GOOD = """\
[defaults]
interval = "30m"

[source.tc260]
kind = "tc260.suggestions"
url = "https://www.tc260.org.cn/portal/suggestion"
"""


def error_of(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(tmp_path, text))
    return str(exc.value)


def test_demo_and_shipped_configs_load():
    cfg = load_config(DEMO / "sources.toml")
    assert list(cfg.sources) == ["tc260-drafts", "tc260-notices", "samr-plans-comment", "samr-gb-latest",
                                 "cac-wxan", "cac-rules"]
    rules = cfg.sources["cac-rules"]
    assert rules.method == "POST" and rules.form["channelCode"] == "A09370303"
    assert cfg.sources["tc260-drafts"].alert_after_failures == 1      # from [defaults]
    assert cfg.sources["tc260-drafts"].interval == 3600
    assert load_config(ROOT / "sources.toml").sources


def test_bad_duration_message_names_file_line_and_field(tmp_path):
    text = GOOD + """
[source.cac-wxan]
kind = "cac.column"
url = "https://www.cac.gov.cn/hdfw/wxan/A093802index_1.htm"
interval = "soon"
"""
    assert error_of(tmp_path, text) == \
        'sources.toml:11: [source.cac-wxan] interval: expected a duration like "30m", got "soon"'


@pytest.mark.parametrize("snippet, expected", [
    ('colour = "red"', "sources.toml:7: [source.tc260] colour: unknown key"),
    ("timeout = true", "sources.toml:7: [source.tc260] timeout: expected a duration"),
    ('alert_after_failures = "3"', "sources.toml:7: [source.tc260] alert_after_failures: expected a whole number"),
    ("alert_after_failures = 0", "sources.toml:7: [source.tc260] alert_after_failures: must be at least 1"),
    ('stage = "finished"', "sources.toml:7: [source.tc260] stage: expected a stage id"),
    ('method = "PUT"', "sources.toml:7: [source.tc260] method: expected one of GET, POST"),
    ('headers = { Referer = 3.5 }', None),
    ('enabled = "yes"', "sources.toml:7: [source.tc260] enabled: expected true or false"),
    ('cron = "every day"', "sources.toml:7: [source.tc260] cron: expected a 5-field cron expression"),
])
def test_field_errors(tmp_path, snippet, expected):
    text = GOOD + snippet + "\n"
    if expected is None:
        load_config(write_config(tmp_path, text))   # numbers in headers are accepted as strings
        return
    assert error_of(tmp_path, text).startswith(expected)


def test_bad_url_unknown_kind_missing_key(tmp_path):
    assert error_of(tmp_path, GOOD.replace("https://www.tc260.org.cn/portal/suggestion", "ftp://x")).startswith(
        "sources.toml:6: [source.tc260] url: expected an http(s) URL")
    msg = error_of(tmp_path, GOOD.replace("tc260.suggestions", "tc260.magic"))
    assert msg.startswith("sources.toml:5: [source.tc260] kind: unknown kind 'tc260.magic'") and "css" in msg
    assert error_of(tmp_path, GOOD.replace('kind = "tc260.suggestions"\n', "")) == \
        "sources.toml:4: [source.tc260] missing required key 'kind'"
    assert "needs a rows selector" in error_of(tmp_path, GOOD.replace("tc260.suggestions", "css"))
    assert "rows: expected a CSS selector" in error_of(
        tmp_path, GOOD.replace("tc260.suggestions", "css") + 'rows = "ul >> li["\n')


def test_duplicate_id_and_syntax_errors_name_the_line(tmp_path):
    msg = error_of(tmp_path, GOOD + '\n[source.tc260]\nkind = "css"\n')
    assert msg.startswith("sources.toml:8: TOML syntax error") and "tc260" in msg
    assert error_of(tmp_path, GOOD + "interval = \n").startswith("sources.toml:7: TOML syntax error")


def test_unknown_table_and_bad_id(tmp_path):
    assert error_of(tmp_path, GOOD + "[sourcez.x]\na=1\n").startswith("sources.toml:7: [sourcez] unknown table")
    assert "source id may use" in error_of(tmp_path, GOOD.replace("source.tc260", 'source."tc 260"'))


def test_env_interpolation(tmp_path, monkeypatch):
    text = GOOD + 'headers = { Authorization = "Bearer ${TOKEN}", X = "${MISSING:-fallback}" }\n'
    monkeypatch.setenv("TOKEN", "s3cret")
    src = load_config(write_config(tmp_path, text)).sources["tc260"]
    assert src.headers == {"Authorization": "Bearer s3cret", "X": "fallback"}
    monkeypatch.delenv("TOKEN")
    assert "environment variable TOKEN is not set" in error_of(tmp_path, text)


def test_channels_and_subscriptions_are_validated(tmp_path):
    base = GOOD + '\n[channel.ops]\nurl = "json://127.0.0.1:9/hook"\n'
    ok = base + '\n[[subscription]]\nchannels = ["ops"]\nsources = ["tc*"]\nkinds = ["new"]\n'
    cfg = load_config(write_config(tmp_path, ok))
    assert cfg.subscriptions[0].sources == ("tc*",)
    assert "unknown channel 'nope'" in error_of(tmp_path, base + '[[subscription]]\nchannels = ["nope"]\n')
    assert "pattern 'cac-*' matches no source" in error_of(
        tmp_path, base + '[[subscription]]\nchannels = ["ops"]\nsources = ["cac-*"]\n')
    assert "unknown event kind 'removed'" in error_of(
        tmp_path, base + '[[subscription]]\nchannels = ["ops"]\nkinds = ["removed"]\n')
    assert "invalid regular expression" in error_of(
        tmp_path, base + '[[subscription]]\nchannels = ["ops"]\nkeywords = ["(unclosed"]\n')
    # the quick check at load knows apprise's schemes; `watcher check` (and the daemon) ask apprise itself
    assert error_of(tmp_path, GOOD + '\n[channel.bad]\nurl = "slak://x/y/z"\n') == \
        "sources.toml:9: [channel.bad] url: unknown apprise scheme slak://"
    from watcher.config import check_channels
    cfg = load_config(write_config(tmp_path, GOOD + '\n[channel.bad]\nurl = "slack://user:hunter2@nothing"\n'))
    with pytest.raises(ConfigError) as exc:
        check_channels(cfg)
    assert str(exc.value).startswith("sources.toml:9: [channel.bad] url: not a valid apprise URL")
    assert "hunter2" not in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        check_channels(cfg, in_child=True)          # the daemon's way: apprise runs in a child process
    assert str(exc.value).startswith("sources.toml:9: [channel.bad] url: not a valid apprise URL")


def test_parse_duration():
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration(45) == 45
    for bad in ("", "soon", "-5m", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_check_command_exit_codes_and_no_traceback(tmp_path):
    good = write_config(tmp_path, GOOD, "good.toml")
    bad = write_config(tmp_path, GOOD + 'interval = "soon"\n', "bad.toml")
    r = subprocess.run([sys.executable, "-m", "watcher", "--config", str(good), "check"], capture_output=True, text=True)
    assert r.returncode == 0 and "OK (1 source" in r.stdout
    r = subprocess.run([sys.executable, "-m", "watcher", "check", "--config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == 'watcher: error: bad.toml:7: [source.tc260] interval: expected a duration like "30m", got "soon"'
    r = subprocess.run([sys.executable, "-m", "watcher", "--config", str(tmp_path / "none.toml"), "check"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "config file not found" in r.stderr and "Traceback" not in r.stderr


def test_cron_day_of_week_follows_crontab_not_apscheduler():
    from datetime import datetime, timezone
    from watcher.config import cron_trigger
    friday = datetime(2026, 3, 6, 3, 0, tzinfo=timezone.utc)
    assert cron_trigger("0 9 * * 0").get_next_fire_time(None, friday).weekday() == 6      # 0 = Sunday
    assert cron_trigger("0 9 * * 7").get_next_fire_time(None, friday).weekday() == 6
    assert cron_trigger("0 9 * * 1-5").get_next_fire_time(None, friday).weekday() == 0    # next Monday
    with pytest.raises(ValueError):
        cron_trigger("0 9 * *")


def test_ca_bundle_must_exist_and_is_resolved_next_to_the_config(tmp_path):
    import certifi
    (tmp_path / "extra-ca.pem").write_text(open(certifi.where()).read())
    src = load_config(write_config(tmp_path, GOOD + 'ca_bundle = "extra-ca.pem"\n')).sources["tc260"]
    assert src.ca_bundle == str(tmp_path / "extra-ca.pem")
    assert error_of(tmp_path, GOOD + 'ca_bundle = "missing.pem"\n').startswith(
        "sources.toml:7: [source.tc260] ca_bundle: file not found:")
    (tmp_path / "junk.pem").write_text("not a certificate")
    assert "not a PEM certificate file" in error_of(tmp_path, GOOD + 'ca_bundle = "junk.pem"\n')


def test_reminder_days(tmp_path):
    cfg = load_config(write_config(tmp_path, GOOD + "\n[settings]\nreminder_days = [1, 14, 7]\n"))
    assert cfg.settings.reminder_days == (14, 7, 1)
    assert "reminder_days: expected a list of whole numbers of days" in error_of(
        tmp_path, GOOD + '\n[settings]\nreminder_days = ["soon"]\n')

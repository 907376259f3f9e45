"""Channel URLs without apprise's plugin scan: the scheme table matches the installed apprise; quick and deep checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from watcher import channels
from watcher.channel_schemes import SCHEMES


def test_scheme_table_matches_the_installed_apprise():
    from apprise.manager_plugins import NotificationManager
    m = NotificationManager()
    m.load_modules()
    installed = {s: (m[s].__module__, m[s].__name__) for s in m.schemas()}
    assert installed == SCHEMES, "regenerate watcher/channel_schemes.py for this apprise version"


@pytest.mark.parametrize("url, family", [
    ("slack://T1/B2/C3", "slack"), ("https://hooks.slack.com/services/T1/B2/C3", "slack"),
    ("mailtos://u:p@example.com", "email"), ("discord://1/2", "markdown"), ("json://host/x", "text"),
    ("tgram://123:abc/456", "text"),
])
def test_family_comes_from_the_scheme(url, family):
    assert channels.family(url) == family


def test_quick_check_needs_no_apprise_and_names_no_url():
    code = ("import sys; from watcher.channels import quick_check;"
            "print(quick_check('slak://tok/en'), quick_check('json://h/x'), 'apprise' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == "False" and "None" in out and "slak://" in " ".join(out) and "tok" not in " ".join(out)


def test_deep_check_rejects_what_apprise_rejects_without_showing_it():
    assert channels.deep_check("https://hooks.slack.co/services/T1/B2/SECRETTOKEN") is not None
    assert "SECRETTOKEN" not in channels.deep_check("https://hooks.slack.co/services/T1/B2/SECRETTOKEN")
    assert channels.deep_check("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general") is None

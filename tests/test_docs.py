"""The README cannot drift from the code: config reference, commands, kinds, event kinds and stages."""

from __future__ import annotations

import re

from conftest import ROOT
from watcher.cli import build_parser
from watcher.config import EVENT_KINDS, reference_markdown
from watcher.extract import EXTRACTORS
from watcher.identify import STAGES

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_config_reference_is_generated_from_the_schema():
    block = README.split("<!-- reference:start", 1)[1].split("-->", 1)[1].split("<!-- reference:end -->")[0]
    assert block.strip() == reference_markdown().strip(), \
        "README reference is stale: paste watcher.config.reference_markdown() between the markers"


def test_every_command_and_option_is_documented():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sp in sub.choices.items():
        assert f"`watcher {name}" in README, name
        for action in sp._actions:
            for opt in action.option_strings:
                if opt.startswith("--") and opt not in ("--help",):
                    assert opt in README, f"{name} {opt}"


def test_kinds_events_and_stages_are_documented():
    for kind in EXTRACTORS:
        assert f"| `{kind}` |" in README, kind
    for kind in EVENT_KINDS:
        assert f"`{kind}`" in README, kind
    for stage, (zh, _) in STAGES.items():
        assert re.search(rf"`{stage}` {zh}", README), stage


def test_two_setup_commands_and_ci_use_the_same_test_command():
    block = README.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["pip install . && watcher demo", "pip install -e '.[test]' && python -m pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[test]'" in ci and "python -m pytest" in ci

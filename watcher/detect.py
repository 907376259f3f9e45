"""Previous vs current entries -> field-by-field change descriptions (deepdiff) for `changed` events.

Detection itself is digest comparison (see pipeline); this module says *what* changed. A row that is missing from a
list page is never a removal: list pages are windows.
"""

from __future__ import annotations

from typing import Any

from deepdiff import DeepDiff

from watcher.fingerprint import content


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{field: {"old": ..., "new": ...}} for every content field whose normalised value differs."""
    a, b = content(old), content(new)
    diff = DeepDiff(a, b, ignore_order=True, threshold_to_diff_deeper=0, view="tree",
                    ignore_type_in_groups=[(type(None), str)])
    changed: list[str] = []
    for changes in diff.values():
        for change in changes:
            path = change.path(output_format="list")
            if path and path[0] not in changed:
                changed.append(str(path[0]))
    return {f: {"old": old.get(f), "new": new.get(f)} for f in sorted(changed)}

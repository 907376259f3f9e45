"""Previous vs current entries -> field-by-field change descriptions (deepdiff) for `changed` events.

Detection itself is digest comparison (see pipeline); this module says *what* changed. A row that is missing from a
list page is never a removal: list pages are windows.
"""

from __future__ import annotations

import sys
from typing import Any

from watcher.fingerprint import content

_DeepDiff = None


def _deepdiff():
    """Import deepdiff on first use, without its optional numpy/pydantic support (we diff plain dicts): that keeps
    about 20 MB out of a daemon that mostly sees unchanged pages."""
    global _DeepDiff
    if _DeepDiff is None:
        blocked = [m for m in ("numpy", "pydantic", "pydantic_core") if m not in sys.modules]
        for m in blocked:
            sys.modules[m] = None  # type: ignore[assignment]  # makes `import m` raise ImportError
        try:
            from deepdiff import DeepDiff
        finally:
            for m in blocked:
                sys.modules.pop(m, None)
        _DeepDiff = DeepDiff
    return _DeepDiff


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{field: {"old": ..., "new": ...}} for every content field whose normalised value differs."""
    a, b = content(old), content(new)
    diff = _deepdiff()(a, b, ignore_order=True, threshold_to_diff_deeper=0, view="tree",
                    ignore_type_in_groups=[(type(None), str)])
    changed: list[str] = []
    for changes in diff.values():
        for change in changes:
            path = change.path(output_format="list")
            if path and path[0] not in changed:
                changed.append(str(path[0]))
    return {f: {"old": old.get(f), "new": new.get(f)} for f in sorted(changed)}

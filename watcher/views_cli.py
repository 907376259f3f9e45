"""Terminal views: `watcher open`, `watcher entries`, `watcher try`, `watcher serve` (registered by cli.build_parser)."""

from __future__ import annotations


def register(add) -> None:
    """Add this module's subcommands; `add(name, func, help)` returns the subparser."""

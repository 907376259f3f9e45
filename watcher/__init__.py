"""watcher: polls China's cybersecurity standards bodies and reports what changed."""

__version__ = "0.1.0"

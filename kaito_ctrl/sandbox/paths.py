"""Where the sandbox keeps its state: one directory, overridable with KAITO_SANDBOX_DIR."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("KAITO_CTRL_CACHE", Path.home() / ".cache" / "kaito-ctrl"))


def sandbox_dir() -> Path:
    return Path(os.environ.get("KAITO_SANDBOX_DIR", cache_root() / "sandbox"))


def pid_file() -> Path:
    return sandbox_dir() / "supervisor.pid"


def ready_file() -> Path:
    return sandbox_dir() / "ready.json"


def supervisor_log() -> Path:
    return sandbox_dir() / "supervisor.log"


def stage_file() -> Path:
    """The supervisor's current start-up step, for ``sandbox up`` to show while it waits."""
    return sandbox_dir() / "stage"

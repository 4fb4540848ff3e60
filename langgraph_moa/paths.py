"""Where this package keeps its files: one data directory for chats, stored completions and caches."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "langgraph-moa"


def data_dir() -> Path:
    r"""The data directory: ``$XDG_DATA_HOME/langgraph-moa`` when that variable is set, else the platform's.

    The platform's user data directory comes from ``platformdirs``:
    ``~/.local/share/langgraph-moa`` on Linux, ``~/Library/Application Support/langgraph-moa``
    on macOS, ``%LOCALAPPDATA%\langgraph-moa`` on Windows. ``XDG_DATA_HOME`` is
    honoured on every platform, so one variable moves the data anywhere.

    Not created here; whoever writes a file in it creates it.
    """
    base = os.environ.get("XDG_DATA_HOME")
    if base:
        return Path(base) / APP_NAME
    return platformdirs.user_data_path(APP_NAME, appauthor=False)

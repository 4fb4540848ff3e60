"""Where this package keeps its files: one data directory for chats, stored completions and caches."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The data directory: ``$XDG_DATA_HOME/langgraph-moa``, else ``~/.local/share/langgraph-moa``.

    Not created here; whoever writes a file in it creates it.
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "langgraph-moa"

"""``moa serve`` with a ``GET /_stats`` route, for benchmarks/serving_load.py (Linux, glibc).

    python benchmarks/_server_stats.py serve [moa serve options]

is ``moa serve`` plus, in the same process:

- a callback timing every garbage collection (each stops the event loop);
- ``GET /_stats``: resident memory, and where the process's memory is, from
  the allocators themselves: CPython's small-object allocator (pymalloc:
  bytes in objects, bytes free inside its arenas) and glibc's malloc
  (``mallinfo2``: bytes in use, bytes free), plus the garbage collections since
  the last call (count and longest, full collections apart);
- ``GET /_stats?trim=1``: the same after ``gc.collect()`` and
  ``malloc_trim(0)``, to see how much of the memory malloc could give back.

``MOA_BENCH_NO_FREEZE=1`` serves with ``freeze_startup_objects=False``.
Benchmark instrumentation only: not part of the package.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import langgraph_moa.serve.app as serve_app

_collections: list[tuple[int, float]] = []  # (generation, ms) since the last /_stats
_started = [0.0]


def _time_collections(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _collections.append((info["generation"], (time.perf_counter() - _started[0]) * 1000))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


try:
    _libc: Any = ctypes.CDLL("libc.so.6")
    _libc.mallinfo2.restype = _MallInfo2
except (OSError, AttributeError):  # not glibc, or glibc < 2.33
    _libc = None


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _pymalloc_kib() -> dict[str, int]:
    """Bytes in objects, and the rest of pymalloc's arenas (free blocks and pools, overhead), from ``sys._debugmallocstats``."""
    with tempfile.TemporaryFile("w+") as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()

    def value(label: str) -> int:
        match = re.search(rf"# {label}\s*=\s*([\d,]+)", text)
        return int(match.group(1).replace(",", "")) if match else 0

    arenas = re.search(r"\d+ arenas \* \d+ bytes/arena\s*=\s*([\d,]+)", text)
    total = int(arenas.group(1).replace(",", "")) if arenas else 0
    objects = value("bytes in allocated blocks")
    return {"objects": objects // 1024, "free": (total - objects) // 1024, "arenas": value("arenas allocated current")}


def _malloc_kib() -> dict[str, int] | None:
    if _libc is None:
        return None
    info = _libc.mallinfo2()
    return {"in_use": (info.uordblks + info.hblkhd) // 1024, "free": info.fordblks // 1024}


def stats(trim: bool = False) -> dict[str, Any]:
    """What ``GET /_stats`` answers."""
    if trim:
        gc.collect()
        if _libc is not None:
            _libc.malloc_trim(0)
    full = [ms for generation, ms in _collections if generation == 2]
    young = [ms for generation, ms in _collections if generation < 2]
    _collections.clear()
    return {
        "rss_kib": _rss_kib(),
        "pymalloc_kib": _pymalloc_kib(),
        "malloc_kib": _malloc_kib(),
        "tracked_objects": len(gc.get_objects()),
        "frozen_objects": gc.get_freeze_count(),
        "full_collections": len(full),
        "full_collection_ms_max": max(full, default=0.0),
        "young_collection_ms_max": max(young, default=0.0),
    }


_create_app = serve_app.create_app


def _create_app_with_stats(settings: Any = None, **kwargs: Any) -> Any:
    if os.environ.get("MOA_BENCH_NO_FREEZE") == "1":
        settings = (settings or serve_app.ServeSettings()).model_copy(update={"freeze_startup_objects": False})
    app = _create_app(settings, **kwargs)

    @app.get("/_stats", include_in_schema=False)
    async def _stats(trim: bool = False) -> dict[str, Any]:
        return stats(trim)

    return app


if __name__ == "__main__":
    gc.callbacks.append(_time_collections)
    serve_app.create_app = _create_app_with_stats  # the CLI imports it from the module when it serves
    from langgraph_moa.cli import app as cli

    sys.argv = ["moa", *sys.argv[1:]]
    cli()

"""Writing a benchmark's results: its markdown table and its PNG plot, in ``benchmarks/results/``.

    out = write_table("ttft", lines)            # results/ttft.md, one line each

    def draw(plt):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        ...
        return fig

    save_plot("ttft", draw)                      # results/ttft.png

Without matplotlib (it comes with the ``dev`` extra) the table is still written
and ``save_plot`` says why there is no plot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
NO_MATPLOTLIB = "matplotlib not installed: table only (pip install -e '.[dev]')"


def write_table(name: str, lines: Sequence[str], *, results: Path = RESULTS) -> Path:
    """Write ``lines`` (no line ends) to ``results/<name>.md``; return its path."""
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"{name}.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def save_plot(name: str, draw: Callable[[Any], Any], *, dpi: int = 110, results: Path = RESULTS) -> Path | None:
    """Draw a figure with ``draw(matplotlib.pyplot)`` and save it as ``results/<name>.png``.

    ``draw`` returns the figure; it is laid out tightly, saved and closed here.
    Returns the PNG's path, or ``None`` (after saying so) without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(NO_MATPLOTLIB)
        return None
    fig = draw(plt)
    fig.tight_layout()
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"{name}.png"
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out

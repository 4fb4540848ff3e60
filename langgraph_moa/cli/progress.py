"""The progress of a run on stderr: each proposer done or failed, each layer, the wait for the first token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape


def slot_labels(models: list[str]) -> dict[int, str]:
    """Name each proposer of a layer; a model that appears several times gets ``#1``, ``#2``, ... (Self-MoA)."""
    labels = {}
    for slot, model in enumerate(models):
        same = [i for i, m in enumerate(models) if m == model]
        labels[slot] = f"{model} #{same.index(slot) + 1}" if len(same) > 1 else model
    return labels


class Progress:
    """Renders the ``custom`` progress events of a run on stderr: done, failed, pending.

    A proposer's line gives the seconds since its layer started (the run, or
    the previous layer's end: one clock for the whole layer), so the lines,
    printed as the proposers finish, read in order. While a provisional answer streams (``--provisional``), the layer's
    other lines wait and follow it, so the two never interleave. While the
    aggregator has not sent its first token, a terminal shows a spinner with
    the seconds waited first (:meth:`waiting`, until :meth:`first_token`), so a
    narrow terminal cuts the model's name, not the wait.

    The lines are printed, not drawn with ``rich.live``/``rich.progress``: they
    are a log that stays in the scrollback and in a redirected stderr, where a
    live display redraws in place and keeps only its last frame. The spinner is
    rich's own ``Console.status``; ``moa eval``'s bar is ``rich.progress``.

    Args:
        console: Where to print (stderr).
        clock: Seconds from any fixed point (``time.monotonic``); a test gives its own.
    """

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = clock
        self.labels: dict[int, dict[int, str]] = {}
        self.pending: dict[int, dict[int, str]] = {}
        self.done: dict[int, int] = {}
        self.failed: dict[int, int] = {}
        self.succeeded: dict[int, list[int]] = {}
        self.layer_started: dict[int, float] = {}
        self._held: list[str] | None = None  # lines waiting for a streaming provisional answer
        self._status: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self._waiting_for = ""
        self._waiting_since = 0.0

    def _label(self, event: dict[str, Any]) -> str:
        return self.labels.get(event["layer"], {}).get(event["slot"], event["model"])

    def _print(self, line: str) -> None:
        if self._held is not None:
            self._held.append(line)
        else:
            self.console.print(line)

    def _release(self) -> None:
        held, self._held = self._held or [], None
        for line in held:
            self.console.print(line)

    def _elapsed(self, layer: int) -> float:
        return self.clock() - self.layer_started.setdefault(layer, self.clock())

    def _finish(self, event: dict[str, Any], counter: dict[int, int], what: str) -> None:
        layer = event["layer"]
        self.pending.get(layer, {}).pop(event["slot"], None)
        counter[layer] = counter.get(layer, 0) + 1
        waiting = self.pending.get(layer, {})
        names = f" ({escape(', '.join(waiting.values()))})" if waiting else ""
        self._print(
            f"  layer {layer}: {what} - {self.done.get(layer, 0)} done, "
            f"{self.failed.get(layer, 0)} failed, {len(waiting)} pending{names}"
        )

    def _built_from(self, event: dict[str, Any]) -> list[str]:
        """The provisional answer's references as the progress lines named them (``#1``, ``#2`` for samples)."""
        layer, models = event["layer"], list(event["built_from"])
        slots = sorted(self.succeeded.get(layer, []))
        labels = [self.labels.get(layer, {}).get(slot, "") for slot in slots]
        if len(labels) == len(models) and all(
            label.split(" #")[0] == m for label, m in zip(labels, models, strict=True)
        ):
            return labels
        return models

    def __call__(self, event: dict[str, Any]) -> None:
        """Show one progress event of the ``custom`` stream."""
        kind = event.get("event")
        if kind == "run_started":
            self._release()
            for record in (self.done, self.failed, self.succeeded, self.layer_started):
                record.clear()
            self.labels = {int(layer): slot_labels(list(models)) for layer, models in event["proposers"].items()}
            self.pending = {layer: dict(labels) for layer, labels in self.labels.items()}
            self.layer_started[1] = self.clock()
            self.console.print(
                f"[bold]MoA[/bold]: {event['layers']} layer(s), aggregator {escape(event['aggregator'])}"
            )
        elif kind == "proposer_started":
            self.layer_started.setdefault(event["layer"], self.clock())
        elif kind == "proposer_done":
            self.succeeded.setdefault(event["layer"], []).append(event["slot"])
            seconds = self._elapsed(event["layer"])
            what = f"[green]done[/green]   {escape(self._label(event))} after {seconds:.2f}s"
            self._finish(event, self.done, what)
        elif kind == "proposer_failed":
            reason = escape(f"{self._label(event)}: {event['error_type']}: {event['message']}")
            self._finish(event, self.failed, f"[red]failed[/red] {reason}")
        elif kind == "layer_done":
            self.layer_started[event["layer"] + 1] = self.clock()
            cached = f" ({event['cached']} from the cache)" if event.get("cached") else ""
            self._print(
                f"layer {event['layer']} complete: {event['succeeded']} proposal(s){cached}, {event['failed']} failed"
            )
        elif kind == "strategy":
            self._print(f"layer {event['layer']}: {escape(event['option'])}: {escape(event['reason'])}")
        elif kind == "provisional_started":
            self._release()
            built_from = escape(", ".join(self._built_from(event)))
            self.console.print(f"layer {event['layer']}: [dim]provisional answer from {built_from}:[/dim]")
            self._held = []
        elif kind == "provisional_token":
            self.console.print(event["text"], end="", style="dim", markup=False)
        elif kind == "provisional_answer":
            self.console.print("\n[dim](provisional; the final answer follows on stdout)[/dim]")
            self._release()
        elif kind == "provisional_failed":
            reason = escape(f"{event['error_type']}: {event['message']}")
            if self._held is not None:
                self.console.print()
            self.console.print(f"layer {event['layer']}: [yellow]no provisional answer[/yellow] ({reason})")
            self._release()
        elif kind == "aggregator_started":
            self._release()
            self.console.print(f"layer {event['layer']}: aggregating with {escape(event['model'])}")
            self.waiting(f"waiting for the first token of {event['model']}")

    def waiting_text(self) -> str:
        """The spinner's text: the seconds waited first, so a narrow terminal never cuts them off."""
        return f"{self.clock() - self._waiting_since:.0f}s {escape(self._waiting_for)}"

    def waiting(self, what: str) -> None:
        """On a terminal, show a spinner with the seconds waited until :meth:`first_token` or :meth:`stop`."""
        self.stop()
        if not self.console.is_terminal:
            return
        self._waiting_for, self._waiting_since = what, self.clock()
        status = self._status = self.console.status(self.waiting_text(), spinner="dots")
        status.start()

        async def tick() -> None:
            while True:
                await asyncio.sleep(0.5)
                self.tick()

        try:
            self._ticker = asyncio.get_running_loop().create_task(tick())
        except RuntimeError:  # no running loop: the spinner turns without the clock
            self._ticker = None

    def tick(self) -> None:
        """Show the seconds waited now (the spinner's task calls this twice a second)."""
        if self._status is not None:
            self._status.update(self.waiting_text())

    def first_token(self) -> None:
        """The answer has started: the spinner goes away."""
        self.stop()

    def stop(self) -> None:
        """Remove the spinner, if one is shown, and print any line still held."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._status is not None:
            self._status.stop()
            self._status = None
        self._release()

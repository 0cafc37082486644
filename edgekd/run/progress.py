"""The one live view of a search: trials done and left, the rung, the best so far, elapsed
time and an estimate of what is left (rich ``Live`` on a terminal, one plain line per event
otherwise, e.g. in CI logs or when piped)."""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any, Callable, TextIO

from edgekd.core.progress import say  # noqa: F401  (re-exported: the plain lines live in core)
from edgekd.run.halving import HalvingEvent, describe_plan

if TYPE_CHECKING:  # pragma: no cover
    from edgekd.run.config import CompressConfig


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def describe(event: HalvingEvent) -> str:
    """One line for an event (also the text of the live panel)."""
    rung = event.rung
    if event.kind == "plan":
        return describe_plan(event.rungs)
    best = f"{event.best[0]} val {event.best[1]:.4f}" if event.best else "-"
    head = (f"rung {rung.index + 1}/{len(event.rungs)} ({rung.keep} trials x {rung.epochs} ep) | "
            f"trials {event.done}/{event.total} done, {event.total - event.done} left | "
            f"best {best} | elapsed {_clock(event.elapsed_s)} | left ~{_clock(event.eta_s)}")
    if event.kind == "trial" and event.result is not None:
        how = "resumed" if event.skipped else "trained"
        return f"{head} | {how} {event.trial_id}: val {float(event.result['val_acc']):.4f}"
    if event.kind == "done":
        return f"search done in {_clock(event.elapsed_s)}: best {best}"
    return head


class SearchProgress:
    """Context manager that renders :class:`HalvingEvent` s; pass ``.update`` as ``on_event``."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.live: Any = None
        self.lines: list[str] = []
        self.finished: list[str] = []  # "trained X: val ..." of the latest trials

    def __enter__(self) -> "SearchProgress":
        if self.enabled and self.stream.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live("starting the search...", console=Console(file=self.stream),
                             refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.live = None

    def update(self, event: HalvingEvent) -> None:
        line = describe(event)
        self.lines.append(line)
        if event.kind == "trial":
            self.finished.append(line.split(" | ")[-1])
        if not self.enabled:
            return
        if self.live is not None and event.kind == "plan":
            self.live.console.print(line)  # stays above the live panel
        elif self.live is not None:
            from rich.table import Table

            table = Table.grid(padding=(0, 1))
            for text in line.split(" | "):
                table.add_row(text)
            for text in self.finished[-3:]:
                table.add_row(f"[dim]{text}[/dim]")
            self.live.update(table)
        else:
            print(line, file=self.stream, flush=True)


#: Rough seconds to export one model to ONNX with its parity check (tiny students on a CPU).
EXPORT_SECONDS = 2.0


def finish_seconds(config: "CompressConfig") -> float:
    """A rough estimate of the steps after training: export every trained student and the
    teacher, measure them together (each for ``measure_seconds``), write the report and the
    bundle (about 10 s)."""
    models = config.candidates + config.finalists + 1
    return 10.0 + models * (EXPORT_SECONDS + config.measure_seconds)


def counting_the_finish(update: Callable[[HalvingEvent], None], seconds: float
                        ) -> Callable[[HalvingEvent], None]:
    """``update`` with the time left counting the steps after training too (``seconds``)."""
    def on_event(event: HalvingEvent) -> None:
        update(event if event.eta_s is None else dataclasses.replace(event, eta_s=event.eta_s + seconds))
    return on_event

"""Plain progress lines (stderr; a terminal, a pipe or a CI log alike) that every stage may
emit while it works (e.g. one line per trained epoch, formatted by ``edgekd.core.fmt.epoch_line``). The live
view of a search is :mod:`edgekd.run.progress`; everything else a command shows is printed
by the CLI from the data the stages return.

May import: the standard library and ``edgekd.core`` only.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


def say(enabled: bool, message: str, stream: TextIO | None = None) -> None:
    """A plain progress line on stderr (a terminal, a pipe or a CI log alike)."""
    if enabled:
        print(message, file=stream or sys.stderr, flush=True)


#: Whether :func:`note` prints. One-time steps deep inside a stage (the teacher's outputs
#: cached inside the first trial) cannot see the command's --no-progress; the command that runs
#: them sets it with :func:`set_notes`.
_NOTES = {"enabled": True}


def set_notes(enabled: bool) -> bool:
    """Turn :func:`note` on or off; returns the previous setting (to restore it)."""
    previous, _NOTES["enabled"] = _NOTES["enabled"], enabled
    return previous


def note(message: str) -> None:
    """A progress line for a long one-time step, unless the running command turned them off."""
    say(_NOTES["enabled"], message)


class StepBar:
    """A live bar over the steps of a long loop, drawn by rich on a terminal's stderr only;
    elsewhere (a pipe, a CI log) it draws nothing and the plain lines of :func:`say` report
    progress. ``loss=True`` adds a loss column (set with ``update(loss=...)``) and an ETA.

    Usage: ``with StepBar("epoch 1/3 kd", steps, enabled=progress) as bar: ... bar.update()``.
    """

    def __init__(self, description: str, total: int, *, enabled: bool = True, loss: bool = False,
                 transient: bool = True) -> None:
        self._bar: Any = None
        if not enabled:
            return
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        if loss:
            columns.append(TextColumn("loss {task.fields[loss]:.3f}"))
        columns.append(TimeElapsedColumn())
        if loss:
            columns.append(TimeRemainingColumn())
        self._bar = Progress(*columns, transient=transient, console=console)
        fields = {"loss": float("nan")} if loss else {}
        self._task = self._bar.add_task(description, total=total, **fields)
        self._bar.start()

    def update(self, *, advance: int = 1, **fields: Any) -> None:
        """Advance by ``advance`` steps; ``description=`` or ``loss=`` change what is shown."""
        if self._bar is not None:
            self._bar.update(self._task, advance=advance, **fields)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "StepBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

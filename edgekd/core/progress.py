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

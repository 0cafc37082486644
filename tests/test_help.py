"""Help that fits a screen: ``compress --help`` and ``train --help`` at most 100 lines at 80
columns, every option at most 3 lines, no benchmark figures, issue numbers or anecdotes in any
help text (they live in docs/methods.md, which the help links to)."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from edgekd.cli.cli import cli

#: What help must not hold: an issue number, a mean +- std, a percentage with decimals, an
#: "Nx slower/faster" anecdote.
LAB_NOTES = re.compile(r"issue \d|\+-|±|\d+\.\d+ ?%|\d+x (slower|faster)|studies", re.I)


def _help(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def _option_lines(text: str) -> dict[str, int]:
    """Lines per option in a help text's Options section."""
    counts: dict[str, int] = {}
    current = None
    for line in text.split("\nOptions:\n", 1)[1].splitlines():
        found = re.match(r"  (?:-\w, )?(--[\w-]+)", line)
        if found:
            current = found.group(1)
            counts[current] = 0
        elif not line.startswith("      "):
            current = None  # the epilog after the options
        if current:
            counts[current] += 1
    return counts


@pytest.mark.parametrize("command", ["compress", "train"])
def test_help_fits_a_screen(command: str) -> None:
    text = _help(command)
    assert len(text.splitlines()) <= 100, len(text.splitlines())
    lines = _option_lines(text)
    assert len(lines) >= 30  # the whole option list was read
    assert {k: v for k, v in lines.items() if v > 3} == {}
    assert "docs/methods.md" in text


def _commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


@pytest.mark.parametrize("command", _commands())
def test_no_lab_notes_in_help(command: tuple[str, ...]) -> None:
    text = _help(*command)
    assert not LAB_NOTES.search(text), LAB_NOTES.search(text).group(0)

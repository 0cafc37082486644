"""The CLI's contract: --version, --help everywhere, unbuilt commands and errors exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgekd import __version__
from edgekd.cli.cli import cli


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def _all_commands(group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,)
        if hasattr(command, "commands"):
            yield from _all_commands(command, prefix + (name,))


@pytest.mark.parametrize("path", list(_all_commands(cli)))
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_import_is_light() -> None:
    code = ("import sys, edgekd, edgekd.cli.cli, edgekd.core.errors, edgekd.core.fileio; "
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'matplotlib', 'ray', 'tensorrt') "
            "if m in sys.modules]; print(heavy); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)

"""``--config FILE``: a command's options from a file (TOML, or the run.json of an earlier run),
applied through click's ``default_map`` so that flags given on the command line override it.

Keys are the option names without ``--`` (``latency-ms`` or ``latency_ms``; flags as
``true``/``false``, e.g. ``baselines = true``, ``no-bundle = true``), at the top level of the
file or in a ``[compress]`` table. A run.json written by ``edgekd compress`` holds every
option of its command under ``"options"``, so ``edgekd compress --config runs/X/run.json``
runs it again (into a new folder).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from edgekd.core.errors import EdgekdError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Options that never come from a file: where the file is, and tracebacks.
NOT_FROM_FILE = frozenset({"config", "verbose"})


def read_options(path: Path, command: str) -> dict[str, Any]:
    """The option mapping in ``path`` (a TOML file, or a run.json's ``options``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise EdgekdError(f"--config {path} cannot be read ({error}): pass a TOML file") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise EdgekdError(f"--config {path}: invalid JSON ({error}): fix it") from None
        if isinstance(data, dict) and "options" in data:  # a run.json
            data = data["options"]
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise EdgekdError(f"--config {path}: invalid TOML ({error}): fix the syntax") from None
    if isinstance(data, dict) and isinstance(data.get(command), dict):
        data = data[command]
    if not isinstance(data, dict):
        raise EdgekdError(f"--config {path} holds no table of options: write e.g. "
                          "'epochs = 12' lines")
    return data


def options_from_file(path: Path, ctx: click.Context) -> dict[str, Any]:
    """``read_options`` checked against the command's options: names normalised to the
    parameter names, values converted by the option's type; an unknown key or a bad value is
    refused in one line naming the file."""
    command = ctx.command
    allowed = {p.name: p for p in command.params if p.name and p.name not in NOT_FROM_FILE}
    options: dict[str, Any] = {}
    for key, value in read_options(path, command.name or "").items():
        name = str(key).lstrip("-").replace("-", "_")
        if name not in allowed:
            names = ", ".join(sorted(n.replace("_", "-") for n in allowed))
            raise EdgekdError(f"--config {path}: unknown key '{key}': use the option names of "
                              f"'edgekd {command.name} --help' ({names})")
        if value is None:
            continue  # run.json stores unset options as null: keep click's default
        try:
            options[name] = allowed[name].type_cast_value(ctx, value)
        except click.BadParameter as error:
            raise EdgekdError(f"--config {path}: key '{key}' = {value!r}: {error.message}") from None
    return options


def config_option(command: click.Command) -> click.Command:
    """Add ``--config FILE`` to ``command`` (eager: it sets the defaults of the others)."""

    def load(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
        if value is not None:
            ctx.default_map = {**(ctx.default_map or {}), **options_from_file(value, ctx)}
        return value

    return click.option(
        "--config", type=click.Path(dir_okay=False, path_type=Path, exists=True), default=None,
        is_eager=True, callback=load, expose_value=False, metavar="FILE",
        help="Options from a TOML file (latency-ms = 0.5) or a run's run.json; the command "
             "line wins.")(command)


def recorded_options(params: dict[str, Any]) -> dict[str, Any]:
    """Every option of an invocation as JSON values, for run.json (``out`` and ``resume`` are
    left out: feeding the file back then starts a new run in a new folder; ``yes`` too). A
    mapping (``--method-opt``'s NAME=VALUE pairs) is recorded as the NAME=VALUE texts it was given as."""
    skip = NOT_FROM_FILE | {"out", "resume", "yes"}  # --yes is asked for each time
    return {name: (str(value) if isinstance(value, Path) else
                   list(value) if isinstance(value, tuple) else
                   [f"{k}={v!r}" for k, v in value.items()] if isinstance(value, dict) else value)
            for name, value in sorted(params.items()) if name not in skip}

"""``--config FILE``: a command's options from a file (TOML, or the run.json of an earlier run),
applied through click's ``default_map`` so that flags given on the command line override it.

Keys are the option names without ``--`` (``latency-ms`` or ``latency_ms``; flags as
``true``/``false``, e.g. ``baselines = true``, ``no-bundle = true``), at the top level of the
file or in a ``[compress]`` table. A run.json written by ``edgekd compress`` holds every
option of its command under ``"options"``, so ``edgekd compress --config runs/X/run.json``
runs it again (into a new folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgekd.core.errors import EdgekdError
from edgekd.core.fileio import loads_json, loads_toml, read_text_bounded

#: Options that never come from a file: where the file is, and tracebacks.
NOT_FROM_FILE = frozenset({"config", "verbose"})
#: Options a file may not set, with why: running code and choosing where to write are the
#: user's decision on the command line, never a file's (a run.json or a shared config).
COMMAND_LINE_ONLY = {
    "trust_code": "it lets edgekd run code from a file",
    "out": "it chooses where edgekd writes",
}


def read_options(path: Path, command: str) -> dict[str, Any]:
    """The option mapping in ``path`` (a TOML file, or a run.json's ``options``), read with the
    size and depth limits every edgekd document has (:mod:`deploy.files`)."""
    try:
        text = read_text_bounded(path)
        data = loads_json(text) if path.suffix == ".json" else loads_toml(text)
    except OSError as error:
        raise EdgekdError(f"--config {path} cannot be read ({error.strerror}): pass a TOML "
                          "file") from None
    except ValueError as error:
        raise EdgekdError(f"--config {path}: {error}: fix the file") from None
    if path.suffix == ".json" and isinstance(data, dict) and "options" in data:  # a run.json
        data = data["options"]
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
        if name in COMMAND_LINE_ONLY and value is not False:
            flag = "--" + name.replace("_", "-")
            raise EdgekdError(f"--config {path}: key '{key}' is refused: {COMMAND_LINE_ONLY[name]}, "
                              f"so remove it and give {flag} on the command line if you mean it")
        problem = _type_problem(allowed[name], value)
        if problem:
            raise EdgekdError(f"--config {path}: key '{key}' = {_short(value)}: {problem}")
        try:
            options[name] = allowed[name].type_cast_value(ctx, value)
        except click.BadParameter as error:
            raise EdgekdError(f"--config {path}: key '{key}' = {_short(value)}: {error.message}") from None
    return options


def _type_problem(param: click.Parameter, value: Any) -> str | None:
    """Why ``value`` from a file does not fit ``param``'s type, or None. Stricter than click's
    casting, which turns ``true`` into 1.0 and ``2.7`` into 2: ints must be integers, numbers
    must not be booleans, flags must be booleans, repeatable options lists of plain values."""
    if getattr(param, "multiple", False) or getattr(param, "nargs", 1) != 1:
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, (list, dict)) for item in items):
            return "give a list of plain values"
        return None
    if getattr(param, "is_flag", False):
        return None if isinstance(value, bool) else "give true or false"
    kind = param.type
    if isinstance(value, (list, dict)):
        return "give a single value, not a list or table"
    if isinstance(kind, (click.types.IntParamType, click.types.FloatParamType, click.types.BoolParamType)):
        if isinstance(value, bool) and not isinstance(kind, click.types.BoolParamType):
            return "give a number, not true/false"
    if isinstance(kind, click.types.IntParamType):
        if not isinstance(value, int):
            return "give a whole number"
    if isinstance(kind, click.types.FloatParamType):
        if not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
            return "give a finite number"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
    left out: feeding the file back then starts a new run in a new folder; ``yes`` and
    ``trust_code`` too: a file may not set them). A mapping (``--method-opt``'s NAME=VALUE
    pairs) is recorded as the NAME=VALUE texts it was given as."""
    skip = NOT_FROM_FILE | set(COMMAND_LINE_ONLY) | {"resume", "yes"}  # --yes is asked for each time
    return {name: (str(value) if isinstance(value, Path) else
                   list(value) if isinstance(value, tuple) else
                   [f"{k}={v!r}" for k, v in value.items()] if isinstance(value, dict) else value)
            for name, value in sorted(params.items()) if name not in skip}

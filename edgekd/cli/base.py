"""What every ``edgekd`` command shares: ``--verbose``, the group class that turns an
:class:`~edgekd.core.errors.EdgekdError` into one line and exit status 2, ``MAX_BATCH``, and
:func:`default_of`, through which every option takes its default from the configuration
dataclass that owns it (TrainConfig, SearchConfig, CompressConfig): the CLI never restates one."""

from __future__ import annotations

import dataclasses
import re
import traceback
from typing import Any, Callable

import click

from edgekd.core.errors import EdgekdError, disk_error

__all__ = ["HELP_EPILOG", "MAX_BATCH", "CompactCommand", "EdgekdGroup", "default_of", "is_verbose", "verbose_option"]


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.find_root().meta["edgekd.verbose"] = True
    return value


def verbose_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--verbose`` (show tracebacks and debug output) to a command."""
    return click.option(
        "--verbose", "-v", is_flag=True, default=False, expose_value=False, is_eager=True,
        callback=_set_verbose, help="Show tracebacks and debug output.",
    )(func)


def is_verbose(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().meta.get("edgekd.verbose"))


#: The largest batch an option accepts: larger ones only exhaust memory (1e12 images).
MAX_BATCH = 65536


def _broken_stack(error: BaseException) -> str | None:
    """The one-line diagnosis when ``error`` came from a broken torch/torchvision/onnxruntime
    install (None for any other error, which is then a bug shown with its traceback)."""
    from edgekd.core.stack import stack_problem

    return stack_problem()


class EdgekdGroup(click.Group):
    """A click group that turns :class:`EdgekdError` (and a broken PyTorch install found
    late) into one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgekdError as error:
            if is_verbose(ctx):
                traceback.print_exc()
            click.secho(f"error: {error}", fg="red", err=True)
            ctx.exit(error.exit_code)
        except OSError as error:
            disk = disk_error(error)
            if disk is None:
                raise
            if is_verbose(ctx):
                traceback.print_exc()
            click.secho(f"error: {disk}", fg="red", err=True)
            ctx.exit(disk.exit_code)
        except (ImportError, RuntimeError) as error:
            problem = _broken_stack(error)
            if problem is None:
                raise
            if is_verbose(ctx):
                traceback.print_exc()
            click.secho(f"error: {problem}", fg="red", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.secho("interrupted: finished work is saved; rerun with --resume to continue",
                        fg="yellow", err=True)
            ctx.exit(130)


#: Under the options of ``compress --help`` and ``train --help``: where the longer explanations live.
HELP_EPILOG = ("Methods, their options and their measured comparisons: docs/methods.md. The rest: "
               "README.md.")

#: A numeric range as click shows it in help: ``x>=0``, ``0<=x<1``, ``1<=x<=65536``.
_RANGE = re.compile(r"^(?:[-+\w.]+<=?)?x(?:[<>]=?[-+\w.]+)?$")


def _without_range(text: str) -> str:
    """``"... [default: 0.0; 0<=x<1]"`` -> ``"... [default: 0.0]"`` (the range is in the error
    message of a value outside it)."""
    found = re.search(r"\s*\[([^\[\]]*)\]$", text)
    if not found:
        return text
    items = [item for item in found.group(1).split("; ") if not _RANGE.match(item.strip())]
    head = text[:found.start()]
    return f"{head}  [{'; '.join(items)}]" if items else head


class CompactCommand(click.Command):
    """A command whose option list leaves out numeric ranges, so that each option's help stays
    within a few lines."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [record for param in self.get_params(ctx) if (record := param.get_help_record(ctx))]
        if rows:
            with formatter.section("Options"):
                formatter.write_dl([(name, _without_range(text)) for name, text in rows])


def default_of(config_class: type, name: str) -> Any:
    """The default of field ``name`` of the configuration dataclass ``config_class``, for a
    click ``default=`` (so the CLI shows, with ``show_default=True``, exactly the default the
    library uses). A field without a default is a programming error."""
    for field in dataclasses.fields(config_class):
        if field.name == name:
            if field.default is not dataclasses.MISSING:
                return field.default
            if field.default_factory is not dataclasses.MISSING:
                return field.default_factory()
            break
    raise AttributeError(f"{config_class.__name__} has no field {name!r} with a default")

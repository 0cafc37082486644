"""The ``edgekd`` command line. Thin: parse, call one function, print.

Every command accepts ``--verbose``. A user error (:class:`edgekd.errors.EdgekdError`)
prints one line ``error: ...`` and exits with status 2; with ``--verbose`` the traceback
is shown too. Heavy libraries are imported inside the commands, so ``edgekd --help`` is fast.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any, Callable

import click

from edgekd import __version__
from edgekd.errors import EdgekdError, NotBuiltYet


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.find_root().meta["edgekd.verbose"] = True
    return value


def verbose_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--verbose`` (show tracebacks and debug output) to a command."""
    return click.option(
        "--verbose", "-v", is_flag=True, expose_value=False, is_eager=True,
        callback=_set_verbose, help="Show tracebacks and debug output.",
    )(func)


def is_verbose(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().meta.get("edgekd.verbose"))


class EdgekdGroup(click.Group):
    """A click group that turns :class:`EdgekdError` into one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgekdError as error:
            if is_verbose(ctx):
                traceback.print_exc()
            click.secho(f"error: {error}", fg="red", err=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            click.secho("interrupted: finished work is saved; rerun with --resume to continue",
                        fg="yellow", err=True)
            ctx.exit(130)


def not_built(command: str) -> None:
    raise NotBuiltYet(f"'edgekd {command}' is not built yet in edgekd {__version__}; "
                      "see the README for the commands that are available")


@click.group(cls=EdgekdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="edgekd")
@verbose_option
def cli() -> None:
    """edgekd: compress a trained classifier into a thin, deep student for an edge device.

    \b
    The main job, on the embedded default (MNIST subset, built-in teacher, host CPU):
        edgekd compress
    On your own teacher, data and device:
        edgekd compress --profile jetson-orin-nano-8gb --teacher teacher.pt \\
            --arch resnet18 --data data.npz --latency-ms 0.5 --out runs/orin

    Stages can also be run one by one: search, train, export, report.
    """


# --------------------------------------------------------------------------- profiles
@cli.group(cls=EdgekdGroup)
def profiles() -> None:
    """List and inspect device profiles (profiles/*.toml).

    \b
    Examples:
        edgekd profiles list
        edgekd profiles show jetson-orin-nano-8gb
        edgekd profiles show ./my-device.toml
    """


def _print_view(view: Any) -> None:
    """Print a profile view: JSON text as is, a rich renderable through a wide-enough console."""
    if isinstance(view, str):
        click.echo(view)
    else:
        from edgekd.profile_view import make_console

        make_console().print(view)


@profiles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as a JSON list.")
@verbose_option
def profiles_list(as_json: bool) -> None:
    """Print a table of the shipped device profiles: peak FP32/FP16/INT8 throughput, memory
    bandwidth, default budget (latency at a batch, MACs per sample) and runtime.

    \b
    Example:
        edgekd profiles list
        edgekd profiles list --json > profiles.json
    """
    from edgekd.profile_view import list_profiles

    _print_view(list_profiles(as_json=as_json))


@profiles.command("show")
@click.argument("name_or_path")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@verbose_option
def profiles_show(name_or_path: str, as_json: bool) -> None:
    """Print one profile (a shipped NAME or a PATH to a .toml file): hardware, default budget
    and runtime. A user file is validated exactly like the shipped ones.

    \b
    Example:
        edgekd profiles show jetson-orin-nano-8gb
        edgekd profiles show ./my-device.toml --json
    """
    from edgekd.profile_view import show_profile

    _print_view(show_profile(name_or_path, as_json=as_json))


# --------------------------------------------------------------------------- search
@cli.command()
@verbose_option
def search() -> None:
    """Enumerate thin, deep students that fit a device budget."""
    not_built("search")


# --------------------------------------------------------------------------- train
@cli.command()
@verbose_option
def train() -> None:
    """Train one student from a teacher (scratch, kd, fitnet, mimic, ban)."""
    not_built("train")


@cli.command()
@verbose_option
def layers() -> None:
    """List a model's tappable layers (for --hint-layer / --guided-layer)."""
    not_built("layers")


# --------------------------------------------------------------------------- export
@cli.command()
@verbose_option
def export() -> None:
    """Export a trained student to ONNX (checked against PyTorch) and a device bundle."""
    not_built("export")


@cli.command()
@verbose_option
def measure() -> None:
    """Measure an ONNX model's latency on this host through the deploy kit."""
    not_built("measure")


# --------------------------------------------------------------------------- report
@cli.command()
@verbose_option
def report() -> None:
    """Rebuild a run's report, merging measurements brought back from a device."""
    not_built("report")


# --------------------------------------------------------------------------- compress
@cli.command()
@verbose_option
def compress() -> None:
    """Search, train, export, measure and report in one command."""
    not_built("compress")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="edgekd")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

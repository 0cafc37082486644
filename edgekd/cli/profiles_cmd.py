"""``edgekd profiles list|show``: the device profiles."""

from __future__ import annotations

from typing import Any

import click

from edgekd.cli.base import EdgekdGroup, verbose_option
from edgekd.core.errors import EdgekdError

__all__ = ["profiles"]


@click.group(cls=EdgekdGroup)
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
        from edgekd.cli.profile_view import make_console

        make_console().print(view)


@profiles.command("list")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the profiles as a JSON list.")
@verbose_option
def profiles_list(as_json: bool) -> None:
    """Print a table of the shipped device profiles: peak FP32/FP16/INT8 throughput, memory
    bandwidth, default budget (latency at a batch, MACs per sample) and runtime.

    \b
    Example:
        edgekd profiles list
        edgekd profiles list --json > profiles.json
    """
    from edgekd.cli.profile_view import list_profiles

    _print_view(list_profiles(as_json=as_json))


@profiles.command("show")
@click.argument("name_or_path")
@click.option("--json", "as_json", is_flag=True, default=False,
              help="Print the profile as JSON (a .json file of it is a profile too).")
@click.option("--toml", "as_toml", is_flag=True, default=False,
              help="Print the profile's TOML file as written: copy it to make your own.")
@verbose_option
def profiles_show(name_or_path: str, as_json: bool, as_toml: bool) -> None:
    """Print one profile (a shipped NAME or a PATH to a .toml or .json file): hardware,
    default budget and runtime. A user file is validated exactly like the shipped ones.

    \b
    Example:
        edgekd profiles show jetson-orin-nano-8gb
        edgekd profiles show t4 --toml > my-device.toml    # then edit it, pass --profile my-device.toml
        edgekd profiles show ./my-device.toml --json
    """
    from edgekd.cli.profile_view import show_profile
    from edgekd.inputs.profiles import profile_text

    if as_json and as_toml:
        raise EdgekdError("--json and --toml both given: pick one")
    if as_toml:
        click.echo(profile_text(name_or_path), nl=False)
        return
    _print_view(show_profile(name_or_path, as_json=as_json))

"""``edgekd methods``: every training method with what it does and its options (the long form
of ``--method``'s help, which lists the names only)."""

from __future__ import annotations

import click

from edgekd.cli.base import verbose_option

__all__ = ["methods"]


@click.command()
@click.option("--compress", "compress_only", is_flag=True, default=False,
              help="Only the methods 'edgekd compress' can search with.")
@verbose_option
def methods(compress_only: bool) -> None:
    """List the training methods: name, what it does, its options (--method-opt NAME=VALUE)
    with their defaults. The formulas and measured comparisons: docs/methods.md.

    \b
    Example:
        edgekd methods
        edgekd methods --compress
    """
    from edgekd.distill.methods import METHODS

    for method in METHODS.values():
        if method.compress or not compress_only:
            where = "" if method.compress else " (train only)"
            click.echo(f"{method.name}{where}: {method.help} [{method.options_text()}]")

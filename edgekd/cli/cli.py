"""The ``edgekd`` command line. Thin: parse, call one function, print.

Every command accepts ``--verbose``. A user error (:class:`edgekd.core.errors.EdgekdError`)
prints one line ``error: ...`` and exits with status 2; with ``--verbose`` the traceback
is shown too. Heavy libraries are imported inside the commands, so ``edgekd --help`` is fast.
"""

from __future__ import annotations

import sys

import click

from edgekd import __version__
from edgekd.cli.base import MAX_BATCH, EdgekdGroup, is_verbose, verbose_option
from edgekd.cli.compress_cmd import compress
from edgekd.cli.methods_cmd import methods
from edgekd.cli.predict_cmd import predict
from edgekd.cli.profiles_cmd import profiles
from edgekd.cli.report_cmd import report
from edgekd.cli.search_cmd import calibrate, search
from edgekd.cli.ship_cmd import export, measure
from edgekd.cli.train_cmd import layers, search_options, train

# MAX_BATCH, is_verbose, verbose_option and search_options live in base and train_cmd; they
# stay importable from here
__all__ = ["MAX_BATCH", "cli", "is_verbose", "main", "search_options", "verbose_option"]


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


for _command in (profiles, search, calibrate, train, layers, methods, export, measure, report, compress,
                 predict):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="edgekd")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

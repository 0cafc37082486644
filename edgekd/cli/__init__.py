"""CLI: the click commands (``edgekd ...``), their shared options and the CLI-only printing.

Owns: cli (the ``edgekd`` group; registers the commands), base (``--verbose``, the group that
turns an EdgekdError into one line), one module per command group (profiles_cmd, search_cmd:
search and calibrate, train_cmd: train and layers, ship_cmd: export and measure, report_cmd,
compress_cmd, predict_cmd; thin: parse, call one stage function, print), cli_options (the
``--data`` / ``--teacher`` / ``--method`` options and their resolution), profile_view
(``edgekd profiles`` tables), train_view (what ``edgekd train`` and ``edgekd layers`` print) and
views (what ``edgekd search`` and ``edgekd measure`` print).

May import: everything in edgekd. Nothing in edgekd imports this package.
"""


def main() -> None:
    """The ``edgekd`` command (its home is :func:`edgekd.cli.cli.main`; kept here so that an
    install made before the move to packages, whose script calls ``edgekd.cli:main``, still works)."""
    from edgekd.cli.cli import main as _main

    _main()

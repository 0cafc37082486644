"""``python -m edgekd`` is the same as the ``edgekd`` command."""

from edgekd.cli.cli import main

main()

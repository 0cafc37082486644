"""User-facing errors.

An :class:`EdgekdError` carries one line that says what is wrong and what to do. The CLI
prints it (no traceback unless ``--verbose``) and exits with status 2. Anything else that
escapes is a bug and is shown with its traceback.
"""

from __future__ import annotations


class EdgekdError(Exception):
    """A problem with the user's input or environment, explained in one line.

    Write the message as ``what is wrong: what to do``, e.g.
    ``profile 'x.toml': unknown key 'budget.foo'; remove it or check the spelling``.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line

